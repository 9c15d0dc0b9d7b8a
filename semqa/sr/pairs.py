"""Paired micrographs for super-resolution: one field of view scanned at high and low resolution.

A pair set is ``DIR/hr/<name>`` and ``DIR/lr/<name>`` (same names). Training, the held-out
evaluation of a run and the promotion gates' evaluation set all read pairs here. In HR-only
mode (``hr_only=True``) each LR image is synthesised once from its HR image with
:func:`semqa.sr.degradation.degrade`, the degradation model :mod:`semqa.synth.scenes` uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from semqa.errors import InputError
from semqa.io.images import list_images, read_image
from semqa.sr.degradation import DegradationConfig, degrade


@dataclass(frozen=True)
class Pair:
    """One field of view: HR image, its LR counterpart (None in HR-only training), metadata."""

    name: str
    hr: np.ndarray
    lr: np.ndarray | None
    hr_pixel_size_um: float | None
    hr_digest: str
    lr_digest: str | None


def _hr_dir(data_dir: Path) -> Path:
    return data_dir / "hr" if (data_dir / "hr").is_dir() else data_dir


def load_pairs(
    data_dir: str | Path,
    scale: int,
    *,
    hr_only: bool = False,
    degradation: DegradationConfig | None = None,
    seed: int = 0,
    hr_pixel_size_um: float | None = None,
) -> list[Pair]:
    """Read every pair (or HR image) of ``data_dir``; LR of HR-only images is synthesised once.

    ``hr_pixel_size_um`` (µm per HR pixel), where given, overrides the HR files' metadata
    (as ``--pixel-size`` does for analysis).

    Raises
    ------
    InputError
        Missing folders or partners, or an LR image whose size is not HR / ``scale``.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise InputError(f"training data folder not found: {data_dir}")
    hr_dir = _hr_dir(data_dir)
    hr_files = list_images(hr_dir)
    if not hr_files:
        raise InputError(f"no HR images in {hr_dir}")
    pairs: list[Pair] = []
    for i, path in enumerate(hr_files):
        hr_mg = read_image(path, pixel_size_um=hr_pixel_size_um)
        hr = hr_mg.image
        if hr_only:
            deg = degradation or DegradationConfig(scale=scale)
            lr = degrade(hr, deg, np.random.default_rng([seed, i, 7]))
            lr_digest = None
        else:
            lr_path = data_dir / "lr" / path.name
            if not lr_path.is_file():
                raise InputError(f"{path.name}: no LR partner {lr_path} (use --hr-only to synthesise LR images)")
            lr_mg = read_image(lr_path)
            lr, lr_digest = lr_mg.image, lr_mg.digest
        h, w = lr.shape[0] * scale, lr.shape[1] * scale
        if hr.shape[0] < h or hr.shape[1] < w or hr.shape[0] >= h + scale or hr.shape[1] >= w + scale:
            raise InputError(
                f"{path.name}: LR {lr.shape[1]}×{lr.shape[0]} is not HR {hr.shape[1]}×{hr.shape[0]} divided by scale {scale}"
            )
        pairs.append(Pair(path.name, np.ascontiguousarray(hr[:h, :w]), lr, hr_mg.pixel_size_um, hr_mg.digest, lr_digest))
    return pairs
