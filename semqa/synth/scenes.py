"""Synthetic SEM-like micrographs of drug particles with known true sizes.

A *scene* is a field of non-overlapping particles (except designed touching pairs)
with log-normal equivalent circular diameters (ECD). Each particle is a star-shaped
outline: an ellipse (aspect ratio, random orientation) with a low-order random Fourier
perturbation of its radius (irregularity), and for a share of particles a few planar
cuts (crystal facets). The outline is a dense polygon in µm, so its area, ECD, Feret
diameters and centroid are those of the *true shape*, not of a raster.

The scene is rendered once as a noise-free secondary-electron (SE) yield map at high
resolution (HR), with the contrast SE images show (Reimer, *Scanning Electron
Microscopy*, 2nd ed., Springer 1998, ch. 4; Goldstein et al., *Scanning Electron
Microscopy and X-Ray Microanalysis*, 4th ed., Springer 2018, ch. 5):

* particles brighter than a darker substrate, with some particle-to-particle variation;
* the *edge effect*: yield rising towards a particle's boundary (bright rims);
* a gentle one-sided shading from the detector's position, slight internal texture;
* uneven background: a low-frequency illumination/charging gradient over the field.

Geometry is rasterised by supersampling (``supersample²`` sub-pixels per HR pixel),
so edge pixels carry partial coverage. The HR image is the yield map scanned with a
small probe at the HR dose; the LR image is the same yield map through
:func:`semqa.sr.degradation.degrade` (probe blur, area integration over ``scale × scale``
pixels, lower dose). Both come from one geometry, so they are a registered pair.

Coordinates: HR pixel ``(row, col)`` has its centre at ``(y, x) = (row, col)`` px and
covers ``[row − ½, row + ½)``, as :func:`skimage.measure.regionprops` reports centroids.
``x_um = x_px × pixel_size_um``.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.path import Path as PolygonPath
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy import ndimage
from scipy.spatial import ConvexHull
from scipy.spatial.distance import pdist
from skimage.measure import block_reduce

from semqa.sr.degradation import DegradationConfig, degrade, scan
from semqa.errors import InputError
from semqa.io.digests import file_digest
from semqa.io.images import write_image

#: Called after each image written with (images done, images in all).
Progress = Callable[[int, int], None]

#: Vertices of each particle outline; spacing ≈ perimeter / 256, so the polygon's area
#: differs from the smooth outline's by far less than 0.1 %.
OUTLINE_VERTICES: int = 256

#: Columns of the ground-truth table (``particles.csv``). Sizes are of the whole true
#: shape, also for a particle cut by the frame (``touches_border``): ``ecd_um`` =
#: sqrt(4·area/π), ``area_um2``, Feret max/min (µm) and ``aspect_ratio`` = Feret max /
#: Feret min (≥ 1); centroid in µm and HR px (pixel centres at integers).
#: ``touches_border``: the shape reaches the outermost HR pixel row/column (or beyond);
#: ``touches_border_lr``: the same for the LR frame's outermost pixels. ``touching_group``:
#: id shared by the two particles of a designed touching pair, −1 otherwise. ``area_px``:
#: HR pixels the particle covers by ≥ half inside the frame (a perfect segmentation's count).
TRUTH_COLUMNS: tuple[str, ...] = (
    "image",
    "particle_id",
    "ecd_um",
    "area_um2",
    "feret_max_um",
    "feret_min_um",
    "aspect_ratio",
    "centroid_x_um",
    "centroid_y_um",
    "centroid_x_px",
    "centroid_y_px",
    "touches_border",
    "touches_border_lr",
    "touching_group",
    "area_px",
)


class SynthConfig(BaseModel):
    """One synthetic scene: frame, particle population, SE contrast, both scans.

    Defaults describe a 76.8 µm field at 0.1 µm/px (HR) and 0.4 µm/px (LR, scale 4)
    of a micronised drug substance with D50 = 3 µm (number-weighted ECD) and a
    geometric SD of 1.5.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    # frame
    size_px: int = Field(768, ge=16, le=8192, description="HR image side in pixels (square); a multiple of scale")
    pixel_size_um: float = Field(0.1, gt=0, le=100, description="HR pixel size in µm per pixel")
    # population
    d50_um: float = Field(3.0, gt=0, description="median of the number-weighted log-normal ECD distribution, µm")
    gsd: float = Field(1.5, ge=1.0, le=4.0, description="geometric standard deviation of the ECD distribution")
    min_ecd_um: float = Field(0.3, gt=0, description="ECDs below this are redrawn (sub-resolution debris)")
    fill_fraction: float = Field(0.13, gt=0, le=0.4, description="target share of the field covered by particles")
    touching_fraction: float = Field(0.2, ge=0, le=0.8, description="share of particles placed in touching pairs")
    aspect_min: float = Field(1.0, ge=1.0, description="smallest ellipse aspect ratio (long / short axis)")
    aspect_max: float = Field(2.5, ge=1.0, le=8.0, description="largest ellipse aspect ratio")
    irregularity: float = Field(
        0.08, ge=0, le=0.25, description="amplitude of the random Fourier perturbation of the radius (harmonics 2–6, ∝ 1/k)"
    )
    facet_fraction: float = Field(0.5, ge=0, le=1, description="share of particles cut by 3–7 planar facets")
    min_gap_um: float = Field(0.4, ge=0, description="least gap between particles that are not a designed touching pair")
    max_placement_tries: int = Field(60, ge=1, description="random positions tried per particle before it is dropped")
    # secondary-electron contrast (yield in [0, 1])
    substrate_level: float = Field(0.2, ge=0, le=1, description="substrate yield")
    particle_level: float = Field(0.5, ge=0, le=1, description="mean particle interior yield")
    particle_level_sd: float = Field(0.05, ge=0, description="particle-to-particle sd of interior yield")
    rim_amplitude: float = Field(0.4, ge=0, description="extra yield at the boundary (edge effect)")
    rim_width_um: float = Field(0.3, gt=0, description="e-folding distance of the edge effect inside a particle, µm")
    shading: float = Field(0.12, ge=0, le=0.5, description="relative one-sided brightness change across a particle (detector side)")
    texture: float = Field(0.04, ge=0, le=0.3, description="relative sd of smooth internal texture")
    texture_scale_um: float = Field(0.3, gt=0, description="correlation length of the texture, µm")
    illumination: float = Field(0.15, ge=0, le=0.5, description="relative amplitude of the low-frequency background unevenness")
    supersample: int = Field(4, ge=1, le=8, description="sub-pixels per HR pixel side when rasterising outlines")
    # HR scan
    hr_psf_sigma_px: float = Field(0.6, ge=0, description="HR probe sigma in HR pixels (FWHM ≈ 1.4 px)")
    hr_dose: float = Field(200.0, gt=0, description="electrons per HR pixel at yield 1.0 (slow scan)")
    hr_read_noise: float = Field(0.0, ge=0, description="sd of HR read-out noise, yield units")
    # LR scan
    degradation: DegradationConfig = Field(default_factory=DegradationConfig)
    bit_depth: int = Field(8, description="bits per sample of the TIFFs written (8 or 16)")

    @model_validator(mode="after")
    def _consistent(self) -> SynthConfig:
        if self.aspect_max < self.aspect_min:
            raise ValueError(f"aspect_max ({self.aspect_max}) < aspect_min ({self.aspect_min})")
        if self.size_px % self.degradation.scale:
            raise ValueError(f"size_px ({self.size_px}) must be a multiple of the scale ({self.degradation.scale})")
        if self.bit_depth not in (8, 16):
            raise ValueError(f"bit_depth must be 8 or 16, got {self.bit_depth}")
        field_um = self.size_px * self.pixel_size_um
        if self.d50_um > field_um / 4:
            raise ValueError(f"d50_um {self.d50_um} is too large for a {field_um:g} µm field (at most a quarter of it)")
        if self.d50_um < 2 * self.pixel_size_um:
            raise ValueError(f"d50_um {self.d50_um} is below two HR pixels ({self.pixel_size_um} µm each)")
        return self

    @property
    def scale(self) -> int:
        return self.degradation.scale

    @property
    def lr_pixel_size_um(self) -> float:
        return self.pixel_size_um * self.degradation.scale


