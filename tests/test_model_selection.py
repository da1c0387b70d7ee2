"""Which bundled model `predict` picks when given neither --model nor --method."""

from pathlib import Path

import numpy as np
import pytest

from cellpol_core.cli import main
from cellpol_core.detection.model import find_model
from cellpol_core.errors import InputError
from cellpol_core.io import resources
from cellpol_core.io.image import write_ome_tiff


def _fake_models(root, names):
    for name in names:
        (root / "models" / name).mkdir(parents=True)
        (root / "models" / name / "config.json").write_text('{"schema_version": 1}')
    return root


@pytest.fixture
def bundle(tmp_path, monkeypatch):
    root = _fake_models(tmp_path / "res", ["nucleus-golgi-3d", "nucleus-golgi-2d",
                                            "cytoplasm-nucleus-2d"])
    monkeypatch.setenv(resources.ENV_VAR, str(root))
    return root


def test_default_names_by_dimensions_and_structures(bundle):
    assert resources.default_model_name(3) == "nucleus-golgi-3d"
    assert resources.default_model_name(2) == "nucleus-golgi-2d"
    assert resources.default_model_name(2, ("Cytoplasm", "NUCLEUS")) == "cytoplasm-nucleus-2d"
    with pytest.raises(InputError, match="no bundled model for 3D cytoplasm→nucleus"):
        resources.default_model_name(3, ("cytoplasm", "nucleus"))
    with pytest.raises(InputError, match="no bundled model for 2D nucleus→centrosome"):
        resources.default_model_name(2, ("nucleus", "centrosome"))


def test_demo_is_an_alias_of_the_3d_default_until_it_has_its_own_folder(bundle):
    assert find_model("nucleus-golgi-3d") == bundle / "models" / "nucleus-golgi-3d"
    assert find_model("demo") == bundle / "models" / "nucleus-golgi-3d"
    assert "demo" in resources.bundled_model_names()
    _fake_models(bundle, ["demo"])
    assert find_model("demo") == bundle / "models" / "demo"


def test_missing_bundled_model_is_one_line(tmp_path, monkeypatch):
    root = _fake_models(tmp_path / "res", ["nucleus-golgi-3d"])
    monkeypatch.setenv(resources.ENV_VAR, str(root))
    with pytest.raises(InputError, match="nucleus-golgi-2d.*not installed"):
        resources.default_model_name(2)
    with pytest.raises(InputError, match="bundled: demo, nucleus-golgi-3d"):
        find_model("nucleus-golgi-2d")


@pytest.fixture
def captured(monkeypatch):
    """Replace the prediction itself: record the model predict_files was given."""
    seen = {}

    def fake_predict_files(paths, *, outdir, method, model, **kwargs):
        seen.update(method=method, model=model)
        return []
        yield  # a job generator

    monkeypatch.setattr("cellpol_core.cli.predict.predict_files", fake_predict_files)
    return seen


def _image(path, shape):
    write_ome_tiff(path, np.zeros((2,) + shape, np.uint16),
                   voxel_size=(1.0, 0.5, 0.5),
                   channel_names=("a", "b"))
    return path


@pytest.mark.parametrize("shape, extra, expected", [
    ((8, 32, 32), [], "nucleus-golgi-3d"),
    ((32, 32), [], "nucleus-golgi-2d"),
    ((32, 32), ["--structures", "cytoplasm", "nucleus"], "cytoplasm-nucleus-2d"),
])
def test_predict_picks_and_names_the_bundled_model(bundle, captured, tmp_path, capsys, shape,
                                                   extra, expected):
    img = _image(tmp_path / "img.ome.tif", shape)
    main(["predict", str(img), "-o", str(tmp_path / "out")] + extra)
    assert captured == {"method": "model", "model": expected}
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if "bundled model" in ln]
    assert len(lines) == 1 and expected in lines[0]


def test_predict_keeps_explicit_choices(bundle, captured, tmp_path, capsys):
    img = _image(tmp_path / "img.ome.tif", (32, 32))
    main(["predict", str(img), "-o", str(tmp_path / "o1"), "--method", "otsu"])
    assert captured["method"] == "otsu" and captured["model"] is None
    main(["predict", str(img), "-o", str(tmp_path / "o2"), "--model", "demo"])
    assert captured["model"] == "demo"
    assert "bundled model" not in capsys.readouterr().err


def test_predict_without_a_fitting_model_exits_2(tmp_path, monkeypatch, captured, capsys):
    root = _fake_models(tmp_path / "res", ["nucleus-golgi-3d"])
    monkeypatch.setenv(resources.ENV_VAR, str(root))
    img = _image(tmp_path / "img.ome.tif", (32, 32))
    assert main(["predict", str(img), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--method otsu" in err[0]
    assert captured == {}


HUVEC = Path(__file__).resolve().parents[2] / "shared" / "data" / "huvec_ecs.tif"


@pytest.mark.skipif(not HUVEC.exists(), reason="shared real image not available")
def test_bundled_2d_model_on_the_real_huvec_image(tmp_path):
    """nucleus-golgi-2d, chosen by predict itself, finds the whole cells Otsu finds, in
    directions close to Otsu's, with few extra vectors (the issue's real-data target)."""
    import importlib.util

    from cellpol_core.cli import main
    from cellpol_core.io.image import read_image
    from cellpol_core.io.vectors import read_vectors

    spec = importlib.util.spec_from_file_location(
        "huvec_figure", Path(__file__).resolve().parents[1] / "scripts" / "huvec_figure.py")
    fig = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fig)
    for method, out in ((None, "model"), ("otsu", "otsu")):
        args = ["predict", str(HUVEC), "--channels", "2", "0", "-o", str(tmp_path / out)]
        assert main(args + (["--method", method] if method else [])) == 0
    model = read_vectors(tmp_path / "model" / "huvec_ecs_vectors.csv")
    otsu = read_vectors(tmp_path / "otsu" / "huvec_ecs_vectors.csv")
    image = read_image(HUVEC)
    stats = fig.compare(model, otsu, image.spatial_shape, np.asarray(image.voxel_size),
                        border_um=8.0, match_um=6.0)
    assert stats["model_whole"] >= 7 and stats["matched"] >= 6, stats
    assert max(stats["angle_diffs"]) <= 35.0, stats
    assert stats["extra"] <= 3, stats
