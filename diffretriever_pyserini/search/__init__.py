"""Search: the scoring modes (``modes``: one table), the MaxSim search methods (``maxsim``: one registry), run files
(``runs``), exact scoring functions (``scoring``). The Pyserini searchers themselves are in
:mod:`diffretriever_pyserini.pyserini_bridge.search`; ``python -m diffretriever_pyserini.search.maxsim`` searches a
K-vector index from the command line.

Until the next release this package also answers the names of the old ``diffretriever_pyserini.search`` module
(now :mod:`diffretriever_pyserini.pyserini_bridge.search`), with a DeprecationWarning.
"""


def __getattr__(name: str):
    import importlib
    import warnings

    if name.startswith("__"):
        raise AttributeError(name)
    bridge = importlib.import_module("diffretriever_pyserini.pyserini_bridge.search")
    if not hasattr(bridge, name):
        raise AttributeError(f"module 'diffretriever_pyserini.search' has no attribute {name!r}")
    warnings.warn(f"diffretriever_pyserini.search.{name} is deprecated; import it from "
                  "diffretriever_pyserini.pyserini_bridge.search", DeprecationWarning, stacklevel=2)
    return getattr(bridge, name)
