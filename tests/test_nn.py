"""Networks: every registered generator/discriminator in 2D and 3D, plus the PatchGAN maths."""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn

from translate.errors import TranslateError
from translate.nn import (DISCRIMINATORS, GENERATORS, MultiScaleDiscriminator, PatchDiscriminator, ResNetGenerator,
                          SlicePatchDiscriminator, UNetGenerator, build_discriminator, build_generator, init_weights, patchgan_receptive_field)
from translate.nn.layers import norm_layer

# Small configurations per registered name; a network added without an entry still runs, shrunk
# through its ``channels`` argument, so it is exercised the day it is registered.
SMALL_GENERATORS = {
    "unet": dict(channels=(4, 8, 16, 16)),
    "resnet": dict(channels=4, n_blocks=1, n_downsampling=2),
    "residual": dict(backbone={"name": "unet", "channels": (4, 8, 16)}),
}
SMALL_DISCRIMINATORS = {
    "patchgan": dict(channels=4, n_layers=2),
    "multiscale": dict(channels=4, n_layers=2, num_scales=2),
    "slice_patchgan": dict(channels=4, n_layers=2),
}
#: critics of 3D inputs only: in 2D they refuse in one line
ONLY_3D_DISCRIMINATORS = {"slice_patchgan"}
SHAPES = {2: (32, 32), 3: (16, 16, 16)}
DISCRIMINATOR_SHAPES = {2: (32, 32), 3: (32, 32, 32)}


def small_kwargs(registry, table, name):
    if name in table:
        return dict(table[name])
    params = inspect.signature(registry.get(name)).parameters
    return {"channels": 8} if "channels" in params and isinstance(params["channels"].default, int) else {}


def as_list(out):
    return list(out) if isinstance(out, (list, tuple)) else [out]


def assert_gradients_flow(net: nn.Module, x: torch.Tensor, out) -> None:
    sum(o.float().mean() for o in as_list(out)).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, p in net.named_parameters():
        assert p.grad is not None, f"no gradient reaches {name}"
        assert torch.isfinite(p.grad).all(), name


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("name", GENERATORS.names())
def test_generator_shape_and_gradients(name, spatial_dims):
    torch.manual_seed(0)
    net = build_generator(name, spatial_dims=spatial_dims, in_channels=3, out_channels=1,
                          **small_kwargs(GENERATORS, SMALL_GENERATORS, name))
    x = torch.randn(2, 3, *SHAPES[spatial_dims], requires_grad=True)
    out = net(x)
    assert out.shape == (2, 1, *SHAPES[spatial_dims])
    assert_gradients_flow(net, x, out)


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("name", DISCRIMINATORS.names())
def test_discriminator_shape_features_and_gradients(name, spatial_dims):
    torch.manual_seed(0)
    if spatial_dims == 2 and name in ONLY_3D_DISCRIMINATORS:
        with pytest.raises(ValueError, match="spatial_dims=2"):
            build_discriminator(name, spatial_dims=2, in_channels=2, **SMALL_DISCRIMINATORS[name])
        return
    net = build_discriminator(name, spatial_dims=spatial_dims, in_channels=2,
                              **small_kwargs(DISCRIMINATORS, SMALL_DISCRIMINATORS, name))
    x = torch.randn(2, 2, *DISCRIMINATOR_SHAPES[spatial_dims], requires_grad=True)
    logits = as_list(net(x))
    for out in logits:
        assert out.shape[:2] == (2, 1) and out.dim() == spatial_dims + 2 and min(out.shape[2:]) > 0
    with_features, features = net(x, return_features=True)
    assert [o.shape for o in as_list(with_features)] == [o.shape for o in logits]
    flat = [f for group in features for f in (group if isinstance(group, list) else [group])]
    assert flat and all(f.shape[0] == 2 for f in flat)
    assert_gradients_flow(net, x, with_features)


def test_patchgan_output_size_matches_reference():
    d = PatchDiscriminator(spatial_dims=2, in_channels=2, receptive_field=70)
    assert d.n_layers == 3 and d.receptive_field == 70
    assert d(torch.zeros(1, 2, 256, 256)).shape == (1, 1, 30, 30)
    assert sum(p.numel() for p in d.parameters()) == 2_764_609  # pytorch-CycleGAN-and-pix2pix, 2 inputs


