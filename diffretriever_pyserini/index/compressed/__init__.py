"""A compressed multi-vector store searched with MaxSim: each passage as an anchor (the mean of its K vectors) in a
FAISS IVF index with 4-bit scalar codes, each of its K vectors as a 4-bit product-quantized residual from the decoded
anchor.

Why anchors: the K mask vectors of one passage are nearly parallel (the fine-tuned CPU model's four have median
cosine 0.998 with their mean on SciFact), so one precise anchor per passage plus K cheap residuals costs far less
than K independent codes at the same error (ColBERTv2 and PLAID code residuals from shared centroids; here the
centroid is the passage's own anchor). Vectors that are not alike still decode correctly, with a larger error, which
the manifest reports (``relative_error`` and ``anchor_cosine``, measured on the training sample).

At Dream's shape (3,584 dimensions, K_p = 16) the float16 K vectors cost 115 KB per passage (about 1 TB for MS
MARCO); here a passage costs about 5.4 KB: half a byte per anchor dimension, 16 bytes of FAISS ids, and half a byte
per 8 dimensions of each residual. Layout of ``<dense>/pq/``:

- ``anchors.faiss``: IndexIVFScalarQuantizer (inner product, 4 bits per dimension of the anchor's residual from its
  list centroid, ``nprobe`` stored, ids = document numbers, a direct map to decode any anchor);
- ``residual_pq.npy`` (m, 16, H / m) float32: the residual sub-quantizer centroids;
- ``residual_codes.npy`` (vectors, m / 2) uint8: two 4-bit codes per byte, in document order;
- ``docstart.npy`` (N + 1,) int64: document d owns vectors ``docstart[d]:docstart[d + 1]``;
- ``manifest.json``: shapes, parameters, errors, bytes per document (every file above), build time.

Search (:func:`compressed_search`): one FAISS search per query with the mean of its vectors ranks the anchors
as anchor MaxSim does; the best ``ndocs`` are scored with MaxSim over their decoded vectors (anchor + residual) and
ranked first, the other candidates follow in anchor order, up to ``k``; optionally the top ``rerank`` are re-scored
exactly from a float copy of the K vectors. Every max is clamped at 0, as in exact MaxSim. The FAISS lists and the
code arrays are memory-mapped, so a search holds in memory the centroids, the direct map (8 bytes per passage) and
one batch of candidates, whatever the corpus size; when every list is probed (by default, corpora up to about 20,000
passages) the anchors are decoded once per search and kept while it runs if that takes at most 256 MB.
"""

from diffretriever_pyserini.index.compressed.build import (
                                                           FOLDER,
                                                           MIN_DOCUMENTS,
                                                           SEARCH_FILES,
                                                           build_compressed,
                                                           build_store,
                                                           default_nlist,
                                                           default_nprobe,
)
from diffretriever_pyserini.index.compressed.codec import (
                                                           KSUB,
                                                           RESIDUAL_DIMS,
                                                           encode,
                                                           pq_decode,
                                                           product_quantizer,
                                                           residual_m,
                                                           train_pq,
                                                           unpack,
)
from diffretriever_pyserini.index.compressed.search import DEFAULT_NDOCS, DEFAULT_RERANK, compressed_search
from diffretriever_pyserini.index.compressed.store import CompressedStore

__all__ = ["CompressedStore", "DEFAULT_NDOCS", "DEFAULT_RERANK", "FOLDER", "KSUB", "MIN_DOCUMENTS", "RESIDUAL_DIMS",
           "SEARCH_FILES", "build_compressed", "build_store", "compressed_search", "default_nlist", "default_nprobe",
           "encode", "pq_decode", "product_quantizer", "residual_m", "train_pq", "unpack"]