def synth_config(**kwargs: object) -> SynthConfig:
    """A :class:`SynthConfig`, with validation errors raised as one-line :class:`InputError`."""
    from pydantic import ValidationError

    try:
        return SynthConfig(**kwargs)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(map(str, err["loc"])) or "config"
        raise InputError(f"bad synthesis setting {where}: {err['msg']}") from None


class ProductSpec(BaseModel):
    """A product's particle population; lots vary around it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    d50_um: float = Field(gt=0, description="product median ECD, µm")
    gsd: float = Field(1.5, ge=1.0, le=4.0, description="geometric SD of ECD")


# --- geometry ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Outline:
    """One particle's true shape: a closed polygon in µm, relative to its own centroid."""

    xy: np.ndarray  # (n, 2) µm, x then y, centroid at the origin

    @cached_property
    def area(self) -> float:
        # Cached: placement, the pairs' centroids and the truth row each ask for it.
        return _polygon_area(self.xy)


def _next(a: np.ndarray) -> np.ndarray:
    """``np.roll(a, -1, axis=0)`` (each vertex's successor), without roll's generic index set-up."""
    return np.concatenate((a[1:], a[:1]))


def _polygon_area(xy: np.ndarray) -> float:
    x, y = xy[:, 0], xy[:, 1]
    return 0.5 * float(np.dot(x, _next(y)) - np.dot(y, _next(x)))


