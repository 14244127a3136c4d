"""Fusion of runs as pure functions.

- :func:`normalized_fusion`: the paper's and PromptReps' hybrid: per query, min-max normalise each run's top
  ``depth`` (1000), score = sum of weight * normalised score (0.5 / 0.5), a document missing from a run gets 0
  from it. Rankings equal ``python -m pyserini.fusion --method normalize`` (an all-equal list normalises to 1, as
  there).
- :func:`pyserini_hybrid`: Pyserini's ``HybridSearcher`` rule, ``alpha * sparse + dense`` with a missing document
  given that run's minimum, made safe where Pyserini's optional normalisation divides by zero.
- :func:`reciprocal_rank_fusion`: RRF with k = 60 (Cormack, Clarke and Buettcher, SIGIR 2009).
"""

from __future__ import annotations

from diffretriever_pyserini.runs import Run, ranked

FUSION_WEIGHTS = (0.5, 0.5)
"""Dense and sparse weights of the paper's hybrid (DiffRetriever, PromptReps)."""
FUSION_DEPTH = 1000
RRF_K = 60


def _top(hits: dict[str, float], depth: int | None) -> dict[str, float]:
    return dict(ranked(hits, depth))


def minmax(hits: dict[str, float]) -> dict[str, float]:
    """(s - min) / (max - min) per document; all-equal scores become 1.0."""
    if not hits:
        return {}
    low, high = min(hits.values()), max(hits.values())
    if high == low:
        return {d: 1.0 for d in hits}
    return {d: (s - low) / (high - low) for d, s in hits.items()}


def normalized_fusion(runs: list[Run], weights=FUSION_WEIGHTS, depth: int | None = FUSION_DEPTH) -> Run:
    """The paper's fusion over ``runs`` (weights aligned with runs; missing documents contribute 0)."""
    if len(weights) != len(runs):
        raise ValueError(f"{len(runs)} runs but {len(weights)} weights")
    fused: Run = {}
    for qid in sorted(set().union(*runs)):
        scores: dict[str, float] = {}
        for run, weight in zip(runs, weights):
            for docid, s in minmax(_top(run.get(qid, {}), depth)).items():
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
