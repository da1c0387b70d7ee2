"""The synthetic-data workflow as jobs: mask dictionary, GAN training with previews, images.

The desktop app's Synthetic data dock runs these generator jobs in its worker
thread; they are plain engine code (numpy and torch, no Qt) and run as well
with :func:`cellpol_core.jobs.run_job`:

1. :func:`dictionary_job` builds and saves the mask dictionary of annotated
   images (:func:`cellpol_core.synthetic.masks.build_mask_dictionary`).
2. :func:`gan_job` trains the GAN (:func:`cellpol_core.synthetic.gan.train_gan`)
   and computes a preview after every :data:`PREVIEW_EVERY`-th epoch, in the
   training's own thread, with :class:`LivePreview`. :func:`gan_preview` (and
   :func:`preview_job`) is the preview of a finished GAN folder: a real patch
   of an annotated image, the label mask made from its annotations and the
   generator's image of that mask.
3. :func:`generate_job` replaces a folder's synthetic images with new ones
   (:func:`cellpol_core.synthetic.gan.generate`).

:func:`dictionary_counts`, :func:`synthetic_count` and :func:`gan_folder_state`
describe what is on disk without importing torch, so that a GUI can call
them on its own thread.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import InputError
from ..jobs import CancelToken, ProgressEvent

__all__ = [
    "PREVIEW_EVERY",
    "dictionary_job",
    "dictionary_counts",
    "synthetic_count",
    "gan_folder_state",
    "read_gan_log",
    "gan_preview",
    "LivePreview",
    "preview_job",
    "gan_job",
    "generate_job",
]

#: Live preview during GAN training after every this many epochs (and the last).
PREVIEW_EVERY = 5
#: Columns of a GAN folder's training log that :func:`read_gan_log` returns.
GAN_LOG_COLUMNS = ("epoch", "d_loss", "g_loss", "l1")
# File names of a GAN folder (gan.py's constants; that module imports torch).
_GAN_CONFIG, _GAN_GENERATOR, _GAN_MASKS = "config.json", "generator.pt", "masks.npz"
_GAN_CHECKPOINT, _GAN_LOG = "checkpoint_last.pt", "training_log.csv"
_SYNTHETIC_GLOB = "synthetic_*.ome.tif"


# ----------------------------------------------------------------------------- on disk

def dictionary_counts(path) -> Optional[tuple]:
    """(start masks, end masks, structure names) of a saved dictionary, or None.

    Reads only the JSON metadata, not the masks. A missing or broken file
    gives None (building the dictionary again replaces it).
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
        return (len(meta["start_offsets"]), len(meta["end_offsets"]),
                tuple(meta.get("structures", ("start", "end"))))
    except Exception:  # any unreadable file counts as none
        return None


