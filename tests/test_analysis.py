"""Batch analysis: conditions, references, resumability, plots and the `stats` CLI."""

import csv
import json

import numpy as np
import pytest

from cellpol_core.analysis.batch import (CONDITION_COLUMNS, COMPARISON_COLUMNS, IMAGE_COLUMNS, analyse,
                                   read_manifest, voxel_size_from_table)
from cellpol_core.cli import main
from cellpol_core.errors import InputError
from cellpol_core.jobs import CancelToken, run_job
from cellpol_core.io.vectors import VectorTable, read_vectors, write_vat, write_vectors

REQUIRED = ("name,n,mean_azimuth_deg,resultant_length,circular_sd_deg,rayleigh_z,rayleigh_p,"
            "vtest_u,vtest_p,mean_dir_x,mean_dir_y,mean_dir_z,resultant_length_3d,rayleigh3d_p,"
            "mean_angle_to_reference_deg").split(",")


@pytest.fixture(scope="module")
def phantom_dir(tmp_path_factory):
    """Ground-truth vectors of 4 small phantoms: condition A toward 0°, B toward 180°."""
    from cellpol_core.synthetic.phantom import generate_phantom

    d = tmp_path_factory.mktemp("phantoms")
    for i, direction in enumerate((0, 0, 180, 180)):
        p = generate_phantom(shape=(16, 128, 128), voxel_size=(1.0, 1.0, 1.0), seed=10 + i,
                             mean_direction=direction, concentration=20)
        write_vectors(d / f"ph{i}_vectors.csv", p.vectors, voxel_size=p.voxel_size)
    (d / "conditions.csv").write_text("image,condition\nph0.ome.tif,A\nph1,A\n"
                                      "ph2_vectors.csv,B\nph3,B\n")
    return d


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _header(path):
    with open(path, newline="") as fh:
        return next(csv.reader(fh))


def _run(inputs, outdir, **kw):
    events = []
    kw.setdefault("plots", False)
    kw.setdefault("n_bootstrap", 200)
    kw.setdefault("n_permutations", 499)
    summary = run_job(analyse(inputs, outdir=outdir, **kw), events.append)
    return summary, events


def test_two_conditions_are_told_apart(phantom_dir, tmp_path):
    out = tmp_path / "out"
    summary, events = _run([phantom_dir], out, manifest=phantom_dir / "conditions.csv",
                           reference_deg=0.0)
    assert _header(out / "summary_per_image.csv") == IMAGE_COLUMNS
    assert _header(out / "summary_per_condition.csv") == CONDITION_COLUMNS
    assert _header(out / "condition_comparison.csv") == COMPARISON_COLUMNS
    assert set(REQUIRED) <= set(IMAGE_COLUMNS) and set(REQUIRED) <= set(CONDITION_COLUMNS)
    cond = {r["name"]: r for r in _rows(out / "summary_per_condition.csv")}
    a, b = cond["A"], cond["B"]
    assert a["n_images"] == "2" and int(a["n"]) > 50
    # relative to the reference (= A's direction): A near 0°, B near 180°
    assert min(float(a["mean_azimuth_deg"]), 360 - float(a["mean_azimuth_deg"])) < 10
    assert abs(float(b["mean_azimuth_deg"]) - 180) < 10
    assert float(a["resultant_length"]) > 0.8 and float(b["resultant_length"]) > 0.8
    # V-test against A's direction: A clustered around it, B not
    assert float(a["vtest_p"]) < 1e-6 and float(b["vtest_p"]) > 0.5
    assert float(a["mean_angle_to_reference_deg"]) < 30
    assert float(b["mean_angle_to_reference_deg"]) > 150
    # 3D columns are filled for 3D vectors
    assert float(a["mean_dir_x"]) > 0.9 and float(b["mean_dir_x"]) < -0.9
    assert float(a["rayleigh3d_p"]) < 1e-6
    (cmp,) = _rows(out / "condition_comparison.csv")
    assert (cmp["condition_a"], cmp["condition_b"]) == ("A", "B")
    assert abs(abs(float(cmp["mean_difference_deg"])) - 180) < 15
    assert float(cmp["ww_p"]) < 1e-6
    assert float(cmp["perm_p"]) == pytest.approx(1 / 500)  # the smallest possible p
    images = _rows(out / "summary_per_image.csv")
    assert [r["condition"] for r in images] == ["A", "A", "B", "B"]
    assert all(r["voxel_size_um"] == "1 1 1" for r in images)
    assert [e.stage for e in events].count("analyse") == 4
    assert summary.cache_hits == 0


