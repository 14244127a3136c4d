"""The K-mask readout: a prompt with K masks, one bidirectional pass, K dense + K sparse vectors per text.

``representation`` (pure tensor functions, shapes in docstrings), ``kmask`` (``ReadoutConfig``, ``KMaskReader``),
``lexical`` (which decoded tokens count as terms), ``readers`` (``build_reader``: a reader from a model name or folder),
``finetuned`` (fine-tuned folders and their ``retriever_config.json``), ``limits`` (bounds on K and steps).
"""
