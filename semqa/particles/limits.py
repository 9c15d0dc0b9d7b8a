"""Upper bounds of the segmentation and measurement settings, derived from the frame and the count.

A configuration arrives from users (the CLI's ``--config``, the service's ``config`` field),
and its lengths set window and kernel sizes: unbounded, one value can make an analysis run
for hours or exhaust memory. Each bound below is where a larger value stops meaning anything
physically, so nothing a measurement could need is refused:

* The largest frame semqa reads has :data:`semqa.io.images.DEFAULT_MAX_PIXELS` pixels
  (N = 10⁸, a 10 000 × 10 000 scan). A unit (one frame) needs at least
  ``CompareConfig.min_particles_per_unit`` = 50 whole particles for its D-values, and 50 discs
  of diameter d cover 50 · π d² / 4 ≤ N pixels even packed edge to edge, so a particle spans
  at most d_max = √(4 N / (50 π)) ≈ 1596 px (:data:`MAX_PARTICLE_DIAMETER_PX`), and covers at
  most N / 50 = 2 · 10⁶ px (:data:`MAX_PARTICLE_AREA_PX`).
* Windows sized in particle diameters (rim level, substrate ring, watershed markers) that
  are wider than one diameter sample the neighbouring particles rather than the particle
  itself: :data:`MAX_WINDOW_REL` = 1.
* A denoising Gaussian of sigma σ = d / 2 has a FWHM of 1.18 d, wider than the particle it is
  meant to preserve: :data:`MAX_DENOISE_REL` = 0.5. In pixels, white noise of sd s blurred by
  a Gaussian of sigma σ keeps sd s / (2 √π σ) (the rule :func:`semqa.particles.segmentation.segment`
  uses): at σ = 16 px that is s / 57 (35 dB), past which only edges are lost:
  :data:`MAX_DENOISE_PX` = 16.
* The substrate (background) estimate is smoothed over ``background_sigma_rel`` diameters;
  the segmentation resolves particles of ≥ 5 px, and √N / 5 = 2000 diameters of those span the
  largest frame: wider means a flat background, the same as 2000 (:data:`MAX_BACKGROUND_REL`).
* ``min_snr`` compares a contrast with the noise sd: in a 16-bit image the contrast is at most
  65 535 grey levels and the noise sd at least the quantisation noise, 1/√12 level, so no
  ratio exceeds 65 535 √12 ≈ 2.3 · 10⁵ (:data:`MAX_SNR`).
* The merge ratios compare a cut (or notch depth) with the smaller region's inscribed
  diameter (radius); a straight cut through a region is shorter than its perimeter, i.e. a
  few inscribed diameters for any region the watershed splits: 10 switches either rule off
  as completely as any larger value (:data:`MAX_MERGE_RATIO`).
"""

from __future__ import annotations

import math

from semqa.io.images import DEFAULT_MAX_PIXELS
from semqa.stats.equivalence import CompareConfig

#: Whole particles one frame must hold for per-unit D-values (``CompareConfig.min_particles_per_unit``).
_UNIT_PARTICLES: int = CompareConfig.model_fields["min_particles_per_unit"].default

MAX_PARTICLE_DIAMETER_PX: float = math.sqrt(4 * DEFAULT_MAX_PIXELS / (_UNIT_PARTICLES * math.pi))
MAX_PARTICLE_AREA_PX: int = DEFAULT_MAX_PIXELS // _UNIT_PARTICLES
MAX_WINDOW_REL: float = 1.0
MAX_DENOISE_REL: float = 0.5
MAX_DENOISE_PX: float = 16.0
#: The smallest particle diameter the segmentation resolves, px (its documented range).
_MIN_RESOLVED_PX = 5
MAX_BACKGROUND_REL: float = math.sqrt(DEFAULT_MAX_PIXELS) / _MIN_RESOLVED_PX
MAX_SNR: float = 65535 * math.sqrt(12)
MAX_MERGE_RATIO: float = 10.0
#: Most pixels in one image: what a classic TIFF (32-bit offsets, 4 GiB) holds at 8 bits.
MAX_IMAGE_PIXELS: int = 2**32
