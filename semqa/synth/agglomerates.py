"""Agglomerated, irregular particles with exact instance masks: a hard test bed for splitting.

Real drug-particle micrographs are dominated by clusters of touching, partly overlapping,
non-convex particles of very different sizes (milled or crystallised APIs; Rühle et al.,
*Sci. Rep.* 11, 2021, who train on synthetic SEM scenes of this kind). The scenes of
:mod:`semqa.synth.scenes` and :mod:`semqa.synth.families` hold mostly isolated ellipses and
pairs; this renderer (its own particle code, sharing only the substrate texture
:func:`semqa.synth.families.fractal_noise`) builds:

* **outlines** as Fourier-perturbed star-shaped curves ``r(θ) = R (1 + Σ_k a_k cos(kθ + φ_k))``,
  k = 2…6 with ``a_k ~ N(0, roughness / k)`` (a random-shape model of particle outlines:
  Beddow, *Particle Characterization in Technology*, CRC 1984, Fourier morphological
  analysis), stretched to an aspect ratio up to ``aspect_max`` and rotated: elongated,
  faceted and concave particles. The area is ``π R² (1 + ½ Σ a_k²)`` exactly (the stretch keeps
  area), so ``R`` is set from the drawn ECD;
* **clusters** of ``cluster_min``…``cluster_max`` particles grown by attaching each new
  particle to a random member, its centre at ``u`` times the sum of the two radii in a random
  direction (u ∈ [``contact_min``, 1)), accepted when it overlaps the cluster by more than
  nothing and less than ``overlap_max`` of its own area (short necks to partial overlap);
  plus ``single_fraction`` isolated particles; clusters keep ``min_gap_px`` from each other;
* **sizes** log-normal (``d50_px``, ``gsd``) clipped to [``d_min_px``, ``d_max_px``];
* **contrast**: a per-particle yield with a particle-to-particle sd, optional SE edge
  brightening (yield raised by ``edge_gain`` within ``edge_width_px`` of the particle's own
  visible outline: the edge effect, Reimer, *Scanning Electron Microscopy*, 2nd ed., 1998,
  § 4.2.2), a carbon-tape substrate (fractal noise), uneven illumination (a smooth
  multiplicative gradient), Gaussian probe blur and Poisson noise at ``dose`` electrons per pixel.

Truth: later particles lie on top (occlusion); each pixel goes to the particle covering the
larger part of it when that part is at least half the pixel, from a grid ``supersample``
times finer. ``particles`` holds per particle its visible ``area_px`` / ``ecd_px``, ``cluster``
(−1 for singles) and ``touches_border``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from scipy import ndimage

from semqa.particles.measure import border_labels
from semqa.synth.families import fractal_noise


class AgglomerateConfig(BaseModel):
    """One agglomerate scene; lengths in pixels of the rendered frame."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    size_px: int = Field(768, ge=64, le=4096, description="frame side, pixels (square)")
    pixel_size_um: float = Field(0.1, gt=0, description="µm per pixel")
    d50_px: float = Field(24.0, gt=0, description="median of the number-weighted log-normal ECD, pixels")
    gsd: float = Field(1.6, ge=1.0, le=3.0, description="geometric standard deviation of the ECD")
    d_min_px: float = Field(6.0, gt=0, description="smallest ECD drawn, pixels")
    d_max_px: float = Field(100.0, gt=0, description="largest ECD drawn, pixels")
    roughness: float = Field(0.12, ge=0, le=0.3, description="sd of the 2nd Fourier amplitude of the outline (k-th: /k·2)")
    aspect_max: float = Field(2.5, ge=1.0, le=5.0, description="largest aspect ratio (uniform from 1)")
    cluster_min: int = Field(3, ge=2, le=50, description="fewest particles in a cluster")
    cluster_max: int = Field(20, ge=2, le=50, description="most particles in a cluster")
    single_fraction: float = Field(0.2, ge=0, le=1, description="share of placement attempts that are isolated particles")
    contact_min: float = Field(0.8, gt=0, lt=1, description="least centre distance, as a fraction of the sum of radii")
    overlap_max: float = Field(0.15, gt=0, lt=1, description="largest share of a new particle's area lying over its cluster")
    min_gap_px: float = Field(3.0, ge=0, description="least gap between clusters (and singles)")
    fill_fraction: float = Field(0.3, gt=0, le=0.6, description="target share of the field covered")
    substrate_level: float = Field(0.2, ge=0, le=1, description="substrate yield")
    particle_level: float = Field(0.55, ge=0, le=1, description="mean particle yield")
    particle_level_sd: float = Field(0.05, ge=0, description="particle-to-particle sd of the yield")
    edge_gain: float = Field(0.4, ge=0, le=2, description="relative SE edge brightening at the outline (0 = none)")
    edge_width_px: float = Field(1.5, gt=0, description="decay length of the edge brightening, pixels")
    texture: float = Field(0.08, ge=0, le=0.5, description="relative sd of the carbon-tape texture")
    gradient: float = Field(0.3, ge=0, le=0.8, description="relative amplitude of the illumination gradient")
    psf_sigma_px: float = Field(0.8, ge=0, description="Gaussian probe sigma, pixels")
    dose: float = Field(100.0, gt=0, description="electrons per pixel at yield 1")
    supersample: int = Field(2, ge=1, le=4, description="sub-pixels per pixel side for the exact masks")
    max_particles: int = Field(3000, ge=1, description="cap on the particles placed")


