"""Evaluation with pytrec_eval, matching ``trec_eval -c`` (queries with no hits count as 0).

Metric names: ``ndcg_cut_10``, ``recall_100``, ``recall_1000``, ``recip_rank_10`` (MRR@10: reciprocal rank on the
top 10 of the run, as MS MARCO reports it). ``<run>.metrics.json`` sits beside each run.
"""

from __future__ import annotations

import json
from pathlib import Path

from diffretriever_pyserini.datasets.files import read_qrels  # noqa: F401 - evaluation reads qrels from here
from diffretriever_pyserini.errors import UserError
from diffretriever_pyserini.search.runs import Run, ranked, read_run

DEFAULT_METRICS = ("ndcg_cut_10", "recall_100", "recall_1000")


def evaluate(qrels: dict[str, dict[str, int]], run: Run, metrics=DEFAULT_METRICS) -> dict[str, float]:
    """Mean of each metric over all judged queries (``-c``): a judged query absent from the run scores 0."""
    import pytrec_eval

    if not qrels:
        raise UserError("no judged queries to evaluate")
    results: dict[str, float] = {}
    plain = [m for m in metrics if not m.startswith("recip_rank_")]
    measures = {m.rsplit("_", 1)[0] if m.rsplit("_", 1)[-1].isdigit() else m for m in plain}  # ndcg_cut_10 -> ndcg_cut
    judged = {q: r for q, r in run.items() if q in qrels}
    if plain:
        per_query = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(judged)
        for m in plain:
            results[m] = sum(per_query[q][m] for q in per_query) / len(qrels)
    for m in metrics:
        if m.startswith("recip_rank_"):
            cutoff = int(m.rsplit("_", 1)[1])
            cut = {q: dict(ranked(hits, cutoff)) for q, hits in judged.items()}
            per_query = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(cut)
            results[m] = sum(v["recip_rank"] for v in per_query.values()) / len(qrels)
    return results


def evaluate_run_file(run_path, qrels_path, metrics=DEFAULT_METRICS, write: bool = True) -> dict:
    """Evaluate a run file; with ``write``, save ``<run>.metrics.json`` beside it."""
    qrels = read_qrels(qrels_path)
    run = read_run(run_path)
    scores = evaluate(qrels, run, metrics)
    record = {"run": str(run_path), "qrels": str(qrels_path), "queries_judged": len(qrels),
              "queries_in_run": len(set(run) & set(qrels)), "metrics": scores,
              "evaluator": "pytrec_eval (trec_eval -c)"}
    if write:
        Path(f"{run_path}.metrics.json").write_text(json.dumps(record, indent=2) + "\n")
    return record
