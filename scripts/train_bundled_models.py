"""Recipe of the bundled models (resources/models/<name>), resumable, with time budgets.

Each bundled model is trained on domain-randomised phantoms
(:func:`cellpol_core.synthetic.phantom.generate_randomised`) of one phantom
family, with fixed seeds, so that a later session reproduces or continues the
run exactly:

1. write training, validation and tuning phantoms (written once per seed);
2. train the light network in chunks of ``--chunk`` epochs until the model's
   time budget is spent (``--minutes name=N``); ``--resume`` continues from
   the last finished chunk, or from the checkpoint of an interrupted one;
3. in a copy of the training folder (``final``), choose the weights (lowest
   validation loss; the last ones, or those the run started from, if they tune
   better by a margin) and the test-time flips, and tune the thresholds on the tuning phantoms (pair
   distance at least ``d_max_floor_um``);
4. evaluate the model and the Otsu baseline on held-out phantoms of the
   benchmark families and store both in metrics.json;
5. with ``--install``, copy ``final`` to
   resources/models/<name>, but only when it beats Otsu on the held-out
   phantoms (``--force`` installs anyway), recording the recipe in
   config.json under ``extra["training_data"]``.

Usage::

    python scripts/train_bundled_models.py nucleus-golgi-2d --minutes nucleus-golgi-2d=40
    python scripts/train_bundled_models.py nucleus-golgi-2d --resume --minutes nucleus-golgi-2d=30
    python scripts/train_bundled_models.py nucleus-golgi-2d --finish --install

Time spent so far is read back from each run's training log.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: One entry per bundled model: the phantoms it learns from and how it trains.
RECIPES = {
    "nucleus-golgi-2d": {
        "family": "random-2d",
        "structures": ("nucleus", "golgi"),
        "ranges": {"pixels_xy": (64, 640)},  # keep the whole field at 0.1 µm pixels
        "train_seeds": (0, 48),
        "val_seeds": (100, 104),
        "tune_seeds": (200, 232),
        "test_families": ("cultured-2d", "cultured-2d-dense"),
        "test_seeds": (10000, 10004),
        "preset": "nucleus-golgi",
        "model_voxel_size": (1.0, 0.6, 0.6),
        "patch": (96, 96),
        "batch_size": 4,
        "steps_per_epoch": 25,
        "lr": 1e-3,
        "flips": (1, 4),
        "d_max_floor_um": 14.0,  # the preset's pair distance (phantoms hold few long pairs)
    },
    "cytoplasm-nucleus-2d": {
        "family": "cytology-2d",
        "structures": ("cytoplasm", "nucleus"),
        "ranges": {},
        "train_seeds": (0, 32),
        "val_seeds": (100, 104),
        "tune_seeds": (200, 216),
        "test_families": ("cytology-2d",),
        "test_seeds": (10000, 10004),
        "preset": "cytoplasm-nucleus",
        "model_voxel_size": (1.0, 2.0, 2.0),
        "patch": (128, 128),
        "batch_size": 4,
        "steps_per_epoch": 25,
        "lr": 1e-3,
        "flips": (1, 4),
    },
    "nucleus-golgi-3d": {
        "family": "random-3d",
        "structures": ("nucleus", "golgi"),
        "ranges": {"pixels_xy": (64, 256)},
        # 24 phantoms (seeds 0-23) left a wide gap between training and
        # validation loss, and the model got worse on plain phantoms than the
        # demo model it started from: 128 randomised + 64 plain phantoms, and
        # more for validation and tuning.
        "train_seeds": (1000, 1128),
        "plain_train_seeds": (3000, 3064),
        "val_seeds": (100, 106),
        "plain_val_seeds": (3100, 3104),
        "tune_seeds": (200, 216),
        "plain_tune_seeds": (3200, 3208),
        "test_families": ("isolated", "crowded", "touching", "other-microscope"),
        "test_seeds": (10000, 10006),
        "preset": "nucleus-golgi",
        "model_voxel_size": (0.54, 1.332, 1.332),
        "patch": (32, 64, 64),
        "batch_size": 2,
        "steps_per_epoch": 12,
        "lr": 3e-4,
        # Fine-tuned from stage 1 (scripts/train_demo_model.py, the first bundled
        # model, shipped as "demo" until this one replaced it).
        "init": "build/demo_model/model",
        "flips": (1, 4, 8),
        "d_max_floor_um": 14.0,
    },
}


#: How much higher the last weights' tuned F1 must be to replace the best ones.
LAST_WEIGHTS_MARGIN = 0.01
#: F1 each doubling of the test-time flips must buy to be chosen.
FLIP_COST = 0.005


def recipe_config(name):
    from cellpol_core.synthetic.phantom import family

    r = RECIPES[name]
    return family(r["family"]).with_ranges(**{k: tuple(v) for k, v in r["ranges"].items()})


def write_set(folder: Path, config, seeds, structures, *, prefix="phantom", make=None):
    """Phantoms, one per seed, written once: randomised by ``config``, or made by
    ``make(seed)`` (a Phantom)."""
    from cellpol_core.io.image import write_ome_tiff
    from cellpol_core.io.vectors import write_vectors
    from cellpol_core.synthetic.phantom import generate_randomised

    folder.mkdir(parents=True, exist_ok=True)
    images, vectors = [], []
    for seed in range(*seeds):
        img, csv = folder / f"{prefix}_{seed}.ome.tif", folder / f"{prefix}_{seed}_vectors.csv"
        if not img.exists():
            ph = (make(seed) if make is not None
                  else generate_randomised(seed=seed, config=config, structures=structures))
            write_vectors(csv, ph.vectors, voxel_size=ph.voxel_size)
            write_ome_tiff(img, ph.image, voxel_size=ph.voxel_size, channel_names=ph.channel_names)
        images.append(img)
        vectors.append(csv)
    return images, vectors


def plain_options(seed: int) -> dict:
    """Options of one plain phantom (:func:`generate_phantom` without
    randomisation): only voxel size, field, density and noise drawn."""
    import numpy as np

    rng = np.random.default_rng([seed, 7])
    vxy = float(rng.uniform(0.2, 0.7))
    vz = float(rng.uniform(0.4, 2.0))
    return dict(voxel_size=(vz, vxy, vxy),
                shape=(max(8, int(rng.uniform(12.0, 30.0) / vz)),) + (int(min(256, 110 / vxy)),) * 2,
                density=float(rng.uniform(0.2, 1.8)), noise=float(rng.uniform(0.5, 2.0)),
                neighbour_fraction=float(rng.uniform(0.0, 0.5)),
                distractors=float(rng.uniform(0.0, 2.0)), vessels=float(rng.uniform(0.0, 2.0)))


def write_plain_set(folder: Path, seeds, structures):
    """Plain phantoms (the generator's own appearance at drawn voxel sizes), written once."""
    from cellpol_core.synthetic.phantom import generate_phantom

    return write_set(folder, None, seeds, structures, prefix="plain",
                     make=lambda seed: generate_phantom(seed=seed, structures=structures,
                                                        **plain_options(seed)))


def recipe_sets(name, work: Path, role: str):
    """(images, vectors) of a recipe's ``role`` ("train", "val", "tune"): randomised
    phantoms, plus plain ones where the recipe has ``plain_<role>_seeds``."""
    r = RECIPES[name]
    images, vectors = write_set(work / role, recipe_config(name), r[f"{role}_seeds"],
                                r["structures"])
    if f"plain_{role}_seeds" in r:
        more = write_plain_set(work / role, r[f"plain_{role}_seeds"], r["structures"])
        images, vectors = images + more[0], vectors + more[1]
    return images, vectors


def trained_seconds(model_dir: Path) -> float:
    from cellpol_core.detection.train import LOG_COLUMNS, read_training_log

    total = 0.0
    for folder in (model_dir, *model_dir.parent.glob(f".{model_dir.name}*")):
        log = folder / "training_log.csv"
        if log.exists():
            total = max(total, sum(float(r["seconds"]) for r in read_training_log(log, LOG_COLUMNS)))
    return total


def done_epochs(model_dir: Path) -> int:
    from cellpol_core.detection.train import LOG_COLUMNS, read_training_log

    log = model_dir / "training_log.csv"
    return len(read_training_log(log, LOG_COLUMNS)) if log.exists() else 0


def train_for(name, work: Path, minutes: float, *, resume: bool, chunk: int, threads: int):
    """Train in chunks of epochs until ``minutes`` of wall time are spent."""
    from cellpol_core.cli.common import ProgressBar
    from cellpol_core.detection.config import TrainConfig
    from cellpol_core.detection.train import train
    from cellpol_core.jobs import CancelToken, Cancelled, run_job

    r = RECIPES[name]
    tr = recipe_sets(name, work, "train")
    va = recipe_sets(name, work, "val")
    model_dir = work / "model"
    deadline = time.monotonic() + 60.0 * minutes
    first = not resume
    while time.monotonic() < deadline:
        epochs = done_epochs(model_dir) + chunk
        init = None
        if first and r.get("init"):
            init = ROOT / r["init"]
            if not (init / "config.json").is_file():
                sys.exit(f"{name}: starts from {init}: run `make demo-model` first")
        config = TrainConfig(arch="light", preset=r["preset"], structures=r["structures"],
                             epochs=epochs, steps_per_epoch=r["steps_per_epoch"],
                             patch_size=tuple(r["patch"]), batch_size=r["batch_size"],
                             lr=r["lr"], model_voxel_size=tuple(r["model_voxel_size"]),
                             device="cpu", precision="fp32", seed=0, num_threads=threads)
        cancel = CancelToken()
        try:
            with ProgressBar(disable=False) as bar:
                def cb(event, bar=bar, cancel=cancel):
                    bar(event)
                    if time.monotonic() > deadline:  # checked between steps
                        cancel.cancel()
                run_job(train(*tr, outdir=model_dir, config=config, val_images=va[0],
                              val_vectors=va[1], init=init, resume=not first,
                              overwrite=first, cancel=cancel), cb)
        except Cancelled:
            print(f"{name}: time budget spent during epoch {epochs} (resume continues it)")
            return model_dir
        first = False
        print(f"{name}: {done_epochs(model_dir)} epochs, "
              f"{trained_seconds(model_dir) / 60:.1f} min trained in all")
    return model_dir


def evaluate_method(predict, images, vectors, *, levels="nucleus-golgi"):
    from cellpol_core.detection.evaluate import evaluate_vectors, pool_results
    from cellpol_core.io.image import read_image
    from cellpol_core.io.vectors import read_vectors

    results = []
    for img, vec in zip(images, vectors):
        image = read_image(img)
        results.append(evaluate_vectors(read_vectors(vec), predict(image),
                                        voxel_size=image.voxel_size, shape=image.spatial_shape,
                                        levels=levels))
    return pool_results(results)


def otsu(image, preset):
    """The Otsu baseline with the preset's pair distance."""
    from cellpol_core.defaults import PAIR_DISTANCE_2D_PX, PAIR_DISTANCE_UM
    from cellpol_core.detection.classical import predict_otsu

    d_max = PAIR_DISTANCE_2D_PX if preset == "cytoplasm-nucleus" else PAIR_DISTANCE_UM
    return predict_otsu(image, channels=(0, 1), d_max_um=d_max)


def finish(name, work: Path, *, install: bool, force: bool):
    """Tune, evaluate against Otsu on held-out families, and install when it wins."""
    from cellpol_core.cli.common import ProgressBar
    from cellpol_core.detection.infer import predict_image
    from cellpol_core.detection.model import (CHECKPOINT_FILE, WEIGHTS_BEST, WEIGHTS_LAST,
                                              file_sha256, load_model, read_config,
                                              record_checksum, write_config)
    from cellpol_core.detection.tune import format_report, tune
    from cellpol_core.jobs import run_job
    from cellpol_core.synthetic.phantom import family

    r = RECIPES[name]
    model_dir = work / "model"
    tu = recipe_sets(name, work, "tune")

    def copy_with(weights_file, dest):
        """A model folder like the training one, with ``weights_file`` as its weights."""
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(model_dir, dest, ignore=shutil.ignore_patterns(
            CHECKPOINT_FILE, WEIGHTS_LAST, WEIGHTS_BEST, "checksums.json", "*.lock",
            ".*staging*"))
        shutil.copyfile(model_dir / weights_file, dest / WEIGHTS_BEST)
        record_checksum(dest / WEIGHTS_BEST, file_sha256(dest / WEIGHTS_BEST))
        return dest

    # The weights with the lowest validation loss, or the last ones: a few
    # validation images make that loss noisy, so the tuned F1 decides. The
    # training folder is left as it is (a later --resume continues it).
    candidates = {"best": copy_with(WEIGHTS_BEST, work / "candidate_best")}
    last = model_dir / WEIGHTS_LAST
    if last.exists() and file_sha256(last) != file_sha256(model_dir / WEIGHTS_BEST):
        candidates["last"] = copy_with(WEIGHTS_LAST, work / "candidate_last")
    if r.get("init"):
        # The model the run started from competes too: training must earn its place.
        start = work / "candidate_init"
        if start.exists():
            shutil.rmtree(start)
        shutil.copytree(ROOT / r["init"], start, ignore=shutil.ignore_patterns(
            CHECKPOINT_FILE, WEIGHTS_LAST, "*.lock"))
        candidates["init"] = start
    # Test-time flips: tuned at each candidate, the best tuned F1 wins (ties: fewer).
    scores = {}
    for which, folder in candidates.items():
        for flips in r.get("flips", (1,)):
            with ProgressBar(disable=False) as bar:
                _, rep = run_job(tune(folder, *tu, device="cpu", precision="fp32", flips=flips,
                                      d_max_floor_um=r.get("d_max_floor_um"), write=False), bar)
            scores[(which, flips)] = rep["f1_after"]
            print(f"{name}: {which} weights, {flips} flip(s): tuned F1@5 {rep['f1_after']:.3f}")
    # The last weights must win by a margin (a few hundredths of F1 on the
    # tuning phantoms are within their noise), and each doubling of the flips,
    # which doubles the network time, must buy FLIP_COST of F1.
    margin = {"best": LAST_WEIGHTS_MARGIN, "init": LAST_WEIGHTS_MARGIN, "last": 0.0}
    which, best = max(scores, key=lambda k: (
        round(scores[k] + margin[k[0]] - FLIP_COST * math.log2(k[1]), 3), k[0] == "best",
        -k[1]))
    final = work / "final"
    if final.exists():
        shutil.rmtree(final)
    candidates[which].rename(final)
    print(f"{name}: keeps the {which} weights with {best} flip(s)")
    with ProgressBar(disable=False) as bar:
        _, report = run_job(tune(final, *tu, device="cpu", precision="fp32", flips=best,
                                 d_max_floor_um=r.get("d_max_floor_um")), bar)
    print(format_report(report))
    model = load_model(final)
    table = {}
    for fam in r["test_families"]:
        te = write_set(work / f"test_{fam}", family(fam), r["test_seeds"], r["structures"])
        net = evaluate_method(lambda im: run_job(predict_image(im, model)), *te,
                              levels=r["preset"])
        base = evaluate_method(lambda im: otsu(im, r["preset"]), *te, levels=r["preset"])
        table[fam] = {"model": net.f1(5) or 0.0, "otsu": base.f1(5) or 0.0}
        print(f"{fam}: F1@5 model {table[fam]['model']:.3f}  Otsu {table[fam]['otsu']:.3f}")
    wins = all(v["model"] >= v["otsu"] for v in table.values())
    metrics_path = final / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    metrics["held_out"] = {"seeds": list(r["test_seeds"]), "f1_level5": table,
                           "tuned_f1": {f"{w} weights, {f} flips": v
                                        for (w, f), v in scores.items()},
                           "weights": which,
                           "train_seconds": round(trained_seconds(model_dir), 1),
                           "epochs": done_epochs(model_dir)}
    metrics_path.write_text(json.dumps(metrics, indent=2, default=float) + "\n")
    config = read_config(final)
    config.extra["training_data"] = {
        "generator": "cellpol_core.synthetic.phantom.generate_randomised",
        "family": r["family"], "ranges": {k: list(v) for k, v in r["ranges"].items()},
        "structures": list(r["structures"]),
        "train_seeds": list(r["train_seeds"]), "val_seeds": list(r["val_seeds"]),
        "tune_seeds": list(r["tune_seeds"]), "init": r.get("init"),
        **{f"plain_{role}_seeds": list(r[f"plain_{role}_seeds"])
           for role in ("train", "val", "tune") if f"plain_{role}_seeds" in r},
        **({"plain_generator": "cellpol_core.synthetic.phantom.generate_phantom with "
                               "scripts/train_bundled_models.py plain_options(seed)"}
           if "plain_train_seeds" in r else {}),
        "recipe": "scripts/train_bundled_models.py " + name,
        "epochs": done_epochs(model_dir),
        "weights": f"{which} (of: best by validation loss, last, init)",
        "cpu_minutes": round(trained_seconds(model_dir) / 60.0, 1),
    }
    write_config(final, config)
    for folder in candidates.values():
        if folder.exists():
            shutil.rmtree(folder)
    if not install:
        return wins
    if not wins and not force:
        print(f"{name}: not installed, it does not beat Otsu on every held-out family")
        return wins
    dest = ROOT / "resources" / "models" / name
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(final, dest, ignore=shutil.ignore_patterns("checksums.json", "*.lock"))
    weights = dest / WEIGHTS_BEST
    record_checksum(weights, file_sha256(weights))
    size = sum(f.stat().st_size for f in dest.iterdir()) / 1e6
    print(f"installed {dest} ({size:.1f} MB)")
    return wins


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", choices=sorted(RECIPES))
    ap.add_argument("--minutes", nargs="*", default=[], metavar="NAME=MIN",
                    help="wall-time budget per model (default 30 minutes each)")
    ap.add_argument("--chunk", type=int, default=3, help="epochs per chunk (default 3)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    ap.add_argument("--work", type=Path, default=ROOT / "build" / "bundled_models")
    ap.add_argument("--resume", action="store_true", help="continue the previous run")
    ap.add_argument("--finish", action="store_true",
                    help="skip training: tune, evaluate and (with --install) install")
    ap.add_argument("--install", action="store_true")
    ap.add_argument("--force", action="store_true", help="install even when Otsu wins")
    args = ap.parse_args(argv)
    budgets = {}
    for item in args.minutes:
        key, _, value = item.partition("=")
        budgets[key] = float(value)
    for name in args.models:
        work = args.work / name
        if not args.finish:
            train_for(name, work, budgets.get(name, 30.0), resume=args.resume, chunk=args.chunk,
                      threads=args.threads)
        finish(name, work, install=args.install, force=args.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
