"""A second, independent family of synthetic SEM-like scenes with exact instance masks.

:mod:`semqa.synth.scenes` renders one look of the data (bright particles with thin bright
rims on a dark substrate). Detection and sizing defaults must not be tuned to it, so this
module renders other contrasts from scratch (nothing here reuses that renderer):

* ``"dome"``: secondary-electron topographic contrast without rims. Each particle is an
  ellipsoidal dome (height map); its yield is Lambertian-like shading of the surface normal
  against a tilted detector direction (the side facing the Everhart–Thornley detector is
  brighter, the far side dimmer; Reimer, *Scanning Electron Microscopy*, 2nd ed., Springer
  1998, § 4.2.2; Goldstein et al., *SEM and X-Ray Microanalysis*, 4th ed., 2018, ch. 5).
* ``"bse"``: flat backscattered-electron (atomic-number) contrast: a uniform level per
  particle above the substrate, no topography.
* ``"dark"``: dark particles on a bright substrate (e.g. an organic powder on a metal or
  coated stub in BSE), weakly dome-shaded.

Common to all: log-normal ECDs given *in pixels* (so sweeps over size in pixels are direct),
elliptical outlines, agglomerates (a share of particles placed overlapping an earlier one,
which occludes them: the label image is the visible, front-most particle), a carbon-tape
substrate texture (fractal noise, power spectrum ∝ f^−β), a smooth gradient over the field,
optional charging streaks (scan-line offsets that decay along the fast-scan direction
after bright pixels), a Gaussian probe blur, and Poisson shot noise at a dose in electrons
per pixel at yield 1. The low-resolution (LR) frame integrates the blurred yield over
``lr_scale × lr_scale`` pixels and is scanned at its own (lower) dose.

Truth is exact to the supersampling: each particle's visible area is counted on a grid
``supersample`` times finer than the pixels, so ``ecd_px = sqrt(4·area/π)`` of the visible
particle is what a perfect segmentation measures; labels give each pixel to the particle
covering the larger part of it, if that part is at least half the pixel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy import ndimage

Family = Literal["dome", "bse", "dark"]

#: Substrate and mean particle yield of each family (yield at dose 1 = 1.0).
FAMILY_LEVELS: dict[str, tuple[float, float]] = {"dome": (0.15, 0.55), "bse": (0.25, 0.5), "dark": (0.55, 0.25)}


class FamilyConfig(BaseModel):
    """One scene of :mod:`semqa.synth.families`; sizes in pixels of the (HR) frame rendered."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    family: Family = Field("dome", description="contrast: 'dome' (SE tilt shading), 'bse' (flat), 'dark' (dark on bright)")
    size_px: int = Field(512, ge=32, le=8192, description="frame side in pixels (square); a multiple of lr_scale")
    pixel_size_um: float = Field(0.25, gt=0, description="pixel size of the rendered frame, µm per pixel")
    d50_px: float = Field(20.0, gt=0, description="median of the number-weighted log-normal ECD, pixels")
    gsd: float = Field(1.25, ge=1.0, le=3.0, description="geometric standard deviation of the ECD")
    aspect_max: float = Field(1.6, ge=1.0, le=4.0, description="largest ellipse aspect ratio (uniform from 1)")
    fill_fraction: float = Field(0.18, gt=0, le=0.5, description="target share of the field covered")
    overlap_fraction: float = Field(0.15, ge=0, le=0.8, description="share of particles placed overlapping an earlier one")
    min_gap_px: float = Field(2.0, ge=0, description="least gap between particles not placed overlapping")
    substrate_level: float | None = Field(None, ge=0, le=1, description="substrate yield; None: the family's")
    particle_level: float | None = Field(None, ge=0, le=1, description="mean particle yield; None: the family's")
    particle_level_sd: float = Field(0.04, ge=0, description="particle-to-particle sd of the yield")
    tilt_contrast: float = Field(0.8, ge=0, le=1, description="dome shading depth (0 flat … 1 far side at substrate-free 0)")
    texture: float = Field(0.06, ge=0, le=0.5, description="relative sd of the fractal substrate texture")
    texture_beta: float = Field(2.6, ge=0, le=4, description="spectral exponent of the texture (power ∝ f^−β)")
    gradient: float = Field(0.15, ge=0, le=0.5, description="relative amplitude of the smooth gradient over the field")
    streaks: float = Field(0.0, ge=0, le=0.5, description="relative amplitude of charging streaks (0 = none)")
    psf_sigma_px: float = Field(0.7, ge=0, description="Gaussian probe sigma, pixels of the rendered frame")
    dose: float = Field(200.0, gt=0, description="electrons per pixel at yield 1.0 (rendered frame)")
    lr_scale: int = Field(4, ge=1, le=16, description="LR pixel = lr_scale × lr_scale rendered pixels")
    lr_dose: float = Field(40.0, gt=0, description="electrons per LR pixel at yield 1.0 (fast scan)")
    supersample: int = Field(4, ge=1, le=8, description="sub-pixels per pixel side for the exact masks")
    max_particles: int = Field(4000, ge=1, description="cap on the particles placed")

    @model_validator(mode="after")
    def _consistent(self) -> FamilyConfig:
        if self.size_px % self.lr_scale:
            raise ValueError(f"size_px ({self.size_px}) must be a multiple of lr_scale ({self.lr_scale})")
        if self.d50_px > self.size_px / 3:
            raise ValueError(f"d50_px {self.d50_px} too large for a {self.size_px}-pixel frame (at most a third)")
        sub, part = self.levels
        if abs(part - sub) < 0.02:
            raise ValueError(f"particle level {part} and substrate level {sub} give no contrast")
        return self

    @property
    def levels(self) -> tuple[float, float]:
        """``(substrate, particle)`` yield."""
        sub, part = FAMILY_LEVELS[self.family]
        return (
            sub if self.substrate_level is None else self.substrate_level,
            part if self.particle_level is None else self.particle_level,
        )

    @property
    def lr_pixel_size_um(self) -> float:
        return self.pixel_size_um * self.lr_scale


