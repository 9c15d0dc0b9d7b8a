"""Accuracy of a segmentation against reference instance masks: pure functions.

One image is scored by :func:`score_image`: particle count error, D10/D50/D90 relative errors
of the number-weighted ECD distribution, and matched-particle precision, recall and mean IoU
(one-to-one matching at IoU > 0.5, :func:`semqa.particles.measure.match_particles`; the
COCO / Cellpose average-precision convention: Caicedo et al., *Nat. Methods* 16, 2019;
Stringer et al., *Nat. Methods* 18, 2021). :func:`mean_scores` averages images: the
figure the issue's goal states is the *mean per-image* error.

Sizes are measured with :func:`semqa.particles.measure.measure_particles` on both label
images with the same border exclusion (ISO 13322-1) and minimum pixel count, so the
prediction and the reference describe the same population; relative errors do not depend
on the pixel size, which is still passed so that the measured sizes are in µm.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from pydantic import BaseModel, Field

from semqa.particles.annotations import Annotated
from semqa.particles.measure import (
    DEFAULT_MIN_PIXELS,
    match_particles,
    measure_particles,
)
from semqa.stats.psd import d_values


class SegmentationScore(BaseModel):
    """Accuracy of one segmentation (or the mean over several images)."""

    n_images: int = 1
    n_true: float = Field(description="reference particles measured (after border and size exclusion)")
    n_pred: float = Field(description="predicted particles measured (after border and size exclusion)")
    count_rel_error: float = Field(description="|n_pred − n_true| / n_true")
    d10_rel_error: float | None = Field(None, description="|D10(pred) − D10(true)| / D10(true), number-weighted ECD")
    d50_rel_error: float | None = Field(None, description="|D50(pred) − D50(true)| / D50(true)")
    d90_rel_error: float | None = Field(None, description="|D90(pred) − D90(true)| / D90(true)")
    precision: float = Field(description="predicted particles matched by a reference one (IoU > 0.5)")
    recall: float = Field(description="reference particles matched by a predicted one (IoU > 0.5)")
    mean_iou: float | None = Field(None, description="mean IoU of the matched pairs")


def _rel(a: float, b: float) -> float | None:
    return abs(a - b) / b if math.isfinite(a) and math.isfinite(b) and b > 0 else None


def score_image(
    labels_pred: np.ndarray,
    labels_true: np.ndarray,
    pixel_size_um: float = 1.0,
    *,
    min_pixels: int = DEFAULT_MIN_PIXELS,
    exclude_border: bool = True,
) -> SegmentationScore:
    """Score one predicted label image against the reference labels of the same field.

    Parameters
    ----------
    labels_pred, labels_true : numpy.ndarray
        Integer label images of the same shape, 0 = background.
    pixel_size_um : float
        µm per pixel (relative errors do not depend on it).
    min_pixels, exclude_border
        Exclusions applied to both, as :func:`semqa.particles.measure.measure_particles`.

    Returns
    -------
    SegmentationScore
        D-value errors are None where either side has no particle; the count error is
        ``n_pred`` (relative to one particle) when the reference has none.
    """
    kwargs = dict(min_pixels=min_pixels, exclude_border=exclude_border)
    pred, _ = measure_particles(labels_pred, pixel_size_um, **kwargs)
    true, _ = measure_particles(labels_true, pixel_size_um, **kwargs)
    d_pred = d_values([p.ecd_um for p in pred])
    d_true = d_values([p.ecd_um for p in true])
    match = match_particles(labels_pred, labels_true)
    n_true, n_pred = len(true), len(pred)
    return SegmentationScore(
        n_true=n_true,
        n_pred=n_pred,
        count_rel_error=abs(n_pred - n_true) / max(n_true, 1),
        d10_rel_error=_rel(d_pred[0], d_true[0]),
        d50_rel_error=_rel(d_pred[1], d_true[1]),
        d90_rel_error=_rel(d_pred[2], d_true[2]),
        precision=match.precision,
        recall=match.recall,
        mean_iou=match.mean_iou,
    )


def mean_scores(scores: Sequence[SegmentationScore]) -> SegmentationScore:
    """Per-image mean of each figure (undefined values left out of their mean)."""
    if not scores:
        raise ValueError("no scores to average")

    def mean(key: str) -> float | None:
        values = [getattr(s, key) for s in scores if getattr(s, key) is not None]
        return float(np.mean(values)) if values else None

    fields = [k for k in SegmentationScore.model_fields if k != "n_images"]
    return SegmentationScore(n_images=sum(s.n_images for s in scores), **{k: mean(k) for k in fields})


def score_set(segment_fn: Callable[[np.ndarray], np.ndarray], items: Sequence[Annotated]) -> SegmentationScore:
    """Mean per-image score of ``segment_fn(image) → labels`` on annotated images."""
    if not items:
        raise ValueError("no annotated images to score")
    return mean_scores([score_image(segment_fn(a.image), a.labels, a.pixel_size_um or 1.0) for a in items])


def pair_split(labels: np.ndarray, true_labels: np.ndarray, ids: Sequence[int]) -> bool:
    """Whether a designed group of touching particles came out split: each true particle's
    best-overlapping object matches it (IoU > 0.5, the matching rule of :func:`score_image`)
    and no two of them share that object.

    Parameters
    ----------
    labels : numpy.ndarray
        Segmented label image, 0 = background.
    true_labels : numpy.ndarray
        The exact instance labels of the same frame.
    ids : sequence of int
        The true labels of the group (e.g. a designed touching pair).

    Examples
    --------
    >>> truth = np.array([[1, 1, 2, 2]])
    >>> pair_split(truth, truth, [1, 2]), pair_split(np.array([[1, 1, 1, 1]]), truth, [1, 2])
    (True, False)
    """
    best = []
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
        best.append(obj)
    return len(set(best)) == len(best)
