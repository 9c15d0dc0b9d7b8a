"""The synthetic scenes a segmenter trains on: which renderers, in which shares, how varied.

:class:`SceneMix` (a field of :class:`training.segmenter.config.SegmenterTrainConfig`) sets the
share of each source; every scene draws its own settings from wide ranges, so the network sees
many renderings rather than one:

* ``randomized`` — :mod:`semqa.synth.randomized` (bright rims or none, ellipses and facets,
  touching pairs);
* ``agglomerates`` — :mod:`semqa.synth.agglomerates`: clusters of 3–20 Fourier-perturbed,
  partly overlapping particles, with or without SE edge brightening, bright or dark on the
  substrate;
* ``families`` — :mod:`semqa.synth.families` ``dome`` / ``bse`` / ``dark`` contrasts (tilt
  shading, flat atomic-number contrast, dark particles on a bright stub), overlapping placement,
  charging streaks;
* ``facets`` — :mod:`semqa.synth.facets`: random, partly concave polygons whose tilt-lit faces
  meet along ridges inside the particle (milled or crystallised drug substance), SE, BSE or dark
  contrast, on carbon-tape texture. Without them a network learns that an inner intensity edge
  is a boundary between particles and cuts crystals along their facets.

Across sources: dose log-uniform 15–800 electrons per pixel at unit yield (SNR ≈ 2–15, the
range of :func:`semqa.synth.randomized.random_scene_config`), probe sigma 0.4–2 px, median ECD
log-uniform in ``median_ecd_px``. A share ``lr_fraction`` of the randomized and family scenes is
the 4× coarser fast scan (area integration and its own dose, as the SR pipeline's LR input),
and a share ``databar_fraction`` of all scenes carries an instrument data bar or side panel
(:func:`semqa.synth.databar.add_databar`; its pixels are background in the labels). Labels are
the renderers' exact instance masks.

The choice of source, LR scan and data bar is drawn from its own random stream, so the default
mix (randomized only, no LR, no bars) renders exactly the scenes it rendered before this module.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator
from skimage.transform import resize

from semqa.sr.degradation import degrade
from semqa.synth.agglomerates import (
    AgglomerateConfig,
    render_agglomerates,
    scan_agglomerates,
)
from semqa.synth.databar import LAYOUTS, add_databar
from semqa.synth.facets import FacetConfig, render_facets
from semqa.synth.families import FamilyConfig, render_family, scan_family
from semqa.synth.randomized import (
    DOSE_RANGE,
    PSF_RANGE_PX,
    log_uniform,
    random_scene_config,
    synthetic_scene,
)
from semqa.synth.scenes import render_scene

#: Pixel sizes the data bars name, µm (log-uniform; sizes are drawn in pixels, so this names them only).
PIXEL_SIZE_RANGE_UM = (0.01, 0.5)
#: The fast scan's coarser pitch (the SR pipeline's 4×).
LR_SCALE = 4


class SceneMix(BaseModel):
    """Shares of the synthetic training scenes' sources and variations."""

    model_config = ConfigDict(extra="forbid")

    randomized: float = Field(1.0, ge=0, description="weight of semqa.synth.randomized scenes")
    agglomerates: float = Field(0.0, ge=0, description="weight of semqa.synth.agglomerates scenes (randomized settings)")
    families: float = Field(0.0, ge=0, description="weight of semqa.synth.families dome/bse/dark scenes (randomized settings)")
    facets: float = Field(0.0, ge=0, description="weight of semqa.synth.facets scenes (randomized settings)")
    lr_fraction: float = Field(0.0, ge=0, le=1, description="share of randomized and family scenes taken as the 4x coarser fast scan")
    databar_fraction: float = Field(0.0, ge=0, le=1, description="share of scenes carrying a data bar or side panel (background in the labels)")

    @model_validator(mode="after")
    def _some_source(self) -> SceneMix:
        if self.randomized + self.agglomerates + self.families + self.facets <= 0:
            raise ValueError("every source weight is 0")
        return self

    def is_default(self) -> bool:
        """The randomized scenes only, as before the mix existed (the manifest then keeps its old columns)."""
        return self == SceneMix()


def _randomized(rng: np.random.Generator, size_px: int, median_ecd_px: tuple[float, float], lr: bool) -> tuple[np.ndarray, np.ndarray]:
    if not lr:
        return synthetic_scene(rng, size_px, median_ecd_px)
    # The fast scan of a field LR_SCALE times finer: rendered at LR_SCALE × the size with the
    # particles LR_SCALE × larger, so the LR frame is size_px with ECDs in median_ecd_px.
    config, _ = random_scene_config(rng, size_px * LR_SCALE, (median_ecd_px[0] * LR_SCALE, median_ecd_px[1] * LR_SCALE))
    scene = render_scene(config, rng)
    image = degrade(scene.clean, config.degradation, rng)
    labels = resize(scene.labels, image.shape, order=0, anti_aliasing=False, preserve_range=True).astype(np.int32)
    return image, labels