@dataclass
class FamilyScene:
    """A rendered scene: noise-free yield, instance labels (HR and LR) and truth.

    ``particles`` has one row per particle: ``particle_id``, ``ecd_px`` and ``area_px`` of the
    visible particle in rendered pixels, ``ecd_um``, ``full_ecd_px`` (the whole ellipse),
    ``occluded`` (another particle lies over part of it), ``agglomerate`` (placed overlapping),
    ``touches_border`` / ``touches_border_lr`` (reaches the outermost pixel of the HR / LR
    frame), ``centroid_x_px`` / ``centroid_y_px``.
    """

    clean: np.ndarray
    labels: np.ndarray
    lr_labels: np.ndarray
    particles: pd.DataFrame


def fractal_noise(shape: tuple[int, int], beta: float, rng: np.random.Generator) -> np.ndarray:
    """Zero-mean, unit-sd Gaussian field with power spectrum ∝ |f|^−β (β ≈ 2–3: rough surfaces
    such as carbon tape; Peitgen & Saupe, *The Science of Fractal Images*, Springer 1988, ch. 2)."""
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1])[None, :]
    f = np.hypot(fy, fx)
    f[0, 0] = np.inf
    amp = f ** (-beta / 2)
    spec = (rng.normal(size=amp.shape) + 1j * rng.normal(size=amp.shape)) * amp
    field = np.fft.irfft2(spec, s=shape)
    return (field - field.mean()) / max(field.std(), 1e-12)


