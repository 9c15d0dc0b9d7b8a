"""Result tables as image-analysis users expect them (ImageJ's Results, Morphologi's reports).

Two tables per analysis or comparison, written by ``semqa analyze|compare --csv FILE`` and
offered by the service and the dashboard from these same functions:

* particles (``FILE``): one row per particle found, measured or not, with its product and lot
  (comparisons), image, label, every measurement in µm (:class:`semqa.particles.measure.Particle`),
  ``status`` (``measured`` or ``excluded``), the ``exclusion`` reason, and the analysed pixel size
  the µm values were computed with. Excluded particles are sized on their visible pixels and
  are never part of a PSD.
* images (``FILE`` with ``_images`` before the suffix): one row per image with its
  :class:`semqa.results.ImageSummary` fields flattened (``roi_x``, ``roi_source``, …).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from semqa.analysis import AnalysisResult, ComparisonReport
from semqa.particles.measure import Particle, particles_frame

#: Columns that say where a row belongs; present in both tables, first.
KEY_COLUMNS: tuple[str, ...] = ("product", "lot", "image")


def _particle_table(result: AnalysisResult, product: str | None, lot: str | None) -> pd.DataFrame:
    particles: list[Particle] = sorted(
        [*result.particles, *result.excluded_particles], key=lambda p: (p.image, p.label)
    )
    frame = particles_frame(particles)
    frame.insert(0, "status", ["excluded" if p.exclusion else "measured" for p in particles])
    pixel = {s.name: s.analysed_pixel_size_um for s in result.images}
    frame["pixel_size_um"] = frame["image"].map(pixel).astype(float)
    return frame.assign(product=product, lot=lot)


def _image_table(result: AnalysisResult, product: str | None, lot: str | None) -> pd.DataFrame:
    frame = pd.json_normalize([s.model_dump(mode="json") for s in result.images], sep="_")
    return frame.rename(columns={"name": "image"}).assign(product=product, lot=lot)


def _ordered(frame: pd.DataFrame, drop_keys: bool) -> pd.DataFrame:
    keys = [c for c in KEY_COLUMNS if c in frame.columns and not (drop_keys and c in ("product", "lot"))]
    return frame[[*keys, *[c for c in frame.columns if c not in KEY_COLUMNS]]]


def analysis_tables(result: AnalysisResult) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(particles, images)`` of one analysis (no product or lot columns)."""
    return (
        _ordered(_particle_table(result, None, None), drop_keys=True),
        _ordered(_image_table(result, None, None), drop_keys=True),
    )


def comparison_tables(report: ComparisonReport) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(particles, images)`` of every lot of both products, labelled ``reference`` / ``test``."""
    lots = [("reference", lot, r) for lot, r in report.reference.items()] + [
        ("test", lot, r) for lot, r in report.test.items()
    ]
    particles = pd.concat([_particle_table(r, p, lot) for p, lot, r in lots], ignore_index=True)
    images = pd.concat([_image_table(r, p, lot) for p, lot, r in lots], ignore_index=True)
    return _ordered(particles, drop_keys=False), _ordered(images, drop_keys=False)


def images_path(path: str | Path) -> Path:
    """Where the per-image table of ``path`` goes: ``x.csv`` → ``x_images.csv``."""
    path = Path(path)
    return path.with_name(f"{path.stem}_images{path.suffix or '.csv'}")


def write_tables(particles: pd.DataFrame, images: pd.DataFrame, path: str | Path) -> tuple[Path, Path]:
    """Write both tables as CSV (UTF-8): ``path`` and :func:`images_path` of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    particles.to_csv(path, index=False)
    images.to_csv(images_path(path), index=False)
    return path, images_path(path)
