"""The old module names that the README's Python API once used still import."""

import importlib

import pytest

from cellpol_core._compat import ALIASES


@pytest.mark.parametrize("old, new", sorted(ALIASES.items()))
def test_old_module_names_alias_the_new_modules(old, new):
    assert importlib.import_module(old) is importlib.import_module(new)
    # the module keeps its own identity, so its relative imports still work quietly
    assert importlib.import_module(new).__spec__.name == new


def test_other_old_names_are_gone():
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("cellpol_core.synth")
