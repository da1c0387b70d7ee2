"""Test-time flips: mirrored passes averaged, identity first, offsets change sign."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from cellpol_core.detection.infer import flip_averaged, flip_axes, predict_image
from cellpol_core.detection.model import Thresholds
from cellpol_core.detection.predict import predict_files
from cellpol_core.errors import InputError
from cellpol_core.io.image import CellImage, write_ome_tiff
from cellpol_core.jobs import run_job

from test_infer import _blob_image, _grid_cells, _oracle_model


class MirrorNet(nn.Module):
    """Heatmaps = input; offset_x = x-gradient (flips sign when mirrored in x);
    embeddings = a ramp along x (not mirror-symmetric at all)."""

    def __init__(self, bias_x=0.0):
        super().__init__()
        self.bias_x = bias_x
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        grad_x = torch.zeros_like(x[:, :1])
        grad_x[..., 1:-1] = (x[:, :1, ..., 2:] - x[:, :1, ..., :-2]) / 2
        ramp = torch.arange(x.shape[-1], dtype=x.dtype).expand_as(x[:, :1]).clone()
        # bias_x makes the start heatmap lean to the right: not mirror-symmetric.
        return {"heatmap_start": x[:, :1] + self.bias_x * ramp, "heatmap_end": x[:, 1:2],
                "embed_start": ramp, "embed_end": ramp,
                "offset_y": torch.zeros_like(grad_x), "offset_x": grad_x}


def test_flip_axes():
    assert flip_axes(1, 3) == [()]
    assert flip_axes(2, 2) == [(), (-2, -1)]
    four = flip_axes(4, 2)
    assert four[0] == () and len(set(four)) == 4
    eight = flip_axes(8, 3)
    assert eight[0] == () and len(set(eight)) == 8 and sum(-3 in a for a in eight) == 4
    with pytest.raises(InputError, match="3D"):
        flip_axes(8, 2)
    with pytest.raises(InputError, match="one of 1, 2, 4, 8"):
        flip_axes(3, 3)


def test_averaging_keeps_an_equivariant_net_and_its_offset_signs():
    x = torch.rand(1, 2, 12, 16)
    net = MirrorNet()
    plain = flip_averaged(net, x, flip_axes(1, 2))
    avg = flip_averaged(net, x, flip_axes(4, 2))
    assert net.calls == 1 + 4
    # The x-gradient is mirror-equivariant only with the sign change: without
    # it the mirrored passes would cancel the offsets to ~0.
    interior = (..., slice(1, -1))
    torch.testing.assert_close(avg["offset_x"][interior], plain["offset_x"][interior])
    assert avg["offset_x"].abs().max() > 0.05
    torch.testing.assert_close(avg["heatmap_start"], plain["heatmap_start"])
    # Embeddings come from the unmirrored pass.
    torch.testing.assert_close(avg["embed_start"], plain["embed_start"])


def test_averaging_is_the_mean_of_the_mirrored_passes():
    x = torch.rand(1, 2, 6, 10, 14)
    net = MirrorNet(bias_x=0.1)
    avg = flip_averaged(net, x, flip_axes(2, 3))
    ramp = torch.arange(14, dtype=x.dtype)
    # Identity: x + b·ramp; half turn: x + b·(reversed ramp) mirrored back.
    identity_only = x[:, :1] + 0.1 * ramp
    expected_mirrored = x[:, :1] + 0.1 * (ramp + (13 - ramp)) / 2
    torch.testing.assert_close(avg["heatmap_start"], expected_mirrored)
    assert not torch.allclose(avg["heatmap_start"], identity_only)


def test_predict_with_flips_calls_the_net_per_mirror_and_finds_the_same_vectors():
    shape = (20, 70, 80)
    s, e = _grid_cells(shape, 2, 3, dz=True)
    img = CellImage(_blob_image(shape, s, e), voxel_size=(1.0, 1.0, 1.0),
                    channel_names=["nucleus", "golgi"])
    model = _oracle_model()
    calls = []
    forward = model.net.forward
    model.net.forward = lambda x: calls.append(1) or forward(x)
    one = run_job(predict_image(img, model, tile=(16, 128, 128)))
    n_plain = len(calls)
    eight = run_job(predict_image(img, model, tile=(16, 128, 128),
                                  thresholds=replace(model.thresholds, flips=8)))
    assert len(calls) == 9 * n_plain  # 1 plain run + 8 mirrored passes per tile
    assert len(one) == len(eight) == len(s)
    np.testing.assert_allclose(np.sort(eight.start, axis=0), np.sort(one.start, axis=0), atol=1e-4)


def test_thresholds_flips_round_trip_and_old_files():
    thr = Thresholds(flips=4)
    assert Thresholds.from_dict(thr.to_dict()).flips == 4
    old = thr.to_dict()
    del old["flips"]
    assert Thresholds.from_dict(old).flips == 1  # decoded as it was tuned
    for bad in (3, 0, "4", True):
        with pytest.raises(InputError, match="flips"):
            Thresholds.from_dict({**thr.to_dict(), "flips": bad})


def test_eight_flips_on_a_2d_model_are_refused_before_any_image_is_read(tmp_path):
    path = tmp_path / "cells.ome.tif"
    write_ome_tiff(path, np.zeros((2, 32, 32), np.uint16), voxel_size=(1.0, 1.0, 1.0),
                   channel_names=["nucleus", "golgi"])
    with pytest.raises(InputError, match="3D"):
        run_job(predict_files([path], outdir=tmp_path / "out", model=_oracle_model(2), flips=8))
    assert not (tmp_path / "out" / "cells_vectors.csv").exists()