def _polygon_centroid(xy: np.ndarray) -> np.ndarray:
    x, y = xy[:, 0], xy[:, 1]
    xn, yn = _next(x), _next(y)
    cross = x * yn - xn * y
    a = 0.5 * cross.sum()
    cx = ((x + xn) * cross).sum() / (6 * a)
    cy = ((y + yn) * cross).sum() / (6 * a)
    return np.array([cx, cy])


def feret_diameters(xy: np.ndarray) -> tuple[float, float]:
    """Maximum and minimum Feret diameter of a polygon (exact, from its convex hull).

    The maximum is the largest distance between hull vertices; the minimum is the
    narrowest caliper width, reached with one caliper flush to a hull edge (rotating
    calipers; Toussaint, "Solving geometric problems with the rotating calipers", 1983).
    """
    hull = xy[ConvexHull(xy).vertices]
    fmax = float(pdist(hull).max())
    edges = _next(hull) - hull
    normals = np.stack([-edges[:, 1], edges[:, 0]], axis=1)
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    # Width across edge i's normal: the spread of all hull vertices projected on it.
    proj = hull @ normals.T
    fmin = float((proj.max(axis=0) - proj.min(axis=0)).min())
    return fmax, fmin


def _make_outline(ecd_um: float, config: SynthConfig, rng: np.random.Generator) -> Outline:
    """A random star-shaped outline whose polygon area is exactly π·ECD²/4."""
    theta = np.linspace(0.0, 2 * np.pi, OUTLINE_VERTICES, endpoint=False)
    aspect = rng.uniform(config.aspect_min, config.aspect_max)
    a, b = np.sqrt(aspect), 1.0 / np.sqrt(aspect)  # semi-axes before scaling
    r = a * b / np.sqrt((b * np.cos(theta)) ** 2 + (a * np.sin(theta)) ** 2)
    k = np.arange(2, 7)
    amp = config.irregularity * rng.normal(0.0, 1.0, size=k.size) / k
    phase = rng.uniform(0, 2 * np.pi, size=k.size)
    r = r * (1.0 + (amp[:, None] * np.cos(k[:, None] * theta[None, :] + phase[:, None])).sum(0))
    r = np.clip(r, 0.15 * r.mean(), None)
    if rng.random() < config.facet_fraction:
        # A facet is the line at distance h from the centre with normal φ; the radius in
        # direction θ is cut to h / cos(θ − φ) where that is positive.
        for phi in rng.uniform(0, 2 * np.pi, size=int(rng.integers(3, 8))):
            r_phi = float(np.interp(phi, theta, r, period=2 * np.pi))
            h = r_phi * rng.uniform(0.8, 0.95)
            c = np.cos(theta - phi)
            with np.errstate(divide="ignore"):
                r = np.where(c > 1e-9, np.minimum(r, h / np.maximum(c, 1e-9)), r)
    orient = rng.uniform(0, np.pi)
    xy = np.stack([r * np.cos(theta + orient), r * np.sin(theta + orient)], axis=1)
    xy -= _polygon_centroid(xy)
    xy *= np.sqrt((np.pi * ecd_um**2 / 4) / _polygon_area(xy))
    return Outline(xy=xy)


