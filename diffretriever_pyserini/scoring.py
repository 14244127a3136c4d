"""Scoring modes of the paper as pure functions (arXiv 2605.07210).

- single_dense: inner product of single vectors (mean of the kept normalised K vectors);
- multi_dense: MaxSim, sum over query vectors of max over passage vectors, each max clamped at 0 (ColBERT);
- sparse: dot product of the max-pooled integer impact vectors.
"""

from __future__ import annotations

import numpy as np


def single_dense(query: np.ndarray, passages: np.ndarray) -> np.ndarray:
    """(H,) query, (N, H) passages -> (N,) inner products."""
    return passages @ query


def maxsim(query: np.ndarray, passages: np.ndarray) -> np.ndarray:
    """(K_q, H) query vectors, (N, K_p, H) passage vectors -> (N,) sum_i max(0, max_j <q_i, p_j>)."""
    sims = np.einsum("qh,nph->nqp", query, passages)  # (N, K_q, K_p)
    return np.maximum(sims.max(axis=2), 0.0).sum(axis=1)


def sparse_dot(query: dict[str, int], passage: dict[str, int]) -> int:
    """Dot product of two ``{term: impact}`` vectors (what Lucene's impact search computes)."""
    if len(query) > len(passage):
        query, passage = passage, query
    return sum(w * passage.get(t, 0) for t, w in query.items())
