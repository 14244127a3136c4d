"""Controls and comparisons on the same prepared corpus: Anserini's BM25 flat and multifield conditions (through
Pyserini's Lucene index and searcher), Pyserini's own mean-pooling encoder on the same backbone, and BM25 fused
with our hybrid run."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

from diffretriever_pyserini.datasets.prepare import iter_prepared_corpus
from diffretriever_pyserini.errors import UserError
from diffretriever_pyserini.pipeline.records import evaluate_run, metrics_table
from diffretriever_pyserini.pipeline.settings import Run, RunConfig, as_run
from diffretriever_pyserini.pipeline.steps import run_dataset, step_prepare
from diffretriever_pyserini.search.runs import write_run

log = logging.getLogger(__name__)

BM25_MULTIFIELD_BOOSTS = {"contents": 1.0, "title": 1.0}
"""Field boosts of Anserini's ``beir-v1.0.0-<ds>.multifield`` condition (title and text as separate fields)."""


def bm25_index(cfg: RunConfig | Run, multifield: bool = False) -> Path:
    """The BM25 index of the prepared corpus, built by Pyserini when missing: flat (``contents`` = title + text,
    Anserini's ``.flat``) or multifield (``contents`` = text, plus ``title``)."""
    from diffretriever_pyserini.pyserini_bridge.lucene import build_bm25_index, index_is_complete

    run = as_run(cfg)
    prepared = step_prepare(run)
    index_dir = run.paths.indexes / ("bm25-multifield" if multifield else "bm25-flat")
    if index_is_complete(index_dir):
        return index_dir
    if not multifield:
        return build_bm25_index(prepared.corpus_dir, index_dir, run.index.threads)
    corpus = run.paths.data / run.dataset.name / "corpus-multifield"
    corpus.mkdir(parents=True, exist_ok=True)
    with open(corpus / "part-00000.jsonl", "w", encoding="utf-8") as f:
        for doc in iter_prepared_corpus(prepared.corpus_dir):
            f.write(json.dumps({"id": doc["id"], "contents": doc["text"], "title": doc["title"]},
                               ensure_ascii=False) + "\n")
    return build_bm25_index(corpus, index_dir, run.index.threads, fields=("title",))


def _run_bm25(cfg: RunConfig | Run, multifield: bool) -> dict:
    from diffretriever_pyserini.pyserini_bridge.search import bm25_search

    run = as_run(cfg)
    prepared, s = step_prepare(run), run.search
    index_dir = bm25_index(run, multifield)
    topics = prepared.query_texts()
    found = bm25_search(index_dir, topics, s.hits, s.remove_self_hits, s.threads,
                        fields=BM25_MULTIFIELD_BOOSTS if multifield else None)
    path = write_run(run.paths.runs / run.dataset.run_prefix / index_dir.name / "bm25.trec", found, index_dir.name,
                     s.hits, topic_order=topics)
    return evaluate_run(path, prepared, run.dataset.metrics)


def run_bm25(cfg: RunConfig | Run) -> dict:
    """Control: BM25 flat over the same prepared corpus, through Pyserini's Lucene index and searcher."""
    return _run_bm25(cfg, multifield=False)


def run_bm25_multifield(cfg: RunConfig | Run) -> dict:
    """Control: BM25 multifield (title and text as separate fields, boost 1.0 each), as Anserini's
    ``beir-v1.0.0-<ds>.multifield`` condition, through Pyserini's Lucene index and searcher."""
    return _run_bm25(cfg, multifield=True)


BM25_CONDITIONS = {"flat": ("bm25-flat", run_bm25), "multifield": ("bm25-multifield", run_bm25_multifield)}


