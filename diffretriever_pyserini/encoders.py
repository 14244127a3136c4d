"""The plugin's public encoders: Pyserini ``DocumentEncoder`` / ``QueryEncoder`` subclasses running the K-mask
readout (defined in :mod:`diffretriever_pyserini.pyserini_bridge.encoders`), and :func:`build_reader`, which builds
a reader without Pyserini (:mod:`diffretriever_pyserini.readout.readers`)."""

from diffretriever_pyserini.pyserini_bridge.encoders import (DiffRetrieverDocumentEncoder, DiffRetrieverQueryEncoder,
                                                             SparseQueryView)
from diffretriever_pyserini.readout.readers import BACKBONE_OPTIONS, build_reader, readout_config

__all__ = ["BACKBONE_OPTIONS", "DiffRetrieverDocumentEncoder", "DiffRetrieverQueryEncoder", "SparseQueryView",
           "build_reader", "readout_config"]