def test_patchgan_receptive_field_table():
    assert [patchgan_receptive_field(n) for n in range(1, 6)] == [16, 34, 70, 142, 286]
    for field, n_layers in [(16, 1), (34, 2), (70, 3), (142, 4), (286, 5)]:
        assert PatchDiscriminator(channels=2, receptive_field=field).n_layers == n_layers
    with pytest.raises(ValueError, match="16, 34, 70, 142, 286"):
        PatchDiscriminator(receptive_field=64)


@pytest.mark.parametrize("n_layers", [1, 2, 3])
def test_patchgan_receptive_field_empirical(n_layers):
    """The input support of one central logit's gradient is exactly the receptive field."""
    torch.manual_seed(n_layers)
    d = PatchDiscriminator(spatial_dims=2, in_channels=1, channels=2, n_layers=n_layers, norm="none").double()
    x = torch.randn(1, 1, 160, 160, dtype=torch.float64, requires_grad=True)
    out = d(x)
    centre = out.shape[-1] // 2
    out[0, 0, centre, centre].backward()
    support = x.grad[0, 0] != 0
    rows, cols = support.any(dim=1).nonzero().squeeze(1), support.any(dim=0).nonzero().squeeze(1)
    field = patchgan_receptive_field(n_layers)
    assert rows.min() > 0 and rows.max() < 159, "support touches the border: the test input is too small"
    assert len(rows) == len(cols) == field
    assert rows.max() - rows.min() + 1 == field
    assert int(support.sum()) == field * field