def _place(config: FamilyConfig, rng: np.random.Generator) -> list[tuple[float, float, float, float, float, bool]]:
    """Ellipses ``(cy, cx, a, b, angle, agglomerate)`` in pixels: non-overlapping ones with
    ``min_gap_px`` between bounding circles, and agglomerated ones overlapping an earlier one."""
    size = config.size_px
    target = config.fill_fraction * size * size
    placed: list[tuple[float, float, float, float, float, bool]] = []
    centres = np.zeros((0, 2))
    radii = np.zeros(0)
    covered, misses = 0.0, 0
    sigma = math.log(config.gsd)
    while covered < target and len(placed) < config.max_particles and misses < 200:
        ecd = float(np.clip(config.d50_px * math.exp(sigma * rng.normal()), 0.4 * config.d50_px, 2.5 * config.d50_px))
        aspect = rng.uniform(1.0, config.aspect_max)
        a, b = 0.5 * ecd * math.sqrt(aspect), 0.5 * ecd / math.sqrt(aspect)
        angle = rng.uniform(0, math.pi)
        agglomerate = bool(placed) and rng.uniform() < config.overlap_fraction
        if agglomerate:
            # Next to an earlier particle, centres closer than the sum of radii: they overlap
            # by 5–35 % of it (a clump, not one particle hiding another).
            k = int(rng.integers(len(placed)))
            direction = rng.uniform(0, 2 * math.pi)
            dist = (radii[k] + a) * rng.uniform(0.65, 0.95)
            cy, cx = centres[k] + dist * np.array([math.sin(direction), math.cos(direction)])
            ok = a <= cy < size - a and a <= cx < size - a
            # The pair must not run into a third particle.
            others = np.hypot(*(centres - (cy, cx)).T) < radii + a + config.min_gap_px
            others[k] = False
            ok = ok and not others.any()
        else:
            cy, cx = rng.uniform(-0.3 * a, size + 0.3 * a, size=2)
            ok = not (np.hypot(*(centres - (cy, cx)).T) < radii + a + config.min_gap_px).any()
        if not ok:
            misses += 1
            continue
        misses = 0
        placed.append((float(cy), float(cx), a, b, angle, agglomerate))
        centres = np.vstack([centres, (cy, cx)])
        radii = np.append(radii, a)
        covered += math.pi * a * b
    return placed


