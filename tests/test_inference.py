"""Tiled inference, pickle-free loading and model resolution errors."""

import numpy as np
import pytest
import torch

from mlflow_store import fresh_store, migrated_template
from semqa.sr.archs import GeneratorConfig, build_generator
from semqa.errors import InputError
from semqa.components import save_network
from semqa.sr.inference import Upscaler, load_upscaler
from semqa.io.digests import file_digest
from semqa.results import ModelRef


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.2 + 0.6 * rng.random((h, w))).astype(np.float32)


def _whole(g: torch.nn.Module, image: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return g.eval()(torch.from_numpy(image)[None, None])[0, 0].clamp(0, 1).numpy()


@pytest.mark.parametrize(
    "config",
    [
        GeneratorConfig(arch="srvgg", scale=2, num_feat=8, num_conv=4),
        GeneratorConfig(arch="srvgg", scale=4, num_feat=8, num_conv=3),
        GeneratorConfig(arch="rrdbnet", scale=2, num_feat=8, num_block=1, num_grow_ch=4),
    ],
)
def test_tiled_equals_whole_image(config: GeneratorConfig) -> None:
    torch.manual_seed(1)
    g = build_generator(config)
    # Perturb all weights so the output is far from the upsampled input.
    with torch.no_grad():
        for p in g.parameters():
            p.add_(0.05 * torch.randn_like(p))
    image = _image(150, 113)
    up = Upscaler(g, ModelRef(name="t", scale=config.scale), "cpu", tile_size=48, tile_pad=g.receptive_radius, tile_batch=3)
    tiled = up.upscale(image)
    assert tiled.shape == (150 * config.scale, 113 * config.scale)
    assert tiled.dtype == np.float32
    assert np.abs(tiled - _whole(g, image)).max() < 1e-4
    assert 0.0 <= tiled.min() and tiled.max() <= 1.0


def test_batch_equals_one_by_one() -> None:
    torch.manual_seed(2)
    g = build_generator(GeneratorConfig(num_feat=8, num_conv=2))
    up = Upscaler(g, ModelRef(name="t", scale=2), "cpu", tile_size=32)
    images = [_image(40, 50, s) for s in range(3)]
    for a, b in zip(up.upscale_batch(images), images):
        np.testing.assert_allclose(a, up.upscale(b), atol=1e-6)
    with pytest.raises(InputError, match="one shape"):
        up.upscale_batch([_image(40, 50), _image(41, 50)])


def test_from_files_round_trip(tmp_path) -> None:
    torch.manual_seed(3)
    config = GeneratorConfig(num_feat=8, num_conv=2, scale=4)
    g = build_generator(config)
    weights, arch = save_network(g, config, tmp_path)
    up = Upscaler.from_files(weights, arch, device="cpu")
    assert up.scale == 4
    assert up.ref.weights_digest == file_digest(weights)
    image = _image(20, 24)
    np.testing.assert_allclose(up.upscale(image), _whole(g, image), atol=1e-6)
    with pytest.raises(InputError, match="digest"):
        Upscaler.from_files(weights, arch, ref=ModelRef(name="x", scale=4, weights_digest="sha256:00"))


def test_from_files_rejects_wrong_architecture(tmp_path) -> None:
    g = build_generator(GeneratorConfig(num_feat=8, num_conv=2))
    weights, arch = save_network(g, GeneratorConfig(num_feat=8, num_conv=2), tmp_path)
    arch.write_text(GeneratorConfig(num_feat=16, num_conv=2).model_dump_json())
    with pytest.raises(InputError, match="do not fit"):
        Upscaler.from_files(weights, arch)
    with pytest.raises(InputError, match="not found"):
        Upscaler.from_files(tmp_path / "missing.safetensors", arch)


@pytest.mark.parametrize("bad", [np.zeros((2, 3, 4), np.float32), np.zeros((4, 4), np.uint8), np.full((4, 4), np.nan, np.float32)])
def test_bad_images_raise_input_error(bad) -> None:
    up = Upscaler(build_generator(GeneratorConfig(num_feat=8, num_conv=1)), ModelRef(name="t", scale=2), "cpu")
    with pytest.raises(InputError):
        up.upscale(bad)


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory):
    return migrated_template(tmp_path_factory)


