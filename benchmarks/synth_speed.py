"""Speed of synthetic pair generation, and of its outline rasteriser against scikit-image's.

Prints seconds per HR/LR pair written (TIFFs, truth, manifest) at 768² and 2048², and,
on the same particle outlines, the time and agreement of :func:`semqa.synth.scenes._fill_polygon`
(scan lines) against :func:`skimage.draw.polygon` (the baseline it replaces).

    .venv/bin/python benchmarks/synth_speed.py [--pairs 10] [--workers 1]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
from skimage.draw import polygon as skimage_polygon

from semqa.synth.scenes import SynthConfig, _fill_polygon, _make_outline, make_pairs


def _time_pairs(size: int, n: int, workers: int) -> tuple[float, int]:
    import pandas as pd

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        make_pairs(tmp, n, SynthConfig(size_px=size), seed=0, workers=workers)
        dt = time.perf_counter() - t0
        n_particles = len(pd.read_csv(f"{tmp}/particles.csv"))
    return dt / n, n_particles // n


def _rasterisers(n_outlines: int = 200, ss: int = 4) -> None:
    cfg = SynthConfig()
    rng = np.random.default_rng(0)
    shapes = []
    for d in np.exp(rng.normal(np.log(cfg.d50_um), np.log(cfg.gsd), n_outlines)):
        xy = _make_outline(float(d), cfg, rng).xy / cfg.pixel_size_um * ss
        xy -= xy.min(0) - 2
        shape = tuple(int(v) + 3 for v in np.ceil(xy.max(0)[::-1]))
        shapes.append((xy[:, 1], xy[:, 0], shape))
    t0 = time.perf_counter()
    ours = [_fill_polygon(r, c, s) for r, c, s in shapes]
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    base = []
    for r, c, s in shapes:
        m = np.zeros(s, dtype=bool)
        rr, cc = skimage_polygon(r, c, shape=s)
        m[rr, cc] = True
        base.append(m)
    t_base = time.perf_counter() - t0
    differ = sum(int((a != b).sum()) for a, b in zip(ours, base, strict=True))
    total = sum(int(b.sum()) for b in base)
    print(f"rasterise {n_outlines} outlines at {ss}× supersampling: scan lines {t_ours:.3f} s, "
          f"skimage.draw.polygon {t_base:.3f} s ({t_base / t_ours:.1f}× slower); "
          f"{differ} of {total} inside samples differ")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    _rasterisers()
    for size, n in ((768, args.pairs), (2048, max(1, args.pairs // 5))):
        per_pair, per_image = _time_pairs(size, n, args.workers)
        print(f"{size}×{size} HR (+{size // 4}² LR): {per_pair:.2f} s per pair over {n} pairs, "
              f"{per_image} particles per image, workers={args.workers}")


if __name__ == "__main__":
    main()