@dataclass
class AgglomerateScene:
    """``clean`` noise-free yield, ``labels`` exact instance labels, ``particles`` the truth."""

    clean: np.ndarray
    labels: np.ndarray
    particles: pd.DataFrame


@dataclass(frozen=True)
class _Outline:
    cy: float
    cx: float
    radius: float  # base radius R
    amps: np.ndarray  # a_k, k = 2…6
    phases: np.ndarray
    stretch: float  # sqrt(aspect)
    angle: float

    @property
    def extent(self) -> float:
        """Radius of a circle holding the whole outline."""
        return self.radius * (1.0 + float(np.abs(self.amps).sum())) * self.stretch

    @property
    def mean_radius(self) -> float:
        """Area-equivalent radius (half the ECD): the contact distance of placement."""
        return self.radius * math.sqrt(1.0 + 0.5 * float((self.amps**2).sum()))

    def inside(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Points ``(y, x)`` (broadcast, pixel coordinates) inside the outline."""
        dy, dx = y - self.cy, x - self.cx
        ca, sa = math.cos(self.angle), math.sin(self.angle)
        u = (dx * ca + dy * sa) / self.stretch
        v = (-dx * sa + dy * ca) * self.stretch
        theta = np.arctan2(v, u)
        k = np.arange(2, 2 + self.amps.size)
        r = self.radius * (1.0 + np.tensordot(np.cos(theta[..., None] * k + self.phases), self.amps, axes=([-1], [0])))
        return u * u + v * v <= r * r


def _outline(ecd: float, cy: float, cx: float, config: AgglomerateConfig, rng: np.random.Generator) -> _Outline:
    k = np.arange(2, 7)
    amps = rng.normal(0.0, config.roughness * 2.0 / k)
    # Keep r(θ) > 0 with margin: a star-shaped outline, no self-crossing.
    total = float(np.abs(amps).sum())
    if total > 0.6:
        amps *= 0.6 / total
    radius = 0.5 * ecd / math.sqrt(1.0 + 0.5 * float((amps**2).sum()))
    return _Outline(cy, cx, radius, amps, rng.uniform(0, 2 * math.pi, k.size),
                    math.sqrt(rng.uniform(1.0, config.aspect_max)), rng.uniform(0, math.pi))


def _draw_ecd(config: AgglomerateConfig, rng: np.random.Generator) -> float:
    return float(np.clip(config.d50_px * math.exp(math.log(config.gsd) * rng.normal()), config.d_min_px, config.d_max_px))


def _raster(o: _Outline, ss: int, n_sub: int) -> tuple[tuple[slice, slice], np.ndarray] | None:
    """Sub-pixel box (in the ``n_sub``-wide canvas) and the outline's mask in it."""
    e = o.extent + 1.0
    lo_y, hi_y = max(0, int((o.cy - e) * ss)), min(n_sub, math.ceil((o.cy + e) * ss))
    lo_x, hi_x = max(0, int((o.cx - e) * ss)), min(n_sub, math.ceil((o.cx + e) * ss))
    if lo_y >= hi_y or lo_x >= hi_x:
        return None
    y = (np.arange(lo_y, hi_y) + 0.5) / ss - 0.5
    x = (np.arange(lo_x, hi_x) + 0.5) / ss - 0.5
    return (slice(lo_y, hi_y), slice(lo_x, hi_x)), o.inside(y[:, None], x[None, :])


def _grown(o: _Outline, margin: float) -> _Outline:
    """The outline scaled about its centre so that it reaches ``margin`` pixels further (about)."""
    return _Outline(o.cy, o.cx, o.radius + margin / o.stretch, o.amps, o.phases, o.stretch, o.angle)


def _place(config: AgglomerateConfig, rng: np.random.Generator, canvas: np.ndarray) -> list[tuple[_Outline, int]]:
    """Clusters and singles drawn into ``canvas`` (sub-pixel particle ids, later on top).

    A particle is accepted when its outline grown by ``min_gap_px`` meets no other cluster's
    particle and, in a cluster after the first member, its own outline overlaps its cluster by
    more than nothing and less than ``overlap_max`` of its area.
    """
    ss, size = config.supersample, config.size_px
    n_sub = canvas.shape[0]
    placed: list[tuple[_Outline, int]] = []
    target = config.fill_fraction * (size * ss) ** 2
    covered, misses, cluster_id = 0, 0, 0
    while covered < target and len(placed) < config.max_particles and misses < 200:
        single = rng.uniform() < config.single_fraction
        n_members = 1 if single else int(rng.integers(config.cluster_min, config.cluster_max + 1))
        members: list[_Outline] = []
        for attempt in range(30 * n_members):
            if len(members) == n_members or (not members and attempt > 0):
                break
            new = _outline(_draw_ecd(config, rng), 0.0, 0.0, config, rng)
            if members:
                host = members[int(rng.integers(len(members)))]
                direction = rng.uniform(0, 2 * math.pi)
                dist = (host.mean_radius + new.mean_radius) * rng.uniform(config.contact_min, 1.0)
                cy, cx = host.cy + dist * math.sin(direction), host.cx + dist * math.cos(direction)
            else:
                cy, cx = rng.uniform(0, size, 2)
            cand = _Outline(cy, cx, new.radius, new.amps, new.phases, new.stretch, new.angle)
            grown = _raster(_grown(cand, config.min_gap_px), ss, n_sub)
            own = _raster(cand, ss, n_sub)
            if grown is None or own is None or not own[1].any():
                continue
            near = canvas[grown[0]][grown[1]]
            mine = np.isin(near, np.arange(len(placed) - len(members) + 1, len(placed) + 1))
            if (near[~mine] > 0).any():
                continue
            box, mask = own
            under = canvas[box][mask] > 0
            share = under.mean()
            if members and not 0 < share < config.overlap_max:
                continue
            members.append(cand)
            placed.append((cand, -1))
            canvas[box][mask] = len(placed)
            covered += int((~under).sum())
        if not members:
            misses += 1
            continue
        misses = 0
        if len(members) > 1:
            for i in range(len(placed) - len(members), len(placed)):
                placed[i] = (placed[i][0], cluster_id)
            cluster_id += 1
    return placed


def _block_sum(a: np.ndarray, f: int) -> np.ndarray:
    h, w = a.shape[0] // f, a.shape[1] // f
    return a[: h * f, : w * f].reshape(h, f, w, f).sum(axis=(1, 3))


def render_agglomerates(config: AgglomerateConfig, rng: np.random.Generator) -> AgglomerateScene:
    """Place clusters of irregular particles and render the noise-free yield with exact labels.

    Parameters
    ----------
    config : AgglomerateConfig
        Scene description.
    rng : numpy.random.Generator
        The only source of randomness.

    Returns
    -------
    AgglomerateScene
    """
    size, ss = config.size_px, config.supersample
    canvas = np.zeros((size * ss, size * ss), dtype=np.int32)
    placed = _place(config, rng, canvas)
    n = len(placed)
    # Per-pixel coverage of each particle: the majority particle of each pixel, if ≥ half.
    blocks = canvas.reshape(size, ss, size, ss).transpose(0, 2, 1, 3).reshape(size, size, ss * ss)
    labels = np.zeros((size, size), dtype=np.int32)
    best = np.zeros((size, size), dtype=np.int32)
    for j in range(ss * ss):
        cand = blocks[..., j]
        count = (blocks == cand[..., None]).sum(axis=-1)
        better = (cand > 0) & (count > best) & (2 * count >= ss * ss)
        labels[better], best[better] = cand[better], count[better]
    levels = np.clip(config.particle_level + config.particle_level_sd * rng.normal(size=n + 1), 0.02, 1.0)
    levels[0] = 0.0
    sub = canvas > 0
    # SE edge effect: brighter within a few pixels of each particle's own visible outline.
    edge = np.zeros(canvas.shape, dtype=np.float32)
    if config.edge_gain > 0 and n:
        own_dist = ndimage.distance_transform_edt(sub) / ss
        # Outlines inside a cluster (front particle over another) are edges too.
        inner = np.zeros(canvas.shape, dtype=bool)
        inner[:, 1:] |= canvas[:, 1:] != canvas[:, :-1]
        inner[1:, :] |= canvas[1:, :] != canvas[:-1, :]
        inner &= sub
        inner_dist = ndimage.distance_transform_edt(~inner) / ss
        edge = config.edge_gain * np.exp(-np.minimum(own_dist, inner_dist) / config.edge_width_px)
    particle_yield = levels[canvas] * (1.0 + edge)
    coverage_yield = _block_sum(np.where(sub, particle_yield, 0.0), ss) / ss**2
    coverage = _block_sum(sub.astype(np.float64), ss) / ss**2
    substrate = config.substrate_level * (1.0 + config.texture * fractal_noise((size, size), 2.6, rng))
    yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1) - 0.5
    g_az = rng.uniform(0, 2 * math.pi)
    illumination = 1.0 + config.gradient * 2.0 * (math.cos(g_az) * xx + math.sin(g_az) * yy)
    clean = np.clip((substrate * (1.0 - coverage) + coverage_yield) * illumination, 0.0, 1.0)
    areas = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    border = np.zeros(n + 1, dtype=bool)
    border[border_labels(labels)] = True
    rows = [
        {"particle_id": pid, "area_px": int(areas[pid - 1]), "ecd_px": math.sqrt(4.0 * areas[pid - 1] / math.pi),
         "ecd_um": math.sqrt(4.0 * areas[pid - 1] / math.pi) * config.pixel_size_um, "cluster": cid,
         "touches_border": bool(border[pid])}
        for pid, (_, cid) in enumerate(placed, start=1)
    ]
    particles = pd.DataFrame(rows, columns=["particle_id", "area_px", "ecd_px", "ecd_um", "cluster", "touches_border"])
    return AgglomerateScene(clean.astype(np.float32), labels, particles)


def scan_agglomerates(scene: AgglomerateScene, config: AgglomerateConfig, rng: np.random.Generator) -> np.ndarray:
    """The scanned frame: probe blur then Poisson noise at ``dose`` (counts / dose, float32)."""
    blurred = ndimage.gaussian_filter(scene.clean.astype(np.float64), config.psf_sigma_px) if config.psf_sigma_px > 0 else scene.clean
    return (rng.poisson(np.clip(blurred, 0.0, None) * config.dose) / config.dose).astype(np.float32)
