"""The ``semqa`` command line.

Exit codes (docs/architecture.md, "Contracts"): 0 success, 1 a check failed (validation, promotion gate, lineage),
2 bad usage or bad input, with a one-line reason on stderr and no traceback.

Each command is one ``_add_<name>`` function that declares its arguments and a handler;
handlers import what they need lazily so ``semqa --help`` stays fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from semqa.errors import CheckFailed, InputError, SemqaError

if TYPE_CHECKING:  # imported for the annotation only: the CLI starts without scipy
    from semqa.stats.censoring import SizingLimit

EXIT_OK, EXIT_CHECK_FAILED, EXIT_BAD_INPUT = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see --help)\n")


def _fail(code: int, message: str) -> int:
    from semqa.registry.store import mask_credentials

    # Messages may quote a store URI (MLflow's own errors do): never print its password.
    print(f"semqa: {mask_credentials(message.splitlines()[0]) if message else 'error'}", file=sys.stderr)
    return code


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="semqa",
        description="Super-resolved SEM particle size analysis for QA.",
        epilog=(
            "Store: the MLflow tracking store and registry are MLFLOW_TRACKING_URI if set, else the SQLite "
            "store SEMQA_HOME/mlruns/mlflow.db, where SEMQA_HOME defaults to the source checkout semqa runs "
            "from, else ~/.local/share/semqa; never the current folder. Every analyze and compare result is "
            "recorded there (one run each) and `semqa lineage` checks result files against it."
        ),
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add in _COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # Progress bars of MLflow's artifact downloads would bury the command's own output.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or EXIT_OK)
    except InputError as exc:
        return _fail(EXIT_BAD_INPUT, str(exc))
    except CheckFailed as exc:
        return _fail(EXIT_CHECK_FAILED, str(exc))
    except SemqaError as exc:
        return _fail(EXIT_CHECK_FAILED, str(exc))
    except KeyboardInterrupt:
        return _fail(130, "interrupted")
    except Exception as exc:
        if os.environ.get("SEMQA_DEBUG"):
            raise
        mlflow_exceptions = sys.modules.get("mlflow.exceptions")
        if mlflow_exceptions is not None and isinstance(exc, mlflow_exceptions.MlflowException):
            # The store is down or refused: a fact about the environment, not a semqa bug.
            from semqa.registry.store import shown_tracking_uri

            return _fail(EXIT_CHECK_FAILED, f"tracking store {shown_tracking_uri()} unavailable or refused: {exc.message}")
        return _fail(70, f"internal error: {type(exc).__name__}: {exc} (set SEMQA_DEBUG=1 for the traceback)")


# --- commands -------------------------------------------------------------------------
# One function per command; keep each thin: parse, call the core or an app, print.


def _image_paths(paths, pixel_size: float | None, max_pixels: int, force: bool = False, scale_bar: str | None = None) -> list:
    """Files to analyse, each read by the process that analyses it (memory bounded on large lots)."""
    from semqa.io.images import ImagePath
    from semqa.io.metadata import length_um

    if max_pixels < 1:
        raise InputError(f"--max-pixels must be at least 1, got {max_pixels}")
    if scale_bar is not None and pixel_size is not None:
        raise InputError("--scale-bar is the fallback for files without a pixel size; with --pixel-size it would not be used")
    bar_um = length_um(scale_bar, "--scale-bar") if scale_bar is not None else None
    return [ImagePath(p, pixel_size, max_pixels, force, bar_um) for p in paths]


def _workers(value: str) -> int:
    n = int(value)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def _print_pixel_sizes(images) -> None:
    """Where the analysed images' pixel sizes came from (one line per source), and what a flag overrode."""
    from collections import Counter

    for source, n in Counter(s.pixel_size_source for s in images).items():
        print(f"pixel size from {source}: {n} image(s)")
    for s in images:
        if s.pixel_size_note:
            print(f"note: {s.name}: pixel size {s.pixel_size_um:g} µm (flag) {s.pixel_size_note}")
    from_bar = sum(s.pixel_size_source.startswith("scale bar") for s in images)
    if from_bar:
        print(f"warning: {from_bar} image(s) sized from the data bar's scale bar with the length given by hand "
              "(--scale-bar): less accurate than instrument metadata; check against a calibration")


def _sr_by_default(args: argparse.Namespace) -> bool:
    return args.sr is None


def _upscaler(args: argparse.Namespace):
    from semqa.analysis import DEFAULT_SR

    if not (DEFAULT_SR if args.sr is None else args.sr):
        return None
    from semqa.sr.inference import load_upscaler

    return load_upscaler(args.model)


def _record(result):
    """``result`` recorded in the tracking store (:func:`semqa.registry.records.record_result`), with its pointer."""
    from semqa.registry.records import record_result

    result = record_result(result)
    print(f"recorded: run {result.lineage.record.run_id} in {result.lineage.record.store}")
    return result


def _segmenter(args: argparse.Namespace):
    """The learned segmenter ``--segmenter`` names, or None for the classic pipeline."""
    if args.segmenter == "classic":
        return None
    from semqa.particles.learned import load_segmenter

    return load_segmenter(args.segmenter)


