"""What a run records beside its run files: the metrics of each run (when the collection has qrels) and
``config.json`` (the options, the resolved settings per stage, the readouts, indexes, fusion rules and every
deliberate difference from the authors' released code)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from diffretriever_pyserini.encode.writers import read_metadata
from diffretriever_pyserini.evaluate.metrics import evaluate, evaluate_run_file, read_qrels
from diffretriever_pyserini.pipeline.settings import Run, as_run
from diffretriever_pyserini.search.modes import MODE_TABLE, MODES

SPARSE_UNMATCHED_RULE = ("a topic whose sparse query vector matches no document gets its dense list in sparse.trec "
                         "(every per-mode run has every topic, as a TREC submission must); fusions use the Lucene "
                         "lists as they are")


def evaluate_run(path: Path, prepared, metrics, lucene_only: dict | None = None) -> dict:
    """The metrics record of a written run (``<run>.metrics.json``); without qrels, the run alone. ``lucene_only``:
    the sparse run as Lucene returned it, before unmatched topics were filled, kept as ``lucene_only_metrics`` (what
    Anserini's impact search of the same index gives)."""
    if not prepared.qrels.is_file():
        return {"run": str(path), "qrels": None, "metrics": {}}
    record = evaluate_run_file(path, prepared.qrels, metrics)
    if lucene_only is not None:
        record["lucene_only_metrics"] = evaluate(read_qrels(prepared.qrels), lucene_only, metrics)
        Path(f"{path}.metrics.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def fusion_rules(run: Run) -> dict[str, str]:
    """How each combining mode fuses (config.json), from the mode table."""
    zero = ", a short sparse list padded with zeros" if run.search.sparse_zero_fill else ""
    return {m.name: m.fusion_rule + (zero if m.name == "hybrid" else "") for m in MODE_TABLE.values()
            if m.fusion_rule}


def deliberate_differences(run, dataset=None) -> dict:
    """Where this run (a Run or its options) differs from the authors' released code on purpose, and the option
    that switches it."""
    run = as_run(run)
    dataset = dataset or run.dataset
    zero_fill = run.search.sparse_zero_fill
    out = {"sparse_search": "Lucene impact search returns matching documents only"
                            + ("; fusion pads short lists with zeros (--sparse-zero-fill)" if zero_fill
                               else " (--sparse-zero-fill makes fusion count them as padded with zeros)")}
    if dataset.remove_query:
        out["self_hits"] = ("kept (--keep-self-hits), as the reference does" if run.search.keep_self_hits else
                            "a hit equal to the query id is removed (BEIR/Anserini); --keep-self-hits keeps it")
    if run.readout.dense_source != "hidden":
        out["dense_source"] = "LM-head output, the reference's fine-tuned LLaDA behaviour (--dense-source)"
    return out


def run_config(run: Run, readout_query: dict, dense_folder: Path, unmatched: list[str]) -> dict:
    """The ``config.json`` of a search: options, resolved settings, readouts, indexes, rules."""
    from diffretriever_pyserini.index.dense import describe

    dense = run.paths.encodings.dense
    return {**asdict(run.options), "condition": run.condition, "settings": run.record(),
            "readout_query": readout_query,
            "readout_passage": read_metadata(run.paths.encodings.sparse).get("readout"),
            "modes": {m: MODES[m] for m in run.search.modes},
            "indexes": {"dense": {"folder": str(dense_folder), **describe(dense_folder)},
                        "multi_dense": run.index.maxsim_method.describe(dense, run.index.maxsim_options)},
            "fusion": fusion_rules(run),
            "sparse_unmatched_topics": {"rule": SPARSE_UNMATCHED_RULE, "topics": unmatched} if unmatched else None,
            "differences_from_reference": deliberate_differences(run)}


def metrics_table(rows: list[tuple[str, dict]], metrics=("ndcg_cut_10", "recall_100")) -> str:
    """A markdown table of ``(label, metrics record)`` rows."""
    head = "| run | " + " | ".join(metrics) + " |\n|---|" + "---|" * len(metrics) + "\n"
    body = "".join(f"| {label} | " + " | ".join(f"{rec['metrics'][m]:.4f}" for m in metrics) + " |\n"
                   for label, rec in rows)
    return head + body
