"""DiffRetriever for Pyserini: K-mask readouts of (diffusion) language models as Pyserini encoders.

Data flow: datasets -> prompts -> backbones (one forward pass) -> representation (dense + sparse)
-> writers (JsonVectorCollection, FAISS) -> indexing (Lucene impact) -> search -> fusion -> runs -> evaluation.
Nothing heavy is imported here; import the sub-modules you need.
"""

__version__ = "0.1.0"