def _write_json(model, path: str | None) -> None:
    if path:
        from pathlib import Path

        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(model.model_dump_json(indent=2) + "\n")
        print(f"wrote {out}")


def _add_analysis_options(p: argparse.ArgumentParser) -> None:
    from semqa.io.limits import DEFAULT_MAX_PIXELS

    p.add_argument("--pixel-size", type=float, metavar="UM", help="µm per pixel of the input images (else from metadata or sidecar)")
    p.add_argument("--force-pixel-size", action="store_true",
                   help="accept a pixel size outside the plausible SEM range (0.1 nm to 100 µm per pixel)")
    p.add_argument("--scale-bar", metavar="LENGTH",
                   help="fallback for files stating no pixel size: measure the data bar's scale bar, whose printed "
                        "label you give (e.g. 10um, 500nm); less accurate than metadata, and the result says so")
    p.add_argument("--sr", action=argparse.BooleanOptionalAction, default=None,
                   help="super-resolve before segmenting (default: off, as in the service and the dashboard; "
                        "the result records whether SR was asked for or defaulted)")
    p.add_argument("--model", metavar="URI", help="generator for --sr (default models:/semqa-generator@production)")
    p.add_argument("--json", metavar="OUT", help="write the result JSON here")
    p.add_argument("--segmenter", default="classic", metavar="classic|learned|URI",
                   help="classic pipeline (default), learned (models:/semqa-segmenter@production), a models:/ URI or a folder")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, help="refuse larger images (decompression bombs)")
    p.add_argument("--roi", metavar="X,Y,W,H", help="analyse this region of every image (input pixels); default: the frame without its data bar")
    p.add_argument("--databar-detection", action=argparse.BooleanOptionalAction, default=True,
                   help="find the instrument's data bar and leave it out (default on)")
    p.add_argument("--csv", metavar="FILE", help="per-particle table (measured and excluded, in µm) to FILE, per-image table to FILE_images.csv")
    p.add_argument("--overlays", metavar="DIR", help="write each analysed image with particle outlines and the analysed region as PNG")
    p.add_argument("--workers", type=_workers, metavar="N", help="processes to analyse images in (default: every core; same result for any N)")


def _analysis_config(args: argparse.Namespace):
    """The :class:`semqa.analysis.AnalysisConfig` of ``--roi`` and ``--databar-detection``."""
    from semqa.analysis import AnalysisConfig
    from semqa.io.region import parse_roi

    return AnalysisConfig(roi=parse_roi(args.roi) if args.roi else None, detect_databar=args.databar_detection)


def _overlay_writer(folder: str | None):
    """A :data:`semqa.analysis.UnitHook` writing overlays under ``folder`` (None: no hook)."""
    if not folder:
        return None
    from pathlib import Path

    from semqa.particles.overlay import draw_overlay, overlay_png

    out = Path(folder)

    def write(key, mg, unit, analysed, labels) -> None:
        target = (out / key).with_suffix(".png")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(overlay_png(draw_overlay(mg.image, analysed, labels, unit.summary.roi, unit.excluded)))

    return write


def _write_csv(tables, path: str | None) -> None:
    if path:
        from semqa.report_tables import write_tables

        for written in write_tables(*tables, path):
            print(f"wrote {written}")


def _print_regions(images) -> None:
    """One line per image whose analysed region is not its full frame, so a cut is never silent."""
    for s in images:
        if s.roi is not None and s.roi.source != "full-frame":
            print(f"{s.name}: analysed x={s.roi.x} y={s.roi.y} {s.roi.width}×{s.roi.height} px ({s.roi.source}: {s.roi.detail})")


def _fmt(value: float | None, unit: str = " µm") -> str:
    return "n/a" if value is None else f"{value:.3g}{unit}"


def _psd_line(label: str, psd) -> str:
    return (
        f"{label}: n={psd.n}  D10={_fmt(psd.d10_um)}  D50={_fmt(psd.d50_um)}  "
        f"D90={_fmt(psd.d90_um)}  span={_fmt(psd.span, '')}  ({psd.weighting}-weighted)"
    )


def _cmd_analyze(args: argparse.Namespace) -> int:
    from semqa.analysis import analyze
    from semqa.io.images import expand_image_paths

    config = _analysis_config(args)
    micrographs = _image_paths(
        expand_image_paths(args.paths), args.pixel_size, args.max_pixels, args.force_pixel_size, args.scale_bar
    )
    result = analyze(
        micrographs, config, upscaler=_upscaler(args), hook=_overlay_writer(args.overlays), segmenter=_segmenter(args),
        workers=args.workers,
    )
    result = _record(result.model_copy(update={"sr_by_default": _sr_by_default(args)}))
    _print_pixel_sizes(result.images)
    _print_regions(result.images)
    print(_psd_line(f"{len(micrographs)} image(s)", result.psd))
    print(_psd_line("volume", result.psd_volume))
    print(f"excluded: {result.exclusions.border} cut by the border, {result.exclusions.too_small} below "
          f"{result.exclusions.min_pixels} px")
    _print_sizing_limit(result.sizing_limit, result.sr, result.sr_by_default)
    for w in result.psd.warnings:
        print(f"warning: {w}")
    for image in result.images:
        for w in image.warnings:
            print(f"warning: {image.name}: {w}")
    _write_json(result, args.json)
    if args.csv:
        from semqa.report_tables import analysis_tables

        _write_csv(analysis_tables(result), args.csv)
    if args.overlays:
        print(f"wrote {len(micrographs)} overlay(s) to {args.overlays}")
    return EXIT_OK


