"""Turning what the user gave (uploads or server folders) into lots of micrographs.

Bad files do not stop the page: each one becomes a one-line problem shown beside the
lot, and the remaining images of the lot are still analysed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from semqa.analysis import load_lots
from semqa.errors import InputError
from semqa.io.images import Micrograph, list_images, read_image, read_image_bytes


@dataclass
class LotInput:
    """The usable images of one lot and what was wrong with the others.

    ``uploads`` holds the uploaded bytes of each usable micrograph by its digest, so that
    the service path can send the files as the user gave them (files read from a folder
    keep their path instead).
    """

    name: str
    micrographs: list[Micrograph] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    uploads: dict[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class ProductInput:
    """The usable lots of one product and, by digest, the uploaded bytes behind them."""

    lots: dict[str, list[Micrograph]]
    uploads: dict[str, bytes]


def _keep_if_sized(lot: LotInput, mg: Micrograph) -> bool:
    if mg.pixel_size_um is None:
        lot.problems.append(
            f"{mg.name}: pixel size unknown — enter one in the sidebar, or store it in the TIFF metadata"
        )
        return False
    lot.micrographs.append(mg)
    return True


def lot_from_uploads(name: str, files: Iterable[tuple[str, bytes]], pixel_size_um: float | None) -> LotInput:
    """Decode uploaded files ``(file name, bytes)`` of one lot.

    ``pixel_size_um`` overrides the files' metadata when given (the user entered it).
    """
    lot = LotInput(name=name)
    for file_name, data in files:
        try:
            mg = read_image_bytes(data, file_name, pixel_size_um=pixel_size_um)
        except InputError as exc:
            lot.problems.append(str(exc))
            continue
        if _keep_if_sized(lot, mg):
            lot.uploads[mg.digest] = data
    return lot


def lot_from_paths(name: str, paths: Iterable[Path], pixel_size_um: float | None) -> LotInput:
    """Read the image files of one lot folder (pixel size from argument, metadata or sidecar)."""
    lot = LotInput(name=name)
    for path in paths:
        try:
            mg = read_image(path, pixel_size_um=pixel_size_um)
        except InputError as exc:
            lot.problems.append(str(exc))
            continue
        _keep_if_sized(lot, mg)
    return lot


def product_folders(root: Path | None, max_depth: int = 3) -> list[str]:
    """Folders under ``root`` laid out as ``<product>/<lot>/<images>``, as paths relative to ``root``.

    Products may sit below ``root`` at any depth up to ``max_depth`` (e.g. ``rld/lr`` as
    :func:`semqa.synth.scenes.make_lots` writes them); hidden folders are skipped.
    """
    if root is None or not root.is_dir():
        return []
    found: list[str] = []

    def visit(folder: Path, depth: int) -> None:
        children = sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
        if folder != root and any(list_images(d) for d in children):
            found.append(folder.relative_to(root).as_posix())
        if depth < max_depth:
            for d in children:
                visit(d, depth + 1)

    visit(root, 0)
    return found


def lots_from_folder(folder: Path, pixel_size_um: float | None) -> list[LotInput]:
    """Every lot of a product folder, read with :func:`semqa.analysis.load_lots`' layout."""
    return [lot_from_paths(lot, paths, pixel_size_um) for lot, paths in load_lots(folder).items()]
