"""Training a CellPol model: the long job behind ``cellpol train``.

Data
----
Each training image is normalised per channel (percentiles of the whole
image) and resampled to the model's voxel size when it differs by more than
10 % on an axis. Patches are drawn at random, biased towards patches that
contain pairs: with probability ``pair_bias`` a patch is centred near a random
vector's midpoint. Targets are built per patch from the vectors, after
augmentation (90° rotations about z, flips in y and x, brightness and
contrast), so they always follow the image.

Validation uses ``val_images`` when given; otherwise the last
``val_fraction`` of every training image along x is held out (vectors whose
start point lies there go with it), so no validation voxel is trained on.

Optimisation
------------
Adam with reduce-on-plateau on the validation loss (factor 0.8). The best
weights (validation loss) and the last ones are kept; a checkpoint with the
optimiser and random states after every epoch lets ``resume=True`` continue an
interrupted run exactly.

Model folder
------------
A run trains in a staging folder beside the model folder and swaps it in
whole when its last epoch is done, holding the folder's lock meanwhile (see
:mod:`cellpol_core.detection.runfolder`): an interrupted run leaves the old
model as it was, and ``resume=True`` continues the interrupted run. Replacing
a model needs ``overwrite=True``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..errors import InputError
from ..jobs import CancelToken, ProgressEvent
from .config import TrainConfig
from .loop import Trainer, read_training_log, write_training_log  # noqa: F401 (re-exported)
from .model import (CHECKPOINT_FILE, CHECKSUMS_FILE, CONFIG_FILE, THRESHOLDS_FILE,
                    TRAINING_LOG, WEIGHTS_BEST, WEIGHTS_LAST, ModelConfig, Thresholds,
                    load_model, read_config, save_state, write_config, write_thresholds)
from ..io.resample import coord_scale, needs_resampling, resample_channels, resampled_shape
from ..io.vectors import VectorTable

LOG_COLUMNS = ["epoch", "train_loss", "val_loss", "hm_start", "hm_end", "pull", "push",
               "offset", "lr", "seconds", "device"]
#: Offset weight μ of untuned offset models: what tune chose in
#: benchmarks/bench_offset_ablation.py, where all three pairing terms won.
UNTUNED_OFFSET_WEIGHT = 0.5
#: The files a training run writes (their stale temporaries are removed on start).
RUN_FILES = (CONFIG_FILE, CHECKSUMS_FILE, WEIGHTS_BEST, WEIGHTS_LAST, CHECKPOINT_FILE,
             TRAINING_LOG)


@dataclass
class TrainingImage:
    """One normalised image with its vectors, at the model's voxel size.

    Attributes
    ----------
    data : ndarray, float32, (2, Z, Y, X) or (2, Y, X)
        Start and end channels scaled to about [0, 1].
    vectors : VectorTable
        Vectors in this array's voxel coordinates.
    name : str
        For messages.
    """

    data: np.ndarray
    vectors: VectorTable
    name: str = ""

    @property
    def spatial_shape(self):
        return self.data.shape[1:]


# ----------------------------------------------------------------------------- data

def prepare_image(image, vectors: VectorTable, *, channels, voxel_size, name="") -> TrainingImage:
    """Normalise the two channels of ``image`` and bring it to ``voxel_size``.

    Parameters
    ----------
    image : CellImage
        The source image.
    vectors : VectorTable
        Its vectors in the source voxels.
    channels : (int, int)
        Start and end channels.
    voxel_size : tuple of 3 floats
        Target (model) voxel size (z, y, x).
    """
    from ..io.image import normalize_percentile

    data = np.stack([np.asarray(image.data[c]) for c in channels])
    data = normalize_percentile(data).astype(np.float32, copy=False)
    src_vs = image.voxel_size or (1.0, 1.0, 1.0)
    dims = image.ndim
    if needs_resampling(src_vs[-dims:], voxel_size[-dims:]):
        shape = resampled_shape(image.spatial_shape, src_vs[-dims:], voxel_size[-dims:])
        data = resample_channels(data, shape, path=image.path)
        scale = np.ones(3)
        scale[-dims:] = coord_scale(image.spatial_shape, shape)
        vectors = vectors.scaled(scale)
    return TrainingImage(data, vectors, name)


def split_holdout(item: TrainingImage, *, fraction) -> tuple:
    """Split an image along x into a training part and a held-out validation part."""
    x_size = item.data.shape[-1]
    n_val = int(round(x_size * fraction))
    if n_val < 1 or n_val >= x_size:
        return item, None
    cut = x_size - n_val
    in_train = item.vectors.start[:, 2] < cut
    train = TrainingImage(item.data[..., :cut], item.vectors.subset(in_train), item.name)
    val_vec = item.vectors.subset(~in_train)
    val_vec = val_vec.shifted((0, 0, -cut))
    val = TrainingImage(np.ascontiguousarray(item.data[..., cut:]), val_vec, item.name + " (held out)")
    return train, val


def _background_pad(rng, shape):
    # Looks like the dark background of normalised images (the paper pads with
    # random values in [0, 10] of 255).
    return rng.uniform(0.0, 10.0 / 255.0, size=shape).astype(np.float32)


def crop_patch(item: TrainingImage, origin, patch_size, rng) -> tuple:
    """Cut a patch at ``origin`` (may extend past the image; padded like background).

    Returns the (2, *patch_size) array and the vectors relative to the patch.
    """
    dims = len(patch_size)
    out = _background_pad(rng, (item.data.shape[0],) + tuple(patch_size))
    src = []
    dst = []
    for o, p, s in zip(origin, patch_size, item.spatial_shape):
        lo, hi = max(o, 0), min(o + p, s)
        if hi <= lo:
            return out, _shift(item.vectors, origin, dims)
        src.append(slice(lo, hi))
        dst.append(slice(lo - o, hi - o))
    out[(slice(None),) + tuple(dst)] = item.data[(slice(None),) + tuple(src)]
    return out, _shift(item.vectors, origin, dims)


def _shift(vectors: VectorTable, origin, dims) -> VectorTable:
    off = np.zeros(3)
    off[-dims:] = origin
    return vectors.shifted(-off)


class PatchSampler:
    """Random patches, biased towards those holding pairs.

    Parameters
    ----------
    items : list of TrainingImage
    patch_size : tuple of int
        (Z, Y, X) or (Y, X).
    pair_bias : float
        Probability of centring a patch near a random vector midpoint.
    """

    def __init__(self, items, *, patch_size, pair_bias=0.8):
        self.items = list(items)
        self.patch_size = tuple(int(p) for p in patch_size)
        self.pair_bias = float(pair_bias)
        sizes = np.array([np.prod(it.spatial_shape) for it in self.items], float)
        self._p_image = sizes / sizes.sum()

    def sample(self, rng) -> tuple:
        k = int(rng.choice(len(self.items), p=self._p_image))
        item = self.items[k]
        dims = len(self.patch_size)
        shape = np.asarray(item.spatial_shape)
        patch = np.asarray(self.patch_size)
        if len(item.vectors) and rng.random() < self.pair_bias:
            v = int(rng.integers(len(item.vectors)))
            mid = ((item.vectors.start[v] + item.vectors.end[v]) / 2.0)[-dims:]
            jitter = rng.uniform(-0.35, 0.35, dims) * patch
            origin = np.round(mid + jitter - patch / 2.0).astype(int)
        else:
            origin = np.array([int(rng.integers(0, max(s - p, 0) + 1)) for s, p in zip(shape, patch)])
        # Keep the patch inside the image where the image is large enough.
        origin = np.where(shape >= patch, np.clip(origin, 0, shape - patch), np.minimum(origin, 0))
        if np.any(shape < patch):
            origin = np.where(shape < patch, -((patch - shape) // 2), origin)
        return crop_patch(item, tuple(int(o) for o in origin), self.patch_size, rng)


def augment(patch, vectors: VectorTable, rng, *, p=0.5, intensity=True) -> tuple:
    """Random 90° rotation about z, flips in y and x, brightness and contrast.

    The same spatial transform is applied to the vector coordinates, so that
    targets built afterwards follow the image.

    Parameters
    ----------
    patch : ndarray, (C, Z, Y, X) or (C, Y, X)
    vectors : VectorTable
        In patch voxel coordinates.
    rng : numpy.random.Generator
    p : float
        Probability of each transform.
    """
    start = vectors.start.copy()
    end = vectors.end.copy()
    ny, nx = patch.shape[-2], patch.shape[-1]
    if rng.random() < p:
        # Odd quarter turns swap y and x, so only square patches may take them.
        k = int(rng.integers(1, 4)) if ny == nx else 2
        patch = np.rot90(patch, k, axes=(-2, -1))
        for _ in range(k):
            # np.rot90 maps (y, x) -> (nx - 1 - x, y) for one quarter turn.
            for pts in (start, end):
                y, x = pts[:, 1].copy(), pts[:, 2].copy()
                pts[:, 1], pts[:, 2] = nx - 1 - x, y
            ny, nx = nx, ny
    if rng.random() < p:
        patch = patch[..., ::-1, :]
        start[:, 1] = ny - 1 - start[:, 1]
        end[:, 1] = ny - 1 - end[:, 1]
    if rng.random() < p:
        patch = patch[..., ::-1]
        start[:, 2] = nx - 1 - start[:, 2]
        end[:, 2] = nx - 1 - end[:, 2]
    patch = np.ascontiguousarray(patch, dtype=np.float32)
    if intensity and rng.random() < p:
        contrast = rng.uniform(0.75, 1.25, size=(patch.shape[0],) + (1,) * (patch.ndim - 1))
        brightness = rng.uniform(-0.1, 0.1, size=contrast.shape)
        mean = patch.mean(axis=tuple(range(1, patch.ndim)), keepdims=True)
        patch = ((patch - mean) * contrast + mean + brightness).astype(np.float32)
    return patch, VectorTable(start, end, vectors.score, names=vectors.names, ndim=vectors.ndim)


def make_batch(patches, tables, *, voxel_size, radii, weighting="balanced", offsets=False):
    """Stack patches and build their targets as torch tensors (B, 1, ...); offsets (B, D, ...)."""
    import torch

    from .targets import make_targets

    spatial = patches[0].shape[1:]
    x = torch.from_numpy(np.stack(patches))
    fields = {}
    for t in tables:
        tg = make_targets(spatial, t, voxel_size=voxel_size, radii=radii, weighting=weighting,
                          offsets=offsets)
        for k, v in tg.as_dict().items():
            fields.setdefault(k, []).append(v)
    batch = {}
    for k, vs in fields.items():
        arr = np.stack(vs) if k == "offset" else np.stack(vs)[:, None]
        batch[k] = torch.from_numpy(arr.astype(np.int64 if k.startswith("ids") else np.float32))
    return x, batch


def validation_patches(items, *, patch_size, rng, max_patches=16) -> list:
    """Fixed validation patches tiling each validation image (at most ``max_patches``)."""
    out = []
    for item in items:
        starts = []
        for s, p in zip(item.spatial_shape, patch_size):
            n = max(1, math.ceil(s / p))
            starts.append(sorted({min(i * p, max(s - p, 0)) for i in range(n)}))
        for origin in np.array(np.meshgrid(*starts, indexing="ij")).reshape(len(patch_size), -1).T:
            out.append(crop_patch(item, tuple(int(o) for o in origin), patch_size, rng))
    if len(out) > max_patches:
        keep = rng.choice(len(out), size=max_patches, replace=False)
        out = [out[i] for i in sorted(keep)]
    return out


# ----------------------------------------------------------------------------- job

def load_annotated_images(images, vectors, *, channels=None, structures=None, axes=None,
                          voxel_size=None) -> list:
    """Read images (paths or CellImage) with their vectors; one CSV per image.

    Returns a list of ``(CellImage, VectorTable, (start_channel, end_channel))``.
    """
    from ..io.image import CellImage, read_image, resolve_channels
    from ..io.vectors import read_vectors

    if len(images) != len(vectors):
        raise InputError(f"{len(images)} images but {len(vectors)} vector files; give one CSV per "
                         "image")
    out = []
    for img, vec in zip(images, vectors):
        image = img if isinstance(img, CellImage) else read_image(img, axes=axes,
                                                                  voxel_size=voxel_size)
        if image.is_3d and image.voxel_size is None:
            raise InputError("3D image has no voxel size; pass --voxel-size X Y Z", image.path)
        table = vec if isinstance(vec, VectorTable) else read_vectors(vec)
        ch = resolve_channels(image, channels=channels, structures=structures)
        out.append((image, table, ch))
    return out


def train(images: Sequence, vectors: Sequence, *, outdir, config: Optional[TrainConfig] = None,
          val_images: Sequence = (), val_vectors: Sequence = (), channels=None, axes=None,
          voxel_size=None, init=None, resume=False, overwrite=False,
          cancel: Optional[CancelToken] = None):
    """Train (or fine-tune, or resume) a CellPol model into a model folder.

    A generator job: yields :class:`~cellpol_core.jobs.ProgressEvent` (stage
    ``"load"`` while reading, then ``"train"``; ``data`` holds ``epoch``,
    the losses, ``device`` and ``eta_s``; an event with ``data["epoch_end"]``
    closes each epoch, with its log row, ``lr`` and ``best``) and returns
    the model folder path. The epochs run in
    :func:`cellpol_core.detection.loop.epoch_loop`.

    Parameters
    ----------
    images, vectors : sequences
        Training images (paths or CellImage) and their vectors (paths or
        VectorTable), one CSV per image.
    outdir : path
        The model folder to write. Its ``config.json`` records ``config``
        under ``"training"``. The run trains in a staging folder beside it
        and replaces it whole at the end.
    config : TrainConfig, optional
        Every hyperparameter of the run (epochs, learning rate, patch size,
        seed, device...); default ``TrainConfig()``.
    val_images, val_vectors : sequences, optional
        Validation images and vectors. Without them, ``config.val_fraction``
        of each training image (along x) is held out.
    channels : (int, int), optional
        Start and end channels of every image; default the channels named
        like the structures, else 0 and 1.
    axes : str, optional
        Axes override for reading images.
    voxel_size : tuple of 3 floats, optional
        (z, y, x) µm override for all images.
    init : path or str, optional
        A model to fine-tune; its network and voxel size are kept.
    resume : bool
        Continue ``outdir``'s run exactly where it stopped: its interrupted
        run (staging folder), else the finished run in ``outdir`` (up to
        ``config.epochs``).
    overwrite : bool
        Let a new run replace the model (or the interrupted run) of ``outdir``.
    cancel : CancelToken, optional
        Checked between steps; on cancel the checkpoint is saved first.

    Raises
    ------
    InputError
        Bad images, vectors or options; nothing to resume; a checkpoint of
        another run; a model to replace without ``overwrite``.
    FolderBusy
        Another run trains into ``outdir`` (an InputError naming it).

    Examples
    --------
    >>> from cellpol_core.jobs import run_job
    >>> config = TrainConfig(epochs=2, steps_per_epoch=4, device="cpu")
    >>> model_dir = run_job(train(["a.tif"], ["a.csv"], outdir="m",
    ...                           config=config))  # doctest: +SKIP
    """
    import torch

    from .loop import (check_run, default_steps_per_epoch, epoch_loop, read_checkpoint,
                       seed_everything)
    from .runfolder import RunFolder
    from .targets import get_preset

    config = TrainConfig() if config is None else config
    outdir = Path(outdir)
    rng = seed_everything(config.seed)
    try:
        pair = get_preset(config.preset)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    structures = tuple(config.structures or pair.structures)
    if not images:
        raise InputError("no training images given")
    folder = RunFolder(outdir, resume=resume, overwrite=overwrite,
                       checkpoint_file=CHECKPOINT_FILE, own_files=RUN_FILES).open()
    try:
        work = folder.workdir
        checkpoint = read_checkpoint(work / CHECKPOINT_FILE, resume=resume)
        yield ProgressEvent("load", 0, len(images) + len(val_images), message="reading images")
        read = dict(channels=channels, structures=structures, axes=axes, voxel_size=voxel_size)
        train_src = load_annotated_images(images, vectors, **read)
        val_src = load_annotated_images(val_images, val_vectors, **read) if val_images else []
        dims = train_src[0][0].ndim
        if any(im.ndim != dims for im, _, _ in train_src + val_src):
            raise InputError("training images mix 2D and 3D")

        model_config, init_state = _model_config(work, config, train_src, structures, pair,
                                                 init=init, resume=checkpoint is not None)
        if checkpoint is not None:
            check_run(checkpoint, model_config.run_id, work / CHECKPOINT_FILE)
        else:
            model_config.run_id = folder.run_id
        if model_config.spatial_dims != dims:
            raise InputError(f"the model is {model_config.spatial_dims}D but the images are "
                             f"{dims}D")
        items, val_items = _training_items(train_src, val_src, model_config, config.val_fraction)

        net = build_network_from_config(model_config)
        patch_size = config.patch_size or (tuple(model_config.patch_size) or (
            (64, 128, 128) if dims == 3 else (256, 256)))
        patch_size = fit_patch_size(patch_size, [it.spatial_shape for it in items],
                                    net.size_multiple())
        model_config.patch_size = tuple(patch_size)
        model_config.training = config
        if config.num_threads:
            torch.set_num_threads(int(config.num_threads))
        if init_state is not None:
            # A head added to the fine-tuned model (offset_head) starts fresh.
            missing, unexpected = net.load_state_dict(init_state, strict=False)
            if unexpected or any(not k.startswith("offset_head.") for k in missing):
                raise InputError(f"the weights of {init} do not fit its network")
        trainer = _ModelTrainer(net, items, val_items, model_config=model_config, config=config,
                                outdir=work, rng_seed=config.seed)
        trainer.run_id = model_config.run_id
        write_config(work, model_config)
        if init is not None and checkpoint is None:
            # A fine-tuned model decodes like the model it started from until tuned.
            write_thresholds(work, load_model(init, for_inference=False).thresholds)
        if not (work / THRESHOLDS_FILE).exists():
            # Until tuned: the joint assignment with λ = 0 (distance, gated by the
            # embeddings), which beat the greedy rule on held-out phantoms.
            write_thresholds(work, Thresholds(d_min_um=_default_dmin(model_config),
                                              d_max_um=pair.d_max, delta=config.delta,
                                              embed_weight=0.0 if model_config.embedding
                                              else None,
                                              offset_weight=UNTUNED_OFFSET_WEIGHT
                                              if model_config.network.get("offset") else 0.0))
        steps = config.steps_per_epoch or default_steps_per_epoch(
            [it.spatial_shape for it in items], patch_size, config.batch_size)
        yield from epoch_loop(trainer, epochs=config.epochs, steps_per_epoch=steps, rng=rng,
                              checkpoint=checkpoint, cancel=cancel,
                              budget_s=None if config.minutes is None else 60.0 * config.minutes,
                              start_data={"patch_size": patch_size,
                                          "n_val_patches": len(trainer.val_set)})
        folder.commit()
    finally:
        folder.close()
    return outdir


def _model_config(outdir, config: TrainConfig, train_src, structures, pair, *, init, resume):
    """The model folder's configuration: from the checkpoint folder, an init model, or new.

    Returns ``(ModelConfig, init_state)``; ``init_state`` is the fine-tuned
    model's weights, or None.
    """
    from .network import build_network

    if resume:
        return read_config(outdir), None
    if init is not None:
        base = load_model(init, for_inference=False)
        model_config = base.config
        model_config.extra = dict(model_config.extra, init=str(base.path))
        if config.offset_head and not model_config.network.get("offset"):
            model_config.network = dict(model_config.network, offset=True)
        return model_config, {k: v.detach().cpu() for k, v in base.net.state_dict().items()}
    first, _, first_channels = train_src[0]
    dims = first.ndim
    # Built for its arguments only; building it advances torch's generator,
    # which the initial weights of seeded runs have always followed.
    net0 = build_network(config.arch, in_channels=2, spatial_dims=dims,
                         offset=config.offset_head)
    model_vs = config.model_voxel_size or first.voxel_size or (1.0, 1.0, 1.0)
    if dims == 2:
        model_vs = (1.0,) + tuple(model_vs[-2:])
    model_config = ModelConfig(network=net0.config(), arch=config.arch, structures=structures,
                               channel_names=tuple(first.channel_names[c]
                                                   for c in first_channels),
                               voxel_size=tuple(float(v) for v in model_vs), spatial_dims=dims,
                               patch_size=(), radii=tuple(pair.radii), preset=pair.name)
    return model_config, None


def _training_items(train_src, val_src, model_config: ModelConfig, val_fraction) -> tuple:
    """Training and validation :class:`TrainingImage` lists at the model's voxel size."""
    def prepare(src):
        return [prepare_image(im, t, channels=ch, voxel_size=model_config.voxel_size,
                              name=str(im.path)) for im, t, ch in src]

    items, val_items = prepare(train_src), prepare(val_src)
    if not val_items and val_fraction > 0:
        split = [split_holdout(it, fraction=val_fraction) for it in items]
        items = [a for a, _ in split]
        val_items = [b for _, b in split if b is not None]
    return items, val_items


