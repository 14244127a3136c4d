"""Anserini-style reproduction configs for the DiffRetriever impact index, and their check.

``anserini_configs/beir-v1.0.0-<dataset>.diffretriever-<model>.yaml`` follows the fields of Anserini's
``reproduce/from-document-collection`` configs: corpus, index (JsonVectorCollection,
``-impact -pretokenized``, index stats), metrics (trec_eval commands), pre-encoded topics (``JsonStringVector``:
one ``{"qid", "contents", "vector"}`` line per query, which Pyserini's cached query encoder also reads), and models
with expected results. :func:`check_config` rebuilds what is missing, searches, evaluates and prints
OK / OKish / FAIL per metric as Pyserini's 2CR pages do (exact to the metric's precision; within 0.0005; else).
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from diffretriever_pyserini.datasets import DATASETS, get_dataset

OKISH = 0.0005
METRICS = [("nDCG@10", "-c -m ndcg_cut.10", "ndcg_cut_10"), ("R@100", "-c -m recall.100", "recall_100"),
           ("R@1000", "-c -m recall.1000", "recall_1000")]


def query_file(cfg) -> Path:
    """Pre-encoded queries of a condition: ``<work>/queries/<dataset>/<condition>.jsonl``."""
    return Path(cfg.work) / "queries" / get_dataset(cfg.dataset).name / f"{cfg.condition}.jsonl"


def encode_queries(cfg, out: Path | None = None) -> Path:
    """Write the sparse query vectors (JsonStringVector / Pyserini cached-encoder JSONL) and, beside them, the dense
    single vectors as ``<stem>.dense/embedding.pkl`` for ``pyserini.search.faiss --encoded-queries``."""
    import pandas as pd

    from diffretriever_pyserini.datasets import one_line
    from diffretriever_pyserini.pyserini_bridge.encoders import DiffRetrieverQueryEncoder
    from diffretriever_pyserini.pipeline import step_prepare

    run = cfg.resolve()
    topics = step_prepare(run).query_texts()
    encoder = DiffRetrieverQueryEncoder(run.model.model, batch_size=run.model.batch_size,
                                        **run.readout.side("query"), **run.model.backbone_options())
    encoder.prime(list(topics.values()))
    out = Path(out) if out else query_file(run.options)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        for qid, text in topics.items():
            # keyed by the topics.tsv line (what Pyserini's search commands look up), encoded from the exact text
            f.write(json.dumps({"qid": qid, "contents": one_line(text), "vector": encoder.encode_sparse(text)},
                               ensure_ascii=False) + "\n")
    dense_dir = out.with_suffix(".dense")
    dense_dir.mkdir(exist_ok=True)
    pd.DataFrame({"id": list(topics), "text": [one_line(t) for t in topics.values()],
                  "embedding": [encoder.encode(t) for t in topics.values()]}).to_pickle(dense_dir / "embedding.pkl")
    return out


def config_for(cfg, results: dict | None, index_stats: dict | None) -> dict:
    """The config of one dataset and condition (``results``: {display metric: value}, empty when not measured)."""
    from diffretriever_pyserini.pipeline import Paths

    cfg = cfg.resolved()
    dataset = get_dataset(cfg.dataset)
    paths = Paths(cfg)
    params = "-impact -pretokenized -hits 1000" + (" -removeQuery" if cfg.remove_self_hits else "")
    return {
        "corpus": f"{dataset.run_prefix}.{cfg.condition}",
        "corpus_path": str(paths.encodings.sparse),
        "download_url": None,
        "index_path": str(paths.impact_index),
        "collection_class": "JsonVectorCollection",
        "generator_class": "DefaultLuceneDocumentGenerator",
        "index_threads": cfg.threads,
        "index_options": "-impact -pretokenized",
        "index_stats": index_stats or {},
        "metrics": [{"metric": name, "command": "bin/trec_eval", "params": params_, "separator": "\t",
                     "parse_index": 2, "metric_precision": 4, "can_combine": False}
                    for name, params_, _ in METRICS],
        "topic_reader": "JsonStringVector",
        "topics": [{"name": f"BEIR (v1.0.0): {dataset.name}", "id": dataset.split, "path": str(query_file(cfg)),
                    "qrels": str(Path(cfg.work) / "data" / dataset.name / "qrels.txt")}],
        "models": [{"name": cfg.condition, "display": f"DiffRetriever sparse ({cfg.model}, K_q={cfg.k_q}, "
                                                      f"K_p={cfg.k_p})",
                    "type": "impact", "params": params,
                    "results": {m: [round(v, 4)] for m, v in (results or {}).items()}, "tolerance": {}}],
        "reproduce": {"command": f"make beir-{dataset.name} MODEL={cfg.model} && "
                                 f"make anserini-configs DATASET={dataset.name} MODEL={cfg.model}",
                      "measured": bool(results),
                      "note": "expected results measured on this project's machines" if results else
                              "not measured here: the dataset is not in the local BEIR mirror; the reproduce "
                              "command fills the expected results in from a measured run"},
    }


def write_configs(cfg, folder: Path) -> list[Path]:
    """One config per registry dataset; expected results from existing sparse runs' ``.metrics.json``."""
    import dataclasses

    from diffretriever_pyserini.pipeline import Paths
    from diffretriever_pyserini.pyserini_bridge.lucene import index_statistics

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name in DATASETS:
        c = dataclasses.replace(cfg, dataset=name).resolved()
        metrics_file = Paths(c).run_dir / "sparse.trec.metrics.json"
        results, stats = None, None
        if metrics_file.is_file():
            record = json.loads(metrics_file.read_text())
            measured = record.get("lucene_only_metrics") or record["metrics"]  # as Anserini's impact search gives
            results = {display: measured[key] for display, _, key in METRICS if key in measured}
            stats = index_statistics(Paths(c).impact_index)
        path = folder / f"beir-v1.0.0-{name}.{c.condition}.yaml"
        path.write_text("---\n" + yaml.safe_dump(config_for(c, results, stats), sort_keys=False))
        written.append(path)
    return written


