"""Exact scores of the paper's multi-vector and sparse modes for a few texts (arXiv 2605.07210); the searchers score
whole corpora with the same formulas (MaxSim: :func:`~diffretriever_pyserini.index.multivector.maxsim_block`;
sparse: Lucene's impact search).

- multi_dense: MaxSim, sum over query vectors of max over passage vectors, each max clamped at 0 (ColBERT);
- sparse: dot product of the max-pooled integer impact vectors.
"""

from __future__ import annotations

import numpy as np

from diffretriever_pyserini.index.multivector import maxsim_block


def maxsim(query: np.ndarray, passages: np.ndarray) -> np.ndarray:
    """(K_q, H) query vectors, (N, K_p, H) passage vectors -> (N,) sum_i max(0, max_j <q_i, p_j>)."""
    return maxsim_block(np.asarray(query)[None], np.asarray(passages))[0]


def sparse_dot(query: dict[str, int], passage: dict[str, int]) -> int:
    """Dot product of two ``{term: impact}`` vectors (what Lucene's impact search computes)."""
    if len(query) > len(passage):
        query, passage = passage, query
    return sum(w * passage.get(t, 0) for t, w in query.items())
