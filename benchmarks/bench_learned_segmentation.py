"""Learned vs classic vs plain segmentation, same images, same run.

For each scene family, and for a user's annotated folder if given (``DIR/images`` +
``DIR/labels``, :func:`semqa.particles.annotations.load_annotated`), prints per method the
mean per-image particle-count error, D10/D50/D90 relative errors, matched precision and
recall (IoU > 0.5) and mean IoU (:func:`semqa.particles.matching.score_image`), and CPU and
wall seconds per megapixel (median over images); then the learned segmenter's wall time on
a 1024 × 768 HR frame and a 1024 × 768 LR frame.

Methods: ``classic`` (:func:`semqa.particles.segmentation.segment`), ``learned`` (the model
named by ``--model``) and ``baseline`` (the plain scikit-image pipeline of
``bench_segmentation.py``, told the true median diameter for its marker distance).

Families: ``hr`` — :mod:`semqa.synth.scenes` defaults (0.1 µm/px, D50 3 µm, bright rims);
``lr`` — the 4× coarser fast scans of the same scenes; ``randomized`` — scenes of
:mod:`semqa.synth.randomized` from a seed stream training never uses; ``agglo-se``,
``agglo-flat``, ``dome-clumps`` — the agglomerate families of ``bench_agglomerates.py``
(clusters of irregular particles; flat contrast; overlapping domes), also from their own seed
stream; ``facets`` — :mod:`semqa.synth.facets` (faceted, partly concave polygons with tilt-lit faces
on carbon tape, D50 30 px, 100 e⁻/px), a renderer no training mix draws from, so the learned model
is scored there on a kind of image it has never seen (a model whose ``scene_mix`` has ``facets``
did see it); ``mixed`` — scenes of the segmenter's training sources
(:func:`training.segmenter.scenes.mixed_scene`: randomized, agglomerates, families and facets in
equal shares, randomized settings: bright or dark particles, illumination gradients, texture,
15–800 e⁻/px, 30 % of randomized and family scenes as the fast scan, no data bars), the frames on
which the particle-size estimate the learned path resamples by used to fail. Training draws its scenes from ``SeedSequence(seed, spawn_key=(i,))`` with the
training seed (0 for the shipped model); the benchmark's seed (default 4242) is another.

Run: ``.venv/bin/python benchmarks/bench_learned_segmentation.py --model models:/semqa-segmenter/1 [URI ...] [--n 4] [--user DIR]``
(several ``--model`` values: scored as ``learned1``, ``learned2``, … against the same classic and baseline figures)
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
from skimage.transform import resize

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_agglomerates import FAMILIES as AGGLOMERATE_FAMILIES
from bench_agglomerates import scene as agglomerate_scene
from bench_segmentation import baseline_segment

from semqa.particles.annotations import Annotated, load_annotated
from semqa.particles.learned import load_segmenter
from semqa.particles.matching import mean_scores, score_image
from semqa.particles.segmentation import segment
from semqa.synth.facets import FacetConfig, render_facets
from semqa.synth.randomized import MEDIAN_ECD_RANGE_PX, PIXEL_SIZE_UM, synthetic_scene
from semqa.synth.scenes import SynthConfig, render_scene, scan_scene
from training.segmenter.scenes import SceneMix, mixed_scene

FAMILIES = ("hr", "lr", "randomized", *AGGLOMERATE_FAMILIES, "facets", "mixed")


def families(n: int, size: int, seed: int) -> dict[str, list[Annotated]]:
    config = SynthConfig(size_px=size)
    out: dict[str, list[Annotated]] = {"hr": [], "lr": [], "randomized": []}
    for i in range(n):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(i,)))
        scene = render_scene(config, rng)
        hr, lr = scan_scene(scene, config, rng)
        out["hr"].append(Annotated(f"hr{i}", hr, scene.labels, config.pixel_size_um))
        # LR truth: the HR labels on the LR grid (nearest neighbour).
        lr_labels = resize(scene.labels, lr.shape, order=0, anti_aliasing=False, preserve_range=True).astype(np.int32)
        out["lr"].append(Annotated(f"lr{i}", lr, lr_labels, config.lr_pixel_size_um))
        image, labels = synthetic_scene(np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(7_000_001, i))), size)
        out["randomized"].append(Annotated(f"rnd{i}", image, labels, PIXEL_SIZE_UM))
    for k, family in enumerate(AGGLOMERATE_FAMILIES):
        out[family] = [
            agglomerate_scene(family, size, np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(8_000_001, k, i))))
            for i in range(n)
        ]
    # Pixel size 1: the scores are relative errors, and the renderer works in pixels.
    out["facets"] = []
    for i in range(n):
        scene = render_facets(FacetConfig(size_px=size, d50_px=30.0, dose=100.0), np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(9_000_001, i))))
        out["facets"].append(Annotated(f"facets{i}", scene.image, scene.labels, 1.0))
    mix = SceneMix(randomized=1.0, agglomerates=1.0, families=1.0, facets=1.0, lr_fraction=0.3)
    out["mixed"] = []
    for i in range(n):
        image, labels, _ = mixed_scene(mix, seed, (10_000_001, i), size, MEDIAN_ECD_RANGE_PX)
        out["mixed"].append(Annotated(f"mixed{i}", image, labels, 1.0))
    return out


def true_median_diameter(labels: np.ndarray) -> float:
    areas = np.bincount(labels.ravel())[1:]
    areas = areas[areas > 0]
    return float(np.sqrt(4 * np.median(areas) / np.pi)) if areas.size else 10.0


def run_family(items: list[Annotated], methods: dict) -> list[dict]:
    rows = []
    for name, fn in methods.items():
        scores, cpu, wall = [], [], []
        for a in items:
            w0, c0 = time.perf_counter(), time.process_time()
            labels = fn(a)
            w1, c1 = time.perf_counter(), time.process_time()
            mp = a.image.size / 1e6
            cpu.append((c1 - c0) / mp)
            wall.append((w1 - w0) / mp)
            scores.append(score_image(labels, a.labels, a.pixel_size_um or 1.0))
        s = mean_scores(scores)
        rows.append({
            "method": name, "images": len(items), "n_true": s.n_true, "n_pred": s.n_pred,
            "count_err_%": 100 * s.count_rel_error,
            "d10_err_%": 100 * s.d10_rel_error if s.d10_rel_error is not None else np.nan,
            "d50_err_%": 100 * s.d50_rel_error if s.d50_rel_error is not None else np.nan,
            "d90_err_%": 100 * s.d90_rel_error if s.d90_rel_error is not None else np.nan,
            "precision": s.precision, "recall": s.recall, "mean_iou": s.mean_iou,
            "cpu_s_per_MP": statistics.median(cpu), "wall_s_per_MP": statistics.median(wall),
        })
    return rows


def _ratio(learned: float, classic: float) -> str:
    """learned / classic as ``1.23x``; where classic's error is zero the ratio says nothing, so both are shown."""
    return f"{learned / classic:.2f}x" if classic > 0 else f"n/a ({learned:.3g} % vs 0 %)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", nargs="+", default=["learned"],
                    help="segmenter(s): learned (production), models:/ URI or folder; several are scored in the same run")
    ap.add_argument("--n", type=int, default=4, help="images per synthetic family")
    ap.add_argument("--size", type=int, default=768, help="side of the synthetic HR images, px")
    ap.add_argument("--user", metavar="DIR", help="annotated folder: DIR/images + DIR/labels")
    ap.add_argument("--seed", type=int, default=4242)
    ap.add_argument("--families", nargs="+", choices=FAMILIES, default=list(FAMILIES), help="synthetic families to score (default: all)")
    args = ap.parse_args()

    models = [load_segmenter(uri, device="cpu") for uri in args.model]
    names = ["learned"] if len(models) == 1 else [f"learned{i}" for i in range(1, len(models) + 1)]
    methods = {"classic": lambda a: segment(a.image)}
    for name, model in zip(names, models):
        methods[name] = lambda a, model=model: model.segment(a.image)
    methods["baseline"] = lambda a: baseline_segment(a.image, max(1, round(0.25 * true_median_diameter(a.labels))))
    sets = {k: v for k, v in families(args.n, args.size, args.seed).items() if k in args.families}
    if args.user:
        sets["user"] = load_annotated(args.user)
    # One untimed call per method: lazy imports and first-use set-up are not per-image costs.
    warm = next(iter(sets.values()))[0]
    for fn in methods.values():
        fn(warm)
    rows = []
    for family, items in sets.items():
        rows += [{"family": family, **r} for r in run_family(items, methods)]
    table = pd.DataFrame(rows)
    pd.set_option("display.width", 200)
    for name, model in zip(names, models):
        print(f"{name}: segmenter {model.ref.model_uri} (version {model.ref.version}, {model.ref.weights_digest[:19]}…)")
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    for family in sets:
        sub = table[table.family == family].set_index("method")
        for name in names:
            print(f"{family}: {name} / classic count error {_ratio(sub.loc[name, 'count_err_%'], sub.loc['classic', 'count_err_%'])}, "
                  f"D50 error {_ratio(sub.loc[name, 'd50_err_%'], sub.loc['classic', 'd50_err_%'])}, "
                  f"CPU time {sub.loc[name, 'cpu_s_per_MP'] / sub.loc['classic', 'cpu_s_per_MP']:.2f}x")
    # A 1024 × 768 HR frame, and a 1024 × 768 LR frame (the fast scan of a 4096-px field).
    config = SynthConfig(size_px=4096)
    hr, lr = scan_scene(render_scene(config, np.random.default_rng(1)), config, np.random.default_rng(2))
    for name, model in zip(names, models):
        for frame_name, frame in (("HR", hr[:768, :1024]), ("LR", lr[:768, :1024])):
            walls, cpus = [], []
            for _ in range(3):
                w0, c0 = time.perf_counter(), time.process_time()
                model.segment(frame)
                walls.append(time.perf_counter() - w0)
                cpus.append(time.process_time() - c0)
            # CPU seconds over all threads: on 2 idle cores the wall time is about half of it; on a
            # shared host the wall time also counts waiting for a core (load average above).
            print(f"{name} on a 1024 × 768 {frame_name} frame: CPU {statistics.median(cpus):.2f} s, wall {statistics.median(walls):.2f} s "
                  f"(medians of 3; torch threads {__import__('torch').get_num_threads()}; load average {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