class _TopicVectors:
    """Query encoder answering with the pre-encoded vector of a topic id (the 'query' passed is the qid)."""

    def __init__(self, path: Path):
        self.vectors = {}
        with open(path, encoding="utf-8") as f:
            for line in f:
                obj = json.loads(line)
                self.vectors[str(obj["qid"])] = obj["vector"]

    def encode(self, qid: str):
        return self.vectors[qid]


def status(ours: float, expected: float, precision: int = 4, okish: float = OKISH) -> str:
    """2CR verdict: OK (equal at the shown ``precision``), OKish (within ``okish``), FAIL. Anserini's configs use
    4 decimals and 0.0005; the paper's three-decimal numbers 3 and 0.005 (:func:`~.paper.paper_status`)."""
    if round(ours, precision) == round(expected, precision):
        return "OK"
    return "OKish" if abs(ours - expected) <= okish + 1e-12 else "FAIL"


def check_config(path: Path) -> list[tuple[str, str, float, float, str]]:
    """Reproduce a config: index (built when missing), search its pre-encoded topics, evaluate, compare.

    Returns rows (model, metric, expected, measured, verdict); index statistics are compared too.
    """
    from diffretriever_pyserini.evaluate.metrics import evaluate, read_qrels
    from diffretriever_pyserini.pyserini_bridge.lucene import build_impact_index, index_is_complete, index_statistics
    from diffretriever_pyserini.pyserini_bridge.search import impact_searcher, search_topics

    config = yaml.safe_load(Path(path).read_text())
    index = Path(config["index_path"])
    if not index_is_complete(index):
        build_impact_index(Path(config["corpus_path"]), index, int(config.get("index_threads", 2)))
    rows = []
    for key, expected in (config.get("index_stats") or {}).items():
        measured = index_statistics(index)[key]
        rows.append(("index", key, expected, measured, "OK" if measured == expected else "FAIL"))
    topic = config["topics"][0]
    vectors = _TopicVectors(Path(topic["path"]))
    qrels = read_qrels(topic["qrels"])
    searcher = impact_searcher(index, vectors)
    for model in config["models"]:
        remove = "-removeQuery" in model["params"]
        run = search_topics(searcher, {q: q for q in vectors.vectors}, 1000, remove)
        measured = evaluate(qrels, run, tuple(key for _, _, key in METRICS))
        for display, _, key in METRICS:
            if display in model["results"]:
                expected = model["results"][display][0]
                rows.append((model["name"], display, expected, measured[key], status(measured[key], expected)))
    return rows