def _print_sizing_limit(limit: SizingLimit | None, sr: bool, sr_by_default: bool) -> None:
    """The smallest size the analysis can measure and which way SR was chosen (issue #13's report line)."""
    if limit is not None:
        print(f"sizing limit: {limit.d_min_um:.3g} µm ({limit.source}); "
              f"super-resolution {'on' if sr else 'off'} ({'default' if sr_by_default else 'flag'})")


def _add_analyze(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("analyze", help="PSD of images (files or folders)")
    p.add_argument("paths", nargs="+", metavar="PATH")
    _add_analysis_options(p)
    p.set_defaults(func=_cmd_analyze)


def _cmd_compare(args: argparse.Namespace) -> int:
    from semqa.analysis import compare, load_lots

    config = _analysis_config(args)
    ref, test = (
        {lot: _image_paths(files, args.pixel_size, args.max_pixels, args.force_pixel_size, args.scale_bar)
         for lot, files in load_lots(folder).items()}
        for folder in (args.reference, args.test)
    )
    report = compare(
        ref, test, config, upscaler=_upscaler(args), hook=_overlay_writer(args.overlays), segmenter=_segmenter(args),
        workers=args.workers,
    )
    report = _record(report.model_copy(update={"sr_by_default": _sr_by_default(args)}))
    _print_pixel_sizes([s for lots in (report.reference, report.test) for res in lots.values() for s in res.images])
    for label, lots in (("reference", report.reference), ("test", report.test)):
        for lot, res in lots.items():
            print(_psd_line(f"{label} {lot}", res.psd))
    summaries = [s for lots in (report.reference, report.test) for res in lots.values() for s in res.images]
    cut = {src: sum(s.roi is not None and s.roi.source == src for s in summaries) for src in ("auto-databar", "roi-flag")}
    print(f"analysed region: data bar left out of {cut['auto-databar']}, region given for {cut['roi-flag']}, "
          f"full frame for the rest of {len(summaries)} image(s) (per image in --csv FILE_images.csv)")
    for w in report.statistics.warnings:
        print(f"warning: {w}")
    _print_sizing_limit(report.statistics.sizing_limit, report.sr, report.sr_by_default)
    print(f"verdict: {report.verdict} — {report.reason}")
    _write_json(report, args.json)
    if args.csv:
        from semqa.report_tables import comparison_tables

        _write_csv(comparison_tables(report), args.csv)
    if args.overlays:
        print(f"wrote overlays to {args.overlays}/<reference|test>/<lot>/")
    return EXIT_OK


def _add_compare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="equivalence of a test product's lots with the reference's (DIR/<lot>/*)")
    p.add_argument("--reference", required=True, metavar="DIR", help="reference (RLD) product: DIR/<lot>/<images>")
    p.add_argument("--test", required=True, metavar="DIR", help="test (generic) product: DIR/<lot>/<images>")
    _add_analysis_options(p)
    p.set_defaults(func=_cmd_compare)


def _cmd_synth(args: argparse.Namespace) -> int:
    from pathlib import Path

    from semqa.sr.degradation import DegradationConfig
    from semqa.synth.scenes import default_products, make_lots, make_pairs, synth_config

    if args.pairs < 0 or (args.pairs == 0 and not args.lots):
        raise InputError("--pairs must be ≥ 1 (or 0 together with --lots)")
    try:
        degradation = DegradationConfig(scale=args.scale)
    except ValueError:
        raise InputError(f"--scale must be 2 or 4, got {args.scale}") from None
    config = synth_config(
        size_px=args.size, pixel_size_um=args.pixel_size, d50_um=args.d50, gsd=args.gsd, degradation=degradation
    )
    out = Path(args.out)
    if args.pairs:
        make_pairs(out, args.pairs, config, seed=args.seed, labels=args.labels, workers=args.workers)
        print(f"wrote {args.pairs} HR/LR pairs: {out / 'hr'} ({config.pixel_size_um:g} µm/px), "
              f"{out / 'lr'} ({config.lr_pixel_size_um:g} µm/px)")
        print(f"truth {out / 'particles.csv'}, manifest {out / 'manifest.csv'}")
    if args.lots:
        lots_dir = out / "lots"
        products = default_products(config.d50_um, config.gsd)
        make_lots(lots_dir, products, lots=args.n_lots, images_per_lot=args.images_per_lot, config=config,
                  seed=args.seed, lot_cv=args.lot_cv, workers=args.workers)
        for name, spec in products.items():
            print(f"product {name} (D50 {spec.d50_um:g} µm, GSD {spec.gsd:g}): {args.n_lots} lots × "
                  f"{args.images_per_lot} images in {lots_dir / name / 'lr'} and {lots_dir / name / 'hr'}")
    return EXIT_OK


