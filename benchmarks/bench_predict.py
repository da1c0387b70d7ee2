"""Speed of `cellpol predict` on a 768×768×64×2 phantom: fp32 against auto (bf16), split by part.

In one run, interleaved (on a shared machine every case sees the same load):

* the peaks measured on the spot: a 103-GFLOP matmul (4096×4096 by 4096×3072)
  in fp32 and in bf16;
* ``predict_files`` with the bundled model (default ``demo``) in ``fp32`` and in
  ``auto``: wall time, its split into read / normalise / network / decode /
  write, the time outside the network, the network's GFLOP/s and its ratio
  to both matmul rates, and the wall time as a multiple of the fp32 matmul;
* the ``paper`` preset (random weights) at the image's own voxel size, 36
  tiles of 128×128×64 (no overlap), in fp32 and in bf16.

Each repeat prints its own figures; compare within a repeat. Targets on a
2-core CPU with native bf16: demo end to end ≤ 15× the fp32 matmul, network
≥ 50 % of the bf16 matmul rate, ≤ 5 % of wall time outside the network,
paper preset < 60 s per image.

Usage: python benchmarks/bench_predict.py [--repeats 2] [--paper-tiles 36]
       [--no-paper] [--model demo] [--shape X Y Z]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
from dataclasses import replace
import time
from pathlib import Path

MATMUL = (4096, 4096, 3072)  # 2*m*k*n = 103.1 GFLOP
FLAG_NAMES = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile",
              "amx_bf16", "amx_int8")


def cpu_line() -> str:
    """The CPU, its vector/bf16 flags, torch and its threads: printed by every benchmark."""
    import torch

    from cellpol_core.detection.precision import cpu_bf16_unit, cpu_flags

    flags = cpu_flags()
    model = platform.processor() or ""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")),
                         model)
    except OSError:
        pass
    have = [f for f in FLAG_NAMES if f in flags]
    return (f"CPU: {model}, {os.cpu_count()} CPUs; flags: {' '.join(have) or '(none known)'}; "
            f"native bf16: {cpu_bf16_unit() or 'none'}; torch {torch.__version__} "
            f"({torch.backends.cpu.get_cpu_capability()}), {torch.get_num_threads()} threads")


def matmul_seconds(dtype, repeats=2) -> float:
    """Best time of a (4096×4096) @ (4096×3072) product in ``dtype``."""
    import torch

    m, k, n = MATMUL
    a = torch.randn(m, k).to(dtype)
    b = torch.randn(k, n).to(dtype)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return best


def matmul_gflop() -> float:
    m, k, n = MATMUL
    return 2.0 * m * k * n / 1e9


def network_gflop(config, tile) -> float:
    """GFLOP of one forward pass over one tile, counted on the meta device."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from cellpol_core.detection.network import CellPolNet

    with torch.device("meta"):
        net = CellPolNet(**config.network).eval()
        x = torch.empty((1, net.in_channels) + tuple(tile))
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        net(x)
    return counter.get_total_flops() / 1e9


def paper_model(folder: Path, voxel_size) -> Path:
    """A ``paper`` preset model folder with random weights at ``voxel_size``."""
    import torch

    from cellpol_core.detection.model import ModelConfig, WEIGHTS_BEST, save_state, write_config
    from cellpol_core.detection.network import build_network

    torch.manual_seed(0)
    net = build_network("paper")
    folder.mkdir(parents=True, exist_ok=True)
    write_config(folder, ModelConfig(network=net.config(), arch="paper",
                                     voxel_size=tuple(voxel_size)))
    save_state(folder / WEIGHTS_BEST, net.state_dict())
    return folder


def report(label, wall, timings, gflop, mm32, mm16):
    parts = timings.as_dict()
    net_s = max(timings.network, 1e-9)
    rate = gflop / net_s
    r32, r16 = matmul_gflop() / mm32, matmul_gflop() / mm16
    outside = wall - timings.network
    print(f"  {label}: wall {wall:.2f} s = {wall / mm32:.1f}× the fp32 matmul; "
          f"{timings.tiles} tiles, {gflop:.0f} GFLOP")
    print("    split: " + ", ".join(f"{k[:-2]} {parts[k]:.2f} s ({100 * parts[k] / wall:.1f} %)"
                                    for k in ("read_s", "normalise_s", "network_s", "decode_s",
                                              "write_s")))
    print(f"    network {rate:.0f} GFLOP/s = {100 * rate / r32:.0f} % of the fp32 matmul, "
          f"{100 * rate / r16:.0f} % of the bf16 matmul; outside the network "
          f"{outside:.2f} s = {100 * outside / wall:.1f} % of wall")
    return {"wall": wall, "rate": rate, "outside": outside}


