"""Old module paths that users' scripts import, kept working after the engine was split into subpackages.

Until version 0.1 the engine was one flat package, and the README's Python API
example imported ``cellpol_core.image``, ``cellpol_core.model`` and
``cellpol_core.infer``. Those three names (and only those) still import, as
aliases of the modules that now hold the code; see the README's "Python API".
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

#: Old module name -> the module that holds its code now.
ALIASES = {
    "cellpol_core.image": "cellpol_core.io.image",
    "cellpol_core.model": "cellpol_core.detection.model",
    "cellpol_core.infer": "cellpol_core.detection.infer",
}


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target):
        self.target = target

    def create_module(self, spec):
        module = importlib.import_module(self.target)
        self._spec = module.__spec__
        return module

    def exec_module(self, module):
        # The import system stamped the alias's spec on the shared module; put its own
        # back, or its later relative imports would resolve against the alias's package.
        module.__spec__ = self._spec


class _AliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname not in ALIASES:
            return None
        return importlib.util.spec_from_loader(fullname, _AliasLoader(ALIASES[fullname]))


def install() -> None:
    """Make the old module names importable (idempotent)."""
    if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
        sys.meta_path.append(_AliasFinder())
