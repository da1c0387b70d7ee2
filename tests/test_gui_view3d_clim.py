"""Per-channel contrast-limit spin boxes of the 3D view reach the vispy volumes."""

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("vispy")

pytestmark = pytest.mark.gui


@pytest.fixture
def view(qtbot):
    from cellpol_app.view3d import View3D

    v = View3D()
    qtbot.addWidget(v)
    planes = np.zeros((2, 4, 8, 8), np.uint16)
    planes[0, 1, 2, 3] = 1000
    planes[1, 2, 5, 5] = 3000
    v.set_volume(planes, [(10, 900), (20, 2500)], voxel_size=(1.0, 0.5, 0.5))
    return v


def test_spin_boxes_show_the_limits(view):
    (lo0, hi0), (lo1, hi1) = view.clim_spins
    assert (lo0.value(), hi0.value()) == (10, 900) and (lo1.value(), hi1.value()) == (20, 2500)
    assert hi0.maximum() == 1000 and hi1.maximum() == 3000  # up to the channel's maximum
    assert all(s.isEnabled() for pair in view.clim_spins for s in pair)


def test_editing_a_spin_box_sets_the_volume_clim(view):
    lo1, hi1 = view.clim_spins[1]
    hi1.setValue(1500)
    assert tuple(view.volumes[1].clim) == (20, 1500) and view.clims[1] == (20, 1500)
    lo1.setValue(300)
    assert tuple(view.volumes[1].clim) == (300, 1500)
    assert tuple(view.volumes[0].clim) == (10, 900)  # the other channel is untouched
    # Limits set in code show in the boxes, without a feedback loop.
    view.set_channel(0, clim=(50, 600))
    assert (view.clim_spins[0][0].value(), view.clim_spins[0][1].value()) == (50, 600)
    assert tuple(view.volumes[0].clim) == (50, 600)


def test_one_channel_image_disables_the_end_boxes(view):
    view.set_volume(np.ones((1, 2, 4, 4), np.uint16) * 7, [(0, 7)])
    assert view.clim_spins[0][1].value() == 7 and view.clim_spins[0][0].isEnabled()
    assert not any(s.isEnabled() for s in view.clim_spins[1])
