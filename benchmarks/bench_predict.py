"""Speed of `cellpol predict` on a 768×768×64×2 phantom, split by part.

Prints the end-to-end wall time, its split into read / normalise / network /
decode / write, and the network's achieved GFLOP/s against this CPU's FP32
peak (about 530 GFLOP/s on the 2-core AVX-512 machine; override with
--peak). Targets on that machine: <= 60 s end to end with the default model,
>= 60 % of peak in the network, <= 5 % of wall time outside the network.

Usage: python benchmarks/bench_predict.py [--model demo] [--shape X Y Z] [--peak 530]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def network_flops(net, tile, *, spatial_dims) -> float:
    """FLOPs of one forward pass over one tile (multiply-add = 2 FLOPs)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros((1, 2) + tuple(tile))
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        net(x)
    return float(counter.get_total_flops())


def main(argv=None) -> int:
    import torch

    from cellpol_core.io.image import write_ome_tiff
    from cellpol_core.detection.infer import Timings, plan_tiles
    from cellpol_core.jobs import run_job
    from cellpol_core.detection.model import load_model
    from cellpol_core.synthetic.phantom import PAPER_VOXEL_SIZE, generate_phantom
    from cellpol_core.detection.predict import predict_files
    from cellpol_core.io.resample import resampled_shape

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="demo")
    ap.add_argument("--shape", nargs=3, type=int, default=[768, 768, 64], metavar=("X", "Y", "Z"))
    ap.add_argument("--peak", type=float, default=530.0, help="FP32 peak in GFLOP/s")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=1)
    args = ap.parse_args(argv)
    x, y, z = args.shape
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
        timings = Timings()
        t1 = time.perf_counter()
        run_job(predict_files([path], outdir=tmp / "out", model=args.model, device=args.device,
                              batch_size=args.batch_size, timings=timings))
        wall = time.perf_counter() - t1

        model = load_model(args.model)
        dims = model.config.spatial_dims
        shape = resampled_shape((z, y, x), PAPER_VOXEL_SIZE, model.config.voxel_size)
        from cellpol_core.detection.infer import DEFAULT_OVERLAP_3D, DEFAULT_TILE_3D

        tile, origins, _ = plan_tiles(shape, tile=DEFAULT_TILE_3D, overlap=DEFAULT_OVERLAP_3D,
                                      multiple=model.net.size_multiple())
        # Count on the plain module: the fused one calls oneDNN kernels that
        # torch's FLOP counter does not see.
        from cellpol_core.detection.model import build_net

        flops = network_flops(build_net(model.config).eval(), tile, spatial_dims=dims) * len(origins)
    parts = timings.as_dict()
    outside = wall - timings.network
    gflops = flops / 1e9 / max(timings.network, 1e-9)
    print(f"device: {args.device}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"model: {args.model} ({model.config.arch}, model voxel "
          f"{'×'.join(f'{v:g}' for v in model.config.voxel_size[::-1])} µm, "
          f"{len(origins)} tiles of {tile})")
    print(f"wall time (predict_files): {wall:.2f} s")
    for k in ("read_s", "normalise_s", "network_s", "decode_s", "write_s"):
        print(f"  {k[:-2]:<10} {parts[k]:7.2f} s  {100 * parts[k] / wall:5.1f} %")
    print("  (tiles are read, resampled and normalised in a background thread while the "
          "network runs, so the parts overlap)")
    print(f"network: {flops / 1e9:.1f} GFLOP, {gflops:.1f} GFLOP/s = "
          f"{100 * gflops / args.peak:.1f} % of {args.peak:g} GFLOP/s peak")
    print(f"outside the network: {outside:.2f} s = {100 * outside / wall:.1f} % of wall time")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
