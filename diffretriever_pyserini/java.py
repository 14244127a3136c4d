"""Deprecated: moved to :mod:`diffretriever_pyserini.pyserini_bridge.java`; this path works for one more release."""

import warnings

from diffretriever_pyserini.pyserini_bridge import java as _moved

warnings.warn("diffretriever_pyserini.java is deprecated; import "
              "diffretriever_pyserini.pyserini_bridge.java", DeprecationWarning, stacklevel=2)
globals().update({k: v for k, v in vars(_moved).items() if not k.startswith("__")})
