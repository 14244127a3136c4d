"""Deprecated: moved to :mod:`diffretriever_pyserini.pyserini_bridge.lucene`; this path works for one more release."""

import warnings

from diffretriever_pyserini.pyserini_bridge import lucene as _moved

warnings.warn("diffretriever_pyserini.indexing is deprecated; import "
              "diffretriever_pyserini.pyserini_bridge.lucene", DeprecationWarning, stacklevel=2)
globals().update({k: v for k, v in vars(_moved).items() if not k.startswith("__")})
