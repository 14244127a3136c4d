"""What runs when Python starts (the installed ``diffretriever_pyserini_startup.pth``): Java for Pyserini, and an
import hook through which the plugin meets Pyserini's own, unmodified modules.

Pyserini has no plugin hook. :class:`PyseriniPluginFinder` (a ``sys.meta_path`` finder) wraps the loaders of a few
Pyserini modules:

- ``pyserini.prebuilt_index_info`` runs with an offline-tolerant ``urlopen`` (:mod:`.offline`), so Pyserini 2.x
  imports on a machine without network;
- right after ``pyserini.encode``, ``pyserini.search.lucene._impact_searcher`` and Pyserini's FAISS representation
  writer have run, :func:`diffretriever_pyserini.pyserini_bridge.plugin.register` puts ``--encoder diffretriever:...``
  into them.

Nothing is imported until Pyserini itself is; Pyserini's files are never edited. ``DIFFRETRIEVER_NO_PYSERINI_HOOK=1``
switches the finder off, ``DIFFRETRIEVER_NO_JAVA_HOOK=1`` the Java set-up. Standard library only at import.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys

from diffretriever_pyserini.pyserini_bridge.java import ensure_java, ensure_java_at_startup
from diffretriever_pyserini.pyserini_bridge.offline import MODULE as OFFLINE_MODULE

# where the plugin registers; the FAISS writer lives in pyserini.encode (1.x) or pyserini.encode.optional._faiss (2.x)
PLUGIN_MODULES = ("pyserini.encode", "pyserini.search.lucene._impact_searcher", "pyserini.encode.optional._faiss")
WRAPPED_MODULES = (*PLUGIN_MODULES, OFFLINE_MODULE)


class _PatchingLoader(importlib.abc.Loader):
    """Runs the real loader (the catalogue module with an offline-tolerant ``urlopen``), then registers the plugin."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        if module.__name__ == OFFLINE_MODULE and hasattr(self.loader, "get_code"):
            from diffretriever_pyserini.pyserini_bridge.offline import exec_prebuilt_index_info

            exec_prebuilt_index_info(module, self.loader.get_code(module.__name__))
            return
        self.loader.exec_module(module)
        if module.__name__ in PLUGIN_MODULES:
            from diffretriever_pyserini.pyserini_bridge.plugin import register

            register(module)


class PyseriniPluginFinder(importlib.abc.MetaPathFinder):
    """Wraps the loaders of :data:`WRAPPED_MODULES`; every other import goes on untouched."""

    def find_spec(self, fullname, path, target=None):
        if fullname not in WRAPPED_MODULES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _PatchingLoader(spec.loader)
        return spec


def install_pyserini_hook() -> None:
    """Put the finder first on ``sys.meta_path`` (once); no-op when switched off. Pyserini modules imported before
    this call are registered now."""
    if os.environ.get("DIFFRETRIEVER_NO_PYSERINI_HOOK"):
        return
    if not any(type(f).__name__ == PyseriniPluginFinder.__name__ for f in sys.meta_path):
        sys.meta_path.insert(0, PyseriniPluginFinder())
    loaded = [sys.modules[name] for name in PLUGIN_MODULES if name in sys.modules]
    if loaded:
        from diffretriever_pyserini.pyserini_bridge.plugin import register

        for module in loaded:
            register(module)


def prepare_pyserini() -> None:
    """Before this process imports Pyserini: Java >= 21 (raises naming the fix when there is none) and the import
    hook (offline catalogue, our encoders), also where the start-up .pth file is not installed (editable installs)."""
    ensure_java()
    install_pyserini_hook()


def startup() -> None:
    """The .pth entry point: Java set-up and the Pyserini import hook; never raises."""
    ensure_java_at_startup()
    try:
        install_pyserini_hook()
    except Exception:
        pass
