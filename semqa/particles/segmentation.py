"""Particle segmentation of SEM micrographs: bright particles (SE, BSE) or dark ones (a bright substrate).

SE images show particles brighter than a darker substrate, often with bright rims (the edge
effect), a smooth uneven background, and Poisson shot noise (Reimer, *Scanning Electron
Microscopy*, 2nd ed., Springer 1998, ch. 4). :func:`detect` works in the steps below, each
sized from the typical particle diameter in pixels (given, or estimated from the image),
so one configuration serves high-resolution, low-resolution and super-resolved frames:

0. **Test** where the frame holds particles (:mod:`semqa.particles.detection`): its noise
   model is fitted and the frame variance-stabilised (:mod:`semqa.particles.noise`); a
   scale-space significance test with a false-detection budget per frame gives seed pixels
   and the particles' polarity. A dark-particle frame is mirrored about its median (the
   substrate level) so that every later step sees bright particles.
1. **Look** at a 2 × 2 block mean (smoothed as the noise demands): Otsu's threshold gives a
   first mask whose seeded components' area-weighted median ECD is the particle diameter
   every later length is scaled by (unless given). On agglomerates that is the clusters'
   size; the particles' own (:func:`semqa.particles.scale.particle_scale`, which the learned
   segmenter resamples by) was tried here and helped some agglomerate families while hurting
   others (README, "the particle scale"), so this pipeline keeps the component ECD.
2. **Denoise** with a Gaussian whose sigma is a small fraction of the particle diameter, or,
   in a noisy frame, large enough that the particles' contrast is ``contrast_to_noise`` noise
   sds (at most a tenth of the diameter; a symmetric blur leaves the 50 % point of an edge in place).
3. **Flatten** the background: SE illumination and charging act multiplicatively, so the
   image is divided by a smooth substrate estimate, a normalized convolution (Knutsson &
   Westin, CVPR 1993) of the substrate pixels with a Gaussian several particle diameters
   wide, computed on a coarse grid.
4. **Detect** particles with Otsu's threshold (Otsu, IEEE SMC 1979) of the flattened image,
   then **locate each boundary** by a local half-maximum rule: a pixel belongs to a particle
   when it is above the level halfway between the particle's local substrate (median of a
   ring around it) and the particle's level just inside its edge, read at the nearest particle
   pixel two edge-blur sigmas deep (past the blurred transition, and not farther in, where a
   shaded particle is brighter than at its dim edge), or, in a frame whose particles are
   significantly brighter there than farther in (SE rims), the highest particle pixel within
   the blur width: the 50 % edge criterion of metrology. A global threshold sits closer to the substrate than to the
   rims and puts every boundary outside the true edge by a fraction of the blur width (a
   bias of several per cent of the ECD of a 30-pixel particle). A component is kept on the
   evidence of all its pixels: it must hold a seed of step 0, and its summed contrast over
   its N pixels must exceed ``k·σ·sqrt(N)`` in the stabilised frame (σ the null sd of sums,
   which counts correlated noise), so a frame of pure noise has no particles while a faint
   particle of many pixels is kept.
5. **Fill holes**: bright rims around a darker interior make particles look like rings.
   Then **open the substrate inside clusters** (:mod:`semqa.particles.holes`): an enclosed patch
   whose mean, at the probe's scale, lies significantly below the half level between its
   cluster's substrate and its particles (the frame's noise model and false-detection budget)
   is substrate between particles, which the blur or the filling closed, and is background again.
6. **Split touching particles** with a marker-controlled watershed of the distance
   transform (Beucher & Meyer 1993), per connected component: markers are the regional
   maxima of the distance map, merged in a merge tree (the dynamics of h-maxima) unless the
   saddle between two groups lies below ``neck_ratio`` of the smaller group's inscribed radius
   and at least ``neck_depth_min_px`` below it: a relative depth, so a neck split does not
   depend on the particle size in pixels, and a convex object (concave distance map, one
   maximum) stays whole. Cuts that survive are merged back where the concavities ("notches")
   at their ends are shallow compared with the smaller part's inscribed radius: two touching
   particles meet in notches as deep as their radii; an elongated, bent or faceted particle has none.
   A small component with more than one maximum (its inscribed radius such that the neck the
   ratio demands is within two quantisation sds) is split on a grid ``split_subpixel`` times finer
   (:func:`_subpixel_outline`): a small particle's distance map on the pixel grid takes a few
   quantised values (3, 3.16, 3.61, 4 px), of the order of the neck depths to be told apart.
7. **Cut at contact edges** (:mod:`semqa.particles.contacts`): overlapping particles have no
   distance-map maximum of their own, but their contact line is an intensity edge (an
   edge-brightened outline, or a step between two yields). Each part is cut along the ridges of
   the gradient magnitude (stabilised frame, at the denoising scale) between seeds of calm pixels,
   where a line's mean ridge is significant against the gradient noise measured on the substrate,
   or, in a part whose interior is rougher than the substrate (its own texture), against the
   lines of phase-randomised surrogates of that interior (the watershed's max-path selection included),
   the lines of the whole frame judged together (Benjamini–Hochberg at ``false_detections``); a cut must end in notches
   deeper than the digitisation scatter (``2 · neck_depth_min_px``), so an edge across one convex
   particle (shading, a facet) is no contact.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy import ndimage

from semqa.errors import InputError
from semqa.particles.limits import (
    MAX_BACKGROUND_REL,
    MAX_DENOISE_PX,
    MAX_DENOISE_REL,
    MAX_MERGE_RATIO,
    MAX_PARTICLE_AREA_PX,
    MAX_PARTICLE_DIAMETER_PX,
    MAX_SNR,
    MAX_WINDOW_REL,
)
from semqa.particles.completeness import DetectionLimit, detection_limit, particle_contrast
from semqa.particles.contacts import contact_candidates, edge_z, line_threshold, gradient_noise_sd, line_threshold_fdr, ridge_long_run_variance
from semqa.particles.detection import dog_responses, null_sum_inflation, significance_from
from semqa.particles.holes import open_substrate_holes
from semqa.particles.measure import border_labels, outline_hull
from semqa.particles.primitives import LabelSets, block_mean, dilate_cross, flood, label_max, label_median, max_filter_square, median, narrow_labels, otsu_mask, upsample_linear
from semqa.particles.noise import NoiseModel, fit_noise_model, stabilize
from semqa.particles.look import particle_mask
from semqa.particles.scale import particle_scale
from semqa.particles.shading import Shading, frame_shading, merge_ridges
from semqa.sr.degradation import edge_blur_sigma_px


class SegmentationConfig(BaseModel):
    """Parameters of :func:`segment`; lengths relative to the particle diameter scale with it.

    The geometric defaults (fractions of the particle diameter) were set on :mod:`semqa.synth.scenes`
    scenes (HR 0.1 µm/px with D50 = 30 px and their 4× coarser LR scans); the detection defaults
    (``false_detections``, ``contrast_to_noise``) follow from the noise statistics, and all are
    checked on the independent :mod:`semqa.synth.families` scenes (``benchmarks/bench_detection.py``).
    Every field has an upper bound where larger values stop meaning anything physically
    (derived in :mod:`semqa.particles.limits`), so no configuration makes the work unbounded.
    """

    model_config = ConfigDict(extra="forbid")

    particle_diameter_px: float | None = Field(
        None,
        gt=0,
        le=MAX_PARTICLE_DIAMETER_PX,
        description="typical particle ECD in pixels; None estimates it from the image "
        "(area-weighted median ECD of a first Otsu segmentation)",
    )
    denoise_sigma_rel: float = Field(
        0.02, ge=0, le=MAX_DENOISE_REL, description="Gaussian denoising sigma as a fraction of the particle diameter"
    )
    denoise_sigma_min_px: float = Field(0.5, ge=0, le=MAX_DENOISE_PX, description="lower bound of the denoising sigma, px")
    denoise_sigma_max_px: float = Field(
        2.0, ge=0, le=MAX_DENOISE_PX,
        description="upper bound of the scale rule's denoising sigma, px (the noise rule may go up to 0.1 diameters)",
    )
    background_sigma_rel: float = Field(
        4.0, gt=0, le=MAX_BACKGROUND_REL, description="sigma of the background estimate, in particle diameters"
    )
    edge_level: float = Field(
        0.5,
        gt=0,
        lt=1,
        description="where each boundary is placed between the local substrate (0) and the particle's "
        "bright level (1); 0.5 is the half-maximum edge criterion",
    )
    bright_window_rel: float = Field(
        0.15,
        gt=0,
        le=MAX_WINDOW_REL,
        description="largest half-width of the blurred edge zone (where a boundary is looked for outside a "
        "particle, and its core kept inside), in particle diameters (the blur width, from probe_fwhm_px and "
        "the denoising, sets it where that is smaller)",
    )
    probe_fwhm_px: float = Field(
        1.0,
        gt=0,
        le=MAX_DENOISE_PX,
        description="FWHM of the scan's probe in pixels: a scan is set up with a probe about as wide as its "
        "pixel (a smaller one only aliases; semqa.sr.degradation). With the denoising it sets the edge blur, "
        "hence how far inside a boundary the particle's own level is read (see _edge_sigma_px)",
    )
    ring_px_rel: float = Field(
        0.25, gt=0, le=MAX_WINDOW_REL, description="width of the ring sampled for the local substrate level, in particle diameters"
    )
    false_detections: float = Field(
        0.05,
        gt=0,
        lt=1,
        description="expected number of particles detected in a frame of noise alone: the false-detection "
        "budget of the significance test (semqa.particles.detection)",
    )
    contrast_to_noise: float = Field(
        8.0,
        gt=0,
        le=MAX_SNR,
        description="least ratio of the particles' contrast to the noise sd after denoising; the denoising "
        "sigma grows (up to denoise_sigma_max_px and a tenth of the particle diameter) until it is met",
    )
    fill_holes: bool = Field(True, description="fill enclosed holes (rims make particles look like rings)")
    min_object_px: int = Field(
        4, ge=1, le=MAX_PARTICLE_AREA_PX, description="connected components smaller than this many pixels are noise and dropped"
    )
    split_touching: bool = Field(True, description="split touching particles by watershed")
    neck_ratio: float = Field(
        0.9,
        gt=0,
        lt=1,
        description="two parts of a component are separate particles when the neck between them (the "
        "saddle of the distance map, its half-width) is narrower than this fraction of the smaller part's "
        "inscribed radius; scale-free (a relative h-maxima depth)",
    )
    neck_depth_min_px: float = Field(
        0.5,
        ge=0,
        le=MAX_DENOISE_PX,
        description="least depth of a neck below the smaller part's inscribed radius, px: a digitised outline "
        "places each boundary within half a pixel, so a saddle and a peak of the distance map differ by chance "
        "by up to about that much (the difference of two uniform quantisations has sd sqrt(2/12) = 0.41 px)",
    )
    contact_k: float | None = Field(
        3.0,
        gt=0,
        le=MAX_SNR,
        description="cut parts at the intensity edges of contact lines (semqa.particles.contacts: overlapping "
        "particles have no distance-map maximum of their own): a pixel is a seed (calm) when its gradient is "
        "less than this many gradient-noise sds above its part's median (3: a 0.1 % one-sided tail per pixel); "
        "lines are then kept against the false_detections budget. None splits by the distance map only",
    )
    edge_level_at_depth: bool = Field(
        True,
        description="read a particle's level at its edge two edge-blur sigmas deep (probe and denoising) unless "
        "the frame is edge-brightened; off: the highest particle pixel within the blur width. semqa.analysis turns "
        "it off for upscaled (super-resolved or interpolated) images, whose edge blur is the generator's or the "
        "interpolation's, not the probe's: at the probe's depth the level lies on the blurred slope and the "
        "boundary moves out (the demo's SR lot 1: D50 error +3.9 % with the window maximum, +6.8 % at the depth)",
    )
    contact_cuts_upscaled: bool = Field(
        False,
        description="run the contact cuts on upscaled (super-resolved or interpolated) images too. Off: the cuts' "
        "null distribution is the substrate's gradient noise standing for the noise inside particles, which holds "
        "for a scan's white shot noise but not for a generator's output (substrate denoised, texture inside "
        "particles synthesized), so their false-cut rate is not controlled there; an upscaled image is split by "
        "the distance map only. Measured on the demo's gate set: SR particles matched by HR 69 % with the cuts, "
        "100 % without",
    )
    open_holes: bool = Field(
        True,
        description="before splitting, open the enclosed patches of a cluster's mask that lie significantly "
        "below the half level between its substrate and its particles (semqa.particles.holes): substrate "
        "between particles, closed by the blur or the hole filling",
    )
    split_subpixel: int = Field(
        2,
        ge=1,
        le=8,
        description="grid refinement of the distance-map split of small components ((1 - neck_ratio) x inscribed "
        "radius < 2 neck_depth_min_px, where the pixel grid's quantisation matters): each pixel side in this many steps, the "
        "component's outline the iso-line of the bilinearly interpolated denoised image enclosing the pixel "
        "mask's area, so the measured pixels stay those of the mask; neck_depth_min_px applies in steps of this "
        "grid (its quantisation scales with the step). 1: the pixel mask itself",
    )
    tilt_shading: bool = Field(
        True,
        description="where the frame is lit from one side (an SE frame from a side-mounted detector: semqa.particles.shading "
        "finds a common direction on the particles' outlines), attach the particles' faces turned away from it, dimmer than "
        "half their level, and merge back cuts along ridges (a facet edge, whose sides step up along the direction, is no "
        "contact). Off, or in frames without such a direction (BSE, in-lens SE, rim-lit particles): neither",
    )
    merge_notch_ratio: float = Field(
        0.3,
        gt=0,
        le=MAX_MERGE_RATIO,
        description="neighbouring watershed regions are merged back when the concavities at the ends of "
        "the cut between them are shallower than this fraction of the smaller region's inscribed radius",
    )


#: Level, between a particle's substrate (0) and its median (1), above which attached dim faces
#: are looked for (:func:`_attach_dim_faces`): nearer the half level than the substrate.
_DIM_FACE_LEVEL = 0.25


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 2:
        raise InputError(f"segment needs a 2-D grayscale image, got an array of shape {image.shape}")
    if min(image.shape) < 3:
        raise InputError(f"image of shape {image.shape} is too small to segment (at least 3 × 3 pixels)")
    if image.dtype == bool or not (np.issubdtype(image.dtype, np.floating) or np.issubdtype(image.dtype, np.integer)):
        raise InputError(f"segment needs a real-valued image, got dtype {image.dtype}")
    image = image.astype(np.float32, copy=False)
    if not np.isfinite(image).all():
        raise InputError("image holds NaN or infinite values")
    return image


def _ecd_scale(mask: np.ndarray) -> float | None:
    """Area-weighted median ECD (px) of the connected components of ``mask``, None if none."""
    lab, n = ndimage.label(mask)
    if n == 0:
        return None
    areas = np.sort(np.bincount(lab.ravel())[1:].astype(float))
    areas = areas[areas >= 4]
    if areas.size == 0:
        return None
    cum = np.cumsum(areas)
    median_area = areas[np.searchsorted(cum, 0.5 * cum[-1])]
    return math.sqrt(4.0 * median_area / math.pi)


def _background(image: np.ndarray, substrate: np.ndarray, sigma_px: float, shape: tuple[int, int]) -> np.ndarray:
    """Smooth substrate level by normalized convolution on a grid ``sigma/4`` coarser.

    ``image`` and ``substrate`` may be on a coarser grid than the result; ``sigma_px`` is in
    their pixels and the estimate is interpolated (bilinear) to ``shape``.
    """
    factor = max(1, int(sigma_px // 4))
    if min(image.shape) // factor < 1:
        factor = 1
    weight = substrate.astype(np.float32)
    img_s = block_mean(image * weight, factor)
    w_s = block_mean(weight, factor)
    # Under mode="reflect" the filtered grid is periodic with period 2L (L its longer side);
    # a Gaussian of sigma ≥ 2L passes its lowest non-constant component with gain
    # exp(-2π²σ²/(2L)²) ≤ exp(-2π²) ≈ 3e-9: it is the (weighted) mean. Capping sigma there
    # changes nothing measurable and keeps the kernel, hence the work, bounded by the image.
    s = min(sigma_px / factor, 2.0 * max(img_s.shape))
    num = ndimage.gaussian_filter(img_s, s, mode="reflect")
    den = ndimage.gaussian_filter(w_s, s, mode="reflect")
    fallback = float(np.median(image[substrate])) if substrate.any() else float(np.median(image))
    bg_s = np.where(den > 1e-3, num / np.maximum(den, 1e-3), fallback)
    bg = upsample_linear(bg_s.astype(np.float32), shape)
    return np.maximum(bg, np.float32(max(1e-6, 1e-3 * abs(fallback))), out=bg)


@dataclass(frozen=True)
class _Evidence:
    """What a component must show to be a particle: a significant seed pixel
    (:func:`semqa.particles.detection.significance`) and a significant sum over its own pixels.

    ``z`` is the stabilised frame with particles positive, ``seed_bits`` the DoG scales at which
    each pixel is significant (bit j: ``2**j`` px), ``sum_sd`` the null sd of a sum of N of its pixels over sqrt(N),
    ``k`` the threshold in those units.
    """

    z: np.ndarray
    seeds: np.ndarray
    seed_bits: np.ndarray
    sum_sd: float
    k: float


def _significant(lab: np.ndarray, n: int, ring: np.ndarray, evidence: _Evidence) -> np.ndarray:
    """Components 1…n holding a seed of their own size whose summed contrast over their local
    substrate (median of their ring, in the stabilised frame) exceeds ``k · sum_sd · sqrt(N)``
    over their N pixels.

    A seed is the component's own when the blob its response was matched to fits it: the DoG
    of centre scale s responds most to blobs of area about 2πs², and scales are a factor 2
    apart (areas 4), so a pixel counts when it is significant at a scale with ``2πs² ≤ 4N``. A speck beside a large particle lies
    in that particle's large-scale response, not in a small-scale one of its own: the speck was
    selected by a threshold, so its own sum alone would overstate its evidence.
    """
    sel = lab > 0
    ids = lab[sel]
    counts = np.bincount(ids, minlength=n + 1)[1:].astype(float)
    # Scales 2**j with 2π·4^j ≤ 4N, i.e. j ≤ log4(2N/π): the bits of a component's own scales.
    top = np.floor(np.log(np.maximum(2.0 * counts / math.pi, 1.0)) / math.log(4.0)).astype(np.int64)
    allowed = ((np.int64(1) << (np.minimum(top, 15) + 1)) - 1).astype(np.uint16)
    own = (evidence.seed_bits[sel] & np.concatenate([[np.uint16(0)], allowed])[ids]) > 0
    seeded = np.bincount(ids, weights=own, minlength=n + 1)[1:] > 0
    total = np.bincount(ids, weights=evidence.z[sel], minlength=n + 1)[1:]
    substrate = label_median(evidence.z, ring)
    if substrate.size < n:
        substrate = np.concatenate([substrate, np.full(n - substrate.size, np.nan)])
    outside = evidence.z[::4, ::4][lab[::4, ::4] == 0]
    substrate = np.where(np.isfinite(substrate), substrate, float(np.median(outside)) if outside.size else 0.0)
    contrast_sum = total - counts * substrate
    return seeded & (contrast_sum >= evidence.k * evidence.sum_sd * np.sqrt(np.maximum(counts, 1.0)))


def _local_threshold_mask(
    flat: np.ndarray,
    mask: np.ndarray,
    gap_px: int,
    ring_px: float,
    bright_px: int,
    level_depth_px: float,
    evidence: _Evidence,
    config: SegmentationConfig,
) -> np.ndarray:
    """Re-threshold every particle at the half level between its substrate and its nearby rim.

    The substrate level is the median of a ring around each connected component; the particle
    level is its level just inside its nearest edge, ``level_depth_px`` deep (:func:`_edge_level_map`), so
    each stretch of boundary is placed by its own side (shading, and touching particles of
    different brightness).

    Components without significant evidence (:class:`_Evidence`) are noise, not particles,
    and are dropped (an image of pure noise gives none).
    """
    reach = 2 * int(math.ceil(gap_px + ring_px)) + 1
    lab, n, zone, ring = _zones(mask, reach, gap_px)
    if n == 0:
        return mask
    substrate = label_median(flat, ring)
    if substrate.size < n:
        substrate = np.concatenate([substrate, np.full(n - substrate.size, np.nan)])
    # A component without a ring of its own (crowded) takes the field's substrate level,
    # the median of a 4 × 4 subsample of the pixels outside every zone.
    outside = flat[::4, ::4][zone[::4, ::4] == 0]
    field = float(np.median(outside)) if outside.size else float(np.median(flat[~mask]))
    substrate = np.where(np.isfinite(substrate), substrate, field)
    real = _significant(lab, n, ring, evidence)
    edge_map = _edge_level_map(flat, mask, lab, level_depth_px if config.edge_level_at_depth else None, bright_px, evidence, config.false_detections)
    candidates = np.flatnonzero((np.concatenate([[False], real])[zone] & np.isfinite(edge_map)).ravel())
    sub = np.concatenate([[np.nan], substrate]).astype(np.float32)[zone.ravel()[candidates]]
    values = flat.ravel()[candidates]
    level = sub + np.float32(config.edge_level) * (edge_map.ravel()[candidates] - sub)
    refined = np.zeros(flat.size, dtype=bool)
    refined[candidates[values > level]] = True
    # The rule places boundaries; the core of a detected particle (farther than bright_px
    # from its first boundary) stays in, even where a dim interior is below its rims' half level.
    core = ~max_filter_square(~mask, 2 * bright_px + 1) & np.concatenate([[False], real])[lab]
    out = refined.reshape(flat.shape) | core
    # The evidence is judged on the pieces the rule leaves: ring pixels that noise lifts above
    # the half level, apart from the particle, were never tested and are no particle.
    pieces, n_pieces, _, ring = _zones(out, reach, gap_px)
    if n_pieces == 0:
        return out
    return np.concatenate([[False], _significant(pieces, n_pieces, ring, evidence)])[pieces]


def _attach_dim_faces(flat: np.ndarray, mask: np.ndarray, gap_px: int, ring_px: float, edge_sigma_px: float) -> np.ndarray:
    """``mask`` with the dim faces of its particles attached, in a frame lit from one side.

    A face turned away from the detector can be dimmer than half its particle's level and so
    falls outside the half-level mask, which then holds the bright faces only (and the rim along
    the dim face's outline, in pieces), although the dim face is particle material, brighter than
    the substrate. Attached here: each connected piece of a particle's zone (:func:`_zones`) above
    its quarter level (a quarter of the way from its ring's substrate level to its median: nearer
    the particle's half level than the substrate) that is

    * thicker than the edge blur (deepest pixel more than ``2 · edge_sigma_px + 1`` px inside the
      piece): the blurred halo around a particle and the bridge between two close ones at that
      level are narrower;
    * next to a particle and no larger than the largest particle it touches: a face of it, not
      the substrate between small particles.

    The caller re-places every boundary on the grown mask (:func:`_local_threshold_mask`), each
    by the level of its own side, so an attached face keeps its own edge with the substrate.
    """
    reach = 2 * int(math.ceil(gap_px + ring_px)) + 1
    lab, n, zone, ring = _zones(mask, reach, gap_px)
    if n == 0:
        return mask
    substrate = label_median(flat, ring)
    level = label_median(flat, lab)
    if substrate.size < n:
        substrate = np.concatenate([substrate, np.full(n - substrate.size, np.nan)])
    quarter = np.concatenate([[np.inf], substrate + _DIM_FACE_LEVEL * (level - substrate)])
    quarter = np.where(np.isfinite(quarter), quarter, np.inf).astype(np.float32)  # no ring: nothing attached
    low = (zone > 0) & (flat > quarter[zone]) & ~mask
    pieces, n_pieces = ndimage.label(low)
    if n_pieces == 0:
        return mask
    depth = ndimage.distance_transform_edt(low)
    thick = label_max(depth[low], pieces[low], n_pieces) > 2.0 * edge_sigma_px + 1.0
    near = max_filter_square(mask, 3) & low
    host = np.zeros(n_pieces + 1)
    np.maximum.at(host, pieces[near], np.bincount(lab.ravel(), minlength=n + 1)[max_filter_square(lab, 3)[near]])
    area = np.bincount(pieces.ravel(), minlength=n_pieces + 1)
    keep = thick & (host > 0) & (area <= host)
    keep[0] = False
    return mask | keep[pieces] if keep.any() else mask


def _zones(mask: np.ndarray, reach: int, gap_px: int) -> tuple[np.ndarray, int, np.ndarray, np.ndarray]:
    """``(labels, n, zone, ring)`` of the components of ``mask``.

    Zone of each particle: the particle and the background within a square of side ``reach``
    around it (a separable maximum filter; between two particles closer than that, the higher
    label takes the shared background pixels). Ring: the zone's background farther than
    ``gap_px`` from every particle.
    """
    lab, n = ndimage.label(mask)
    if n == 0:
        return lab, 0, lab, lab
    lab = narrow_labels(lab, n)
    zone = np.where(lab > 0, lab, max_filter_square(lab, reach))
    ring = np.where(max_filter_square(mask, 2 * gap_px + 1), 0, zone)
    return lab, n, zone, ring


def _edge_level_map(
    flat: np.ndarray, mask: np.ndarray, lab: np.ndarray, depth_px: float | None, reach_px: int, evidence: _Evidence, alpha: float
) -> np.ndarray:
    """Per pixel, the particle's level at the nearest edge, −inf farther than ``reach_px``
    (:func:`_edge_reach_px`) from every particle. ``lab`` labels the components of ``mask``.

    Where the particles are not edge-brightened (:func:`_edge_brightened`: flat BSE contrast,
    dome or tilt shading, dark particles), the level is the value of the nearest mask pixel
    ``depth_px`` deep (:func:`_edge_sigma_px`: past the edge's blur), or of its component's
    deepest pixels where the component is thinner. One pixel at a fixed depth, not the maximum of
    a window: on a shaded particle the window's maximum lies farther in (its corners reach 1.4×
    deeper, and along a dim side it reaches the brighter flanks), and the maximum of m noisy
    pixels sits about sqrt(2 ln m) noise sds above their level; both raised the dim sides' level
    and cut them (seed 13, dome 12 px at 300 e⁻/px: matched particles' ECD 0.949 of the truth with
    the window maximum, 0.977 at the depth; bse 8 px 0.955 → 0.990). The pixel's own noise is
    bounded by the denoising (``contrast_to_noise``), and it moves the level both ways.

    Where they are edge-brightened (SE rims: a line of excess yield along the edge), the level
    is the highest mask pixel within ``reach_px``: the blur spreads the rim's excess outwards
    as well as in, so half its blurred height lies outside the edge, and the rim's height
    before the blur is nearer the window's maximum (seed 11–13 LR scans of
    :mod:`semqa.synth.scenes`, D50 7.5 px: matched ECD 1.011 of the truth with it, 1.044 at the depth).
    """
    def window_max() -> np.ndarray:
        return ndimage.maximum_filter(np.where(mask, flat, np.float32(-np.inf)), size=2 * reach_px + 1)

    if depth_px is None:  # SegmentationConfig.edge_level_at_depth off: the edge blur is not known
        return window_max()
    depth = ndimage.distance_transform_edt(mask)
    deepest = label_max(depth[mask], lab[mask], int(lab.max()))  # each component's deepest pixel
    # The distance map counts to the nearest outside pixel centre, half a pixel beyond the outline.
    target = np.minimum(depth_px + 0.5, deepest)[lab]
    band = mask & (depth >= target) & (depth < target + 1.0)
    if not band.any():
        return np.full(flat.shape, -np.inf, dtype=np.float32)
    if _edge_brightened(band, mask & (depth >= target + 1.0) & (depth < target + 2.0), evidence, alpha):
        return window_max()
    _, nearest = ndimage.distance_transform_edt(~band, return_indices=True)
    level = flat[nearest[0], nearest[1]].astype(np.float32, copy=False)
    level[~max_filter_square(mask, 2 * reach_px + 1)] = -np.inf
    return level


def _edge_brightened(band: np.ndarray, interior: np.ndarray, evidence: _Evidence, alpha: float) -> bool:
    """Whether the frame's particles are brighter just inside their edges (``band``) than farther
    in (``interior``): the SE edge effect (Reimer, *Scanning Electron Microscopy*, 2nd ed., 1998,
    § 4.2.3), a property of the detector and the material, so judged on the whole frame.

    One-sided test of the difference of the two means in the stabilised frame, whose sums of N
    pixels have null sd ``sum_sd · sqrt(N)``, at level ``alpha`` (the frame's false-detection
    budget). A frame without interior pixels (every particle thinner than twice the depth) is
    not judged edge-brightened.
    """
    nb, ni = int(np.count_nonzero(band)), int(np.count_nonzero(interior))
    if nb == 0 or ni == 0:
        return False
    difference = float(evidence.z[band].mean() - evidence.z[interior].mean())
    se = evidence.sum_sd * math.sqrt(1.0 / nb + 1.0 / ni)
    return difference > NormalDist().inv_cdf(1.0 - alpha) * se


def _notch_depth(regions: np.ndarray, boxes: list, a: int, b: int, dist: np.ndarray, enough: float) -> float:
    """Depth of the concavities at the ends of the cut between regions ``a`` and ``b``, px,
    or a lower bound of it once that bound reaches ``enough``.

    For every pixel of ``a`` next to ``b``, the distance to the border of the union's convex
    hull minus the distance to the border of the union itself. A cut through a particle's
    body ends on its convex outline (depth ≈ 0); a cut between two touching particles ends in
    the notches where their outlines meet (depth of the order of the smaller radius).

    The hull is that of the union's outline (:func:`semqa.particles.measure.outline_hull`, half a
    pixel outside the boundary pixels' centres); inside a convex polygon the distance to its
    border is the least distance to its edges' lines, so only the cut pixels are measured.

    ``dist`` is the distance map of the whole part the regions divide: the union of ``a`` and
    ``b`` lies inside it, so its distance to the union's border is at most ``dist``, and the
    depth measured with ``dist`` is a lower bound; when that already reaches ``enough`` (the
    caller's threshold) the union's own distance map is not computed (the decision is the same).
    """
    sa, sb = boxes[a - 1], boxes[b - 1]
    box = tuple(slice(max(min(x.start, y.start) - 1, 0), max(x.stop, y.stop) + 1) for x, y in zip(sa, sb))
    crop = regions[box]
    is_a, is_b = crop == a, crop == b
    union = is_a | is_b
    cut = is_a & dilate_cross(is_b)
    if not cut.any():
        return 0.0
    # The crop's outermost rows and columns lie outside both regions, which gives the distance
    # map its zero border; it counts to the nearest outside pixel centre, half a pixel beyond
    # the outline, so the hull distance gets the same half pixel.
    hull = outline_hull(union)
    edges = np.concatenate([hull[1:], hull[:1]]) - hull  # each vertex to the next: np.roll(hull, -1, axis=0), without its set-up
    points = np.column_stack(np.nonzero(cut)).astype(float)
    rel = points[:, None, :] - hull[None, :, :]
    cross = np.abs(edges[None, :, 0] * rel[..., 1] - edges[None, :, 1] * rel[..., 0])
    d_hull = (cross / np.maximum(np.hypot(edges[:, 0], edges[:, 1]), 1e-12)).min(axis=1) + 0.5
    lower = float((d_hull - dist[box][cut]).max())
    if lower >= enough:
        return lower
    d_union = ndimage.distance_transform_edt(union)[cut]
    return float((d_hull - d_union).max())


def _saddles(regions: np.ndarray, dist: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Neighbouring region pairs ``(a, b)``, ``a < b``, and the saddle of the distance map between
    them: the highest value, over 8-adjacent pixel pairs across their boundary, of the lower of
    the two distances (the pass a flooding would cross)."""
    lo_parts, hi_parts, val_parts = [], [], []
    shifts = ((slice(None), slice(None, -1)), (slice(None), slice(1, None))), ((slice(None, -1), slice(None)), (slice(1, None), slice(None))), \
        ((slice(None, -1), slice(None, -1)), (slice(1, None), slice(1, None))), ((slice(None, -1), slice(1, None)), (slice(1, None), slice(None, -1)))
    for sa, sb in shifts:
        a, b = regions[sa], regions[sb]
        diff = (a != b) & (np.minimum(a, b) > 0)
        a, b = a[diff].astype(np.int64), b[diff].astype(np.int64)
        lo_parts.append(np.minimum(a, b))
        hi_parts.append(np.maximum(a, b))
        val_parts.append(np.minimum(dist[sa][diff], dist[sb][diff]))
    lo, hi, val = np.concatenate(lo_parts), np.concatenate(hi_parts), np.concatenate(val_parts)
    if lo.size == 0:
        return lo, hi, np.empty(0)
    # Grouped by pair code (one sort), the saddle the maximum of each group (as float64).
    code = lo * (n + 1) + hi
    order = np.argsort(code)
    code = code[order]
    starts = np.flatnonzero(np.concatenate([[True], code[1:] != code[:-1]]))
    saddle = np.maximum.reduceat(val[order], starts).astype(np.float64)
    ra, rb = np.divmod(code[starts], n + 1)
    return ra, rb, saddle


def _split_component(
    mask: np.ndarray, dist: np.ndarray, markers: np.ndarray, config: SegmentationConfig, notches: bool = True
) -> np.ndarray:
    """Watershed of one component (a crop) from its markers, keeping only cuts through necks.

    Regions are merged in order of decreasing saddle (a merge tree of the distance map, as the
    dynamics of h-maxima: Grimaud, *SPIE* 1769, 1992; Soille, *Morphological Image Analysis*,
    2nd ed., Springer 2003, § 6.3.5): two groups stay apart when the saddle between them lies
    below ``neck_ratio`` of the smaller group's peak (its inscribed radius) and at least
    ``neck_depth_min_px`` below it, so the depth demanded scales with the particle and a neck
    split does not depend on the particle's size in pixels. The distance map of a convex object
    is concave (one maximum), so it has no such saddle and stays whole. Cuts that survive are
    then checked for the notches in which two touching outlines meet (:func:`_notch_depth`): a
    cut ending on the union's convex outline crosses a body (a bend or a lobe) and is merged.
    ``notches=False`` skips that test (for seeds whose cuts are tested later).
    """
    n = int(markers.max())
    regions = flood(-dist, markers, mask)  # the crop's mask has a zero border (see _split)
    ra, rb, saddle = _saddles(regions, dist, n)
    if ra.size == 0:
        return regions
    # Every region holds its marker, so each of 1…n has a maximum: ``ndimage.maximum(dist, regions, 1…n)``.
    inside = regions > 0
    peak = label_max(dist[inside], regions[inside], n)
    groups = LabelSets(n)
    # Python lists and floats in the loop (the same float64 values and comparisons as on numpy
    # scalars, at a fraction of their per-element cost: a merge tree has tens of saddles per call).
    group_peak = peak.tolist()
    pairs_a, pairs_b, saddles = ra.tolist(), rb.tolist(), saddle.tolist()
    neck_ratio, neck_depth_min = config.neck_ratio, config.neck_depth_min_px
    kept = []
    for k in np.argsort(-saddle, kind="stable").tolist():
        a, b = groups[pairs_a[k]], groups[pairs_b[k]]
        if a == b:
            continue
        smaller = min(group_peak[a], group_peak[b])
        if saddles[k] >= neck_ratio * smaller or smaller - saddles[k] < neck_depth_min:
            groups.merge(a, b)
            group_peak[groups[a]] = max(group_peak[a], group_peak[b])
        else:
            kept.append(k)
    # Notch test on the cuts kept, between the merged groups.
    if notches and kept:
        ids = np.array([0] + groups.roots())
        merged = ids[regions]
        boxes = ndimage.find_objects(merged)
    for k in kept if notches else ():
        a, b = groups[pairs_a[k]], groups[pairs_b[k]]
        if a == b:
            continue
        inscribed = min(group_peak[a], group_peak[b])
        enough = config.merge_notch_ratio * inscribed
        if _notch_depth(merged, boxes, a, b, dist, enough) < enough:
            groups.merge(a, b)
            group_peak[groups[a]] = max(group_peak[a], group_peak[b])
    _, new_ids = np.unique(groups.roots(), return_inverse=True)
    return np.concatenate([[0], new_ids + 1])[regions]


def _subpixel_outline(own: np.ndarray, field: np.ndarray, factor: int) -> np.ndarray:
    """The component ``own`` (a crop with a zero border) on a grid ``factor`` times finer.

    Its outline is the iso-line of ``field`` (the flattened, denoised image, particles bright),
    interpolated bilinearly between pixel centres, that encloses as many fine cells as the pixel
    mask holds (``own.sum() * factor²``), searched within one pixel of the mask: the area, and so
    the size measured on the pixel mask, is unchanged, and the shape is read from the grey levels
    instead of from whole pixels. Holes within a pixel of the mask are filled; the outermost
    pixel's cells stay empty, the zero border of the distance map.
    """
    shape = (own.shape[0] * factor, own.shape[1] * factor)
    fine = upsample_linear(field.astype(np.float32, copy=False), shape)
    near = max_filter_square(np.repeat(np.repeat(own, factor, axis=0), factor, axis=1), 2 * factor + 1)
    near[:factor], near[-factor:], near[:, :factor], near[:, -factor:] = False, False, False, False
    values = fine[near]
    k = min(int(np.count_nonzero(own)) * factor * factor, values.size)
    level = np.partition(values, values.size - k)[values.size - k]
    # A hole the mask itself has (substrate enclosed by a cluster, opened again) stays open.
    return near & _fill_holes(near & (fine >= level))


def _coarse_labels(parts: np.ndarray, own: np.ndarray, factor: int) -> np.ndarray:
    """Labels of the fine grid's ``parts`` carried to the pixels of ``own``: each pixel takes the
    part holding most of its cells; a pixel none of whose cells is in a part, the nearest labelled pixel's."""
    h, w = own.shape
    n = int(parts.max())
    # Pixel index × (n + 1) + part of each cell, counted in one pass.
    cells = parts.reshape(h, factor, w, factor).astype(np.int64) + (np.arange(h * w).reshape(h, 1, w, 1) * (n + 1))
    votes = np.bincount(cells.ravel(), minlength=h * w * (n + 1)).reshape(h * w, n + 1)
    votes[:, 0] = 0
    labels = (votes.argmax(axis=1) * (votes.max(axis=1) > 0)).reshape(h, w)
    missing = own & (labels == 0)
    if missing.any():
        rows, cols = ndimage.distance_transform_edt(labels == 0, return_distances=False, return_indices=True)
        labels = np.where(missing, labels[rows, cols], labels)
    return np.where(own, labels, 0)


def _markers(own: np.ndarray, step: int) -> tuple[np.ndarray, np.ndarray, int]:
    """``(dist, markers, n)``: the distance map of ``own`` and its regional maxima, labelled.

    ``own`` is sampled ``step`` times finer than the pixel grid; the maxima are taken in the pixel
    grid's 3 × 3 neighbourhood and at least 1 px deep, both in fine steps.
    """
    dist = ndimage.distance_transform_edt(own).astype(np.float32)
    peaks = (dist >= ndimage.maximum_filter(dist, size=2 * step + 1)) & (dist >= step)
    if np.count_nonzero(peaks) < 2:
        return dist, peaks, int(peaks.any())  # one marker at most: no labelling needed to know it
    markers, n = ndimage.label(peaks, structure=np.ones((3, 3)))
    return dist, markers, n


def _split(mask: np.ndarray, config: SegmentationConfig, notches: bool = True, field: np.ndarray | None = None) -> np.ndarray:
    """Label ``mask``, splitting touching particles (watershed of the distance map).

    Each connected component is handled in its own bounding box: markers are the regional
    regional maxima of its distance map (3 × 3), merged back by :func:`_split_component` unless a neck
    lies between them; a component with one marker is one particle. Nothing here depends on
    a particle diameter, so one pass serves particles of every size in the frame. Components
    touching the image border are not split. With ``field`` (the denoised image the mask was
    thresholded from), a component with more than one marker whose inscribed radius is small enough
    for the pixel grid's quantisation to matter is split again on the finer grid of
    :func:`_subpixel_outline` (``config.split_subpixel``), its parts carried back to its pixels.
    """
    # Split parts are written into the component image itself: only a component's own pixels
    # are rewritten, with new labels above n_comp, so later components still read as before.
    labels, n_comp = ndimage.label(mask, structure=np.ones((3, 3)))
    next_label = n_comp + 1
    rows, cols = mask.shape
    for c, box in enumerate(ndimage.find_objects(labels), start=1):
        # A component cut by the frame is excluded from measurement anyway (ISO 13322-1); its
        # hole cannot be filled (it opens onto the border), and split into rim arcs it would
        # leave fragments inside the frame that look like small particles. It stays whole.
        if box is None or box[0].start == 0 or box[1].start == 0 or box[0].stop == rows or box[1].stop == cols:
            continue
        # The box grown by one pixel (inside the frame here) gives the component a zero border.
        grown = tuple(slice(s.start - 1, s.stop + 1) for s in box)
        own = labels[grown] == c
        dist, markers, n_markers = _markers(own, 1)
        if n_markers < 2:
            continue
        factor = config.split_subpixel
        # The finer grid pays where the pixel grid's quantisation (sd about neck_depth_min_px) is of
        # the order of the neck depth the ratio demands of the largest part, (1 - neck_ratio) · r.
        fine_pays = (1.0 - config.neck_ratio) * float(dist.max()) < 2.0 * config.neck_depth_min_px
        if field is not None and factor > 1 and fine_pays:
            fine = _subpixel_outline(own, field[grown], factor)
            dist, markers, n_markers = _markers(fine, factor)
            if n_markers < 2:
                continue
            parts = _coarse_labels(_split_component(fine, dist, markers, config, notches), own, factor)
        else:
            parts = _split_component(own, dist, markers, config, notches)
        n_parts = int(parts.max())
        if n_parts > 1:
            # Part 1 keeps the component's label; the others get new ones.
            relabel = np.concatenate([[0, c], np.arange(next_label, next_label + n_parts - 1)]).astype(np.int32)
            inside = parts > 0
            labels[grown][inside] = relabel[parts[inside]]
            next_label += n_parts - 1
    return labels


def _merge_notchless(parts: np.ndarray, digitisation_px: float) -> np.ndarray:
    """Merge back neighbouring parts whose cut ends on the union's convex outline.

    Two particles that overlap still meet in notches where their outlines cross; an edge
    across one convex particle (shading, a facet) has none. The notch must be deeper than
    the scatter of a digitised outline: twice ``digitisation_px``, as the notch depth is the
    difference of two distances each placed within it.
    """
    n = int(parts.max())
    ra, rb, _ = _saddles(parts, np.ones(parts.shape, dtype=np.float32), n)
    boxes = ndimage.find_objects(parts)
    dist = ndimage.distance_transform_edt(parts > 0)
    groups = LabelSets(n)
    for a, b in zip(ra, rb):
        if _notch_depth(parts, boxes, int(a), int(b), dist, 2.0 * digitisation_px) < 2.0 * digitisation_px:
            groups.merge(int(a), int(b))
    _, new_ids = np.unique(groups.roots(), return_inverse=True)
    return np.concatenate([[0], new_ids + 1])[parts]


def _split_contacts(labels: np.ndarray, grad: np.ndarray, noise_sd: float, sigma_px: float, config: SegmentationConfig) -> np.ndarray:
    """Cut every part of ``labels`` along the significant intensity edges inside it
    (:mod:`semqa.particles.contacts`), the lines judged together by the false-discovery rule
    at the frame's false-detection level; parts touching the frame stay whole (as in :func:`_split`).
    New parts get labels above the existing ones."""
    rows, cols = labels.shape
    # Substrate for the ridge's null: beyond the outlines' edge reach (3σ) plus the top-hat's half window (2σ).
    margin = math.ceil(3.0 * sigma_px) + math.ceil(2.0 * sigma_px)
    # Computed once, on the first part that reaches the texture test (many frames have none).
    ridge_lrv = functools.cache(lambda: ridge_long_run_variance(grad, ~max_filter_square(labels > 0, 2 * margin + 1), sigma_px))
    texture_alpha = config.false_detections / max(int(labels.max()), 1)  # Bonferroni budget over the frame's parts
    found = []
    for c, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None or box[0].start == 0 or box[1].start == 0 or box[0].stop == rows or box[1].stop == cols:
            continue
        grown = tuple(slice(s.start - 1, s.stop + 1) for s in box)
        own = labels[grown] == c
        candidates = contact_candidates(own, grad[grown], noise_sd, ridge_lrv, texture_alpha, sigma_px, config.contact_k, lambda m: _split(m, config, notches=False))
        if candidates is not None:
            found.append((c, grown, candidates))
    z_min = line_threshold_fdr(np.concatenate([f[2].z for f in found]) if found else np.empty(0), config.false_detections)
    next_label = int(labels.max()) + 1
    origin = list(range(next_label))  # label → the part it was cut from (itself when not cut)
    cut_boxes = []
    for c, grown, candidates in found:
        if not (candidates.z > z_min).any():
            continue
        parts = _merge_notchless(candidates.cut(z_min), config.neck_depth_min_px)
        n_parts = int(parts.max())
        if n_parts < 2:
            continue
        relabel = np.concatenate([[0, c], np.arange(next_label, next_label + n_parts - 1)]).astype(np.int32)
        inside = parts > 0
        labels[grown][inside] = relabel[parts[inside]]
        origin += [c] * (n_parts - 1)
        cut_boxes.append(grown)
        next_label += n_parts - 1
    return _reattach_cut_pieces(labels, np.asarray(origin), cut_boxes, grad, noise_sd, sigma_px, config)


def _reattach_cut_pieces(
    labels: np.ndarray, origin: np.ndarray, cut_boxes: list, grad: np.ndarray, noise_sd: float, sigma_px: float,
    config: SegmentationConfig,
) -> np.ndarray:
    """Give a piece the contact cuts took off a part to the neighbouring part it belongs to.

    The distance-map split places its line at the mask's neck, which need not be the particles'
    edge: where one particle overlaps another, the lens between the neck's chord and the upper
    particle's outline falls to the lower particle's part. The contact cut then finds the edge and
    takes the lens off, rightly, but a cut works inside one part, so the lens stayed a particle of
    its own (at 100 px, lenses of 300–800 px: the sweep's D10 −10 … −55 %). A piece cut off a part
    is merged into a neighbouring part of another origin when the two are one body by both rules
    a cut inside a part is judged by: their union has no notch at the line between them deeper than
    ``merge_notch_ratio`` of the smaller one's inscribed radius (:func:`_notch_depth`), and that line
    is no contact edge (:func:`semqa.particles.contacts.edge_z` within the one-sided threshold of the
    false-detection budget shared over the pairs tested, :func:`~semqa.particles.contacts.line_threshold`).
    A line with no pixel deeper than 3σ inside the union carries no evidence, and the split stands: on
    the agglomerate benchmark (seeds 14, 101) every such pair was two particles, and every pair
    merged with evidence but one was one particle. Labels stay consecutive.
    """
    if not cut_boxes:
        return labels
    n = int(labels.max())
    rows, cols = labels.shape
    # The pairs a piece of a divided part forms with its neighbours lie in that part's box grown by a pixel.
    # Their distance map, for _notch_depth's early exit: that of the mask in each such box, which is
    # at least the whole mask's there (the box leaves background out, never adds it), so at least a
    # union's and the bound holds; beyond the boxes no cut pixel lies.
    found = []
    dist = np.full(labels.shape, np.inf)
    for box in cut_boxes:
        grown = tuple(slice(max(x.start - 1, 0), min(x.stop + 1, n_px)) for x, n_px in zip(box, (rows, cols)))
        crop = labels[grown]
        found.append(_saddles(crop, np.ones(crop.shape, dtype=np.float32), n)[:2])
        np.minimum(dist[grown], ndimage.distance_transform_edt(crop > 0), out=dist[grown])
    codes = np.unique(np.concatenate([a * (n + 1) + b for a, b in found]))
    ra, rb = np.divmod(codes, n + 1)
    cut = np.bincount(origin[1:], minlength=n + 1) > 1  # parts the contact cuts divided
    keep = (origin[ra] != origin[rb]) & (cut[origin[ra]] | cut[origin[rb]])
    ra, rb = ra[keep], rb[keep]
    if ra.size == 0:
        return labels
    boxes = ndimage.find_objects(labels)
    z_edge = line_threshold(ra.size, config.false_detections)
    groups = LabelSets(n)

    @functools.cache
    def inscribed(x: int) -> float:
        return float(ndimage.distance_transform_edt(np.pad(labels[boxes[x - 1]] == x, 1)).max())

    for a, b in zip(ra.tolist(), rb.tolist()):
        radius = min(inscribed(a), inscribed(b))
        enough = max(2.0 * config.neck_depth_min_px, config.merge_notch_ratio * radius)
        if _notch_depth(labels, boxes, a, b, dist, enough) >= enough:
            continue
        box = tuple(
            slice(max(min(x.start, y.start) - 1, 0), min(max(x.stop, y.stop) + 1, n_px))
            for x, y, n_px in zip(boxes[a - 1], boxes[b - 1], (rows, cols))
        )
        crop = labels[box]
        z = edge_z(crop == a, crop == b, grad[box], noise_sd, sigma_px)
        # A line without deep pixels carries no evidence either way: the split stands.
        if math.isfinite(z) and z <= z_edge:
            groups.merge(a, b)
    _, new_ids = np.unique(groups.roots(), return_inverse=True)
    if new_ids.max() + 1 == n:
        return labels
    return np.concatenate([[0], new_ids + 1]).astype(labels.dtype)[labels]


def _ridge_lines(labels: np.ndarray, band_px: float) -> int:
    """How many lines :func:`semqa.particles.shading.merge_ridges` tests in a frame: the 4-adjacent
    pairs of labels both larger than a disc of radius ``band_px``."""
    n = int(labels.max())
    resolved = np.bincount(labels.ravel(), minlength=n + 1) >= math.pi * band_px**2
    resolved[0] = False
    codes = []
    for axis in (0, 1):
        head = labels.take(np.arange(labels.shape[axis] - 1), axis=axis).astype(np.int64)
        tail = labels.take(np.arange(1, labels.shape[axis]), axis=axis).astype(np.int64)
        cross = (head != tail) & resolved[head] & resolved[tail]
        lo, hi = np.minimum(head[cross], tail[cross]), np.maximum(head[cross], tail[cross])
        codes.append(lo * (n + 1) + hi)
    return int(np.unique(np.concatenate(codes)).size)


def _merge_ridge_cuts(labels: np.ndarray, zp: np.ndarray, z_sd: float, sigma_px: float, shading: Shading, config: SegmentationConfig) -> np.ndarray:
    """In a frame lit from one side (``shading``), merge back every cut, by the distance map or
    the contact edges, that runs along a ridge of one particle
    (:func:`semqa.particles.shading.merge_ridges`): a facet edge of a crystal, which a contact of
    two particles never is. ``zp``: the stabilised frame, particles bright, per-pixel sd ``z_sd``;
    ``sigma_px``: the gradient's scale. Labels stay consecutive (in the order of the lowest label
    of each merged group).

    Each line is tested at the frame's false-detection budget shared over the lines tested
    (:func:`_ridge_lines`; Bonferroni, as the detection's): in a lit frame of touching particles,
    hundreds of contacts are tested, and a per-line level would merge some of them on chance alone."""
    merged_any = False
    band = 4.0 * sigma_px + 1.5
    alpha = config.false_detections / max(_ridge_lines(labels, band), 1)
    components, _ = ndimage.label(labels > 0, structure=np.ones((3, 3)))
    rows, cols = labels.shape
    for k, box in enumerate(ndimage.find_objects(components), start=1):
        if box is None:
            continue
        grown = tuple(slice(max(s.start - 1, 0), min(s.stop + 1, n)) for s, n in zip(box, (rows, cols)))
        own = components[grown] == k
        crop = labels[grown]
        ids = np.unique(crop[own])
        if ids.size < 2:
            continue
        # The component's parts as 1…m in the crop (other components' pixels in the box left out).
        local = np.where(own, np.searchsorted(ids, crop) + 1, 0)
        merged = merge_ridges(local, zp[grown], shading, band, z_sd, alpha)
        if int(merged.max()) == ids.size:
            continue
        # Each merged group takes the lowest original label among its parts.
        first = np.full(int(merged.max()) + 1, np.iinfo(np.int32).max, dtype=np.int64)
        np.minimum.at(first, merged[own], crop[own].astype(np.int64))
        labels[grown][own] = first[merged[own]].astype(labels.dtype)
        merged_any = True
    if not merged_any:
        return labels
    _, consecutive = np.unique(labels, return_inverse=True)
    return consecutive.reshape(labels.shape).astype(labels.dtype)


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill holes: background components that do not reach the image border.

    Same result as :func:`scipy.ndimage.binary_fill_holes` (4-connected background), from one
    labelling instead of a binary propagation over the whole frame.
    """
    background, _ = ndimage.label(~mask)
    outside = np.zeros(int(background.max()) + 1, dtype=bool)
    outside[border_labels(background)] = True  # label 0 (the mask itself) stays False
    return ~outside[background]


def _edge_sigma_px(denoise_sigma: float, config: SegmentationConfig) -> float:
    """Sigma (px) of the blur of a particle's edge: the probe and the denoising (:func:`edge_blur_sigma_px`)."""
    return edge_blur_sigma_px(config.probe_fwhm_px, denoise_sigma)


def _edge_reach_px(denoise_sigma: float, diameter: float, config: SegmentationConfig) -> int:
    """Half-width (px) of the blurred edge: how far outside a particle its boundary is looked
    for, and how far inside it the core is kept whatever the half level says.

    The half-maximum rule needs the level just inside the edge, not the particle's brightest
    part: on a shaded (tilted, dome-shaped) particle the far side is dimmer, and a level read
    farther in puts that side's boundary inside the particle. A step blurred by a Gaussian of
    sigma σ (:func:`_edge_sigma_px`) reaches 97.7 % of its height 2σ from the edge.
    """
    edge_sigma = _edge_sigma_px(denoise_sigma, config)
    # On a small particle the window stays within bright_window_rel of its diameter: the
    # maximum of a larger window of noisy pixels sits higher above the level.
    return max(1, min(math.ceil(2.0 * edge_sigma), round(config.bright_window_rel * diameter)))


def _denoise_sigma(diameter: float, noise_sigma: float, config: SegmentationConfig) -> float:
    """The larger of the scale rule (a fraction of the particle diameter, within the configured
    bounds) and the noise rule, the noise rule capped at a tenth of the diameter: a Gaussian of sigma σ pulls the half-level
    contour of a convex particle of radius R inwards by about σ²/(2R), under 1 % of the ECD there."""
    scale = float(np.clip(config.denoise_sigma_rel * diameter, config.denoise_sigma_min_px, config.denoise_sigma_max_px))
    return max(scale, min(noise_sigma, 0.1 * diameter))


def _noise_sigma(zp: np.ndarray, seeds: np.ndarray, noise: NoiseModel, config: SegmentationConfig) -> float:
    """Gaussian sigma (px) after which the noise sd is ``1 / contrast_to_noise`` of the particles' contrast.

    The contrast is measured in the stabilised frame (unit noise), on 4 × 4 block means (the
    noise of single pixels would inflate an upper quantile): the 90th percentile over the seed
    blocks (seeds spread beyond the particles) less the median elsewhere. White noise of sd s blurred by a Gaussian of sigma σ
    keeps sd s / (2 sqrt(π) σ); noise correlated over a few pixels keeps more, by
    ``sum_inflation``.
    """
    zb = block_mean(zp, 4) if min(zp.shape) >= 16 else zp
    sb = block_mean(seeds.astype(np.float32), 4) >= 0.5 if min(zp.shape) >= 16 else seeds
    if not sb.any() or sb.all():
        return 0.0
    contrast = float(np.quantile(zb[sb], 0.9) - np.median(zb[~sb]))
    if contrast <= 0:
        return config.denoise_sigma_max_px
    sd = noise.stabilized_sd * noise.sum_inflation
    return config.contrast_to_noise * sd / (2.0 * math.sqrt(math.pi) * contrast)


@dataclass(frozen=True)
class Detection:
    """Labels of a frame and what the detection saw in it.

    ``polarity``: +1 particles brighter than the substrate, −1 darker, 0 nothing significant.
    ``has_structure``: the frame holds significant structure (of either polarity), so an empty
    ``labels`` is a failure to find particles rather than an empty field. ``limit``: the sizes
    below which the frame's particles are lost to its noise (:mod:`semqa.particles.completeness`),
    None without particles to read their contrast from.
    """

    labels: np.ndarray
    noise: NoiseModel | None
    polarity: int
    has_structure: bool
    particle_diameter_px: float | None
    denoise_sigma_px: float | None
    limit: DetectionLimit | None = None


def segment(image: np.ndarray, config: SegmentationConfig | None = None) -> np.ndarray:
    """Label the particles of an SEM micrograph (see :func:`detect`, whose labels this returns).

    Parameters
    ----------
    image : numpy.ndarray
        2-D grayscale image, real-valued and finite (float in [0, 1] as read by
        :func:`semqa.io.images.read_image`; any linear scale works).
    config : SegmentationConfig, optional
        Parameters; defaults when None.

    Returns
    -------
    numpy.ndarray
        ``int32`` label image of the same shape, 0 = background, particles 1…n. An image
        without particles (flat, or only noise) gives all zeros.

    Raises
    ------
    InputError
        If the image is not 2-D, smaller than 3 × 3, not real-valued, or not finite.
    """
    return detect(image, config).labels


def detect(image: np.ndarray, config: SegmentationConfig | None = None) -> Detection:
    """Find, delineate and label the particles of an SEM micrograph, bright or dark.

    The frame's noise model is fitted and the frame stabilised (:mod:`semqa.particles.noise`);
    the scale-space significance test (:mod:`semqa.particles.detection`) gives the seeds and
    the polarity; the steps of this module's docstring then run on the frame with particles
    bright (a dark-particle frame is mirrored about its median, the substrate level), with the
    denoising grown until the particles stand ``contrast_to_noise`` noise sds above their
    substrate. Each component must hold a seed and a significant summed contrast.

    Parameters and errors as :func:`segment`.
    """
    config = config or SegmentationConfig()
    image = _check_image(image)
    empty = np.zeros(image.shape, dtype=np.int32)
    nothing = Detection(empty, None, 0, False, None, None)
    if float(image.max()) <= float(image.min()):
        return nothing
    noise = fit_noise_model(image)
    z = stabilize(image, noise)
    # A first test assumes white noise; the final one uses the correlation the noise shows
    # (detection.null_sum_inflation: none for white noise, else measured on the substrate).
    # The DoG responses depend on the frame only: both tests share them.
    responses = dog_responses(z)
    sig = significance_from(responses, noise.model_copy(update={"sum_inflation": 1.0}), config.false_detections)
    inflation = null_sum_inflation(z, noise, sig)
    noise = noise.model_copy(update={"sum_inflation": inflation})
    if inflation > 1.0:
        sig = significance_from(responses, noise, config.false_detections)
    if sig.polarity == 0:
        return Detection(empty, noise, 0, sig.has_structure, None, None)
    seeds = sig.seeds
    zp = z if sig.polarity > 0 else np.negative(z)
    work = image if sig.polarity > 0 else np.float32(2.0 * float(median(image))) - image
    noise_sigma = _noise_sigma(zp, seeds, noise, config)
    failed = Detection(empty, noise, sig.polarity, sig.has_structure, None, None)
    # First look on a 2 × 2 block mean (halves the noise, quarters the work), smoothed as the
    # noise demands: particle scale and substrate, for the denoising sigma and the background.
    factor = 2 if min(image.shape) >= 64 else 1
    small = block_mean(work, factor)
    look_sigma = min(noise_sigma, config.denoise_sigma_max_px) / factor
    if look_sigma > 0.5:
        small = ndimage.gaussian_filter(small, look_sigma)
    coarse = otsu_mask(small)
    if coarse is None:
        return failed
    diameter = config.particle_diameter_px
    if diameter is None:
        # Only components holding a seed size the field (noise specks of a noisy frame do not).
        lab_c, n_c = ndimage.label(coarse)
        seeded = np.bincount(lab_c.ravel(), weights=block_mean(seeds.astype(np.float32), factor).ravel() > 0, minlength=n_c + 1) > 0
        seeded[0] = False
        scale = _ecd_scale(seeded[lab_c])
        if scale is None:
            return failed
        diameter = factor * scale
    sigma = _denoise_sigma(diameter, noise_sigma, config)
    smooth = ndimage.gaussian_filter(work, sigma) if sigma > 0 else work
    bg = _background(small, ~coarse, config.background_sigma_rel * diameter / factor, image.shape)
    # The blurred copy is ours to overwrite (without blur, smooth is the caller's image).
    flat = np.divide(smooth, bg, out=smooth) if sigma > 0 else smooth / bg
    mask = otsu_mask(flat)
    if mask is None:
        return failed
    evidence = _Evidence(z=zp, seeds=seeds, seed_bits=sig.seed_bits, sum_sd=noise.stabilized_sd * noise.sum_inflation, k=sig.threshold)
    gap = max(1, math.ceil(2.0 * sigma))
    ring = max(2.0, config.ring_px_rel * diameter)
    bright = _edge_reach_px(sigma, diameter, config)
    edge_sigma = _edge_sigma_px(sigma, config)
    mask = _local_threshold_mask(flat, mask, gap, ring, bright, 2.0 * edge_sigma, evidence, config)
    if config.fill_holes:
        mask = _fill_holes(mask)
    # The frame's directional shading, read on the particles' outlines (the gradient's scale, at least 1 px).
    shading = frame_shading(mask, zp, 3.0 * max(1.0, sigma), config.false_detections) if config.tilt_shading else None
    if shading is not None:
        grown = _attach_dim_faces(flat, mask, gap, ring, edge_sigma)
        if grown is not mask:
            mask = _local_threshold_mask(flat, grown, gap, ring, bright, 2.0 * edge_sigma, evidence, config)
            if config.fill_holes:
                mask = _fill_holes(mask)
    lab, _ = ndimage.label(mask)
    mask = (np.bincount(lab.ravel()) >= config.min_object_px)[lab] & mask
    if not mask.any():
        return Detection(empty, noise, sig.polarity, sig.has_structure, diameter, sigma)
    if config.split_touching:
        if config.open_holes:
            mask = open_substrate_holes(mask, zp, evidence.sum_sd, config.false_detections, gap, config.probe_fwhm_px)
        labels = _split(mask, config, field=flat).astype(np.int32, copy=False)
        if config.contact_k is not None:
            # The gradient is taken in the stabilised frame (unit-variance noise, particles
            # positive) at the denoising scale, at least 1 px (below, single-pixel noise dominates).
            grad_sigma = max(1.0, sigma)
            grad = ndimage.gaussian_gradient_magnitude(zp, grad_sigma)
            grad_sd = gradient_noise_sd(grad, ~max_filter_square(mask, 2 * gap + 1))
            if grad_sd is not None and grad_sd > 0:
                labels = _split_contacts(labels, grad, grad_sd, grad_sigma, config)
        if shading is not None:
            labels = _merge_ridge_cuts(labels, zp, evidence.sum_sd, max(1.0, sigma), shading, config)
    else:
        labels = ndimage.label(mask)[0].astype(np.int32, copy=False)
    limit = _detection_limit(labels, zp, evidence, sig.scales, gap, ring, config)
    return Detection(labels, noise, sig.polarity, sig.has_structure, diameter, sigma, limit)


def _detection_limit(
    labels: np.ndarray, zp: np.ndarray, evidence: _Evidence, scales: tuple[float, ...], gap_px: int, ring_px: float,
    config: SegmentationConfig,
) -> DetectionLimit | None:
    """The frame's :class:`~semqa.particles.completeness.DetectionLimit`: its particles' contrast
    over the mean of their own ring, the test's noise and threshold.

    The ring's mean, not its median: at a few electrons per pixel the stabilised counts take few
    values and their median lies below their mean (at 2.5 e⁻ by ~0.25 null sd), which would
    overstate the contrast and the completeness. The ring keeps clear of every particle, so no
    neighbour's edge enters the mean.
    """
    n = int(labels.max())
    if n == 0:
        return None
    reach = 2 * int(math.ceil(gap_px + ring_px)) + 1
    zone = np.where(labels > 0, labels, max_filter_square(labels, reach))
    ring = np.where(max_filter_square(labels > 0, 2 * gap_px + 1), 0, zone).ravel()
    count = np.bincount(ring, minlength=n + 1)[1:]
    total = np.bincount(ring, weights=zp.ravel().astype(np.float64), minlength=n + 1)[1:]
    substrate = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    contrast = particle_contrast(zp, labels, substrate)
    if contrast is None or contrast <= 0:
        return None
    return detection_limit(contrast, evidence.sum_sd, evidence.k, scales, edge_blur_sigma_px(config.probe_fwhm_px, 0.0))


def estimate_particle_diameter(image: np.ndarray) -> float | None:
    """Typical particle ECD in pixels, also inside clusters: the scale the learned segmenter
    (:mod:`semqa.particles.learned`, and its training) resamples images by to its working size.

    :func:`semqa.particles.scale.particle_scale` of the first look's particle mask
    (:func:`semqa.particles.look.particle_mask`: noise-matched smoothing of the 2 × 2 block
    mean, the illumination's polynomial surface divided out, Otsu, the particle phase chosen by
    connectivity, so dark particles and uneven lighting are read as particles); None for a flat
    image or one without foreground components. On isolated particles it is the area-weighted
    median component ECD; on clusters it is the particles' size, where :func:`detect` keeps the
    clusters' (see its step 1).
    """
    image = _check_image(image)
    mask, factor = particle_mask(image, SegmentationConfig().contrast_to_noise)
    scale = particle_scale(mask) if mask is not None else None
    return factor * scale if scale is not None else None
