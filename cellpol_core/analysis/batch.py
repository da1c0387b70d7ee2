"""Batch polarity analysis: per-image and per-condition statistics, plots, comparisons.

:func:`analyse` is the long job behind ``cellpol stats`` (and ``cellpol
predict --manifest``). For vector CSVs (CellPol or VectorAnnotationTool) it
writes into OUTDIR:

``summary_per_image.csv``
    One row per image: :data:`IMAGE_COLUMNS`.
``summary_per_condition.csv``
    One row per condition, the vectors of all its images pooled (each image
    first turned into its own reference frame): :data:`CONDITION_COLUMNS`.
``condition_comparison.csv``
    With two or more conditions, one row per pair of conditions: the
    Watson–Williams and permutation tests of equal mean direction
    (:data:`COMPARISON_COLUMNS`).
    With a control condition (``control=``), one row per other condition
    against the control instead.
``conditions_rose.<fmt>`` and ``plots/``
    One rose per condition side by side (hemiroses for axial data); per
    condition and per image, roses on the xy/yz/xz planes, and per condition
    a polar scatter.
``cdf_vs_<control>.<fmt>``
    With a control condition: the angle CDF of each condition against the
    control's.
``.cache/<image>.json``
    Per-image results; an image whose CSV and settings did not change is not
    computed again (resuming an interrupted or extended batch).

Statistics and angle conventions are those of :mod:`cellpol_core.analysis.polarity`:
``mean_azimuth_deg`` is the mean angle in the chosen plane (default xy: 0 =
+x, 90 = up on screen), always absolute (as in the image);
``mean_azimuth_to_reference_deg`` is the mean angle relative to the reference
(0 = the reference), and the V-test, R and the other tests use the relative
angles; ``mean_dir_x/y/z`` is the 3D mean direction (y pointing down on
screen, in the reference frame when there is a reference); cells that do not
apply are empty. With ``axial=True`` angles are axes (angle doubling), means
are axes in [0, 180).

:func:`analyse` runs in steps, each a public function: :func:`read_inputs`,
:func:`image_stats` per image (or the cache), :func:`condition_stats` per
condition, :func:`compare_samples` per pair from :func:`comparison_pairs`,
:func:`write_tables`, and then :func:`plot_pass` draws every figure.

Voxel size of a CSV: from its µm columns (``<name>_x_um`` / ``<name>_x``)
when present, else the ``voxel_size`` argument; 3D vectors with neither are an
error, 2D vectors are then measured in pixels.

Manifest CSV (conditions and per-image references): columns ``image`` (file
name or stem; matched to the vector CSV name without ``.csv``, ``_vectors``
and image extensions, ignoring case), ``condition`` and optionally
``reference_deg`` (an azimuth) or ``reference_x,reference_y,reference_z`` (a
vector, y pointing down). An empty reference falls back to the global one.
Without a manifest every image belongs to the condition ``all``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..io.atomic import write_text_atomic
from ..errors import InputError
from ..jobs import CancelToken, ProgressEvent
from .choices import CIRCULAR_METHODS, COVARIATE_KINDS, DEFAULT_PALETTE, PALETTES
from .polarity import (PLANES, SUMMARY_STAT_COLUMNS, PolarityData,
                       compare_samples, plane_angle_deg, polarity_data, reference_unit_vector,
                       summarise)
from ..io.paths import image_stem, vectors_stem
from ..io.vectors import VectorTable, read_vectors

IMAGE_COLUMNS = ["name", "condition", "reference_azimuth_deg", "reference_elevation_deg",
                 *SUMMARY_STAT_COLUMNS, "voxel_size_um", "source"]
CONDITION_COLUMNS = ["name", "n_images", "reference_azimuth_deg", "reference_elevation_deg",
                     *SUMMARY_STAT_COLUMNS]
COMPARISON_COLUMNS = ["condition_a", "condition_b", "plane", "n_a", "n_b", "mean_a_deg",
                      "mean_b_deg", "mean_difference_deg", "ww_F", "ww_df1", "ww_df2", "ww_p",
                      "ww_kappa", "ww_assumptions_met", "ww_note", "perm_stat", "perm_p",
                      "perm_permutations", "perm3d_stat", "perm3d_p"]
OUTPUT_NAMES = ("summary_per_image.csv", "summary_per_condition.csv", "condition_comparison.csv")
DEFAULT_CONDITION = "all"
_CACHE_VERSION = 2


@dataclass
class AnalysisSummary:
    """What :func:`analyse` returns.

    Attributes
    ----------
    per_image, per_condition, comparisons : list of dict
        The rows of the three tables (values as numbers, None where empty).
    files : list of Path
        Written tables and figures.
    cache_hits : int
        Images whose results came from the cache.
    outdir : Path
        The output folder.
    unmatched : list of str
        Manifest images without a vector CSV among the inputs (left out).
    """

    per_image: list
    per_condition: list
    comparisons: list
    files: list = field(default_factory=list)
    cache_hits: int = 0
    outdir: Optional[Path] = None
    unmatched: list = field(default_factory=list)


# ----------------------------------------------------------------------------- names and inputs

def vector_name(path) -> str:
    """The image name of a vector CSV, or of an image named in a manifest: ``a/img_vectors.csv`` -> ``img``."""
    return image_stem(vectors_stem(path))


def expand_vector_inputs(paths) -> list:
    """Files as given; folders give their ``*_vectors.csv`` files (else all ``*.csv``).

    This module's own outputs (``summary_*.csv``, ...) are never taken from a folder.
    """
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            csvs = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() == ".csv"
                          and f.name not in OUTPUT_NAMES)
            vec = [f for f in csvs if f.name.lower().endswith("_vectors.csv")]
            out.extend(vec or csvs)
        else:
            out.append(p)
    return out


def _safe_filename(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "unnamed"


# ----------------------------------------------------------------------------- manifest

@dataclass
class ManifestEntry:
    """One manifest row."""

    image: str
    condition: str
    reference: Optional[np.ndarray] = None
    line: int = 0


def read_manifest(path) -> dict:
    """Read a conditions manifest (see the module docstring).

    Returns
    -------
    dict
        Case-folded image name -> :class:`ManifestEntry`, in file order.

    Raises
    ------
    InputError
        Missing file or columns, empty image/condition, duplicate images,
        bad numbers, or a row with both kinds of reference.
    """
    path = Path(path)
    if not path.exists():
        raise InputError("manifest not found", path)
    if path.is_dir():
        raise InputError("is a folder, expected a manifest CSV", path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InputError("manifest is not a text CSV file", path) from None
    rows = [r for r in csv.reader(io.StringIO(text)) if any(c.strip() for c in r)]
    if not rows:
        raise InputError("manifest is empty; expected columns image,condition", path)
    header = [c.strip().lower() for c in rows[0]]
    col = {c: i for i, c in enumerate(header)}
    missing = [c for c in ("image", "condition") if c not in col]
    if missing:
        raise InputError(f"manifest lacks column(s) {', '.join(missing)}; header is "
                         + ",".join(rows[0]), path)
    vec_cols = ["reference_x", "reference_y", "reference_z"]
    has_vec = [c in col for c in vec_cols]
    if any(has_vec) and not all(has_vec):
        raise InputError("manifest needs all of reference_x,reference_y,reference_z", path)
    entries = {}
    for line, row in enumerate(rows[1:], start=2):
        row = [c.strip() for c in row] + [""] * (len(header) - len(row))
        image, condition = row[col["image"]], row[col["condition"]]
        if not image:
            raise InputError(f"line {line}: empty image name", path)
        if not condition:
            raise InputError(f"line {line}: empty condition for {image}", path)
        deg = row[col["reference_deg"]] if "reference_deg" in col else ""
        vec = [row[col[c]] for c in vec_cols] if all(has_vec) else ["", "", ""]
        if deg and any(vec):
            raise InputError(f"line {line}: give reference_deg or reference_x/y/z, not both", path)
        reference = None
        try:
            if deg:
                reference = reference_unit_vector(reference_deg=_manifest_number(deg, path, line))
            elif any(vec):
                if not all(vec):
                    raise InputError(f"line {line}: reference_x, reference_y and reference_z "
                                     "must all be filled", path)
                reference = reference_unit_vector(
                    reference_vector=[_manifest_number(v, path, line) for v in vec])
        except InputError as exc:
            if exc.path:
                raise
            raise InputError(f"line {line}: {exc}", path) from None
        key = vector_name(image).casefold()
        if key in entries:
            raise InputError(f"line {line}: image {image} is listed twice "
                             f"(also line {entries[key].line})", path)
        entries[key] = ManifestEntry(image, condition, reference, line)
    if not entries:
        raise InputError("manifest has no rows", path)
    return entries


def _manifest_number(text, path, line) -> float:
    try:
        v = float(text)
    except ValueError:
        raise InputError(f"line {line}: not a number: {text!r}", path) from None
    if not math.isfinite(v):
        raise InputError(f"line {line}: expected a finite number, got {text}", path)
    return v


# ----------------------------------------------------------------------------- voxel size

def voxel_size_from_table(table: VectorTable) -> Optional[tuple]:
    """(z, y, x) µm derived from a CSV's ``<name>_<axis>_um`` columns, or None.

    Each axis is the least-squares ratio of µm to voxel coordinates over both
    structures. An axis whose voxel coordinates are all 0 (the z of a single
    plane) gets 1.0, as it does not affect any length or angle.
    """
    if len(table) == 0:
        return None
    axes = "zyx" if table.ndim == 3 else "yx"
    out = {"z": 1.0}
    for a in axes:
        idx = "zyx".index(a)
        num = den = 0.0
        found = False
        for name, pts in zip(table.names, (table.start, table.end)):
            col = table.extra.get(f"{name}_{a}_um")
            if col is None or np.asarray(col).dtype == object:
                continue
            found = True
            c = pts[:, idx]
            um = np.asarray(col, dtype=np.float64)
            num += float(np.sum(c * um))
            den += float(np.sum(c * c))
        if not found:
            return None
        if den == 0:
            if a in "xy":
                return None
            continue
        ratio = num / den
        if not math.isfinite(ratio) or ratio <= 0:
            return None
        out[a] = float(f"{ratio:.6g}")  # the CSV holds 4 decimals; more digits are noise
    return (out["z"], out["y"], out["x"])


def _resolve_voxel_size(table, path, voxel_size):
    vs = voxel_size_from_table(table)
    if vs is not None:
        return vs, "csv"
    if voxel_size is not None:
        return tuple(float(v) for v in voxel_size), "argument"
    if table.ndim == 3 and len(table):
        raise InputError("3D vectors without µm columns: the voxel size is unknown; pass "
                         "--voxel-size X Y Z", path)
    return (1.0, 1.0, 1.0), "pixels"


# ----------------------------------------------------------------------------- output helpers

def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        if math.isnan(v):
            return ""
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return f"{float(v):.6g}"
    return str(v)


def write_table(path, columns, rows):
    """Write dict rows as a CSV with exactly ``columns`` (atomically)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow([_fmt(r.get(c)) for c in columns])
    write_text_atomic(path, buf.getvalue())