def _agglomerates(rng: np.random.Generator, size_px: int, median_ecd_px: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    d50 = min(log_uniform(rng, *median_ecd_px), size_px / 4)
    substrate = rng.uniform(0.05, 0.6)
    contrast = rng.uniform(0.1, 0.45) * rng.choice([-1.0, 1.0])  # bright or dark particles
    config = AgglomerateConfig(
        size_px=size_px,
        d50_px=d50,
        gsd=rng.uniform(1.2, 1.8),
        d_min_px=max(3.0, d50 / 4),
        d_max_px=4 * d50,
        roughness=rng.uniform(0.0, 0.2),
        aspect_max=rng.uniform(1.2, 3.5),
        overlap_max=rng.uniform(0.05, 0.3),
        contact_min=rng.uniform(0.7, 0.9),
        single_fraction=rng.uniform(0.0, 0.4),
        fill_fraction=rng.uniform(0.15, 0.45),
        substrate_level=substrate,
        particle_level=float(np.clip(substrate + contrast, 0.02, 1.0)),
        edge_gain=rng.uniform(0.0, 0.6),
        texture=rng.uniform(0.0, 0.12),
        gradient=rng.uniform(0.0, 0.4),
        psf_sigma_px=rng.uniform(*PSF_RANGE_PX),
        dose=log_uniform(rng, *DOSE_RANGE),
    )
    truth = render_agglomerates(config, rng)
    return scan_agglomerates(truth, config, rng), truth.labels


def _families(rng: np.random.Generator, size_px: int, median_ecd_px: tuple[float, float], lr: bool) -> tuple[np.ndarray, np.ndarray]:
    scale = LR_SCALE if lr else 1
    render_px = size_px * scale
    config = FamilyConfig(
        family=str(rng.choice(["dome", "bse", "dark"])),
        size_px=render_px,
        d50_px=min(log_uniform(rng, *median_ecd_px) * scale, render_px / 4),
        gsd=rng.uniform(1.15, 1.8),
        aspect_max=rng.uniform(1.1, 3.0),
        fill_fraction=rng.uniform(0.08, 0.35),
        overlap_fraction=rng.uniform(0.0, 0.6),
        texture=rng.uniform(0.0, 0.12),
        gradient=rng.uniform(0.0, 0.4),
        streaks=rng.uniform(0.0, 0.2) if rng.random() < 0.3 else 0.0,
        psf_sigma_px=rng.uniform(*PSF_RANGE_PX) * scale,
        dose=log_uniform(rng, *DOSE_RANGE),
        lr_scale=scale,
        lr_dose=log_uniform(rng, *DOSE_RANGE),
        supersample=2,
    )
    truth = render_family(config, rng)
    hr, lr_image = scan_family(truth, config, rng)
    return (lr_image, truth.lr_labels) if lr else (hr, truth.labels)


def _facets(rng: np.random.Generator, size_px: int, median_ecd_px: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    contrast = str(rng.choice(["se", "bse", "dark"]))
    config = FacetConfig(
        size_px=size_px,
        d50_px=min(log_uniform(rng, *median_ecd_px), size_px / 4),
        gsd=rng.uniform(1.15, 1.6),
        irregularity=rng.uniform(0.05, 0.4),
        fill_fraction=rng.uniform(0.1, 0.35),
        overlap_fraction=rng.uniform(0.0, 0.5),
        max_overlap=rng.uniform(0.1, 0.3),
        contrast=contrast,
        tilt_contrast=rng.uniform(0.1, 0.6),
        rim=rng.uniform(0.0, 0.5) if contrast == "se" else 0.0,
        texture=rng.uniform(0.0, 0.12),
        gradient=rng.uniform(0.0, 0.4),
        psf_sigma_px=rng.uniform(*PSF_RANGE_PX),
        dose=log_uniform(rng, *DOSE_RANGE),
    )
    scene = render_facets(config, rng)
    return scene.image, scene.labels


def _with_databar(image: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    layout = str(rng.choice(LAYOUTS))
    frame, (x, y, w, h) = add_databar(
        np.clip(image, 0.0, 1.0), layout, rng, pixel_size_um=log_uniform(rng, *PIXEL_SIZE_RANGE_UM), dark=bool(rng.random() < 0.8)
    )
    out = np.zeros(frame.shape, dtype=np.int32)
    out[y : y + h, x : x + w] = labels[y : y + h, x : x + w]  # the bar's pixels are no particle's
    return frame, out


def mixed_scene(
    mix: SceneMix, seed: int, key: tuple[int, ...], size_px: int, median_ecd_px: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray, dict[str, object]]:
    """One scene of ``mix``: ``(image, exact labels, what it is)``, fixed by ``(seed, key)`` alone.

    The scene's own stream is ``SeedSequence(seed, spawn_key=key)`` (the stream the randomized
    scenes always had); source, LR and data bar are drawn from ``key + (1,)``.
    """
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))
    pick = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(*key, 1)))
    # A new source is appended with weight 0 by default: the same draw then picks the same source.
    weights = np.array([mix.randomized, mix.agglomerates, mix.families, mix.facets], dtype=float)
    source = ("randomized", "agglomerates", "families", "facets")[int(pick.choice(4, p=weights / weights.sum()))]
    lr = source in ("randomized", "families") and bool(pick.random() < mix.lr_fraction)
    bar = bool(pick.random() < mix.databar_fraction)
    if source == "randomized":
        image, labels = _randomized(rng, size_px, median_ecd_px, lr)
    elif source == "agglomerates":
        image, labels = _agglomerates(rng, size_px, median_ecd_px)
    elif source == "families":
        image, labels = _families(rng, size_px, median_ecd_px, lr)
    else:
        image, labels = _facets(rng, size_px, median_ecd_px)
    if bar:
        image, labels = _with_databar(image, labels, rng)
    return image.astype(np.float32), labels.astype(np.int32), {"source": source, "lr": lr, "databar": bar}

