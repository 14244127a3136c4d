"""Index types read by search: single-vector FAISS types (``dense``), the exact K-vector store and FAISS row
candidates (``multivector``), the compressed K-vector store (``compressed``). The Lucene impact index is built
through Pyserini in :mod:`diffretriever_pyserini.pyserini_bridge.lucene`."""
