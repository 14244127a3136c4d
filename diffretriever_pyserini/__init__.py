"""DiffRetriever for Pyserini: K-mask readouts of (diffusion) language models as Pyserini encoders.

Data flow, one stage package each: ``datasets`` (BEIR or your own files -> prepared corpus, topics, qrels) ->
``prompts`` + ``backbones`` + ``readout`` (one forward pass -> K dense vectors + K sparse vectors) -> ``encode``
(corpus encoding, shards, writers) -> ``index`` (Lucene impact via the bridge, FAISS types, K-vector stores) ->
``search`` (modes, MaxSim methods, runs) -> ``fusion`` -> ``evaluate`` (trec_eval, reports, the paper's numbers);
``pipeline`` runs the steps, ``cli`` parses command lines, ``pyserini_bridge`` is the only code that touches
Pyserini or Java, ``training`` fine-tunes the readout, ``regressions`` writes Anserini configs. Nothing heavy is
imported here; import the sub-modules you need.
"""

from diffretriever_pyserini import _moved

__version__ = "0.1.0"

_moved.install()  # old module paths keep working for one release (with a DeprecationWarning)
