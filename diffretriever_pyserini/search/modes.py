"""The scoring modes, one table: each run file a search writes, the paper's name for it, the first-stage lists it
reads and how it is made from them.

First-stage lists come from a searcher: ``dense`` (single_dense: the mean of the K vectors, FAISS), ``sparse``
(max-pooled impacts, Lucene) and ``multi_dense`` (MaxSim over the K_q x K_p vectors). Every other mode combines
lists. Adding a mode is one :class:`Mode` entry and its ``combine`` function; the pipeline, the index step, the
option checks, ``config.json``, the paper configs and the report all read this table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from diffretriever_pyserini.fusion import FUSION_DEPTH, FUSION_WEIGHTS, normalized_fusion, reciprocal_rank_fusion
from diffretriever_pyserini.search.runs import Run

FIRST_STAGE = ("dense", "sparse", "multi_dense")


@dataclass(frozen=True)
class Fusing:
    """What a combining mode may use: the first-stage runs, and for Pyserini's hybrid the searchers themselves."""

    runs: dict[str, Run]
    topics: dict[str, str]
    hits: int
    remove_query: bool
    sparse_zero_fill: bool
    documents: int
    dense_searcher: object = None
    sparse_searcher: object = None

    def paper_fusion(self, first: str) -> Run:
        """The paper's min-max 0.5 / 0.5 fusion of ``first`` with sparse (``--sparse-zero-fill``: a short Lucene
        list counts as padded with zero-score documents, as the reference scores every document)."""
        padded = {"pad_to": min(FUSION_DEPTH, self.documents)} if self.sparse_zero_fill else {}
        return normalized_fusion([self.runs[first], self.runs["sparse"]], FUSION_WEIGHTS, FUSION_DEPTH,
                                 zero_floor=(False, self.sparse_zero_fill), **padded)


def _pyserini_hybrid(f: Fusing) -> Run:
    from diffretriever_pyserini.pyserini_bridge.search import hybrid_search

    return hybrid_search(f.dense_searcher, f.sparse_searcher, f.topics, f.hits, remove_query=f.remove_query)


@dataclass(frozen=True)
class Mode:
    """One scoring mode. ``reads``: the first-stage lists it needs (a first-stage mode reads itself);
    ``combine``: how a combining mode is made from them (None for first-stage modes)."""

    name: str
    paper: str | None
    description: str
    reads: tuple[str, ...]
    combine: Callable[[Fusing], Run] | None = None
    fusion_rule: str | None = None


MODE_TABLE: dict[str, Mode] = {m.name: m for m in (
    Mode("dense", "single_dense", "single_dense: mean of the K vectors, FaissSearcher", ("dense",)),
    Mode("sparse", "sparse_max", "max-pooled impacts, LuceneImpactSearcher", ("sparse",)),
    Mode("hybrid", "fusion_single_sparse_max", "fusion_single_sparse_max: min-max 0.5/0.5 of dense and sparse",
         ("dense", "sparse"), lambda f: f.paper_fusion("dense"),
         f"min-max of each top-{FUSION_DEPTH}, weights (dense, sparse) {FUSION_WEIGHTS}, missing = 0, an all-equal "
         "list = 0"),
    Mode("hybrid-pyserini", None, "Pyserini HybridSearcher over dense and sparse", ("dense", "sparse"),
         _pyserini_hybrid, "HybridSearcher alpha=1.0 normalization=True"),
    Mode("rrf", None, "reciprocal rank fusion (k=60) of dense and sparse", ("dense", "sparse"),
         lambda f: reciprocal_rank_fusion([f.runs["dense"], f.runs["sparse"]]), "k = 60"),
    Mode("multi_dense", "multi_dense", "MaxSim over the K_q x K_p vectors", ("multi_dense",)),
    Mode("hybrid-multi", "fusion_multi_sparse_max",
         "fusion_multi_sparse_max: min-max 0.5/0.5 of multi_dense and sparse", ("multi_dense", "sparse"),
         lambda f: f.paper_fusion("multi_dense")),
)}

MODES = {m.name: m.description for m in MODE_TABLE.values()}
"""Run file stem -> what it is (the paper's mode names first where it has one)."""


def get_mode(name: str) -> Mode:
    """The mode called ``name``; an unknown name raises ValueError listing the known ones and this file."""
    if name not in MODE_TABLE:
        raise ValueError(f"unknown mode {name!r}; choose from {', '.join(MODE_TABLE)} (modes.py lists them)")
    return MODE_TABLE[name]


def first_stage_needed(modes) -> list[str]:
    """The first-stage lists ``modes`` read, in the order they are searched."""
    needed = {stage for name in modes for stage in get_mode(name).reads}
    return [stage for stage in FIRST_STAGE if stage in needed]


def reads_dense_index(modes) -> bool:
    """Whether ``modes`` search the single-vector FAISS index (``--dense-index``)."""
    return "dense" in first_stage_needed(modes)


def reads_maxsim(modes) -> bool:
    """Whether ``modes`` search the K vectors (``--maxsim``)."""
    return "multi_dense" in first_stage_needed(modes)
