"""The one path of network inputs to the device, and the huge-pages setting."""

import os

import numpy as np
import pytest
import torch

from cellpol_core.detection.network import CellPolNet, enable_huge_pages, to_device_input


def test_array_input_is_wrapped_without_a_copy_in_the_default_layout():
    x = np.arange(2 * 2 * 4 * 6 * 8, dtype=np.float32).reshape(2, 2, 4, 6, 8)
    t = to_device_input(x, "cpu")
    assert t.dtype == torch.float32 and t.is_contiguous()
    x[0, 0, 0, 0, 0] = -5.0  # shares the array's memory
    assert t[0, 0, 0, 0, 0].item() == -5.0


@pytest.mark.parametrize("dims, fmt", [(3, torch.channels_last_3d), (2, torch.channels_last)])
def test_prepared_networks_get_channels_last_inputs_on_the_cpu(dims, fmt):
    shape = (1, 2, 4, 8, 8) if dims == 3 else (1, 2, 8, 8)
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    t = to_device_input(x, torch.device("cpu"), dims)
    assert t.is_contiguous(memory_format=fmt) and not t.is_contiguous()
    np.testing.assert_array_equal(t.numpy(), x)
    b = to_device_input(torch.from_numpy(x), "cpu", dims, dtype=torch.bfloat16)
    assert b.dtype == torch.bfloat16 and b.is_contiguous(memory_format=fmt)


def test_huge_pages_are_asked_for_before_the_network_allocates(monkeypatch):
    monkeypatch.delenv("THP_MEM_ALLOC_ENABLE", raising=False)
    CellPolNet(spatial_dims=2, base_filters=2, depth=1, embedding=False)
    assert os.environ["THP_MEM_ALLOC_ENABLE"] == "1"
    # A value the user chose is kept.
    monkeypatch.setenv("THP_MEM_ALLOC_ENABLE", "0")
    enable_huge_pages()
    assert os.environ["THP_MEM_ALLOC_ENABLE"] == "0"
