"""Segmentation benchmark: semqa against a plain scikit-image pipeline, same images, same run.

For synthetic SEM-like scenes (:mod:`semqa.synth.scenes`, 0.1 µm/px, D50 = 3 µm) at 768 × 768 and
2048 × 2048 pixels, prints for each method:

* the mean absolute relative error of the number-weighted D10, D50 and D90 of the ECD per
  image, against the true particles not cut by the border (the population both methods keep
  after border exclusion);
* the share of designed touching pairs split into two objects that each match their true
  particle (IoU > 0.5);
* seconds per image, for the segmentation alone and for the whole sizing step (segmentation
  then :func:`semqa.particles.measure.measure_particles`, which every analysis runs on the labels): CPU
  time (``time.process_time``) and wall time, each image timed ``--repeats`` times with the
  methods alternating (median over the repeats, then over the images); and semqa's times as
  ratios of the baseline's. The host is shared, so CPU time is the figure to compare (wall time also
  counts waiting for a core); the load average is printed beside it.

The baseline is the textbook pipeline: Gaussian denoising (sigma 1 px), Otsu threshold, hole
filling, Euclidean distance transform, ``peak_local_max`` markers (``min_distance`` a quarter
of the true median diameter, i.e. told the particle size) and ``watershed``.

Run: ``.venv/bin/python benchmarks/bench_segmentation.py [--n768 8] [--n2048 2] [--repeats 3]``
"""

from __future__ import annotations

import os

# The synthetic scenes are rendered with BLAS; idle OpenBLAS worker threads spin for a while
# after each call and would bill their CPU time to whichever method is timed next (set before
# numpy loads OpenBLAS).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy import ndimage  # noqa: E402
from skimage.feature import peak_local_max  # noqa: E402
from skimage.filters import threshold_otsu  # noqa: E402
from skimage.segmentation import watershed  # noqa: E402

from semqa.particles.matching import pair_split  # noqa: E402
from semqa.particles.measure import measure_particles  # noqa: E402
from semqa.stats.psd import d_values  # noqa: E402
from semqa.particles.segmentation import segment  # noqa: E402
from semqa.synth.scenes import SynthConfig, render_scene, scan_scene  # noqa: E402


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


def timed(
    methods: dict[str, Callable[[np.ndarray], np.ndarray]], image: np.ndarray, pixel_size_um: float, repeats: int
) -> dict[str, dict]:
    """Each method's labels, particles, and the median wall and CPU seconds of its segmentation
    and of the measurement of its labels.

    Methods alternate within each repeat so that both see the same machine load.
    """
    times: dict[str, dict[str, list[float]]] = {
        name: {key: [] for key in ("seg_wall", "seg_cpu", "measure_wall", "measure_cpu")} for name in methods
    }
    out: dict[str, dict] = {}
    for _ in range(repeats):
        for name, fn in methods.items():
            w0, c0 = time.perf_counter(), time.process_time()
            labels = fn(image)
            w1, c1 = time.perf_counter(), time.process_time()
            particles, _ = measure_particles(labels, pixel_size_um)
            w2, c2 = time.perf_counter(), time.process_time()
            for key, value in (("seg_wall", w1 - w0), ("seg_cpu", c1 - c0), ("measure_wall", w2 - w1), ("measure_cpu", c2 - c1)):
                times[name][key].append(value)
            out[name] = {"labels": labels, "particles": particles}
    for name in methods:
        t = times[name]
        out[name].update({key: statistics.median(values) for key, values in t.items()})
        out[name]["pipe_wall"] = statistics.median(np.add(t["seg_wall"], t["measure_wall"]))
        out[name]["pipe_cpu"] = statistics.median(np.add(t["seg_cpu"], t["measure_cpu"]))
    return out