class _ModelTrainer(Trainer):
    """One CellPol network, its optimiser and validation set, for :func:`epoch_loop`."""

    stage = "train"
    checkpoint_file = CHECKPOINT_FILE
    log_file = TRAINING_LOG
    log_columns = LOG_COLUMNS

    def __init__(self, net, items, val_items, *, model_config: ModelConfig,
                 config: TrainConfig, outdir, rng_seed):
        import torch

        from .losses import CellPolLoss
        from .network import device_description, prepare_for_device, select_device
        from .precision import resolve_precision

        self.config = config
        self.outdir = Path(outdir)
        self.dev = select_device(config.device)
        self.device = device_description(
            self.dev, resolve_precision(config.precision, self.dev, training=True))
        self.net = prepare_for_device(net, self.dev)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=config.lr)
        self.sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.opt, mode="min", factor=0.8, patience=config.plateau_patience)
        self.loss_fn = CellPolLoss(alpha=config.alpha, beta=config.beta, delta=config.delta,
                                   gamma=config.gamma)
        self.offsets = bool(getattr(net, "offset", False))
        self.best_val = math.inf
        self.patch_size = tuple(model_config.patch_size)
        self.voxel_size = model_config.voxel_size
        self.radii = model_config.radii
        self.dims = model_config.spatial_dims
        self.sampler = PatchSampler(items, patch_size=self.patch_size, pair_bias=config.pair_bias)
        self.frozen = _freeze(self.net, config.freeze)
        self.val_set = validation_patches(val_items, patch_size=self.patch_size,
                                          rng=np.random.default_rng(rng_seed + 1))

    def _batch(self, patches, tables):
        from .network import to_device_input

        x, batch = make_batch(patches, tables, voxel_size=self.voxel_size, radii=self.radii,
                              weighting=self.config.weighting, offsets=self.offsets)
        x = to_device_input(x, self.dev, self.dims)
        return x, {k: v.to(self.dev) for k, v in batch.items()}

    def _loss(self, x, batch):
        from .network import autocast_context

        with autocast_context(self.dev, self.config.precision):
            out = self.net(x)
        return self.loss_fn({k: v.float() for k, v in out.items()}, batch)

    def start_epoch(self):
        self.net.train()
        for module in self.frozen:
            module.eval()  # fixed BatchNorm statistics too

    def set_lr_factor(self, factor):
        for group in self.opt.param_groups:
            group["lr"] = self.config.lr * float(factor)

    def step(self, rng) -> dict:
        patches, tables = [], []
        for _ in range(self.config.batch_size):
            pa, tb = self.sampler.sample(rng)
            if self.config.augment_p > 0:
                pa, tb = augment(pa, tb, rng, p=self.config.augment_p)
            patches.append(pa)
            tables.append(tb)
        loss, parts = self._loss(*self._batch(patches, tables))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return {"loss": float(loss.detach()), **{k: float(v) for k, v in parts.items()}}

    def _validation_loss(self) -> float:
        import torch

        self.net.eval()
        total, n = 0.0, 0
        bs = self.config.batch_size
        with torch.inference_mode():
            for i in range(0, len(self.val_set), bs):
                chunk = self.val_set[i:i + bs]
                loss, _ = self._loss(*self._batch([c[0] for c in chunk], [c[1] for c in chunk]))
                total += float(loss) * len(chunk)
                n += len(chunk)
        return total / max(n, 1)

    def end_epoch(self, epoch, means) -> tuple:
        train_loss = means["loss"]
        val_loss = self._validation_loss() if self.val_set else train_loss
        if self.config.minutes is None:  # a time budget sets its own schedule
            self.sched.step(val_loss)
        improved = val_loss < self.best_val
        if improved:
            self.best_val = val_loss
            save_state(self.outdir / WEIGHTS_BEST, cpu_state_dict(self.net))
        save_state(self.outdir / WEIGHTS_LAST, cpu_state_dict(self.net))
        fields = {"train_loss": train_loss, "val_loss": val_loss,
                  **{k: means.get(k, 0.0) for k in ("hm_start", "hm_end", "pull", "push",
                                                    "offset")},
                  "lr": self.opt.param_groups[0]["lr"]}
        return fields, {"best": improved}

    def state_dict(self) -> dict:
        return {"model": cpu_state_dict(self.net), "optimizer": self.opt.state_dict(),
                "scheduler": self.sched.state_dict(), "best_val": float(self.best_val)}

    def load_state_dict(self, state):
        self.net.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.best_val = float(state["best_val"])

    def step_message(self, epoch, epochs, values, means) -> str:
        return f"{_epoch_text(epoch, epochs)} loss {means['loss']:.4f}"

    def epoch_message(self, epoch, epochs, row) -> str:
        return (f"{_epoch_text(epoch, epochs)} train {row['train_loss']:.4f} "
                f"val {row['val_loss']:.4f}")