def _add_synth(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="synthetic SEM-like HR/LR pairs and product lots with ground truth")
    p.add_argument("out", metavar="OUT", help="output folder (hr/, lr/, particles.csv, manifest.csv, lots/)")
    p.add_argument("--pairs", type=int, default=16, metavar="N", help="HR/LR pairs to make (default 16)")
    p.add_argument("--lots", action="store_true", help="also make lots of products rld, generic-equivalent, generic-shifted (D50 +25 %%) under OUT/lots/")
    p.add_argument("--n-lots", type=int, default=3, metavar="N", help="lots per product (default 3)")
    p.add_argument("--images-per-lot", type=int, default=10, metavar="N", help="images (units) per lot (default 10)")
    p.add_argument("--lot-cv", type=float, default=0.03, metavar="CV", help="between-lot CV of D50 (default 0.03)")
    p.add_argument("--size", type=int, default=768, metavar="PX", help="HR image side in pixels (default 768)")
    p.add_argument("--pixel-size", type=float, default=0.1, metavar="UM", help="HR pixel size in µm (default 0.1)")
    p.add_argument("--scale", type=int, default=4, metavar="2|4", help="LR pixel pitch in HR pixels (default 4)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (same seed, same bytes)")
    p.add_argument("--d50", type=float, default=3.0, metavar="UM", help="median ECD in µm (default 3)")
    p.add_argument("--gsd", type=float, default=1.5, metavar="G", help="geometric SD of ECD (default 1.5)")
    p.add_argument("--labels", action="store_true", help="also write true label images to OUT/labels/")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="processes to render with (output is the same for any N)")
    p.set_defaults(func=_cmd_synth)


def _print_failures(report, what: str) -> None:
    for check, rows in report.failures.items():
        print(f"FAIL {check}: {len(rows)} {what}: {', '.join(rows)}")
    print(f"report: {report.report_dir} (Data Docs {report.data_docs_index})")


def _cmd_validate(args: argparse.Namespace) -> int:
    from validation import ValidationConfig, validate_lots, validate_pairs

    try:
        config = ValidationConfig(
            scale=args.scale, bit_depth=args.bit_depth, hr_pixel_size_um=args.hr_pixel_size, lr_pixel_size_um=args.lr_pixel_size
        )
    except ValueError as exc:
        raise InputError(f"bad validation setting: {exc.errors()[0]['msg']}") from None  # type: ignore[attr-defined]
    if args.lots:
        if args.hr_pixel_size is not None or args.lr_pixel_size is not None:
            raise InputError("--hr-pixel-size and --lr-pixel-size apply to pair sets; with --lots give --pixel-size")
        report = validate_lots(args.dir, config=config, report_dir=args.report, pixel_size_um=args.pixel_size)
        rows, n, n_failed = "image(s)", report.n_images, report.n_failed_images
        print(f"{n} image(s) in {len(report.lots)} lot(s); dataset digest {report.dataset_digest}")
        if report.focus_undetermined:
            print(f"warning: focus undetermined (the noise allows a sharp and a blurred scan) for "
                  f"{len(report.focus_undetermined)} image(s): {', '.join(report.focus_undetermined[:5])}")
    else:
        if args.pixel_size is not None:
            raise InputError("--pixel-size applies to --lots only: give a pair set's as --hr-pixel-size and --lr-pixel-size")
        report = validate_pairs(args.dir, config=config, report_dir=args.report)
        rows, n, n_failed = "pair(s)", report.n_pairs, report.n_failed_pairs
        print(f"{n} pair(s), scale {report.scale} ({report.scale_source}), bit depth {report.bit_depth} "
              f"({report.bit_depth_source}); dataset digest {report.dataset_digest}")
    _print_failures(report, rows)
    if not report.success:
        raise CheckFailed(f"validation failed: {n_failed} of {n} {rows} failed {len(report.failures)} check(s)")
    print(f"validation passed: {n} {rows}")
    return EXIT_OK


def _add_validate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("validate", help="validate a pair set (DIR/hr/*, DIR/lr/*) or, with --lots, images to analyze")
    p.add_argument("dir", metavar="DIR", help="pair set, or with --lots DIR/<lot>/* or a folder of images")
    p.add_argument("--report", metavar="DIR", help="report folder (default DIR/validation_report)")
    p.add_argument("--scale", type=int, metavar="N", help="declared HR/LR scale (default: manifest.csv, else 4)")
    p.add_argument("--bit-depth", type=int, metavar="N", help="declared bits per sample (default: manifest.csv, else the most common)")
    p.add_argument("--lots", action="store_true", help="DIR holds images to analyze: readable, pixel size, exposure, focus")
    p.add_argument("--pixel-size", type=float, metavar="UM", help="with --lots: µm per pixel, overriding metadata")
    p.add_argument("--hr-pixel-size", type=float, metavar="UM", help="pair sets: µm per HR pixel, overriding metadata (e.g. PNGs)")
    p.add_argument("--lr-pixel-size", type=float, metavar="UM", help="pair sets: µm per LR pixel, overriding metadata")
    p.set_defaults(func=_cmd_validate)


def _cmd_register_pairs(args: argparse.Namespace) -> int:
    from validation.fix import register_pair_set

    result = register_pair_set(args.dir, args.out, scale=args.scale)
    for name, shift in result.registered.items():
        print(f"{name}: shift ({shift[0]:+.2f}, {shift[1]:+.2f}) LR px, cropped to the aligned overlap")
    for name, reason in result.skipped.items():
        print(f"skipped {name}: {reason}")
    print(f"wrote {len(result.registered)} registered pair(s) to {args.out}; validate with: semqa validate {args.out}")
    if result.skipped:
        raise CheckFailed(f"{len(result.skipped)} pair(s) could not be registered and were left out")
    return EXIT_OK


