"""Deprecated: moved to :mod:`diffretriever_pyserini.pyserini_bridge.search`; this path works for one more release."""

import warnings

from diffretriever_pyserini.pyserini_bridge import search as _moved

warnings.warn("diffretriever_pyserini.search is deprecated; import "
              "diffretriever_pyserini.pyserini_bridge.search", DeprecationWarning, stacklevel=2)
globals().update({k: v for k, v in vars(_moved).items() if not k.startswith("__")})
