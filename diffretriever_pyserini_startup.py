"""The module the installed ``diffretriever_pyserini_startup.pth`` imports when Python starts.

It only puts a tiny finder on ``sys.meta_path`` that waits for the first ``import pyserini``; then (and only then)
it runs :func:`diffretriever_pyserini.pyserini_bridge.hook.startup`: Java 21 for Pyserini, the offline
prebuilt-index catalogue and ``--encoder diffretriever:...`` in Pyserini's own commands. Nothing of the package is
imported at start-up, so a source checkout on ``sys.path`` (tests, ``PYTHONPATH``) is the copy that runs. Never
raises: a broken or removed package must not break every Python start.
"""

import importlib.abc
import sys


class _FirstPyseriniImport(importlib.abc.MetaPathFinder):
    """Runs the plugin's start-up hook right before ``pyserini`` is first imported, then steps aside."""

    def find_spec(self, fullname, path, target=None):
        if fullname == "pyserini":
            startup_now()
        return None  # the regular finders load Pyserini


def startup_now() -> None:
    """Run the plugin's start-up hook (once); never raises."""
    for finder in [f for f in sys.meta_path if type(f).__name__ == _FirstPyseriniImport.__name__]:
        sys.meta_path.remove(finder)
    try:
        from diffretriever_pyserini.pyserini_bridge.hook import startup as run
    except Exception:
        return
    run()


def startup() -> None:
    """The .pth entry point: wait for the first ``import pyserini`` (or run now if it is already imported)."""
    if "pyserini" in sys.modules:
        startup_now()
    elif not any(type(f).__name__ == _FirstPyseriniImport.__name__ for f in sys.meta_path):
        sys.meta_path.insert(0, _FirstPyseriniImport())
