"""Generator and discriminator architectures: shapes, registry, config round trip."""

import pytest
import torch

from semqa.sr.archs import DiscriminatorConfig, GeneratorConfig, build_discriminator, build_generator


@pytest.mark.parametrize("arch", ["srvgg", "rrdbnet"])
@pytest.mark.parametrize("scale", [2, 4])
def test_generator_output_shape(arch: str, scale: int) -> None:
    config = GeneratorConfig(arch=arch, scale=scale, num_feat=8, num_conv=2, num_block=1, num_grow_ch=4)
    g = build_generator(config)
    x = torch.rand(2, 1, 12, 20)
    y = g(x)
    assert y.shape == (2, 1, 12 * scale, 20 * scale)
    assert torch.isfinite(y).all()


def test_generator_learns_residual_over_upsampled_input() -> None:
    g = build_generator(GeneratorConfig(scale=2, num_feat=8, num_conv=1))
    for p in g.body[-2].parameters():  # last conv before the pixel shuffle
        torch.nn.init.zeros_(p)
    x = torch.rand(1, 1, 8, 8)
    assert torch.equal(g(x), torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest"))


def test_discriminator_gives_per_pixel_logits_and_features() -> None:
    d = build_discriminator(DiscriminatorConfig(num_feat=8))
    x = torch.rand(3, 1, 32, 48)
    logits, feats = d(x, return_features=True)
    assert logits.shape == (3, 1, 32, 48)
    assert [f.shape[-2:] for f in feats] == [(8, 12), (16, 24), (32, 48)]
    d.eval()
    assert torch.equal(d(x), d(x))


def test_discriminator_is_spectrally_normalised() -> None:
    d = build_discriminator(DiscriminatorConfig(num_feat=8))
    d.train()
    for _ in range(30):  # power iteration converges to the top singular value
        d(torch.rand(1, 1, 16, 16))
    w = d.conv1.weight.detach().reshape(d.conv1.weight.shape[0], -1)
    assert torch.linalg.matrix_norm(w, ord=2).item() == pytest.approx(1.0, abs=0.05)


def test_config_round_trip_rebuilds_same_architecture() -> None:
    config = GeneratorConfig(arch="rrdbnet", scale=4, num_feat=8, num_block=2, num_grow_ch=4)
    again = GeneratorConfig.model_validate_json(config.model_dump_json())
    a, b = build_generator(config), build_generator(again)
    assert a.state_dict().keys() == b.state_dict().keys()


def test_config_rejects_unknown_fields_and_scales() -> None:
    with pytest.raises(ValueError):
        GeneratorConfig(scale=3)
    with pytest.raises(ValueError):
        GeneratorConfig(arch="srvgg", channels=3)
