"""Opening the substrate enclosed inside a cluster of particles before it is split.

A cluster of touching particles often encloses patches of substrate (holes between three or
more particles), and the detection's mask holds them: the denoising blur bridges narrow ones
and hole filling (meant for edge-brightened rims around a dimmer interior) closes the rest.
A filled hole joins its neighbours into one solid blob whose distance map has no neck between
them, so the distance-map split cannot separate them.

A patch of the mask is opened (made background again) only on evidence, judged with the
frame's noise model in the stabilised frame (unit noise sd, particles positive):

1. **Candidates**: the connected patches of mask pixels that, at the probe's scale (a Gaussian
   of 1 px, the least blur that keeps single-pixel noise from fragmenting them), lie below the
   half level between their cluster's substrate (median of a ring around the cluster) and its
   particles (median of the cluster's pixels) — the half-maximum edge criterion the detection
   uses for every boundary — and do not touch the cluster's outline (enclosed: an outline pixel
   below the half level is the blurred edge itself, which the detection has already placed).
2. **Test**: the mean of the unsmoothed stabilised frame over the patch's N pixels must lie
   below that half level by ``z`` sds of such a mean (``σ · inflation / sqrt(N)``: the noise
   model's stabilised sd and its correlation inflation of sums, :mod:`semqa.particles.noise`),
   ``z`` set by the frame's false-detection budget over all the patches tested
   (:func:`semqa.particles.contacts.line_threshold`, a Bonferroni budget as the detection's).
   The patch's core (pixels beyond twice the edge blur's sigma from its outline) must also not be
   significantly above the substrate level (same ``z``): a rim particle's dim interior is
   particle material, above the substrate, even where it is below the half level of a cluster
   whose median is its rim.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from semqa.particles.contacts import line_threshold
from semqa.particles.primitives import (
    label_counts_means,
    label_median,
    max_filter_square,
    narrow_labels,
)
from semqa.sr.degradation import edge_blur_sigma_px

# Smoothing of the candidate map, px: the probe's scale (a scan's probe is about a pixel wide).
_CANDIDATE_SIGMA_PX = 1.0


def _patch_cores(patches: np.ndarray, selected: np.ndarray, depth_px: float) -> np.ndarray:
    """Pixels of the ``selected`` patches (a boolean per label of ``patches``, 4-connected labels)
    farther than ``depth_px`` from every pixel outside the patches: ``(distance_transform_edt(patches > 0)
    > depth_px) & selected[patches]``.

    Each selected patch is measured in its box grown by a pixel (clipped to the frame), not the
    whole frame: a patch pixel's nearest pixel outside its patch lies outside every patch (were
    it in another patch, its 4-neighbour one step nearer would be in this one, joining the two),
    so the crop's distance map equals the frame's there.
    """
    core = np.zeros(patches.shape, dtype=bool)
    for i, box in enumerate(ndimage.find_objects(patches), start=1):
        if box is None or not selected[i]:
            continue
        grown = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in box)
        own = patches[grown] == i
        core[grown] |= own & (ndimage.distance_transform_edt(own) > depth_px)
    return core


def open_substrate_holes(
    mask: np.ndarray, z: np.ndarray, sum_sd: float, false_detections: float, gap_px: int, probe_fwhm_px: float
) -> np.ndarray:
    """``mask`` with the enclosed patches significantly below its clusters' half level removed.

    Parameters
    ----------
    mask : numpy.ndarray
        Boolean particle mask (holes filled).
    z : numpy.ndarray
        Stabilised frame, particles positive (unit noise sd).
    sum_sd : float
        Null sd of a sum of N stabilised pixels over sqrt(N) (stabilised sd times the noise
        model's sum inflation).
    false_detections : float
        Expected number of patches opened in a frame without enclosed substrate.
    gap_px : int
        Distance from the mask at which the substrate ring starts (the blur's reach), px.
    probe_fwhm_px : float
        FWHM of the scan's probe, px: with the candidate smoothing it sets how far inside a
        patch its level is free of the surrounding particles' blurred edges.

    Returns
    -------
    numpy.ndarray
        A new boolean mask (``mask`` itself when nothing is opened).
    """
    clusters, n = ndimage.label(mask, structure=np.ones((3, 3)))
    if n == 0:
        return mask
    clusters = narrow_labels(clusters, n)
    # Substrate ring: pixels between gap_px and 2·gap_px + 2 from the mask, given to the
    # nearest (highest) cluster label within reach.
    reach = 2 * (2 * gap_px + 2) + 1
    ring = np.where(max_filter_square(mask, 2 * gap_px + 1), 0, max_filter_square(clusters, reach))
    substrate = label_median(z, ring)
    particle = label_median(z, clusters)
    if substrate.size < n:
        substrate = np.concatenate([substrate, np.full(n - substrate.size, np.nan)])
    half = np.concatenate([[np.inf], 0.5 * (substrate + particle)])  # NaN (no ring): never below
    smooth = ndimage.gaussian_filter(z, _CANDIDATE_SIGMA_PX)
    below = mask & (smooth < half[clusters])
    patches, n_patches = ndimage.label(below)
    if n_patches == 0:
        return mask
    # Enclosed: no patch pixel is 8-adjacent to the background.
    outline = below & max_filter_square(~mask, 3)
    enclosed = np.ones(n_patches + 1, dtype=bool)
    enclosed[np.unique(patches[outline])] = False
    enclosed[0] = False
    ids = patches[below]
    counts, means = label_counts_means(z[below], ids, n_patches)
    level = np.zeros(n_patches + 1)
    np.maximum.at(level, ids, half[clusters[below]])  # one cluster per patch (patches lie in the mask)
    # Core: patch pixels beyond the reach of the edge blur (2 sigma of the probe and the candidate
    # smoothing combined), where a patch of substrate reads the substrate level itself.
    edge_sigma = edge_blur_sigma_px(probe_fwhm_px, _CANDIDATE_SIGMA_PX)
    core = _patch_cores(patches, enclosed, 2.0 * edge_sigma)  # only enclosed patches are tested
    core_ids = patches[core]
    core_counts, core_means = label_counts_means(z[core], core_ids, n_patches)
    ground = np.zeros(n_patches + 1)
    np.maximum.at(ground, ids, np.concatenate([[0.0], substrate])[clusters[below]])
    tested = enclosed & (core_counts > 0)
    z_min = line_threshold(int(tested.sum()), false_detections)
    below_half = (level - means) * np.sqrt(np.maximum(counts, 1.0)) / sum_sd > z_min
    # Not significantly above the substrate: a dim particle interior (material) is.
    above_ground = (core_means - ground) * np.sqrt(np.maximum(core_counts, 1.0)) / sum_sd > z_min
    opened = tested & below_half & ~above_ground
    if not opened.any():
        return mask
    return mask & ~opened[patches]
