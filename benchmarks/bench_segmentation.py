"""Segmentation benchmark: semqa against a plain scikit-image pipeline, same images, same run.

For synthetic SEM-like scenes (:mod:`semqa.synth`, 0.1 µm/px, D50 = 3 µm) at 768 × 768 and
2048 × 2048 pixels, prints for each method:

* the mean absolute relative error of the number-weighted D10, D50 and D90 of the ECD per
  image, against the true particles not cut by the border (the population both methods keep
  after border exclusion);
* the share of designed touching pairs split into two objects that each match their true
  particle (IoU > 0.5);
* the median wall and CPU seconds per image (each image timed ``--repeats`` times, methods
  alternating, the median kept), and semqa's times as ratios of the baseline's.

The baseline is the textbook pipeline: Gaussian denoising (sigma 1 px), Otsu threshold, hole
filling, Euclidean distance transform, ``peak_local_max`` markers (``min_distance`` a quarter
of the true median diameter, i.e. told the particle size) and ``watershed``.

Run: ``.venv/bin/python benchmarks/bench_segmentation.py [--n768 8] [--n2048 2] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy import ndimage
from skimage.feature import peak_local_max
from skimage.filters import threshold_otsu
from skimage.segmentation import watershed

from semqa.measure import measure_particles
from semqa.psd import d_values
from semqa.segmentation import segment
from semqa.synth import SynthConfig, render_scene, scan_scene


def baseline_segment(image: np.ndarray, min_distance: int) -> np.ndarray:
    """Plain scikit-image pipeline: Gaussian, Otsu, fill holes, distance-transform watershed."""
    smooth = ndimage.gaussian_filter(image.astype(np.float32), 1.0)
    mask = ndimage.binary_fill_holes(smooth > threshold_otsu(smooth))
    dist = ndimage.distance_transform_edt(mask)
    components, _ = ndimage.label(mask)
    peaks = peak_local_max(dist, min_distance=min_distance, labels=components, exclude_border=False)
    markers = np.zeros(image.shape, dtype=np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    return watershed(-dist, markers, mask=mask).astype(np.int32)


def pair_split(labels: np.ndarray, true_labels: np.ndarray, ids: list[int]) -> bool:
    """Both partners matched (IoU > 0.5) by two different objects."""
    found = []
    for pid in ids:
        own = true_labels == pid
        hits = labels[own]
        hits = hits[hits > 0]
        if hits.size == 0:
            return False
        obj = int(np.bincount(hits).argmax())
        inter = int((hits == obj).sum())
        if inter / (own.sum() + (labels == obj).sum() - inter) <= 0.5:
            return False
        found.append(obj)
    return found[0] != found[1]


def timed(
    methods: dict[str, Callable[[np.ndarray], np.ndarray]], image: np.ndarray, repeats: int
) -> dict[str, tuple[np.ndarray, float, float]]:
    """Each method's labels and median wall and CPU seconds; methods alternate within each repeat
    so that both see the same machine load (CPU time is the steadier figure on a shared host)."""
    wall: dict[str, list[float]] = {name: [] for name in methods}
    cpu: dict[str, list[float]] = {name: [] for name in methods}
    labels: dict[str, np.ndarray] = {}
    for _ in range(repeats):
        for name, fn in methods.items():
            w0, c0 = time.perf_counter(), time.process_time()
            labels[name] = fn(image)
            cpu[name].append(time.process_time() - c0)
            wall[name].append(time.perf_counter() - w0)
    return {name: (labels[name], statistics.median(wall[name]), statistics.median(cpu[name])) for name in methods}


def run(size: int, n_images: int, repeats: int, seed: int = 2024) -> pd.DataFrame:
    config = SynthConfig(size_px=size)
    min_distance = max(1, round(0.25 * config.d50_um / config.pixel_size_um))
    methods: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "semqa": segment,
        "skimage-baseline": lambda img: baseline_segment(img, min_distance),
    }
    rows = []
    for i in range(n_images):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(size, i)))
        scene = render_scene(config, rng)
        hr, _ = scan_scene(scene, config, rng)
        truth = scene.particles[~scene.particles.touches_border]
        true_d = d_values(truth.ecd_um.to_numpy())
        designed = [ids for ids in truth[truth.touching_group >= 0].groupby("touching_group").particle_id.apply(list) if len(ids) == 2]
        for name, (labels, seconds, cpu_seconds) in timed(methods, hr, repeats).items():
            particles, _ = measure_particles(labels, config.pixel_size_um)
            est = d_values([p.ecd_um for p in particles])
            split = [pair_split(labels, scene.labels, ids) for ids in designed]
            rows.append(
                {
                    "method": name,
                    "size": size,
                    "image": i,
                    "seconds": seconds,
                    "cpu_seconds": cpu_seconds,
                    "n": len(particles),
                    "n_true": len(truth),
                    **{f"err_{k}": abs(e - t) / t for k, e, t in zip(("d10", "d50", "d90"), est, true_d)},
                    "pairs": len(split),
                    "pairs_split": int(sum(split)),
                }
            )
    return pd.DataFrame(rows)


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    table = results.groupby(["size", "method"], sort=False).agg(
        images=("image", "nunique"),
        n_found=("n", "sum"),
        n_true=("n_true", "sum"),
        d10_err_pct=("err_d10", "mean"),
        d50_err_pct=("err_d50", "mean"),
        d90_err_pct=("err_d90", "mean"),
        pairs=("pairs", "sum"),
        pairs_split=("pairs_split", "sum"),
        s_per_image=("seconds", "median"),
        cpu_s_per_image=("cpu_seconds", "median"),
    )
    for col in ("d10_err_pct", "d50_err_pct", "d90_err_pct"):
        table[col] = 100 * table[col]
    table["split_pct"] = 100 * table.pairs_split / table.pairs.where(table.pairs > 0)
    base = table.xs("skimage-baseline", level="method")
    table["wall_vs_baseline"] = [row.s_per_image / base.s_per_image[size] for (size, _), row in table.iterrows()]
    table["cpu_vs_baseline"] = [row.cpu_s_per_image / base.cpu_s_per_image[size] for (size, _), row in table.iterrows()]
    return table.drop(columns=["pairs_split"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n768", type=int, default=8, help="images at 768 × 768")
    parser.add_argument("--n2048", type=int, default=2, help="images at 2048 × 2048")
    parser.add_argument("--repeats", type=int, default=3, help="timings per image (median kept)")
    args = parser.parse_args()
    results = pd.concat([run(768, args.n768, args.repeats), run(2048, args.n2048, args.repeats)])
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.float_format", "{:.3f}".format):
        print(summarize(results).to_string())


if __name__ == "__main__":
    main()
