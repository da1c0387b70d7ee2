"""The installation self-test (cellpol_core.selftest), --selftest, --version and the CPU fallback."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import cellpol_core
from cellpol_core import selftest
from cellpol_core.io.resources import bundled_models_dir, demo_vectors_path
from cellpol_core.io.vectors import read_vectors, write_vectors

REPO = Path(__file__).resolve().parent.parent


def pyproject_version() -> str:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    with open(REPO / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]["version"]


def _no_display_env():
    env = {k: v for k, v in os.environ.items()
           if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM", "CELLPOL_RESOURCES")}
    env["OMP_NUM_THREADS"] = "1"  # 2 shared cores: keep the subprocess from oversubscribing
    return env


def test_selftest_passes_on_the_bundled_demo():
    report = selftest.run_selftest()
    assert report.ok, report.format()
    assert report.problems == []
    # The demo model finds ~66 vectors and F1 ~0.82 at level 5; floors are well below.
    assert report.n_pred >= selftest.MIN_VECTORS
    assert report.n_gt == len(read_vectors(demo_vectors_path()))
    assert report.f1[5] >= 0.6
    assert set(report.f1) == set(range(14))
    assert report.f1[0] >= report.f1[13]  # level 0 is the loosest
    assert report.model == str(bundled_models_dir() / "nucleus-golgi-3d")
    import torch

    assert report.torch_version == torch.__version__
    assert report.device.startswith(("CPU", "GPU"))
    text = report.format()
    assert f"CellPol {cellpol_core.__version__} self-test" in text
    assert f"torch:   {torch.__version__}" in text
    assert f"F1 at level 5: {report.f1[5]:.3f}" in text
    assert text.endswith("self-test passed")


def test_selftest_fails_on_broken_weights(tmp_path):
    model = tmp_path / "broken"
    shutil.copytree(bundled_models_dir() / "nucleus-golgi-3d", model)
    (model / "weights_best.pt").write_bytes(b"not a torch file")
    report = selftest.run_selftest(model=model)
    assert not report.ok
    assert len(report.problems) == 1
    problem = report.problems[0]
    assert problem.startswith("load the model: InputError:") and "weights_best.pt" in problem
    assert "\n" not in problem
    assert report.format().endswith("self-test FAILED")


def test_selftest_fails_on_missing_model(tmp_path):
    report = selftest.run_selftest(model=tmp_path / "nothing" / "here")
    assert [p.split(":")[0] for p in report.problems] == ["load the model"]


def test_selftest_fails_when_figures_are_below_the_floors(tmp_path):
    # Ground truth moved 40 voxels away: nothing matches, so F1 is 0.
    gt = read_vectors(demo_vectors_path())
    gt.start[:, 2] = (gt.start[:, 2] + 40) % 192
    gt.end[:, 2] = (gt.end[:, 2] + 40) % 192
    wrong = tmp_path / "wrong_vectors.csv"
    write_vectors(wrong, gt)
    report = selftest.run_selftest(vectors=wrong, min_vectors=1000)
    assert not report.ok
    assert report.f1[5] is not None and report.f1[5] < 0.2
    assert len(report.problems) == 2
    assert re.fullmatch(r"only \d+ vectors predicted \(at least 1000 expected\)", report.problems[0])
    assert re.fullmatch(r"F1 at level 5 is 0\.\d{3} \(at least 0\.40 expected\)", report.problems[1])


def test_cuda_build_without_gpu_says_so(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    report = selftest.SelftestReport()
    device = selftest._device_info(report)
    assert device.type == "cpu"
    assert report.device.startswith("CPU (")
    assert report.cuda_note == "no CUDA GPU found (torch built for CUDA 12.8)"
    assert "device:  CPU (" in report.format() and "no CUDA GPU found" in report.format()

    monkeypatch.setattr(torch.version, "cuda", None)  # a CPU build: nothing is missing
    report = selftest.SelftestReport()
    selftest._device_info(report)
    assert report.cuda_note == ""


def test_status_bar_label_for_cuda_build_without_gpu(monkeypatch):
    pytest.importorskip("PySide6")
    import types

    from cellpol_app import viewer

    fake = types.SimpleNamespace(cuda=types.SimpleNamespace(is_available=lambda: False),
                                 version=types.SimpleNamespace(cuda="12.8"))
    monkeypatch.setitem(sys.modules, "torch", fake)
    monkeypatch.setattr(viewer, "_device_label", None)
    assert viewer.compute_device_label() == "CPU (no CUDA GPU found)"
    fake.version.cuda = None
    monkeypatch.setattr(viewer, "_device_label", None)
    assert viewer.compute_device_label() == "CPU"


@pytest.mark.slow  # a fresh Python importing torch and predicting: about 5 s
def test_gui_entry_selftest_runs_without_display_or_qt():
    code = ("import sys\n"
            "from cellpol_app.main import main\n"
            "rc = main(['--selftest'])\n"
            "qt = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('PySide6', 'shiboken6', 'vispy', 'pyqtgraph', 'superqt'))\n"
            "print('qt modules:', qt)\n"
            "sys.exit(rc)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=_no_display_env(), timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "self-test passed" in proc.stdout
    assert "qt modules: []" in proc.stdout
    assert re.search(r"^F1 at level 5: 0\.\d{3} \(at least 0\.40 needed\)$", proc.stdout, re.M)


def test_gui_entry_selftest_exit_code_on_failure(tmp_path, capsys):
    from cellpol_app.main import main

    assert main(["--selftest", "--model", str(tmp_path / "missing")]) == 1
    out = capsys.readouterr().out
    assert "FAILED:  load the model: InputError:" in out
    assert out.rstrip().endswith("self-test FAILED")


def test_versions_come_from_pyproject(capsys):
    version = pyproject_version()
    assert cellpol_core.__version__ == version
    assert cellpol_core.pyproject_version() == version

    from cellpol_core.cli import main

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"cellpol {version}"

    pytest.importorskip("PySide6")
    from cellpol_app.main import main as gui_main

    with pytest.raises(SystemExit):
        gui_main(["--version"])
    assert capsys.readouterr().out.strip() == f"CellPol {version}"