def test_multiscale_returns_one_map_per_scale():
    d = MultiScaleDiscriminator(spatial_dims=2, in_channels=2, num_scales=3, channels=4, n_layers=1)
    logits, features = d(torch.randn(1, 2, 64, 64), return_features=True)
    assert [o.shape[-1] for o in logits] == [30, 14, 6]
    assert len(features) == 3 and all(len(f) == 2 for f in features)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_slice_patchgan_is_the_2d_critic_on_every_slice(axis):
    torch.manual_seed(0)
    d = SlicePatchDiscriminator(spatial_dims=3, in_channels=2, axis=axis, channels=4, n_layers=2, norm="instance")
    x = torch.randn(2, 2, 12, 20, 24)
    logits, features = d(x, return_features=True)
    count = x.shape[2 + axis]
    assert logits.shape[2 + axis] == count and all(f.shape[2 + axis] == count for f in features)
    for b in range(2):
        for index in (0, count // 2, count - 1):
            one = d.critic(x[b:b + 1].select(2 + axis, index))
            assert torch.allclose(logits[b:b + 1].select(2 + axis, index), one, atol=1e-6)
    assert d.receptive_field == patchgan_receptive_field(2)
    with pytest.raises(ValueError, match="axis must be 0, 1 or 2"):
        SlicePatchDiscriminator(spatial_dims=3, in_channels=1, axis=3)


def test_unet_outer_skips_dropped_reads_no_copy_of_the_outer_levels():
    torch.manual_seed(0)
    paper = UNetGenerator(spatial_dims=2, channels=(4, 8, 16, 16), norm="instance", dropout=0.0)
    assert [block[1].in_channels for block in paper.decoder] == [16, 32, 16, 8]
    for dropped in (1, 2, 3):
        net = UNetGenerator(spatial_dims=2, channels=(4, 8, 16, 16), norm="instance", dropout=0.0,
                            outer_skips_dropped=dropped)
        # decoder blocks undo levels 3, 2, 1, 0: the outermost `dropped` ones read only the upsampled features
        widths = [block[1].in_channels for block in net.decoder]
        assert widths == [16, 32, 16, 8][:4 - dropped] + [16, 8, 4][3 - dropped:]
        # with every skip dropped the output is the decoder of the innermost code alone
        x = torch.randn(1, 1, 32, 32)
        codes = []
        hook = net.encoder[-1].register_forward_hook(lambda m, i, o: codes.append(o))
        out = net(x)
        hook.remove()
        if dropped == 3:
            y = net.decoder[0](codes[0])
            for block in net.decoder[1:]:
                y = block(y)
            assert torch.allclose(out, y)
    with pytest.raises(ValueError, match=r"outer_skips_dropped must be in \[0, 3\]"):
        UNetGenerator(spatial_dims=2, channels=(4, 8, 16, 16), outer_skips_dropped=4)


def test_unet_bad_size_names_size_and_multiple():
    net = UNetGenerator(spatial_dims=2, channels=(4, 8, 8, 8))
    with pytest.raises(ValueError, match=r"\(30, 32\).*divisible by 16"):
        net(torch.zeros(1, 1, 30, 32))
    with pytest.raises(ValueError, match="divisible by 4"):
        ResNetGenerator(spatial_dims=2, channels=4, n_blocks=1)(torch.zeros(1, 1, 30, 30))


def test_unet_dropout_in_innermost_decoder_blocks():
    def dropouts(net):
        return [i for i, block in enumerate(net.decoder) if any(isinstance(m, nn.Dropout) for m in block)]
    assert dropouts(UNetGenerator(channels=(4,) * 8)) == [0, 1, 2]
    assert dropouts(UNetGenerator(channels=(4, 4))) == [0]
    assert dropouts(UNetGenerator(channels=(4,) * 8, dropout=0.0)) == []


def test_bad_options_list_valid_values():
    with pytest.raises(ValueError, match="'instance', 'batch', 'none'"):
        norm_layer("group", 2, 4)
    with pytest.raises(ValueError, match="norm"):
        UNetGenerator(norm="layer")
    with pytest.raises(ValueError, match="tanh"):
        UNetGenerator(final_activation="sigmoid")
    with pytest.raises(ValueError, match="spatial_dims"):
        ResNetGenerator(spatial_dims=1)
    with pytest.raises(TranslateError, match="unet"):
        build_generator("nope")


def test_deterministic_under_fixed_seed():
    def run():
        torch.manual_seed(123)
        net = UNetGenerator(spatial_dims=2, channels=(4, 8, 8))
        x = torch.randn(2, 1, 16, 16)
        return net(x)  # train mode: dropout draws from the seeded generator too
    first, second = run(), run()
    assert torch.equal(first, second)
    torch.manual_seed(1)
    assert not torch.equal(first, UNetGenerator(spatial_dims=2, channels=(4, 8, 8))(torch.randn(2, 1, 16, 16)))


def test_init_weights_statistics():
    torch.manual_seed(0)
    net = init_weights(UNetGenerator(spatial_dims=2, channels=(32, 64, 128, 128), norm="batch"), gain=0.02)
    convs = [m for m in net.modules() if isinstance(m, nn.modules.conv._ConvNd)]
    norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    conv_w = torch.cat([m.weight.flatten() for m in convs])
    norm_w = torch.cat([m.weight.flatten() for m in norms])
    assert abs(conv_w.mean()) < 1e-3 and abs(conv_w.std() - 0.02) < 1e-3
    assert abs(norm_w.mean() - 1) < 0.01 and abs(norm_w.std() - 0.02) < 0.005
    for m in convs + norms:
        if m.bias is not None:
            assert torch.count_nonzero(m.bias) == 0
    with pytest.raises(ValueError, match="xavier"):
        init_weights(net, kind="uniform")


def test_blurpool_matches_kornia_in_2d_and_separates_in_3d():
    import kornia

    from translate.nn.layers import BlurPool

    x = torch.randn(2, 3, 16, 16)
    ours, ref = BlurPool(2, 3)(x), kornia.filters.blur_pool2d(x, 3, stride=2)
    assert ours.shape == ref.shape == (2, 3, 8, 8)
    torch.testing.assert_close(ours[..., 1:-1, 1:-1], ref[..., 1:-1, 1:-1])  # kornia pads with zeros, we reflect
    # a volume constant along depth: the 3D filter is the 2D one on every slice
    vol = x[:, :, None].expand(2, 3, 6, 16, 16)
    torch.testing.assert_close(BlurPool(3, 3)(vol), ours[:, :, None].expand(2, 3, 3, 8, 8))
    assert torch.allclose(BlurPool(2, 1, kernel_size=4)(torch.full((1, 1, 8, 8), 7.0)), torch.tensor(7.0))


def _shift_error(net: nn.Module) -> float:
    """Relative change of the output (interior) when the input moves by one pixel."""
    torch.manual_seed(1)
    img = torch.nn.functional.avg_pool2d(torch.randn(4, 1, 72, 72), 5, 1, 2)
    with torch.no_grad():
        out, moved = net(img[..., :64, :64]), net(img[..., 1:65, 1:65])
    inner = (slice(None), slice(None), slice(12, -12), slice(12, -12))
    return ((out[..., 1:, 1:] - moved[..., :-1, :-1])[inner].norm() / out[inner].norm()).item()


def test_resnet_antialias_shapes_state_and_shift_equivariance():
    for spatial_dims in (2, 3):
        net = ResNetGenerator(spatial_dims, channels=4, n_blocks=1, antialias=True)
        size = (8,) * spatial_dims
        assert net(torch.zeros(1, 1, *size)).shape == (1, 1, *size)
    # the reference layout (and so its checkpoints' keys) is unchanged without the option
    plain = ResNetGenerator(2, channels=4, n_blocks=1)
    assert isinstance(plain.model[10], nn.ConvTranspose2d) and "model.10.weight" in plain.state_dict()
    smooth = ResNetGenerator(2, channels=4, n_blocks=1, antialias=True)
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in smooth.modules())
    assert sum(p.numel() for p in smooth.parameters()) == sum(p.numel() for p in plain.parameters())
    errors = []
    for antialias in (False, True):
        torch.manual_seed(0)
        errors.append(_shift_error(ResNetGenerator(2, channels=8, n_blocks=2, antialias=antialias).eval()))
    assert errors[1] < 0.6 * errors[0], errors  # random weights: 1.11 without, 0.39 with