def test_missing_production_model_is_a_clear_input_error(tmp_path, monkeypatch, mlflow_template) -> None:
    fresh_store(mlflow_template, tmp_path, monkeypatch)
    monkeypatch.delenv("SEMQA_MODEL_URI", raising=False)
    with pytest.raises(InputError, match="no production model registered"):
        load_upscaler()
    with pytest.raises(InputError, match="not found"):
        load_upscaler("models:/other@staging")
    with pytest.raises(InputError, match="neither"):
        load_upscaler(str(tmp_path / "nowhere"))


def test_super_resolve_cli_keeps_bit_depth_and_pixel_size(tmp_path, capsys) -> None:
    from semqa.cli import main
    from semqa.io.images import read_image, write_image

    config = GeneratorConfig(num_feat=8, num_conv=2, scale=2)
    save_network(build_generator(config), config, tmp_path / "model")
    src = tmp_path / "in"
    write_image(src / "a.tif", _image(30, 40), pixel_size_um=0.4, bit_depth=16)
    write_image(src / "b.png", _image(20, 20, 1), pixel_size_um=0.2)
    assert main(["super-resolve", str(src), str(tmp_path / "out"), "--model", str(tmp_path / "model")]) == 0
    a = read_image(tmp_path / "out" / "a.tif")
    assert a.image.shape == (60, 80) and a.bit_depth == 16 and a.pixel_size_um == pytest.approx(0.2)
    b = read_image(tmp_path / "out" / "b.png")
    assert b.image.shape == (40, 40) and b.bit_depth == 8 and b.pixel_size_um == pytest.approx(0.1)
    assert main(["super-resolve", str(src / "a.tif"), str(tmp_path / "one.tif"), "--model", str(tmp_path / "model")]) == 0
    assert read_image(tmp_path / "one.tif").image.shape == (60, 80)
    assert main(["super-resolve", str(tmp_path / "missing.tif"), str(tmp_path / "x.tif"), "--model", str(tmp_path / "model")]) == 2
    assert "no such file" in capsys.readouterr().err


@pytest.mark.parametrize("arch", ["srvgg", "rrdbnet"])
def test_every_accepted_tile_size_equals_whole_image_and_smaller_ones_are_refused(arch: str) -> None:
    from semqa.sr.inference import TILING_ATOL

    torch.manual_seed(4)
    config = (GeneratorConfig(arch="srvgg", scale=2, num_feat=8, num_conv=3) if arch == "srvgg"
              else GeneratorConfig(arch="rrdbnet", scale=2, num_feat=8, num_block=1, num_grow_ch=4))
    g = build_generator(config)
    with torch.no_grad():
        for p in g.parameters():
            p.add_(0.05 * torch.randn_like(p))
    radius = g.receptive_radius
    smallest = 2 * radius + 1
    image = _image(61, 47, seed=5)
    whole = _whole(g, image)
    # The smallest accepted window (one kept pixel per window and axis), a few above it, and the default.
    for tile in (smallest, smallest + 1, smallest + 7, 256):
        tiled = Upscaler(g, ModelRef(name="t", scale=2), "cpu", tile_size=tile, tile_batch=8).upscale(image)
        assert np.abs(tiled - whole).max() < TILING_ATOL, tile
    for tile in (smallest - 1, 1, 0, -3):
        with pytest.raises(InputError, match=f"tile size must be at least {smallest}"):
            Upscaler(g, ModelRef(name="t", scale=2), "cpu", tile_size=tile)
    with pytest.raises(InputError, match="below the generator's receptive radius"):
        Upscaler(g, ModelRef(name="t", scale=2), "cpu", tile_size=256, tile_pad=radius - 1)


def test_super_resolve_refuses_tile_sizes_that_would_show_seams(tmp_path, capsys) -> None:
    from semqa.cli import main
    from semqa.io.images import write_image

    config = GeneratorConfig(num_feat=8, num_conv=2, scale=2)
    save_network(build_generator(config), config, tmp_path / "model")
    write_image(tmp_path / "in.tif", _image(20, 20), pixel_size_um=0.4, bit_depth=16)
    for tile in ("0", "1"):
        assert main(["super-resolve", str(tmp_path / "in.tif"), str(tmp_path / "out.tif"), "--model", str(tmp_path / "model"), "--tile-size", tile]) == 2
        err = capsys.readouterr().err
        assert "tile size must be at least 9" in err and len(err.splitlines()) == 1
    assert main(["super-resolve", str(tmp_path / "in.tif"), str(tmp_path / "out.tif"), "--model", str(tmp_path / "model"), "--tile-size", "9"]) == 0
