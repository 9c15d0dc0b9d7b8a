"""Speed of synthetic pair generation, and of its outline rasteriser against scikit-image's.

Prints seconds per HR/LR pair written (TIFFs, truth, manifest) at 768² and 2048², and,
on the same particle outlines, the time and agreement of :func:`semqa.synth.scenes._fill_polygon`
(scan lines) against :func:`skimage.draw.polygon` (the baseline it replaces).

With ``--baseline TREE`` (a ``git archive`` of an earlier commit), the demo's 768² scene
(D50 2 µm) is rendered and scanned in both trees, alternating fresh processes: median CPU
seconds per scene of each, their ratio, and whether every array and truth table is
byte-identical (the speed-ups must not change what the scenes are).

    .venv/bin/python benchmarks/synth_speed.py [--pairs 10] [--workers 1] [--baseline TREE --scenes 8]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

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


#: Renders the demo's scenes in the child (its tree on PYTHONPATH): CPU seconds and a digest per scene.
_SCENES_CHILD = r"""
import hashlib, json, sys, time
import numpy as np
from semqa.synth.scenes import SynthConfig, _rng, render_scene, scan_scene
config, out = SynthConfig(d50_um=2.0, size_px=768), []
for k in range(int(sys.argv[1])):
    t = time.process_time()
    rng = _rng(0, k)
    scene = render_scene(config, rng)
    hr, lr = scan_scene(scene, config, rng)
    cpu = time.process_time() - t
    h = hashlib.sha256()
    for a in (scene.clean, scene.coverage, scene.labels, hr, lr):
        h.update(np.ascontiguousarray(a).tobytes())
    h.update(scene.particles.to_csv(index=False).encode())
    out.append((cpu, h.hexdigest()))
print(json.dumps(out))
"""


def _scenes_in(tree: Path, n: int) -> list[tuple[float, str]]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    run = subprocess.run([sys.executable, "-c", _SCENES_CHILD, str(n)], env=env, capture_output=True, text=True, check=True)
    return [tuple(x) for x in json.loads(run.stdout)]


def _compare_with(baseline: Path, n: int, rounds: int = 2) -> None:
    tree = Path(__file__).resolve().parents[1]
    cpu: dict[str, list[float]] = {"baseline": [], "tree": []}
    digests: dict[str, list[str]] = {}
    for _ in range(rounds):
        for which, root in (("baseline", baseline), ("tree", tree)):
            scenes = _scenes_in(root.resolve(), n)
            cpu[which] += [c for c, _ in scenes]
            digests[which] = [d for _, d in scenes]
    base, new = median(cpu["baseline"]), median(cpu["tree"])
    same = digests["baseline"] == digests["tree"]
    print(f"demo scene 768² (render + both scans), median CPU s over {rounds}×{n} scenes: baseline {base:.3f}, "
          f"this tree {new:.3f}, ratio {new / base:.2f}; arrays and truth byte-identical: {same}; "
          f"load average {os.getloadavg()[0]:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--baseline", type=Path, help="tree of a baseline commit to compare the demo's scenes with")
    parser.add_argument("--scenes", type=int, default=8, help="scenes per tree and round with --baseline")
    args = parser.parse_args()
    if args.baseline is not None:
        _compare_with(args.baseline, args.scenes)
    _rasterisers()
    for size, n in ((768, args.pairs), (2048, max(1, args.pairs // 5))):
        per_pair, per_image = _time_pairs(size, n, args.workers)
        print(f"{size}×{size} HR (+{size // 4}² LR): {per_pair:.2f} s per pair over {n} pairs, "
              f"{per_image} particles per image, workers={args.workers}")


if __name__ == "__main__":
    main()
