"""A user's annotated micrographs: images with reference instance masks.

Layout: ``DIR/images/<stem>.<tif|png|...>`` and, for each, one annotation in
``DIR/labels/`` with the same stem, in any of three forms:

* a **label image** (TIFF/PNG, integer values, 0 = background, one value per particle);
* a **binary mask** (two values) whose touching particles are separated by one-pixel
  background lines: particles are its 4-connected components (a line drawn with diagonal
  steps separates 4-connected regions but not 8-connected ones);
* **LabelMe JSON** (``<stem>.json``): ``shapes`` of ``shape_type`` ``polygon`` with
  ``points`` as ``[x, y]`` pixel coordinates, each polygon one particle (later shapes drawn
  over earlier ones), rasterised with :func:`skimage.draw.polygon`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import imageio.v3 as iio
import numpy as np
from scipy import ndimage
from skimage.draw import polygon

from semqa.errors import InputError
from semqa.io.images import IMAGE_SUFFIXES, list_images, read_image


@dataclass(frozen=True)
class Annotated:
    """One annotated image: float image in [0, 1], its instance labels, pixel size if known."""

    name: str
    image: np.ndarray
    labels: np.ndarray
    pixel_size_um: float | None


def labelme_labels(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """Rasterise a LabelMe JSON file's polygons into a label image of ``shape``."""
    try:
        doc = json.loads(path.read_text())
        shapes = doc["shapes"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: not a LabelMe JSON file with 'shapes' ({exc})") from None
    labels = np.zeros(shape, dtype=np.int32)
    n = 0
    for s in shapes:
        if s.get("shape_type", "polygon") != "polygon":
            continue
        xy = np.asarray(s.get("points", []), dtype=float)
        if xy.ndim != 2 or xy.shape[0] < 3 or xy.shape[1] != 2:
            raise InputError(f"{path}: polygon {n + 1} needs at least three [x, y] points")
        rr, cc = polygon(xy[:, 1], xy[:, 0], shape)
        n += 1
        labels[rr, cc] = n
    return labels


def mask_labels(array: np.ndarray, name: str) -> np.ndarray:
    """Instance labels from a label image or a binary mask with one-pixel separations."""
    arr = np.asarray(array)
    if arr.ndim == 3:  # an RGB(A) export of a gray label image
        arr = arr[..., 0]
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.integer) and arr.dtype != bool:
        raise InputError(f"{name}: annotation must be a 2-D integer label image or binary mask, got {arr.dtype} {arr.shape}")
    values = np.unique(arr)
    if values.size <= 2 and values[0] == 0:
        return ndimage.label(arr > 0)[0].astype(np.int32)
    if values[0] < 0:
        raise InputError(f"{name}: label images must not hold negative values")
    return arr.astype(np.int32)


def _annotation(stem: str, label_dir: Path) -> Path:
    for p in sorted(label_dir.glob(f"{stem}.*")):
        if p.suffix.lower() in IMAGE_SUFFIXES or p.suffix.lower() == ".json":
            return p
    raise InputError(f"no annotation for image {stem!r} in {label_dir} (a label image, mask or LabelMe {stem}.json)")


def load_annotated(folder: str | Path, *, pixel_size_um: float | None = None) -> list[Annotated]:
    """Every image of ``folder/images`` with its annotation from ``folder/labels``.

    Raises
    ------
    InputError
        Missing folders or annotations, unreadable files, or an annotation whose shape
        differs from its image's.
    """
    folder = Path(folder)
    image_dir, label_dir = folder / "images", folder / "labels"
    for d in (image_dir, label_dir):
        if not d.is_dir():
            raise InputError(f"annotated set {folder} needs the folders images/ and labels/ ({d} missing)")
    out = []
    for path in list_images(image_dir):
        mg = read_image(path, pixel_size_um=pixel_size_um)
        ann = _annotation(path.stem, label_dir)
        if ann.suffix.lower() == ".json":
            labels = labelme_labels(ann, mg.image.shape)
        else:
            try:
                labels = mask_labels(iio.imread(ann), ann.name)
            except OSError as exc:
                raise InputError(f"cannot read annotation {ann}: {exc}") from None
        if labels.shape != mg.image.shape:
            raise InputError(f"annotation {ann.name} has shape {labels.shape}, its image {mg.image.shape}")
        out.append(Annotated(name=mg.name, image=mg.image, labels=labels, pixel_size_um=mg.pixel_size_um))
    if not out:
        raise InputError(f"no images in {image_dir}")
    return out
