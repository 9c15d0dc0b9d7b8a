"""Validation over scene families × LR doses: clean data must pass, each fault must fail.

For every family (``synth``: :mod:`semqa.synth.scenes`; ``dome``, ``bse``, ``dark``:
:mod:`semqa.synth.families`; ``agglo``: :mod:`semqa.synth.agglomerates` with the LR of
:func:`semqa.sr.degradation.degrade`) and LR dose (10–1000 e⁻/px at yield 1), one pair set and
one lot folder are made with ``--clean`` clean scenes plus one scene per fault, and run through
:func:`validation.validate_pairs` / :func:`validation.validate_lots` (the GX suites, as
``semqa validate``):

* pairs: clean; LR shifted by 3 LR px; two LR partners swapped; HR blurred (σ = 3 HR px, then
  rescanned at the HR dose); both scans saturated (signal × 2, clipped at the top code);
* lots (the LR frames of scenes rendered at ``--lot-hr-size``): clean; defocused (the LR probe
  widened by σ = 2, 3, 4 LR px in quadrature, before the area integration and the shot noise:
  the scene scanned out of focus, not a noisy frame blurred); saturated (× 2); black level
  below code 0 (the darkest third of the signal cut to 0).

It prints the pass rate of clean items and the rejection rate of each fault per cell, and
per family over doses, then the lot focus decisions: per cell the share of clean and blurred
images refused by the focus check and the share whose focus the noise leaves undetermined
(not refused). The exposure, registration and focus limits were tuned on none of these
families (each comes from the physics or statistics named in :class:`validation.ValidationConfig`);
the lot focus check's constants (bin width, the Hann window's variance inflation, the f^−3 scene
tail, the shortest scene correlation length ξ profiled, 1 px) are derived in :mod:`validation.blur`
and were checked on white noise (dispersion ≈ 1) and developed on ``synth`` frames; none was
fitted to a family (the ξ range comes from Porod's relation for the smallest particles sized). The dynamic-range limit is
still the one set on ``synth``.

    .venv/bin/python benchmarks/bench_validation_physics.py [--clean 4] [--hr-size 256] [--lot-hr-size 256] [--seed 0]
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
from pathlib import Path

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

import numpy as np
from scipy import ndimage

FAMILIES = ("synth", "dome", "bse", "dark", "agglo")
DOSES = (10.0, 30.0, 100.0, 300.0, 1000.0)
PAIR_FAULTS = ("shift", "swap", "blur", "saturated")
LOT_FAULTS = ("blur2", "blur3", "blur4", "saturated", "black_level")


def scene_pair(family: str, hr_size: int, lr_dose: float, rng: np.random.Generator, lr_defocus_px: float = 0.0):
    """``(hr, lr, hr_px, lr_px, hr_dose)`` of one scene; HR at its renderer's default dose.

    ``lr_defocus_px``: the LR scanned out of focus, its probe widened in quadrature by a Gaussian
    of that sigma in LR pixels (×4 HR pixels) before the area integration and the shot noise.
    """
    from semqa.sr.degradation import DegradationConfig, degrade

    def lr_probe(sharp_hr_px: float) -> float:
        return math.hypot(sharp_hr_px, 4.0 * lr_defocus_px)

    if family == "synth":
        from semqa.synth.scenes import SynthConfig, render_scene, scan_scene

        lr_scan = DegradationConfig(dose=lr_dose)
        lr_scan = lr_scan.model_copy(update={"psf_sigma_hr_px": lr_probe(lr_scan.psf_sigma)})
        config = SynthConfig(size_px=hr_size, degradation=lr_scan)
        hr, lr = scan_scene(render_scene(config, rng), config, rng)
        return hr, lr, config.pixel_size_um, config.lr_pixel_size_um, config.hr_dose
    if family == "agglo":
        from semqa.synth.agglomerates import (
            AgglomerateConfig,
            render_agglomerates,
            scan_agglomerates,
        )

        config = AgglomerateConfig(size_px=hr_size)
        scene = render_agglomerates(config, rng)
        hr = scan_agglomerates(scene, config, rng)
        lr_scan = DegradationConfig(dose=lr_dose, read_noise=0.0)
        lr = degrade(scene.clean, lr_scan.model_copy(update={"psf_sigma_hr_px": lr_probe(lr_scan.psf_sigma)}), rng)
        return hr, lr, config.pixel_size_um, 4 * config.pixel_size_um, config.dose
    from semqa.synth.families import FamilyConfig, render_family, scan_family

    config = FamilyConfig(family=family, size_px=hr_size, lr_dose=lr_dose)
    scene = render_family(config, rng)
    hr, lr = scan_family(scene, config, rng)
    if lr_defocus_px > 0:  # the LR of the same scene rescanned with the wider probe
        _, lr = scan_family(scene, config.model_copy(update={"psf_sigma_px": lr_probe(config.psf_sigma_px)}), rng)
    return hr, lr, config.pixel_size_um, config.lr_pixel_size_um, config.dose


def _rescan(image: np.ndarray, sigma: float, dose: float, rng: np.random.Generator) -> np.ndarray:
    """Out of focus: the yield blurred by a wider probe, then that scan's shot noise."""
    return rng.poisson(np.clip(ndimage.gaussian_filter(np.asarray(image, np.float64), sigma), 0, None) * dose) / dose


