"""Training data: a held-out split by image and random augmented patches of the pairs.

Pairs are read by :func:`semqa.sr.pairs.load_pairs`. In HR-only mode each training LR patch
is synthesised with :func:`semqa.sr.degradation.degrade`, the same degradation model
:mod:`semqa.synth.scenes` uses, with fresh noise per patch; held-out images keep the one LR
synthesis ``load_pairs`` made.

Each batch is drawn from a generator seeded by ``(seed, step, rank)``, so a run resumed from
a checkpoint sees exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from semqa.errors import InputError
from semqa.sr.degradation import DegradationConfig, degrade
from semqa.sr.pairs import Pair


@dataclass(frozen=True)
class PairData:
    """The training and held-out images of a run and how they were obtained."""

    train: list[Pair]
    val: list[Pair]
    scale: int
    mode: str
    source: Path

    def manifest(self) -> pd.DataFrame:
        """One row per image: name, split, digests, sizes — logged as the MLflow dataset."""
        rows = [
            {
                "name": p.name,
                "split": split,
                "hr_sha256": p.hr_digest,
                "lr_sha256": p.lr_digest or "synthesized",
                "hr_height": p.hr.shape[0],
                "hr_width": p.hr.shape[1],
                "hr_pixel_size_um": p.hr_pixel_size_um,
            }
            for split, pairs in (("train", self.train), ("val", self.val))
            for p in pairs
        ]
        return pd.DataFrame(rows)


def split_pairs(pairs: list[Pair], val_fraction: float, min_val: int, max_val: int, seed: int) -> tuple[list[Pair], list[Pair]]:
    """Hold out whole images (never patches of a training image) for evaluation."""
    n = len(pairs)
    n_val = min(max_val, max(min_val, round(val_fraction * n))) if val_fraction > 0 or min_val > 0 else 0
    if n - n_val < 1:
        raise InputError(f"{n} image(s) are too few: {n_val} held out for evaluation leaves none to train on")
    order = np.random.default_rng([seed, 1]).permutation(n)
    val_idx = set(order[:n_val].tolist())
    return [p for i, p in enumerate(pairs) if i not in val_idx], [p for i, p in enumerate(pairs) if i in val_idx]


class PatchSampler:
    """Random aligned LR/HR patches with flips and 90° rotations.

    Parameters
    ----------
    pairs : list of Pair
        Training images (with ``lr`` for paired mode).
    scale : int
        HR pixels per LR pixel.
    patch_size : int
        HR patch side.
    degradation : DegradationConfig, optional
        HR-only mode: synthesise each LR patch from its HR patch (fresh noise).
    """

    def __init__(self, pairs: list[Pair], scale: int, patch_size: int, degradation: DegradationConfig | None = None) -> None:
        self.pairs, self.scale, self.patch = pairs, scale, patch_size
        self.degradation = degradation
        for p in pairs:
            if min(p.hr.shape) < patch_size:
                raise InputError(f"{p.name}: HR image {p.hr.shape[1]}×{p.hr.shape[0]} is smaller than the patch size {patch_size}")
        areas = np.array([p.hr.size for p in pairs], dtype=float)
        self.weights = areas / areas.sum()
        # Context around a synthesised patch so the probe blur sees real neighbours: 4 sigma,
        # rounded up to whole LR pixels.
        if degradation is not None:
            self.margin = scale * math.ceil(4 * degradation.psf_sigma / scale)

    def _synth(self, pair: Pair, y: int, x: int, rng: np.random.Generator) -> np.ndarray:
        s, m, ps = self.scale, self.margin, self.patch
        h, w = pair.hr.shape
        y0, x0 = max(0, y - m), max(0, x - m)
        y1, x1 = min(h, y + ps + m), min(w, x + ps + m)
        # Keep the LR grid aligned with the patch: margins are whole LR pixels.
        y0, x0 = y - ((y - y0) // s) * s, x - ((x - x0) // s) * s
        y1, x1 = y + ps + ((y1 - y - ps) // s) * s, x + ps + ((x1 - x - ps) // s) * s
        lr = degrade(pair.hr[y0:y1, x0:x1], self.degradation, rng)
        oy, ox = (y - y0) // s, (x - x0) // s
        return lr[oy : oy + ps // s, ox : ox + ps // s]

    def batch(self, batch_size: int, seed: int, step: int, rank: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """LR ``(B, 1, p/s, p/s)`` and HR ``(B, 1, p, p)`` tensors for one step of one process."""
        rng = np.random.default_rng([seed, step, rank])
        s, ps = self.scale, self.patch
        lrs, hrs = [], []
        for _ in range(batch_size):
            pair = self.pairs[rng.choice(len(self.pairs), p=self.weights)]
            h, w = pair.hr.shape
            ly = int(rng.integers(0, (h - ps) // s + 1))
            lx = int(rng.integers(0, (w - ps) // s + 1))
            hr = pair.hr[ly * s : ly * s + ps, lx * s : lx * s + ps]
            lr = self._synth(pair, ly * s, lx * s, rng) if self.degradation is not None else pair.lr[ly : ly + ps // s, lx : lx + ps // s]
            k, flip = int(rng.integers(4)), bool(rng.integers(2))
            hr, lr = np.rot90(hr, k), np.rot90(lr, k)
            if flip:
                hr, lr = hr[:, ::-1], lr[:, ::-1]
            hrs.append(np.ascontiguousarray(hr))
            lrs.append(np.ascontiguousarray(lr))
        return torch.from_numpy(np.stack(lrs)[:, None]), torch.from_numpy(np.stack(hrs)[:, None])
