"""Image reading: pixel size sources and every kind of bad input (issue 2)."""

import io
import json
import struct
import zlib

import numpy as np
import pytest
import tifffile
from PIL import Image

from semqa.errors import InputError, TooLargeError, UnsupportedMediaError
from semqa.io.images import (
    encode_image,
    expand_image_paths,
    read_image,
    read_image_bytes,
    require_pixel_size,
    write_image,
)


@pytest.fixture
def gradient() -> np.ndarray:
    return np.linspace(0, 1, 48 * 64, dtype=np.float32).reshape(48, 64)


def test_tiff_16bit_round_trip_keeps_depth_and_pixel_size(tmp_path, gradient):
    path = write_image(tmp_path / "a.tif", gradient, pixel_size_um=0.125, bit_depth=16)
    mg = read_image(path)
    assert mg.bit_depth == 16
    assert mg.pixel_size_um == pytest.approx(0.125)
    assert np.abs(mg.image - gradient).max() < 1 / 65535
    assert mg.digest.startswith("sha256:") and len(mg.digest) == 7 + 64


def test_png_pixel_size_from_sidecar(tmp_path, gradient):
    write_image(tmp_path / "a.png", gradient, pixel_size_um=0.4)
    assert json.loads((tmp_path / "a.json").read_text()) == {"pixel_size_um": 0.4}
    assert read_image(tmp_path / "a.png").pixel_size_um == 0.4


def test_flag_overrides_metadata(tmp_path, gradient):
    write_image(tmp_path / "a.tif", gradient, pixel_size_um=0.1)
    assert read_image(tmp_path / "a.tif", pixel_size_um=0.3).pixel_size_um == 0.3


def test_imagej_micron_metadata(tmp_path):
    arr = (np.arange(100, dtype=np.uint16).reshape(10, 10) * 600)
    tifffile.imwrite(tmp_path / "ij.tif", arr, imagej=True, resolution=(1 / 0.05, 1 / 0.05), metadata={"unit": "micron"})
    assert read_image(tmp_path / "ij.tif").pixel_size_um == pytest.approx(0.05)


def test_dpi_resolution_is_not_taken_as_pixel_size(tmp_path):
    tifffile.imwrite(tmp_path / "dpi.tif", np.zeros((8, 8), np.uint8), resolution=(72, 72), resolutionunit="INCH")
    mg = read_image(tmp_path / "dpi.tif")
    assert mg.pixel_size_um is None
    with pytest.raises(InputError, match="pixel size unknown"):
        require_pixel_size(mg)


def test_rgb_converted_to_luminance(tmp_path):
    rgb = np.zeros((10, 12, 3), np.uint8)
    rgb[..., 0] = 255
    Image.fromarray(rgb).save(tmp_path / "red.png")
    mg = read_image(tmp_path / "red.png")
    assert mg.image.shape == (10, 12)
    assert mg.image.mean() == pytest.approx(0.2125, abs=1e-3)  # BT.709 red weight
    assert mg.bit_depth == 8


def test_not_an_image(tmp_path):
    (tmp_path / "notes.png").write_text("this is text")
    with pytest.raises(UnsupportedMediaError, match="not an image"):
        read_image(tmp_path / "notes.png")


def test_truncated_png(tmp_path, gradient):
    data = encode_image(gradient, "png")
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="cut.png"):
        read_image(tmp_path / "cut.png")


def _png_with_size(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def test_zero_size_images():
    with pytest.raises(InputError, match="zero-size"):
        read_image_bytes(_png_with_size(0, 10), "zero.png")
    buf = io.BytesIO()
    with pytest.warns(UserWarning):
        tifffile.imwrite(buf, np.zeros((0, 0), np.uint8))
    with pytest.raises(InputError, match="zero-size"):
        read_image_bytes(buf.getvalue(), "zero.tif")
    with pytest.raises(InputError, match="empty file"):
        read_image_bytes(b"", "empty.tif")


def test_pixel_limit_refuses_before_decoding():
    # A 100 000 × 100 000 PNG header: the limit must trip on the header alone.
    with pytest.raises(TooLargeError, match="exceeds the limit"):
        read_image_bytes(_png_with_size(100_000, 100_000), "bomb.png")
    with pytest.raises(TooLargeError):
        read_image_bytes(encode_image(np.zeros((40, 40)), "tiff"), "big.tif", max_pixels=1000)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_image(tmp_path / "nope.tif")
    with pytest.raises(InputError, match="no images"):
        expand_image_paths([tmp_path])


def test_bad_pixel_size_values(tmp_path, gradient):
    write_image(tmp_path / "a.tif", gradient)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(InputError, match="pixel size must be a positive"):
            read_image(tmp_path / "a.tif", pixel_size_um=bad)