def make_cell(
    root: Path, family: str, lr_dose: float, n_clean: int, hr_size: int, seed: int, lot_hr_size: int
) -> tuple[Path, Path, dict]:
    """Write the pair set and lot folder of one cell; ``{item name: kind}`` of both."""
    from semqa.io.images import write_image

    pairs, lots = root / "pairs", root / "lots" / "lot1"
    kinds: dict[str, str] = {}
    scenes = {}
    names = [f"clean{i}" for i in range(n_clean)] + ["shift", "swap_a", "swap_b", "blur", "saturated"]
    names += [f"lot_{f}" for f in LOT_FAULTS]
    for k, name in enumerate(names):
        size = lot_hr_size if name.startswith("lot_") else hr_size
        # A blurred lot image is a defocused scan: the scene scanned with a wider probe.
        defocus = float(name[-1]) if name.startswith("lot_blur") else 0.0
        scenes[name] = scene_pair(family, size, lr_dose, np.random.default_rng([seed, int(lr_dose), k]), defocus)
    # The clean lot images: the clean pairs' LR frames, or scenes of their own at another size.
    lot_clean = {
        f"clean{i}": scenes[f"clean{i}"] if lot_hr_size == hr_size
        else scene_pair(family, lot_hr_size, lr_dose, np.random.default_rng([seed, int(lr_dose), 500 + i]))
        for i in range(n_clean)
    }
    rng = np.random.default_rng([seed, int(lr_dose), 999])
    for name in names[: n_clean + 5]:
        hr, lr, hr_px, lr_px, hr_dose = scenes[name]
        if name == "shift":
            lr = ndimage.shift(lr, (0, 3), order=0, mode="nearest")
        elif name == "swap_a":
            lr = scenes["swap_b"][1]
        elif name == "swap_b":
            lr = scenes["swap_a"][1]
        elif name == "blur":
            hr = _rescan(hr, 3.0, hr_dose, rng)
        elif name == "saturated":
            hr, lr = hr * 2.0, lr * 2.0
        kinds[f"{name}.tif"] = "clean" if name.startswith("clean") else name.split("_")[0]
        write_image(pairs / "hr" / f"{name}.tif", np.clip(hr, 0, 1), pixel_size_um=hr_px, bit_depth=16)
        write_image(pairs / "lr" / f"{name}.tif", np.clip(lr, 0, 1), pixel_size_um=lr_px, bit_depth=16)
    for name in [f"clean{i}" for i in range(n_clean)] + [f"lot_{f}" for f in LOT_FAULTS]:
        _, lr, _, lr_px, _ = lot_clean[name] if name.startswith("clean") else scenes[name]
        kind = "clean" if name.startswith("clean") else name[4:]
        if kind == "saturated":
            lr = lr * 2.0
        elif kind == "black_level":
            lr = lr - np.quantile(lr, 0.33)
        kinds[f"lot1/{name}.tif"] = kind
        write_image(lots / f"{name}.tif", np.clip(lr, 0, 1), pixel_size_um=lr_px, bit_depth=16)
    return pairs, lots.parent, kinds


