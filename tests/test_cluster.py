"""Prediction on Dask: batch over files, blockwise volumes, worker failures, cluster specs."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("distributed")
pytest.importorskip("zarr")

from cellpol_core.cli import main  # noqa: E402
from cellpol_core.detection import blockwise, cluster  # noqa: E402
from cellpol_core.detection.infer import predict_image  # noqa: E402
from cellpol_core.detection.model import LoadedModel, ModelConfig, Thresholds  # noqa: E402
from cellpol_core.detection.predict import predict_files  # noqa: E402
from cellpol_core.errors import InputError  # noqa: E402
from cellpol_core.io.image import read_image, write_ome_tiff  # noqa: E402
from cellpol_core.io.ome_zarr import write_ome_zarr  # noqa: E402
from cellpol_core.io.vectors import read_vectors  # noqa: E402
from cellpol_core.jobs import run_job  # noqa: E402
from cellpol_core.synthetic.phantom import generate_phantom  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from test_infer import Oracle  # noqa: E402


@pytest.fixture(scope="module")
def client():
    # Worker threads in this process: the Dask code path, without process start-up costs.
    with cluster.open_client("local:2", processes=False) as c:
        yield c


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    folder = tmp_path_factory.mktemp("phantoms")
    paths = []
    for seed in range(3):
        ph = generate_phantom(shape=(24, 96, 96), seed=seed)
        path = folder / f"cells_{seed}.ome.tif"
        write_ome_tiff(path, ph.image, voxel_size=ph.voxel_size, channel_names=ph.channel_names)
        paths.append(path)
    return paths


def _oracle(voxel_size):
    """Heatmaps = the input channels: a deterministic model that needs no training."""
    cfg = ModelConfig(network={}, spatial_dims=3, voxel_size=voxel_size, radii=(3.0, 2.0))
    thr = Thresholds(tau=(0.5, 0.5), d_min_um=(4.0, 3.0), d_max_um=10.0, delta=2.0)
    return LoadedModel(net=Oracle(3), config=cfg, thresholds=thr, path=None)


def _same_vectors(a, b, atol=0.01):
    assert len(a) == len(b)
    ka, kb = np.lexsort(a.start.T), np.lexsort(b.start.T)
    np.testing.assert_allclose(a.start[ka], b.start[kb], atol=atol)
    np.testing.assert_allclose(a.end[ka], b.end[kb], atol=atol)


def test_no_dask_without_cluster():
    code = ("import sys; from cellpol_core.cli import build_parser; build_parser(); "
            "import cellpol_core.detection.predict, cellpol_core.io.image; "
            "print(sorted(m for m in ('dask', 'distributed', 'zarr') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("method", ["otsu", "model"])
def test_batch_equals_serial(tmp_path, phantoms, client, method):
    kw = {"model": "demo"} if method == "model" else {"method": "otsu"}
    serial = run_job(predict_files(phantoms, outdir=tmp_path / "serial", **kw))
    events = []
    done = run_job(predict_files(phantoms, outdir=tmp_path / "dask", client=client, **kw),
                   events.append)
    assert done.failed == [] and len(done) == len(serial) == 3
    for a in serial:
        b = tmp_path / "dask" / a.name
        assert a.read_text() == b.read_text()
    counts = [e.step for e in events if e.stage == "predict"]
    assert counts[-1] == 3 and counts == sorted(counts)


def test_failures_reported_others_go_on(tmp_path, phantoms, client, capsys):
    bad = tmp_path / "broken.tif"
    bad.write_text("not a tiff")
    nocal = tmp_path / "nocal.tif"
    import tifffile

    tifffile.imwrite(nocal, np.zeros((2, 8, 16, 16), np.uint16))  # no voxel size
    paths = [phantoms[0], bad, phantoms[1], nocal]
    res = run_job(predict_files(paths, outdir=tmp_path / "out", method="otsu", client=client))
    assert sorted(p.name for p in res) == ["cells_0_vectors.csv", "cells_1_vectors.csv"]
    assert {p.name for p, _, _ in res.failed} == {"broken.tif", "nocal.tif"}
    assert all(str(p) in msg and is_input for p, msg, is_input in res.failed)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in res)
    # --skip-existing resumes: only the two failed images run again.
    events = []
    again = run_job(predict_files(paths, outdir=tmp_path / "out", method="otsu", client=client,
                                  skip_existing=True), events.append)
    assert len(again) == 2 and len(again.failed) == 2
    assert events[0].message == "2 image(s) to predict"


def test_plane_voxel_size_on_3d_images_fails_as_in_a_serial_run(tmp_path, phantoms, client):
    from cellpol_core.io.image import PlaneVoxelSize

    res = run_job(predict_files(phantoms[:1], outdir=tmp_path / "out", method="otsu", client=client,
                                voxel_size=PlaneVoxelSize((1.0, 0.5, 0.5))))
    assert len(res) == 0 and len(res.failed) == 1
    assert "X Y Z" in res.failed[0][1]


def _die_on(item):
    """Kills its worker process while a marker file exists for the item."""
    name, marker = item
    if marker is not None and Path(marker).exists():
        if name == "once":
            os.remove(marker)
        os._exit(1)
    return name.upper()


def test_lost_worker_retried_once(tmp_path):
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    once, always = tmp_path / "once", tmp_path / "always"
    once.touch()
    always.touch()
    items = [("a", None), ("once", str(once)), ("b", None)]
    with cluster.open_client("local:2") as c:
        results = dict(cluster.run_on_client(c, _die_on, items))
        assert results == {0: "A", 1: "ONCE", 2: "B"}  # its worker died, the retry succeeded
        # Alone, so that its two deaths cannot take a neighbour's task with them under load.
        failed = dict(cluster.run_on_client(c, _die_on, [("always", str(always))]))
    assert isinstance(failed[0], BaseException)  # died twice: reported, not retried again


def _straddling_volume(path, voxel_size):
    """A phantom whose cells sit on the borders of 64-voxel blocks, one block left empty."""
    ph = generate_phantom(shape=(40, 192, 192), voxel_size=voxel_size, seed=5, density=1.0)
    img = ph.image.copy()
    img[:, :, 80:, 80:] = img[:, :, :16, :16].min()  # block (2, 2) and its halo: empty
    write_ome_zarr(path, img, voxel_size=voxel_size, channel_names=ph.channel_names,
                   chunks=(16, 64, 64), n_levels=2)
    return ph


def test_blockwise_equals_single_process(tmp_path, client):
    vs = (0.54, 1.0, 1.0)
    path = tmp_path / "vol.ome.zarr"
    _straddling_volume(path, vs)
    model = _oracle((0.54, 2.0, 2.0))  # resampled by half in y and x, as the demo model is
    image = read_image(path, lazy=True)
    tiles = {"tile": (32, 32, 32), "overlap": (8, 16, 16)}
    single = run_job(predict_image(image, model, **tiles))
    assert len(single) > 20
    block = (40, 64, 64)  # 3 x 3 blocks in y and x
    vplan = blockwise.plan_volume(image, model, block=block, **tiles)
    assert len(vplan.blocks) == 9 and vplan.n_tiles == sum(len(b.tiles) for b in vplan.blocks)
    assert all(min(min(h) for h in b.halo()[1:]) >= 0 for b in vplan.blocks)
    # Vectors that cross a block border exist (start and end in different blocks).
    cross = np.any((single.start[:, 1:] // 64) != (single.end[:, 1:] // 64), axis=1)
    near = np.any(np.abs((single.start[:, 1:] + 32) % 64 - 32) < 6, axis=1)
    assert cross.sum() >= 2 and near.sum() >= 4

    spec = blockwise.ImageSpec(str(path))
    events = []
    on_dask = run_job(blockwise.predict_volume(
        image, model, block=block, image_spec=spec, model_ref=model,
        runner=lambda tasks: cluster.run_on_client(client, cluster._run_block, tasks), **tiles),
        events.append)
    _same_vectors(on_dask, single)
    assert events[-1].data["skipped"] == 1 and events[-1].data["blocks"] == 9
    inline = run_job(blockwise.predict_volume(image, model, block=block, empty_below=None,
                                              **tiles))
    _same_vectors(inline, single)
    # The rehearsal runs one block and counts the vectors of its core.
    report = blockwise.rehearse_block(image, model, block=block, which=(0, 1, 1), **tiles)
    core = report["core"]
    inside = np.all([(single.start[:, a] >= lo - 0.5) & (single.start[:, a] < hi - 0.5)
                     for a, (lo, hi) in enumerate(core)], axis=0)
    assert report["n_vectors"] == inside.sum() > 0
    assert report["peak_rss"] > 0 and report["n_blocks"] == 9


def test_blockwise_cli_with_demo_model(tmp_path, capsys):
    ph = generate_phantom(shape=(16, 400, 400), seed=2)  # 2 x 2 tiles of the demo model
    tif = tmp_path / "big.ome.tif"
    write_ome_tiff(tif, ph.image, voxel_size=ph.voxel_size, channel_names=ph.channel_names)
    assert main(["predict", str(tif), "-o", str(tmp_path / "serial"), "--model", "demo"]) == 0
    assert main(["predict", str(tif), "-o", str(tmp_path / "blocks"), "--model", "demo",
                 "--block", "200", "200", "16"]) == 0
    a = read_vectors(tmp_path / "serial" / "big_vectors.csv")
    b = read_vectors(tmp_path / "blocks" / "big_vectors.csv")
    assert len(a) > 5
    _same_vectors(a, b)
    capsys.readouterr()
    assert main(["predict", str(tif), "-o", str(tmp_path / "t"), "--model", "demo",
                 "--block", "200", "200", "16", "--test-block"]) == 0
    out = capsys.readouterr().out
    assert "test block (0, 1, 0) of 4" in out and "peak memory" in out
    assert not (tmp_path / "t").exists() or not any((tmp_path / "t").iterdir())
    assert main(["predict", str(tif), "-o", str(tmp_path / "o"), "--method", "otsu",
                 "--block", "200", "200", "16"]) == 2
    assert "blockwise prediction needs a model" in capsys.readouterr().err


def test_cluster_specs():
    assert cluster.parse_cluster_spec("local") == ("local", None)
    assert cluster.parse_cluster_spec("local:3") == ("local", 3)
    assert cluster.parse_cluster_spec("tcp://10.0.0.1:8786") == ("address", "tcp://10.0.0.1:8786")
    assert cluster.parse_cluster_spec("slurm:jobs.yaml") == ("slurm", "jobs.yaml")
    for bad in ("local:0", "local:x", "kubernetes:a.yaml", "http://host:1", "slurm:"):
        with pytest.raises(InputError):
            cluster.parse_cluster_spec(bad)


def _yaml(tmp_path, text, name="jobs.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_jobqueue_files(tmp_path):
    good = _yaml(tmp_path, """
        jobqueue:
          slurm:
            cores: 8
            memory: 32GB
            walltime: "02:00:00"
            queue: gpu
            processes: 2
            gpus: 1
            job_script_prologue: ["module load cuda"]
        """)
    opts, threads = cluster.read_jobqueue_file(good, "slurm")
    assert threads == 4 and opts["job_cpu"] == 8 and opts["cores"] == 2
    assert opts["job_extra_directives"] == ["--gres=gpu:1"]
    dask_jobqueue = pytest.importorskip("dask_jobqueue")
    c = dask_jobqueue.SLURMCluster(dashboard_address=None, **opts)
    try:
        script = c.job_script()
    finally:
        c.close()
    assert "#SBATCH --gres=gpu:1" in script and "#SBATCH --cpus-per-task=8" in script
    assert "#SBATCH -p gpu" in script and "module load cuda" in script
    cases = {
        "broken.yaml": ("cores: [8\n", "not valid YAML"),
        "list.yaml": ("- 8\n- 9\n", "expected a mapping"),
        "nocores.yaml": ("memory: 8GB\n", "'cores' must be"),
        "nomem.yaml": ("cores: 4\n", "'memory' must be"),
        "procs.yaml": ("cores: 4\nmemory: 8GB\nprocesses: 8\n", "'processes' must be"),
        "gpus.yaml": ("cores: 4\nmemory: 8GB\ngpus: two\n", "'gpus' must be"),
    }
    for name, (text, message) in cases.items():
        with pytest.raises(InputError, match=message):
            cluster.read_jobqueue_file(_yaml(tmp_path, text, name), "pbs")
    with pytest.raises(InputError, match="jobqueue file not found"):
        cluster.read_jobqueue_file(tmp_path / "none.yaml", "lsf")


def test_bad_clusters_exit_2(tmp_path, phantoms, capsys, monkeypatch):
    args = ["predict", str(phantoms[0]), "-o", str(tmp_path / "o"), "--method", "otsu"]
    bad = _yaml(tmp_path, "cores: [8\n")
    assert main(args + ["--cluster", f"slurm:{bad}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not valid YAML" in err and str(bad) in err
    monkeypatch.setitem(sys.modules, "dask_jobqueue", None)  # not installed
    good = _yaml(tmp_path, "cores: 4\nmemory: 8GB\n", "good.yaml")
    assert main(args + ["--cluster", f"slurm:{good}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "needs dask-jobqueue" in err
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT_S", 1)
    assert main(args + ["--cluster", "tcp://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in err
    assert main(args + ["--cluster", "local:two"]) == 2
    assert main(args + ["--workers", "2"]) == 2
    assert "--workers needs --cluster" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
