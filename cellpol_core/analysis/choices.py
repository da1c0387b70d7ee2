"""Choices of the analysis options, importable without SciPy or matplotlib.

The CLI builds its parser from these, so ``cellpol --help`` stays fast.

Figure colours: the original palette and two colour-blind-safe ones. Each palette names the colour of rose bars and scatter points (``bar``), of
the mean resultant vector (``mean``) and a cycle for one line per condition
(``cycle``). ``okabe-ito`` is Okabe & Ito's (2008) palette for colour-blind
readers; ``tol`` is Paul Tol's "bright" qualitative scheme (2021).
"""

from __future__ import annotations

PALETTES = {
    "classic": {"bar": "#4878a8", "mean": "#c0392b",
                "cycle": ("#4878a8", "#c0392b", "#2e8b57", "#e08a1e", "#7b4fa0", "#5a5a5a",
                          "#c45ca2", "#1f9aa8")},
    "okabe-ito": {"bar": "#0072B2", "mean": "#D55E00",
                  "cycle": ("#0072B2", "#D55E00", "#009E73", "#E69F00", "#CC79A7", "#56B4E9",
                            "#F0E442", "#000000")},
    "tol": {"bar": "#4477AA", "mean": "#EE6677",
            "cycle": ("#4477AA", "#EE6677", "#228833", "#CCBB44", "#66CCEE", "#AA3377",
                      "#BBBBBB")},
}
DEFAULT_PALETTE = "classic"
COVARIATE_KINDS = ("linear", "circular")
"""Kinds of per-cell covariate: circular-linear or circular-circular correlation."""
CIRCULAR_METHODS = ("js", "fisher-lee")
"""Circular-circular correlations: Jammalamadaka-SenGupta, Fisher-Lee."""


def palette_colours(name: str) -> dict:
    """The colours of palette ``name`` (see :data:`PALETTES`)."""
    from ..errors import InputError

    if name not in PALETTES:
        raise InputError(f"unknown palette {name!r}; choose " + ", ".join(PALETTES))
    return PALETTES[name]