def _add_register_pairs(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("register-pairs", help="register every HR/LR pair of DIR and crop it to its aligned overlap in OUT")
    p.add_argument("dir", metavar="DIR", help="pair set (DIR/hr/*, DIR/lr/*)")
    p.add_argument("out", metavar="OUT", help="new pair set (OUT/hr, OUT/lr); must not exist or be empty")
    p.add_argument("--scale", type=int, metavar="N", help="HR/LR scale (default: manifest.csv, else 4)")
    p.set_defaults(func=_cmd_register_pairs)


def _cmd_train(args: argparse.Namespace) -> int:
    from training.config import TrainConfig, demo_config
    from training.train import train

    if args.config and args.preset:
        raise InputError("give --config or --preset, not both")
    config = TrainConfig.from_yaml(args.config) if args.config else demo_config() if args.preset == "demo" else TrainConfig()
    sizes = {k: v for k, v in (("hr_pixel_size_um", args.hr_pixel_size), ("lr_pixel_size_um", args.lr_pixel_size)) if v is not None}
    if sizes:
        config = TrainConfig.validated({**config.model_dump(), **sizes}, "--hr-pixel-size / --lr-pixel-size")
    result = train(
        config,
        args.data,
        max_steps=args.max_steps,
        resume=args.resume,
        hr_only=args.hr_only,
        allow_invalid_data=args.allow_invalid_data,
        progress=True,
    )
    if int(os.environ.get("RANK", "0")) == 0:
        m = result.metrics
        if m:
            print(f"held-out: PSNR {m['val_psnr']:.2f} dB (bicubic {m['val_bicubic_psnr']:.2f} dB), "
                  f"D50 rel. error {m.get('val_d50_rel_error', float('nan')):.3f}")
        print(f"run id: {result.run_id}")
        print(f"registered: semqa-generator version {result.model_version}" if result.model_version else "not registered")
        if not result.completed:
            print(f"stopped at step {result.steps}; run again to continue from the checkpoint")
    return EXIT_OK


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a super-resolution generator, log to MLflow, register a version")
    p.add_argument("--data", required=True, metavar="DIR", help="pair set DIR/hr, DIR/lr (or HR images with --hr-only)")
    p.add_argument("--config", metavar="FILE", help="training configuration (YAML, fields of training.config.TrainConfig)")
    p.add_argument("--preset", choices=["demo"], help="a built-in configuration: 'demo' trains in a few minutes on CPU")
    p.add_argument("--max-steps", type=int, metavar="N", help="stop at step N (a later run continues from the checkpoint)")
    p.add_argument("--hr-only", action="store_true", help="synthesise LR images from HR ones (semqa.sr.degradation)")
    p.add_argument("--allow-invalid-data", action="store_true", help="train even if the data fails validation")
    p.add_argument("--hr-pixel-size", type=float, metavar="UM",
                   help="µm per HR pixel of every pair, overriding metadata (e.g. PNGs); validated and logged with the run")
    p.add_argument("--lr-pixel-size", type=float, metavar="UM", help="µm per LR pixel of every pair, overriding metadata")
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True, help="continue from a checkpoint")
    p.set_defaults(func=_cmd_train)


def _sr_output_path(src, out, folder_mode: bool):
    from pathlib import Path

    out = Path(out)
    suffix = src.suffix.lower() if src.suffix.lower() in (".tif", ".tiff", ".png") else ".png"
    if folder_mode or out.is_dir() or not out.suffix:
        return out / (src.stem + suffix)
    return out


def _sr_plan(src, out) -> dict:
    """Input → output path for ``super-resolve``, refused before any work where it would
    overwrite or re-read an input: OUT equal to or inside a folder IN, an output that is an
    input, or two inputs that would write one output (``x.bmp``/``x.jpg``, ``y.tif``/``y.TIF``;
    compared case-folded, as Windows and macOS file systems do)."""
    from pathlib import Path

    from semqa.io.images import expand_image_paths

    src, out = Path(src), Path(out)
    files = expand_image_paths([src])
    folder_mode = src.is_dir()
    if folder_mode and (out.resolve() == src.resolve() or src.resolve() in out.resolve().parents):
        raise InputError(f"output folder {out} is {'' if out.resolve() == src.resolve() else 'inside '}the input "
                         f"folder {src}: outputs would mix with (and later be read as) inputs; choose another folder")
    plan = {path: _sr_output_path(path, out, folder_mode) for path in files}
    inputs = {path.resolve() for path in files}
    written: dict[str, object] = {}
    for path, dst in plan.items():
        if dst.resolve() in inputs:
            raise InputError(f"output {dst} would overwrite the input {path}")
        key = str(dst.resolve()).casefold()
        if key in written:
            raise InputError(f"{written[key]} and {path} would both be written to {dst}; rename one of them")
        written[key] = path
    return plan


