"""Flags and helpers shared by the subcommands."""

from __future__ import annotations

import sys

from ..errors import InputError
from ..jobs import ProgressEvent


def add_debug_flag(parser):
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")


def add_image_flags(parser, *, channels=True):
    """Add the flags every image-reading command shares."""
    if channels:
        parser.add_argument("--channels", nargs=2, type=int, metavar=("S", "E"),
                            help="0-based start and end channels (default: channels whose names "
                                 "match the structure names, else 0 1)")
    parser.add_argument("--voxel-size", nargs="+", type=float, metavar="UM",
                        help="voxel size in µm as X Y Z (2D: X Y), overriding metadata")
    parser.add_argument("--axes", metavar="STR",
                        help="axes letters of the stored array, e.g. YXZC, overriding the heuristic")
    add_structures_flag(parser)


def add_structures_flag(parser):
    parser.add_argument("--structures", nargs=2, metavar=("START", "END"),
                        help="start and end structure names (default: the model's, else the "
                             "preset's: nucleus golgi)")


def voxel_size_from_args(args):
    """The --voxel-size flag as a (z, y, x) tuple, or None. X Y [Z] on the command line."""
    vs = getattr(args, "voxel_size", None)
    if vs is None:
        return None
    if len(vs) == 2:
        from ..io.image import PlaneVoxelSize

        x, y = vs
        return PlaneVoxelSize((1.0, float(y), float(x)))  # a 3D image refuses it
    if len(vs) == 3:
        x, y, z = vs
        return (float(z), float(y), float(x))
    raise InputError(f"--voxel-size takes X Y Z (or X Y in 2D), got {len(vs)} values")


def load_image(args, path, *, lazy=False, need_voxel_size=False):
    """Read ``path`` honouring --axes and --voxel-size."""
    from ..io.image import read_image

    image = read_image(path, axes=getattr(args, "axes", None), voxel_size=voxel_size_from_args(args),
                       lazy=lazy)
    if need_voxel_size and image.is_3d and image.voxel_size is None:
        raise InputError("3D image has no voxel size in its metadata; pass --voxel-size X Y Z",
                         path)
    return image


class ProgressBar:
    """Show :class:`ProgressEvent` objects as a tqdm bar on stderr."""

    def __init__(self, *, disable=None):
        self._bar = None
        self._stage = None
        self._disable = (not sys.stderr.isatty()) if disable is None else disable

    def __call__(self, event: ProgressEvent):
        from tqdm import tqdm

        if event.data.get("notice"):  # one line the user should read (a fixed input, a rename)
            tqdm.write(f"note: {event.data['notice']}", file=sys.stderr)
        if event.stage != self._stage or self._bar is None:
            self.close()
            self._stage = event.stage
            self._bar = tqdm(total=event.total, desc=event.stage, unit="step",
                             disable=self._disable, leave=False, file=sys.stderr)
        if event.total is not None and self._bar.total != event.total:
            self._bar.total = event.total
        self._bar.n = event.step
        if event.message:
            self._bar.set_postfix_str(event.message, refresh=False)
        self._bar.refresh()

    def close(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def run_epochs(job, *, prefix="", show_device=True):
    """Run a training job under a progress bar, then print its device and epoch lines.

    Returns the job's result. Each epoch's closing message is printed after
    the bar, preceded by ``prefix``.
    """
    from ..jobs import run_job

    lines, device = [], []
    with ProgressBar() as bar:
        def show(event):
            bar(event)
            if "device" in event.data and not device:
                device.append(event.data["device"])
            if event.data.get("epoch_end"):
                lines.append(event.message)

        out = run_job(job, show)
    if show_device and device:
        print(f"device: {device[0]}")
    for line in lines:
        print(f"{prefix}{line}")
    return out