def synthetic_count(folder) -> int:
    """Number of synthetic images with their vector CSV in ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    return sum(1 for f in folder.glob(_SYNTHETIC_GLOB)
               if (folder / f.name.replace(".ome.tif", "_vectors.csv")).is_file())


def read_gan_log(path) -> list:
    """Rows (epoch, d_loss, g_loss, l1) of a GAN ``training_log.csv``; [] when absent or broken."""
    from ..detection.train import read_training_log  # torch-free at import

    try:
        return read_training_log(path, GAN_LOG_COLUMNS)
    except (OSError, ValueError, KeyError, TypeError):
        return []


def gan_folder_state(gan_dir) -> dict:
    """What a GAN folder holds, from plain JSON and CSV reads (no torch).

    Returns
    -------
    dict
        ``trained`` (generator weights and masks present), ``epochs`` (logged),
        ``checkpoint`` (a resumable checkpoint), ``config`` (the config dict or
        None) and ``log`` (the :func:`read_gan_log` rows).
    """
    out = {"trained": False, "epochs": 0, "checkpoint": False, "config": None, "log": []}
    gan = None if gan_dir is None else Path(gan_dir)
    if gan is None or not gan.is_dir():
        return out
    try:
        cfg = json.loads((gan / _GAN_CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return out
    if not isinstance(cfg, dict) or cfg.get("kind") != "cellpol-gan" or \
            not isinstance(cfg.get("patch_size_zyx"), list):
        return out
    out["config"] = cfg
    out["trained"] = (gan / _GAN_GENERATOR).is_file() and (gan / _GAN_MASKS).is_file()
    out["checkpoint"] = (gan / _GAN_CHECKPOINT).is_file()
    out["log"] = read_gan_log(gan / _GAN_LOG)
    out["epochs"] = len(out["log"])
    return out


def _last_epoch(gan_dir):
    """Epochs logged in a GAN folder (None when unreadable)."""
    log = read_gan_log(Path(gan_dir) / _GAN_LOG)
    return log[-1]["epoch"] if log else None


# ----------------------------------------------------------------------------- 1. dictionary

def dictionary_job(images, vectors, *, path, channels=None,
                   cancel: Optional[CancelToken] = None):
    """Build the mask dictionary of annotated images and save it to ``path`` (a job).

    Returns
    -------
    dict
        ``{"start": n, "end": n, "structures": (str, str), "path": str}``.

    Raises
    ------
    InputError
        When no object mask could be made (flat images, say).
    """
    from .masks import build_mask_dictionary

    yield ProgressEvent("dictionary", 0, 1, message=f"masks of {len(images)} annotated images")
    dictionary = build_mask_dictionary(images, vectors, channels=channels)
    if cancel is not None:
        cancel.check()
    if not dictionary.start or not dictionary.end:
        raise InputError("no object masks could be made from the annotations (flat images?)")
    dictionary.save(path)
    counts = {"start": len(dictionary.start), "end": len(dictionary.end),
              "structures": tuple(dictionary.structures), "path": str(path)}
    yield ProgressEvent("dictionary", 1, 1,
                        message=f"{counts['start']} + {counts['end']} masks")
    return counts


# ----------------------------------------------------------------------------- 2. previews

def _preview_source(cfg, image, vectors, *, channels=None, size_multiple=16, seed=0) -> dict:
    """The fixed half of a preview: the GAN's patch of ``image`` and its label mask.

    The patch is centred on the first annotated pair; ``z`` is the slice
    through that pair's start centroid (None in 2D). Returns ``mask`` (0/1)
    and ``real`` ((2, *patch) float32 arrays), ``z``, ``voxel_size`` and ``image``.
    """
    from ..detection.train import TrainingImage, crop_patch, prepare_image
    from .masks import DEFAULT_BOX_UM, image_object_masks, load_annotated

    (img, table, ch), = load_annotated([image], [vectors], channels=channels)
    dims = int(cfg["generator"]["spatial_dims"])
    if img.ndim != dims:
        raise InputError(f"the GAN is {dims}D but this image is {img.ndim}D", image)
    vs = tuple(float(v) for v in cfg["voxel_size_zyx_um"])
    box = tuple(tuple(b) for b in cfg.get("box_um", DEFAULT_BOX_UM))
    item = prepare_image(img, table, channels=ch, voxel_size=vs, name=str(image))
    mask = image_object_masks(item.data, item.vectors, voxel_size=vs, box_um=box)[2]
    m = int(size_multiple)
    patch = np.array([max(m, -(-int(p) // m) * m) for p in cfg["patch_size_zyx"]])
    shape = np.asarray(item.spatial_shape)
    centre = item.vectors.start[0][-dims:] if len(item.vectors) else (shape - 1) / 2.0
    origin = np.clip(np.round(centre - patch / 2.0).astype(int), 0, np.maximum(shape - patch, 0))
    both = TrainingImage(np.concatenate([mask.astype(np.float32), item.data]), item.vectors)
    cut, _ = crop_patch(both, tuple(int(o) for o in origin), tuple(int(p) for p in patch),
                        np.random.default_rng(seed))
    z = None
    if dims == 3:
        z = int(np.clip(round(float(centre[0]) - origin[0]), 0, patch[0] - 1))
    # Crop padding is faint noise; the mask channels are 0/1.
    return {"mask": (cut[:2] > 0.5).astype(np.float32), "real": np.clip(cut[2:], 0.0, 1.0),
            "z": z, "voxel_size": vs, "image": str(image)}


def _render_preview(gen, dev, source) -> dict:
    """Run ``gen`` (eval mode) on a :func:`_preview_source`; the :func:`gan_preview` dict."""
    import torch

    from ..detection.network import autocast_context, to_device_input
    from .gan import ssim

    msk, real = source["mask"], source["real"]
    with torch.inference_mode(), autocast_context(dev):
        fake = gen(to_device_input(msk[None], dev))[0].float().cpu().numpy()
    try:
        score = ssim(real, fake)
    except ValueError:  # a patch too small for the SSIM window
        score = None
    z = source["z"]
    if z is not None:
        msk, real, fake = msk[:, z], real[:, z], fake[:, z]
    return {"mask": msk, "real": real, "fake": np.clip(fake, 0.0, 1.0), "z": z,
            "voxel_size": source["voxel_size"], "ssim": score, "image": source["image"]}


def gan_preview(gan_dir, image, vectors, *, channels=None, device="auto", seed=0) -> dict:
    """A real patch, its label mask and the generator's image of that mask.

    The patch (the GAN's training patch) is centred on the first annotated
    pair of ``image``; the slice through that pair's start centroid is kept.

    Parameters
    ----------
    gan_dir : path
        A trained GAN folder.
    image, vectors : path
        An annotated image and its vectors CSV.
    channels : (int, int), optional
        The image's (start, end) channels.
    device : str
    seed : int

    Returns
    -------
    dict
        ``mask``, ``real``, ``fake``: (2, Y, X) float arrays in [0, 1];
        ``z`` (slice index in the patch, None in 2D), ``voxel_size``,
        ``ssim`` (of the whole patch, None when too small) and ``image``.
    """
    import torch

    from ..detection.network import select_device
    from .gan import load_gan

    dev = select_device(device)
    gen, cfg, _ = load_gan(gan_dir, device=dev)
    source = _preview_source(cfg, image, vectors, channels=channels,
                             size_multiple=gen.size_multiple(), seed=seed)
    torch.manual_seed(seed)
    return _render_preview(gen, dev, source)


class LivePreview:
    """Previews of a GAN folder during its training, in the training's thread.

    The first call reads the config, builds the generator and cuts the
    preview patch; every call then reloads ``generator.pt`` (which
    :func:`cellpol_core.synthetic.gan.train_gan` writes before its epoch-end
    event) and renders. torch's global random state is left as it was (the
    generator is built on a copy of it and runs in eval mode), so previews do
    not change the training.
    """

    def __init__(self, gan_dir, image, vectors, *, channels=None, device="auto"):
        self.gan_dir = Path(gan_dir)
        self.image, self.vectors, self.channels, self.device = image, vectors, channels, device
        self._gen = self._dev = self._source = None

    def __call__(self) -> dict:
        import torch

        from ..detection.model import load_state
        from ..detection.network import select_device
        from .gan import GENERATOR_FILE, UNetGenerator, read_gan_config

        if self._gen is None:
            cfg = read_gan_config(self.gan_dir)
            self._dev = select_device(self.device)
            # Building a network draws its initial weights from torch's global
            # random state, which the training goes on using: draw from a copy.
            with torch.random.fork_rng(devices=[]):
                gen = UNetGenerator(**cfg["generator"])
            self._source = _preview_source(cfg, self.image, self.vectors, channels=self.channels,
                                           size_multiple=gen.size_multiple())
            self._gen = gen.eval().to(self._dev)
        self._gen.load_state_dict(load_state(self.gan_dir / GENERATOR_FILE))
        return _render_preview(self._gen, self._dev, self._source)


def preview_job(gan_dir, image, vectors, *, channels=None, device="auto",
                cancel: Optional[CancelToken] = None):
    """:func:`gan_preview` as a job: returns the preview dict."""
    yield ProgressEvent("preview", 0, 1, message=f"preview of {Path(image).name}")
    if cancel is not None:
        cancel.check()
    return gan_preview(gan_dir, image, vectors, channels=channels, device=device)


def gan_job(images, vectors, *, outdir, channels=None, preview_index=0, device="auto",
            preview_every=PREVIEW_EVERY, cancel: Optional[CancelToken] = None, **options):
    """Train the GAN (:func:`cellpol_core.synthetic.gan.train_gan`) with live previews.

    Passes on ``train_gan``'s events. After the end of every
    ``preview_every``-th epoch and of the last one (0: the last one only),
    the preview of ``images[preview_index]`` (:func:`gan_preview`, computed
    here in the job's thread) follows in an event whose ``data`` holds
    ``gan_preview`` (the preview dict, with ``epoch``). A failed preview is
    skipped: it never ends the training. A (Z, Y, X) ``patch`` loses its Z
    for 2D images.

    Returns
    -------
    dict
        ``{"gan_dir": str, "preview": dict}`` (the preview of the final generator).
    """
    from ..io.image import read_image
    from .gan import train_gan

    patch = options.get("patch")
    if patch is not None and len(patch) == 3 and not options.get("resume"):
        if read_image(images[0], lazy=True).ndim == 2:
            options["patch"] = tuple(patch[1:])
    k = min(max(int(preview_index), 0), len(images) - 1)
    live = LivePreview(outdir, images[k], vectors[k], channels=channels, device=device)
    every = max(int(preview_every or 0), 0)
    job = train_gan(images, vectors, outdir=outdir, channels=channels, device=device,
                    cancel=cancel, **options)
    final = None  # the preview of the last epoch's generator
    while True:
        try:
            event = next(job)
        except StopIteration as stop:
            out = stop.value
            break
        yield event
        if not event.data.get("epoch_end"):
            continue
        epoch, last = int(event.data["epoch"]), event.step >= event.total
        if not (last or (every and epoch % every == 0)):
            continue
        if cancel is not None and cancel.cancelled:
            continue  # stop promptly: the next step checks the token
        try:
            preview = dict(live(), epoch=epoch)
        except Exception:  # a preview is only a view: it must not end the training
            continue
        final = preview if last else None
        yield ProgressEvent(event.stage, event.step, event.total, event.message,
                            {"gan_preview": preview, "epoch": epoch})
    if final is None:
        yield ProgressEvent("preview", 0, 1, message="preview")
        final = dict(gan_preview(out, images[k], vectors[k], channels=channels, device=device),
                     epoch=_last_epoch(out))
    return {"gan_dir": str(out), "preview": final}


# ----------------------------------------------------------------------------- 3. images

def generate_job(gan_dir, *, n, outdir, cancel: Optional[CancelToken] = None, **options):
    """Replace the synthetic images of ``outdir`` with ``n`` new ones (a job).

    Earlier ``synthetic_*`` files are removed first: training reads the
    whole folder. ``options`` go to :func:`cellpol_core.synthetic.gan.generate`.
    Returns the image paths.
    """
    from .gan import generate

    outdir = Path(outdir)
    if outdir.is_dir():
        for f in list(outdir.glob(_SYNTHETIC_GLOB)) + list(
                outdir.glob("synthetic_*_vectors.csv")):
            f.unlink()
    return (yield from generate(gan_dir, n=n, outdir=outdir, cancel=cancel, **options))
