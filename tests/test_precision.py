"""Precision choice (fp32 / bf16 / auto) and bf16 inference against fp32."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch

from cellpol_core.detection import precision as P
from cellpol_core.detection.network import CellPolNet, autocast_context, device_description
from cellpol_core.detection.precision import (Precision, check_precision, cpu_bf16_unit,
                                              inference_net, resolve_precision)
from cellpol_core.errors import InputError


@pytest.mark.parametrize("flags, unit", [
    ({"avx512f", "amx_tile", "amx_bf16", "avx512_bf16"}, "AMX"),
    ({"avx512f", "avx512_bf16"}, "AVX-512 BF16"),
    ({"avx2", "fma"}, None),
    (set(), None),
])
def test_auto_picks_bf16_only_with_native_units(flags, unit):
    p = resolve_precision("auto", "cpu", flags=flags)
    assert p.unit == unit
    assert p.name == ("bf16" if unit else "fp32")
    assert p.dtype == (torch.bfloat16 if unit else torch.float32)
    assert p.notice is None
    assert resolve_precision("fp32", "cpu", flags=flags).name == "fp32"


def test_bf16_without_native_units_runs_emulated_with_a_notice():
    p = resolve_precision("bf16", "cpu", flags={"avx2"})
    assert p.bf16 and p.unit is None and p.label == "bf16 emulated"
    assert p.notice and "\n" not in p.notice and "emulated" in p.notice
    native = resolve_precision("BF16", "cpu", flags={"avx512_bf16"})
    assert native.bf16 and native.notice is None and native.label == "bf16/AVX-512 BF16"


@pytest.mark.parametrize("bad", ["fp16", "", "float32", None])
def test_unknown_precision_is_one_line_input_error(bad):
    with pytest.raises(InputError, match="unknown precision") as exc:
        resolve_precision(bad, "cpu", flags=set())
    assert "\n" not in str(exc.value)
    assert check_precision(" Auto ") == "auto"


def test_cuda_auto_follows_the_gpu(monkeypatch):
    monkeypatch.setattr(P, "_cuda_bf16", lambda: True)
    assert resolve_precision("auto", "cuda:0").label == "bf16/CUDA"
    monkeypatch.setattr(P, "_cuda_bf16", lambda: False)
    assert resolve_precision("auto", torch.device("cuda")).name == "fp32"


def test_cpu_flags_fallback_when_torch_cannot_tell(monkeypatch):
    monkeypatch.setattr(P, "_torch_cpu_bf16", lambda: (None, None))
    monkeypatch.setattr(P, "cpu_flags", lambda: frozenset({"avx512_bf16"}))
    assert cpu_bf16_unit() == "AVX-512 BF16"
    monkeypatch.setattr(P, "_torch_cpu_bf16", lambda: (True, True))
    assert cpu_bf16_unit() == "AMX"
    monkeypatch.setattr(P, "_torch_cpu_bf16", lambda: (False, False))
    assert cpu_bf16_unit() is None


def test_device_line_names_the_precision():
    n = torch.get_num_threads()
    amx = Precision("auto", "bf16", "AMX")
    assert device_description("cpu", amx) == f"CPU ({n} threads, bf16/AMX)"
    assert device_description("cpu", Precision("fp32", "fp32")) == f"CPU ({n} threads, fp32)"
    assert device_description("cpu") == f"CPU ({n} threads)"


def test_autocast_context_follows_the_choice(monkeypatch):
    assert isinstance(autocast_context("cpu", "fp32"), contextlib.nullcontext)
    monkeypatch.setattr(P, "cpu_bf16_unit", lambda flags=None: None)
    assert isinstance(autocast_context("cpu", "auto"), contextlib.nullcontext)
    monkeypatch.setattr(P, "cpu_bf16_unit", lambda flags=None: "AMX")
    # training on a CPU: "auto" stays fp32 (bit-reproducible), "bf16" opts in
    assert isinstance(autocast_context("cpu", "auto"), contextlib.nullcontext)
    conv = torch.nn.Conv3d(2, 4, 3, padding=1)
    x = torch.rand(1, 2, 4, 8, 8)
    with autocast_context("cpu", "bf16"):
        y = conv(x)
    assert y.dtype == torch.bfloat16
    # The weights stay float32 and get float32 gradients (the master copy).
    y.float().sum().backward()
    assert conv.weight.dtype == conv.weight.grad.dtype == torch.float32
    with pytest.raises(InputError):
        autocast_context("cpu", "half")


def test_inference_net_casts_once_and_leaves_the_original():
    net = CellPolNet(base_filters=4, depth=2, head_filters=4).fuse_for_inference()
    bf16 = Precision("bf16", "bf16", None)
    a = inference_net(net, bf16)
    assert a is inference_net(net, bf16)
    assert next(a.parameters()).dtype == torch.bfloat16
    assert next(net.parameters()).dtype == torch.float32
    assert inference_net(net, Precision("fp32", "fp32")) is net


def test_bf16_maps_match_fp32_on_a_fixed_input():
    torch.manual_seed(0)
    net = CellPolNet(base_filters=16, depth=2, head_filters=8).eval()
    for m in net.modules():  # non-trivial BatchNorm statistics to fold
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 2.0)
    fused = net.fuse_for_inference().to(memory_format=torch.channels_last_3d)
    x = torch.rand(1, 2, 8, 32, 32, generator=torch.Generator().manual_seed(1))
    x = x.contiguous(memory_format=torch.channels_last_3d)
    with torch.inference_mode():
        ref = fused(x)
        out = inference_net(fused, Precision("bf16", "bf16"))(x.to(torch.bfloat16))
    for k, v in ref.items():
        assert out[k].dtype == torch.float32  # the last 1x1 convolution runs in fp32
        scale = float(v.abs().max()) + 1e-6
        err = float((out[k].float() - v).abs().max())
        # bf16 keeps 8 significant bits: ~1 % of the range after a dozen layers.
        assert err < 0.03 * scale, (k, err, scale)


def test_bf16_decoding_matches_fp32_on_a_phantom():
    from cellpol_core.detection.infer import predict_image
    from cellpol_core.detection.model import load_model
    from cellpol_core.io.image import CellImage
    from cellpol_core.jobs import run_job
    from cellpol_core.synthetic.phantom import generate_phantom

    ph = generate_phantom(shape=(32, 192, 192), seed=5)
    image = CellImage(data=ph.image, voxel_size=ph.voxel_size, channel_names=ph.channel_names)
    model = load_model("demo")
    ref = run_job(predict_image(image, model, precision="fp32"))
    got = run_job(predict_image(image, model, precision="bf16"))
    assert len(ref) > 5
    assert abs(len(got) - len(ref)) <= 1
    from scipy.optimize import linear_sum_assignment

    cost = (np.linalg.norm(ref.start[:, None] - got.start[None], axis=2)
            + np.linalg.norm(ref.end[:, None] - got.end[None], axis=2))
    r, c = linear_sum_assignment(cost)
    same = cost[r, c] < 1.0
    # A few peaks near a threshold or pairing tie may flip; the rest stay put
    # (peaks are refined to sub-voxel positions; bf16 moves them ~0.03 voxel).
    assert same.sum() >= 0.85 * len(ref)
    assert np.median(cost[r, c][same]) < 0.1


def test_cli_rejects_an_unknown_precision_in_one_line(tmp_path, capsys):
    from cellpol_core.cli import main

    code = main(["predict", str(tmp_path / "a.tif"), "-o", str(tmp_path / "out"),
                 "--model", "demo", "--precision", "fp16"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "unknown precision" in err


def test_training_auto_is_fp32_on_a_cpu_and_bf16_on_request():
    # bf16 training on a CPU is opt-in: "auto" keeps training bit-reproducible there.
    from cellpol_core.detection.precision import resolve_precision

    amx = ["avx512f", "amx_bf16", "amx_tile"]
    assert resolve_precision("auto", "cpu", flags=amx).bf16
    assert not resolve_precision("auto", "cpu", flags=amx, training=True).bf16
    assert resolve_precision("bf16", "cpu", flags=amx, training=True).label == "bf16/AMX"
