"""Faceted, irregular particles: a third renderer, written apart from :mod:`semqa.synth.scenes`
and :mod:`semqa.synth.families` (whose particles are ellipses), so that no shape assumption of
theirs is shared.

Each particle is a random simple polygon (5–9 vertices at random angles, radii varying by
``irregularity`` around the particle's radius: concave where a vertex lies inside its
neighbours' chord, as fragments of milled or crystallised drug substance are). Its surface is
a roof over the polygon — height = distance to its outline, so the facets meet along the
medial axis as a crystal's faces meet along its edges — and the SE signal of a face depends on
its tilt towards the detector (Lambert-like: yield ∝ 1 + ``tilt_contrast`` · slope along the
detector direction), plus the edge brightening of a thin rim. Particles may overlap an earlier
one (``overlap_fraction``): the later lies on top, the earlier keeps its visible part as its
label, as an annotator outlines what is visible. The substrate is carbon tape: a smooth random
texture on an illumination gradient. The dose is in electrons per pixel at yield 1 (Poisson).

>>> import numpy as np
>>> scene = render_facets(FacetConfig(size_px=128, d50_px=16, dose=100), np.random.default_rng(0))
>>> scene.image.shape, int(scene.labels.max()) == len(scene.particles)
((128, 128), True)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from scipy import ndimage
from skimage.draw import polygon

from semqa.particles.measure import border_labels

Contrast = Literal["se", "bse", "dark"]
#: (substrate, particle) yields per contrast: SE bright particles on carbon, BSE flat (a drug's
#: organic matrix scatters little more than carbon), dark particles on a bright (metal) stub.
LEVELS: dict[str, tuple[float, float]] = {"se": (0.25, 0.55), "bse": (0.3, 0.5), "dark": (0.6, 0.25)}


class FacetConfig(BaseModel):
    """One scene of faceted irregular particles; sizes in pixels of the rendered frame."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    size_px: int = Field(512, ge=32, le=8192, description="frame side, px (square)")
    d50_px: float = Field(20.0, gt=0, description="median of the log-normal ECD of the drawn polygons, px")
    gsd: float = Field(1.35, ge=1.0, le=3.0, description="geometric standard deviation of the ECD")
    irregularity: float = Field(0.25, ge=0, lt=1, description="vertex radii uniform in (1 ± this) × their mean")
    fill_fraction: float = Field(0.18, gt=0, le=0.5, description="target share of the field covered")
    overlap_fraction: float = Field(0.2, ge=0, le=1, description="share of placements allowed to overlap an earlier particle")
    max_overlap: float = Field(0.25, ge=0, le=0.9, description="largest share of a new particle lying on earlier ones")
    contrast: Contrast = Field("se")
    tilt_contrast: float = Field(0.35, ge=0, le=1, description="relative yield change per unit slope of a face towards the detector")
    rim: float = Field(0.3, ge=0, le=1, description="SE edge brightening (yield added at the outline); 0 for bse/dark")
    texture: float = Field(0.06, ge=0, le=0.5, description="relative sd of the carbon-tape texture")
    gradient: float = Field(0.25, ge=0, le=0.5, description="relative illumination change across the field")
    psf_sigma_px: float = Field(0.8, ge=0, description="Gaussian probe sigma, px")
    dose: float = Field(100.0, gt=0, description="electrons per pixel at yield 1")
    max_particles: int = Field(4000, ge=1)


@dataclass
class FacetScene:
    image: np.ndarray  # float32 counts / dose (yield units), Poisson
    labels: np.ndarray  # int32 visible part of each particle, 0 = substrate
    particles: pd.DataFrame  # label, area_px, ecd_px, touches_border


