"""CellPol desktop app (installed as ``cellpol_app``)."""