def _cmd_super_resolve(args: argparse.Namespace) -> int:
    from semqa.io.images import read_image, write_image
    from semqa.sr.inference import load_upscaler

    plan = _sr_plan(args.input, args.output)
    upscaler = load_upscaler(args.model, tile_size=args.tile_size)
    for path, dst in plan.items():
        mg = read_image(path, force_pixel_size=args.force_pixel_size)
        sr = upscaler.upscale(mg.image)
        px = mg.pixel_size_um / upscaler.scale if mg.pixel_size_um is not None else None
        dst = write_image(dst, sr, pixel_size_um=px, bit_depth=16 if mg.bit_depth == 16 else 8)
        print(f"{path} → {dst} ({sr.shape[1]}×{sr.shape[0]}"
              + (f", {px:.4g} µm/px" if px is not None else ", pixel size unknown") + ")")
    ref = upscaler.ref
    print(f"model: {ref.name} version {ref.version or '-'} ({ref.model_uri}), ×{upscaler.scale}")
    return EXIT_OK


def _add_super_resolve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("super-resolve", help="super-resolve an image or a folder of images")
    p.add_argument("input", metavar="IN", help="image file or folder")
    p.add_argument("output", metavar="OUT", help="output file (for one image) or folder")
    p.add_argument("--model", metavar="URI", help="models:/NAME@ALIAS, models:/NAME/VERSION or a folder (default production)")
    p.add_argument("--tile-size", type=int, default=256, metavar="PX", help="LR window side of tiled inference (bounds memory)")
    p.add_argument("--force-pixel-size", action="store_true",
                   help="accept a pixel size outside the plausible SEM range (0.1 nm to 100 µm per pixel)")
    p.set_defaults(func=_cmd_super_resolve)


def _cmd_dashboard(args: argparse.Namespace) -> int:
    from pathlib import Path

    import dashboard

    env = dict(os.environ)
    if args.lots_root:
        if not Path(args.lots_root).is_dir():
            raise InputError(f"--lots-root {args.lots_root} is not a folder")
        env["SEMQA_DASHBOARD_LOTS_ROOT"] = str(Path(args.lots_root).resolve())
    if args.service_url:
        env["SEMQA_DASHBOARD_SERVICE_URL"] = args.service_url
    app = Path(dashboard.__file__).with_name("app.py")
    cmd = [
        sys.executable, "-m", "streamlit", "run", str(app),
        "--server.port", str(args.port), "--server.address", args.address,
        "--server.headless", "true", "--browser.gatherUsageStats", "false",
        "--server.fileWatcherType", "none", "--client.toolbarMode", "minimal",
    ]
    print(f"semqa dashboard on http://{args.address}:{args.port} (Ctrl+C stops it)", flush=True)
    # Replace this process, so a stop signal reaches the Streamlit server itself.
    os.execve(sys.executable, cmd, env)


