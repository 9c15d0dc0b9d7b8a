"""Training samples of the segmenter: images with exact instance masks, at working scale.

Synthetic scenes come from :mod:`semqa.synth.scenes`, each with its own randomly drawn
configuration (contrast family, dose, probe blur, particle sizes and spread, shapes,
agglomeration, cover, background unevenness), so that the network does not learn one
rendering. Annotated images come from :func:`semqa.particles.annotations.load_annotated`.

Every image is resampled as :class:`semqa.particles.learned.LearnedSegmenter` resamples at
inference — by the *estimated* particle diameter, not the true one — so training sees what
inference sees, including the estimator's error.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import ndimage
from skimage.transform import resize

from semqa.particles.annotations import Annotated
from semqa.particles.archs import SegmenterConfig
from semqa.particles.learned import normalise, working_factor, working_shape
from semqa.particles.segmentation import estimate_particle_diameter
from semqa.synth.randomized import MEDIAN_ECD_RANGE_PX
from training.segmenter.scenes import SceneMix, mixed_scene


@dataclass(frozen=True)
class Sample:
    """One training image at working scale with its targets."""

    name: str
    image: np.ndarray  # normalised float32
    foreground: np.ndarray  # float32 0/1
    boundary: np.ndarray  # float32 0/1: contact lines between particles
    distance: np.ndarray  # float32 in [0, 1]: distance to the edge / the particle's largest


def targets(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Foreground, contact-line and normalised-distance maps of a label image."""
    lab = labels.astype(np.int64)
    fg = lab > 0
    big = np.where(fg, lab, np.iinfo(np.int64).max)
    # A particle pixel next to a pixel of another particle (higher or lower label).
    contact = fg & ((ndimage.maximum_filter(lab, 3) != lab) | (ndimage.minimum_filter(big, 3) != lab))
    # A particle's edge is substrate or another particle: distances are to either.
    edt = ndimage.distance_transform_edt(fg & ~contact)
    n = int(lab.max())
    peak = np.zeros(n + 1)
    if n:
        peak[1:] = ndimage.maximum(edt, lab, index=np.arange(1, n + 1))
    dist = np.where(fg, edt / np.maximum(peak[lab], 1.0), 0.0)
    return fg.astype(np.float32), contact.astype(np.float32), dist.astype(np.float32)


def working_sample(name: str, image: np.ndarray, labels: np.ndarray, model: SegmenterConfig) -> Sample | None:
    """Resample an image and its labels to working scale (as inference does) and make targets."""
    diameter = estimate_particle_diameter(image)
    if diameter is None:
        return None
    factor = working_factor(diameter, model)
    shape = working_shape(image.shape, factor)
    work = resize(image, shape, order=1, anti_aliasing=factor < 1, preserve_range=True).astype(np.float32)
    lab = resize(labels, shape, order=0, anti_aliasing=False, preserve_range=True).astype(np.int32)
    fg, contact, dist = targets(lab)
    return Sample(name=name, image=normalise(work), foreground=fg, boundary=contact, distance=dist)


def synthetic_samples(
    n: int,
    size_px: int,
    model: SegmenterConfig,
    seed: int,
    median_ecd_px: tuple[float, float] = MEDIAN_ECD_RANGE_PX,
    mix: SceneMix | None = None,
) -> tuple[list[Sample], pd.DataFrame]:
    """``n`` synthetic samples of ``mix`` (default: randomized scenes only) and their manifest.

    The manifest names each sample's seed, scene index and size (and, for a non-default mix
    or size range, its source, LR scan and data bar), so the data digest names the data.
    """
    mix = mix or SceneMix()
    samples, rows = [], []
    for i in range(n):
        image, labels, what = mixed_scene(mix, seed, (i,), size_px, median_ecd_px)
        s = working_sample(f"synth-{seed}-{i:04d}", image, labels, model)
        if s is not None:
            samples.append(s)
            row = {"name": s.name, "source": "synthetic", "seed": seed, "index": i, "size_px": size_px}
            if tuple(median_ecd_px) != MEDIAN_ECD_RANGE_PX:  # the default keeps the manifest (and data digest) it had
                row["median_ecd_px"] = f"{median_ecd_px[0]:g}-{median_ecd_px[1]:g}"
            if not mix.is_default():
                row.update({"scene": what["source"], "lr": what["lr"], "databar": what["databar"]})
            rows.append(row)
    return samples, pd.DataFrame(rows)


def annotated_samples(items: list[Annotated], model: SegmenterConfig) -> tuple[list[Sample], pd.DataFrame]:
    """Annotated images as samples, and their manifest (name and label digest per image)."""
    samples, rows = [], []
    for a in items:
        s = working_sample(a.name, a.image, a.labels, model)
        if s is not None:
            samples.append(s)
            digest = hashlib.sha256(a.image.tobytes() + a.labels.astype(np.int32).tobytes()).hexdigest()
            rows.append({"name": a.name, "source": "annotated", "digest": f"sha256:{digest}", "particles": int(len(np.unique(a.labels)) - 1)})
    return samples, pd.DataFrame(rows)


class PatchSampler:
    """Random patches with flips and quarter turns, as ``(N, 4, P, P)`` arrays (image + 3 targets).

    Each batch is drawn from a generator seeded by ``(seed, step, rank)``, so a run resumed
    from a checkpoint sees exactly the batches an uninterrupted run would have seen.
    """

    def __init__(self, samples: list[Sample], patch: int, seed: int) -> None:
        if not samples:
            raise ValueError("no training samples")
        self.samples, self.patch, self.seed = samples, patch, seed

    def _one(self, rng: np.random.Generator) -> np.ndarray:
        s = self.samples[rng.integers(len(self.samples))]
        stack = np.stack([s.image, s.foreground, s.boundary, s.distance])
        p = self.patch
        pad = ((0, 0), (0, max(0, p - stack.shape[1])), (0, max(0, p - stack.shape[2])))
        stack = np.pad(stack, pad)  # zeros: the normalised substrate level
        r = rng.integers(stack.shape[1] - p + 1)
        c = rng.integers(stack.shape[2] - p + 1)
        out = stack[:, r : r + p, c : c + p]
        out = np.rot90(out, rng.integers(4), axes=(1, 2))
        if rng.random() < 0.5:
            out = out[:, :, ::-1]
        return np.ascontiguousarray(out)

    def batch(self, n: int, step: int, rank: int = 0) -> np.ndarray:
        rng = np.random.default_rng([self.seed, step, rank])
        return np.stack([self._one(rng) for _ in range(n)]).astype(np.float32)