def _reference_columns(reference) -> dict:
    if reference is None:
        return {"reference_azimuth_deg": None, "reference_elevation_deg": None}
    az = plane_angle_deg(reference, "xy")
    el = math.degrees(math.asin(max(-1.0, min(1.0, float(reference[2])))))
    return {"reference_azimuth_deg": None if math.isnan(az) else az,
            "reference_elevation_deg": el}


def _settings_key(source: Path, settings: dict) -> str:
    h = hashlib.sha256()
    with open(source, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    h.update(json.dumps(settings, sort_keys=True).encode())
    return h.hexdigest()


# ----------------------------------------------------------------------------- options

@dataclass(frozen=True)
class AnalysisOptions:
    """The settings of one :func:`analyse` run (see its parameters)."""

    voxel_size: Optional[tuple] = None
    plane: str = "xy"
    axial: bool = False
    n_bootstrap: int = 1000
    n_permutations: int = 9999
    seed: int = 0
    confidence: float = 0.95
    plot_format: str = "png"
    plots: bool = True
    skip_existing: bool = True
    structures: Optional[tuple] = None
    covariate: Optional[str] = None
    covariate_kind: str = "linear"
    circular_method: str = "js"
    control: Optional[str] = None
    palette: str = DEFAULT_PALETTE

    def check(self):
        """Raise :class:`InputError` for a bad setting."""
        if self.plane not in PLANES:
            raise InputError(f"unknown plane {self.plane!r}; choose xy, yz or xz")
        if self.plot_format not in ("png", "svg", "pdf"):
            raise InputError(f"unknown figure format {self.plot_format!r}; choose png, svg or pdf")
        if self.n_bootstrap < 0 or self.n_permutations < 0:
            raise InputError("the numbers of bootstrap resamples and permutations must be >= 0")
        if not 0 < self.confidence < 1:
            raise InputError(f"confidence must be between 0 and 1, got {self.confidence}")
        if self.covariate_kind not in COVARIATE_KINDS:
            raise InputError(f"unknown covariate kind {self.covariate_kind!r}; choose "
                             + " or ".join(COVARIATE_KINDS))
        if self.circular_method not in CIRCULAR_METHODS:
            raise InputError(f"unknown circular correlation {self.circular_method!r}; choose js "
                             "or fisher-lee")
        if self.palette not in PALETTES:
            raise InputError(f"unknown palette {self.palette!r}; choose " + ", ".join(PALETTES))

    def summarise(self, data: PolarityData) -> dict:
        """:func:`summarise` with these settings."""
        return summarise(data, plane=self.plane, n_bootstrap=self.n_bootstrap,
                         confidence=self.confidence, seed=self.seed, axial=self.axial,
                         covariate_kind=self.covariate_kind if self.covariate else None,
                         covariate_name=self.covariate, circular_method=self.circular_method)

    def cache_settings(self, reference) -> dict:
        """What a cached per-image result depends on (besides the CSV's bytes)."""
        return {"version": _CACHE_VERSION, "voxel_size": None if self.voxel_size is None
                else [float(v) for v in self.voxel_size],
                "reference": None if reference is None else [round(float(v), 12) for v in reference],
                "plane": self.plane, "axial": self.axial, "n_bootstrap": self.n_bootstrap,
                "seed": self.seed, "confidence": self.confidence,
                "structures": None if self.structures is None else list(self.structures),
                "covariate": self.covariate, "covariate_kind": self.covariate_kind,
                "circular_method": self.circular_method}


@dataclass
class ImageInput:
    """One vector CSV with its condition and reference (unit vector or None)."""

    path: Path
    name: str
    condition: str
    reference: Optional[np.ndarray]


@dataclass
class ImageResult:
    """The statistics of one image: its summary row and its vectors."""

    input: ImageInput
    row: dict
    data: PolarityData
    cached: bool


# ----------------------------------------------------------------------------- steps

def read_inputs(vector_csvs, *, manifest=None, reference=None) -> tuple:
    """The images to analyse, their conditions and references.

    Returns
    -------
    (inputs, conditions, unmatched)
        :class:`ImageInput` per CSV; the condition names in manifest order
        (``["all"]`` without a manifest); manifest images without a CSV.
    """
    paths = expand_vector_inputs(vector_csvs)
    if not paths:
        raise InputError("no vector CSV files found in " + ", ".join(map(str, vector_csvs)))
    for p in paths:
        if not p.exists():
            raise InputError("file not found", p)
    names = [vector_name(p) for p in paths]
    seen = {}
    for p, n in zip(paths, names):
        if n.casefold() in seen:
            raise InputError(f"two inputs have the same image name {n!r} ({seen[n.casefold()]} "
                             "and this one)", p)
        seen[n.casefold()] = p
    if manifest is None:
        inputs = [ImageInput(p, n, DEFAULT_CONDITION, reference) for p, n in zip(paths, names)]
        return inputs, [DEFAULT_CONDITION], []
    entries = read_manifest(manifest)
    unknown = [n for n in names if n.casefold() not in entries]
    if unknown:
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise InputError(f"image(s) not in the manifest: {', '.join(unknown[:5])}{more}",
                         manifest)
    inputs = []
    for p, n in zip(paths, names):
        e = entries[n.casefold()]
        inputs.append(ImageInput(p, n, e.condition,
                                 e.reference if e.reference is not None else reference))
    order = list(dict.fromkeys(e.condition for e in entries.values()))
    given = {n.casefold() for n in names}
    unmatched = [e.image for k, e in entries.items() if k not in given]
    return inputs, order, unmatched


def covariate_values(table: VectorTable, column: str, path) -> np.ndarray:
    """The per-vector values of ``column`` (``score`` or an extra column), NaN where empty.

    Raises
    ------
    InputError
        When the column is missing or holds something that is not a number.
    """
    if column == "score" and table.score is not None:
        return np.asarray(table.score, dtype=np.float64)
    if column not in table.extra:
        have = ", ".join(["score"] * (table.score is not None) + list(table.extra)) or "none"
        raise InputError(f"no column {column!r} for the covariate; other columns: {have}", path)
    values = np.asarray(table.extra[column])
    if values.dtype != object:
        return values.astype(np.float64)
    out = np.full(len(values), np.nan)
    for i, v in enumerate(values):
        text = str(v).strip()
        if text:
            try:
                out[i] = float(text)
            except ValueError:
                raise InputError(f"line {i + 2}: column {column}: not a number: {text!r}",
                                 path) from None
    return out


def image_stats(item: ImageInput, opts: AnalysisOptions, cache_dir: Path) -> ImageResult:
    """Read one CSV and summarise it, or take the result from the cache when it is current."""
    key = _settings_key(item.path, opts.cache_settings(item.reference))
    cache_file = cache_dir / f"{_safe_filename(item.name)}.json"
    if opts.skip_existing and cache_file.exists():
        try:
            c = json.loads(cache_file.read_text(encoding="utf-8"))
            if c.get("key") == key:
                row = dict(c["row"], condition=item.condition)  # the manifest is not in the key
                return ImageResult(item, row, PolarityData.from_json(c["data"]), True)
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache entry is recomputed
    table = read_vectors(item.path, structures=opts.structures)
    if table.ndim == 2 and opts.plane != "xy":
        raise InputError(f"2D vectors have no {opts.plane} plane; use --plane xy", item.path)
    vs, _origin = _resolve_voxel_size(table, item.path, opts.voxel_size)
    cov = None if opts.covariate is None else covariate_values(table, opts.covariate, item.path)
    try:
        data = polarity_data(table, vs, reference=item.reference, covariate=cov)
    except InputError as exc:
        raise InputError(str(exc), item.path) from None
    row = opts.summarise(data)
    row.update(_reference_columns(item.reference))
    row.update(name=item.name, voxel_size_um=" ".join(f"{v:g}" for v in vs[::-1]),
               source=str(item.path))
    write_text_atomic(cache_file, json.dumps({"key": key, "row": row, "data": data.to_json()}))
    row["condition"] = item.condition
    return ImageResult(item, row, data, False)


def condition_stats(condition: str, results: Sequence[ImageResult], opts: AnalysisOptions):
    """Pool the images of one condition: ``(row, pooled PolarityData)``."""
    parts = [r.data for r in results]
    if len({p.ndim for p in parts if len(p)}) > 1:
        raise InputError(f"condition {condition!r} mixes 2D and 3D vector tables")
    data = PolarityData.concat(parts)
    row = opts.summarise(data)
    refs = {None if r.input.reference is None else tuple(np.round(r.input.reference, 9))
            for r in results}
    if len(refs) == 1:
        ref = next(iter(refs))
        row.update(_reference_columns(None if ref is None else np.asarray(ref)))
    else:
        row.update(reference_azimuth_deg="per image", reference_elevation_deg="per image")
    row.update(name=condition, n_images=len(parts))
    return row, data


def comparison_pairs(conditions: Sequence[str], control: Optional[str] = None) -> list:
    """Every pair of conditions, or the control against each other condition."""
    if control is None:
        return list(combinations(conditions, 2))
    return [(control, c) for c in conditions if c != control]


def write_tables(outdir: Path, image_rows, condition_rows, comparisons, *, compare) -> list:
    """Write the CSV tables; returns their paths (the comparison table only with ``compare``)."""
    files = [outdir / "summary_per_image.csv", outdir / "summary_per_condition.csv"]
    write_table(files[0], IMAGE_COLUMNS, image_rows)
    write_table(files[1], CONDITION_COLUMNS, condition_rows)
    comparison_path = outdir / "condition_comparison.csv"
    if compare:
        write_table(comparison_path, COMPARISON_COLUMNS, comparisons)
        files.append(comparison_path)
    elif comparison_path.exists():
        comparison_path.unlink()  # left from an earlier run with more conditions
    return files


def plot_pass(outdir: Path, images: Sequence[ImageResult], pooled: dict, opts: AnalysisOptions,
              *, cancel: Optional[CancelToken] = None):
    """Write the figures (a generator job: stage ``"plot"``); returns their paths.

    Per image a rose per plane (kept when the image came from the cache and
    its figure exists), per condition a rose per plane and a polar scatter,
    all conditions side by side, and with a control condition the angle CDFs
    of each condition against it.
    """
    from . import plots

    fmt, axial, palette = opts.plot_format, opts.axial, opts.palette
    plot_dir = outdir / "plots"
    conditions = list(pooled)
    total = len(images) + len(conditions) + 1
    files, step = [], 0

    def tick(message):
        nonlocal step
        if cancel is not None:
            cancel.check()
        step += 1
        return ProgressEvent("plot", step, total, message=message)

    for res in images:
        target = plot_dir / f"{_safe_filename(res.input.name)}_rose.{fmt}"
        if not res.cached or not target.exists():
            files.append(plots.save_figure(plots.rose_planes_figure(
                _plot_angles(res.data), relative_planes=res.data.reference_planes,
                title=f"{res.input.name} ({res.input.condition})", axial=axial,
                palette=palette), target))
        else:
            files.append(target)
        yield tick(res.input.name)
    plane = opts.plane
    for cond, data in pooled.items():
        stem = plot_dir / f"condition_{_safe_filename(cond)}"
        files.append(plots.save_figure(plots.rose_planes_figure(
            _plot_angles(data), relative_planes=data.reference_planes,
            title=f"condition {cond}", axial=axial, palette=palette),
            Path(f"{stem}_rose.{fmt}")))
        files.append(plots.save_figure(plots.scatter_figure(
            data.angles[plane], lengths=_plane_lengths(data, plane), plane=plane,
            relative=data.reference_planes.get(plane, False), title=f"condition {cond}",
            axial=axial, palette=palette), Path(f"{stem}_scatter.{fmt}")))
        yield tick(cond)
    if conditions:
        relative = all(pooled[c].reference_planes.get(plane, False) for c in conditions)
        groups = {c: pooled[c].angles[plane] for c in conditions}
        files.append(plots.save_figure(plots.conditions_figure(
            groups, plane=plane, relative=relative, axial=axial, palette=palette),
            outdir / f"conditions_rose.{fmt}"))
        if opts.control is not None and len(conditions) > 1:
            files.append(plots.save_figure(plots.cdf_figure(
                groups, control=opts.control, plane=plane, relative=relative, axial=axial,
                palette=palette), outdir / f"cdf_vs_{_safe_filename(opts.control)}.{fmt}"))
        yield tick("conditions")
    return files


# ----------------------------------------------------------------------------- the job

def analyse(vector_csvs: Sequence, *, voxel_size=None, manifest=None, reference_deg=None,
            reference_vector=None, outdir, plane="xy", axial=False, n_bootstrap=1000,
            n_permutations=9999, seed=0, confidence=0.95, plot_format="png", plots=True,
            skip_existing=True, structures=None, covariate=None, covariate_kind="linear",
            circular_method="js", control=None, palette=DEFAULT_PALETTE,
            cancel: Optional[CancelToken] = None):
    """Polarity statistics for a batch of vector CSVs (a generator job).

    Yields :class:`~cellpol_core.jobs.ProgressEvent` (stage ``"analyse"`` once
    per image, with ``data["cached"]`` telling whether the image came from the
    cache; ``"summary"`` per condition; ``"compare"`` per pair of conditions;
    ``"plot"`` while drawing) and returns an :class:`AnalysisSummary`. See the
    module docstring for the outputs.

    Parameters
    ----------
    vector_csvs : sequence of path
        Vector CSVs, or folders of them.
    voxel_size : tuple of 3 floats, optional
        (z, y, x) µm for CSVs without µm columns.
    manifest : path, optional
        Conditions manifest CSV.
    reference_deg : float, optional
        Global reference azimuth in degrees (0 = +x, 90 = up on screen).
    reference_vector : sequence of 3 floats, optional
        Global reference (x, y, z) vector, y pointing down. Not with
        ``reference_deg``. A manifest's per-image reference takes precedence.
    outdir : path
        Output folder, created if needed.
    plane : {"xy", "yz", "xz"}
        Plane of the circular statistics (2D data: xy only).
    axial : bool
        Axial statistics (angle doubling; see :mod:`cellpol_core.analysis.polarity`).
    n_bootstrap : int
        Bootstrap resamples for the confidence intervals.
    n_permutations : int
        Relabellings of the permutation test between conditions.
    seed : int
        Seed of the bootstrap, Rao's test and the permutation tests.
    confidence : float
        Level of the ``mean_ci_*`` / ``resultant_length_ci_*`` columns (the
        50/90/95 % columns are always there).
    plot_format : {"png", "svg", "pdf"}
        Figure format.
    plots : bool
        Write figures.
    skip_existing : bool
        Reuse cached per-image results whose CSV and settings did not change.
    structures : (str, str), optional
        Which structures to read from CellPol CSVs (default: the first two).
    covariate : str, optional
        A per-vector column of the CSVs (e.g. ``length_um``, ``score`` or an
        added ``distance_to_vessel_um``) to correlate with the angles.
    covariate_kind : {"linear", "circular"}
        ``linear``: Mardia's circular-linear correlation; ``circular`` (a
        column of angles in degrees): circular-circular, ``circular_method``.
    circular_method : {"js", "fisher-lee"}
        Jammalamadaka-SenGupta (normal test) or Fisher-Lee (permutation test).
    control : str, optional
        A condition of the manifest: compare every other condition with it
        (instead of every pair), and plot their angle CDFs against it.
    palette : {"classic", "okabe-ito", "tol"}
        Figure colours (the last two are colour-blind safe).
    cancel : CancelToken, optional
        Checked between images, conditions, comparisons and figures.

    Raises
    ------
    InputError
        No inputs, unreadable CSVs, unknown voxel size for 3D vectors, images
        missing from the manifest, a condition mixing 2D and 3D vectors, an
        unknown control condition or covariate column, bad options.
    """
    opts = AnalysisOptions(
        voxel_size=None if voxel_size is None else tuple(float(v) for v in voxel_size),
        plane=plane, axial=bool(axial), n_bootstrap=int(n_bootstrap),
        n_permutations=int(n_permutations), seed=int(seed), confidence=float(confidence),
        plot_format=str(plot_format).lower().lstrip("."), plots=bool(plots),
        skip_existing=bool(skip_existing),
        structures=None if structures is None else tuple(structures), covariate=covariate,
        covariate_kind=covariate_kind, circular_method=circular_method, control=control,
        palette=palette)
    opts.check()
    global_ref = reference_unit_vector(reference_deg=reference_deg,
                                       reference_vector=reference_vector)
    inputs, order, unmatched = read_inputs(vector_csvs, manifest=manifest, reference=global_ref)
    if control is not None and control not in order:
        raise InputError(f"control condition {control!r} is not a condition; conditions: "
                         + ", ".join(order), manifest)
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)

    # 1. per image
    images = []
    for k, item in enumerate(inputs):
        if cancel is not None:
            cancel.check()
        res = image_stats(item, opts, outdir / ".cache")
        images.append(res)
        yield ProgressEvent("analyse", k + 1, len(inputs),
                            message=f"{item.name}: {res.row.get('n', 0)} vectors"
                            + (" (cached)" if res.cached else ""),
                            data={"name": item.name, "cached": res.cached, "path": str(item.path)})

    # 2. per condition
    conditions = [c for c in order if any(r.input.condition == c for r in images)]
    condition_rows, pooled = [], {}
    for j, cond in enumerate(conditions):
        if cancel is not None:
            cancel.check()
        row, pooled[cond] = condition_stats(
            cond, [r for r in images if r.input.condition == cond], opts)
        condition_rows.append(row)
        yield ProgressEvent("summary", j + 1, len(conditions), message=cond,
                            data={"condition": cond})

    # 3. between conditions
    comparisons = []
    pairs = comparison_pairs(conditions, control if control in pooled else None)
    for j, (a, b) in enumerate(pairs):
        if cancel is not None:
            cancel.check()
        yield ProgressEvent("compare", j, len(pairs), message=f"{a} vs {b}")
        row = compare_samples(pooled[a], pooled[b], plane=opts.plane,
                              n_permutations=opts.n_permutations, seed=opts.seed,
                              axial=opts.axial)
        row.update(condition_a=a, condition_b=b)
        comparisons.append(row)

    # 4. tables, then 5. figures
    image_rows = [r.row for r in images]
    files = write_tables(outdir, image_rows, condition_rows, comparisons,
                         compare=len(conditions) >= 2)
    if opts.plots:
        files += yield from plot_pass(outdir, images, pooled, opts, cancel=cancel)
    return AnalysisSummary(image_rows, condition_rows, comparisons, files,
                           sum(r.cached for r in images), outdir, unmatched)


def _plot_angles(data: PolarityData) -> dict:
    return {p: data.angles[p] for p in (("xy",) if data.ndim == 2 else PLANES)}


def _plane_lengths(data: PolarityData, plane) -> np.ndarray:
    v = data.vectors
    i, j = {"xy": (0, 1), "xz": (0, 2), "yz": (1, 2)}[plane]
    return np.hypot(v[:, i], v[:, j])
