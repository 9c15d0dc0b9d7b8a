"""Synthetic scenes with widely randomized settings, for training and judging segmenters.

Each scene draws its own :class:`semqa.synth.scenes.SynthConfig` (contrast, edge effect,
dose, probe blur, particle sizes and spread, shapes, agglomeration, cover, background
unevenness) so that a segmenter is trained and evaluated on many renderings, not one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile

from semqa.io.images import write_image
from semqa.sr.degradation import scan
from semqa.synth.scenes import SynthConfig, render_scene

#: Pixel size the scenes are rendered at (sizes are drawn in pixels, so it only names them in µm).
PIXEL_SIZE_UM = 0.1
#: Range of the scenes' median ECD, px (drawn log-uniformly).
MEDIAN_ECD_RANGE_PX = (10.0, 48.0)
#: HR dose range, electrons per pixel at unit yield (drawn log-uniformly; SNR from ≈ 2 to ≈ 15).
DOSE_RANGE = (15.0, 800.0)
#: Probe (PSF) sigma range, px.
PSF_RANGE_PX = (0.4, 2.0)


def log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    """One draw uniform in log between ``lo`` and ``hi`` (sizes and doses span decades)."""
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def random_scene_config(
    rng: np.random.Generator, size_px: int, median_ecd_px: tuple[float, float] = MEDIAN_ECD_RANGE_PX
) -> tuple[SynthConfig, float]:
    """A widely randomized scene configuration and its HR dose.

    Ranges: contrast of particles over substrate 0.08–0.5 (yield), edge-effect amplitude
    0–0.5, dose 15–800 electrons per pixel at unit yield (SNR from ≈ 2 to ≈ 15), probe sigma
    0.4–2 px, median ECD in ``median_ecd_px`` (default 10–48 px) with geometric SD 1.2–1.9, aspect ratio up to 1.2–3.5,
    touching pairs 0–60 %, cover 6–30 %, illumination unevenness 0–40 %.
    """
    pixel = PIXEL_SIZE_UM
    substrate = rng.uniform(0.05, 0.4)
    d50_px = log_uniform(rng, *median_ecd_px)
    config = SynthConfig(
        size_px=size_px,
        pixel_size_um=pixel,
        d50_um=min(d50_px * pixel, size_px * pixel / 4),
        gsd=rng.uniform(1.2, 1.9),
        min_ecd_um=3 * pixel,
        fill_fraction=rng.uniform(0.06, 0.3),
        touching_fraction=rng.uniform(0.0, 0.6),
        aspect_max=rng.uniform(1.2, 3.5),
        irregularity=rng.uniform(0.0, 0.2),
        facet_fraction=rng.uniform(0, 1),
        min_gap_um=rng.uniform(0.1, 0.6),
        substrate_level=substrate,
        particle_level=min(1.0, substrate + rng.uniform(0.08, 0.5)),
        rim_amplitude=rng.uniform(0.0, 0.5),
        rim_width_um=rng.uniform(0.1, 0.6),
        texture=rng.uniform(0.0, 0.1),
        illumination=rng.uniform(0.0, 0.4),
        hr_psf_sigma_px=rng.uniform(*PSF_RANGE_PX),
    )
    return config, log_uniform(rng, *DOSE_RANGE)


def synthetic_scene(
    rng: np.random.Generator, size_px: int, median_ecd_px: tuple[float, float] = MEDIAN_ECD_RANGE_PX
) -> tuple[np.ndarray, np.ndarray]:
    """One randomized scene scanned at its HR dose: ``(image, true labels)``."""
    config, dose = random_scene_config(rng, size_px, median_ecd_px)
    scene = render_scene(config, rng)
    image = scan(scene.clean, psf_sigma_px=config.hr_psf_sigma_px, dose=dose, rng=rng)
    return image, scene.labels


def write_annotated_set(folder: str | Path, n: int, size_px: int, seed: int) -> Path:
    """Write ``n`` randomized scenes as an annotated set: ``images/<name>.tif`` + ``labels/<name>.tif``.

    The layout :func:`semqa.particles.annotations.load_annotated` reads; images are 16-bit
    TIFFs with their pixel size inside, labels ``uint16`` true instance masks.
    """
    folder = Path(folder)
    (folder / "labels").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(i,)))
        image, labels = synthetic_scene(rng, size_px)
        name = f"scene_{i:04d}.tif"
        write_image(folder / "images" / name, image, pixel_size_um=PIXEL_SIZE_UM, bit_depth=16)
        tifffile.imwrite(folder / "labels" / name, labels.astype(np.uint16))
    return folder
