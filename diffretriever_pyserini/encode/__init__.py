"""Corpus encoding: documents -> sparse JsonVectorCollection + FAISS flat index + K vectors (``corpus``), split into
resumable shards run by local processes or Ray (``sharding``), written atomically (``writers``)."""
