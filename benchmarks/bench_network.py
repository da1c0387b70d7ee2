"""Speed of CellPolNet candidates on the CPU, per 128x128x64 (x*y*z) tile.

For each candidate architecture this prints the parameter count, the GFLOP of
one tile (counted by ``torch.utils.flop_counter.FlopCounterMode`` on the meta
device: 2 FLOP per multiply-add of every convolution), and the time of one
tile in inference mode (``torch.inference_mode``, ``eval()``, float32) for:

* ``contig``    eager model, contiguous (NCDHW) model and input;
* ``cl``        eager model, ``channels_last_3d`` model and input;
* ``fused-cl``  ``net.fuse_for_inference()`` (folded BatchNorms, merged heads,
  padded input channels, every convolution on oneDNN), ``channels_last_3d``;

then, for the fused channels-last model, batch 2 (time per tile) and, with
``--threads``, other thread counts. Each time is the minimum over
``--repeats`` runs after one warm-up run, the modes interleaved: on a machine shared with other jobs
the minimum is the least disturbed figure; the median is printed too. The load
average before and after each candidate tells how busy the machine was.

Peak: ``--peak`` (default 530 GFLOP/s) is the figure the brief gives for this
machine's 2 cores. A tight AVX-512 FMA loop in C measures about 226 GFLOP/s
FP32 on this 2-core AMD EPYC (Zen 4) VM (2 cores x 32 FLOP/cycle x ~3.5 GHz),
so both percentages are printed: ``--peak`` and ``--measured-peak``.

Run::

    .venv/bin/python benchmarks/bench_network.py            # all candidates
    .venv/bin/python benchmarks/bench_network.py --candidates light,b16-d3-h16
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from cellpol_core.detection.network import ARCHITECTURES, CellPolNet

# name -> CellPolNet keyword arguments (3D, 2 input channels).
CANDIDATES = {
    "paper": dict(base_filters=32, depth=5, head_filters=32),
    "b16-d4-h16": dict(base_filters=16, depth=4, head_filters=16),
    "b16-d3-h16": dict(base_filters=16, depth=3, head_filters=16),
    "b16-d4-h8": dict(base_filters=16, depth=4, head_filters=8),
    "b16-d3-h8": dict(base_filters=16, depth=3, head_filters=8),
    "b12-d4-h12": dict(base_filters=12, depth=4, head_filters=12),
    "b8-d4-h8": dict(base_filters=8, depth=4, head_filters=8),
}


def gflop_per_tile(cfg, size):
    """GFLOP of one forward pass on a (1, 2, *size) input, counted on the meta device."""
    with torch.device("meta"):
        net = CellPolNet(**cfg).eval()
        x = torch.empty((1, net.in_channels) + tuple(size))
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        net(x)
    return counter.get_total_flops() / 1e9


def time_forward(net, x, repeats):
    """(min, median) seconds of ``net(x)`` over ``repeats`` runs after a warm-up."""
    times = []
    with torch.inference_mode():
        net(x)
        for _ in range(repeats):
            t0 = time.perf_counter()
            net(x)
            times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times)


def time_round_robin(cases, repeats):
    """Seconds of each ``model(x)`` in ``cases``, ``repeats`` times, interleaved.

    Interleaving spreads the disturbance of other jobs over all cases alike,
    so that their comparison stays fair on a shared machine.
    """
    times = [[] for _ in cases]
    with torch.inference_mode():
        for model, x in cases:
            model(x)  # warm-up: oneDNN primitive creation, first-touch memory
        for _ in range(repeats):
            for i, (model, x) in enumerate(cases):
                t0 = time.perf_counter()
                model(x)
                times[i].append(time.perf_counter() - t0)
    return times


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--candidates", default=",".join(CANDIDATES),
                   help="comma-separated names from: " + ", ".join(CANDIDATES))
    p.add_argument("--size", type=int, nargs=3, default=(64, 128, 128), metavar=("Z", "Y", "X"))
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--modes", default="contig,cl,fused-cl,fused-cl-b2",
                   help="comma-separated: contig, cl, fused-cl, fused-cl-b2")
    p.add_argument("--threads", default="", help="extra thread counts for fused-cl, e.g. 1")
    p.add_argument("--peak", type=float, default=530.0, help="GFLOP/s peak from the brief")
    p.add_argument("--measured-peak", type=float, default=226.0,
                   help="GFLOP/s of an FP32 FMA loop on this machine")
    args = p.parse_args(argv)

    modes = [m for m in args.modes.split(",") if m]
    size = tuple(args.size)
    cl = torch.channels_last_3d
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} CPUs, tile (z, y, x) = {size}, "
          f"THP_MEM_ALLOC_ENABLE={os.environ.get('THP_MEM_ALLOC_ENABLE')}")
    light = {k: v for k, v in ARCHITECTURES["light"].items() if k != "embedding"}
    print("preset 'light' =", next((n for n, c in CANDIDATES.items() if c == light), light))
    print(f"{'candidate':<12} {'params':>9} {'GFLOP':>7} {'mode':<12} {'min s':>7} "
          f"{'med s':>7} {'GFLOP/s':>8} {'%530':>5} {'%meas':>6}")
    for name in args.candidates.split(","):
        cfg = CANDIDATES[name]
        torch.manual_seed(0)
        net = CellPolNet(**cfg).eval()
        if not net.valid_input_size(size):
            print(f"{name:<12} skipped: size {size} not a multiple of {net.size_multiple()}")
            continue
        params = sum(t.numel() for t in net.parameters())
        gflop = gflop_per_tile(cfg, size)
        x = torch.rand((1, net.in_channels) + size)
        load0 = os.getloadavg()[0]
        runs = []
        if "contig" in modes:
            runs.append(("contig", net, x, 1))
        if "cl" in modes:
            runs.append(("cl", copy_cl(net), x.contiguous(memory_format=cl), 1))
        fused = net.fuse_for_inference().to(memory_format=cl)
        if "fused-cl" in modes:
            runs.append(("fused-cl", fused, x.contiguous(memory_format=cl), 1))
        if "fused-cl-b2" in modes:
            x2 = torch.rand((2, net.in_channels) + size).contiguous(memory_format=cl)
            runs.append(("fused-cl-b2", fused, x2, 2))
        results = time_round_robin([(model, inp) for _, model, inp, _ in runs], args.repeats)
        for (mode, _, _, batch), times in zip(runs, results):
            tmin, tmed = min(times) / batch, statistics.median(times) / batch
            print(f"{name:<12} {params / 1e6:8.2f}M {gflop:7.1f} {mode:<12} {tmin:7.3f} "
                  f"{tmed:7.3f} {gflop / tmin:8.1f} {100 * gflop / tmin / args.peak:5.1f} "
                  f"{100 * gflop / tmin / args.measured_peak:6.1f}", flush=True)
        for n in [int(t) for t in args.threads.split(",") if t]:
            old = torch.get_num_threads()
            torch.set_num_threads(n)
            try:
                tmin, tmed = time_forward(fused, x.contiguous(memory_format=cl), args.repeats)
            finally:
                torch.set_num_threads(old)
            print(f"{name:<12} {params / 1e6:8.2f}M {gflop:7.1f} {'fused-cl-t' + str(n):<12} "
                  f"{tmin:7.3f} {tmed:7.3f} {gflop / tmin:8.1f} "
                  f"{100 * gflop / tmin / args.peak:5.1f} "
                  f"{100 * gflop / tmin / args.measured_peak:6.1f}", flush=True)
        print(f"{name:<12} load average {load0:.2f} -> {os.getloadavg()[0]:.2f}", flush=True)
    return 0


def copy_cl(net):
    import copy
    return copy.deepcopy(net).to(memory_format=torch.channels_last_3d)


if __name__ == "__main__":
    sys.exit(main())
