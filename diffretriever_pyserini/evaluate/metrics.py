"""Evaluation with pytrec_eval, matching ``trec_eval -c`` (queries with no hits count as 0).

Metric names: ``ndcg_cut_10``, ``recall_100``, ``recall_1000``, ``recip_rank_10`` (MRR@10: reciprocal rank on the
top 10 of the run, as MS MARCO reports it). ``<run>.metrics.json`` sits beside each run.
"""

from __future__ import annotations

import json
from pathlib import Path

from diffretriever_pyserini.errors import UserError
from diffretriever_pyserini.search.runs import Run, ranked, read_run

DEFAULT_METRICS = ("ndcg_cut_10", "recall_100", "recall_1000")


QRELS_HEADERS = ("query-id", "qid", "query_id")


def read_qrels(path) -> dict[str, dict[str, int]]:
    """Relevance judgements as ``{qid: {docid: rel}}``: TREC (``qid 0 docid rel``) or BEIR TSV (``query-id corpus-id
    score``, its header line skipped), plain or .gz, a byte-order mark ignored. A malformed line, an id TREC files
    cannot hold or a file without any judgment raises UserError naming file and line."""
    from diffretriever_pyserini.search.runs import id_problem, open_text

    qrels: dict[str, dict[str, int]] = {}
    with open_text(path) as f:
        for lineno, line in enumerate(f, start=1):
            parts = line.split()
            if not parts or (not qrels and parts[0] in QRELS_HEADERS):
                continue
            if len(parts) not in (3, 4):
                raise UserError(f"expected 'qid 0 docid rel' (TREC) or 'query-id corpus-id score' (BEIR), got "
                                f"{len(parts)} fields", path, lineno)
            qid, docid, rel = parts[0], parts[-2], parts[-1]
            try:
                value = int(rel)
            except ValueError as exc:
                raise UserError(f"relevance {rel!r} is not an integer", path, lineno) from exc
            for what, value_ in (("query id", qid), ("document id", docid)):
                problem = id_problem(value_)
                if problem:
                    raise UserError(f"{what} {value_!r} {problem}", path, lineno)
            qrels.setdefault(qid, {})[docid] = value
    if not qrels:
        raise UserError("no judgments in the qrels file", path)
    return qrels


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
