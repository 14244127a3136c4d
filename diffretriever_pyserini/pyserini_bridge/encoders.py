"""Pyserini encoders running the K-mask readout (the Pyserini-facing side of
:mod:`diffretriever_pyserini.readout.readers`).

``DiffRetrieverDocumentEncoder`` and ``DiffRetrieverQueryEncoder`` subclass Pyserini's ``DocumentEncoder`` /
``QueryEncoder``. One forward pass per batch yields both outputs; the query encoder caches them so that
``FaissSearcher`` (dense, ``encode -> np.ndarray``) and ``LuceneImpactSearcher`` (sparse, ``encode -> {term: int}``,
through :attr:`DiffRetrieverQueryEncoder.sparse`) share a single pass per query.
"""

from __future__ import annotations

from diffretriever_pyserini.pyserini_bridge.hook import prepare_pyserini
from diffretriever_pyserini.readout.readers import DocumentReader, QueryReader

prepare_pyserini()  # Java and the import hook before Pyserini's imports below (no JVM starts here)
from pyserini.encode import DocumentEncoder as PyseriniDocumentEncoder  # noqa: E402
from pyserini.encode import QueryEncoder as PyseriniQueryEncoder  # noqa: E402

class DiffRetrieverDocumentEncoder(DocumentReader, PyseriniDocumentEncoder):
    """Passage-side K-mask encoder, a Pyserini ``DocumentEncoder`` (see :class:`~diffretriever_pyserini.readout.readers.
    DocumentReader`). ``options``: see :func:`~diffretriever_pyserini.readout.readers.build_reader`."""


class DiffRetrieverQueryEncoder(QueryReader, PyseriniQueryEncoder):
    """Query-side K-mask encoder, a Pyserini ``QueryEncoder`` for ``FaissSearcher`` (see
    :class:`~diffretriever_pyserini.readout.readers.QueryReader`); :attr:`sparse` is its face for
    ``LuceneImpactSearcher``."""

    def __init__(self, model_name="minilm", device=None, k: int | None = None, max_length: int | None = None,
                 top_k: int | None = None, batch_size: int = 32, **options):
        PyseriniQueryEncoder.__init__(self)  # no pre-encoded queries (the 1.x and 2.x argument names differ)
        QueryReader.__init__(self, model_name, device, k, max_length, top_k, batch_size, **options)
        self.sparse = SparseQueryView(self)


class SparseQueryView(PyseriniQueryEncoder):
    """The sparse face of a :class:`DiffRetrieverQueryEncoder`, for ``LuceneImpactSearcher``."""

    def __init__(self, parent: DiffRetrieverQueryEncoder):
        super().__init__()
        self.parent = parent
        self.has_model = True

    def encode(self, query: str, **kwargs) -> dict[str, int]:
        return self.parent.encode_sparse(query)