def _interior_spread(net: nn.Module, shape) -> float:
    """Std of ``net``'s output for a constant input, inside the central half of every axis."""
    with torch.no_grad():
        out = net(torch.full(shape, 0.3))
    return out[(0, 0) + tuple(slice(s // 4, 3 * s // 4) for s in shape[2:])].std().item()


@pytest.mark.parametrize("spatial_dims,shape", [(2, (1, 1, 128, 128)), (3, (1, 1, 64, 64, 64))])
def test_unet_upsampling_modes_and_the_stride2_grid(spatial_dims, shape):
    spreads = {}
    for mode in ("transposed", "blur", "nearest", "linear"):
        torch.manual_seed(0)
        net = UNetGenerator(spatial_dims=spatial_dims, channels=(4, 8, 16), dropout=0.0, norm="none",
                            final_activation="none", upsample=mode).eval()
        assert net(torch.zeros(1, 1, *(16,) * spatial_dims)).shape == (1, 1, *(16,) * spatial_dims)
        spreads[mode] = _interior_spread(net, shape)
    # a transposed conv paints a pattern on its stride-2 grid even for a constant input (these weights: 0.0075 in 3D,
    # 0.03 in 2D); the blur after it and the resize-convs leave the interior constant up to float rounding (< 4e-5)
    assert spreads["transposed"] > 2e-3, spreads
    for mode in ("blur", "nearest", "linear"):
        assert spreads[mode] < 1e-4, spreads


def test_unet_default_upsampling_keeps_the_reference_layout():
    plain = UNetGenerator(spatial_dims=2, channels=(4, 8, 8))
    assert plain.upsample == "transposed"
    assert isinstance(plain.decoder[0][1], nn.ConvTranspose2d) and "decoder.2.1.weight" in plain.state_dict()
    blur = UNetGenerator(spatial_dims=2, channels=(4, 8, 8), upsample="blur")
    # the blur is a fixed filter (a buffer kept out of the state): the reference U-Net's parameters, no more
    assert [p.shape for p in blur.parameters()] == [p.shape for p in plain.parameters()]
    assert not any("kernel" in key for key in blur.state_dict())
    resized = UNetGenerator(spatial_dims=2, channels=(4, 8, 8), upsample="nearest")
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in resized.modules())
    with pytest.raises(ValueError, match="upsample must be one of transposed, blur, nearest, linear, got 'cubic'"):
        UNetGenerator(upsample="cubic")
