"""The ``semqa`` command line.

Exit codes (DESIGN.md): 0 success, 1 a check failed (validation, promotion gate, lineage),
2 bad usage or bad input, with a one-line reason on stderr and no traceback.

Each command is one ``_add_<name>`` function that declares its arguments and a handler;
handlers import what they need lazily so ``semqa --help`` stays fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from semqa.errors import CheckFailed, InputError, SemqaError

EXIT_OK, EXIT_CHECK_FAILED, EXIT_BAD_INPUT = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see --help)\n")


def _fail(code: int, message: str) -> int:
    print(f"semqa: {message.splitlines()[0] if message else 'error'}", file=sys.stderr)
    return code


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="semqa", description="Super-resolved SEM particle size analysis for QA.")
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
        return _fail(70, f"internal error: {type(exc).__name__}: {exc} (set SEMQA_DEBUG=1 for the traceback)")


# --- commands -------------------------------------------------------------------------
# One function per command; keep each thin: parse, call the core or an app, print.


def _read_micrographs(paths, pixel_size: float | None = None, max_pixels: int | None = None) -> list:
    from semqa.io.images import DEFAULT_MAX_PIXELS, read_image

    return [read_image(p, pixel_size_um=pixel_size, max_pixels=max_pixels or DEFAULT_MAX_PIXELS) for p in paths]


def _read_lots(folder, pixel_size: float | None = None, max_pixels: int | None = None) -> dict:
    """A product folder ``DIR/<lot>/<images>`` read as lot name → micrographs."""
    from semqa.analysis import load_lots

    return {lot: _read_micrographs(files, pixel_size, max_pixels) for lot, files in load_lots(folder).items()}


def _sr_by_default(args: argparse.Namespace) -> bool:
    return args.sr is None


def _upscaler(args: argparse.Namespace):
    from semqa.analysis import DEFAULT_SR

    if not (DEFAULT_SR if args.sr is None else args.sr):
        return None
    from semqa.sr.inference import load_upscaler

    return load_upscaler(args.model)


def _write_json(model, path: str | None) -> None:
    if path:
        from pathlib import Path

        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(model.model_dump_json(indent=2) + "\n")
        print(f"wrote {out}")


def _add_analysis_options(p: argparse.ArgumentParser) -> None:
    from semqa.io.images import DEFAULT_MAX_PIXELS

    p.add_argument("--pixel-size", type=float, metavar="UM", help="µm per pixel of the input images (else from metadata or sidecar)")
    p.add_argument("--sr", action=argparse.BooleanOptionalAction, default=None,
                   help="super-resolve before segmenting (default: off, as in the service and the dashboard; "
                        "the result records whether SR was asked for or defaulted)")
    p.add_argument("--model", metavar="URI", help="generator for --sr (default models:/semqa-generator@production)")
    p.add_argument("--json", metavar="OUT", help="write the result JSON here")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, help="refuse larger images (decompression bombs)")


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

    micrographs = _read_micrographs(expand_image_paths(args.paths), args.pixel_size, args.max_pixels)
    result = analyze(micrographs, upscaler=_upscaler(args))
    result.sr_by_default = _sr_by_default(args)
    print(_psd_line(f"{len(micrographs)} image(s)", result.psd))
    print(_psd_line("volume", result.psd_volume))
    print(f"excluded: {result.exclusions.border} cut by the border, {result.exclusions.too_small} below "
          f"{result.exclusions.min_pixels} px")
    if result.sizing_limit is not None:
        print(f"sizing limit: {result.sizing_limit.d_min_um:.3g} µm ({result.sizing_limit.source}); "
              f"super-resolution {'on' if result.sr else 'off'} ({'default' if result.sr_by_default else 'flag'})")
    for w in result.psd.warnings:
        print(f"warning: {w}")
    _write_json(result, args.json)
    return EXIT_OK


def _add_analyze(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("analyze", help="PSD of images (files or folders)")
    p.add_argument("paths", nargs="+", metavar="PATH")
    _add_analysis_options(p)
    p.set_defaults(func=_cmd_analyze)


def _cmd_compare(args: argparse.Namespace) -> int:
    from semqa.analysis import compare

    ref = _read_lots(args.reference, args.pixel_size, args.max_pixels)
    test = _read_lots(args.test, args.pixel_size, args.max_pixels)
    report = compare(ref, test, upscaler=_upscaler(args))
    report.sr_by_default = _sr_by_default(args)
    for label, lots in (("reference", report.reference), ("test", report.test)):
        for lot, res in lots.items():
            print(_psd_line(f"{label} {lot}", res.psd))
    for w in report.statistics.warnings:
        print(f"warning: {w}")
    limit = report.statistics.sizing_limit
    if limit is not None:
        print(f"sizing limit: {limit.d_min_um:.3g} µm ({limit.source}); "
              f"super-resolution {'on' if report.sr else 'off'} ({'default' if report.sr_by_default else 'flag'})")
    print(f"verdict: {report.verdict} — {report.reason}")
    _write_json(report, args.json)
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
                  f"D50 rel. error {m.get('val_d50_rel_err', float('nan')):.3f}")
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
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True, help="continue from a checkpoint")
    p.set_defaults(func=_cmd_train)


def _sr_output_path(src, out, folder_mode: bool):
    from pathlib import Path

    out = Path(out)
    suffix = src.suffix.lower() if src.suffix.lower() in (".tif", ".tiff", ".png") else ".png"
    if folder_mode or out.is_dir() or not out.suffix:
        return out / (src.stem + suffix)
    return out


def _cmd_super_resolve(args: argparse.Namespace) -> int:
    from pathlib import Path

    from semqa.io.images import expand_image_paths, read_image, write_image
    from semqa.sr.inference import load_upscaler

    src = Path(args.input)
    files = expand_image_paths([src])
    folder_mode = src.is_dir()
    if not folder_mode and Path(args.output).resolve() == src.resolve():
        raise InputError("output would overwrite the input")
    upscaler = load_upscaler(args.model, tile_size=args.tile_size)
    for path in files:
        mg = read_image(path)
        sr = upscaler.upscale(mg.image)
        px = mg.pixel_size_um / upscaler.scale if mg.pixel_size_um is not None else None
        dst = write_image(_sr_output_path(path, args.output, folder_mode), sr, pixel_size_um=px,
                          bit_depth=16 if mg.bit_depth == 16 else 8)
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


def gate_evaluator(model_uri: str, eval_dir):
    """Evaluate a registered generator on a pair folder for the promotion gates.

    The :data:`semqa.registry.promotion.Evaluator` the CLI (and ``semqa demo``) passes to
    :func:`semqa.registry.promotion.promote`: :func:`training.evaluate.evaluate_generator` on
    :func:`training.data.load_pairs`.
    """
    from semqa.sr.inference import load_upscaler
    from training.data import load_pairs
    from training.evaluate import evaluate_generator

    upscaler = load_upscaler(model_uri, device="cpu")
    return evaluate_generator(upscaler, load_pairs(eval_dir, upscaler.scale))


def _print_lineage(report, as_json: bool) -> None:
    print(report.model_dump_json(indent=2) if as_json else report.text())


def _cmd_models(args: argparse.Namespace) -> int:
    from pathlib import Path

    from semqa.registry import promotion
    from semqa.registry.lineage import LineageBroken, trace_version

    if args.models_command == "list":
        table = promotion.list_versions()
        if args.json:
            print(table.to_json(orient="records", indent=2))
        elif table.empty:
            print("no registered versions")
        else:
            print(table.drop(columns=["run_id"]).to_string(index=False, na_rep="-"))
    elif args.models_command == "promote":
        entry = promotion.promote(
            args.version, args.to, args.reason, args.force,
            evaluator=gate_evaluator, eval_data=Path(args.eval_data) if args.eval_data else None,
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
    import bentoml

    from service.build import PROJECT_ROOT
    from service.config import load_settings

    load_settings().token()  # refuse to start without a token, before starting anything
    target = args.bento or "service.service:Semqa"
    print(f"serving {target} on http://{args.host}:{args.port} (Ctrl+C stops)")
    bentoml.serve(target, host=args.host, port=args.port, working_dir=str(PROJECT_ROOT), blocking=True)
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


def _truth_d50(lot_dir, lot: str) -> float:
    """True number-weighted D50 of a generated lot's whole particles (synth ground truth)."""
    import pandas as pd

    from semqa.stats.psd import d_values

    truth = pd.read_csv(lot_dir / "particles.csv")
    inside = truth[(truth["lot"] == lot) & ~truth["touches_border"]]
    return float(d_values(inside["ecd_um"].to_numpy(), "number", quantiles=(0.5,))[0])