def run_meanpool_control(cfg: RunConfig | Run, max_length: int = 256) -> dict:
    """Control: Pyserini's own AutoDocumentEncoder (mean pooling, L2) on the same backbone, encoded by the
    unmodified ``python -m pyserini.encode`` command and searched with ``FaissSearcher``."""
    from diffretriever_pyserini.backbones import model_folder
    from diffretriever_pyserini.backbones.checkpoint import read_config
    from diffretriever_pyserini.encode.writers import AtomicDir
    from diffretriever_pyserini.pyserini_bridge.search import dense_searcher, meanpool_query_encoder, search_topics

    run = as_run(cfg)
    prepared, s = step_prepare(run), run.search
    model_dir = str(model_folder(run.model.model))
    config = read_config(Path(model_dir))
    if config.get("auto_map"):  # Pyserini's own encoder would offer to run the folder's code
        raise UserError("config.json names custom code (auto_map); the mean-pooling control runs Pyserini's own "
                        "encoder, which would offer to execute it, so it refuses this model", model_dir)
    name = f"meanpool.{Path(model_dir).name}"
    index_dir = run.paths.indexes / name
    if not (index_dir / "index").is_file():
        with AtomicDir(index_dir) as tmp:
            cmd = [sys.executable, "-m", "pyserini.encode",
                   "input", "--corpus", str(prepared.corpus_dir), "--fields", "title", "text",
                   "output", "--embeddings", str(tmp), "--to-faiss",
                   "encoder", "--encoder", model_dir, "--encoder-class", "auto", "--pooling", "mean", "--l2-norm",
                   "--fields", "title", "text", "--dimension", str(config["hidden_size"]),
                   "--max-length", str(max_length), "--batch-size", str(run.model.batch_size),
                   "--device", run.model.device or "cpu"]
            log.info("running %s", " ".join(cmd))
            proc = subprocess.run(cmd, stdin=subprocess.DEVNULL)  # its progress bar goes to the terminal
            if proc.returncode != 0:
                raise RuntimeError(f"pyserini.encode failed with exit code {proc.returncode} (its output is above)")
    topics = prepared.query_texts()
    found = search_topics(dense_searcher(index_dir, meanpool_query_encoder(model_dir)), topics, s.hits,
                          s.remove_self_hits, s.threads)
    path = write_run(run.paths.runs / run.dataset.run_prefix / name / "dense.trec", found, "meanpool", s.hits,
                     topic_order=topics)
    return evaluate_run(path, prepared, run.dataset.metrics)


def baselines(cfg: RunConfig | Run, conditions=("flat", "multifield"), bm25_only: bool = False) -> tuple[str, Path]:
    """Anserini's BM25 conditions on the same corpus and (unless ``bm25_only``) our run, with our hybrid run fused
    with each BM25 run by RRF and by min-max normalisation (as ``pyserini.fusion``); the markdown table and where
    it is saved (None with ``bm25_only``)."""
    from diffretriever_pyserini.fusion import ALL_EQUAL_PYSERINI, normalized_fusion, reciprocal_rank_fusion
    from diffretriever_pyserini.search.runs import read_run

    run = as_run(cfg)
    chosen = [BM25_CONDITIONS[c] for c in conditions]
    if bm25_only:
        return metrics_table([(label, control(run)) for label, control in chosen]), None
    ours = run_dataset(run)
    prepared, paths = step_prepare(run), run.paths
    rows = [(f"{run.condition} {name}", rec) for name, rec in ours.items() if name in ("dense", "sparse", "hybrid")]
    for label, rec in ((label, control(run)) for label, control in chosen):
        rows.append((label, rec))
        pair = [read_run(paths.run_dir / "hybrid.trec"), read_run(rec["run"])]
        normalize = normalized_fusion(pair, all_equal=ALL_EQUAL_PYSERINI)  # pyserini.fusion --method normalize
        for method, fused in (("rrf", reciprocal_rank_fusion(pair)), ("normalize", normalize)):
            out = paths.run_dir.parent / "fusion" / f"{run.condition}.hybrid+{label}.{method}.trec"
            write_run(out, fused, f"hybrid+{label}.{method}", run.search.hits, topic_order=list(fused))
            rows.append((f"hybrid + {label} ({method})", evaluate_run(out, prepared, run.dataset.metrics)))
    table = metrics_table(rows)
    out_md = paths.run_dir.parent / f"baselines.{run.condition}.md"
    out_md.write_text(table)
    return table, out_md
