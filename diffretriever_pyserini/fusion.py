"""Fusion of runs as pure functions.

- :func:`normalized_fusion`: the paper's and PromptReps' hybrid: per query, min-max normalise each run's top
  ``depth`` (1000), score = sum of weight * normalised score (0.5 / 0.5), a document missing from a run gets 0
  from it; a run whose scores are all equal normalises to 0 (the reference divides by max(range, 1e-9)).
  With ``all_equal=1.0`` the rankings equal ``python -m pyserini.fusion --method normalize``, which maps such a run
  to 1.
- :func:`pyserini_hybrid`: Pyserini's ``HybridSearcher`` rule, ``alpha * sparse + dense`` with a missing document
  given that run's minimum, made safe where Pyserini's optional normalisation divides by zero.
- :func:`reciprocal_rank_fusion`: RRF with k = 60 (Cormack, Clarke and Buettcher, SIGIR 2009).
"""

from __future__ import annotations

from typing import Sequence

from diffretriever_pyserini.search.runs import Run, ranked

FUSION_WEIGHTS = (0.5, 0.5)
"""Dense and sparse weights of the paper's hybrid (DiffRetriever, PromptReps)."""
FUSION_DEPTH = 1000
RRF_K = 60


def _top(hits: dict[str, float], depth: int | None) -> dict[str, float]:
    return dict(ranked(hits, depth))


ALL_EQUAL_REFERENCE = 0.0
"""What an all-equal list normalises to in the reference's fusion ((s - min) / max(max - min, 1e-9) = 0)."""
ALL_EQUAL_PYSERINI = 1.0
"""What it normalises to in ``pyserini.fusion --method normalize``."""


def minmax(hits: dict[str, float], all_equal: float = ALL_EQUAL_REFERENCE, floor: float | None = None
           ) -> dict[str, float]:
    """(s - min) / (max - min) per document; all-equal scores become ``all_equal``.

    ``floor``: the minimum is taken as min(scores, floor), as for a list padded with documents scoring ``floor``.
    """
    if not hits:
        return {}
    low, high = min(hits.values()), max(hits.values())
    if floor is not None:
        low = min(low, floor)
    if high == low:
        return {d: all_equal for d in hits}
    return {d: (s - low) / (high - low) for d, s in hits.items()}


def normalized_fusion(runs: list[Run], weights=FUSION_WEIGHTS, depth: int | None = FUSION_DEPTH,
                      all_equal: float = ALL_EQUAL_REFERENCE, zero_floor: Sequence[bool] | None = None,
                      pad_to: int | None = None) -> Run:
    """The paper's fusion over ``runs`` (weights aligned with runs; missing documents contribute 0).

    ``zero_floor[i]`` with ``pad_to``: a list of run i shorter than ``pad_to`` counts as padded with zero-score
    documents, so its minimum is 0 (the reference scores every document, Lucene returns only matching ones).
    """
    if len(weights) != len(runs):
        raise ValueError(f"{len(runs)} runs but {len(weights)} weights")
    floors = zero_floor or [False] * len(runs)
    fused: Run = {}
    for qid in sorted(set().union(*runs)):
        scores: dict[str, float] = {}
        for run, weight, zero in zip(runs, weights, floors):
            top = _top(run.get(qid, {}), depth)
            floor = 0.0 if zero and pad_to is not None and len(top) < pad_to else None
            for docid, s in minmax(top, all_equal, floor).items():
                scores[docid] = scores.get(docid, 0.0) + weight * s
        fused[qid] = scores
    return fused


def pyserini_hybrid(dense: Run, sparse: Run, alpha: float = 0.1, normalization: bool = False,
                    weight_on_dense: bool = False) -> Run:
    """Pyserini ``HybridSearcher`` scores: ``alpha*sparse + dense`` (or ``sparse + alpha*dense``).

    A document missing from one list takes that list's minimum. With ``normalization`` each list is centred on its
    mid-range and divided by its range; a one-hit or all-equal list (range 0) is left centred at 0 instead of
    dividing by zero as Pyserini does.
    """
    fused: Run = {}
    for qid in sorted(set(dense) | set(sparse)):
        d, s = dense.get(qid, {}), sparse.get(qid, {})
        d_lo, d_hi = (min(d.values()), max(d.values())) if d else (0.0, 1.0)
        s_lo, s_hi = (min(s.values()), max(s.values())) if s else (0.0, 1.0)
        scores = {}
        for docid in set(d) | set(s):
            ds, ss = d.get(docid, d_lo), s.get(docid, s_lo)
            if normalization:
                ds = (ds - (d_lo + d_hi) / 2) / (d_hi - d_lo) if d_hi > d_lo else 0.0
                ss = (ss - (s_lo + s_hi) / 2) / (s_hi - s_lo) if s_hi > s_lo else 0.0
            scores[docid] = alpha * ss + ds if not weight_on_dense else ss + alpha * ds
        fused[qid] = scores
    return fused


def reciprocal_rank_fusion(runs: list[Run], k: int = RRF_K, depth: int | None = FUSION_DEPTH) -> Run:
    """RRF: sum over runs of 1 / (k + rank), rank from 1 in each run's deterministic order."""
    fused: Run = {}
    for qid in sorted(set().union(*runs)):
        scores: dict[str, float] = {}
        for run in runs:
            for rank, (docid, _) in enumerate(ranked(run.get(qid, {}), depth), start=1):
                scores[docid] = scores.get(docid, 0.0) + 1.0 / (k + rank)
        fused[qid] = scores
    return fused
