"""Self-test of an installation: ``CellPol --selftest`` / ``cellpol-gui --selftest``.

It checks, with no display and no network, that the pieces a user needs
work together in this build (a source checkout, a wheel or the frozen app):

1. load the bundled model (``demo``);
2. predict the vectors of the bundled demo image;
3. evaluate them against the demo's ground truth;
4. print the figures, the torch version and the device a prediction would use;
5. fail (exit code 1) when any step breaks or the figures are below a floor.

The floors sit well below what the bundled demo model scores (about 66
vectors and F1 0.82 at level 5 on the demo image), so they catch a broken
build (missing weights, wrong resources, a torch that computes garbage), not
a small change of the model.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from . import __version__
from .defaults import DEVICES, EVAL_LEVEL

DEFAULT_LEVEL = EVAL_LEVEL
MIN_F1 = 0.40
MIN_VECTORS = 20


@dataclass
class SelftestReport:
    """What :func:`run_selftest` found.

    Attributes
    ----------
    version, torch_version : str
        CellPol's version and torch's (empty when torch cannot be imported).
    device : str
        The device a prediction would use (``"auto"``), e.g. ``"CPU (16 threads)"``.
    cuda_note : str
        Why the CPU is used although this torch was built with CUDA, else "".
    model, image : str
        The model folder and image tested.
    n_gt, n_pred : int
        Ground-truth and predicted vectors in the whole image.
    f1 : dict
        F1 per evaluation level (None when undefined).
    level, min_f1, min_vectors : int, float, int
        The pass/fail criteria.
    seconds : dict
        Time spent per step.
    problems : list of str
        Each failed check, one line each; empty when the self-test passed.
    """

    version: str = __version__
    torch_version: str = ""
    device: str = ""
    cuda_note: str = ""
    model: str = ""
    image: str = ""
    n_gt: int = 0
    n_pred: int = 0
    f1: dict = field(default_factory=dict)
    level: int = DEFAULT_LEVEL
    min_f1: float = MIN_F1
    min_vectors: int = MIN_VECTORS
    seconds: dict = field(default_factory=dict)
    problems: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def format(self) -> str:
        """The report as printed by ``--selftest``."""
        f1 = self.f1.get(self.level)
        lines = [
            f"CellPol {self.version} self-test",
            f"python:  {sys.version.split()[0]}" + (" (frozen app)" if getattr(sys, "frozen", False)
                                                   else ""),
            f"torch:   {self.torch_version or 'not available'}",
            f"device:  {self.device or 'unknown'}" + (f" - {self.cuda_note}" if self.cuda_note else ""),
            f"model:   {self.model or '-'}",
            f"image:   {self.image or '-'}",
            f"vectors: {self.n_pred} predicted, {self.n_gt} in the ground truth "
            f"(at least {self.min_vectors} needed)",
            f"F1 at level {self.level}: " + ("-" if f1 is None else f"{f1:.3f}")
            + f" (at least {self.min_f1:.2f} needed)",
        ]
        if self.f1:
            lines.append("F1 by level: " + " ".join(
                f"{lv}:{'-' if v is None else format(v, '.2f')}" for lv, v in sorted(self.f1.items())))
        if self.seconds:
            lines.append("time:    " + ", ".join(f"{k} {v:.2f} s" for k, v in self.seconds.items()))
        lines.extend(f"FAILED:  {p}" for p in self.problems)
        lines.append("self-test passed" if self.ok else "self-test FAILED")
        return "\n".join(lines)


def _device_info(report: SelftestReport):
    import torch

    from .detection.network import device_description, select_device

    report.torch_version = torch.__version__
    dev = select_device("auto")
    report.device = device_description(dev)
    if dev.type == "cpu" and torch.version.cuda:
        report.cuda_note = f"no CUDA GPU found (torch built for CUDA {torch.version.cuda})"
    return dev


def run_selftest(*, model="demo", image=None, vectors=None, level: int = DEFAULT_LEVEL,
                 min_f1: float = MIN_F1, min_vectors: int = MIN_VECTORS,
                 device: Optional[str] = None) -> SelftestReport:
    """Load a model, predict the demo image, evaluate it; never raises for a failed step.

    Parameters
    ----------
    model : str or Path
        A model folder or the name of a bundled model.
    image, vectors : Path, optional
        The image and its ground truth; default the bundled demo.
    level : int
        Evaluation level (0 loosest to 13) whose F1 is checked.
    min_f1 : float
        Lowest F1 at ``level`` that passes.
    min_vectors : int
        Fewest predicted vectors that pass.
    device : str, optional
        Where to predict; default ``"auto"`` (CUDA when present).

    Returns
    -------
    SelftestReport
        ``report.ok`` is False, and ``report.problems`` says why, when a step
        failed or a figure is below its floor.
    """
    report = SelftestReport(level=level, min_f1=min_f1, min_vectors=min_vectors)
    t = time.perf_counter()
    step = "import torch"
    try:
        dev = _device_info(report)
        report.seconds["import"] = time.perf_counter() - t
        if device is not None:
            from .detection.network import device_description, select_device

            step = f"use device {device!r}"
            dev = select_device(device)
            report.device = device_description(dev)

        from .detection.evaluate import evaluate_vectors
        from .io.image import read_image
        from .detection.infer import predict_image
        from .jobs import run_job
        from .detection.model import load_model
        from .io.resources import demo_image_path, demo_vectors_path
        from .io.vectors import read_vectors

        step = "load the model"
        t = time.perf_counter()
        loaded = load_model(model, device=dev)
        report.model = str(loaded.path)
        report.seconds["load model"] = time.perf_counter() - t

        step = "read the demo image"
        t = time.perf_counter()
        image_path = Path(image) if image is not None else demo_image_path()
        vectors_path = Path(vectors) if vectors is not None else demo_vectors_path()
        report.image = str(image_path)
        img = read_image(image_path)
        gt = read_vectors(vectors_path)
        report.seconds["read image"] = time.perf_counter() - t

        step = "predict"
        t = time.perf_counter()
        pred = run_job(predict_image(img, loaded, device=dev))
        report.seconds["predict"] = time.perf_counter() - t

        step = "evaluate"
        t = time.perf_counter()
        result = evaluate_vectors(gt, pred, voxel_size=img.voxel_size, shape=img.spatial_shape)
        report.seconds["evaluate"] = time.perf_counter() - t
    except Exception as exc:  # any failure is a finding, reported on one line
        message = str(exc).splitlines()[0] if str(exc) else ""
        report.problems.append(f"{step}: {type(exc).__name__}: {message}")
        return report

    report.n_gt, report.n_pred = len(gt), len(pred)
    report.f1 = {lv: result.f1(lv) for lv in range(len(result.levels))}
    if report.n_pred < min_vectors:
        report.problems.append(f"only {report.n_pred} vectors predicted (at least {min_vectors} "
                               "expected)")
    f1 = report.f1.get(level)
    if f1 is None or f1 < min_f1:
        report.problems.append(f"F1 at level {level} is "
                               f"{'undefined' if f1 is None else format(f1, '.3f')} "
                               f"(at least {min_f1:.2f} expected)")
    return report


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="CellPol --selftest",
        description="Check this installation: load the bundled model, predict the bundled demo "
                    "image, evaluate it against its ground truth. Exit code 0 when it works.")
    p.add_argument("--model", default="demo", help="model folder or bundled model name "
                                                   "(default: %(default)s)")
    p.add_argument("--device", choices=DEVICES, default=None,
                   help="where to predict (default: auto, CUDA when present)")
    p.add_argument("--min-f1", type=float, default=MIN_F1,
                   help=f"lowest F1 at level {DEFAULT_LEVEL} that passes (default: %(default)s)")
    p.add_argument("--min-vectors", type=int, default=MIN_VECTORS,
                   help="fewest predicted vectors that pass (default: %(default)s)")
    return p


def main(argv=None) -> int:
    """Run the self-test and print its report; returns 0 when it passed, else 1."""
    args = build_parser().parse_args(argv)
    report = run_selftest(model=args.model, device=args.device, min_f1=args.min_f1,
                          min_vectors=args.min_vectors)
    print(report.format(), flush=True)
    return 0 if report.ok else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
