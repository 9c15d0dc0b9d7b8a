"""The particle-size estimate against the truth: particle scale (local thickness) vs the component ECD.

Per family of frames prints, per method, the median and range over frames of ``estimate /
true``, ``true`` the area-weighted median ECD of the exact instance labels (what both methods
estimate on isolated particles), in brackets the median ratio to the true number-weighted
median ECD, and the median seconds per frame. Methods, on the same Otsu mask of the 2 × 2
block mean (:func:`semqa.particles.segmentation.estimate_particle_diameter`'s):
``particle`` — :func:`semqa.particles.scale.particle_scale`; ``component`` — the baseline,
the area-weighted median ECD of the mask's components (the estimate before issue #14).

Families: ``agglo-se``, ``agglo-flat``, ``dome-clumps`` (``bench_agglomerates.py``'s),
``hr`` / ``lr`` (:func:`semqa.synth.randomized.random_scene_config` scenes, the HR scan and its
LR scan, truth divided by the LR scale), ``dome``, ``bse``, ``dark`` (:mod:`semqa.synth.families`
defaults, HR; ``dark`` mirrored about its median, the estimate reads bright particles).

Run: ``.venv/bin/python benchmarks/bench_size_estimate.py [--n 3] [--size 768] [--seed 14]``
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_agglomerates import scene as agglomerate_scene

from semqa.particles.primitives import block_mean
from semqa.particles.scale import particle_scale
from semqa.particles.segmentation import _otsu_mask
from semqa.synth.families import FamilyConfig, render_family, scan_family
from semqa.synth.randomized import random_scene_config
from semqa.synth.scenes import render_scene, scan_scene

FAMILIES = ("agglo-se", "agglo-flat", "dome-clumps", "hr", "lr", "dome", "bse", "dark")


def weighted_median_ecd(areas: np.ndarray) -> float:
    """Area-weighted median ECD (px) of component areas (px)."""
    areas = np.sort(areas[areas > 0].astype(float))
    cum = np.cumsum(areas)
    return math.sqrt(4.0 * areas[np.searchsorted(cum, 0.5 * cum[-1])] / math.pi)


def component_ecd(mask: np.ndarray) -> float:
    """Baseline: area-weighted median ECD (px) of the mask's components of at least 4 px."""
    areas = np.bincount(ndimage.label(mask)[0].ravel())[1:]
    return weighted_median_ecd(areas[areas >= 4])


def truth(labels: np.ndarray, scale: float = 1.0) -> tuple[float, float]:
    """(area-weighted, number) median ECD of the labels, divided by ``scale``."""
    areas = np.bincount(labels.ravel())[1:].astype(float)
    areas = areas[areas > 0]
    return weighted_median_ecd(areas) / scale, math.sqrt(4.0 * float(np.median(areas)) / math.pi) / scale


def frame(family: str, size: int, rng: np.random.Generator) -> tuple[np.ndarray, tuple[float, float]]:
    """One frame of ``family`` and its true (area-weighted, number) median ECD in its pixels."""
    if family in ("agglo-se", "agglo-flat", "dome-clumps"):
        a = agglomerate_scene(family, size, rng)
        return a.image, truth(a.labels)
    if family in ("hr", "lr"):
        config, _ = random_scene_config(rng, size)
        s = render_scene(config, rng)
        hr, lr = scan_scene(s, config, rng)
        return (hr, truth(s.labels)) if family == "hr" else (lr, truth(s.labels, hr.shape[0] / lr.shape[0]))
    config = FamilyConfig(family=family, size_px=size)
    s = render_family(config, rng)
    hr, _ = scan_family(s, config, rng)
    if family == "dark":
        hr = 2.0 * np.median(hr) - hr
    return hr, truth(s.labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3, help="frames per family")
    parser.add_argument("--size", type=int, default=768, help="frame side, px")
    parser.add_argument("--seed", type=int, default=14, help="seed of the frames: tune on one, report on another")
    args = parser.parse_args()
    methods = {"particle": particle_scale, "component": component_ecd}
    print(f"{args.n} frames of {args.size}² px per family; estimate / true area-weighted median ECD: "
          "median [min, max] (median / true number-weighted median), median CPU ms per frame")
    print(f"{'family':12s} {'true px':>8s}  " + "  ".join(f"{m + (' (baseline)' if m == 'component' else ''):>38s}" for m in methods))
    for f, family in enumerate(FAMILIES):
        ratios: dict[str, list[float]] = {m: [] for m in methods}
        numbers: dict[str, list[float]] = {m: [] for m in methods}
        ms: dict[str, list[float]] = {m: [] for m in methods}
        trues = []
        for i in range(args.n):
            image, (t_area, t_num) = frame(family, args.size, np.random.default_rng(np.random.SeedSequence(args.seed, spawn_key=(f, i))))
            trues.append(t_area)
            mask = _otsu_mask(block_mean(image.astype(np.float32), 2))
            for name, fn in methods.items():
                t0 = time.process_time()
                est = 2.0 * fn(mask)
                ms[name].append(1e3 * (time.process_time() - t0))
                ratios[name].append(est / t_area)
                numbers[name].append(est / t_num)
        cells = [f"{np.median(ratios[m]):6.3f} [{min(ratios[m]):5.2f}, {max(ratios[m]):5.2f}] ({np.median(numbers[m]):5.2f}) {np.median(ms[m]):5.1f} ms"
                 for m in methods]
        print(f"{family:12s} {np.median(trues):8.1f}  " + "  ".join(f"{c:>38s}" for c in cells))
    print("ratio to truth 1.0 = exact; the component ECD reads clusters on the agglomerate families")


if __name__ == "__main__":
    main()