def _epoch_text(epoch, epochs) -> str:
    # Time-budget runs have no epoch count.
    return f"epoch {epoch}" if epochs is None else f"epoch {epoch}/{epochs}"


def _freeze(net, freeze) -> list:
    """Stop gradients to the ``freeze`` part of ``net``; returns its modules."""
    if freeze == "none":
        return []
    modules = [net.inc, *net.down]
    if freeze == "backbone":
        modules += [*net.up, net.head_start, net.head_end]
    for module in modules:
        module.requires_grad_(False)
    return modules


def build_network_from_config(config: ModelConfig):
    from .model import build_net

    return build_net(config)


def fit_patch_size(patch_size, shapes, multiple) -> tuple:
    """Shrink ``patch_size`` towards the largest image, keeping the network's size rule.

    Each axis becomes at most the smallest multiple of ``multiple`` that holds
    the largest image along that axis.
    """
    out = []
    for axis, (p, m) in enumerate(zip(patch_size, multiple)):
        largest = max(s[axis] for s in shapes)
        cap = int(math.ceil(largest / m) * m)
        p = int(math.ceil(int(p) / m) * m)
        out.append(max(m, min(p, cap)))
    return tuple(out)


def _default_dmin(config: ModelConfig) -> tuple:
    # Two objects of one structure are rarely closer than about their radius.
    return tuple(round(r * 0.66, 2) for r in config.radii)


def cpu_state_dict(net) -> dict:
    """The network's tensors, detached, on the CPU (what weight files hold)."""
    return {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