def _polygon(rng: np.random.Generator, ecd: float, irregularity: float) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (x, y) about the origin of a random simple polygon whose area is that of a disc of diameter ``ecd``."""
    n = int(rng.integers(5, 10))
    angles = np.sort(rng.uniform(0.0, 2.0 * np.pi, n))
    radii = rng.uniform(1.0 - irregularity, 1.0 + irregularity, n)
    aspect, turn = rng.uniform(0.6, 1.0), rng.uniform(0.0, np.pi)
    x, y = radii * np.cos(angles), radii * np.sin(angles) * aspect
    x, y = x * np.cos(turn) - y * np.sin(turn), x * np.sin(turn) + y * np.cos(turn)
    # Vertices sorted by angle about an inner point: a simple polygon; shoelace area.
    area = 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))
    scale = 0.5 * ecd * np.sqrt(np.pi / area)
    return scale * x, scale * y


def _place(config: FacetConfig, rng: np.random.Generator) -> np.ndarray:
    size = config.size_px
    labels = np.zeros((size, size), dtype=np.int32)
    covered, n, tries = 0, 0, 0
    while covered < config.fill_fraction * size * size and n < config.max_particles and tries < 50 * config.max_particles:
        tries += 1
        ecd = config.d50_px * float(np.exp(rng.normal(0.0, np.log(config.gsd))))
        dx, dy = _polygon(rng, ecd, config.irregularity)
        cy, cx = rng.uniform(0, size, 2)
        rr, cc = polygon(cy + dy, cx + dx, (size, size))
        if rr.size < 3:
            continue
        on_earlier = float((labels[rr, cc] > 0).mean())
        if on_earlier > 0 and (on_earlier > config.max_overlap or rng.random() >= config.overlap_fraction):
            continue
        n += 1
        labels[rr, cc] = n
        covered += rr.size
    # A particle mostly covered may be left in pieces: its label is its largest visible piece.
    for i, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        pieces, k = ndimage.label(labels[sl] == i)
        if k > 1:
            keep = 1 + int(np.argmax(np.bincount(pieces.ravel())[1:]))
            labels[sl][(pieces > 0) & (pieces != keep)] = 0
    return labels


def render_facets(config: FacetConfig, rng: np.random.Generator) -> FacetScene:
    """Render one scene (see the module docstring); deterministic for a given ``rng`` state."""
    labels = _place(config, rng)
    size = config.size_px
    height = np.zeros(labels.shape, dtype=np.float64)
    for i, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is not None:
            own = labels[sl] == i
            height[sl][own] = ndimage.distance_transform_edt(own)[own]
    mask = labels > 0
    sub_level, part_level = LEVELS[config.contrast]
    # The detector looks from the upper left: faces sloping that way are brighter.
    gy, gx = np.gradient(height)
    slope = np.clip(-(gx + gy) / np.sqrt(2.0), -1.0, 1.0)
    particle = part_level * (1.0 + config.tilt_contrast * slope)
    yy, xx = np.mgrid[0:size, 0:size] / size
    tape = ndimage.gaussian_filter(rng.standard_normal((size, size)), 3.0)
    tape /= max(float(tape.std()), 1e-12)
    substrate = sub_level * (1.0 + config.texture * tape)
    yield_ = np.where(mask, particle, substrate)
    if config.contrast == "se" and config.rim > 0:
        soft = ndimage.gaussian_filter(mask.astype(np.float64), 1.0)
        yield_ += config.rim * 4.0 * soft * (1.0 - soft)
    yield_ *= 1.0 + config.gradient * (xx - 0.5 + 0.5 * (yy - 0.5))
    if config.psf_sigma_px > 0:
        yield_ = ndimage.gaussian_filter(yield_, config.psf_sigma_px)
    image = (rng.poisson(np.clip(yield_, 1e-3, None) * config.dose) / config.dose).astype(np.float32)
    ids = np.arange(1, int(labels.max()) + 1)
    area = np.bincount(labels.ravel(), minlength=ids.size + 1)[1:]
    particles = pd.DataFrame({"label": ids, "area_px": area, "ecd_px": np.sqrt(4.0 * area / np.pi), "touches_border": np.isin(ids, border_labels(labels))})
    return FacetScene(image, labels, particles)
