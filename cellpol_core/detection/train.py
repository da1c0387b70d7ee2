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
"""

from __future__ import annotations

import csv
import io
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..errors import InputError
from ..jobs import CancelToken, ProgressEvent
from .model import (CHECKPOINT_FILE, TRAINING_LOG, WEIGHTS_BEST, WEIGHTS_LAST, ModelConfig,
                    Thresholds, load_model, load_state, read_config, save_state, write_config,
                    write_thresholds)
from ..io.resample import coord_scale, needs_resampling, resample_channels, resampled_shape
from ..io.vectors import VectorTable

LOG_COLUMNS = ["epoch", "train_loss", "val_loss", "hm_start", "hm_end", "pull", "push", "lr",
               "seconds", "device"]


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
        data = resample_channels(data, shape)
        scale = np.ones(3)
        scale[-dims:] = coord_scale(image.spatial_shape, shape)
        vectors = VectorTable(vectors.start * scale, vectors.end * scale, vectors.score,
                              names=vectors.names, ndim=vectors.ndim)
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
    val_vec = VectorTable(val_vec.start - [0, 0, cut], val_vec.end - [0, 0, cut], val_vec.score,
                          names=val_vec.names, ndim=val_vec.ndim)
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
    return VectorTable(vectors.start - off, vectors.end - off, vectors.score, names=vectors.names,
                       ndim=vectors.ndim)


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


def make_batch(patches, tables, *, voxel_size, radii, weighting="balanced"):
    """Stack patches and build their targets as torch tensors (B, 1, ...)."""
    import torch

    from .targets import make_targets

    spatial = patches[0].shape[1:]
    x = torch.from_numpy(np.stack(patches))
    fields = {}
    for t in tables:
        tg = make_targets(spatial, t, voxel_size=voxel_size, radii=radii, weighting=weighting)
        for k, v in tg.as_dict().items():
            fields.setdefault(k, []).append(v)
    batch = {}
    for k, vs in fields.items():
        arr = np.stack(vs)[:, None]
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


def train(images: Sequence, vectors: Sequence, *, outdir, val_images: Sequence = (),
          val_vectors: Sequence = (), val_fraction=0.1, arch="light", epochs=50,
          patch_size=None, batch_size=2, lr=1e-3, steps_per_epoch=None, init=None,
          device="auto", seed=0, resume=False, preset="nucleus-golgi", channels=None,
          structures=None, axes=None, voxel_size=None, model_voxel_size=None,
          weighting="balanced", augment_p=0.5,
          pair_bias=0.8, alpha=1.0, beta=1.0, delta=2.0, plateau_patience=10, num_threads=None,
          cancel: Optional[CancelToken] = None):
    """Train (or fine-tune, or resume) a CellPol model into a model folder.

    A generator job: yields :class:`~cellpol_core.jobs.ProgressEvent` (stage
    ``"train"``; ``data`` holds ``epoch``, losses, ``lr``, ``device`` and
    ``eta_s``; an event with ``data["epoch_end"]`` closes each epoch) and
    returns the model folder path.

    Parameters
    ----------
    images, vectors : sequences
        Training images (paths or CellImage) and their vectors (paths or
        VectorTable), one CSV per image.
    outdir : path
        The model folder to write.
    val_images, val_vectors : sequences, optional
        Validation images and vectors. Without them, ``val_fraction`` of each
        training image (along x) is held out.
    arch : str
        Network preset (see :data:`cellpol_core.detection.network.ARCHITECTURES`).
    epochs : int
        Total number of epochs (a resumed run continues up to it).
    patch_size : tuple of int, optional
        (Z, Y, X) or (Y, X); default from the preset, shrunk to the images.
    batch_size, lr : int, float
        Mini-batch size and Adam learning rate.
    steps_per_epoch : int, optional
        Default: enough patches to cover the training voxels once (at least 4).
    init : path or str, optional
        A model to fine-tune; its network and voxel size are kept.
    device : {"auto", "cpu", "cuda"}
        ``auto`` uses CUDA when present.
    seed : int
        Makes runs repeatable.
    resume : bool
        Continue from ``outdir``'s last checkpoint.
    preset : str
        Structure-pair preset giving target radii and d_max.
    channels : (int, int), optional
        Start and end channels of every image.
    structures : (str, str), optional
        Structure names; default from the preset.
    axes : str, optional
        Axes override for reading images.
    voxel_size : tuple of 3 floats, optional
        (z, y, x) µm override for all images.
    model_voxel_size : tuple of 3 floats, optional
        (z, y, x) µm the model works at; images are resampled to it, here and
        at prediction. Default: the first training image's voxel size. A
        coarser size trades detail for speed.
    weighting : {"balanced", "reference"}
        Heatmap loss weights.
    augment_p : float
        Probability of each augmentation.
    cancel : CancelToken, optional
        Checked between steps; on cancel the last checkpoint is saved first.
    """
    import torch

    from .losses import CellPolLoss
    from .network import (autocast_context, build_network, device_description,
                          prepare_for_device, select_device)
    from .targets import get_preset

    outdir = Path(outdir)
    # Seed before any network is built: initial weights must repeat too.
    torch.manual_seed(seed)
    try:
        pair = get_preset(preset)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    structures = tuple(structures or pair.structures)
    if not images:
        raise InputError("no training images given")
    yield ProgressEvent("load", 0, len(images) + len(val_images), message="reading images")
    train_src = load_annotated_images(images, vectors, channels=channels, structures=structures,
                                      axes=axes, voxel_size=voxel_size)
    val_src = load_annotated_images(val_images, val_vectors, channels=channels,
                                    structures=structures, axes=axes,
                                    voxel_size=voxel_size) if val_images else []
    dims = train_src[0][0].ndim
    if any(im.ndim != dims for im, _, _ in train_src + val_src):
        raise InputError("training images mix 2D and 3D")

    # Model configuration: from the checkpoint folder, an init model, or new.
    init_state = None
    if resume and (outdir / CHECKPOINT_FILE).exists():
        config = read_config(outdir)
    elif init is not None:
        base = load_model(init, for_inference=False)
        config = base.config
        config.extra = dict(config.extra, init=str(base.path))
        init_state = {k: v.detach().cpu() for k, v in base.net.state_dict().items()}
    else:
        net0 = build_network(arch, in_channels=2, spatial_dims=dims)
        model_vs = model_voxel_size or train_src[0][0].voxel_size or (1.0, 1.0, 1.0)
        if dims == 2:
            model_vs = (1.0,) + tuple(model_vs[-2:])
        config = ModelConfig(network=net0.config(), arch=arch, structures=structures,
                             channel_names=tuple(train_src[0][0].channel_names[c]
                                                 for c in train_src[0][2]),
                             voxel_size=tuple(float(v) for v in model_vs), spatial_dims=dims,
                             patch_size=(), radii=tuple(pair.radii), preset=pair.name)
        del net0
    if config.spatial_dims != dims:
        raise InputError(f"the model is {config.spatial_dims}D but the images are {dims}D")

    items = [prepare_image(im, t, channels=ch, voxel_size=config.voxel_size, name=str(im.path))
             for im, t, ch in train_src]
    val_items = [prepare_image(im, t, channels=ch, voxel_size=config.voxel_size, name=str(im.path))
                 for im, t, ch in val_src]
    if not val_items and val_fraction > 0:
        split = [split_holdout(it, fraction=val_fraction) for it in items]
        items = [a for a, _ in split]
        val_items = [b for _, b in split if b is not None]

    net = build_network_from_config(config)
    multiple = net.size_multiple()
    if patch_size is None:
        patch_size = tuple(config.patch_size) if config.patch_size else (
            (64, 128, 128) if dims == 3 else (256, 256))
    patch_size = fit_patch_size(patch_size, [it.spatial_shape for it in items], multiple)
    config.patch_size = tuple(patch_size)

    dev = select_device(device)
    desc = device_description(dev)
    if num_threads:
        torch.set_num_threads(int(num_threads))
    rng = np.random.default_rng(seed)
    if init_state is not None:
        net.load_state_dict(init_state)
    net = prepare_for_device(net, dev)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=0.8,
                                                       patience=plateau_patience)
    loss_fn = CellPolLoss(alpha=alpha, beta=beta, delta=delta)

    start_epoch = 0
    best_val = math.inf
    log_rows = []
    if resume and (outdir / CHECKPOINT_FILE).exists():
        ck = load_state(outdir / CHECKPOINT_FILE)
        net.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        start_epoch = int(ck["epoch"])
        best_val = float(ck["best_val"])
        rng.bit_generator.state = ck["numpy_rng"]
        torch.set_rng_state(ck["torch_rng"])
        log_rows = read_training_log(outdir / TRAINING_LOG)[:start_epoch]
    elif resume:
        raise InputError(f"nothing to resume: no {CHECKPOINT_FILE}", outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    write_config(outdir, config)
    if not (outdir / "thresholds.json").exists():
        # Until tuned: the joint assignment with λ = 0 (distance, gated by the
        # embeddings), which beat the greedy rule on held-out phantoms.
        write_thresholds(outdir, Thresholds(d_min_um=_default_dmin(config), d_max_um=pair.d_max,
                                            delta=delta,
                                            embed_weight=0.0 if config.embedding else None))

    sampler = PatchSampler(items, patch_size=patch_size, pair_bias=pair_bias)
    if steps_per_epoch is None:
        voxels = sum(np.prod(it.spatial_shape) for it in items)
        steps_per_epoch = max(4, math.ceil(voxels / np.prod(patch_size) / batch_size))
    val_rng = np.random.default_rng(seed + 1)
    val_set = validation_patches(val_items, patch_size=patch_size, rng=val_rng)
    radii = config.radii
    vs = config.voxel_size

    def to_dev(x, batch):
        x = x.to(dev)
        if dims == 3 and dev.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last_3d)
        return x, {k: v.to(dev) for k, v in batch.items()}

    yield ProgressEvent("train", start_epoch * steps_per_epoch, epochs * steps_per_epoch,
                        message=f"training on {desc}",
                        data={"device": desc, "epoch": start_epoch, "patch_size": patch_size,
                              "steps_per_epoch": steps_per_epoch, "n_val_patches": len(val_set)})
    t_start = time.perf_counter()
    for epoch in range(start_epoch, epochs):
        t0 = time.perf_counter()
        net.train()
        sums = {"loss": 0.0, "hm_start": 0.0, "hm_end": 0.0, "pull": 0.0, "push": 0.0}
        for step in range(steps_per_epoch):
            if cancel is not None and cancel.cancelled:
                _save_checkpoint(outdir, net, opt, sched, epoch, best_val, rng)
                cancel.check()
            patches, tables = [], []
            for _ in range(batch_size):
                pa, tb = sampler.sample(rng)
                if augment_p > 0:
                    pa, tb = augment(pa, tb, rng, p=augment_p)
                patches.append(pa)
                tables.append(tb)
            x, batch = to_dev(*make_batch(patches, tables, voxel_size=vs, radii=radii,
                                          weighting=weighting))
            with autocast_context(dev):
                out = net(x)
            out = {k: v.float() for k, v in out.items()}
            loss, parts = loss_fn(out, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sums["loss"] += float(loss.detach())
            for k in parts:
                sums[k] += float(parts[k])
            done = epoch * steps_per_epoch + step + 1
            elapsed = time.perf_counter() - t_start
            per_step = elapsed / max(done - start_epoch * steps_per_epoch, 1)
            mean_loss = sums["loss"] / (step + 1)
            yield ProgressEvent("train", done, epochs * steps_per_epoch,
                                message=f"epoch {epoch + 1}/{epochs} loss {mean_loss:.4f}",
                                data={"epoch": epoch + 1, "step": step + 1,
                                      "loss": float(loss.detach()), "device": desc,
                                      "eta_s": per_step * (epochs * steps_per_epoch - done)})
        train_loss = sums["loss"] / steps_per_epoch
        val_loss = _validation_loss(net, loss_fn, val_set, vs, radii, weighting, to_dev, dev,
                                    batch_size) if val_set else train_loss
        sched.step(val_loss)
        improved = val_loss < best_val
        if improved:
            best_val = val_loss
            save_state(outdir / WEIGHTS_BEST, cpu_state_dict(net))
        save_state(outdir / WEIGHTS_LAST, cpu_state_dict(net))
        row = {"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val_loss,
               "hm_start": sums["hm_start"] / steps_per_epoch,
               "hm_end": sums["hm_end"] / steps_per_epoch, "pull": sums["pull"] / steps_per_epoch,
               "push": sums["push"] / steps_per_epoch, "lr": opt.param_groups[0]["lr"],
               "seconds": time.perf_counter() - t0, "device": desc}
        log_rows.append(row)
        write_training_log(outdir / TRAINING_LOG, log_rows)
        _save_checkpoint(outdir, net, opt, sched, epoch + 1, best_val, rng)
        elapsed = time.perf_counter() - t_start
        done_epochs = epoch + 1 - start_epoch
        yield ProgressEvent("train", (epoch + 1) * steps_per_epoch, epochs * steps_per_epoch,
                            message=f"epoch {epoch + 1}/{epochs} train {train_loss:.4f} "
                                    f"val {val_loss:.4f}",
                            data=dict(row, epoch_end=True, best=improved,
                                      eta_s=elapsed / done_epochs * (epochs - epoch - 1)))
    return outdir


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


def _save_checkpoint(outdir, net, opt, sched, epoch, best_val, rng):
    import torch

    save_state(Path(outdir) / CHECKPOINT_FILE, {
        "model": cpu_state_dict(net), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
        "epoch": int(epoch), "best_val": float(best_val),
        "numpy_rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
    })


def _validation_loss(net, loss_fn, val_set, vs, radii, weighting, to_dev, dev, batch_size):
    import torch

    from .network import autocast_context

    net.eval()
    total, n = 0.0, 0
    with torch.inference_mode():
        for i in range(0, len(val_set), batch_size):
            chunk = val_set[i:i + batch_size]
            x, batch = to_dev(*make_batch([c[0] for c in chunk], [c[1] for c in chunk],
                                          voxel_size=vs, radii=radii, weighting=weighting))
            with autocast_context(dev):
                out = net(x)
            loss, _ = loss_fn({k: v.float() for k, v in out.items()}, batch)
            total += float(loss) * len(chunk)
            n += len(chunk)
    return total / max(n, 1)


def write_training_log(path, rows, columns=LOG_COLUMNS):
    """Write per-epoch rows (dicts) as a CSV, atomically."""
    from ..io.atomic import write_text_atomic

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    write_text_atomic(path, buf.getvalue())


def read_training_log(path, columns=LOG_COLUMNS) -> list:
    """Rows written by :func:`write_training_log` (for resuming); [] when absent."""
    if not Path(path).exists():
        return []
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    out = []
    for r in rows:
        out.append({k: (r[k] if k == "device" else float(r[k])) for k in columns if k in r})
        out[-1]["epoch"] = int(out[-1]["epoch"])
    return out
