"""CellPol napari plugin (npe2)."""
