"""Training data: image pairs in memory, a held-out split by image, random augmented patches.

Paired mode reads ``DIR/hr/<name>`` and ``DIR/lr/<name>`` (same names). HR-only mode reads
HR images (``DIR/hr`` or ``DIR`` itself) and synthesises each LR patch with
:func:`semqa.sr.degradation.degrade`, the same degradation model :mod:`semqa.synth.scenes` uses, with
fresh noise per patch. Held-out images get one fixed LR synthesis each.

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

from semqa.sr.degradation import DegradationConfig, degrade
from semqa.errors import InputError
from semqa.io.images import list_images, read_image


@dataclass(frozen=True)
class Pair:
    """One field of view: HR image, its LR counterpart (None in HR-only training), metadata."""

    name: str
    hr: np.ndarray
    lr: np.ndarray | None
    hr_pixel_size_um: float | None
    hr_digest: str
    lr_digest: str | None


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


def _hr_dir(data_dir: Path) -> Path:
    return data_dir / "hr" if (data_dir / "hr").is_dir() else data_dir


def load_pairs(data_dir: str | Path, scale: int, *, hr_only: bool = False, degradation: DegradationConfig | None = None, seed: int = 0) -> list[Pair]:
    """Read every pair (or HR image) of ``data_dir``; LR of HR-only images is synthesised once.

    Raises
    ------
    InputError
        Missing folders or partners, or an LR image whose size is not HR / ``scale``.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise InputError(f"training data folder not found: {data_dir}")
    hr_dir = _hr_dir(data_dir)
    hr_files = list_images(hr_dir)
    if not hr_files:
        raise InputError(f"no HR images in {hr_dir}")
    pairs: list[Pair] = []
    for i, path in enumerate(hr_files):
        hr_mg = read_image(path)
        hr = hr_mg.image
        if hr_only:
            deg = degradation or DegradationConfig(scale=scale)
            lr = degrade(hr, deg, np.random.default_rng([seed, i, 7]))
            lr_digest = None
        else:
            lr_path = data_dir / "lr" / path.name
            if not lr_path.is_file():
                raise InputError(f"{path.name}: no LR partner {lr_path} (use --hr-only to synthesise LR images)")
            lr_mg = read_image(lr_path)
            lr, lr_digest = lr_mg.image, lr_mg.digest
        h, w = lr.shape[0] * scale, lr.shape[1] * scale
        if hr.shape[0] < h or hr.shape[1] < w or hr.shape[0] >= h + scale or hr.shape[1] >= w + scale:
            raise InputError(
                f"{path.name}: LR {lr.shape[1]}×{lr.shape[0]} is not HR {hr.shape[1]}×{hr.shape[0]} divided by scale {scale}"
            )
        pairs.append(Pair(path.name, np.ascontiguousarray(hr[:h, :w]), lr, hr_mg.pixel_size_um, hr_mg.digest, lr_digest))
    return pairs


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