def _add_dashboard(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dashboard", help="start the QA dashboard (Streamlit) to compare a generic with its RLD")
    p.add_argument("--port", type=int, default=8501, metavar="N", help="port to listen on (default 8501)")
    p.add_argument("--address", default="127.0.0.1", metavar="HOST", help="address to bind (default 127.0.0.1)")
    p.add_argument("--lots-root", metavar="DIR", help="server folder of products (<product>/<lot>/<images>) offered in the page")
    p.add_argument("--service-url", metavar="URL", help="run the analysis through the semqa service at URL")
    p.set_defaults(func=_cmd_dashboard)


def _print_lineage(report, as_json: bool) -> None:
    from semqa.registry.store import mask_credentials

    print(mask_credentials(report.model_dump_json(indent=2) if as_json else report.text()))


def _cmd_models(args: argparse.Namespace) -> int:
    from pathlib import Path

    from semqa.registry import promotion
    from semqa.registry.lineage import LineageBroken, trace_version

    if args.models_command == "list":
        from semqa.registry.store import shown_tracking_uri

        table = promotion.list_versions()
        if not args.json:  # JSON output stays a plain list of records
            print(f"store: {shown_tracking_uri()}")
        if args.json:
            print(table.to_json(orient="records", indent=2))
        elif table.empty:
            print("no registered versions")
        else:
            print(table.drop(columns=["run_id"]).to_string(index=False, na_rep="-"))
    elif args.models_command == "promote":
        entry = promotion.promote(
            args.version, args.to, args.reason, args.force,
            eval_data=Path(args.eval_data) if args.eval_data else None,
        )
        for gate in entry.gates:
            print(f"  [{'pass' if gate.passed else 'FAIL'}] {gate.detail}")
        print(f"version {entry.version} is now {entry.alias}" + (" (FORCED past failed gates)" if entry.forced and not entry.gates_passed else "")
              + (f"; v{entry.archived_version} archived" if entry.archived_version else "")
              + f"; evaluation run {entry.eval_run_id}, set {entry.eval_set_digest}")
    elif args.models_command == "rollback":
        entry = promotion.rollback(args.reason)
        print(f"production rolled back from v{entry.from_version} to v{entry.version}; v{entry.archived_version} archived")
    elif args.models_command == "lineage":
        try:
            _print_lineage(trace_version(args.version), args.json)
        except LineageBroken as exc:
            _print_lineage(exc.report, args.json)
            raise
    elif args.models_command == "audit":
        from semqa.registry.audit import export_audit, read_audit

        text = export_audit(read_audit(), args.format, Path(args.out) if args.out else None)
        print(f"wrote {args.out}" if args.out else text, end="" if not args.out else "\n")
    return EXIT_OK


def _add_models(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="model registry: list, promote behind gates, rollback, lineage, audit")
    msub = p.add_subparsers(dest="models_command", required=True, parser_class=_Parser)
    ls = msub.add_parser("list", help="versions, aliases, gate metrics and gate status")
    ls.add_argument("--json", action="store_true", help="print JSON records")
    pr = msub.add_parser("promote", help="move staging/production onto VERSION if its gates pass")
    pr.add_argument("version", metavar="VERSION")
    pr.add_argument("--to", required=True, choices=["staging", "production"])
    pr.add_argument("--reason", required=True, metavar="TEXT", help="why (kept in the audit trail)")
    pr.add_argument("--force", action="store_true", help="promote even if a gate fails (recorded as forced)")
    pr.add_argument("--eval-data", metavar="DIR", help="evaluation pair folder (default: the seeded synthetic set)")
    rb = msub.add_parser("rollback", help="give production back to the version it replaced")
    rb.add_argument("--reason", required=True, metavar="TEXT")
    li = msub.add_parser("lineage", help="training run, data, validation report and code behind VERSION")
    li.add_argument("version", metavar="VERSION")
    li.add_argument("--json", action="store_true")
    au = msub.add_parser("audit", help="export the audit trail of promotions and rollbacks")
    au.add_argument("--format", choices=["csv", "json"], default="csv")
    au.add_argument("--out", metavar="FILE", help="write here instead of stdout")
    p.set_defaults(func=_cmd_models)


def _cmd_lineage(args: argparse.Namespace) -> int:
    from semqa.registry.lineage import LineageBroken, trace_result

    try:
        _print_lineage(trace_result(args.result, args.images), args.json)
    except LineageBroken as exc:
        _print_lineage(exc.report, args.json)
        raise
    return EXIT_OK


def _add_lineage(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lineage", help="the chain behind a result: inputs, model, training run, data, code")
    p.add_argument("result", metavar="RESULT.json")
    p.add_argument("--images", nargs="+", metavar="DIR", default=[], help="folders holding the input images (if moved)")
    p.add_argument("--json", action="store_true", help="print the chain as JSON")
    p.set_defaults(func=_cmd_lineage)


def _cmd_service(args: argparse.Namespace) -> int:
    if args.service_command == "build":
        from service.build import build_bento

        bento = build_bento(args.model)
        print(f"built Bento {bento.tag} (model {', '.join(str(m.tag) for m in bento.info.all_models)})")
        print(f"serve it with: semqa service serve --bento {bento.tag}")
        return EXIT_OK
    import shutil
    import tempfile

    import bentoml

    from service.build import PROJECT_ROOT
    from service.config import load_settings

    load_settings().token()  # refuse to start without a token, before starting anything
    target = args.bento or "service.service:Semqa"
    print(f"serving {target} on http://{args.host}:{args.port} (Ctrl+C stops)")
    # BentoML's proxy to the generator service makes a bentoml-client-* folder under TMPDIR in
    # every worker and removes it only on an orderly exit, which a worker stopped by a signal
    # skips: the server's temporary files go to a folder of its own, removed when it stops.
    tmp = tempfile.mkdtemp(prefix="semqa-service-tmp-")
    os.environ["TMPDIR"] = tmp  # the workers inherit it
    tempfile.tempdir = tmp  # and this process (BentoML's arbiter) uses it too
    try:
        bentoml.serve(target, host=args.host, port=args.port, working_dir=str(PROJECT_ROOT), blocking=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return EXIT_OK


def _add_service(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("service", help="the HTTP service (BentoML): build a Bento, serve")
    ssub = p.add_subparsers(dest="service_command", required=True, parser_class=_Parser)
    b = ssub.add_parser("build", help="import the production generator into the BentoML model store and build a Bento")
    b.add_argument("--model", metavar="URI", help="generator to package (default SEMQA_MODEL_URI or models:/semqa-generator@production)")
    s = ssub.add_parser("serve", help="serve the API (needs SEMQA_API_TOKEN or SEMQA_API_TOKEN_FILE)")
    s.add_argument("--port", type=int, default=3000)
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default loopback only)")
    s.add_argument("--bento", metavar="TAG", help="serve a built Bento instead of the checkout (no MLflow needed)")
    p.set_defaults(func=_cmd_service)


def _cmd_demo(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from semqa.demo import QUICK, DemoOptions, run_demo

    given = {k: getattr(args, k) for k in ("pairs", "images_per_lot", "seed", "workers") if getattr(args, k) is not None}
    try:
        options = DemoOptions.model_validate({**(QUICK if args.quick else DemoOptions()).model_dump(), **given})
    except ValidationError as exc:
        err = exc.errors()[0]
        raise InputError(f"bad demo option --{str(err['loc'][0]).replace('_', '-')}: {err['msg']}") from None
    run_demo(args.out, options)
    return EXIT_OK


def _add_demo(sub: argparse._SubParsersAction) -> None:
    duration = "about 4.5 min (4 min 16–38 s as a whole process) on an idle 2-core machine, 18 min measured at a load average of 5; see the README"
    p = sub.add_parser("demo", help=f"the main job end to end on generated data ({duration})",
                       description=f"The main job end to end on generated data with known ground truth: {duration}.")
    p.add_argument("--out", default="demo_out", metavar="DIR", help="output folder (default demo_out; remade each run)")
    p.add_argument("--quick", action="store_true",
                   help="the same path at a reduced scale (16 pairs, 4 units per lot, 384 px frames, 250 training steps); what the tests run")
    p.add_argument("--pairs", type=int, metavar="N", help="training pairs to generate (default 48)")
    p.add_argument("--images-per-lot", type=int, metavar="N", help="units per lot (default 10; FDA PBE asks ≥ 10)")
    p.add_argument("--seed", type=int)
    p.add_argument("--workers", type=int, metavar="N", help="processes for synthesis and segmentation (default: every core)")
    p.set_defaults(func=_cmd_demo)


def _cmd_segmenter(args: argparse.Namespace) -> int:
    from pathlib import Path

    from semqa.registry import promotion
    from semqa.registry.store import SEGMENTER_MODEL_NAME

    if args.segmenter_command == "train":
        from training.segmenter.config import SegmenterTrainConfig, build_config
        from training.segmenter.train import train_segmenter

        overrides = {k: v for k, v in (("steps", args.steps), ("synthetic_scenes", args.synthetic_scenes), ("init_from", args.init_from)) if v is not None}
        config = SegmenterTrainConfig.from_yaml(args.config, **overrides) if args.config else build_config(overrides)
        result = train_segmenter(config, annotated_dir=args.annotated, heldout_dir=args.heldout, pixel_size_um=args.pixel_size)
        print(f"run {result.run_id}: {result.steps} steps; registered {SEGMENTER_MODEL_NAME} version {result.model_version}")
        for label, score in (("learned", result.heldout), ("classic", result.heldout_classic)):
            if score is not None:
                print(f"held-out {label}: count error {score.count_rel_error:.3f}, D50 error {_fmt(score.d50_rel_error, '')}, "
                      f"precision {score.precision:.3f}, recall {score.recall:.3f}")
    elif args.segmenter_command == "promote":
        from semqa.registry.segmenter_gates import SEGMENTER_GATES, SegmenterGateConfig, segmenter_eval_set, segmenter_evaluator

        gates = SegmenterGateConfig()
        entry = promotion.promote(
            args.version, args.to, args.reason, args.force, evaluator=segmenter_evaluator,
            eval_data=Path(args.eval_data) if args.eval_data else segmenter_eval_set(gates),
            config=gates, name=SEGMENTER_MODEL_NAME, policy=SEGMENTER_GATES,
        )
        for gate in entry.gates:
            print(f"  [{'pass' if gate.passed else 'FAIL'}] {gate.detail}")
        print(f"{SEGMENTER_MODEL_NAME} version {entry.version} is now {entry.alias}; evaluation run {entry.eval_run_id}, set {entry.eval_set_digest}")
    elif args.segmenter_command == "list":
        table = promotion.list_versions(SEGMENTER_MODEL_NAME)
        print(table.dropna(axis=1, how="all").drop(columns=["run_id"]).to_string(index=False, na_rep="-") if not table.empty else "no registered versions")
    return EXIT_OK


def _add_segmenter(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("segmenter", help="learned particle segmenter: train, promote behind gates, list")
    ssub = p.add_subparsers(dest="segmenter_command", required=True, parser_class=_Parser)
    t = ssub.add_parser("train", help="train (synthetic and/or annotated images), log to MLflow, register semqa-segmenter")
    t.add_argument("--annotated", metavar="DIR", help="annotated images: DIR/images/*, DIR/labels/* (label images, masks or LabelMe JSON)")
    t.add_argument("--heldout", metavar="DIR", help="annotated held-out set (default: split of --annotated, else synthetic)")
    t.add_argument("--init-from", metavar="URI", help="fine-tune this segmenter (models:/ URI or folder)")
    t.add_argument("--config", metavar="FILE.yaml", help="SegmenterTrainConfig fields")
    t.add_argument("--steps", type=int)
    t.add_argument("--synthetic-scenes", type=int, help="randomized synthetic training scenes (0: annotated only)")
    t.add_argument("--pixel-size", type=float, metavar="UM", help="µm per pixel of annotated images without metadata")
    pr = ssub.add_parser("promote", help="move staging/production onto VERSION if its gates pass")
    pr.add_argument("version")
    pr.add_argument("--to", required=True, choices=["staging", "production"])
    pr.add_argument("--reason", required=True)
    pr.add_argument("--force", action="store_true", help="move the alias even if a gate fails (audited)")
    pr.add_argument("--eval-data", metavar="DIR", help="annotated evaluation set (default: the seeded synthetic one)")
    ssub.add_parser("list", help="versions, aliases, gate status")
    p.set_defaults(func=_cmd_segmenter)


_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_demo, _add_analyze, _add_compare, _add_synth, _add_validate, _add_register_pairs, _add_train, _add_super_resolve, _add_dashboard, _add_models, _add_lineage, _add_service, _add_segmenter]


if __name__ == "__main__":
    raise SystemExit(main())