def test_resume_skips_finished_images(phantom_dir, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(4):
        (src / f"ph{i}_vectors.csv").write_bytes((phantom_dir / f"ph{i}_vectors.csv").read_bytes())
    out = tmp_path / "out"
    first, ev1 = _run([src], out, manifest=phantom_dir / "conditions.csv")
    assert not any(e.data.get("cached") for e in ev1 if e.stage == "analyse")
    second, ev2 = _run([src], out, manifest=phantom_dir / "conditions.csv")
    assert [e.data.get("cached") for e in ev2 if e.stage == "analyse"] == [True] * 4
    assert second.cache_hits == 4
    assert second.per_condition == first.per_condition
    # a changed CSV is recomputed, the others still come from the cache
    t = read_vectors(src / "ph1_vectors.csv")
    write_vectors(src / "ph1_vectors.csv", t.subset(np.arange(len(t) - 1)),
                  voxel_size=(1.0, 1.0, 1.0))
    third, ev3 = _run([src], out, manifest=phantom_dir / "conditions.csv")
    assert [e.data.get("cached") for e in ev3 if e.stage == "analyse"] == [True, False, True, True]
    assert third.per_image[1]["n"] == first.per_image[1]["n"] - 1
    # changed settings invalidate the cache
    fourth, _ = _run([src], out, manifest=phantom_dir / "conditions.csv", seed=3)
    assert fourth.cache_hits == 0
    assert json.loads((out / ".cache" / "ph0.json").read_text())["row"]["name"] == "ph0"


def test_cancel_between_images(phantom_dir, tmp_path):
    from cellpol_core.errors import Cancelled

    token = CancelToken()
    job = analyse([phantom_dir], outdir=tmp_path / "o", plots=False, n_bootstrap=10, cancel=token)
    next(job)
    token.cancel()
    with pytest.raises(Cancelled):
        next(job)


def _synthetic(path, azimuths_deg, *, ndim=3, voxel_size=None, vat=False, seed=0):
    rng = np.random.default_rng(seed)
    az = np.radians(np.asarray(azimuths_deg, float))
    n = len(az)
    start = np.column_stack([rng.uniform(2, 10, n), rng.uniform(20, 80, n), rng.uniform(20, 80, n)])
    if ndim == 2:
        start[:, 0] = 0
    d = np.column_stack([np.zeros(n), -np.sin(az), np.cos(az)]) * 6
    table = VectorTable(start, start + d, ndim=ndim)
    if vat:
        write_vat(path, table)
    else:
        write_vectors(path, table, voxel_size=voxel_size)
    return table


def test_per_image_reference_from_manifest(tmp_path):
    rng = np.random.default_rng(0)
    # image a points to 40°, image b to 220°; each manifest reference is its own direction
    _synthetic(tmp_path / "a_vectors.csv", 40 + rng.normal(0, 5, 30), ndim=2)
    _synthetic(tmp_path / "b_vectors.csv", 220 + rng.normal(0, 5, 30), ndim=2)
    m = tmp_path / "m.csv"
    m.write_text("image,condition,reference_deg\na,flow,40\nb,flow,220\n")
    summary, _ = _run([tmp_path / "a_vectors.csv", tmp_path / "b_vectors.csv"], tmp_path / "o",
                      manifest=m)
    (row,) = summary.per_condition
    # pooled relative angles cluster at 0° although the raw directions are opposite
    assert row["resultant_length"] > 0.95 and row["vtest_p"] < 1e-10
    assert row["reference_azimuth_deg"] == "per image"
    assert summary.unmatched == []
    assert row["mean_dir_x"] is None  # 2D: no 3D columns
    assert summary.per_image[1]["reference_azimuth_deg"] == pytest.approx(220)
    # pixels for 2D tables without µm columns
    assert summary.per_image[0]["voxel_size_um"] == "1 1 1"
    # manifest rows without a CSV are left out and reported
    m.write_text("image,condition,reference_deg\na,flow,40\nb,flow,220\nc,flow,\n")
    summary, _ = _run([tmp_path / "a_vectors.csv"], tmp_path / "o2", manifest=m)
    assert summary.unmatched == ["b", "c"] and summary.per_condition[0]["n_images"] == 1


def test_voxel_size_sources(tmp_path):
    t = _synthetic(tmp_path / "um.csv", [0, 90, 180], voxel_size=(0.27, 0.666, 0.5))
    assert voxel_size_from_table(read_vectors(tmp_path / "um.csv")) == \
        pytest.approx((0.27, 0.666, 0.5), rel=1e-4)
    assert voxel_size_from_table(t) is None  # no µm columns in memory
    _synthetic(tmp_path / "vat.csv", [0, 90, 180], vat=True)
    with pytest.raises(InputError, match="voxel-size"):
        _run([tmp_path / "vat.csv"], tmp_path / "o")
    s, _ = _run([tmp_path / "vat.csv"], tmp_path / "o", voxel_size=(2.0, 1.0, 1.0))
    assert s.per_image[0]["voxel_size_um"] == "1 1 2"  # X Y Z


def test_manifest_errors(tmp_path):
    m = tmp_path / "m.csv"
    m.write_text("image,group\na,x\n")
    with pytest.raises(InputError, match="condition"):
        read_manifest(m)
    m.write_text("image,condition\na,x\na.tif,y\n")
    with pytest.raises(InputError, match="twice"):
        read_manifest(m)
    m.write_text("image,condition,reference_deg\na,x,north\n")
    with pytest.raises(InputError, match="line 2"):
        read_manifest(m)
    m.write_text("image,condition,reference_x,reference_y,reference_z\na,x,0,0,0\n")
    with pytest.raises(InputError, match="zero"):
        read_manifest(m)
    m.write_text("image,condition\nother,x\n")
    _synthetic(tmp_path / "a_vectors.csv", [0, 10], ndim=2)
    with pytest.raises(InputError, match="not in the manifest: a"):
        _run([tmp_path / "a_vectors.csv"], tmp_path / "o", manifest=m)


def test_plots_are_written(tmp_path):
    from matplotlib.image import imread

    rng = np.random.default_rng(1)
    _synthetic(tmp_path / "c1_vectors.csv", np.degrees(rng.vonmises(0.5, 3, 40)), ndim=2)
    _synthetic(tmp_path / "c2_vectors.csv", np.degrees(rng.vonmises(2.5, 3, 40)), ndim=2)
    m = tmp_path / "m.csv"
    m.write_text("image,condition\nc1,ctrl\nc2,mut\n")
    out = tmp_path / "o"
    summary, _ = _run([tmp_path / "c1_vectors.csv", tmp_path / "c2_vectors.csv"], out,
                      manifest=m, plots=True)
    pngs = [p for p in summary.files if p.suffix == ".png"]
    assert out / "conditions_rose.png" in pngs
    assert out / "plots" / "condition_ctrl_scatter.png" in pngs
    assert out / "plots" / "c1_rose.png" in pngs
    img = imread(out / "conditions_rose.png")
    assert img.ndim == 3 and img.shape[1] > img.shape[0] > 100  # two roses side by side
    assert img[..., :3].std() > 0.05  # not blank
    assert len(np.unique(img[..., :3].reshape(-1, 3), axis=0)) > 20


def test_plot_formats(tmp_path):
    from cellpol_core.analysis import plots

    a = np.degrees(np.random.default_rng(2).vonmises(0, 2, 50))
    svg = plots.save_figure(plots.rose_planes_figure({"xy": a}), tmp_path / "r.svg")
    pdf = plots.save_figure(plots.scatter_figure(a), tmp_path / "s.pdf")
    assert b"<svg" in svg.read_bytes()[:2000]
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 1000
    with pytest.raises(InputError, match="format"):
        plots.save_figure(plots.scatter_figure(a), tmp_path / "s.jpg")


def test_stats_cli(phantom_dir, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["stats", str(phantom_dir), "--manifest", str(phantom_dir / "conditions.csv"),
               "--reference-deg", "0", "--bootstrap", "100", "--permutations", "199",
               "--no-plots", "-o", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert text.startswith("| condition |")
    assert "| A | 2 |" in text and "| B | 2 |" in text and "| A | B |" in text
    assert (out / "summary_per_condition.csv").exists()
    names = [r["name"] for r in _rows(out / "summary_per_image.csv")]
    assert names == ["ph0", "ph1", "ph2", "ph3"]


def test_stats_cli_plane_and_formats(phantom_dir, tmp_path, capsys):
    out = tmp_path / "o"
    rc = main(["stats", str(phantom_dir / "ph0_vectors.csv"), "--plane", "xz",
               "--reference-vector", "1", "0", "0", "--bootstrap", "0", "--format", "svg",
               "-o", str(out)])
    assert rc == 0
    (row,) = _rows(out / "summary_per_condition.csv")
    assert row["plane"] == "xz" and row["name"] == "all"
    # vectors near +x with small elevations: xz mean near 0° relative to the +x reference
    assert min(float(row["mean_azimuth_deg"]), 360 - float(row["mean_azimuth_deg"])) < 15
    assert row["mean_ci_low_deg"] == ""  # no bootstrap
    assert (out / "conditions_rose.svg").stat().st_size > 1000
    assert not (out / "condition_comparison.csv").exists()


def test_stats_cli_errors(tmp_path, capsys):
    assert main(["stats", str(tmp_path / "missing.csv"), "-o", str(tmp_path / "o")]) == 2
    assert "missing.csv: file not found" in capsys.readouterr().err
    _synthetic(tmp_path / "v.csv", [0, 45, 90], vat=True)
    assert main(["stats", str(tmp_path / "v.csv"), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "--voxel-size" in err and err.count("\n") == 1
    _synthetic(tmp_path / "d2.csv", [0, 45, 90], ndim=2)
    assert main(["stats", str(tmp_path / "d2.csv"), "--plane", "yz", "-o",
                 str(tmp_path / "o")]) == 2
    assert "no yz plane" in capsys.readouterr().err
    assert main(["stats", str(tmp_path / "d2.csv"), "--manifest", str(tmp_path / "nope.csv"),
                 "-o", str(tmp_path / "o")]) == 2
    assert "manifest not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: the two references exclude each other
        main(["stats", str(tmp_path / "d2.csv"), "--reference-deg", "1",
              "--reference-vector", "1", "0", "0", "-o", str(tmp_path / "o")])


def test_predict_with_manifest(tmp_path, capsys):
    from cellpol_core.jobs import run_job as run
    from cellpol_core.synthetic.phantom import write_phantom_set

    imgs = tmp_path / "imgs"
    run(write_phantom_set(imgs, n_images=2, shape=(192, 192), ndim=2, seed=3,
                          mean_direction=90, concentration=10))
    for f in imgs.glob("*_vectors.csv"):
        f.unlink()  # keep the images only
    for f in imgs.glob("*_masks.ome.tif"):
        f.unlink()
    m = tmp_path / "m.csv"
    m.write_text("image,condition\nphantom_000,x\nphantom_001.ome.tif,y\n")
    out = tmp_path / "pred"
    rc = main(["predict", str(imgs), "--method", "otsu", "--manifest", str(m), "-o", str(out)])
    assert rc == 0, capsys.readouterr().err
    assert "| x | 1 |" in capsys.readouterr().out
    assert [r["condition"] for r in _rows(out / "summary_per_image.csv")] == ["x", "y"]
    assert (out / "condition_comparison.csv").exists()
    # a manifest that misses an image fails before predicting
    m.write_text("image,condition\nphantom_000,x\n")
    assert main(["predict", str(imgs), "--method", "otsu", "--manifest", str(m), "-o",
                 str(tmp_path / "p2")]) == 2
    assert "phantom_001" in capsys.readouterr().err
    assert not (tmp_path / "p2").exists()


# ----------------------------------------------------------------------------- new options

def _axial_csv(path, mean_axis, n, *, seed, extra=None):
    """2D vectors along an axis (half of them flipped), with optional extra columns."""
    rng = np.random.default_rng(seed)
    az = mean_axis + np.degrees(rng.vonmises(0, 6, n)) / 2 + 180 * rng.integers(0, 2, n)
    table = _synthetic(path, az, ndim=2, seed=seed)
    if extra is not None:
        table.extra = {k: f(az) for k, f in extra.items()}
        write_vectors(path, table)
    return az


def test_mean_azimuth_is_absolute_in_tables_and_report(tmp_path, capsys):
    rng = np.random.default_rng(11)
    az = 136.6 + rng.normal(0, 8, 50)
    _synthetic(tmp_path / "cells_vectors.csv", az, ndim=2)
    out = tmp_path / "o"
    assert main(["stats", str(tmp_path / "cells_vectors.csv"), "--reference-deg", "90",
                 "--bootstrap", "100", "--no-plots", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    (img,) = _rows(out / "summary_per_image.csv")
    (cond,) = _rows(out / "summary_per_condition.csv")
    for row in (img, cond):
        assert float(row["mean_azimuth_deg"]) == pytest.approx(136.6, abs=3)
        assert float(row["mean_azimuth_to_reference_deg"]) == pytest.approx(
            float(row["mean_azimuth_deg"]) - 90, abs=1e-3)
        lo, hi = float(row["mean_ci_low_deg"]), float(row["mean_ci_high_deg"])
        assert lo < float(row["mean_azimuth_deg"]) < hi  # the interval of the absolute mean
    assert float(img["reference_azimuth_deg"]) == 90
    # the report prints both: absolute mean, then the angle to the reference
    line = next(ln for ln in text.splitlines() if ln.startswith("| all |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert float(cells[3]) == pytest.approx(float(cond["mean_azimuth_deg"]), abs=0.06)
    assert float(cells[5]) == pytest.approx(float(cond["mean_azimuth_to_reference_deg"]), abs=0.06)


def test_axial_control_covariate_and_palette(tmp_path, capsys):
    # condition ctrl along the 30° axis, a along 30°, b along 120°; the covariate grows with
    # the doubled angle's cosine, i.e. it depends on the axis only
    def dist(az):
        return 10 + 4 * np.cos(np.radians(2 * (az - 30))) + np.random.default_rng(0).normal(
            0, 0.5, len(az))

    for name, axis, seed in (("c1", 30, 1), ("c2", 30, 2), ("a1", 30, 3), ("b1", 120, 4)):
        _axial_csv(tmp_path / f"{name}_vectors.csv", axis, 60, seed=seed,
                   extra={"dist_um": dist})
    m = tmp_path / "m.csv"
    m.write_text("image,condition\nc1,ctrl\nc2,ctrl\na1,a\nb1,b\n")
    out = tmp_path / "o"
    rc = main(["stats", str(tmp_path), "--manifest", str(m), "--axial", "--control", "ctrl",
               "--covariate", "dist_um", "--palette", "okabe-ito", "--bootstrap", "100",
               "--permutations", "199", "-o", str(out)])
    assert rc == 0, capsys.readouterr().err
    text = capsys.readouterr().out
    assert "mean axis xy (°)" in text and "covariate r" in text
    cond = {r["name"]: r for r in _rows(out / "summary_per_condition.csv")}
    assert all(r["mode"] == "axial" for r in cond.values())
    assert abs(float(cond["ctrl"]["mean_azimuth_deg"]) - 30) < 8
    assert abs(float(cond["b"]["mean_azimuth_deg"]) - 120) < 8
    assert float(cond["ctrl"]["resultant_length"]) > 0.8  # as directions R would be near 0
    assert float(cond["ctrl"]["rao_p"]) < 0.01 and float(cond["ctrl"]["watson_p"]) < 0.01
    assert cond["ctrl"]["mean_dir_x"] == ""  # no 3D statistics of axes
    assert cond["ctrl"]["covariate"] == "dist_um"
    assert cond["ctrl"]["correlation_method"] == "mardia"
    assert float(cond["ctrl"]["correlation_r"]) > 0.6 and float(cond["ctrl"]["correlation_p"]) < 1e-6
    for pct in (50, 90, 95):
        lo, hi = float(cond["a"][f"mean_ci{pct}_low_deg"]), float(cond["a"][f"mean_ci{pct}_high_deg"])
        assert 0 <= lo < 180 and 0 <= hi < 180
    cmp = _rows(out / "condition_comparison.csv")
    assert [(r["condition_a"], r["condition_b"]) for r in cmp] == [("ctrl", "a"), ("ctrl", "b")]
    assert float(cmp[0]["perm_p"]) > 0.05 and float(cmp[1]["perm_p"]) < 0.01
    assert abs(abs(float(cmp[1]["mean_difference_deg"])) - 90) < 10
    from matplotlib.image import imread

    img = imread(out / "cdf_vs_ctrl.png")
    assert img.shape[1] > 1.6 * img.shape[0]  # two panels side by side: a vs ctrl, b vs ctrl
    assert len(np.unique(img[..., :3].reshape(-1, 3), axis=0)) > 20
    # Okabe–Ito's blue bars (drawn at alpha 0.9 on white) in the hemiroses
    rose = imread(out / "plots" / "condition_ctrl_rose.png")[..., :3]
    blue = 0.9 * np.array([0x00, 0x72, 0xB2]) / 255 + 0.1
    assert (np.abs(rose - blue).max(axis=-1) < 0.08).sum() > 100


def test_control_and_covariate_errors(tmp_path, capsys):
    _synthetic(tmp_path / "a_vectors.csv", [0, 10, 20], ndim=2)
    m = tmp_path / "m.csv"
    m.write_text("image,condition\na,x\n")
    assert main(["stats", str(tmp_path / "a_vectors.csv"), "--manifest", str(m), "--control",
                 "wt", "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "control condition 'wt' is not a condition; conditions: x" in err
    assert main(["stats", str(tmp_path / "a_vectors.csv"), "--covariate", "vessel_um", "-o",
                 str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "a_vectors.csv" in err and "no column 'vessel_um'" in err and err.count("\n") == 1


def test_plots_come_in_their_own_pass(tmp_path):
    rng = np.random.default_rng(5)
    for i in range(2):
        _synthetic(tmp_path / f"p{i}_vectors.csv", np.degrees(rng.vonmises(0, 2, 20)), ndim=2)
    m = tmp_path / "m.csv"
    m.write_text("image,condition\np0,x\np1,y\n")
    summary, events = _run([tmp_path], tmp_path / "o", manifest=m, plots=True,
                           control="x", palette="tol")
    stages = [e.stage for e in events]
    first_plot = stages.index("plot")
    assert set(stages[first_plot:]) == {"plot"}  # every figure after every statistic
    assert {"analyse", "summary", "compare"} <= set(stages[:first_plot])
    assert summary.files[:3] == [tmp_path / "o" / n for n in (
        "summary_per_image.csv", "summary_per_condition.csv", "condition_comparison.csv")]
    assert tmp_path / "o" / "cdf_vs_x.png" in summary.files
    _, events = _run([tmp_path], tmp_path / "o2", manifest=m)
    assert "plot" not in {e.stage for e in events}


def test_palettes_hemirose_and_cdf():
    from matplotlib.colors import to_rgba

    from cellpol_core.analysis import plots

    a = [10.0, 20.0, 200.0, 350.0]
    fig = plots.rose_planes_figure({"xy": a}, palette="tol")
    bar = next(p for p in fig.axes[0].patches if p.get_height() > 0)
    assert bar.get_facecolor() == pytest.approx(to_rgba("#4477AA", 0.9))
    half = plots.rose_planes_figure({"xy": a}, axial=True)
    assert half.axes[0].get_thetamax() == pytest.approx(180.0)
    # axes 10°, 20°, 200° = 20°, 350° = 170°: 18 sectors of 10° over 0-180°
    assert sorted(p.get_height() for p in half.axes[0].patches if p.get_height() > 0) == \
        pytest.approx([0.25, 0.25, 0.5])
    with pytest.raises(InputError, match="palette"):
        plots.rose_planes_figure({"xy": a}, palette="rainbow")
    # CDFs: relative axes run over (-90, 90], directions over [0, 360)
    x, y = plots.empirical_cdf([10.0, 170.0, 95.0], relative=True, axial=True)
    np.testing.assert_allclose(x, [-85.0, -10.0, 10.0])
    np.testing.assert_allclose(y, [1 / 3, 2 / 3, 1.0])
    x, _ = plots.empirical_cdf([-10.0, 370.0], relative=False)
    np.testing.assert_allclose(x, [10.0, 350.0])
    with pytest.raises(InputError, match="control"):
        plots.cdf_figure({"a": a}, control="b")