TIME_COLUMNS = ("seg_cpu", "seg_wall", "pipe_cpu", "pipe_wall")


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
        if i == 0:
            # One untimed call of each method first: lazy imports and first-use set-up are not
            # per-image costs.
            for fn in methods.values():
                measure_particles(fn(hr), config.pixel_size_um)
        designed = [ids for ids in truth[truth.touching_group >= 0].groupby("touching_group").particle_id.apply(list) if len(ids) == 2]
        for name, res in timed(methods, hr, config.pixel_size_um, repeats).items():
            particles = res["particles"]
            est = d_values([p.ecd_um for p in particles])
            split = [pair_split(res["labels"], scene.labels, ids) for ids in designed]
            rows.append(
                {
                    "method": name,
                    "size": size,
                    "image": i,
                    **{key: res[key] for key in TIME_COLUMNS},
                    "n": len(particles),
                    "n_true": len(truth),
                    **{f"err_{k}": abs(e - t) / t for k, e, t in zip(("d10", "d50", "d90"), est, true_d)},
                    "pairs": len(split),
                    "pairs_split": int(sum(split)),
                }
            )
    return pd.DataFrame(rows)


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """Accuracy (means over images, %) and median seconds per image, one row per size and method."""
    table = results.groupby(["size", "method"], sort=False).agg(
        images=("image", "nunique"),
        found=("n", "sum"),
        true=("n_true", "sum"),
        d10_err=("err_d10", "mean"),
        d50_err=("err_d50", "mean"),
        d90_err=("err_d90", "mean"),
        pairs=("pairs", "sum"),
        pairs_split=("pairs_split", "sum"),
        **{col: (col, "median") for col in TIME_COLUMNS},
    )
    for col in ("d10_err", "d50_err", "d90_err"):
        table[col] = 100 * table[col]
    table["split"] = 100 * table.pairs_split / table.pairs.where(table.pairs > 0)
    return table.drop(columns=["pairs_split"])


def report(table: pd.DataFrame) -> str:
    """Per size: both methods' accuracy and times, then semqa's times as ratios of the baseline's."""
    lines = []
    for size, block in table.groupby(level="size", sort=False):
        block = block.droplevel("size")
        semqa, base = block.loc["semqa"], block.loc["skimage-baseline"]
        lines.append(f"{size} x {size} px, {int(semqa.images)} images")
        lines.append(
            f"  {'method':<17}{'D10 err':>9}{'D50 err':>9}{'D90 err':>9}{'pairs split':>13}{'found/true':>12}"
            f"{'segment CPU s':>15}{'(wall s)':>10}{'seg+measure CPU s':>19}{'(wall s)':>10}"
        )
        for name, row in block.iterrows():
            lines.append(
                f"  {name:<17}{row.d10_err:>8.2f}%{row.d50_err:>8.2f}%{row.d90_err:>8.2f}%{row.split:>12.1f}%"
                f"{f'{int(row.found)}/{int(row.true)}':>12}{row.seg_cpu:>15.3f}{row.seg_wall:>10.3f}"
                f"{row.pipe_cpu:>19.3f}{row.pipe_wall:>10.3f}"
            )
        lines.append(
            f"  semqa / baseline: segment CPU {semqa.seg_cpu / base.seg_cpu:.2f}x (wall {semqa.seg_wall / base.seg_wall:.2f}x), "
            f"segment+measure CPU {semqa.pipe_cpu / base.pipe_cpu:.2f}x (wall {semqa.pipe_wall / base.pipe_wall:.2f}x)"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n768", type=int, default=8, help="images at 768 × 768")
    parser.add_argument("--n2048", type=int, default=2, help="images at 2048 × 2048")
    parser.add_argument("--repeats", type=int, default=3, help="timings per image (median kept)")
    args = parser.parse_args()
    results = pd.concat([run(768, args.n768, args.repeats), run(2048, args.n2048, args.repeats)])
    print(f"seconds per image: median over {args.repeats} repeats, then over the images; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(report(summarize(results)))


if __name__ == "__main__":
    main()
