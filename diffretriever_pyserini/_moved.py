"""Old module paths that keep working for one release, each with a DeprecationWarning naming the new one.

The package was flat; its modules now live in stage packages (see the README's architecture section). Importing an
old path (``import diffretriever_pyserini.encoding``, ``from diffretriever_pyserini.runs import write_run``) gives the
module at its new path, so patches and ``isinstance`` checks see the same objects. A path whose module was split
names every module it became; its old name then gives a module holding all of their public names.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings

PACKAGE = "diffretriever_pyserini"

MOVED: dict[str, tuple[str, ...]] = {
    "lexical": ("readout.lexical",),
    "representation": ("readout.representation", "readout.kmask"),
    "readers": ("readout.readers",),
    "finetuned": ("readout.finetuned",),
    "limits": ("readout.limits",),
    "encoding": ("encode.corpus",),
    "sharding": ("encode.sharding",),
    "writers": ("encode.writers",),
    "dense_index": ("index.dense",),
    "multivector": ("index.multivector",),
    "compressed": ("index.compressed",),
    "maxsim": ("search.maxsim",),
    "modes": ("search.modes",),
    "runs": ("search.runs",),
    "scoring": ("search.scoring",),
    "evaluation": ("evaluate.metrics",),
    "report": ("evaluate.report",),
    "paper": ("evaluate.paper",),
    "anserini": ("regressions.anserini",),
    "slices": ("datasets.slices",),
    "backbones.tiny": ("testing.tiny",),
    "indexing": ("pyserini_bridge.lucene",),
    "java": ("pyserini_bridge.java",),
    "pyserini_plugin": ("pyserini_bridge.plugin",),
}
"""Old path (under the package) -> the module(s) it moved to, in the release that moved it (0.2)."""


def new_paths(old: str) -> tuple[str, ...]:
    """``diffretriever_pyserini.<old>`` -> the full names of the modules it moved to (KeyError if it did not move)."""
    return tuple(f"{PACKAGE}.{target}" for target in MOVED[old.removeprefix(PACKAGE + ".")])


class _Alias(importlib.abc.Loader):
    def __init__(self, targets: tuple[str, ...]):
        self.targets = targets

    def create_module(self, spec):
        warnings.warn(f"{spec.name} is deprecated and will be removed in the next release; import "
                      f"{' and '.join(self.targets)}", DeprecationWarning, stacklevel=3)
        modules = [importlib.import_module(t) for t in self.targets]
        if len(modules) == 1:
            self.spec = modules[0].__spec__  # the import system writes the old spec over it; exec_module restores
            return modules[0]
        merged = types.ModuleType(spec.name, f"Deprecated: the names of {', '.join(self.targets)}.")
        for module in modules:
            merged.__dict__.update({k: v for k, v in vars(module).items() if not k.startswith("__")})
        return merged

    def exec_module(self, module):
        """Nothing to run (the module was imported at its new path); it keeps its own spec."""
        if getattr(self, "spec", None) is not None:
            module.__spec__ = self.spec


class MovedModules(importlib.abc.MetaPathFinder):
    """Finds the old paths of :data:`MOVED` (and nothing else)."""

    def find_spec(self, fullname, path=None, target=None):
        if not fullname.startswith(PACKAGE + ".") or fullname.removeprefix(PACKAGE + ".") not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, _Alias(new_paths(fullname)))


def install() -> None:
    """Put the finder on ``sys.meta_path`` once (called by the package's ``__init__``)."""
    if not any(isinstance(f, MovedModules) for f in sys.meta_path):
        sys.meta_path.append(MovedModules())
