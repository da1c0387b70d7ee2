"""A batch of images loads its model once: predict_files and the app's Predict all."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from cellpol_core.detection import model as model_module
from cellpol_core.jobs import run_job


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    from cellpol_core.io.image import write_ome_tiff
    from cellpol_core.synthetic.phantom import generate_phantom

    folder = tmp_path_factory.mktemp("batch")
    paths = []
    for seed in (1, 2, 3):
        ph = generate_phantom(shape=(16, 64, 64), seed=seed)
        path = folder / f"img{seed}.ome.tif"
        write_ome_tiff(path, ph.image, voxel_size=ph.voxel_size, channel_names=ph.channel_names)
        paths.append((path, ph.voxel_size))
    return paths


@pytest.fixture
def load_calls(monkeypatch):
    calls = []
    real = model_module.load_model

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(model_module, "load_model", counting)
    return calls


def test_predict_files_loads_the_model_once(images, load_calls, tmp_path):
    from cellpol_core.detection.predict import predict_files

    written = run_job(predict_files([p for p, _ in images], outdir=tmp_path, model="demo",
                                    device="cpu", precision="fp32"))
    assert len(written) == 3 and all(p.exists() for p in written)
    assert len(load_calls) == 1


def test_predict_files_takes_a_loaded_model(images, load_calls, tmp_path):
    from cellpol_core.detection.predict import predict_files

    loaded = model_module.load_model("demo")
    load_calls.clear()
    d_max = loaded.thresholds.d_max_um
    written = run_job(predict_files([images[0][0]], outdir=tmp_path, model=loaded, d_max_um=5.0))
    assert len(written) == 1 and load_calls == []
    assert loaded.thresholds.d_max_um == d_max  # the caller's model is left as it was


def test_predict_all_loads_the_model_once(images, load_calls, tmp_path):
    from cellpol_app.batch_predict import predict_project

    entries = [SimpleNamespace(path=p, channels=(0, 1), voxel_size=vs) for p, vs in images]
    project = SimpleNamespace(images=entries, root=tmp_path, image_path=lambda e: e.path)
    done = run_job(predict_project(project, model="demo", device="cpu"))
    assert [p for p, _ in done] == [p for p, _ in images]
    assert all(csv.exists() for _, csv in done)
    assert len(load_calls) == 1
