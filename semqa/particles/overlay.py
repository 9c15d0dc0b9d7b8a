"""Overlays: what was measured, drawn on the image, for a scientist to check.

One function draws them for the CLI (``--overlays DIR``), the service (``overlays=true``) and
the dashboard: the input frame (enlarged to the analysed pixel grid when super-resolved, with
the super-resolved region pasted in), the analysed region's edge, and each particle's outline,
coloured by what happened to it:

* measured (in the PSD): green;
* cut by the edge of the analysed region (ISO 13322-1 border exclusion): orange;
* below the smallest measurable size (``min_pixels``): magenta;
* analysed region: a yellow rectangle; the data bar or anything else outside it is dimmed.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable

import numpy as np
from PIL import Image
from skimage.segmentation import find_boundaries

from semqa.io.region import AnalysedRegion
from semqa.particles.measure import Particle

#: RGB colours (0–255) of outlines by exclusion reason (None = measured) and of the region.
COLOURS: dict[str | None, tuple[int, int, int]] = {None: (40, 220, 60), "border": (255, 140, 0), "too_small": (230, 0, 230)}
REGION_COLOUR: tuple[int, int, int] = (255, 230, 0)


def draw_overlay(
    frame: np.ndarray,
    analysed: np.ndarray,
    labels: np.ndarray,
    region: AnalysedRegion,
    excluded: Iterable[Particle] = (),
) -> np.ndarray:
    """RGB ``uint8`` overlay of one analysed image.

    Parameters
    ----------
    frame : numpy.ndarray
        The input image, 2-D in [0, 1], as read (data bar included).
    analysed : numpy.ndarray
        The image that was segmented: ``region``'s pixels of ``frame``, super-resolved by an
        integer factor or not.
    labels : numpy.ndarray
        Label image of ``analysed``.
    region : AnalysedRegion
        Where ``analysed`` lies in ``frame`` (input pixels).
    excluded : iterable of Particle
        The image's excluded particles (their ``label`` and ``exclusion``); other labels are
        drawn as measured.
    """
    scale = analysed.shape[0] // region.height
    canvas = np.repeat(np.repeat(np.asarray(frame, dtype=np.float32), scale, axis=0), scale, axis=1)
    y0, x0 = region.y * scale, region.x * scale
    inside = np.zeros(canvas.shape, dtype=bool)
    inside[y0 : y0 + analysed.shape[0], x0 : x0 + analysed.shape[1]] = True
    canvas[inside] = np.asarray(analysed, dtype=np.float32).ravel()
    grey = np.clip(np.where(inside, canvas, 0.35 * canvas) * 255.0, 0, 255).astype(np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    reasons = list(COLOURS)
    code = np.zeros(int(labels.max()) + 1, dtype=np.int8)  # index into reasons, per label
    for p in excluded:
        code[p.label] = reasons.index(p.exclusion)
    edges = find_boundaries(labels, mode="inner")
    rows, cols = np.nonzero(edges)
    edge_code = code[labels[rows, cols]]
    view = rgb[y0 : y0 + analysed.shape[0], x0 : x0 + analysed.shape[1]]
    for i, reason in enumerate(reasons):
        pick = edge_code == i
        view[rows[pick], cols[pick]] = COLOURS[reason]
    # The region's edge, one pixel outside it where there is room, so no particle pixel is hidden.
    top, left = max(y0 - 1, 0), max(x0 - 1, 0)
    bottom, right = min(y0 + analysed.shape[0], rgb.shape[0] - 1), min(x0 + analysed.shape[1], rgb.shape[1] - 1)
    rgb[top, left : right + 1] = rgb[bottom, left : right + 1] = REGION_COLOUR
    rgb[top : bottom + 1, left] = rgb[top : bottom + 1, right] = REGION_COLOUR
    return rgb


def overlay_png(overlay: np.ndarray) -> bytes:
    """PNG bytes of an RGB overlay."""
    buf = io.BytesIO()
    Image.fromarray(overlay).save(buf, format="PNG")
    return buf.getvalue()


def overlay_collector() -> tuple[Callable[..., None], dict[str, bytes]]:
    """A :data:`semqa.analysis.UnitHook` that keeps each image's overlay PNG, and the dict it fills.

    Keys are the hook's (image name, or ``product/lot/name`` in a comparison).
    """
    pngs: dict[str, bytes] = {}

    def collect(key: str, mg, unit, analysed: np.ndarray, labels: np.ndarray) -> None:
        pngs[key] = overlay_png(draw_overlay(mg.image, analysed, labels, unit.summary.roi, unit.excluded))

    return collect, pngs