def run_cell(
    root: Path, family: str, lr_dose: float, n_clean: int, hr_size: int, seed: int, lot_hr_size: int
) -> dict[str, dict[str, list]]:
    """``{"pairs" | "lots": {kind: [(failed?, failed checks), ...]}, "undetermined": {kind: [bool, ...]}}``."""
    from validation import validate_lots, validate_pairs

    pairs, lots, kinds = make_cell(root, family, lr_dose, n_clean, hr_size, seed, lot_hr_size)
    out: dict[str, dict[str, list]] = {"pairs": {}, "lots": {}, "undetermined": {}}
    lot_report = validate_lots(lots, report_dir=root / "lot_report")
    for item, kind in kinds.items():
        if "/" in item:
            out["undetermined"].setdefault(kind, []).append(item in lot_report.focus_undetermined)
    for what, report in (
        ("pairs", validate_pairs(pairs, report_dir=root / "pair_report")),
        ("lots", lot_report),
    ):
        failed_by: dict[str, list[str]] = {}
        for check, rows in report.failures.items():
            for row in rows:
                failed_by.setdefault(row, []).append(check)
        for item, kind in kinds.items():
            if (what == "lots") == ("/" in item):
                out[what].setdefault(kind, []).append((item in failed_by, failed_by.get(item, [])))
    return out


FOCUS_KINDS = ("clean", "blur2", "blur3", "blur4")


def _focus_line(family: str, dose: float, cell: dict[str, dict[str, list]]) -> str:
    """``refused/undetermined`` shares of the focus check per kind of lot image."""
    parts = [f"{family:6s} {dose:5g} |"]
    for kind in FOCUS_KINDS:
        refused = np.mean(["focus" in checks for _, checks in cell["lots"][kind]])
        parts.append(f"  {refused:4.2f}/{np.mean(cell['undetermined'][kind]):4.2f}")
    return "".join(parts)


def _rate(results: list, *, passed: bool) -> float:
    return float(np.mean([(not failed) if passed else failed for failed, _ in results]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clean", type=int, default=4, help="clean scenes per cell")
    parser.add_argument("--hr-size", type=int, default=256)
    parser.add_argument("--lot-hr-size", type=int, default=None, help="HR side of the lot scenes (default --hr-size)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--doses", default=",".join(f"{d:g}" for d in DOSES))
    args = parser.parse_args()
    families = args.families.split(",")
    doses = [float(d) for d in args.doses.split(",")]
    lot_hr_size = args.lot_hr_size or args.hr_size
    focus_lines: list[str] = []
    totals: dict[tuple[str, str, str], list] = {}
    header = "family  dose | pairs: clean " + " ".join(f"{f:>9s}" for f in PAIR_FAULTS)
    header += " | lots: clean " + " ".join(f"{f:>11s}" for f in LOT_FAULTS)
    print("pass rate of clean items, rejection rate of each fault (1.00 = every one rejected)")
    print(header)
    with tempfile.TemporaryDirectory() as tmp:
        for family in families:
            for dose in doses:
                cell = run_cell(Path(tmp) / f"{family}_{dose:g}", family, dose, args.clean, args.hr_size, args.seed, lot_hr_size)
                focus_lines.append(_focus_line(family, dose, cell))
                parts = [f"{family:6s} {dose:5g} | pairs:"]
                for what, faults in (("pairs", PAIR_FAULTS), ("lots", LOT_FAULTS)):
                    if what == "lots":
                        parts.append("| lots: ")
                    clean = cell[what]["clean"]
                    parts.append(f"{_rate(clean, passed=True):5.2f}")
                    for fault in faults:
                        parts.append(f"{_rate(cell[what][fault], passed=False):{9 if what == 'pairs' else 11}.2f}")
                    for kind, res in cell[what].items():
                        totals.setdefault((family, what, kind), []).extend(res)
                    wrong = sorted({c for failed, checks in clean if failed for c in checks})
                    if wrong:
                        parts.append(f"[clean {what} failed: {', '.join(wrong)}]")
                print(" ".join(parts), flush=True)
    print(f"\nlot focus (LR frames of {lot_hr_size}² HR scenes): share refused by the focus check / share undetermined")
    print("family  dose |" + "".join(f" {k:>11s}" for k in FOCUS_KINDS))
    print("\n".join(focus_lines))
    print("\nper family over all doses (clean pass rate; fault rejection rate):")
    for family in families:
        line = [f"{family:6s}"]
        for what, faults in (("pairs", PAIR_FAULTS), ("lots", LOT_FAULTS)):
            line.append(f"{what} clean {_rate(totals[(family, what, 'clean')], passed=True):.2f}")
            line += [f"{f} {_rate(totals[(family, what, f)], passed=False):.2f}" for f in faults]
        print("  ".join(line))


if __name__ == "__main__":
    main()
