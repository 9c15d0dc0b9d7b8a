"""Splitting of agglomerated, irregular particles: classic segmentation vs the plain baseline.

Per scene family, ``--n`` frames of ``--size``² pixels, prints for ``classic``
(:func:`semqa.particles.segmentation.segment`) and ``baseline`` (the plain Gaussian + Otsu +
distance-transform watershed of ``bench_segmentation.py``, told the true median diameter for
its marker distance) the mean per-image particle-count error, D10/D50/D90 relative errors,
matched precision and recall at IoU > 0.5 and mean IoU (:func:`semqa.particles.matching.score_image`,
border particles excluded on both sides), the median segmentation seconds per frame, and
classic's count and D50 errors as ratios of the baseline's.

Families (exact instance masks):

* ``agglo-se`` — :mod:`semqa.synth.agglomerates` defaults: clusters of 3–20 Fourier-perturbed
  particles, ECD 6–100 px (D50 24 px), aspect up to 2.5, SE edge brightening, dose 100 e⁻/px;
* ``agglo-flat`` — the same renderer with flat BSE-like contrast (no edge brightening), larger
  and more elongated particles (D50 40 px, aspect up to 3.5), more overlap (up to 30 %, centres from 0.7 of the sum of radii), dose 30 e⁻/px;
* ``dome-clumps`` — :mod:`semqa.synth.families` ``dome`` scenes (ellipsoids, tilt shading,
  no rims) with 60 % of the particles placed overlapping an earlier one.

Run: ``.venv/bin/python benchmarks/bench_agglomerates.py [--n 3] [--size 768] [--seed 14]``
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # see bench_segmentation.py

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_segmentation import baseline_segment

from semqa.particles.annotations import Annotated
from semqa.particles.matching import mean_scores, score_image
from semqa.particles.segmentation import segment
from semqa.synth.agglomerates import (
    AgglomerateConfig,
    render_agglomerates,
    scan_agglomerates,
)
from semqa.synth.families import FamilyConfig, render_family, scan_family

FAMILIES = ("agglo-se", "agglo-flat", "dome-clumps")


def scene(family: str, size: int, rng: np.random.Generator) -> Annotated:
    """One frame of ``family`` with its exact labels."""
    if family in ("agglo-se", "agglo-flat"):
        extra = {} if family == "agglo-se" else {"edge_gain": 0.0, "d50_px": 40.0, "aspect_max": 3.5, "overlap_max": 0.3, "contact_min": 0.7, "dose": 30.0}
        config = AgglomerateConfig(size_px=size, **extra)
        truth = render_agglomerates(config, rng)
        return Annotated(family, scan_agglomerates(truth, config, rng), truth.labels, config.pixel_size_um)
    config = FamilyConfig(family="dome", size_px=size, d50_px=24.0, overlap_fraction=0.6, fill_fraction=0.3, aspect_max=2.0)
    truth = render_family(config, rng)
    hr, _ = scan_family(truth, config, rng)
    return Annotated(family, hr, truth.labels, config.pixel_size_um)


def true_median_diameter(labels: np.ndarray) -> float:
    areas = np.bincount(labels.ravel())[1:]
    areas = areas[areas > 0]
    return float(np.sqrt(4 * np.median(areas) / np.pi))


def run(n: int, size: int, seed: int) -> pd.DataFrame:
    rows = []
    for family in FAMILIES:
        items = [scene(family, size, np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(FAMILIES.index(family), i))))
                 for i in range(n)]
        methods = {
            "classic": lambda a: segment(a.image),
            "baseline": lambda a: baseline_segment(a.image, max(1, round(0.25 * true_median_diameter(a.labels)))),
        }
        for name, fn in methods.items():
            scores, seconds = [], []
            for a in items:
                t0 = time.process_time()
                labels = fn(a)
                seconds.append(time.process_time() - t0)
                scores.append(score_image(labels, a.labels, a.pixel_size_um))
            s = mean_scores(scores)
            rows.append({"family": family, "method": name, **s.model_dump(), "cpu_s": statistics.median(seconds)})
    return pd.DataFrame(rows)


def report(table: pd.DataFrame) -> str:
    lines = [(f"{'family':<13}{'method':<10}{'n true':>8}{'n found':>9}{'count err':>11}{'D10 err':>9}{'D50 err':>9}"
             f"{'D90 err':>9}{'precision':>11}{'recall':>8}{'mean IoU':>10}{'CPU s':>8}")]
    for _, r in table.iterrows():
        lines.append(
            f"{r.family:<13}{r.method:<10}{r.n_true:>8.1f}{r.n_pred:>9.1f}{100 * r.count_rel_error:>10.1f}%"
            f"{100 * r.d10_rel_error:>8.1f}%{100 * r.d50_rel_error:>8.1f}%{100 * r.d90_rel_error:>8.1f}%"
            f"{r.precision:>11.3f}{r.recall:>8.3f}{r.mean_iou:>10.3f}{r.cpu_s:>8.2f}"
        )
    for family, block in table.groupby("family", sort=False):
        c, b = block.set_index("method").loc["classic"], block.set_index("method").loc["baseline"]
        lines.append(f"{family}: classic / baseline count error {c.count_rel_error / max(b.count_rel_error, 1e-9):.2f}x, "
                     f"D50 error {c.d50_rel_error / max(b.d50_rel_error, 1e-9):.2f}x, recall {c.recall / max(b.recall, 1e-9):.2f}x")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3, help="frames per family")
    parser.add_argument("--size", type=int, default=768, help="frame side, pixels")
    parser.add_argument("--seed", type=int, default=14)
    args = parser.parse_args()
    print(f"{args.n} frames of {args.size}² px per family; CPU s: median per frame; load average {os.getloadavg()[0]:.1f}")
    print(report(run(args.n, args.size, args.seed)))


if __name__ == "__main__":
    main()
