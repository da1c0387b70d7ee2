"""Tests of cellpol_core.detection.network: shapes, size rule, presets, fusion, devices."""

import contextlib
import json
import math

import pytest
import torch

from cellpol_core.errors import InputError
from cellpol_core.detection.network import (
    ARCHITECTURES,
    DEFAULT_ARCHITECTURE,
    CellPolNet,
    autocast_context,
    build_network,
    device_description,
    prepare_for_device,
    select_device,
    to_device_input,
)

KEYS = ("heatmap_start", "heatmap_end", "embed_start", "embed_end")


@pytest.fixture(autouse=True)
def _one_thread():
    # The tensors here are tiny: a second thread only waits at barriers, and
    # on the shared 2-core machine it slows the tests down several times.
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _randomise_batch_norms(net, seed=1):
    """Non-trivial eval statistics, so that folding them is really tested."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                c = m.num_features
                m.running_mean.copy_(torch.rand(c, generator=g) * 2 - 1)
                m.running_var.copy_(torch.rand(c, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(c, generator=g) * 3 - 1.5)
                m.bias.copy_(torch.rand(c, generator=g) * 2 - 1)


def _expected_param_count(cin, base, depth, head, embedding, dims=3, pool_z=None):
    """Parameters of the architecture, counted from its description."""
    k = 3**dims
    pool_z = [True] * depth if pool_z is None else pool_z

    def conv(a, b, taps=k):
        return taps * a * b + b

    def bn(c):
        return 2 * c

    f = [base * 2**i for i in range(depth + 1)]
    n = conv(cin, f[0]) + conv(f[0], f[0])
    for i in range(depth):  # down: BN after pooling, double conv
        n += bn(f[i]) + conv(f[i], f[i + 1]) + conv(f[i + 1], f[i + 1])
    for i in range(depth):  # up: transposed conv, BN after concat, double conv
        up_taps = 2**dims if dims == 2 or pool_z[i] else 2 ** (dims - 1)
        n += conv(f[i + 1], f[i], taps=up_taps) + bn(2 * f[i])
        n += conv(2 * f[i], f[i]) + conv(f[i], f[i])
    branches = 2 if embedding else 1
    per_head = conv(f[0], head) + bn(head) + branches * (conv(head, head) + conv(head, 1, taps=1))
    return n + 2 * per_head


def _n_params(net):
    return sum(p.numel() for p in net.parameters())


# -- shapes -----------------------------------------------------------------


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("embedding", [True, False])
def test_output_shapes_3d(depth, embedding):
    torch.manual_seed(0)
    net = CellPolNet(base_filters=4, depth=depth, embedding=embedding).eval()
    size = (2**depth, 2 * 2**depth, 3 * 2**depth)
    x = torch.rand(2, 2, *size)
    with torch.no_grad():
        out = net(x)
    expected = KEYS if embedding else KEYS[:2]
    assert tuple(out) == expected == net.output_keys
    for key in expected:
        assert out[key].shape == (2, 1) + size
    for key in KEYS[:2]:
        assert out[key].min() >= 0.0 and out[key].max() <= 1.0


@pytest.mark.parametrize("embedding", [True, False])
def test_output_shapes_2d(embedding):
    torch.manual_seed(0)
    net = CellPolNet(spatial_dims=2, in_channels=3, base_filters=4, depth=3,
                     embedding=embedding).eval()
    x = torch.rand(1, 3, 16, 24)
    with torch.no_grad():
        out = net(x)
    assert set(out) == set(KEYS if embedding else KEYS[:2])
    for value in out.values():
        assert value.shape == (1, 1, 16, 24)
    assert 0.0 <= out["heatmap_end"].min() and out["heatmap_end"].max() <= 1.0


def test_outputs_are_wired_to_their_heads():
    # Zero output weights leave the biases: sigmoid(b) for heatmaps, b for embeddings.
    net = CellPolNet(base_filters=4, depth=2).eval()
    values = {"heat_out": (1.0, -2.0), "embed_out": (3.0, -4.0)}
    with torch.no_grad():
        for name, (b_start, b_end) in values.items():
            for head, b in ((net.head_start, b_start), (net.head_end, b_end)):
                getattr(head, name).weight.zero_()
                getattr(head, name).bias.fill_(b)
    x = torch.rand(1, 2, 4, 8, 8)
    for model in (net, net.fuse_for_inference()):
        with torch.no_grad():
            out = model(x)
        assert torch.allclose(out["heatmap_start"], torch.full_like(out["heatmap_start"],
                                                                    1 / (1 + math.exp(-1.0))))
        assert torch.allclose(out["heatmap_end"], torch.full_like(out["heatmap_end"],
                                                                  1 / (1 + math.exp(2.0))))
        assert torch.allclose(out["embed_start"], torch.full_like(out["embed_start"], 3.0))
        assert torch.allclose(out["embed_end"], torch.full_like(out["embed_end"], -4.0))


# -- input-size rule ----------------------------------------------------------


def test_size_rule_default_pools_z_everywhere():
    net = CellPolNet(base_filters=2, depth=3)
    assert net.size_multiple() == (8, 8, 8)
    assert net.valid_input_size((8, 16, 24))
    assert net.valid_input_size((64, 128, 128))
    assert not net.valid_input_size((4, 16, 16))  # z not a multiple of 8
    assert not net.valid_input_size((8, 12, 16))  # y not a multiple of 8
    assert not net.valid_input_size((0, 8, 8))
    assert not net.valid_input_size((8, 8))  # wrong number of axes


def test_size_rule_anisotropic_pool_z():
    net = CellPolNet(base_filters=2, depth=3, pool_z=(True, False, False))
    assert net.size_multiple() == (2, 8, 8)
    assert net.valid_input_size((2, 8, 8))
    assert net.valid_input_size((6, 16, 8))
    assert not net.valid_input_size((3, 8, 8))
    net.eval()
    with torch.no_grad():
        out = net(torch.rand(1, 2, 6, 16, 8))
    assert out["heatmap_start"].shape == (1, 1, 6, 16, 8)
    assert CellPolNet(base_filters=2, depth=4, pool_z=False).size_multiple() == (1, 16, 16)


def test_size_rule_2d():
    net = CellPolNet(spatial_dims=2, base_filters=2, depth=4)
    assert net.size_multiple() == (16, 16)
    assert net.valid_input_size((32, 16))
    assert not net.valid_input_size((32, 8))
    assert not net.valid_input_size((1, 32, 16))


def test_invalid_inputs_raise_value_error():
    net = CellPolNet(base_filters=2, depth=2).eval()
    with pytest.raises(ValueError, match=r"not valid.*multiple of \(4, 4, 4\)"):
        net(torch.rand(1, 2, 4, 6, 8))
    with pytest.raises(ValueError, match="2 input channels"):
        net(torch.rand(1, 3, 4, 4, 4))
    with pytest.raises(ValueError, match=r"\(B, C, Z, Y, X\)"):
        net(torch.rand(2, 4, 4, 4))
    with pytest.raises(ValueError, match="not valid"):
        net.fuse_for_inference()(torch.rand(1, 2, 4, 4, 2))


def test_invalid_constructor_arguments():
    with pytest.raises(ValueError, match="pool_z needs one entry per pooling level"):
        CellPolNet(depth=3, pool_z=(True, False))
    with pytest.raises(ValueError, match="3D networks only"):
        CellPolNet(spatial_dims=2, pool_z=(True,) * 5)
    with pytest.raises(ValueError, match="dropout"):
        CellPolNet(dropout=1.0)
    with pytest.raises(ValueError, match="spatial_dims"):
        CellPolNet(spatial_dims=1)
    with pytest.raises(ValueError, match="depth"):
        CellPolNet(depth=0)


# -- configuration and presets ------------------------------------------------


def test_config_round_trip_rebuilds_the_same_network():
    torch.manual_seed(0)
    net = CellPolNet(in_channels=2, base_filters=3, depth=2, head_filters=5, embedding=True,
                     dropout=0.2, pool_z=(False, True))
    cfg = json.loads(json.dumps(net.config()))  # model folders store it as JSON
    assert cfg == {"in_channels": 2, "spatial_dims": 3, "base_filters": 3, "depth": 2,
                   "head_filters": 5, "embedding": True, "dropout": 0.2, "batch_norm": True,
                   "pool_z": [False, True]}
    _randomise_batch_norms(net)
    torch.manual_seed(123)  # a different initialisation, overwritten below
    rebuilt = CellPolNet(**cfg)
    assert _n_params(rebuilt) == _n_params(net)
    assert _n_params(net) == _expected_param_count(2, 3, 2, 5, True, pool_z=[False, True])
    rebuilt.load_state_dict(net.state_dict())
    net.eval()
    rebuilt.eval()
    x = torch.rand(1, 2, 2, 8, 12)
    with torch.no_grad():
        a, b = net(x), rebuilt(x)
    for key in KEYS:
        assert torch.equal(a[key], b[key])


def test_config_round_trip_2d_and_defaults():
    net = CellPolNet(spatial_dims=2, base_filters=4, depth=2, embedding=False,
                     batch_norm=False, dropout=0.0)
    cfg = net.config()
    assert cfg["pool_z"] is None and cfg["head_filters"] == 4
    assert CellPolNet(**cfg).config() == cfg
    assert _n_params(net) == _n_params(CellPolNet(**cfg))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())


def test_paper_preset_has_the_papers_parameter_count():
    with torch.device("meta"):
        net = build_network("paper")
    n = _n_params(net)
    assert n == _expected_param_count(2, 32, 5, 32, True) == 90_647_332
    assert round(n / 1e6, 1) == 90.6
    assert net.config()["base_filters"] == 32 and net.depth == 5 and net.head_filters == 32


def test_presets():
    assert DEFAULT_ARCHITECTURE == "light"
    assert {"paper", "light", "ctrdet-paper", "ctrdet-light"} <= set(ARCHITECTURES)
    with torch.device("meta"):
        for name, kwargs in ARCHITECTURES.items():
            net = build_network(name)
            assert net.embedding == (not name.startswith("ctrdet"))
            assert net.base_filters == kwargs["base_filters"]
            assert net.valid_input_size((64, 128, 128))
            assert _n_params(net) == _expected_param_count(
                2, net.base_filters, net.depth, net.head_filters, net.embedding)
        light = build_network("light")
        paper = build_network("paper")
        assert _n_params(light) < _n_params(paper) / 10
        net2d = build_network("ctrdet-light", in_channels=3, spatial_dims=2)
    assert net2d.spatial_dims == 2 and net2d.in_channels == 3 and not net2d.embedding
    with pytest.raises(InputError, match="unknown network architecture 'huge'"):
        build_network("huge")


# -- memory format and inference fusion -----------------------------------------


def test_channels_last_3d_matches_contiguous():
    torch.manual_seed(0)
    net = CellPolNet(base_filters=8, depth=2).eval()
    _randomise_batch_norms(net)
    x = torch.rand(2, 2, 8, 12, 16)
    with torch.no_grad():
        ref = net(x)
        cl = prepare_for_device(net, "cpu")
        assert cl.inc.conv1.weight.is_contiguous(memory_format=torch.channels_last_3d)
        out = cl(to_device_input(x, "cpu", 3))
    for key in KEYS:
        assert torch.allclose(out[key], ref[key], atol=1e-5)


@pytest.mark.parametrize("spatial_dims,embedding,in_channels", [
    (3, True, 2), (3, False, 1), (2, True, 3), (2, False, 5)])
def test_fused_inference_matches_eval(spatial_dims, embedding, in_channels):
    torch.manual_seed(0)
    net = CellPolNet(in_channels=in_channels, spatial_dims=spatial_dims, base_filters=8,
                     depth=3, head_filters=6, embedding=embedding)
    _randomise_batch_norms(net)
    net.eval()
    size = (8, 16, 24) if spatial_dims == 3 else (16, 24)
    x = torch.rand(2, in_channels, *size) * 3
    fused = net.fuse_for_inference()
    with torch.inference_mode():
        ref = net(x)
        out = fused(x)
        out_cl = prepare_for_device(net.fuse_for_inference(), "cpu")(
            to_device_input(x, "cpu", spatial_dims))
    assert set(out) == set(ref)
    for key in ref:
        assert torch.allclose(out[key], ref[key], atol=1e-4), key
        assert torch.allclose(out_cl[key], ref[key], atol=1e-4), key
    # The fused copy has no BatchNorm left in the heads or up-sampling path.
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                   for m in list(fused.up.modules()))
    # The original is untouched and can still train.
    assert all(p.requires_grad for p in net.parameters())
    assert net.head_start is not None and net.up[0].bn.num_features == 16


def test_fused_inference_without_batch_norm():
    torch.manual_seed(0)
    net = CellPolNet(base_filters=4, depth=2, batch_norm=False).eval()
    x = torch.rand(1, 2, 4, 8, 8)
    with torch.no_grad():
        ref, out = net(x), net.fuse_for_inference()(x)
    for key in KEYS:
        assert torch.allclose(out[key], ref[key], atol=1e-5)


# -- training -----------------------------------------------------------------


@pytest.mark.parametrize("embedding", [True, False])
def test_gradients_reach_every_parameter(embedding):
    torch.manual_seed(0)
    net = CellPolNet(base_filters=4, depth=2, embedding=embedding).train()
    x = torch.rand(2, 2, 4, 8, 8)
    out = net(x)
    loss = sum((v - 0.3).pow(2).mean() for v in out.values())
    loss.backward()
    for name, p in net.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_dropout_only_in_train_mode():
    torch.manual_seed(0)
    net = CellPolNet(base_filters=4, depth=2, dropout=0.5)
    x = torch.rand(1, 2, 4, 8, 8)
    net.eval()
    with torch.no_grad():
        a, b = net(x), net(x)
    assert torch.equal(a["heatmap_start"], b["heatmap_start"])
    assert sum(isinstance(m, torch.nn.Dropout) for m in net.modules()) == 2  # levels 1, up 1


# -- devices ------------------------------------------------------------------


def test_select_device_cpu_and_auto(monkeypatch):
    assert select_device("cpu") == torch.device("cpu")
    assert select_device(torch.device("cpu")) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert select_device("auto") == torch.device("cpu")
    assert select_device() == torch.device("cpu")


def test_select_device_cuda_unavailable_raises(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InputError, match="CUDA requested but not available"):
        select_device("cuda")
    with pytest.raises(InputError, match="CUDA requested but not available"):
        select_device("cuda:0")
    with pytest.raises(InputError, match="unknown device"):
        select_device("gpu-please")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without a GPU")
def test_select_device_cuda_raises_on_this_machine():
    with pytest.raises(InputError, match="CUDA requested but not available"):
        select_device("cuda")


def test_device_description(monkeypatch):
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert device_description("cpu") == "CPU (1 threads)"
    finally:
        torch.set_num_threads(old)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Fake H100")
    assert device_description(torch.device("cuda")) == "GPU: Fake H100"


def test_prepare_for_device_2d_uses_channels_last():
    net = prepare_for_device(CellPolNet(spatial_dims=2, base_filters=4, depth=1), "cpu")
    assert net.inc.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    x = to_device_input(torch.rand(1, 2, 4, 6), "cpu", 2)
    assert x.is_contiguous(memory_format=torch.channels_last)


def test_autocast_context(monkeypatch):
    from cellpol_core.detection import precision

    ctx = autocast_context("cpu", "fp32")
    assert isinstance(ctx, contextlib.nullcontext)
    with ctx:
        assert not torch.is_autocast_enabled("cpu")
    cpu = autocast_context("cpu", "bf16")
    assert isinstance(cpu, torch.autocast)
    assert cpu.device == "cpu" and cpu.fast_dtype == torch.bfloat16
    monkeypatch.setattr(precision, "_cuda_bf16", lambda: True)
    with pytest.warns(UserWarning) if not torch.cuda.is_available() else contextlib.nullcontext():
        gpu = autocast_context("cuda")
    assert isinstance(gpu, torch.autocast)
    assert gpu.device == "cuda" and gpu.fast_dtype == torch.bfloat16


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_channel_affine_channels_last_matches_broadcast(dtype):
    from cellpol_core.detection.network import _ChannelAffine

    bn = torch.nn.BatchNorm3d(12).eval()
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2.0)
        bn.bias.uniform_(-1.0, 1.0)
        bn.running_mean.uniform_(-1.0, 1.0)
        bn.running_var.uniform_(0.5, 2.0)
    aff = _ChannelAffine(bn).to(dtype)
    x = torch.rand(2, 12, 3, 5, 6).to(dtype)
    ref = aff(x.clone())  # contiguous: the broadcast path
    cl = x.contiguous(memory_format=torch.channels_last_3d)
    out = aff(cl)
    assert out.data_ptr() == cl.data_ptr()  # in place
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    torch.testing.assert_close(ref.float(), bn(x.float()), rtol=2e-2, atol=2e-2)
