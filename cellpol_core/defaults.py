"""Defaults shared by the engine, the CLI and the app, each written once.

Plain constants with no imports, so that every layer (``io`` up to ``cli``
and the desktop app) can use them. The equations behind them are in
``docs/method.md``.
"""

#: Longest start-end pair, in µm, of the nucleus-golgi data (d_max, docs/method.md §5).
PAIR_DISTANCE_UM = 14.0
#: Longest start-end pair of the 2D cytoplasm-nucleus data, in pixels.
PAIR_DISTANCE_2D_PX = 40.0

#: Heatmap peak thresholds tau (start, end) of an untuned model.
PEAK_TAU = (0.5, 0.5)
#: Smallest distance d_min between two peaks of one structure (start, end), µm.
PEAK_D_MIN_UM = (4.0, 2.0)
#: Embedding margin Delta: the push loss's margin and the largest embedding
#: difference of a decoded pair.
EMBED_MARGIN = 2.0
#: Test-time flips: the network's maps are averaged over this many mirrored
#: copies of each tile (1 = none; 8 mirrors z too, 3D only). Files without
#: the key decode with 1, as they were tuned.
FLIP_CHOICES = (1, 2, 4, 8)

#: Border exclusion of the evaluation, µm (docs/method.md §6).
BORDER_UM = 7.0
#: Evaluation level whose vector F1 is reported (self-test, app) and maximised by tuning.
EVAL_LEVEL = 5

#: Smallest start and end components of the Otsu baseline, µm³ (µm² in 2D).
OTSU_MIN_SIZE_UM = (20.0, 2.0)

#: Where a network runs: "auto" is CUDA when present, else the CPU.
DEVICES = ("auto", "cpu", "cuda")
DEFAULT_DEVICE = "auto"
#: Network arithmetic: "auto" is bf16 on CUDA and on CPUs with native bf16
#: (AMX, AVX-512 BF16), else fp32 (cellpol_core.detection.precision).
PRECISIONS = ("auto", "fp32", "bf16")
DEFAULT_PRECISION = "auto"

__all__ = ["PAIR_DISTANCE_UM", "PAIR_DISTANCE_2D_PX", "PEAK_TAU", "PEAK_D_MIN_UM", "EMBED_MARGIN",
           "FLIP_CHOICES",
           "BORDER_UM", "EVAL_LEVEL", "OTSU_MIN_SIZE_UM", "DEVICES", "DEFAULT_DEVICE"]