def _ellipse_coords(cy: float, cx: float, a: float, b: float, angle: float, ss: int, size: int, align: int):
    """Sub-pixel grid of the ellipse's bounding box: slices into the ``size·ss`` canvas and the
    normalised ellipse coordinates ``(u, v)`` (``u² + v² ≤ 1`` inside) and in-plane unit axes.

    The box starts and ends on multiples of ``align`` sub-pixels (whole LR pixels), so block
    sums of it fall on the pixel and LR-pixel grids.
    """
    top, bottom = (cy - a - 1) * ss, (cy + a + 1) * ss
    left, right = (cx - a - 1) * ss, (cx + a + 1) * ss
    lo_y, hi_y = max(0, int(top // align) * align), min(size * ss, int(math.ceil(bottom / align)) * align)
    lo_x, hi_x = max(0, int(left // align) * align), min(size * ss, int(math.ceil(right / align)) * align)
    if lo_y >= hi_y or lo_x >= hi_x:
        return None
    # Sub-pixel centres in pixel coordinates (pixel (r, c) has its centre at (r, c)).
    y = (np.arange(lo_y, hi_y) + 0.5) / ss - 0.5 - cy
    x = (np.arange(lo_x, hi_x) + 0.5) / ss - 0.5 - cx
    ca, sa = math.cos(angle), math.sin(angle)
    u = (x[None, :] * ca + y[:, None] * sa) / a
    v = (-x[None, :] * sa + y[:, None] * ca) / b
    return (slice(lo_y, hi_y), slice(lo_x, hi_x)), u, v, (ca, sa)


def _block_sum(a: np.ndarray, f: int) -> np.ndarray:
    h, w = a.shape[0] // f, a.shape[1] // f
    return a[: h * f, : w * f].reshape(h, f, w, f).sum(axis=(1, 3))


def render_family(config: FamilyConfig, rng: np.random.Generator) -> FamilyScene:
    """Place particles and render the noise-free yield map with exact instance masks.

    Parameters
    ----------
    config : FamilyConfig
        Scene description.
    rng : numpy.random.Generator
        The only source of randomness (same seed, same scene).

    Returns
    -------
    FamilyScene
        ``clean`` float32 yield in [0, 1] (before blur and noise), ``labels`` (HR) and
        ``lr_labels`` (LR, majority of ``lr_scale²`` pixels) int32, ``particles`` the truth.
    """
    size, ss, s = config.size_px, config.supersample, config.lr_scale
    sub_level, part_level = config.levels
    placed = _place(config, rng)
    canvas = np.zeros((size * ss, size * ss), dtype=np.int32)
    geometry = []
    for pid, (cy, cx, a, b, angle, _) in enumerate(placed, start=1):
        g = _ellipse_coords(cy, cx, a, b, angle, ss, size, ss * s)
        geometry.append(g)
        if g is not None:
            box, u, v, _ = g
            # Later particles lie on top: an agglomerated particle occludes its neighbour.
            canvas[box][u * u + v * v <= 1.0] = pid
    signal = np.zeros((size, size))
    coverage = np.zeros((size, size))
    best = np.zeros((size, size))
    best_lr = np.zeros((size // s, size // s))
    labels = np.zeros((size, size), dtype=np.int32)
    lr_labels = np.zeros((size // s, size // s), dtype=np.int32)
    # Light (detector) direction: tilted 45° from the beam towards a random azimuth.
    az = rng.uniform(0, 2 * math.pi)
    light = np.array([math.cos(az), math.sin(az), 1.0]) / math.sqrt(2.0)
    rows = []
    for pid, ((cy, cx, a, b, angle, agglomerate), g) in enumerate(zip(placed, geometry), start=1):
        level = float(np.clip(part_level + config.particle_level_sd * rng.normal(), 0.0, 1.0))
        area_ss = 0
        if g is not None:
            box, u, v, (ca, sa) = g
            vis = canvas[box] == pid
            area_ss = int(vis.sum())
            hidden = bool(((u * u + v * v <= 1.0) & ~vis).any())
        if area_ss == 0:
            rows.append((pid, 0.0, 0.0, 2 * math.sqrt(a * b), True, agglomerate, True, True, cy, cx))
            continue
        r2 = np.minimum(u * u + v * v, 0.999)
        if config.family == "bse":
            value = np.full(u.shape, level)
        else:
            # Ellipsoidal dome h = sqrt(1 − u² − v²) (height in units of the semi-axes); its
            # unnormalised normal is (u/a, v/b) rotated to x, y, and sqrt(1 − r²)/c with the
            # height scale c = b (a dome as high as it is narrow).
            hz = np.sqrt(1.0 - r2)
            nu, nv = u / a, v / b
            nx, ny, nz = nu * ca - nv * sa, nu * sa + nv * ca, hz / b
            norm = np.sqrt(nx * nx + ny * ny + nz * nz)
            lambert = (nx * light[0] + ny * light[1] + nz * light[2]) / norm  # in [−1, 1]
            depth = config.tilt_contrast if config.family == "dome" else 0.3 * config.tilt_contrast
            value = level * (1.0 - depth * 0.5 * (1.0 - lambert))
        r0, c0 = box[0].start, box[1].start
        py0, px0 = r0 // ss, c0 // ss
        cov = _block_sum(vis.astype(float), ss) / ss**2
        sig = _block_sum(np.where(vis, value, 0.0), ss) / ss**2
        rs = slice(py0, py0 + cov.shape[0])
        cs = slice(px0, px0 + cov.shape[1])
        signal[rs, cs] += sig
        coverage[rs, cs] += cov
        win = (cov >= 0.5) & (cov > best[rs, cs])
        labels[rs, cs][win] = pid
        best[rs, cs] = np.maximum(best[rs, cs], cov)
        cov_lr = _block_sum(cov, s) / s**2
        lrs = slice(py0 // s, py0 // s + cov_lr.shape[0])
        lcs = slice(px0 // s, px0 // s + cov_lr.shape[1])
        win = (cov_lr >= 0.5) & (cov_lr > best_lr[lrs, lcs])
        lr_labels[lrs, lcs][win] = pid
        best_lr[lrs, lcs] = np.maximum(best_lr[lrs, lcs], cov_lr)
        area = area_ss / ss**2
        ys, xs = np.nonzero(vis)
        ymin, ymax = (ys.min() + r0 + 0.5) / ss - 0.5, (ys.max() + r0 + 0.5) / ss - 0.5
        xmin, xmax = (xs.min() + c0 + 0.5) / ss - 0.5, (xs.max() + c0 + 0.5) / ss - 0.5
        hr_border = ymin < 0.5 or xmin < 0.5 or ymax > size - 1.5 or xmax > size - 1.5
        lr_border = ymin < s - 0.5 or xmin < s - 0.5 or ymax > size - s - 0.5 or xmax > size - s - 0.5
        rows.append(
            (pid, math.sqrt(4 * area / math.pi), area, 2 * math.sqrt(a * b), hidden,
             agglomerate, hr_border, lr_border, cy, cx)
        )
    coverage = np.clip(coverage, 0.0, 1.0)
    yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1) - 0.5
    g_az = rng.uniform(0, 2 * math.pi)
    gradient = 1.0 + config.gradient * (math.cos(g_az) * xx + math.sin(g_az) * yy) * 2.0
    substrate = sub_level * (1.0 + config.texture * fractal_noise((size, size), config.texture_beta, rng))
    clean = (substrate * (1.0 - coverage) + signal) * gradient
    if config.streaks > 0:
        clean = clean * (1.0 + _streaks(clean, coverage, config.streaks, rng))
    particles = pd.DataFrame(
        rows,
        columns=["particle_id", "ecd_px", "area_px", "full_ecd_px", "occluded", "agglomerate", "touches_border",
                 "touches_border_lr", "centroid_y_px", "centroid_x_px"],
    )
    particles.insert(2, "ecd_um", particles.ecd_px * config.pixel_size_um)
    return FamilyScene(np.clip(clean, 0, 1).astype(np.float32), labels, lr_labels, particles)


def _streaks(clean: np.ndarray, coverage: np.ndarray, amplitude: float, rng: np.random.Generator) -> np.ndarray:
    """Relative charging artefact: after the beam crosses a particle, the following pixels of the
    scan line are brighter, decaying over a few particle widths; some lines jump as a whole."""
    size = clean.shape[1]
    decay = max(2.0, size / 40)
    # Exponential tail along the fast-scan (x) direction: a causal IIR filter per row.
    tail = np.zeros_like(coverage)
    acc = np.zeros(coverage.shape[0])
    k = math.exp(-1.0 / decay)
    for c in range(size):
        acc = acc * k + coverage[:, c] * (1 - k)
        tail[:, c] = acc
    jumps = np.zeros(coverage.shape[0])
    lines = rng.choice(coverage.shape[0], size=max(1, coverage.shape[0] // 50), replace=False)
    jumps[lines] = rng.uniform(-1, 1, size=lines.size)
    return amplitude * (tail / max(tail.max(), 1e-9) + 0.5 * jumps[:, None])


def scan_family(scene: FamilyScene, config: FamilyConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The HR and LR scans of a scene: ``(hr, lr)`` float32 yields, counts / dose (not clipped: a
    pixel may exceed 1 where Poisson noise at a low dose adds counts; clipping would bend the
    noise model).

    HR: probe blur (Gaussian, ``psf_sigma_px``) then Poisson noise at ``dose`` electrons per
    pixel at yield 1. LR: the same blurred yield integrated over ``lr_scale²`` pixels (area
    integration of a fast scan with a ``lr_scale`` times coarser pitch) and Poisson noise at
    ``lr_dose`` electrons per LR pixel at yield 1.
    """
    blurred = ndimage.gaussian_filter(scene.clean.astype(np.float64), config.psf_sigma_px) if config.psf_sigma_px > 0 else scene.clean
    blurred = np.clip(blurred, 0.0, None)
    hr = rng.poisson(blurred * config.dose) / config.dose
    s = config.lr_scale
    lr_clean = _block_sum(blurred, s) / s**2
    lr = rng.poisson(lr_clean * config.lr_dose) / config.lr_dose
    return hr.astype(np.float32), lr.astype(np.float32)
