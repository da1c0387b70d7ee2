"""File names: the image suffixes CellPol reads, image and vector-table stems, input expansion.

Every part of CellPol that turns a file name into an image name, or a folder
into the images it holds, uses these helpers, so the CLI, the app and batch
analysis agree on which files match.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError

#: Suffixes of the image files CellPol reads, longest first (so ``.ome.tif`` wins over ``.tif``).
IMAGE_SUFFIXES = (".ome.tiff", ".ome.tif", ".ome.zarr", ".tiff", ".tif", ".zarr", ".lsm")

#: The suffix of a vector table written for an image: ``<stem>_vectors.csv``.
VECTORS_SUFFIX = "_vectors.csv"


def is_image_path(path) -> bool:
    """True when the file name ends with one of :data:`IMAGE_SUFFIXES` (any case)."""
    return str(path).lower().endswith(IMAGE_SUFFIXES)


def image_stem(path) -> str:
    """The image's name: its file name without the image suffix.

    Examples
    --------
    >>> image_stem("a/b.ome.tif"), image_stem("c.TIF"), image_stem("d.ome.czi")
    ('b', 'c', 'd')
    """
    name = Path(str(path).strip()).name
    for suffix in IMAGE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    stem = Path(name).stem
    return stem[:-4] if stem.lower().endswith(".ome") else stem


def vectors_stem(path) -> str:
    """The image name of a vector CSV: ``a/img_vectors.csv`` and ``a/img.csv`` -> ``img``.

    A CSV named after the whole image file (``img.ome.tif_vectors.csv``) gives
    ``img`` too.
    """
    name = Path(str(path).strip()).name
    if name.lower().endswith(".csv"):
        name = name[:-4]
    if name.lower().endswith("_vectors"):
        name = name[: -len("_vectors")]
    for suffix in IMAGE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def vectors_path_for(image_path, outdir) -> Path:
    """Where the vector table of ``image_path`` goes in ``outdir``: ``<stem>_vectors.csv``."""
    return Path(outdir) / f"{image_stem(image_path)}{VECTORS_SUFFIX}"


def expand_inputs(paths, *, suffixes=IMAGE_SUFFIXES) -> list:
    """Files as given; folders expand into the files they hold with these suffixes, sorted by name."""
    out = []
    for p in map(Path, paths):
        if p.is_dir() and not p.name.lower().endswith(".zarr"):  # an OME-Zarr image is a folder
            out.extend(sorted(f for f in p.iterdir() if f.name.lower().endswith(suffixes)
                              and (f.is_file() or f.name.lower().endswith(".zarr"))))
        else:
            out.append(p)
    return out


def match_vectors(images, vectors) -> list:
    """Pair image files with vector CSVs: one-to-one by order, or by name in folders.

    A folder's CSV matches the image of the same stem as ``<stem>.csv`` or
    ``<stem>_vectors.csv``.

    Raises
    ------
    InputError
        When an image has no CSV of its name.
    """
    csvs = expand_inputs(vectors, suffixes=(".csv",))
    if len(csvs) == len(images) and not any(Path(v).is_dir() for v in vectors):
        return csvs
    by_stem = {vectors_stem(c): c for c in csvs}
    out = []
    for img in images:
        stem = image_stem(img)
        if stem not in by_stem:
            raise InputError(f"no vector CSV for this image (looked for {stem}.csv or "
                             f"{stem}_vectors.csv)", img)
        out.append(by_stem[stem])
    return out


def vectors_paths_for(image_paths, outdir) -> tuple:
    """The vector table of each image in ``outdir``, keeping images of the same name apart.

    The first image named ``x`` writes ``x_vectors.csv``; another image of that
    name (``d1/x.ome.tif`` and ``d2/x.tif``) writes ``x-2_vectors.csv``, and so
    on, never taking the name of another input. Names are compared ignoring
    case, as some file systems do.

    Returns
    -------
    outputs : list of Path
        One CSV path per image, in order.
    renamed : list of (Path, Path)
        (image, CSV) for each image whose CSV got a suffix, to tell the user.
    """
    stems = [image_stem(p) for p in image_paths]
    taken = {s.casefold() for s in stems}
    used, outputs, renamed = set(), [], []
    for path, stem in zip(image_paths, stems):
        name, k = stem, 1
        while name.casefold() in used or (k > 1 and name.casefold() in taken):
            k += 1
            name = f"{stem}-{k}"
        used.add(name.casefold())
        out = Path(outdir) / f"{name}{VECTORS_SUFFIX}"
        outputs.append(out)
        if name != stem:
            renamed.append((Path(path), out))
    return outputs, renamed
