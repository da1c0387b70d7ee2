"""``cellpol stats``: polarity statistics, rose plots and condition comparisons."""

from __future__ import annotations

import math
import sys

from ..analysis.choices import CIRCULAR_METHODS, COVARIATE_KINDS, DEFAULT_PALETTE, PALETTES
from ..errors import InputError
from ..jobs import run_job
from .common import ProgressBar, voxel_size_from_args


def register(sub):
    p = sub.add_parser(
        "stats", help="polarity statistics and rose plots for vector CSVs",
        description="Circular (2D) and spherical (3D) statistics of polarity vectors per image "
                    "and per condition, tests against a reference direction and between "
                    "conditions, and rose plots. Writes OUTDIR/summary_per_image.csv, "
                    "summary_per_condition.csv, condition_comparison.csv (two or more "
                    "conditions) and figures, and prints the per-condition summary as a "
                    "Markdown table. Angles: 0 = +x (right), 90 = up on screen, "
                    "counter-clockwise. mean_azimuth_deg is always absolute; with a reference, "
                    "mean_azimuth_to_reference_deg is the mean relative to it (0 = the "
                    "reference) and the tests use the relative angles.")
    p.add_argument("vectors", nargs="+", metavar="VECTORS",
                   help="vector CSVs (CellPol or VectorAnnotationTool) or folders of *_vectors.csv")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output folder")
    p.add_argument("--voxel-size", nargs="+", type=float, metavar="UM",
                   help="X Y Z µm for CSVs without µm columns (needed for such 3D CSVs)")
    ref = p.add_mutually_exclusive_group()
    ref.add_argument("--reference-deg", type=float, metavar="A",
                     help="reference azimuth in degrees (0 = +x, 90 = up on screen)")
    ref.add_argument("--reference-vector", nargs=3, type=float, metavar=("X", "Y", "Z"),
                     help="reference direction as a vector (y pointing down, like dy_um)")
    p.add_argument("--manifest", metavar="CSV",
                   help="conditions manifest: columns image,condition[,reference_deg | "
                        "reference_x,reference_y,reference_z]")
    p.add_argument("--plane", choices=["xy", "yz", "xz"], default="xy",
                   help="plane of the circular statistics (default xy)")
    p.add_argument("--axial", action="store_true",
                   help="axial data: a vector and its opposite are the same axis (angles are "
                        "doubled; means are axes in [0, 180); hemirose plots)")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N",
                   help="bootstrap resamples for the 50/90/95%% confidence intervals "
                        "(default 1000)")
    p.add_argument("--permutations", type=int, default=9999, metavar="N",
                   help="relabellings of the permutation test between conditions (default 9999)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--control", metavar="NAME",
                   help="control condition of the manifest: compare each other condition with "
                        "it (instead of every pair) and plot their angle CDFs against it")
    p.add_argument("--covariate", metavar="COLUMN",
                   help="a per-vector column of the CSVs (e.g. length_um, score, or one you "
                        "added) to correlate with the angles")
    p.add_argument("--covariate-kind", choices=list(COVARIATE_KINDS), default="linear",
                   help="linear: Mardia's circular-linear correlation (default); circular: the "
                        "column holds angles in degrees (circular-circular correlation)")
    p.add_argument("--circular-method", choices=list(CIRCULAR_METHODS), default="js",
                   help="circular-circular correlation: Jammalamadaka-SenGupta (normal test, "
                        "default) or Fisher-Lee (permutation test)")
    p.add_argument("--palette", choices=list(PALETTES), default=DEFAULT_PALETTE,
                   help="figure colours; okabe-ito and tol are colour-blind safe "
                        f"(default {DEFAULT_PALETTE})")
    p.add_argument("--format", choices=["png", "svg", "pdf"], default="png",
                   help="figure format (default png)")
    p.add_argument("--no-plots", action="store_true", help="write the tables only")
    p.add_argument("--recompute", action="store_true",
                   help="ignore cached per-image results in OUTDIR/.cache")
    p.add_argument("--structures", nargs=2, metavar=("START", "END"),
                   help="which structures to read from CellPol CSVs (default: the first two)")
    p.set_defaults(func=run)


def _num(v, digits=1):
    if v is None or v == "":
        return "–"
    if isinstance(v, str):
        return v
    if isinstance(v, float) and math.isinf(v):
        return "∞"
    return f"{v:.{digits}f}"


