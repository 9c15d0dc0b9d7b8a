"""``semqa demo``: the main job end to end on generated data with known ground truth.

Synthesise pairs and product lots → validate the pairs (Great Expectations) → train a generator
(MLflow run, registered version) → promote it through staging to production behind the gates
→ analyse an RLD lot three ways against the truth → compare two generics with the RLD →
write the report and print the lineage. Like the CLI, this module may call the apps
(training, validation, the dashboard's report); see docs/architecture.md.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from pydantic import BaseModel

from semqa.analysis import analyze, compare, load_lots
from semqa.errors import CheckFailed, InputError
from semqa.io.images import Micrograph, read_image
from semqa.stats.psd import d_values

#: Marks a folder the demo made, so it only ever deletes its own output.
MARKER = ".semqa-demo"
STEPS = 7


def _read(paths: Sequence[Path]) -> list[Micrograph]:
    return [read_image(p) for p in paths]


def _read_lots(folder: Path) -> dict[str, list[Micrograph]]:
    return {lot: _read(files) for lot, files in load_lots(folder).items()}


def _bar(desc: str) -> Callable[[int, int], None]:
    """A ``progress(done, total)`` callback drawing a tqdm bar (count, rate, time left)."""
    from tqdm import tqdm

    bar = None

    def show(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc=f"  {desc}", unit="image", dynamic_ncols=True)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return show


def _write_recorded(result: BaseModel, path: Path) -> None:
    """Record ``result`` in the tracking store (so lineage can check the file), then write it."""
    from semqa.registry.records import record_result

    result = record_result(result)
    path.write_text(result.model_dump_json(indent=2) + "\n")
    print(f"wrote {path} (recorded as run {result.lineage.record.run_id})")


def truth_d50(product_dir: Path, lot: str) -> float:
    """True number-weighted D50 of a generated lot's whole particles (synth ground truth)."""
    import pandas as pd

    truth = pd.read_csv(product_dir / "particles.csv")
    inside = truth[(truth["lot"] == lot) & ~truth["touches_border"]]
    return float(d_values(inside["ecd_um"].to_numpy(), "number", quantiles=(0.5,))[0])