def _cmd_demo(args: argparse.Namespace) -> int:
    """The main job on embedded defaults, each step printed with where its output went."""
    import shutil
    import time
    from pathlib import Path

    from dashboard.report import render_html, render_pdf, summarize as summarize_report
    from semqa.registry import promotion
    from semqa.analysis import analyze, compare
    from semqa.sr.inference import load_upscaler
    from semqa.registry.lineage import trace_result, trace_version
    from semqa.registry.store import configure_tracking
    from semqa.synth.scenes import SynthConfig, make_lots, make_pairs
    from training.config import demo_config
    from training.train import train
    from validation.run import validate_pairs

    out = Path(args.out).resolve()
    if out.exists():
        if not (out / ".semqa-demo").is_file():
            raise InputError(f"{out} exists and is not a semqa demo folder; choose another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / ".semqa-demo").write_text("made by semqa demo; deleted and remade by the next run\n")
    started = time.monotonic()

    def step(n: int, text: str) -> None:
        print(f"\n[{n}/7] {text}  (t={time.monotonic() - started:.0f} s)", flush=True)

    # Lots at D50 = 2 µm: 5 LR pixels of 0.4 µm, small enough that a low-resolution scan
    # mis-sizes them and super-resolution has something to recover.
    synth = SynthConfig(d50_um=2.0)
    step(1, f"synthesizing {args.pairs} HR/LR training pairs and 3 products × 3 lots × {args.images_per_lot} images")
    pairs = make_pairs(out / "pairs", args.pairs, synth, seed=args.seed, workers=2)
    lots = make_lots(out / "lots", lots=3, images_per_lot=args.images_per_lot, config=synth, seed=args.seed, workers=2)
    print(f"pairs: {pairs}\nlots:  {lots}/<product>/{{hr,lr}}/<lot>/")

    step(2, "validating the pairs with Great Expectations")
    report = validate_pairs(pairs, report_dir=out / "validation")
    print(f"{report.n_pairs} pairs, {report.n_failed_pairs} failed; dataset {report.dataset_digest}")
    print(f"data docs: {report.data_docs_index}")
    if not report.success:
        raise CheckFailed(f"demo data failed validation: {sorted(report.failures)}")

    step(3, "training the demo generator (MLflow run, registered version)")
    print(f"tracking store: {configure_tracking()}")
    trained = train(demo_config(), pairs, progress=True)
    m = trained.metrics
    print(f"run {trained.run_id}: registered semqa-generator v{trained.model_version}; held-out PSNR "
          f"{m.get('val_psnr', float('nan')):.2f} dB vs bicubic {m.get('val_bicubic_psnr', float('nan')):.2f} dB")

    step(4, "promoting through staging to production behind the gates")
    for alias in ("staging", "production"):
        entry = promotion.promote(trained.model_version, alias, "semqa demo", evaluator=gate_evaluator)
        for gate in entry.gates:
            print(f"  [{'pass' if gate.passed else 'FAIL'}] {gate.detail}")
        print(f"v{entry.version} → {alias}")
    upscaler = load_upscaler()

    step(5, "analyzing RLD lot1: low resolution directly, super-resolved, and high resolution")
    lot1 = {res: sorted((lots / "rld" / res / "lot1").glob("*.tif")) for res in ("lr", "hr")}
    runs = {
        "LR direct": analyze(_read_micrographs(lot1["lr"])),
        "SR (production model)": analyze(_read_micrographs(lot1["lr"]), upscaler=upscaler),
        "HR scan": analyze(_read_micrographs(lot1["hr"])),
    }
    truth = _truth_d50(lots / "rld", "lot1")
    print(f"true D50 {truth:.3f} µm")
    for label, res in runs.items():
        d50 = res.psd.d50_um
        err = f"{(d50 - truth) / truth:+.1%}" if d50 else "n/a"
        print(f"  {label:<22} n={res.psd.n:<5} D50={_fmt(d50)}  error {err}")
    result_json = out / "analysis_rld_lot1_sr.json"
    _write_json(runs["SR (production model)"], str(result_json))

    step(6, "comparing each generic with the RLD (super-resolved, PBE on D50 and span)")
    reference = _read_lots(lots / "rld" / "lr")
    reports = {}
    for generic in ("generic-equivalent", "generic-shifted"):
        reports[generic] = compare(reference, _read_lots(lots / generic / "lr"), upscaler=upscaler)
        rep = reports[generic]
        print(f"  {generic}: {rep.verdict} — {rep.reason}")
        _write_json(rep, str(out / f"compare_rld_vs_{generic}.json"))

    step(7, "report and lineage")
    rep = reports["generic-equivalent"]
    chain = trace_version(trained.model_version)
    summary = summarize_report(rep, runs["SR (production model)"].config, chain)
    title = "RLD vs generic-equivalent (semqa demo)"
    (out / "report.html").write_text(render_html(rep, summary, title))
    (out / "report.pdf").write_bytes(render_pdf(rep, summary, title))
    print(f"report: {out / 'report.html'} and {out / 'report.pdf'}")
    print(trace_result(result_json).text())
    print(f"\ndone in {time.monotonic() - started:.0f} s; everything is under {out} and the registry in mlruns/")
    return EXIT_OK


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the main job end to end on generated data (about 5-10 minutes on 2 cores)")
    p.add_argument("--out", default="demo_out", metavar="DIR", help="output folder (default demo_out; remade each run)")
    p.add_argument("--pairs", type=int, default=48, metavar="N", help="training pairs to generate")
    p.add_argument("--images-per-lot", type=int, default=10, metavar="N", help="units per lot (FDA PBE asks ≥ 10)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_demo)


_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_demo, _add_analyze, _add_compare, _add_synth, _add_validate, _add_register_pairs, _add_train, _add_super_resolve, _add_dashboard, _add_models, _add_lineage, _add_service]


if __name__ == "__main__":
    raise SystemExit(main())
