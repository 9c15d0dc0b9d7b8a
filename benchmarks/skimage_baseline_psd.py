"""The plain scikit-image PSD pipeline as one process: the analysis baseline where ImageJ is absent.

Reads every TIFF of a folder, segments it with :func:`bench_segmentation.baseline_segment`
(Gaussian, Otsu, fill holes, distance-transform watershed: ImageJ's batch macro in scikit-image),
drops border-cut particles and writes one ECD (µm) per line to the output file.

Run: ``python benchmarks/skimage_baseline_psd.py DIR OUT.txt``
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

from skimage.measure import regionprops
from skimage.segmentation import clear_border

from bench_segmentation import baseline_segment
from semqa.io.images import list_images, read_image, require_pixel_size

if __name__ == "__main__":
    folder, out = Path(sys.argv[1]), Path(sys.argv[2])
    ecds = []
    for path in list_images(folder):
        mg = read_image(path)
        px = require_pixel_size(mg)
        # min_distance a quarter of the synthetic scenes' 30-px median diameter, as bench_segmentation.
        labels = clear_border(baseline_segment(mg.image, min_distance=7))
        ecds += [math.sqrt(4 * r.area / math.pi) * px for r in regionprops(labels)]
    out.write_text("".join(f"{e}\n" for e in ecds))