def _fresh_folder(out: Path) -> Path:
    out = out.resolve()
    if out.exists():
        if not (out / MARKER).is_file():
            raise InputError(f"{out} exists and is not a semqa demo folder; choose another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / MARKER).write_text("made by semqa demo; deleted and remade by the next run\n")
    return out


def run_demo(out: str | Path = "demo_out", *, pairs: int = 48, images_per_lot: int = 10, seed: int = 0) -> Path:
    """Run the demo into ``out`` (remade each run) and the configured MLflow store; returns ``out``."""
    from dashboard.report import render_html, render_pdf, summarize as summarize_report
    from semqa.registry import promotion
    from semqa.registry.lineage import trace_result, trace_version
    from semqa.registry.store import configure_tracking, shown_tracking_uri
    from semqa.sr.inference import load_upscaler
    from semqa.synth.databar import rewrite_as_instrument
    from semqa.synth.scenes import SynthConfig, make_lots, make_pairs
    from training.config import demo_config
    from training.train import train
    from validation.run import validate_pairs

    out = _fresh_folder(Path(out))
    started = time.monotonic()

    def step(n: int, text: str) -> None:
        print(f"\n[{n}/{STEPS}] {text}  (t={time.monotonic() - started:.0f} s)", flush=True)

    # Lots at D50 = 2 µm: 5 LR pixels of 0.4 µm, small enough that a low-resolution scan
    # mis-sizes them and super-resolution has something to recover.
    synth = SynthConfig(d50_um=2.0)
    step(1, f"synthesizing {pairs} HR/LR training pairs and 3 products × 3 lots × {images_per_lot} images")
    pair_dir = make_pairs(out / "pairs", pairs, synth, seed=seed, workers=2, progress=_bar("training pairs"))
    generated = make_lots(out / "lots-generated", lots=3, images_per_lot=images_per_lot, config=synth, seed=seed, workers=2,
                          progress=_bar("product lots"))
    # The lots as instruments write them: the pixel size only in the vendor's own TIFF tag
    # (Zeiss CZ_SEM for the RLD, FEI [Scan] for the generics) and a data bar under each frame;
    # every analysis below has to find both by itself.
    lots = out / "lots"
    for product in sorted(d.name for d in generated.iterdir() if d.is_dir()):
        rewrite_as_instrument(generated / product, lots / product, vendor="zeiss" if product == "rld" else "fei", seed=seed)
    shutil.rmtree(generated)
    print(f"pairs: {pair_dir}\nlots:  {lots}/<product>/{{hr,lr}}/<lot>/ (Zeiss and FEI TIFFs with data bars)")

    step(2, "validating the pairs with Great Expectations")
    report = validate_pairs(pair_dir, report_dir=out / "validation")
    print(f"{report.n_pairs} pairs, {report.n_failed_pairs} failed; dataset {report.dataset_digest}")
    print(f"data docs: {report.data_docs_index}")
    if not report.success:
        raise CheckFailed(f"demo data failed validation: {sorted(report.failures)}")

    step(3, "training the demo generator (MLflow run, registered version)")
    configure_tracking()
    print(f"tracking store: {shown_tracking_uri()}")
    trained = train(demo_config(), pair_dir, progress=True)
    m = trained.metrics
    print(f"run {trained.run_id}: registered semqa-generator v{trained.model_version}; held-out PSNR "
          f"{m.get('val_psnr', float('nan')):.2f} dB vs bicubic {m.get('val_bicubic_psnr', float('nan')):.2f} dB")

    step(4, "promoting through staging to production behind the gates")
    for alias in ("staging", "production"):
        entry = promotion.promote(trained.model_version, alias, "semqa demo")
        for gate in entry.gates:
            print(f"  [{'pass' if gate.passed else 'FAIL'}] {gate.detail}")
        print(f"v{entry.version} → {alias}")
    upscaler = load_upscaler()

    step(5, "analyzing RLD lot1: low resolution directly, super-resolved, and high resolution")
    lot1 = {res: sorted((lots / "rld" / res / "lot1").glob("*.tif")) for res in ("lr", "hr")}
    runs = {
        "LR direct": analyze(_read(lot1["lr"]), progress=_bar("LR direct"), workers=None),
        "SR (production model)": analyze(_read(lot1["lr"]), upscaler=upscaler, progress=_bar("super-resolved")),
        "HR scan": analyze(_read(lot1["hr"]), progress=_bar("HR scan"), workers=None),
    }
    truth = truth_d50(lots / "rld", "lot1")
    first = runs["LR direct"].images[0]
    print(f"pixel size {first.pixel_size_um:g} µm from {first.pixel_size_source}; analysed region "
          f"{first.roi.width}×{first.roi.height} of {first.width}×{first.height} px ({first.roi.source})")
    print(f"true D50 {truth:.3f} µm")
    for label, res in runs.items():
        d50 = res.psd.d50_um
        shown = f"{d50:.3g} µm  error {(d50 - truth) / truth:+.1%}" if d50 else "n/a"
        print(f"  {label:<22} n={res.psd.n:<5} D50={shown}")
    # The learned segmenter shipped with semqa (semqa/particles/shipped/, made by the documented
    # `semqa segmenter train` command) against the classic pipeline on the same HR scans.
    from semqa.particles.learned import SHIPPED_DIR, load_segmenter

    learned = analyze(_read(lot1["hr"]), segmenter=load_segmenter(str(SHIPPED_DIR)), progress=_bar("HR scan, learned segmenter"))
    for label, res in (("HR scan, classic", runs["HR scan"]), ("HR scan, learned (shipped)", learned)):
        d50 = res.psd.d50_um
        shown = f"{d50:.3g} µm  error {(d50 - truth) / truth:+.1%}" if d50 else "n/a"
        print(f"  {label:<26} n={res.psd.n:<5} D50={shown}")
    result_json = out / "analysis_rld_lot1_sr.json"
    _write_recorded(runs["SR (production model)"], result_json)

    step(6, "comparing each generic with the RLD (super-resolved, PBE on D50 and span), and the shifted one without SR")
    reference = _read_lots(lots / "rld" / "lr")
    reports = {}
    for generic in ("generic-equivalent", "generic-shifted"):
        reports[generic] = rep = compare(reference, _read_lots(lots / generic / "lr"), upscaler=upscaler,
                                         progress=_bar(f"RLD vs {generic}"))
        print(f"  {generic}: {rep.verdict} — {rep.reason}")
        _write_recorded(rep, out / f"compare_rld_vs_{generic}.json")
    # The same shifted generic from the LR scans without SR: at 0.4 µm/px the small half of the
    # distribution sits at the sizing limit, and the verdict must say so rather than pass it.
    lr_direct = compare(reference, _read_lots(lots / "generic-shifted" / "lr"), progress=_bar("RLD vs generic-shifted, LR direct"),
                        workers=None)
    print(f"  generic-shifted, LR scans without SR: {lr_direct.verdict} — {lr_direct.reason}")
    _write_recorded(lr_direct, out / "compare_rld_vs_generic-shifted_lr_direct.json")

    step(7, "report and lineage")
    rep = reports["generic-equivalent"]
    chain = trace_version(trained.model_version)
    summary = summarize_report(rep, runs["SR (production model)"].config, chain)
    title = "RLD vs generic-equivalent (semqa demo)"
    (out / "report.html").write_text(render_html(rep, summary, title))
    (out / "report.pdf").write_bytes(render_pdf(rep, summary, title))
    print(f"report: {out / 'report.html'} and {out / 'report.pdf'}")
    print(trace_result(result_json).text())
    print(f"\ndone in {time.monotonic() - started:.0f} s; everything is under {out} and the registry in {shown_tracking_uri()}")
    return out