def _intersects(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two dense polygons overlap (a vertex of either lies inside the other)."""
    return _any_inside(a, b) or _any_inside(b, a)


def _any_inside(polygon: np.ndarray, points: np.ndarray) -> bool:
    """Whether any of ``points`` lies inside ``polygon`` (:meth:`matplotlib.path.Path.contains_points`).

    Only the points within the polygon's bounding box (edges included) are handed to the
    crossing test: one strictly outside it crosses no edge, or all on one side, so it is
    outside either way, and the test of the others is per point. Same answer, a fraction of
    the points: at the bisection's steps most of the partner lies beyond the bounding box.
    """
    near = points[((points >= polygon.min(0)) & (points <= polygon.max(0))).all(1)]
    return bool(near.size) and bool(PolygonPath(polygon).contains_points(near).any())


def _touching_offset(a: Outline, b: Outline, direction: float) -> np.ndarray:
    """Offset of ``b`` from ``a`` along ``direction`` at which they just touch.

    Bisection on the centre distance to 1 nm; the returned offset is the smallest
    distance found free of overlap, so the pair shares a boundary with a gap < 1 nm.
    """
    u = np.array([np.cos(direction), np.sin(direction)])
    lo = 0.0
    hi = float(np.linalg.norm(a.xy, axis=1).max() + np.linalg.norm(b.xy, axis=1).max()) * 1.01
    while hi - lo > 1e-3:
        mid = 0.5 * (lo + hi)
        if _intersects(a.xy, b.xy + mid * u):
            lo = mid
        else:
            hi = mid
    return hi * u


def _sample_ecds(config: SynthConfig, rng: np.random.Generator) -> np.ndarray:
    """Log-normal ECDs until their total area reaches the target fill of the field."""
    field_area = (config.size_px * config.pixel_size_um) ** 2
    target = config.fill_fraction * field_area
    mu, sigma = np.log(config.d50_um), np.log(config.gsd)
    max_ecd = config.size_px * config.pixel_size_um / 3
    out: list[float] = []
    total = 0.0
    while total < target:
        d = float(np.exp(rng.normal(mu, sigma)))
        if not (config.min_ecd_um <= d <= max_ecd):
            continue
        out.append(d)
        total += np.pi * d * d / 4
    return np.array(out)


@dataclass(frozen=True)
class PlacedParticle:
    """A particle placed in the field: its outline and centroid in HR pixels."""

    outline: Outline
    centre_px: np.ndarray  # (x, y)
    touching_group: int


def _fill_polygon(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Boolean mask of the grid points ``(i, j)`` inside a polygon (even-odd rule).

    Same result as :func:`skimage.draw.polygon` (a point is inside by its centre), but by
    scan lines: each row toggles at the edges' crossings, O(crossings + pixels) instead
    of O(pixels × edges), which made outline rasterising 90 % of render time.
    """
    y0, x0 = rows, cols
    y1, x1 = _next(rows), _next(cols)
    # Half-open rule so a vertex exactly on a scan line is counted once: edge e crosses
    # the integer row i where exactly one of y0 <= i, y1 <= i holds, i.e. for
    # ceil(min) <= i < ceil(max). The rows are enumerated per edge, not tested for all.
    first = np.clip(np.ceil(np.minimum(y0, y1)), 0, shape[0]).astype(np.int64)
    stop = np.clip(np.ceil(np.maximum(y0, y1)), 0, shape[0]).astype(np.int64)
    counts = np.maximum(stop - first, 0)
    ei = np.repeat(np.arange(y0.size), counts)
    ri = first[ei] + (np.arange(ei.size) - np.repeat(np.cumsum(counts) - counts, counts))
    t = (ri - y0[ei]) / (y1[ei] - y0[ei])
    x = x0[ei] + t * (x1[ei] - x0[ei])
    # Points j > x lie right of the crossing: toggle from floor(x) + 1 on.
    start = np.clip(np.floor(x).astype(np.int64) + 1, 0, shape[1])
    width = shape[1] + 1
    toggles = np.bincount(ri * width + start, minlength=shape[0] * width).reshape(shape[0], width)
    return (np.cumsum(toggles[:, : shape[1]], axis=1) & 1).astype(bool)


def _raster_mask(xy_px: np.ndarray, origin: tuple[int, int], shape: tuple[int, int], ss: int) -> np.ndarray:
    """Sub-pixel mask of a polygon (HR px coords) on a grid of ``ss × ss`` samples per pixel.

    The grid covers HR pixels ``origin[0] … origin[0] + shape[0] − 1`` (rows) etc.; sample
    ``(i, j)`` sits at HR ``y = origin_row − ½ + (i + ½)/ss``.
    """
    rows = (xy_px[:, 1] - origin[0] + 0.5) * ss - 0.5
    cols = (xy_px[:, 0] - origin[1] + 0.5) * ss - 0.5
    return _fill_polygon(rows, cols, (shape[0] * ss, shape[1] * ss))


def _depth_inside(mask: np.ndarray, inside: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """:func:`scipy.ndimage.distance_transform_edt` of ``mask`` at its ``inside`` samples.

    The transform runs on the inside samples' bounding box grown by one sample: that ring is
    all outside, and for any outside sample beyond it the ring has one at least as near on
    both axes, so every distance is the one of the whole mask, on less area.
    """
    if inside[0].size == 0:  # an outline thinner than the sample spacing
        return np.zeros(0)
    r0, c0 = max(int(inside[0].min()) - 1, 0), max(int(inside[1].min()) - 1, 0)
    r1, c1 = int(inside[0].max()) + 2, int(inside[1].max()) + 2
    return ndimage.distance_transform_edt(mask[r0:r1, c0:c1])[inside[0] - r0, inside[1] - c0]


def place_particles(config: SynthConfig, rng: np.random.Generator) -> list[PlacedParticle]:
    """Random non-overlapping placement of single particles and touching pairs.

    Units (singles or pairs) are placed largest first on an occupancy raster padded
    beyond the frame, so particles cut by the border do not overlap unseen ones either.
    A unit is accepted where its mask, dilated by the minimum gap, hits no occupied pixel.
    """
    px = config.pixel_size_um
    ecds = _sample_ecds(config, rng)
    outlines = [_make_outline(d, config, rng) for d in ecds]
    n_pairs = int(round(config.touching_fraction * len(outlines) / 2))
    order = rng.permutation(len(outlines))
    units: list[list[tuple[Outline, np.ndarray]]] = []
    for i in range(n_pairs):
        a, b = outlines[order[2 * i]], outlines[order[2 * i + 1]]
        off = _touching_offset(a, b, rng.uniform(0, 2 * np.pi))
        # Both outlines relative to the pair's area-weighted centroid.
        c = off * b.area / (a.area + b.area)
        units.append([(a, -c), (b, off - c)])
    units.extend([(outlines[j], np.zeros(2))] for j in order[2 * n_pairs :])
    units.sort(key=lambda u: -sum(o.area for o, _ in u))

    size = config.size_px
    pad = int(np.ceil(max(np.linalg.norm(o.xy, axis=1).max() for o in outlines) * 2 / px)) + 4
    occupied = np.zeros((size + 2 * pad, size + 2 * pad), dtype=bool)
    gap = int(np.ceil(config.min_gap_um / px))
    disk = np.hypot(*np.mgrid[-gap - 1 : gap + 2, -gap - 1 : gap + 2]) <= gap + 0.5
    placed: list[PlacedParticle] = []
    group = 0
    for unit in units:
        # Rasterise the unit once at a random sub-pixel phase; try integer positions.
        pts = np.concatenate([o.xy / px + off / px for o, off in unit])
        phase = rng.uniform(0, 1, size=2)
        lo = np.floor(pts.min(0) + phase).astype(int) - gap - 2
        hi = np.ceil(pts.max(0) + phase).astype(int) + gap + 2
        shape = (int(hi[1] - lo[1] + 1), int(hi[0] - lo[0] + 1))
        mask = np.zeros(shape, dtype=bool)
        for o, off in unit:
            mask |= _raster_mask(o.xy / px + off / px + phase, (int(lo[1]), int(lo[0])), shape, 1)
        halo = ndimage.binary_dilation(mask, structure=disk) if gap > 0 else mask
        for _ in range(config.max_placement_tries):
            cx, cy = (int(v) for v in rng.integers(0, size, size=2))
            r0, c0 = cy + lo[1] + pad, cx + lo[0] + pad
            if r0 < 0 or c0 < 0 or r0 + shape[0] > occupied.shape[0] or c0 + shape[1] > occupied.shape[1]:
                continue
            window = occupied[r0 : r0 + shape[0], c0 : c0 + shape[1]]
            if (window & halo).any():
                continue
            window |= mask
            g = group if len(unit) > 1 else -1
            group += len(unit) > 1
            centre = np.array([cx, cy], dtype=float) + phase
            placed.extend(PlacedParticle(o, centre + off / px, g) for o, off in unit)
            break
    return placed


# --- rendering ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Scene:
    """One rendered field: noise-free yield map, true labels and the truth table.

    Attributes
    ----------
    clean : numpy.ndarray
        Noise-free, unblurred HR SE yield map, ``float32`` in [0, 1].
    coverage : numpy.ndarray
        Fraction of each HR pixel covered by any particle (true shapes, supersampled).
    labels : numpy.ndarray
        ``int32`` HR label image: pixel → ``particle_id`` of the particle covering at
        least half of it (0 = substrate). Its pixel areas are what a perfect
        segmentation finds, for scoring segmentation.
    particles : pandas.DataFrame
        Ground truth, columns :data:`TRUTH_COLUMNS` (``image`` empty until named).
    """

    clean: np.ndarray
    coverage: np.ndarray
    labels: np.ndarray
    particles: pd.DataFrame


def _smooth_field(shape: tuple[int, int], sigma_px: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian-correlated noise with unit sd (zero mean)."""
    field = ndimage.gaussian_filter(rng.normal(size=shape), sigma_px, mode="wrap")
    sd = field.std()
    return field / sd if sd > 0 else field


def _illumination(size: int, amplitude: float, rng: np.random.Generator) -> np.ndarray:
    """Multiplicative background unevenness: a random tilt plus a few very smooth waves.

    The waves are products of cosines of at most one period across the field, built as
    outer products so the cost stays O(size²) with a tiny constant.
    """
    if amplitude == 0:
        return np.ones((size, size))
    t = np.arange(size) / max(size - 1, 1) - 0.5
    angle = rng.uniform(0, 2 * np.pi)
    k = np.arange(3)[:, None]
    wx = np.cos(np.pi * k * (t[None, :] + 0.5) + rng.uniform(0, 2 * np.pi, size=(3, 1)))
    wy = np.cos(np.pi * k * (t[None, :] + 0.5) + rng.uniform(0, 2 * np.pi, size=(3, 1)))
    waves = wy.T @ rng.normal(size=(3, 3)) @ wx
    waves /= max(np.abs(waves).max(), 1e-9)
    tilt = np.cos(angle) * t[None, :] + np.sin(angle) * t[:, None]  # in [-0.71, 0.71]
    return 1.0 + amplitude * (tilt + 0.5 * waves)


def _truth_row(p: PlacedParticle, pid: int, config: SynthConfig) -> dict:
    px, size, s = config.pixel_size_um, config.size_px, config.scale
    xy_px = p.outline.xy / px + p.centre_px
    area = p.outline.area
    fmax, fmin = feret_diameters(p.outline.xy)
    lo, hi = xy_px.min(0), xy_px.max(0)
    # Reaches the outermost pixel ring: an HR pixel spans ±½ px around its centre; an LR
    # pixel spans s HR pixels, so its ring is [−½, s − ½) HR px from the edge.
    hr_border = bool((lo < 0.5).any() or (hi > size - 1.5).any())
    lr_border = bool((lo < s - 0.5).any() or (hi > size - s - 0.5).any())
    return {
        "particle_id": pid,
        "ecd_um": float(np.sqrt(4 * area / np.pi)),
        "area_um2": area,
        "feret_max_um": fmax,
        "feret_min_um": fmin,
        "aspect_ratio": fmax / fmin,
        "centroid_x_um": float(p.centre_px[0] * px),
        "centroid_y_um": float(p.centre_px[1] * px),
        "centroid_x_px": float(p.centre_px[0]),
        "centroid_y_px": float(p.centre_px[1]),
        "touches_border": hr_border,
        "touches_border_lr": lr_border,
        "touching_group": p.touching_group,
    }


def render_scene(config: SynthConfig, rng: np.random.Generator) -> Scene:
    """Place particles and render the noise-free HR SE yield map with its truth."""
    size, px, ss = config.size_px, config.pixel_size_um, config.supersample
    placed = place_particles(config, rng)
    signal = np.zeros((size, size))
    coverage = np.zeros((size, size))
    best = np.zeros((size, size))
    labels = np.zeros((size, size), dtype=np.int32)
    shade_dir = rng.uniform(0, 2 * np.pi)
    rows = []
    for pid, p in enumerate(placed, start=1):
        xy_px = p.outline.xy / px + p.centre_px
        lo = np.floor(xy_px.min(0)).astype(int) - 1
        hi = np.ceil(xy_px.max(0)).astype(int) + 1
        shape = (int(hi[1] - lo[1] + 1), int(hi[0] - lo[0] + 1))
        sub = _raster_mask(xy_px, (int(lo[1]), int(lo[0])), shape, ss)
        # The yield is evaluated at the sub-pixels inside the outline only (about half of
        # the box); outside it is 0, as before, so the block means are the same numbers.
        inside = np.nonzero(sub)
        # Edge effect: yield rises towards the boundary, decaying inwards over rim_width.
        depth_um = _depth_inside(sub, inside) * (px / ss)
        yy, xx = ((inside[0] + 0.5) / ss - 0.5), ((inside[1] + 0.5) / ss - 0.5)
        xx = xx + lo[0] - p.centre_px[0]
        yy = yy + lo[1] - p.centre_px[1]
        radius = max(float(np.linalg.norm(p.outline.xy, axis=1).max()) / px, 1e-9)
        toward = (np.cos(shade_dir) * xx + np.sin(shade_dir) * yy) / radius
        level = max(config.particle_level + config.particle_level_sd * rng.normal(), config.substrate_level + 0.05)
        value = np.zeros(sub.shape)
        value[inside] = level * (1 + config.shading * toward) + config.rim_amplitude * np.exp(-depth_um / config.rim_width_um)
        # Covered share of each pixel: the count of its ss² inside samples over ss², exact.
        cov = sub.reshape(shape[0], ss, shape[1], ss).sum(axis=(1, 3)) / (ss * ss)
        sig = block_reduce(value, (ss, ss), np.mean)
        # Crop the bounding box to the frame.
        r0, c0 = int(lo[1]), int(lo[0])
        rs, cs = slice(max(r0, 0), min(r0 + shape[0], size)), slice(max(c0, 0), min(c0 + shape[1], size))
        br = slice(rs.start - r0, rs.stop - r0)
        bc = slice(cs.start - c0, cs.stop - c0)
        if rs.start < rs.stop and cs.start < cs.stop:
            cov_in = cov[br, bc]
            signal[rs, cs] += sig[br, bc]
            coverage[rs, cs] += cov_in
            win = (cov_in >= 0.5) & (cov_in > best[rs, cs])
            labels[rs, cs][win] = pid
            best[rs, cs] = np.maximum(best[rs, cs], cov_in)
        rows.append(_truth_row(p, pid, config))
    # A touching pair may overlap by < 1 nm at shared boundary pixels: cap the sum.
    coverage = np.clip(coverage, 0.0, 1.0)
    # One texture field serves particles and (at half strength) the substrate: they
    # cover different pixels, and a second full-frame filter costs as much as all EDTs.
    grain = _smooth_field((size, size), config.texture_scale_um / px, rng)
    substrate = config.substrate_level * (1.0 + 0.5 * config.texture * grain)
    clean = (substrate * (1.0 - coverage) + signal * (1.0 + config.texture * grain)) * _illumination(size, config.illumination, rng)
    particles = pd.DataFrame(rows, columns=list(TRUTH_COLUMNS[1:-1]))
    # Pixel count of each particle in the true label image (HR pixels).
    particles["area_px"] = np.bincount(labels.ravel(), minlength=len(placed) + 1)[1:].astype(np.int64)
    particles.insert(0, "image", "")
    return Scene(clean=np.clip(clean, 0, 1).astype(np.float32), coverage=coverage.astype(np.float32), labels=labels, particles=particles)


def scan_scene(scene: Scene, config: SynthConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The HR (slow) and LR (fast) scans of a scene's yield map."""
    hr = scan(scene.clean, psf_sigma_px=config.hr_psf_sigma_px, dose=config.hr_dose, rng=rng, read_noise=config.hr_read_noise)
    lr = degrade(scene.clean, config.degradation, rng)
    return hr, lr


def render_pair(config: SynthConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """One synthetic HR/LR pair in memory: ``(hr, lr, truth)``.

    ``hr`` is ``(size, size)`` and ``lr`` ``(size/scale, size/scale)``, both ``float32`` in
    [0, 1]; ``truth`` has the columns :data:`TRUTH_COLUMNS` (``image`` left empty).
    """
    scene = render_scene(config, rng)
    hr, lr = scan_scene(scene, config, rng)
    return hr, lr, scene.particles


# --- writing data sets -------------------------------------------------------------------


def _rng(seed: int, *key: int) -> np.random.Generator:
    """Independent stream per image, fixed by (seed, key) alone."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed must be a whole number ≥ 0, got {seed!r}")
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


@dataclass(frozen=True)
class _Unit:
    """One image to write: where, with which settings and which random stream."""

    out_dir: Path
    hr_path: Path
    lr_path: Path
    labels_path: Path | None
    config: SynthConfig
    seed: int
    key: tuple[int, ...]


def _write_unit(unit: _Unit) -> tuple[pd.DataFrame, dict]:
    config, rng = unit.config, _rng(unit.seed, *unit.key)
    scene = render_scene(config, rng)
    hr, lr = scan_scene(scene, config, rng)
    write_image(unit.hr_path, hr, pixel_size_um=config.pixel_size_um, bit_depth=config.bit_depth)
    write_image(unit.lr_path, lr, pixel_size_um=config.lr_pixel_size_um, bit_depth=config.bit_depth)
    row = {
        "name": unit.hr_path.name,
        "hr_path": unit.hr_path.relative_to(unit.out_dir).as_posix(),
        "lr_path": unit.lr_path.relative_to(unit.out_dir).as_posix(),
        "hr_pixel_size_um": config.pixel_size_um,
        "lr_pixel_size_um": config.lr_pixel_size_um,
        "scale": config.scale,
        "hr_sha256": file_digest(unit.hr_path),
        "lr_sha256": file_digest(unit.lr_path),
        "n_particles": len(scene.particles),
    }
    if unit.labels_path is not None:
        import tifffile

        unit.labels_path.parent.mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(unit.labels_path, scene.labels.astype(np.uint16), photometric="minisblack", metadata=None)
        row["labels_path"] = unit.labels_path.relative_to(unit.out_dir).as_posix()
    return scene.particles.assign(image=unit.hr_path.name), row


def _write_units(
    units: list[_Unit], workers: int, progress: Callable[[], None] | None = None
) -> list[tuple[pd.DataFrame, dict]]:
    """Write every unit, in order; in ``workers`` processes when more than one.

    Each unit's random stream is fixed by its key, so the bytes do not depend on
    ``workers``. ``progress()`` is called after each unit.
    """
    workers = _check_count(workers, "number of workers")
    if workers == 1 or len(units) == 1:
        return _collect(map(_write_unit, units), progress)
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=min(workers, len(units))) as pool:
        return _collect(pool.map(_write_unit, units), progress)


def _collect(results: Iterable[tuple[pd.DataFrame, dict]], progress: Callable[[], None] | None) -> list:
    out = []
    for result in results:
        out.append(result)
        if progress is not None:
            progress()
    return out


def _counter(progress: Progress | None, total: int) -> Callable[[], None] | None:
    """A callback that reports ``progress(done, total)``, counting its own calls."""
    if progress is None:
        return None
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        progress(done, total)

    return tick


def _check_count(n: int, what: str) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise InputError(f"{what} must be a positive whole number, got {n!r}")
    return int(n)


def make_pairs(
    out_dir: str | Path,
    n: int,
    config: SynthConfig | None = None,
    seed: int = 0,
    *,
    labels: bool = False,
    workers: int = 1,
    progress: Progress | None = None,
) -> Path:
    """Write ``n`` synthetic HR/LR pairs with ground truth.

    Layout: ``OUT/hr/<name>.tif`` and ``OUT/lr/<name>.tif`` (same names, pixel size in the
    TIFF metadata: HR ``pixel_size_um``, LR ``pixel_size_um × scale``),
    ``OUT/particles.csv`` (truth, :data:`TRUTH_COLUMNS`), ``OUT/manifest.csv`` (one row per
    pair: name, paths relative to OUT, pixel sizes, scale, seed, ``sha256:`` digests) and,
    with ``labels``, ``OUT/labels/<name>.tif`` (true ``uint16`` label images).
    ``progress(done, total)`` is called after each pair.

    Returns
    -------
    pathlib.Path
        ``out_dir``.
    """
    config = config or SynthConfig()
    n = _check_count(n, "number of pairs")
    out = Path(out_dir)
    names = [f"synth_{i:04d}.tif" for i in range(n)]
    units = [
        _Unit(out, out / "hr" / name, out / "lr" / name, out / "labels" / name if labels else None, config, seed, (i,))
        for i, name in enumerate(names)
    ]
    done = _write_units(units, workers, _counter(progress, n))
    truths = [truth for truth, _ in done]
    rows = [{**row, "seed": seed, "index": i} for i, (_, row) in enumerate(done)]
    pd.concat(truths, ignore_index=True).to_csv(out / "particles.csv", index=False)
    pd.DataFrame(rows).to_csv(out / "manifest.csv", index=False)
    return out


def default_products(d50_um: float = 3.0, gsd: float = 1.5) -> dict[str, ProductSpec]:
    """Reference, an equivalent generic (same population) and one with D50 shifted +25 %."""
    return {
        "rld": ProductSpec(d50_um=d50_um, gsd=gsd),
        "generic-equivalent": ProductSpec(d50_um=d50_um, gsd=gsd),
        "generic-shifted": ProductSpec(d50_um=d50_um * 1.25, gsd=gsd),
    }


def make_lots(
    out_dir: str | Path,
    products: Mapping[str, ProductSpec] | None = None,
    lots: int = 3,
    images_per_lot: int = 10,
    config: SynthConfig | None = None,
    seed: int = 0,
    *,
    lot_cv: float = 0.03,
    workers: int = 1,
    progress: Progress | None = None,
) -> Path:
    """Write product lots: ``OUT/<product>/{hr,lr}/<lot>/*.tif`` with truth per product.

    Each lot's D50 is the product's times a log-normal factor with median 1 and
    coefficient of variation ``lot_cv`` (between-lot variation); each image is one unit drawn from its
    lot's population. Per product: ``particles.csv`` (with ``lot`` column),
    ``manifest.csv`` and ``lots.csv`` (each lot's true D50 and GSD). An image's random
    stream depends on ``(seed, product name, lot, image)`` only, so products are
    reproducible one by one. ``progress(done, total)`` is called after each image.

    The folders ``OUT/<product>/lr`` are what ``semqa compare --reference … --test …``
    takes (``DIR/<lot>/*``).
    """
    config = config or SynthConfig()
    products = dict(products) if products is not None else default_products(config.d50_um, config.gsd)
    if not products:
        raise InputError("no products to make")
    lots = _check_count(lots, "number of lots")
    images_per_lot = _check_count(images_per_lot, "images per lot")
    if not (np.isfinite(lot_cv) and 0 <= lot_cv < 1):
        raise InputError(f"between-lot CV must be in [0, 1), got {lot_cv}")
    out = Path(out_dir)
    # Every product's images go through one pool: one start, and one worker idle at the end
    # instead of one at the end of each product.
    plans = []
    for product, spec in products.items():
        if not product or "/" in product or product.startswith("."):
            raise InputError(f"bad product name {product!r}")
        spec = ProductSpec.model_validate(spec)
        pkey = zlib.crc32(product.encode())
        units, meta, lot_rows = [], [], []
        for li in range(lots):
            lot = f"lot{li + 1}"
            sigma = np.sqrt(np.log1p(lot_cv**2))
            lot_d50 = spec.d50_um * float(np.exp(_rng(seed, pkey, li).normal(0.0, sigma)))
            lot_cfg = synth_config(**{**config.model_dump(), "d50_um": lot_d50, "gsd": spec.gsd})
            lot_rows.append({"product": product, "lot": lot, "d50_um": lot_d50, "gsd": spec.gsd})
            for k in range(images_per_lot):
                name = f"{product}-{lot}-{k:03d}.tif"
                pdir = out / product
                units.append(_Unit(pdir, pdir / "hr" / lot / name, pdir / "lr" / lot / name, None, lot_cfg, seed, (pkey, li, k)))
                meta.append({"product": product, "lot": lot, "seed": seed, "index": k})
        plans.append((product, units, meta, lot_rows))
    done_all = _write_units([u for _, units, _, _ in plans for u in units], workers,
                            _counter(progress, len(products) * lots * images_per_lot))
    for i, (product, units, meta, lot_rows) in enumerate(plans):
        done = done_all[i * len(units) : (i + 1) * len(units)]
        truths = [truth.assign(product=m["product"], lot=m["lot"]) for (truth, _), m in zip(done, meta, strict=True)]
        rows = [{**row, **m} for (_, row), m in zip(done, meta, strict=True)]
        pd.concat(truths, ignore_index=True).to_csv(out / product / "particles.csv", index=False)
        pd.DataFrame(rows).to_csv(out / product / "manifest.csv", index=False)
        pd.DataFrame(lot_rows).to_csv(out / product / "lots.csv", index=False)
    return out
