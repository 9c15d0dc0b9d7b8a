"""Where the count error on agglomerates comes from: a breakdown per family and method.

For the frames of ``bench_agglomerates.py`` (same families and seeds), every reference
particle not cut by the frame (and of at least ``DEFAULT_MIN_PIXELS``) is classed by the object
that covers most of it (the rule of :func:`semqa.particles.matching.pair_split`):

* ``matched`` — that object matches it one-to-one (IoU > 0.5);
* ``merged`` — that object covers it by more than half but also covers most of another
  reference particle (under-splitting: a cluster left whole);
* ``split`` — no object covers it by more than half, yet the foreground does (over-splitting);
* ``missed`` — less than half of it is foreground at all;
* ``other`` — everything else (a poor outline).

Predicted objects lying mostly (> 50 %) on reference substrate are ``false``. For the mask
itself: ``mask merges`` counts pairs of reference particles *not touching* in the reference
(substrate between them) that fall into one connected component of the predicted foreground;
``substrate in mask`` is the share of reference substrate pixels inside clusters' predicted
foreground, and ``of it enclosed`` the share of those inside filled holes (enclosed by the
reference cluster's own particles).

Run: ``.venv/bin/python benchmarks/diagnose_agglomerates.py [--n 2] [--size 768] [--seed 7]``
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_agglomerates import FAMILIES, scene, true_median_diameter
from bench_segmentation import baseline_segment

from semqa.particles.measure import DEFAULT_MIN_PIXELS, border_labels
from semqa.particles.segmentation import segment


def _interior_ids(labels: np.ndarray) -> np.ndarray:
    """Reference ids not on the frame's border and of at least DEFAULT_MIN_PIXELS pixels."""
    areas = np.bincount(labels.ravel())
    ids = np.flatnonzero(areas >= DEFAULT_MIN_PIXELS)
    return ids[(ids > 0) & ~np.isin(ids, border_labels(labels))]


def breakdown(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """Counts of the classes of the module docstring for one frame."""
    n_t, n_p = int(true.max()) + 1, int(pred.max()) + 1
    # Contingency table of (true, pred) pixel counts.
    table = np.bincount(true.ravel().astype(np.int64) * n_p + pred.ravel(), minlength=n_t * n_p).reshape(n_t, n_p)
    area_t, area_p = table.sum(axis=1), table.sum(axis=0)
    out = dict.fromkeys(("matched", "merged", "split", "missed", "other"), 0)
    for t in _interior_ids(true):
        row = table[t, 1:]
        fg = row.sum()
        if fg < 0.5 * area_t[t]:
            out["missed"] += 1
            continue
        p = int(row.argmax()) + 1
        inter = table[t, p]
        iou = inter / (area_t[t] + area_p[p] - inter)
        if iou > 0.5:
            out["matched"] += 1
        elif inter > 0.5 * area_t[t]:
            col = table[1:, p] / np.maximum(area_t[1:], 1)
            out["merged" if (col > 0.5).sum() >= 2 else "other"] += 1
        elif fg >= 0.5 * area_t[t]:
            out["split"] += 1
        else:
            out["other"] += 1
    out["false"] = int(((table[0, 1:] > 0.5 * area_p[1:]) & (area_p[1:] >= DEFAULT_MIN_PIXELS)).sum())
    out["n_pred"] = int((area_p[1:] >= DEFAULT_MIN_PIXELS).sum())
    out["n_true"] = int(_interior_ids(true).size)
    # Mask merges: reference particles apart in the reference (not 8-adjacent) but joined by the mask.
    comp, _ = ndimage.label(pred > 0, structure=np.ones((3, 3)))
    touching = set()
    for sa, sb in (((slice(None), slice(None, -1)), (slice(None), slice(1, None))),
                   ((slice(None, -1), slice(None)), (slice(1, None), slice(None))),
                   ((slice(None, -1), slice(None, -1)), (slice(1, None), slice(1, None))),
                   ((slice(None, -1), slice(1, None)), (slice(1, None), slice(None, -1)))):
        a, b = true[sa], true[sb]
        d = (a != b) & (a > 0) & (b > 0)
        touching.update(zip(np.minimum(a[d], b[d]).tolist(), np.maximum(a[d], b[d]).tolist()))
    tcomp, _ = ndimage.label(true > 0, structure=np.ones((3, 3)))
    # The predicted component each interior reference particle mostly lies in.
    owner = {}
    for t in _interior_ids(true):
        hits = comp[true == t]
        hits = hits[hits > 0]
        if hits.size:
            owner[t] = int(np.bincount(hits).argmax())
    by_comp: dict[int, list[int]] = {}
    for t, c in owner.items():
        by_comp.setdefault(c, []).append(t)
    merges = 0
    for members in by_comp.values():
        for i, a in enumerate(members):
            for b in members[i + 1:]:
                # Apart in the reference: different reference clusters (not joined by any chain).
                if tcomp[true == a][0] != tcomp[true == b][0]:
                    merges += 1
    out["mask_merges"] = merges
    substrate = true == 0
    in_mask = substrate & (pred > 0)
    enclosed = substrate & ndimage.binary_fill_holes(true > 0)
    out["substrate_in_mask_px"] = int(in_mask.sum())
    out["enclosed_substrate_px"] = int(enclosed.sum())
    out["enclosed_in_mask_px"] = int((enclosed & (pred > 0)).sum())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2)
    parser.add_argument("--size", type=int, default=768)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--families", nargs="*", default=list(FAMILIES))
    args = parser.parse_args()
    rows = []
    for family in args.families:
        for i in range(args.n):
            a = scene(family, args.size, np.random.default_rng(np.random.SeedSequence(args.seed, spawn_key=(FAMILIES.index(family), i))))
            methods = {
                "classic": segment(a.image),
                "baseline": baseline_segment(a.image, max(1, round(0.25 * true_median_diameter(a.labels)))),
            }
            for name, labels in methods.items():
                rows.append({"family": family, "frame": i, "method": name, **breakdown(labels, a.labels)})
    table = pd.DataFrame(rows).groupby(["family", "method"], sort=False).sum(numeric_only=True).drop(columns="frame")
    pd.set_option("display.width", 250)
    print(f"seed {args.seed}, {args.n} frames of {args.size}² per family (sums over frames)")
    print(table.to_string())


if __name__ == "__main__":
    main()