def _p(v):
    if v is None:
        return "–"
    return f"{v:.2g}" if v < 0.001 else f"{v:.3f}"


def _angle(v, relative, axial=False):
    if v is None:
        return None
    half = 90.0 if axial else 180.0
    return v - 2 * half if relative and v > half else v  # relative angles read better signed


def _ci(row):
    lo, hi = row.get("mean_ci_low_deg"), row.get("mean_ci_high_deg")
    if lo is None or hi is None:
        return "–"
    if hi < lo:  # the interval contains 0°/360° (axes: 0°/180°)
        lo -= 180.0 if row.get("mode") == "axial" else 360.0
    return f"[{lo:.0f}, {hi:.0f}]"


def markdown_tables(summary) -> str:
    """The per-condition summary (and comparisons) as Markdown tables.

    ``mean`` is the absolute mean angle (``mean_azimuth_deg``) with its
    confidence interval; ``to reference`` the mean relative to the reference.
    """
    rows = summary.per_condition
    plane = rows[0]["plane"] if rows else "xy"
    axial = any(r.get("mode") == "axial" for r in rows)
    what = "axis" if axial else ""
    corr = any(r.get("correlation_r") is not None for r in rows)
    head = (f"| condition | images | n | mean {what + ' ' if what else ''}{plane} (°) | "
            "95% CI (°) | to reference (°) | R | circ. SD (°) | Rayleigh p | V-test p | "
            "Rao p | Watson U² p | 3D R | 3D Rayleigh p | mean angle to ref. (°) |")
    sep = "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    if corr:
        head += " covariate r | covariate p |"
        sep += "---:|---:|"
    lines = [head, sep]
    for r in rows:
        cells = [str(r["name"]), str(r["n_images"]), str(r["n"]), _num(r["mean_azimuth_deg"]),
                 _ci(r), _num(_angle(r["mean_azimuth_to_reference_deg"], True, axial)),
                 _num(r["resultant_length"], 3), _num(r["circular_sd_deg"]), _p(r["rayleigh_p"]),
                 _p(r["vtest_p"]), _p(r["rao_p"]), _p(r["watson_p"]),
                 _num(r["resultant_length_3d"], 3), _p(r["rayleigh3d_p"]),
                 _num(r["mean_angle_to_reference_deg"])]
        if corr:
            cells += [_num(r.get("correlation_r"), 3), _p(r.get("correlation_p"))]
        lines.append("| " + " | ".join(cells) + " |")
    if summary.comparisons:
        lines += ["", "| A | B | mean B − A (°) | Watson–Williams F | WW p | permutation p | "
                      "3D permutation p |",
                  "|---|---|---:|---:|---:|---:|---:|"]
        for c in summary.comparisons:
            lines.append("| " + " | ".join([
                str(c["condition_a"]), str(c["condition_b"]), _num(c["mean_difference_deg"]),
                _num(c["ww_F"], 2), _p(c["ww_p"]), _p(c["perm_p"]), _p(c["perm3d_p"])]) + " |")
    return "\n".join(lines)


def run(args) -> int:
    from ..analysis.batch import analyse

    vs = voxel_size_from_args(args)
    if args.bootstrap < 0 or args.permutations < 0:
        raise InputError("--bootstrap and --permutations must be >= 0")
    job = analyse(args.vectors, voxel_size=vs, manifest=args.manifest,
                  reference_deg=args.reference_deg, reference_vector=args.reference_vector,
                  outdir=args.output, plane=args.plane, axial=args.axial,
                  n_bootstrap=args.bootstrap, n_permutations=args.permutations, seed=args.seed,
                  plot_format=args.format, plots=not args.no_plots,
                  skip_existing=not args.recompute, structures=args.structures,
                  covariate=args.covariate, covariate_kind=args.covariate_kind,
                  circular_method=args.circular_method, control=args.control,
                  palette=args.palette)
    with ProgressBar() as bar:
        summary = run_job(job, bar)
    print(markdown_tables(summary))
    if summary.unmatched:
        more = f" and {len(summary.unmatched) - 5} more" if len(summary.unmatched) > 5 else ""
        print(f"note: manifest image(s) without a vector CSV, left out: "
              f"{', '.join(summary.unmatched[:5])}{more}", file=sys.stderr)
    print(f"\nTables and figures in {summary.outdir} ({len(summary.per_image)} images, "
          f"{summary.cache_hits} from the cache).", file=sys.stderr)
    return 0
