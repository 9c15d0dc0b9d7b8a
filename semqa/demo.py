"""``semqa demo``: the main job end to end on generated data with known ground truth.

Synthesise pairs and product lots → validate the pairs (Great Expectations) → train a generator
(MLflow run, registered version) → promote it through staging to production behind the gates
→ analyse an RLD lot three ways against the truth → compare two generics with the RLD →
write the report and print the lineage. Like the CLI, this module may call the apps
(training, validation, the dashboard's report); see docs/architecture.md.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from semqa.analysis import analyze, analyze_lots, compare_analysed, load_lots
from semqa.errors import CheckFailed, InputError
from semqa.io.images import Micrograph, read_image
from semqa.pool import available_cores
from semqa.stats.psd import d_values

#: Marks a folder the demo made, so it only ever deletes its own output.
MARKER = ".semqa-demo"
STEPS = 7


def _read(paths: Sequence[Path]) -> list[Micrograph]:
    return [read_image(p) for p in paths]


def _read_lots(folder: Path) -> dict[str, list[Micrograph]]:
    return {lot: _read(files) for lot, files in load_lots(folder).items()}


def _bar(desc: str, unit: str = "image") -> Callable[[int, int], None]:
    """A ``progress(done, total)`` callback drawing a tqdm bar (count, rate, time left)."""
    from tqdm import tqdm

    bar = None

    def show(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc=f"  {desc}", unit=unit, dynamic_ncols=True)
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


class DemoOptions(BaseModel):
    """What ``semqa demo`` generates and trains. The defaults are the documented demo; :data:`QUICK`
    is the same path at a reduced scale (the test of the demo, ``semqa demo --quick``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pairs: int = Field(48, ge=4, description="HR/LR training pairs to generate")
    images_per_lot: int = Field(10, ge=2, description="units per lot (FDA's PBE guidances ask for at least 10)")
    size_px: int = Field(768, ge=256, le=2048, description="HR side of every generated frame, px (the LR scan is a quarter)")
    pretrain_steps: int = Field(370, ge=1, description="generator pre-training steps (training.config.demo_config)")
    gan_steps: int = Field(30, ge=0, description="adversarial fine-tuning steps after pre-training")
    seed: int = Field(0, ge=0)
    workers: int | None = Field(None, ge=1, description="processes for synthesis and segmentation; None: every core")

    @property
    def steps(self) -> int:
        return self.pretrain_steps + self.gan_steps


#: The demo at a reduced scale: 16 pairs and 3 lots × 4 units per product at 384 px, 250
#: training steps. The gates and the lineage are the same; with 4 units per lot (PBE needs 10)
#: every comparison is inconclusive, as it must be, while its statistics still show the shift.
QUICK = DemoOptions(pairs=16, images_per_lot=4, size_px=384, pretrain_steps=230, gan_steps=20)


def _cpu_seconds() -> float:
    """CPU seconds of this process and of its finished children (the synthesis and analysis pools)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def run_demo(out: str | Path = "demo_out", options: DemoOptions | None = None, **overrides: object) -> Path:
    """Run the demo into ``out`` (remade each run) and the configured MLflow store; returns ``out``.

    ``overrides`` are :class:`DemoOptions` fields (``pairs=16``) applied on ``options``.
    """
    from dashboard.report import render_html, render_pdf, summarize as summarize_report
    from semqa.registry import promotion
    from semqa.registry.lineage import trace_result, trace_version
    from semqa.registry.store import configure_tracking, shown_tracking_uri
    from semqa.sr.inference import load_upscaler
    from semqa.synth.databar import rewrite_as_instrument
    from semqa.synth.scenes import SynthConfig, make_lots, make_pairs
    from training.config import demo_config
    from training.train import train, validation_config
    from validation.run import validate_pairs

    options = DemoOptions.model_validate({**(options or DemoOptions()).model_dump(), **overrides})
    workers = options.workers or available_cores()
    out = _fresh_folder(Path(out))
    started, cpu0 = time.monotonic(), _cpu_seconds()

    def step(n: int, text: str) -> None:
        print(f"\n[{n}/{STEPS}] {text}  (t={time.monotonic() - started:.0f} s, CPU {_cpu_seconds() - cpu0:.0f} s)", flush=True)

    # Lots at D50 = 2 µm: 5 LR pixels of 0.4 µm, small enough that a low-resolution scan
    # mis-sizes them and super-resolution has something to recover.
    synth = SynthConfig(d50_um=2.0, size_px=options.size_px)
    n_images = 3 * 3 * options.images_per_lot
    step(1, f"synthesizing {options.pairs} HR/LR training pairs and 3 products × 3 lots × {options.images_per_lot} images")
    pair_dir = make_pairs(out / "pairs", options.pairs, synth, seed=options.seed, workers=workers, progress=_bar("training pairs"))
    generated = make_lots(out / "lots-generated", lots=3, images_per_lot=options.images_per_lot, config=synth,
                          seed=options.seed, workers=workers, progress=_bar("product lots"))
    # The lots as instruments write them: the pixel size only in the vendor's own TIFF tag
    # (Zeiss CZ_SEM for the RLD, FEI [Scan] for the generics) and a data bar under each frame;
    # every analysis below has to find both by itself.
    lots = out / "lots"
    rewritten, n_rewritten = _bar("instrument TIFFs"), 0

    def one_more(_done: int, _total: int) -> None:
        nonlocal n_rewritten
        n_rewritten += 1
        rewritten(n_rewritten, 2 * n_images)  # each image's HR and LR scans

    for product in sorted(d.name for d in generated.iterdir() if d.is_dir()):
        rewrite_as_instrument(generated / product, lots / product, vendor="zeiss" if product == "rld" else "fei", seed=options.seed,
                              workers=workers, progress=one_more)
    shutil.rmtree(generated)
    print(f"pairs: {pair_dir}\nlots:  {lots}/<product>/{{hr,lr}}/<lot>/ (Zeiss and FEI TIFFs with data bars)")

    step(2, f"validating the {options.pairs} pairs with Great Expectations")
    config = demo_config(pretrain_steps=options.pretrain_steps, gan_steps=options.gan_steps, eval_every=options.steps)
    report = validate_pairs(pair_dir, config=validation_config(config), report_dir=out / "validation",
                            progress=_bar("pairs measured", unit="pair"))
    print(f"{report.n_pairs} pairs, {report.n_failed_pairs} failed; dataset {report.dataset_digest}")
    print(f"data docs: {report.data_docs_index}")
    if not report.success:
        raise CheckFailed(f"demo data failed validation: {sorted(report.failures)}")

    step(3, f"training the demo generator, {options.steps} steps (MLflow run, registered version)")
    configure_tracking()
    print(f"tracking store: {shown_tracking_uri()}")
    # Training records this validation of the same files with the same configuration, not a second one.
    trained = train(config, pair_dir, progress=True, validation=report)
    m = trained.metrics
    print(f"run {trained.run_id}: registered semqa-generator v{trained.model_version}; held-out PSNR "
          f"{m.get('val_psnr', float('nan')):.2f} dB vs bicubic {m.get('val_bicubic_psnr', float('nan')):.2f} dB")

    step(4, "promoting through staging to production behind the gates (evaluation set made on first use)")
    for alias in ("staging", "production"):
        entry = promotion.promote(trained.model_version, alias, "semqa demo")
        for gate in entry.gates:
            print(f"  [{'pass' if gate.passed else 'FAIL'}] {gate.detail}")
        print(f"v{entry.version} → {alias}")
    upscaler = load_upscaler()

    step(5, "analyzing the RLD's lots, LR scans directly and super-resolved (once, for every comparison below), and lot1's HR scans")
    # Each product is analysed once per way (its images, the generator, the segmenter and the
    # settings fixed here) and the analysed lots are passed to every comparison that uses them.
    rld_scans = _read_lots(lots / "rld" / "lr")
    rld_sr = analyze_lots(rld_scans, upscaler=upscaler, progress=_bar("RLD, super-resolved"), workers=workers)
    rld_lr = analyze_lots(rld_scans, progress=_bar("RLD, LR direct"), workers=workers)
    hr_lot1 = _read(sorted((lots / "rld" / "hr" / "lot1").glob("*.tif")))
    runs = {
        "LR direct": rld_lr.summary("lot1"),
        "SR (production model)": rld_sr.summary("lot1"),
        "HR scan": analyze(hr_lot1, progress=_bar("HR scan"), workers=workers),
    }
    truth = truth_d50(lots / "rld", "lot1")
    first = runs["LR direct"].images[0]
    print(f"RLD lot1: pixel size {first.pixel_size_um:g} µm from {first.pixel_size_source}; analysed region "
          f"{first.roi.width}×{first.roi.height} of {first.width}×{first.height} px ({first.roi.source})")
    print(f"true D50 {truth:.3f} µm")
    for label, res in runs.items():
        d50 = res.psd.d50_um
        shown = f"{d50:.3g} µm  error {(d50 - truth) / truth:+.1%}" if d50 else "n/a"
        print(f"  {label:<22} n={res.psd.n:<5} D50={shown}")
    # The learned segmenter shipped with semqa (semqa/particles/shipped/, made by the documented
    # `semqa segmenter train` command) against the classic pipeline on the same HR scans.
    from semqa.particles.learned import SHIPPED_DIR, load_segmenter

    learned = analyze(hr_lot1, segmenter=load_segmenter(str(SHIPPED_DIR)), progress=_bar("HR scan, learned segmenter"))
    for label, res in (("HR scan, classic", runs["HR scan"]), ("HR scan, learned (shipped)", learned)):
        d50 = res.psd.d50_um
        shown = f"{d50:.3g} µm  error {(d50 - truth) / truth:+.1%}" if d50 else "n/a"
        print(f"  {label:<26} n={res.psd.n:<5} D50={shown}")
    result_json = out / "analysis_rld_lot1_sr.json"
    _write_recorded(runs["SR (production model)"], result_json)

    step(6, "comparing each generic with the RLD (super-resolved, PBE on D50 and span), and the shifted one without SR")
    reports = {}
    for generic in ("generic-equivalent", "generic-shifted"):
        test = analyze_lots(_read_lots(lots / generic / "lr"), upscaler=upscaler, progress=_bar(f"{generic}, super-resolved"),
                            workers=workers, role="test")
        reports[generic] = rep = compare_analysed(rld_sr, test)
        print(f"  {generic}: {rep.verdict} — {rep.reason}")
        _write_recorded(rep, out / f"compare_rld_vs_{generic}.json")
    # The same shifted generic from the LR scans without SR: at 0.4 µm/px the small half of the
    # distribution sits at the sizing limit, and the verdict must say so rather than pass it.
    shifted_lr = analyze_lots(_read_lots(lots / "generic-shifted" / "lr"), progress=_bar("generic-shifted, LR direct"), workers=workers,
                              role="test")
    reports["generic-shifted, LR direct"] = lr_direct = compare_analysed(rld_lr, shifted_lr)
    print(f"  generic-shifted, LR scans without SR: {lr_direct.verdict} — {lr_direct.reason}")
    _write_recorded(lr_direct, out / "compare_rld_vs_generic-shifted_lr_direct.json")

    step(7, "report and lineage")
    rep = reports["generic-equivalent"]
    chain = trace_version(trained.model_version)
    summary = summarize_report(rep, runs["SR (production model)"].config, chain)
    title = "RLD vs generic-equivalent (semqa demo)"
    (out / "report.html").write_text(render_html(rep, summary, title))
    print("rendering report.pdf", flush=True)
    (out / "report.pdf").write_bytes(render_pdf(rep, summary, title))
    print(f"report: {out / 'report.html'} and {out / 'report.pdf'}")
    print(trace_result(result_json).text())
    print(f"\ndone in {time.monotonic() - started:.0f} s (CPU {_cpu_seconds() - cpu0:.0f} s, load average "
          f"{os.getloadavg()[0]:.1f}); everything is under {out} and the registry in {shown_tracking_uri()}")
    return out