def main(argv=None) -> int:
    import torch

    from cellpol_core.detection.infer import (DEFAULT_OVERLAP_3D, DEFAULT_TILE_3D, Timings,
                                              plan_tiles, predict_image)
    from cellpol_core.detection.model import load_model
    from cellpol_core.detection.network import device_description
    from cellpol_core.detection.precision import resolve_precision
    from cellpol_core.detection.predict import predict_files
    from cellpol_core.io.image import read_image, write_ome_tiff
    from cellpol_core.io.resample import resampled_shape
    from cellpol_core.jobs import run_job
    from cellpol_core.synthetic.phantom import PAPER_VOXEL_SIZE, generate_phantom

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="demo")
    ap.add_argument("--shape", nargs=3, type=int, default=[768, 768, 64], metavar=("X", "Y", "Z"))
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--no-paper", action="store_true", help="skip the paper preset")
    ap.add_argument("--paper-tiles", type=int, default=36,
                    help="time this many of the paper preset's 36 tiles and scale to 36")
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--flips", type=int, default=1, choices=(1, 2, 4, 8),
                    help="test-time flips of the model (default 1: the network's own speed; "
                         "the model's thresholds.json may ask for more)")
    args = ap.parse_args(argv)
    x, y, z = args.shape
    print(cpu_line())
    auto = resolve_precision("auto", "cpu")
    print(f"auto -> {device_description('cpu', auto)}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        ph = generate_phantom(shape=(z, y, x), voxel_size=PAPER_VOXEL_SIZE, seed=7)
        path = tmp / "bench.ome.tif"
        write_ome_tiff(path, ph.image, voxel_size=ph.voxel_size, channel_names=ph.channel_names,
                       compression=None)
        print(f"phantom {x}×{y}×{z}×2 uint16 written in {time.perf_counter() - t0:.1f} s "
              f"({len(ph.vectors)} cells)")
        del ph
        model = load_model(args.model)
        model = replace(model, thresholds=replace(model.thresholds, flips=args.flips))
        print(f"test-time flips {args.flips} (the model's own: "
              f"{load_model(args.model).thresholds.flips})")
        shape = resampled_shape((z, y, x), PAPER_VOXEL_SIZE, model.config.voxel_size)
        tile, origins, _ = plan_tiles(shape, tile=DEFAULT_TILE_3D, overlap=DEFAULT_OVERLAP_3D,
                                      multiple=model.net.size_multiple())
        demo_gflop = network_gflop(model.config, tile) * len(origins)
        print(f"model {args.model} ({model.config.arch}, model voxel "
              f"{'×'.join(f'{v:g}' for v in model.config.voxel_size[::-1])} µm): "
              f"{len(origins)} tiles of {tile}, {demo_gflop:.0f} GFLOP")
        paper = None
        if not args.no_paper:
            pdir = paper_model(tmp / "paper", PAPER_VOXEL_SIZE)
            pmodel = load_model(pdir)
            ptile = (64, 128, 128)
            pshape, porigins, _ = plan_tiles((z, y, x), tile=ptile, overlap=(0, 0, 0),
                                             multiple=pmodel.net.size_multiple())
            n_tiles = min(args.paper_tiles, len(porigins))
            # A crop holding n_tiles whole tiles (a row-major run of the 6×6 grid).
            per_row = -(-x // ptile[2])
            rows = -(-n_tiles // per_row)
            cols = min(n_tiles, per_row)
            crop = read_image(path)
            crop.data = crop.data[:, :, : rows * ptile[1], : cols * ptile[2]]
            paper = (pmodel, crop, ptile, rows * cols, len(porigins),
                     network_gflop(pmodel.config, ptile))
            print(f"paper preset: {len(porigins)} tiles of {ptile} at the image's voxel size, "
                  f"{paper[5]:.0f} GFLOP per tile; timing {rows * cols} tile(s)"
                  + ("" if rows * cols == len(porigins) else
                     f", scaled by {len(porigins) / (rows * cols):.2f}"))
        for rep in range(args.repeats):
            print(f"repeat {rep + 1}:")
            mm32 = matmul_seconds(torch.float32)
            mm16 = matmul_seconds(torch.bfloat16)
            print(f"  matmul {matmul_gflop():.1f} GFLOP: fp32 {mm32:.3f} s "
                  f"({matmul_gflop() / mm32:.0f} GFLOP/s), bf16 {mm16:.3f} s "
                  f"({matmul_gflop() / mm16:.0f} GFLOP/s)")
            walls = {}
            for prec in ("fp32", "auto"):
                timings = Timings()
                t1 = time.perf_counter()
                run_job(predict_files([path], outdir=tmp / f"out_{prec}", model=args.model,
                                      device="cpu", batch_size=args.batch_size, precision=prec,
                                      timings=timings))
                wall = time.perf_counter() - t1
                walls[prec] = report(f"demo {prec}", wall, timings, demo_gflop, mm32, mm16)
            print(f"  demo auto / fp32 wall: {walls['auto']['wall'] / walls['fp32']['wall']:.2f}")
            if paper is not None:
                pmodel, crop, ptile, timed, total, gtile = paper
                pw = {}
                for prec in ("fp32", "bf16"):
                    timings = Timings()
                    t1 = time.perf_counter()
                    run_job(predict_image(crop, pmodel, tile=ptile, overlap=(0, 0, 0),
                                          precision=prec, timings=timings))
                    wall = time.perf_counter() - t1
                    scale = total / timed
                    pw[prec] = wall * scale
                    rate = gtile * timed / max(timings.network, 1e-9)
                    print(f"  paper {prec}: {wall:.1f} s for {timed} tiles -> "
                          f"{wall * scale:.1f} s per {x}×{y}×{z} image "
                          f"({wall * scale / mm32:.0f}× the fp32 matmul); network {rate:.0f} "
                          f"GFLOP/s = {100 * rate / (matmul_gflop() / mm16):.0f} % of bf16 matmul")
                print(f"  paper bf16 / fp32: {pw['bf16'] / pw['fp32']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
