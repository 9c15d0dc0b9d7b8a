"""Reading micrographs: image files, pixel size and its source, digests."""
