"""Prediction on a Dask cluster: one task per image, or one per block of a large volume.

``cellpol predict --cluster SPEC`` and ``predict_files(..., client=...)`` run
here. SPEC is one of:

* ``local`` or ``local:N``: a :class:`distributed.LocalCluster` of N worker
  processes on this machine, each running one task at a time with the
  machine's cores shared out as torch threads (and one GPU each, round robin,
  where there are several);
* ``tcp://HOST:PORT`` (or ``tls://``): a running scheduler;
* ``slurm:FILE.yaml``, ``pbs:FILE.yaml``, ``lsf:FILE.yaml``: a dask-jobqueue
  cluster built from the file's settings (see :func:`read_jobqueue_file`),
  scaled to ``--workers N`` jobs.

Workers load the model once (:func:`~cellpol_core.detection.blockwise.cached_model`)
and return vectors; the client writes every CSV, atomically. A task whose
worker dies is submitted once more; a task that fails again, or whose image
is bad, is reported with its file name while the others go on.

Nothing here is imported unless a cluster is asked for, so a plain
``cellpol predict`` never imports Dask.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import uuid
from pathlib import Path
from typing import Optional, Sequence

from ..defaults import DEFAULT_DEVICE, DEFAULT_PRECISION, OTSU_MIN_SIZE_UM
from ..errors import InputError
from ..jobs import CancelToken, ProgressEvent
from ..io.image import PlaneVoxelSize
from ..io.paths import image_stem, vectors_path_for
from ..io.vectors import DEFAULT_STRUCTURES, write_vectors
from .blockwise import (DEFAULT_BLOCK, EMPTY_BELOW, ImageSpec, cached_model, peak_rss_bytes,
                        predict_volume, rehearse_block, run_block)

#: Seconds to wait for a scheduler before giving up.
CONNECT_TIMEOUT_S = 10
#: Job schedulers of dask-jobqueue, by the prefix of a cluster spec.
JOBQUEUE_KINDS = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "lsf": "LSFCluster"}
#: Directives asking the job scheduler for N GPUs, for the ``gpus`` key of a jobqueue file.
_GPU_DIRECTIVES = {"slurm": "--gres=gpu:{n}", "pbs": "-l ngpus={n}", "lsf": '-gpu "num={n}"'}
_EXTRA_INSTALL = "pip install 'cellpol[cluster]'"
# A task whose worker dies comes back to us at once (we retry it once), and a
# worker only holds the task it runs, so that a crash takes no bystander with it.
_SCHEDULER_CONFIG = {"distributed.scheduler.allowed-failures": 0,
                     "distributed.scheduler.worker-saturation": 1.0}


class BatchResult(list):
    """The CSVs written by a batch (a list of paths), with what failed and where outputs went.

    Attributes
    ----------
    failed : list of (Path, str, bool)
        Image, one-line reason, and whether it was bad input (rather than a
        crash or a lost worker).
    outdir : Path
    report : dict or None
        The figures of a ``--test-block`` rehearsal.
    """

    def __init__(self, written=(), *, failed=(), outdir=None, report=None):
        super().__init__(written)
        self.failed = list(failed)
        self.outdir = outdir
        self.report = report

    def summary(self) -> str:
        """One line: how many succeeded and failed, and where the outputs are."""
        return (f"{len(self)} image(s) done, {len(self.failed)} failed; "
                f"outputs in {self.outdir}")


# ---------------------------------------------------------------------------
# Clusters


def _distributed():
    try:
        import distributed
    except ImportError:
        raise InputError(f"--cluster needs Dask: {_EXTRA_INSTALL}") from None
    return distributed


def parse_cluster_spec(spec: str) -> tuple:
    """``(kind, value)``: ("local", N or None), ("address", URL) or ("slurm"|"pbs"|"lsf", path)."""
    text = str(spec).strip()
    low = text.lower()
    if low == "local":
        return "local", None
    if low.startswith("local:"):
        n = text.split(":", 1)[1]
        if not n.isdigit() or int(n) < 1:
            raise InputError(f"--cluster {spec}: local:N needs a worker count N >= 1")
        return "local", int(n)
    if "://" in text:
        scheme = low.split("://", 1)[0]
        if scheme not in ("tcp", "tls", "ucx", "inproc", "ws", "wss"):
            raise InputError(f"--cluster {spec}: unknown scheduler protocol {scheme!r} "
                             "(use tcp://HOST:PORT)")
        return "address", text
    kind, _, path = text.partition(":")
    if kind.lower() in JOBQUEUE_KINDS and path:
        return kind.lower(), path
    raise InputError(f"--cluster {spec}: expected local, local:N, tcp://HOST:PORT, "
                     "slurm:FILE.yaml, pbs:FILE.yaml or lsf:FILE.yaml")


def read_jobqueue_file(path, kind) -> tuple:
    """The dask-jobqueue keyword arguments and torch threads per worker from a YAML file.

    The file holds the job settings as a mapping, either at its top level or
    under ``jobqueue: {kind: ...}`` as in Dask's own configuration files:
    ``cores`` (per job), ``memory`` (per job, e.g. ``"32GB"``), ``walltime``,
    ``queue``, ``account``, ``processes`` (workers per job, default 1),
    ``gpus`` (GPUs per job: adds the scheduler's request directive),
    ``job_extra_directives``, ``job_script_prologue`` (lines run before the
    worker starts, e.g. ``module load``), and any other dask-jobqueue option.

    Each worker runs one task at a time and gives torch ``cores / processes``
    threads.

    Raises
    ------
    InputError
        Missing or unreadable file, invalid YAML, not a mapping, or missing or
        invalid ``cores``/``memory``.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise InputError("jobqueue file not found", path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"not valid YAML ({first})", path) from None
    if isinstance(doc, dict) and isinstance(doc.get("jobqueue"), dict):
        doc = doc["jobqueue"].get(kind)
    if not isinstance(doc, dict):
        raise InputError(f"expected a mapping of {kind} job settings (cores, memory, walltime, ...)",
                         path)
    opts = dict(doc)
    cores, memory = opts.get("cores"), opts.get("memory")
    if isinstance(cores, bool) or not isinstance(cores, int) or cores < 1:
        raise InputError(f"'cores' must be a whole number of cores per job, got {cores!r}", path)
    if not isinstance(memory, str) or not memory.strip():
        raise InputError(f"'memory' must be the memory per job, e.g. \"32GB\", got {memory!r}",
                         path)
    processes = opts.pop("processes", 1)
    if isinstance(processes, bool) or not isinstance(processes, int) or not 1 <= processes <= cores:
        raise InputError(f"'processes' must be a whole number from 1 to cores, got {processes!r}",
                         path)
    gpus = opts.pop("gpus", None)
    extra = opts.get("job_extra_directives", [])
    if not isinstance(extra, list) or not all(isinstance(x, str) for x in extra):
        raise InputError("'job_extra_directives' must be a list of strings", path)
    if gpus is not None:
        if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 0:
            raise InputError(f"'gpus' must be a whole number of GPUs per job, got {gpus!r}", path)
        if gpus:
            extra = extra + [_GPU_DIRECTIVES[kind].format(n=gpus)]
    opts["job_extra_directives"] = extra
    # One task per worker process; the job still asks for all its cores.
    opts.update(cores=processes, processes=processes, job_cpu=cores)
    return opts, max(1, cores // processes)


class _WorkerSetup:
    """Worker plugin: torch threads per worker, and one GPU per worker where there are several."""

    name = "cellpol-worker-setup"
    idempotent = True

    def __init__(self, torch_threads=None):
        self.torch_threads = torch_threads

    def setup(self, worker):
        from .blockwise import configure_worker

        name = str(worker.name)
        configure_worker(torch_threads=self.torch_threads or worker.state.nthreads or 1,
                         gpu_index=int(name) if name.isdigit() else abs(hash(name)))

    def teardown(self, worker):
        pass


def _plugin(torch_threads):
    from distributed.diagnostics.plugin import WorkerPlugin

    cls = type("CellPolWorkerSetup", (_WorkerSetup, WorkerPlugin), {})
    return cls(torch_threads)


def default_local_workers() -> int:
    """Workers of ``--cluster local`` without a count: one per GPU, else half the cores (1-4)."""
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.device_count()
    except ImportError:  # pragma: no cover
        pass
    return max(1, min(4, (os.cpu_count() or 1) // 2))


@contextlib.contextmanager
def open_client(spec: str, *, workers: Optional[int] = None, processes=True):
    """A ``distributed.Client`` for a ``--cluster`` spec; the cluster closes on exit.

    Parameters
    ----------
    spec : str
        See the module docstring.
    workers : int, optional
        Workers for ``local`` (when the spec has no count) and jobs for the
        jobqueue kinds (default 1).
    processes : bool
        ``local``: worker processes (False: threads in this process, for tests).

    Raises
    ------
    InputError
        Dask not installed, an unreachable scheduler, a malformed jobqueue
        file, or dask-jobqueue missing.
    """
    kind, value = parse_cluster_spec(spec)
    if workers is not None and workers < 1:
        raise InputError(f"--workers must be at least 1, got {workers}")
    if kind in JOBQUEUE_KINDS:
        opts, threads = read_jobqueue_file(value, kind)  # before the imports: bad files fail fast
    distributed = _distributed()
    import dask

    cluster = None
    if kind == "local":
        n = value or workers or default_local_workers()
        threads = max(1, (os.cpu_count() or 1) // n)
        with dask.config.set(_SCHEDULER_CONFIG):
            cluster = distributed.LocalCluster(
                n_workers=n, threads_per_worker=1, processes=processes, dashboard_address=None,
                # no dashboard; the scheduler's status server on a free port, not 8787
                scheduler_kwargs={"dashboard": False, "dashboard_address": ":0"},
                silence_logs=logging.ERROR)
        client = distributed.Client(cluster)
    elif kind == "address":
        threads = None
        try:
            client = distributed.Client(value, timeout=f"{CONNECT_TIMEOUT_S}s")
        except (OSError, TimeoutError) as exc:
            raise InputError(f"cannot reach the Dask scheduler at {value} within "
                             f"{CONNECT_TIMEOUT_S} s ({type(exc).__name__})") from None
    else:
        try:
            import dask_jobqueue
        except ImportError:
            raise InputError(f"--cluster {kind}: needs dask-jobqueue: {_EXTRA_INSTALL}") from None
        cls = getattr(dask_jobqueue, JOBQUEUE_KINDS[kind])
        try:
            with dask.config.set(_SCHEDULER_CONFIG):
                cluster = cls(dashboard_address=None, silence_logs="error", **opts)
        except (TypeError, ValueError) as exc:
            raise InputError(f"invalid {kind} job settings ({exc})", value) from None
        cluster.scale(jobs=workers or 1)
        client = distributed.Client(cluster)
    try:
        client.register_plugin(_plugin(threads))
        yield client
    finally:
        with contextlib.suppress(Exception):
            client.close()
        if cluster is not None:
            with contextlib.suppress(Exception):
                cluster.close()


# ---------------------------------------------------------------------------
# Tasks with one retry


def run_on_client(client, func, items, *, name="cellpol", cancel: Optional[CancelToken] = None):
    """Run ``func(item)`` for each item on the cluster; yield (index, result) as they finish.

    A task whose worker dies (or that raises) is submitted once more; if it
    fails again, its exception takes the result's place. Unfinished tasks are
    cancelled when the caller stops early (an error, or ``cancel``).
    """
    from distributed import as_completed

    run = uuid.uuid4().hex[:8]

    def submit(k, attempt):
        return client.submit(func, items[k], key=f"{name}-{k}-{attempt}-{run}", pure=False)

    owner = {}
    for k in range(len(items)):
        owner[submit(k, 0)] = (k, 0)
    pending = as_completed(list(owner))
    try:
        for fut in pending:
            if cancel is not None:
                cancel.check()
            k, attempt = owner.pop(fut)
            if fut.status == "finished":
                yield k, fut.result()
            elif attempt == 0:
                again = submit(k, 1)
                owner[again] = (k, 1)
                pending.add(again)
            else:
                yield k, _future_error(fut)
    finally:
        if owner:
            with contextlib.suppress(Exception):
                client.cancel(list(owner))


def _future_error(fut) -> BaseException:
    try:
        exc = fut.exception()
    except Exception as err:  # the exception itself may not come back (a lost worker)
        exc = err
    return exc if isinstance(exc, BaseException) else RuntimeError(str(exc))


# ---------------------------------------------------------------------------
# Batch over files


def predict_file_task(spec: ImageSpec, opts: dict) -> dict:
    """Predict one image on a worker: ``{"table", "voxel_size", ...}`` or ``{"error", ...}``.

    Bad input and crashes alike come back as values, so that one image never
    stops the batch; only a lost worker raises.
    """
    from dataclasses import replace

    from ..io.image import resolve_channels
    from ..jobs import run_job

    t0 = time.perf_counter()
    try:
        image = spec.open() if opts["method"] == "model" else _read_eager(spec)
        if image.is_3d and image.voxel_size is None:
            raise InputError("3D image has no voxel size in its metadata; pass --voxel-size X Y Z",
                             spec.path)
        if opts["method"] == "otsu":
            from .classical import predict_otsu

            structures = tuple(opts["structures"] or DEFAULT_STRUCTURES)
            ch = resolve_channels(image, channels=opts["channels"], structures=structures)
            table = predict_otsu(image, channels=ch, d_max_um=opts["d_max_um"],
                                 min_size_um=opts["min_size_um"], names=structures)
        else:
            from .infer import predict_image

            model = cached_model(opts["model"], opts["device"])
            thr = model.thresholds
            if opts["d_max_um"] is not None:
                thr = replace(thr, d_max_um=float(opts["d_max_um"]))
            if opts.get("flips") is not None:
                thr = replace(thr, flips=int(opts["flips"]))
            structures = tuple(opts["structures"] or model.config.structures)
            ch = resolve_channels(image, channels=opts["channels"], structures=structures)
            table = run_job(predict_image(image, model, channels=ch, tile=opts["tile"],
                                          batch_size=opts["batch_size"], thresholds=thr,
                                          precision=opts["precision"], force=opts["force"]))
        return {"table": table, "voxel_size": image.voxel_size,
                "seconds": time.perf_counter() - t0, "peak_rss": peak_rss_bytes()}
    except InputError as exc:
        return {"error": str(exc), "input": True}
    except Exception as exc:  # a crash on one image must not stop the others
        return {"error": f"{spec.path}: {type(exc).__name__}: {exc}", "input": False}


def _read_eager(spec):
    from ..io.image import read_image

    return read_image(spec.path, axes=spec.axes, voxel_size=spec.voxel_size)


def _run_file(args):
    return predict_file_task(*args)


def _run_block(task):
    return run_block(task)


def _blockwise_paths(paths, *, block, axes, voxel_size) -> set:
    """The images to predict block by block: OME-Zarr volumes, and images larger than ``block``."""
    from ..io.image import read_image
    from ..io.ome_zarr import is_zarr_path

    out = set()
    for p in paths:
        if is_zarr_path(p):
            out.add(p)
        elif block is not None:
            try:
                image = read_image(p, axes=axes, voxel_size=voxel_size, lazy=True)
            except InputError:
                continue  # reported by its own task
            size = tuple(block)[-image.ndim:]
            if any(s > b for s, b in zip(image.spatial_shape, size)):
                out.add(p)
    return out


def predict_distributed(paths: Sequence, *, outdir, method="otsu", model=None, channels=None,
                        structures=None, voxel_size=None, axes=None, d_max_um=None, flips=None,
                        min_size_um=OTSU_MIN_SIZE_UM, device=DEFAULT_DEVICE, batch_size=1, tile=None,
                        skip_existing=False, client=None, block=None, test_block=False,
                        precision=DEFAULT_PRECISION, force=False, empty_below=EMPTY_BELOW,
                        cancel: Optional[CancelToken] = None):
    """Predict many images (one task each) and large volumes (block by block).

    The engine of ``predict_files(..., client=...)``; same parameters, plus:

    Parameters
    ----------
    client : distributed.Client, optional
        Where tasks run; None runs the blocks of a volume one after another here.
    block : (int, int, int), optional
        Block (z, y, x) in image voxels: images larger than this, and every
        OME-Zarr image, are predicted block by block (default block
        :data:`~cellpol_core.detection.blockwise.DEFAULT_BLOCK` for OME-Zarr).
    test_block : bool
        Run only one block of the first image and report its time and memory
        (``result.report``); nothing is written.
    empty_below : float or None
        Skip blocks below this fraction of the normalisation range (None: none).

    Returns
    -------
    BatchResult
        The written CSVs, plus ``failed`` and ``outdir``.
    """
    paths = [Path(p) for p in paths]
    if model is not None:
        method = "model"
    if method not in ("otsu", "model"):
        raise InputError(f"unknown method {method!r}; available: otsu, model")
    if method == "model" and model is None:
        raise InputError("--method model needs --model MODEL_DIR|NAME")
    vs = None if voxel_size is None else tuple(float(v) for v in voxel_size)
    if isinstance(voxel_size, PlaneVoxelSize):
        vs = PlaneVoxelSize(vs)  # "X Y" given: a 3D image refuses it, as in a serial run
    outdir = Path(outdir)
    model_ref = model
    if method == "model":
        from .model import LoadedModel, find_model

        if not isinstance(model, LoadedModel):
            model_ref = str(find_model(model).resolve())
    block = None if block is None else tuple(int(b) for b in block)
    if test_block:
        return (yield from _rehearse(paths[0], method=method, model_ref=model_ref, block=block,
                                     channels=channels, axes=axes, voxel_size=vs,
                                     d_max_um=d_max_um, flips=flips, device=device,
                                     batch_size=batch_size,
                                     tile=tile, client=client, outdir=outdir,
                                     precision=precision, force=force))
    outdir.mkdir(parents=True, exist_ok=True)
    todo, written = [], []
    for p in paths:
        out = vectors_path_for(p, outdir)
        if skip_existing and out.exists():
            written.append(out)
        else:
            todo.append(p)
    blockwise = _blockwise_paths(todo, block=block, axes=axes, voxel_size=vs) \
        if method == "model" else set()
    if method == "otsu" and block is not None:
        raise InputError("blockwise prediction needs a model (--model); the Otsu method "
                         "thresholds the whole image at once")
    singles = [p for p in todo if p not in blockwise]
    n = len(paths)
    failed = []
    done = len(written)
    yield ProgressEvent("predict", done, n, message=f"{len(todo)} image(s) to predict")
    opts = {"method": method, "model": model_ref, "device": device, "channels": channels,
            "structures": structures, "d_max_um": d_max_um, "flips": flips,
            "min_size_um": tuple(min_size_um),
            "tile": tile, "batch_size": batch_size, "precision": precision, "force": force}
    if method == "otsu" and opts["d_max_um"] is None:
        from ..defaults import PAIR_DISTANCE_UM

        opts["d_max_um"] = PAIR_DISTANCE_UM
    items = [(ImageSpec(str(p), axes, vs), opts) for p in singles]
    if client is not None:
        results = run_on_client(client, _run_file, items, name="cellpol-image", cancel=cancel)
    else:
        results = ((k, _run_file(item)) for k, item in enumerate(items))
    for k, res in results:
        path = singles[k]
        if isinstance(res, BaseException):
            failed.append((path, f"{path}: lost its worker twice ({type(res).__name__}: {res})",
                           False))
        elif "error" in res:
            failed.append((path, res["error"], res["input"]))
        else:
            out = vectors_path_for(path, outdir)
            write_vectors(out, res["table"], voxel_size=res["voxel_size"])
            written.append(out)
        done += 1
        ok = not (failed and failed[-1][0] == path)
        yield ProgressEvent("predict", done, n,
                            message=f"{path.name}: " + (f"{len(res['table'])} vectors" if ok
                                                        else "failed"),
                            data={"seconds": res["seconds"]} if ok else {})
    for path in sorted(blockwise):
        try:
            table, image = yield from _predict_volume_file(
                path, model_ref=model_ref, block=block, channels=channels, axes=axes,
                voxel_size=vs, d_max_um=d_max_um, flips=flips, device=device,
                batch_size=batch_size,
                tile=tile, client=client, empty_below=empty_below, precision=precision,
                force=force, cancel=cancel)
        except InputError as exc:
            failed.append((path, str(exc), True))
        except RuntimeError as exc:
            failed.append((path, f"{path}: {exc}", False))
        else:
            out = vectors_path_for(path, outdir)
            write_vectors(out, table, voxel_size=image.voxel_size)
            written.append(out)
        done += 1
        yield ProgressEvent("predict", done, n, message=path.name)
    return BatchResult(written, failed=failed, outdir=outdir)


def _volume_setup(path, *, model_ref, block, channels, axes, voxel_size, d_max_um, flips,
                  device, client):
    from dataclasses import replace

    from ..io.image import read_image
    from ..io.ome_zarr import is_zarr_path

    image = read_image(path, axes=axes, voxel_size=voxel_size, lazy=True)
    if block is None and not is_zarr_path(path):
        block = DEFAULT_BLOCK
    # The client plans the tiles: it needs the configuration, on the CPU.
    loaded = cached_model(model_ref, "cpu" if client is not None else device)
    thr = loaded.thresholds
    if d_max_um is not None:
        thr = replace(thr, d_max_um=float(d_max_um))
    if flips is not None:
        thr = replace(thr, flips=int(flips))
    runner = None
    if client is not None:
        def runner(tasks):
            return run_on_client(client, _run_block, tasks, name=f"cellpol-block-{image_stem(path)}")
    spec = ImageSpec(str(path), axes, voxel_size)
    return image, loaded, thr, runner, spec, block


def _predict_volume_file(path, *, model_ref, block, channels, axes, voxel_size, d_max_um, flips,
                         device, batch_size, tile, client, empty_below, precision, force, cancel):
    image, loaded, thr, runner, spec, block = _volume_setup(
        path, model_ref=model_ref, block=block, channels=channels, axes=axes,
        voxel_size=voxel_size, d_max_um=d_max_um, flips=flips, device=device, client=client)
    table = yield from predict_volume(image, loaded, block=block, channels=channels, tile=tile,
                                      batch_size=batch_size, thresholds=thr, device=device,
                                      image_spec=spec, model_ref=model_ref, runner=runner,
                                      empty_below=empty_below, precision=precision, force=force,
                                      cancel=cancel)
    return table, image


def _rehearse(path, *, method, model_ref, block, channels, axes, voxel_size, d_max_um, flips,
              device, batch_size, tile, client, outdir, precision, force):
    if method != "model":
        raise InputError("--test-block needs a model (--model)")
    image, loaded, thr, runner, spec, block = _volume_setup(
        path, model_ref=model_ref, block=block, channels=channels, axes=axes,
        voxel_size=voxel_size, d_max_um=d_max_um, flips=flips, device=device, client=client)
    yield ProgressEvent("test block", 0, 1, message=Path(path).name)
    report = rehearse_block(image, loaded, block=block, channels=channels, tile=tile,
                            batch_size=batch_size, thresholds=thr, device=device,
                            image_spec=spec, model_ref=model_ref, runner=runner,
                            precision=precision, force=force)
    report["path"] = str(path)
    yield ProgressEvent("test block", 1, 1, message=Path(path).name, data=report)
    return BatchResult([], outdir=outdir, report=report)
