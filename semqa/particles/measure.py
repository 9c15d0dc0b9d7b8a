"""Per-particle measurement of a label image, in µm, with ISO 13322-1 exclusions.

Definitions (ISO 9276-6 descriptors, computed with :func:`skimage.measure.regionprops`):

* ``area_um2``: pixel count × pixel area (complete pixel counting, as ISO 13322-1 assumes).
* ``ecd_um``: equivalent circular diameter, ``sqrt(4 A / π)``.
* ``perimeter_um``: Crofton perimeter (``perimeter_crofton``, 4 directions). On digital disks
  it gives a circularity within 1 % of 1 from radius 10 px upward, where the default
  chain-code ``perimeter`` is biased by 2–8 %.
* ``feret_max_um``, ``feret_min_um``: maximum and minimum caliper diameters of the convex
  hull of the particle's 0.5 iso-contour (the midpoints of its boundary pixel edges), the
  maximum as the largest vertex distance, the minimum by rotating calipers (the minimum width
  is attained with one caliper flush with a hull edge; Toussaint 1983, "Solving geometric
  problems with the rotating calipers"). scikit-image has no minimum Feret diameter, and its
  ``feret_diameter_max`` contours the *convex image*, which is up to ~2 px too wide (8 % on a
  20-px-wide rotated rectangle), so both are computed here from the particle's own outline.
* ``aspect_ratio``: ``feret_max / feret_min`` (≥ 1; the reciprocal of ISO 9276-6's
  ``x_Feret,min / x_Feret,max``).
* ``circularity``: ``4 π A / P²`` with the Crofton perimeter, clipped to ≤ 1 (digitisation can
  push small objects slightly above 1).
* ``solidity``: area / convex area (``solidity``; scikit-image's convex image counts every
  pixel the hull touches, so thin or rotated straight-edged particles read a few per cent low,
  e.g. 0.95 for a 20 × 80 px rectangle at 30°).
* ``centroid_x_um``, ``centroid_y_um``: pixel-count centroid, the image's top-left corner at
  (0, 0), x to the right, y down; pixel ``(row, col)`` covers ``[col, col + 1) × [row, row + 1)``
  pixel sizes.

Exclusions follow ISO 13322-1:2014 practice: a particle cut by the image border has an
unknown size and is dropped; a particle covered by too few pixels cannot be sized (its
pixel-count area is dominated by quantisation) and is dropped as well. Both counts are
reported in :class:`Exclusions`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, Field
from scipy.spatial import ConvexHull
from skimage.measure import grid_points_in_poly, regionprops

from semqa.errors import InputError
from semqa.particles.primitives import perimeter_crofton

if TYPE_CHECKING:
    import pandas as pd

#: Smallest particle sized, in pixels of area. ISO 13322-1 asks that the lower limit of
#: measurement be set so that a particle spans enough pixels for its pixel-count area to be
#: meaningful; 10 px (ECD ≈ 3.6 px) bounds the quantisation error of the area of a disk to
#: roughly ±25 % and keeps the smallest particles of a low-resolution (4× coarser) SEM frame.
#: Raise it for shape descriptors, which need more pixels than size does.
DEFAULT_MIN_PIXELS: int = 10


class Particle(BaseModel):
    """One measured particle; lengths in µm, areas in µm²."""

    image: str = Field(description="name of the image the particle was found in")
    label: int = Field(description="label of the particle in the label image")
    ecd_um: float = Field(description="equivalent circular diameter sqrt(4A/π)")
    area_um2: float
    perimeter_um: float = Field(description="Crofton perimeter (4 directions)")
    feret_max_um: float
    feret_min_um: float
    aspect_ratio: float = Field(description="feret_max / feret_min (≥ 1)")
    circularity: float = Field(description="4πA/P² with the Crofton perimeter, ≤ 1")
    solidity: float = Field(description="area / convex hull area")
    centroid_x_um: float
    centroid_y_um: float
    exclusion: str | None = Field(
        None,
        description="why the particle is not in the PSD: 'border' (cut by the edge of the analysed region) or "
        "'too_small' (below min_pixels); None for measured particles",
    )


class Exclusions(BaseModel):
    """Particles found but not measured, and why (ISO 13322-1 practice)."""

    border: int = Field(0, description="particles cut by the image border")
    too_small: int = Field(0, description="particles below min_pixels (not on the border)")
    min_pixels: int = Field(description="minimum particle area in pixels used")


class MatchResult(BaseModel):
    """One-to-one matching of predicted and reference particles by intersection over union."""

    n_pred: int
    n_true: int
    matched: int = Field(description="pairs with IoU above the threshold")
    missed: int = Field(description="reference particles without a match (n_true − matched)")
    hallucinated: int = Field(description="predicted particles without a match (n_pred − matched)")
    recall: float = Field(description="matched / n_true; 1.0 when n_true is 0")
    precision: float = Field(description="matched / n_pred; 1.0 when n_pred is 0")
    mean_iou: float | None = Field(description="mean IoU of the matched pairs; None when none matched")
    iou_threshold: float


def _check_labels(labels: np.ndarray, name: str = "labels") -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.size == 0:
        raise InputError(f"{name} must be a non-empty 2-D label image, got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise InputError(f"{name} must hold integer labels, got dtype {labels.dtype}")
    if labels.min() < 0:
        raise InputError(f"{name} must not hold negative labels")
    return labels


def border_labels(labels: np.ndarray) -> np.ndarray:
    """The labels (> 0) with a pixel on the frame's outermost rows or columns: the particles the
    frame cuts, excluded from a PSD (ISO 13322-1) and from ground truth alike.

    >>> border_labels(np.array([[1, 0, 0], [0, 2, 0], [0, 0, 3]]))
    array([1, 3])
    """
    edges = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    found = np.unique(edges)
    return found[found > 0]


def outline_hull(region_image: np.ndarray) -> np.ndarray:
    """Vertices ``(row, col)`` of the convex hull of a region's outline, in the region image's frame.

    The outline is the 0.5 iso-contour of the region's own pixel mask: on a binary mask it
    passes through the midpoint of every pixel edge between the region and the background, the
    points :func:`skimage.measure.find_contours` returns. Only their hull is needed here, so the
    points are taken directly, without assembling them into contour lines (which costs far more).
    """
    padded = np.zeros((region_image.shape[0] + 2, region_image.shape[1] + 2), dtype=bool)
    padded[1:-1, 1:-1] = region_image
    across_rows, across_cols = np.nonzero(padded[:, :-1] != padded[:, 1:])
    down_rows, down_cols = np.nonzero(padded[:-1] != padded[1:])
    points = np.concatenate(
        [np.column_stack([across_rows, across_cols + 0.5]), np.column_stack([down_rows + 0.5, down_cols])]
    ) - 1.0
    return points[ConvexHull(points).vertices]


def _feret_diameters(hull: np.ndarray) -> tuple[float, float]:
    """Maximum and minimum caliper diameters, in pixels, of a region's outline hull.

    ``hull`` is from :func:`outline_hull`: the hull of the 0.5 iso-contour of the region's own
    pixel mask (through the midpoints of its boundary pixel edges), as
    :attr:`skimage.measure.RegionProperties.feret_diameter_max` uses for its convex image; taking
    the region's own mask avoids the up-to-1.7-pixel overestimate of the convex image (which
    includes every pixel its hull of pixel corners touches). Feret max is the largest distance
    between hull vertices; Feret min is the least width over hull-edge directions (rotating
    calipers, Toussaint 1983).
    """
    # The largest squared vertex distance, then one square root (monotonic, so the same value
    # as the largest distance; a hull has few vertices, so all pairs are cheap).
    offsets = hull[:, None, :] - hull[None, :, :]
    feret_max = math.sqrt(float((offsets[..., 0] ** 2 + offsets[..., 1] ** 2).max()))
    edges = np.concatenate([hull[1:], hull[:1]]) - hull  # each vertex to the next: np.roll(hull, -1, axis=0), without its set-up
    lengths = np.hypot(edges[:, 0], edges[:, 1])
    keep = lengths > 0
    edges, starts, lengths = edges[keep], hull[keep], lengths[keep]
    rel = hull[None, :, :] - starts[:, None, :]
    # |cross(edge_i, v_j − start_i)| / |edge_i| is the distance of hull vertex j from edge i's line.
    dist = np.abs(edges[:, 0, None] * rel[:, :, 1] - edges[:, 1, None] * rel[:, :, 0]) / lengths[:, None]
    return feret_max, float(dist.max(axis=1).min())


def convex_image(region_image: np.ndarray, hull: np.ndarray | None = None) -> np.ndarray:
    """Pixels of ``region_image`` whose centres lie in or on the region's outline hull.

    The same pixels as :func:`skimage.morphology.convex_hull_image` (and so as
    :attr:`skimage.measure.RegionProperties.image_convex`), for less work: that function takes
    the hull of the pixel-edge midpoints of each row's and column's end pixels, which is the
    same polygon as the hull of the outline's edge midpoints (:func:`outline_hull`), and
    rasterizes it with :func:`skimage.measure.grid_points_in_poly`, as here. Pass ``hull`` when
    it is already known.
    """
    return grid_points_in_poly(region_image.shape, outline_hull(region_image) if hull is None else hull)


def measure_particles(
    labels: np.ndarray,
    pixel_size_um: float,
    *,
    image_name: str = "",
    min_pixels: int = DEFAULT_MIN_PIXELS,
    exclude_border: bool = True,
    origin_px: tuple[int, int] = (0, 0),
) -> tuple[list[Particle], Exclusions]:
    """Measure every labelled particle, excluding border-cut and too-small ones.

    Parameters
    ----------
    labels : numpy.ndarray
        2-D integer label image, 0 = background (as returned by :func:`semqa.particles.segmentation.segment`).
    pixel_size_um : float
        Pixel size in µm per pixel (square pixels).
    image_name : str
        Written into every :class:`Particle` so particles of several images can be pooled.
    min_pixels : int
        Particles with fewer pixels are excluded and counted in ``Exclusions.too_small``.
    exclude_border : bool
        Exclude particles touching the first or last row or column (ISO 13322-1).
    origin_px : tuple of int
        ``(row, col)`` of ``labels``' first pixel in the frame the centroids refer to (the
        analysed region's corner), in pixels of ``labels``.

    Returns
    -------
    particles : list of Particle
        Measured particles, in label order.
    exclusions : Exclusions
        How many particles were excluded and why. A particle both on the border and too
        small counts as ``border``.

    Raises
    ------
    InputError
        For a label image that is not 2-D non-negative integers, a pixel size that is not a
        positive finite number, or ``min_pixels < 1``.
    """
    particles, _, exclusions = measure_regions(
        labels, pixel_size_um, image_name=image_name, min_pixels=min_pixels, exclude_border=exclude_border,
        origin_px=origin_px, keep_excluded=False,
    )
    return particles, exclusions


def measure_regions(
    labels: np.ndarray,
    pixel_size_um: float,
    *,
    image_name: str = "",
    min_pixels: int = DEFAULT_MIN_PIXELS,
    exclude_border: bool = True,
    origin_px: tuple[int, int] = (0, 0),
    keep_excluded: bool = True,
) -> tuple[list[Particle], list[Particle], Exclusions]:
    """:func:`measure_particles`, and the excluded particles measured too, marked with why.

    An excluded particle's measurements are those of its visible part (a border-cut
    particle) or of too few pixels to be sized: they are for tables and overlays (ImageJ's
    Results, a reviewer checking what was left out), never for the PSD.

    Returns
    -------
    particles : list of Particle
        Measured particles (``exclusion`` None).
    excluded : list of Particle
        Excluded particles with ``exclusion`` set; empty unless ``keep_excluded``.
    exclusions : Exclusions
    """
    labels = _check_labels(labels)
    if not (isinstance(pixel_size_um, (int, float)) and math.isfinite(pixel_size_um) and pixel_size_um > 0):
        raise InputError(f"pixel size must be a positive number of µm per pixel, got {pixel_size_um!r}")
    if int(min_pixels) < 1:
        raise InputError(f"min_pixels must be at least 1, got {min_pixels}")
    px = float(pixel_size_um)
    on_border = set(border_labels(labels).tolist()) if exclude_border else set()
    exclusions = Exclusions(min_pixels=int(min_pixels))
    particles: list[Particle] = []
    excluded: list[Particle] = []
    for region in regionprops(labels):
        reason = "border" if region.label in on_border else "too_small" if region.area < min_pixels else None
        if reason == "border":
            exclusions.border += 1
        elif reason == "too_small":
            exclusions.too_small += 1
        if reason is not None and not keep_excluded:
            continue
        area_px = float(region.area)
        perimeter_px = float(perimeter_crofton(region.image))  # region.perimeter_crofton, faster
        hull = outline_hull(region.image)
        feret_max_px, feret_min_px = _feret_diameters(hull)
        row, col = region.centroid
        circularity = 4.0 * math.pi * area_px / perimeter_px**2 if perimeter_px > 0 else 1.0
        (excluded if reason else particles).append(
            Particle(
                image=image_name,
                label=int(region.label),
                ecd_um=math.sqrt(4.0 * area_px / math.pi) * px,
                area_um2=area_px * px * px,
                perimeter_um=perimeter_px * px,
                feret_max_um=feret_max_px * px,
                feret_min_um=feret_min_px * px,
                aspect_ratio=feret_max_px / feret_min_px,
                circularity=min(1.0, circularity),
                solidity=area_px / int(convex_image(region.image, hull).sum()),
                centroid_x_um=(col + 0.5 + origin_px[1]) * px,
                centroid_y_um=(row + 0.5 + origin_px[0]) * px,
                exclusion=reason,
            )
        )
    return particles, excluded, exclusions


def particles_frame(particles: list[Particle]) -> pd.DataFrame:
    """Particles as a table, one row per particle, columns as the :class:`Particle` fields.

    An empty list gives an empty frame with the same columns.
    """
    import pandas as pd  # imported where used: pandas adds ~0.4 s to every analysis's start-up

    columns = list(Particle.model_fields)
    return pd.DataFrame([p.model_dump() for p in particles], columns=columns)


def match_particles(
    labels_pred: np.ndarray, labels_true: np.ndarray, iou_threshold: float = 0.5
) -> MatchResult:
    """Match predicted to reference particles by intersection over union (IoU).

    Used to count particles that a super-resolved image misses or invents compared with
    the high-resolution image of the same field.

    Parameters
    ----------
    labels_pred, labels_true : numpy.ndarray
        Label images of the same field **with the same shape** (resize one of them, with
        nearest-neighbour interpolation, before calling when the pixel grids differ).
    iou_threshold : float
        A pair matches when its IoU is above this. It must be ≥ 0.5: then each particle has at
        most one partner with IoU > threshold, so the matching is unique without an assignment
        step (as in the COCO / Cellpose average-precision convention).

    Returns
    -------
    MatchResult
    """
    labels_pred = _check_labels(labels_pred, "predicted labels")
    labels_true = _check_labels(labels_true, "reference labels")
    if labels_pred.shape != labels_true.shape:
        raise InputError(
            f"label images must have the same shape, got {labels_pred.shape} and {labels_true.shape}"
        )
    if not (0.5 <= iou_threshold < 1.0):
        raise InputError(f"iou_threshold must be in [0.5, 1), got {iou_threshold}")
    pred_ids, pred = np.unique(labels_pred, return_inverse=True)
    true_ids, true = np.unique(labels_true, return_inverse=True)
    pred, true = pred.reshape(-1), true.reshape(-1)
    # Index 0 is background only when label 0 occurs; shift so background is always index 0.
    pred_has_bg, true_has_bg = pred_ids[0] == 0, true_ids[0] == 0
    pred = pred + (0 if pred_has_bg else 1)
    true = true + (0 if true_has_bg else 1)
    n_pred = len(pred_ids) - int(pred_has_bg)
    n_true = len(true_ids) - int(true_has_bg)
    area_pred = np.bincount(pred, minlength=n_pred + 1)
    area_true = np.bincount(true, minlength=n_true + 1)
    both = (pred > 0) & (true > 0)
    pair_codes, inter = np.unique(pred[both].astype(np.int64) * (n_true + 1) + true[both], return_counts=True)
    p_idx, t_idx = np.divmod(pair_codes, n_true + 1)
    iou = inter / (area_pred[p_idx] + area_true[t_idx] - inter)
    good = iou > iou_threshold
    matched = int(good.sum())
    return MatchResult(
        n_pred=n_pred,
        n_true=n_true,
        matched=matched,
        missed=n_true - matched,
        hallucinated=n_pred - matched,
        recall=matched / n_true if n_true else 1.0,
        precision=matched / n_pred if n_pred else 1.0,
        mean_iou=float(iou[good].mean()) if matched else None,
        iou_threshold=float(iou_threshold),
    )
