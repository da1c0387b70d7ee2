"""Training throughput (patches/s) in fp32 and bf16, for the light and paper presets.

One training step as ``cellpol train`` takes it (channels-last network, Adam,
CellPolLoss on targets built from a crowded phantom), timed in three modes,
interleaved step by step so that every mode sees the same machine load:

* ``fp32``: float32 throughout;
* ``bf16-autocast``: :func:`~cellpol_core.detection.network.autocast_context`
  with bf16: bf16 convolutions over float32 weights, outputs cast to float32
  for the loss (what ``--precision auto`` does on a CPU with native bf16);
* ``bf16-weights``: a bf16 copy of the network computes forward and backward,
  its gradients go to float32 master weights that Adam updates and that are
  copied back (the alternative the brief names; shown for the choice).

Prints the minimum and median step time and the patches/s of the minimum,
and the ratio to fp32. Target on a 2-core CPU with native bf16: ≥ 2.5× fp32
for the light preset.

Usage: python benchmarks/bench_train.py [--archs light,paper] [--patch Z Y X]
       [--batch 2] [--steps 3]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

MODES = ("fp32", "bf16-autocast", "bf16-weights")


def training_batches(patch, batch, n, seed=0):
    """``n`` (x, targets) batches of ``batch`` patches from one crowded phantom."""
    import numpy as np

    from cellpol_core.detection.model import ModelConfig
    from cellpol_core.detection.train import PatchSampler, TrainingImage, make_batch
    from cellpol_core.io.image import normalize_percentile
    from cellpol_core.synthetic.phantom import PAPER_VOXEL_SIZE, generate_phantom

    shape = tuple(max(2 * p, 64) for p in patch)
    ph = generate_phantom(shape=shape, voxel_size=PAPER_VOXEL_SIZE, seed=seed)
    data = normalize_percentile(ph.image.astype(np.float32)).astype(np.float32)
    sampler = PatchSampler([TrainingImage(data, ph.vectors)], patch_size=patch)
    rng = np.random.default_rng(seed)
    radii = ModelConfig(network={}).radii
    out = []
    for _ in range(n):
        patches, tables = zip(*[sampler.sample(rng) for _ in range(batch)])
        out.append(make_batch(list(patches), list(tables), voxel_size=PAPER_VOXEL_SIZE,
                              radii=radii))
    return out


class Stepper:
    """One network + optimiser trained in one mode."""

    def __init__(self, arch, mode, seed=0):
        import torch

        from cellpol_core.detection.losses import CellPolLoss
        from cellpol_core.detection.network import build_network, prepare_for_device

        torch.manual_seed(seed)
        self.mode = mode
        self.net = prepare_for_device(build_network(arch), "cpu").train()
        self.loss_fn = CellPolLoss()
        if mode == "bf16-weights":
            self.master = self.net
            self.work = copy.deepcopy(self.net).to(torch.bfloat16)
            self.opt = torch.optim.Adam(self.master.parameters(), lr=1e-3)
        else:
            self.work = self.net
            self.opt = torch.optim.Adam(self.net.parameters(), lr=1e-3)

    def step(self, x, targets) -> float:
        import torch

        from cellpol_core.detection.network import autocast_context

        x = x.contiguous(memory_format=torch.channels_last_3d)
        if self.mode == "bf16-weights":
            out = self.work(x.to(torch.bfloat16))
        else:
            with autocast_context("cpu", "bf16" if self.mode == "bf16-autocast" else "fp32"):
                out = self.work(x)
        loss, _ = self.loss_fn({k: v.float() for k, v in out.items()}, targets)
        self.opt.zero_grad(set_to_none=True)
        if self.mode == "bf16-weights":
            self.work.zero_grad(set_to_none=True)
        loss.backward()
        if self.mode == "bf16-weights":
            with torch.no_grad():
                for m, w in zip(self.master.parameters(), self.work.parameters()):
                    m.grad = w.grad.float()
        self.opt.step()
        if self.mode == "bf16-weights":
            with torch.no_grad():
                for m, w in zip(self.master.parameters(), self.work.parameters()):
                    w.copy_(m)
        return float(loss.detach())


def main(argv=None) -> int:
    from bench_predict import cpu_line

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", default="light,paper")
    ap.add_argument("--patch", type=int, nargs=3, default=(32, 128, 128), metavar=("Z", "Y", "X"))
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per mode (after 1 warm-up)")
    ap.add_argument("--modes", default=",".join(MODES))
    args = ap.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    patch = tuple(args.patch)
    print(cpu_line())
    batches = training_batches(patch, args.batch, args.steps + 1)
    print(f"patch (z, y, x) {patch}, batch {args.batch}, {args.steps} timed steps per mode "
          "(interleaved)")
    for arch in args.archs.split(","):
        steppers = {m: Stepper(arch, m) for m in modes}
        times = {m: [] for m in modes}
        for i, (x, targets) in enumerate(batches):
            for m, s in steppers.items():
                t0 = time.perf_counter()
                s.step(x, targets)
                if i > 0:  # the first step is the warm-up
                    times[m].append(time.perf_counter() - t0)
        base = min(times[modes[0]])
        for m in modes:
            best, med = min(times[m]), statistics.median(times[m])
            print(f"{arch:<6} {m:<14} step min {best:6.2f} s  median {med:6.2f} s  "
                  f"{args.batch / best:6.3f} patches/s  {base / best:4.2f}× {modes[0]}",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
