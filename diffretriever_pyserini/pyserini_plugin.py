"""Deprecated: moved to :mod:`diffretriever_pyserini.pyserini_bridge.plugin`; this path works for one more release."""

import warnings

from diffretriever_pyserini.pyserini_bridge import plugin as _moved

warnings.warn("diffretriever_pyserini.pyserini_plugin is deprecated; import "
              "diffretriever_pyserini.pyserini_bridge.plugin", DeprecationWarning, stacklevel=2)
globals().update({k: v for k, v in vars(_moved).items() if not k.startswith("__")})
