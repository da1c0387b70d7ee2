"""Synthetic training data with a Vox2Vox (3D Pix2Pix) GAN (docs/method.md §4).

Networks
--------
:class:`UNetGenerator` maps a 2-channel 0/1 label mask (start, end structure)
to a 2-channel image in the normalised range [0, 1] (sigmoid output);
:class:`PatchDiscriminator` judges (mask, image) pairs patch by patch (one
logit per patch). Both take ``spatial_dims`` (2 or 3): one code path for 2D
and 3D.

Training
--------
Pairs (mask, image) are cut from annotated real images: the image is
normalised per channel with percentiles (0.05–99.95), and its mask is built
from its own annotations (local Otsu masks pasted at their true positions, see
:mod:`cellpol_core.synthetic.masks`). Losses: discriminator BCE (with logits) on real and
generated pairs, halved; generator BCE + ``lambda_l1`` (100) · L1. Adam, lr
2e-4, β = (0.5, 0.999), batch 2. Patches get random quarter turns about z and
flips.

GAN folder
----------
::

    GAN_DIR/
        config.json         schema_version, kind "cellpol-gan", generator and
                            discriminator arguments, voxel size, patch,
                            normalisation, structures, channel names, box sizes
        generator.pt        generator state_dict
        discriminator.pt    discriminator state_dict
        checkpoint_last.pt  both networks, both optimisers, the epoch and step
                            reached and the random states, for ``resume=True``
        training_log.csv    one row per epoch
        masks.npz           the mask dictionary (:class:`~cellpol_core.synthetic.masks.MaskDictionary`)

Weights load with ``torch.load(weights_only=True)``: opening a GAN folder
never runs code, and their SHA-256 in ``checksums.json`` is checked. A run
holds the folder's lock (:class:`cellpol_core.io.lock.FolderLock`), removes
stale temporaries of its files on start, and writes ``run_id`` into
``config.json`` and the checkpoint, so that resuming never mixes two runs.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from ..defaults import PAIR_DISTANCE_UM
from ..errors import InputError
from ..jobs import CancelToken, ProgressEvent
from ..detection.loop import Trainer
from ..detection.model import load_state, save_state, write_json
from .masks import DEFAULT_BOX_UM, MaskDictionary, image_object_masks, load_annotated, sample_layout
from ..io.vectors import write_vectors

__all__ = [
    "UNetGenerator",
    "PatchDiscriminator",
    "train_gan",
    "generate",
    "evaluate_gan",
    "load_gan",
    "ssim",
    "GAN_SCHEMA_VERSION",
]

GAN_SCHEMA_VERSION = 1
CONFIG_FILE = "config.json"
GENERATOR_FILE = "generator.pt"
DISCRIMINATOR_FILE = "discriminator.pt"
CHECKPOINT_FILE = "checkpoint_last.pt"
TRAINING_LOG = "training_log.csv"
DICTIONARY_FILE = "masks.npz"
LOG_COLUMNS = ["epoch", "d_loss", "g_loss", "l1", "seconds", "device"]
#: The files a GAN run writes (their stale temporaries are removed on start).
RUN_FILES = (CONFIG_FILE, "checksums.json", GENERATOR_FILE, DISCRIMINATOR_FILE, CHECKPOINT_FILE,
             TRAINING_LOG, DICTIONARY_FILE)
NORMALISATION = {"method": "percentile", "low": 0.05, "high": 99.95}


# ----------------------------------------------------------------------------- networks

def _conv_cls(spatial_dims):
    return nn.Conv3d if spatial_dims == 3 else nn.Conv2d


def _norm(spatial_dims, channels):
    # Instance norm: batch statistics of a batch of 2 would be too noisy.
    return (nn.InstanceNorm3d if spatial_dims == 3 else nn.InstanceNorm2d)(channels, affine=True)


class UNetGenerator(nn.Module):
    """Pix2Pix U-Net generator: label mask -> image.

    Each encoder level is a 4×4(×4) stride-2 convolution (instance norm,
    LeakyReLU 0.2; no norm on the first and the innermost level); each decoder
    level a 4×4(×4) stride-2 transposed convolution (instance norm, ReLU,
    dropout on the innermost ``dropout_levels``) concatenated with the encoder
    skip. The output layer is a transposed convolution and a sigmoid.

    Parameters
    ----------
    spatial_dims : {2, 3}
    in_channels, out_channels : int
        Mask channels in, image channels out (2 and 2).
    base_filters : int
        Filters of the first level, doubled per level up to 8×.
    depth : int
        Number of stride-2 levels; input sizes must be multiples of ``2**depth``.
    dropout : float
        Dropout probability of the innermost decoder levels (Pix2Pix's noise).
    dropout_levels : int

    Shapes
    ------
    input (B, in_channels, Z, Y, X) float (0/1 masks) -> output (B,
    out_channels, Z, Y, X) in [0, 1]; 2D: (B, C, Y, X).
    """

    def __init__(self, spatial_dims=3, in_channels=2, out_channels=2, base_filters=16, depth=4,
                 dropout=0.5, dropout_levels=2):
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError("spatial_dims must be 2 or 3")
        if depth < 2:
            raise ValueError("depth must be at least 2")
        self.spatial_dims = int(spatial_dims)
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.base_filters = int(base_filters)
        self.depth = int(depth)
        self.dropout = float(dropout)
        self.dropout_levels = int(dropout_levels)
        conv = _conv_cls(spatial_dims)
        tconv = nn.ConvTranspose3d if spatial_dims == 3 else nn.ConvTranspose2d
        widths = [base_filters * min(2 ** i, 8) for i in range(depth)]
        self.down = nn.ModuleList()
        cin = in_channels
        for i, w in enumerate(widths):
            layers = [conv(cin, w, 4, stride=2, padding=1)]
            if 0 < i < depth - 1:
                layers.append(_norm(spatial_dims, w))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            self.down.append(nn.Sequential(*layers))
            cin = w
        self.up = nn.ModuleList()
        # Decoder level j undoes encoder level depth-1-j and feeds the next skip.
        for j in range(depth - 1):
            src = widths[depth - 1 - j] * (1 if j == 0 else 2)
            w = widths[depth - 2 - j]
            layers = [tconv(src, w, 4, stride=2, padding=1), _norm(spatial_dims, w),
                      nn.ReLU(inplace=True)]
            if j < dropout_levels and dropout > 0:
                layers.append(nn.Dropout(dropout))
            self.up.append(nn.Sequential(*layers))
        self.out = tconv(widths[0] * 2, out_channels, 4, stride=2, padding=1)

    def config(self) -> dict:
        """Constructor arguments, JSON-serialisable."""
        return {"spatial_dims": self.spatial_dims, "in_channels": self.in_channels,
                "out_channels": self.out_channels, "base_filters": self.base_filters,
                "depth": self.depth, "dropout": self.dropout,
                "dropout_levels": self.dropout_levels}

    def size_multiple(self) -> int:
        return 2 ** self.depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != self.spatial_dims + 2 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected (B, {self.in_channels}, ...) with {self.spatial_dims} "
                             f"spatial axes, got {tuple(x.shape)}")
        m = self.size_multiple()
        if any(s % m for s in x.shape[2:]):
            raise ValueError(f"spatial sizes must be multiples of {m}, got {tuple(x.shape[2:])}")
        skips = []
        for layer in self.down:
            x = layer(x)
            skips.append(x)
        for j, layer in enumerate(self.up):
            x = layer(x)
            x = torch.cat([x, skips[-2 - j]], dim=1)
        return torch.sigmoid(self.out(x))


class PatchDiscriminator(nn.Module):
    """Conditional PatchGAN discriminator on (mask, image) pairs.

    ``n_layers`` 4×4(×4) stride-2 convolutions (LeakyReLU 0.2, instance norm
    from the second on), then a 3×3(×3) convolution with norm and a 3×3(×3)
    convolution to one logit channel.

    Parameters
    ----------
    spatial_dims : {2, 3}
    in_channels : int
        Mask plus image channels (4).
    base_filters : int
    n_layers : int
        Stride-2 layers; inputs must be multiples of ``2**n_layers``.

    Shapes
    ------
    input (B, in_channels, Z, Y, X) -> logits (B, 1, Z/2**n, Y/2**n, X/2**n).
    """

    def __init__(self, spatial_dims=3, in_channels=4, base_filters=16, n_layers=3):
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError("spatial_dims must be 2 or 3")
        self.spatial_dims = int(spatial_dims)
        self.in_channels = int(in_channels)
        self.base_filters = int(base_filters)
        self.n_layers = int(n_layers)
        conv = _conv_cls(spatial_dims)
        layers = []
        cin = in_channels
        for i in range(n_layers):
            w = base_filters * min(2 ** i, 8)
            layers.append(conv(cin, w, 4, stride=2, padding=1))
            if i > 0:
                layers.append(_norm(spatial_dims, w))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            cin = w
        w = base_filters * min(2 ** n_layers, 8)
        layers += [conv(cin, w, 3, padding=1), _norm(spatial_dims, w), nn.LeakyReLU(0.2, True),
                   conv(w, 1, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def config(self) -> dict:
        return {"spatial_dims": self.spatial_dims, "in_channels": self.in_channels,
                "base_filters": self.base_filters, "n_layers": self.n_layers}

    def size_multiple(self) -> int:
        return 2 ** self.n_layers

    def forward(self, mask: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([mask, image], dim=1))


# ----------------------------------------------------------------------------- data

def _prepare(pairs, *, voxel_size, box_um):
    """Normalised (mask + image) 4-channel training items at ``voxel_size``."""
    from ..detection.train import TrainingImage, prepare_image

    items, starts, ends = [], [], []
    for image, table, ch in pairs:
        it = prepare_image(image, table, channels=ch, voxel_size=voxel_size, name=str(image.path))
        s, e, mask = image_object_masks(it.data, it.vectors, voxel_size=voxel_size, box_um=box_um)
        starts += s
        ends += e
        items.append(TrainingImage(np.concatenate([mask.astype(np.float32), it.data]),
                                   it.vectors, it.name))
    return items, starts, ends


def _split(patch):
    # Mask channels: padding of crop_patch is faint noise, the masks are 0/1.
    return (patch[:2] > 0.5).astype(np.float32), np.ascontiguousarray(patch[2:], np.float32)


def read_gan_config(gan_dir) -> dict:
    """``config.json`` of a GAN folder, checked."""
    path = Path(gan_dir) / CONFIG_FILE
    if not Path(gan_dir).is_dir():
        raise InputError("GAN folder not found", gan_dir)
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"missing {CONFIG_FILE}; not a CellPol GAN folder", gan_dir) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"not valid JSON ({exc})", path) from None
    if not isinstance(cfg, dict) or cfg.get("kind") != "cellpol-gan":
        raise InputError("not a CellPol GAN config", path)
    version = cfg.get("schema_version")
    if not isinstance(version, int) or version > GAN_SCHEMA_VERSION:
        raise InputError(f"unsupported GAN schema version {version!r}", path)
    for key in ("generator", "discriminator", "voxel_size_zyx_um", "patch_size_zyx",
                "structures"):
        if key not in cfg:
            raise InputError(f"config.json lacks {key!r}", path)
    _check_gan_config(cfg, path)
    return cfg


def _check_gan_config(cfg, path):
    # Sizes a broken or hostile config.json could use to allocate gigabytes, or give nonsense.
    from ..detection.model import MAX_BASE_FILTERS, MAX_DEPTH

    gen = cfg["generator"]
    if not isinstance(gen, dict):
        raise InputError("generator must be an object of network arguments", path)
    for name, high in (("base_filters", MAX_BASE_FILTERS), ("depth", MAX_DEPTH)):
        value = gen.get(name, 1)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
            raise InputError(f"generator {name} must be a whole number from 1 to {high}, got "
                             f"{value!r}", path)
    vs = cfg["voxel_size_zyx_um"]
    if (not isinstance(vs, list) or len(vs) != 3
            or not all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in vs)):
        raise InputError(f"voxel_size_zyx_um must be 3 finite sizes above 0 µm, got {vs!r}", path)


def load_gan(gan_dir, *, device="cpu") -> tuple:
    """Open a GAN folder: returns (generator in eval mode, config dict, MaskDictionary)."""
    gan_dir = Path(gan_dir)
    cfg = read_gan_config(gan_dir)
    try:
        gen = UNetGenerator(**cfg["generator"])
    except (TypeError, ValueError) as exc:
        raise InputError(f"bad generator arguments ({exc})", gan_dir / CONFIG_FILE) from None
    try:
        gen.load_state_dict(load_state(gan_dir / GENERATOR_FILE))
    except RuntimeError as exc:
        raise InputError(f"weights do not fit config.json ({str(exc).splitlines()[0]})",
                         gan_dir / GENERATOR_FILE) from None
    gen.eval().to(device)
    return gen, cfg, MaskDictionary.load(gan_dir / DICTIONARY_FILE)


# ----------------------------------------------------------------------------- training

def train_gan(images: Sequence, vectors: Sequence, *, outdir, epochs=200, patch=(64, 128, 128),
              base_filters=16, depth=4, disc_layers=3, batch_size=2, lr=2e-4, lambda_l1=100.0,
              steps_per_epoch=None, seed=0, device="auto", precision="auto", resume=False,
              channels=None, structures=None, axes=None, voxel_size=None, box_um=DEFAULT_BOX_UM,
              augment_p=0.5, cancel: Optional[CancelToken] = None):
    """Train a Vox2Vox GAN into a GAN folder (a generator job).

    Yields :class:`~cellpol_core.jobs.ProgressEvent` with stage ``"gan"``
    (``data``: ``epoch``, ``step``, ``d_loss``, ``g_loss``, ``l1``,
    ``device``, ``eta_s``; an event with ``data["epoch_end"]`` closes each
    epoch) and returns the GAN folder path. The epochs run in
    :func:`cellpol_core.detection.loop.epoch_loop`, like a model's training.

    Parameters
    ----------
    images, vectors : sequences
        Annotated images (paths or CellImage) and their vectors (paths or
        VectorTable), one per image.
    outdir : path
        The GAN folder.
    epochs : int
        Total epochs (a resumed run continues up to it). The paper used 200.
    patch : tuple of int
        (Z, Y, X) or (Y, X); rounded up to the networks' size multiple and
        shrunk to the largest image.
    base_filters, depth, disc_layers : int
        Generator width and depth, discriminator stride-2 layers.
    batch_size, lr, lambda_l1 : int, float, float
        Batch 2, Adam lr 2e-4 (β1 = 0.5) and the L1 weight 100 of the paper.
    steps_per_epoch : int, optional
        Default: one coverage of the training voxels (see
        :func:`cellpol_core.detection.loop.default_steps_per_epoch`).
    seed : int
        Makes runs repeatable.
    device : {"auto", "cpu", "cuda"}
    precision : str
        Passed to :func:`cellpol_core.detection.network.autocast_context`.
    resume : bool
        Continue from ``outdir``'s checkpoint exactly where it stopped (its
        config wins).
    channels, structures, axes, voxel_size
        How to read the images (see :func:`cellpol_core.synthetic.masks.load_annotated`).
    box_um : ((z, y, x), (z, y, x))
        Mask boxes around start and end centroids in µm.
    augment_p : float
        Probability of each quarter-turn / flip augmentation.
    cancel : CancelToken, optional
        Checked between steps; the checkpoint is saved first.

    Raises
    ------
    InputError
        Bad images or options, or nothing to resume.
    """
    from ..detection.loop import seed_everything
    from ..io.lock import FolderLock

    outdir = Path(outdir)
    rng = seed_everything(seed)
    _check_options(epochs=epochs, steps_per_epoch=steps_per_epoch, batch_size=batch_size,
                   base_filters=base_filters, depth=depth, disc_layers=disc_layers, lr=lr,
                   lambda_l1=lambda_l1)
    lock = FolderLock(outdir, what="GAN training").acquire()
    try:
        return (yield from _train_gan_locked(
            images, vectors, outdir=outdir, epochs=epochs, patch=patch,
            base_filters=base_filters, depth=depth, disc_layers=disc_layers,
            batch_size=batch_size, lr=lr, lambda_l1=lambda_l1, steps_per_epoch=steps_per_epoch,
            rng=rng, device=device, precision=precision, resume=resume, channels=channels,
            structures=structures, axes=axes, voxel_size=voxel_size, box_um=box_um,
            augment_p=augment_p, cancel=cancel))
    finally:
        lock.release()


def _check_options(*, epochs, steps_per_epoch, batch_size, base_filters, depth, disc_layers, lr,
                   lambda_l1):
    """One line for the first option out of range (before any work)."""
    from ..detection.model import MAX_BASE_FILTERS, MAX_DEPTH

    def whole(name, value, low, high=None):
        if (isinstance(value, bool) or not isinstance(value, int) or value < low
                or (high is not None and value > high)):
            limit = f"from {low} to {high}" if high is not None else f"of at least {low}"
            raise InputError(f"{name} must be a whole number {limit}, got {value!r}")

    whole("epochs", epochs, 1)
    if steps_per_epoch is not None:
        whole("steps_per_epoch", steps_per_epoch, 1)
    whole("batch_size", batch_size, 1)
    whole("base_filters", base_filters, 1, MAX_BASE_FILTERS)
    whole("depth", depth, 1, MAX_DEPTH)
    whole("disc_layers", disc_layers, 1, MAX_DEPTH)
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise InputError(f"lr must be a finite number above 0, got {lr!r}")
    if not (isinstance(lambda_l1, (int, float)) and math.isfinite(lambda_l1) and lambda_l1 >= 0):
        raise InputError(f"lambda_l1 must be a finite number of at least 0, got {lambda_l1!r}")


def _train_gan_locked(images, vectors, *, outdir, epochs, patch, base_filters, depth,
                      disc_layers, batch_size, lr, lambda_l1, steps_per_epoch, rng, device,
                      precision, resume, channels, structures, axes, voxel_size, box_um,
                      augment_p, cancel):
    from ..detection.loop import check_run, default_steps_per_epoch, epoch_loop, read_checkpoint
    from ..detection.network import device_description, select_device
    from ..detection.runfolder import clean_temporaries, new_run_id
    from ..detection.train import PatchSampler, fit_patch_size

    clean_temporaries(outdir, RUN_FILES)
    yield ProgressEvent("load", 0, len(images), message="reading images")
    pairs = load_annotated(images, vectors, channels=channels, structures=structures, axes=axes,
                           voxel_size=voxel_size)
    dims = pairs[0][0].ndim
    ck = read_checkpoint(outdir / CHECKPOINT_FILE, resume=resume)
    if ck is not None:
        cfg = read_gan_config(outdir)
        check_run(ck, cfg.get("run_id"), outdir / CHECKPOINT_FILE)
    else:
        if len(patch) != dims:
            raise InputError(f"patch must have {dims} sizes for {dims}D images, got {tuple(patch)}")
        cfg = _new_gan_config(pairs, dims, patch=patch, base_filters=base_filters, depth=depth,
                              disc_layers=disc_layers, structures=structures, box_um=box_um,
                              lambda_l1=lambda_l1, lr=lr, batch_size=batch_size)
        cfg["run_id"] = new_run_id()
    if int(cfg.get("spatial_dims", dims)) != dims:
        raise InputError(f"the GAN is {cfg['spatial_dims']}D but the images are {dims}D")
    vs = tuple(cfg["voxel_size_zyx_um"])
    box = tuple(tuple(b) for b in cfg.get("box_um", box_um))
    items, starts, ends = _prepare(pairs, voxel_size=vs, box_um=box)
    if not starts or not ends:
        raise InputError("no object masks could be made from the annotations (flat images?)")

    gen = UNetGenerator(**cfg["generator"])
    disc = PatchDiscriminator(**cfg["discriminator"])
    multiple = max(gen.size_multiple(), disc.size_multiple())
    patch_size = fit_patch_size(cfg["patch_size_zyx"], [it.spatial_shape for it in items],
                                (multiple,) * len(cfg["patch_size_zyx"]))
    cfg["patch_size_zyx"] = list(patch_size)
    dev = select_device(device)
    bs = int(cfg.get("batch_size", batch_size))
    trainer = _GanTrainer(gen.to(dev), disc.to(dev), PatchSampler(items, patch_size=patch_size),
                          lr=float(cfg.get("lr", lr)), batch_size=bs,
                          lambda_l1=float(cfg.get("lambda_l1", lambda_l1)), augment_p=augment_p,
                          dev=dev, device=device_description(dev), precision=precision,
                          outdir=outdir)
    trainer.run_id = str(cfg.get("run_id") or "")
    outdir.mkdir(parents=True, exist_ok=True)
    write_json(outdir / CONFIG_FILE, cfg)
    MaskDictionary(starts, ends, vs, ndim=dims, structures=tuple(cfg["structures"]),
                   box_um=box).save(outdir / DICTIONARY_FILE)
    steps = steps_per_epoch or default_steps_per_epoch([it.spatial_shape for it in items],
                                                       patch_size, bs)
    yield from epoch_loop(trainer, epochs=int(epochs), steps_per_epoch=steps, rng=rng,
                          checkpoint=ck, cancel=cancel, start_data={"patch_size": patch_size})
    return outdir


def _new_gan_config(pairs, dims, *, patch, base_filters, depth, disc_layers, structures, box_um,
                    lambda_l1, lr, batch_size) -> dict:
    """``config.json`` of a new GAN folder for the annotated ``pairs``."""
    image, table, channels = pairs[0]
    vs0 = tuple(image.voxel_size or (1.0, 1.0, 1.0))
    if dims == 2:
        vs0 = (1.0,) + vs0[-2:]
    # Built for their arguments only; building them advances torch's
    # generator, which the initial weights of seeded runs have always followed.
    gen0 = UNetGenerator(dims, 2, 2, base_filters=base_filters, depth=depth)
    disc0 = PatchDiscriminator(dims, 4, base_filters=base_filters, n_layers=disc_layers)
    names = list(structures or table.names)
    return {"schema_version": GAN_SCHEMA_VERSION, "kind": "cellpol-gan",
            "generator": gen0.config(), "discriminator": disc0.config(),
            "voxel_size_zyx_um": [float(v) for v in vs0], "spatial_dims": dims,
            "patch_size_zyx": [int(p) for p in patch], "normalisation": dict(NORMALISATION),
            "structures": names,
            "channel_names": ([str(image.channel_names[c]) for c in channels]
                              if image.channel_names else names),
            "box_um": [[float(v) for v in b] for b in box_um],
            "lambda_l1": float(lambda_l1), "lr": float(lr), "batch_size": int(batch_size)}


class _GanTrainer(Trainer):
    """Generator and discriminator with their optimisers, for :func:`epoch_loop`."""

    stage = "gan"
    checkpoint_file = CHECKPOINT_FILE
    log_file = TRAINING_LOG
    log_columns = LOG_COLUMNS

    def __init__(self, gen, disc, sampler, *, lr, batch_size, lambda_l1, augment_p, dev, device,
                 precision, outdir):
        self.gen, self.disc, self.sampler = gen, disc, sampler
        self.opt_g = torch.optim.Adam(gen.parameters(), lr=lr, betas=(0.5, 0.999))
        self.opt_d = torch.optim.Adam(disc.parameters(), lr=lr, betas=(0.5, 0.999))
        self.batch_size, self.lambda_l1, self.augment_p = batch_size, lambda_l1, augment_p
        self.dev, self.device, self.precision = dev, device, precision
        self.outdir = Path(outdir)
        self.bce = nn.BCEWithLogitsLoss()

    def start_epoch(self):
        self.gen.train()
        self.disc.train()

    def step(self, rng) -> dict:
        from ..detection.network import autocast_context, to_device_input
        from ..detection.train import augment

        masks, reals = [], []
        for _ in range(self.batch_size):
            pa, tb = self.sampler.sample(rng)
            if self.augment_p > 0:
                pa, _ = augment(pa, tb, rng, p=self.augment_p, intensity=False)
            m, r = _split(pa)
            masks.append(m)
            reals.append(r)
        mask = to_device_input(np.stack(masks), self.dev)
        real = torch.from_numpy(np.stack(reals)).to(self.dev)  # a loss target, not an input
        bce = self.bce
        with autocast_context(self.dev, self.precision):
            fake = self.gen(mask)
        fake = fake.float()
        # Discriminator: real pairs -> 1, generated pairs -> 0.
        with autocast_context(self.dev, self.precision):
            d_real = self.disc(mask, real).float()
            d_fake = self.disc(mask, fake.detach()).float()
        d_loss = 0.5 * (bce(d_real, torch.ones_like(d_real))
                        + bce(d_fake, torch.zeros_like(d_fake)))
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()
        # Generator: fool the discriminator and stay close to the real image.
        with autocast_context(self.dev, self.precision):
            d_gen = self.disc(mask, fake).float()
        l1 = F.l1_loss(fake, real)
        g_loss = bce(d_gen, torch.ones_like(d_gen)) + self.lambda_l1 * l1
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        self.opt_g.step()
        return {"d_loss": float(d_loss.detach()), "g_loss": float(g_loss.detach()),
                "l1": float(l1.detach())}

    def end_epoch(self, epoch, means) -> tuple:
        from ..detection.train import cpu_state_dict

        save_state(self.outdir / GENERATOR_FILE, cpu_state_dict(self.gen))
        save_state(self.outdir / DISCRIMINATOR_FILE, cpu_state_dict(self.disc))
        return dict(means), {}

    def state_dict(self) -> dict:
        from ..detection.train import cpu_state_dict

        return {"generator": cpu_state_dict(self.gen), "discriminator": cpu_state_dict(self.disc),
                "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict()}

    def load_state_dict(self, state):
        self.gen.load_state_dict(state["generator"])
        self.disc.load_state_dict(state["discriminator"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])

    def step_message(self, epoch, epochs, values, means) -> str:
        return f"epoch {epoch}/{epochs} D {values['d_loss']:.3f} G {values['g_loss']:.3f}"

    def epoch_message(self, epoch, epochs, row) -> str:
        return (f"epoch {epoch}/{epochs} D {row['d_loss']:.4f} G {row['g_loss']:.4f} "
                f"L1 {row['l1']:.4f}")


# ----------------------------------------------------------------------------- generation

def _run_generator(gen, mask, dev) -> np.ndarray:
    """Generator output for one (2, ...) 0/1 mask whose sizes fit the network."""
    from ..detection.network import autocast_context, to_device_input

    with torch.inference_mode(), autocast_context(dev):
        out = gen(to_device_input(mask.astype(np.float32)[None], dev))
    return out[0].float().cpu().numpy()


def generate(gan_dir, *, n, outdir, seed=0, n_pairs=(11, 18), shape=None,
             max_pair_um=PAIR_DISTANCE_UM,
             min_sep_um=6.0, mean_direction=None, concentration=0.0, device="auto",
             cancel: Optional[CancelToken] = None):
    """Write ``n`` synthetic images with their ground-truth vectors (a generator job).

    Each sample: a layout from :func:`cellpol_core.synthetic.masks.sample_layout`, the
    generator's image of its mask, written as ``synthetic_{i:04d}.ome.tif``
    (uint16, [0, 1] scaled to 0–65535, channels named after the structures,
    the GAN's voxel size) and ``synthetic_{i:04d}_vectors.csv`` (CellPol CSV
    with µm columns). The folder feeds ``cellpol train`` directly. Yields
    stage ``"generate"`` events and returns the list of image paths.

    Parameters
    ----------
    gan_dir : path
        A GAN folder.
    n : int
        Number of samples.
    outdir : path
    seed : int
        Sample i uses the seed sequence child i of ``seed``: same seed, same files.
    n_pairs : int or (int, int)
        Pairs per patch (the reference used 11–18).
    shape : tuple of int, optional
        (Z, Y, X) or (Y, X) patch, rounded up to the generator's size multiple;
        default the training patch.
    max_pair_um, min_sep_um, mean_direction, concentration
        Layout rules, see :func:`~cellpol_core.synthetic.masks.sample_layout`.
    device : {"auto", "cpu", "cuda"}
    cancel : CancelToken, optional
    """
    from ..io.image import write_ome_tiff
    from ..detection.network import select_device

    if int(n) < 1:
        raise InputError(f"n must be at least 1, got {n}")
    dev = select_device(device)
    gen, cfg, dictionary = load_gan(gan_dir, device=dev)
    dims = int(cfg["generator"]["spatial_dims"])
    shape = tuple(int(s) for s in (shape or cfg["patch_size_zyx"]))
    if len(shape) != dims:
        raise InputError(f"shape must have {dims} sizes for this {dims}D GAN, got {shape}")
    m = gen.size_multiple()
    shape = tuple(max(m, int(math.ceil(s / m) * m)) for s in shape)
    vs = tuple(float(v) for v in cfg["voxel_size_zyx_um"])
    names = [str(s) for s in cfg["structures"]]
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    seeds = np.random.SeedSequence(int(seed)).spawn(int(n))
    paths = []
    yield ProgressEvent("generate", 0, int(n), message=f"{n} samples of {shape}")
    for i in range(int(n)):
        if cancel is not None:
            cancel.check()
        sub_seed = int(seeds[i].generate_state(1)[0])
        layout = sample_layout(dictionary, shape=shape, voxel_size=vs, n_pairs=n_pairs,
                               max_pair_um=max_pair_um, min_sep_um=min_sep_um,
                               mean_direction=mean_direction, concentration=concentration,
                               seed=sub_seed)
        torch.manual_seed(sub_seed)
        image = _run_generator(gen, layout.mask, dev)
        data = np.round(np.clip(image, 0.0, 1.0) * 65535.0).astype(np.uint16)
        path = outdir / f"synthetic_{i:04d}.ome.tif"
        write_ome_tiff(path, data, voxel_size=vs, channel_names=names)
        write_vectors(outdir / f"synthetic_{i:04d}_vectors.csv", layout.vectors, voxel_size=vs)
        paths.append(path)
        yield ProgressEvent("generate", i + 1, int(n), message=path.name,
                            data={"path": str(path), "pairs": len(layout.vectors)})
    return paths


# ----------------------------------------------------------------------------- evaluation

def ssim(a, b, *, data_range=255.0, k1=0.01, k2=0.03) -> float:
    """SSIM of two (C, Z, Y, X) or (C, Y, X) images in [0, 1], the paper's way.

    Both images are scaled to 0–255 (L = 255, K1 = 0.01, K2 = 0.03); SSIM is
    computed per channel with :func:`skimage.metrics.structural_similarity` over
    the whole volume (a 7-voxel uniform window along every axis, smaller when
    an axis is shorter) and averaged over the channels.
    """
    from skimage.metrics import structural_similarity

    a = np.clip(np.asarray(a, np.float64), 0.0, 1.0) * 255.0
    b = np.clip(np.asarray(b, np.float64), 0.0, 1.0) * 255.0
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} and {b.shape}")
    win = min(7, min(a.shape[1:]))
    win = win if win % 2 else win - 1
    if win < 3:
        raise ValueError(f"images too small for SSIM: {a.shape[1:]}")
    values = [structural_similarity(a[c], b[c], data_range=data_range, K1=k1, K2=k2,
                                    win_size=win) for c in range(a.shape[0])]
    return float(np.mean(values))


def _tiles(shape, patch):
    starts = []
    for s, p in zip(shape, patch):
        k = max(1, math.ceil(s / p))
        starts.append(sorted({min(i * p, max(s - p, 0)) for i in range(k)}))
    return np.array(np.meshgrid(*starts, indexing="ij")).reshape(len(patch), -1).T


def evaluate_gan(gan_dir, images, vectors, *, channels=None, structures=None, axes=None,
                 voxel_size=None, patch=None, device="auto", seed=0) -> dict:
    """SSIM between real images and the images generated from their own masks.

    Each image is normalised like the training data, its label mask is built
    from its annotations, and both are tiled into patches (the training patch
    by default; tiles stay inside the image where it is large enough). Every
    tile's generated image is compared with the real one by :func:`ssim`.

    Returns
    -------
    dict
        ``ssim_mean``, ``ssim_sd`` (over patches), ``n_patches``,
        ``per_image`` (list of {"image", "ssim_mean", "n_patches"}).
    """
    from ..detection.network import select_device
    from ..detection.train import crop_patch, prepare_image, TrainingImage

    dev = select_device(device)
    gen, cfg, _ = load_gan(gan_dir, device=dev)
    pairs = load_annotated(images, vectors, channels=channels, structures=structures, axes=axes,
                           voxel_size=voxel_size)
    dims = int(cfg["generator"]["spatial_dims"])
    if pairs[0][0].ndim != dims:
        raise InputError(f"the GAN is {dims}D but the images are {pairs[0][0].ndim}D")
    vs = tuple(cfg["voxel_size_zyx_um"])
    box = tuple(tuple(b) for b in cfg.get("box_um", DEFAULT_BOX_UM))
    m = gen.size_multiple()
    patch = tuple(int(p) for p in (patch or cfg["patch_size_zyx"]))
    patch = tuple(max(m, int(math.ceil(p / m) * m)) for p in patch)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    scores, per_image = [], []
    for image, table, ch in pairs:
        it = prepare_image(image, table, channels=ch, voxel_size=vs, name=str(image.path))
        mask = image_object_masks(it.data, it.vectors, voxel_size=vs, box_um=box)[2]
        both = TrainingImage(np.concatenate([mask.astype(np.float32), it.data]), it.vectors)
        img_scores = []
        for origin in _tiles(it.spatial_shape, patch):
            pa, _ = crop_patch(both, tuple(int(o) for o in origin), patch, rng)
            msk, real = _split(pa)
            fake = _run_generator(gen, msk, dev)
            img_scores.append(ssim(real, fake))
        scores += img_scores
        per_image.append({"image": str(image.path or ""), "ssim_mean": float(np.mean(img_scores)),
                          "n_patches": len(img_scores)})
    return {"ssim_mean": float(np.mean(scores)), "ssim_sd": float(np.std(scores)),
            "n_patches": len(scores), "per_image": per_image}
