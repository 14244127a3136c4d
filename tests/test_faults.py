"""Bounded memory, no hangs, checked outputs (fixtures made here from real SciFact abstracts)."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _arguana_like(scifact_slice: Path, out: Path, n: int = 25) -> Path:
    """A BEIR folder named ``arguana`` whose queries are corpus documents (query id = document id), as in ArguAna:
    the first ``n`` abstracts relevant to SciFact claims become queries, judged relevant to another abstract of
    the same claim (or the claim's first other relevant one) and always to themselves' neighbours, never to
    themselves."""
    src = scifact_slice / "scifact"
    docs = [json.loads(line) for line in (src / "corpus.jsonl").read_text().splitlines()]
    by_id = {d["_id"]: d for d in docs}
    qrels = [line.split("\t") for line in (src / "qrels" / "test.tsv").read_text().splitlines()[1:]]
    queries, judged = [], []
    for i, (_, docid, _) in enumerate(qrels):
        if docid in by_id and docid not in {q["_id"] for q in queries}:
            queries.append({"_id": docid, "text": by_id[docid]["text"]})
            other = qrels[(i + 1) % len(qrels)][1]
            judged.append((docid, other if other != docid else docs[0]["_id"]))
        if len(queries) == n:
            break
    folder = out / "arguana"
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text((src / "corpus.jsonl").read_text())
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n"
                                               + "".join(f"{q}\t{d}\t1\n" for q, d in judged))
    return out


@pytest.mark.slow
def test_hybrid_pyserini_drops_self_hits_before_normalising(scifact_slice, tmp_path):
    """On a query set whose ids are corpus ids, Pyserini's hybrid and ours rank the same, without self hits."""
    from diffretriever_pyserini.pipeline import RunConfig, run_dataset
    from diffretriever_pyserini.runs import ranked, read_run

    mirror = _arguana_like(scifact_slice, tmp_path / "mirror")
    cfg = RunConfig(dataset="arguana", model="minilm", k_q=4, k_p=4, p_max_length=128, q_max_length=128,
                    device="cpu", batch_size=32, mirror=str(mirror), work=str(tmp_path / "work"),
                    runs=str(tmp_path / "runs"), modes="dense,sparse,hybrid,hybrid-pyserini", hits=100)
    run_dataset(cfg)
    folder = next((tmp_path / "runs" / "beir-v1.0.0-arguana").iterdir())
    ours, theirs = read_run(folder / "hybrid.trec"), read_run(folder / "hybrid-pyserini.trec")
    assert set(ours) == set(theirs) and len(ours) == 25
    for qid in ours:
        assert qid not in ours[qid] and qid not in theirs[qid]
        assert [d for d, _ in ranked(ours[qid])] == [d for d, _ in ranked(theirs[qid])], qid


@pytest.mark.slow
def test_bm25_out_of_heap_exits_with_one_line(scifact_slice, tmp_path):
    """A Java heap far too small for 1,000 hits: the BM25 baseline ends within seconds, exit 2, one line naming the
    step, the heap and the setting that raises it (it used to hang in garbage collection)."""
    from diffretriever_pyserini.pipeline import RunConfig, run_bm25

    args = ["--dataset", "scifact", "--mirror", str(scifact_slice), "--work", str(tmp_path / "work"),
            "--runs", str(tmp_path / "runs")]
    cfg = RunConfig(dataset="scifact", mirror=str(scifact_slice), work=str(tmp_path / "work"),
                    runs=str(tmp_path / "runs"))
    assert run_bm25(cfg)["metrics"]["ndcg_cut_10"] > 0.5  # the index, built with a normal heap
    env = {**os.environ, "PYTHONPATH": str(REPO), "DIFFRETRIEVER_JAVA_HEAP": "24m"}
    start = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "diffretriever_pyserini", "baselines", "--bm25-only", "--bm25",
                          "flat", *args], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr[-3000:]
    assert time.monotonic() - start < 120
    lines = [line for line in out.stderr.splitlines() if line.startswith("diffretriever-pyserini: error:")]
    assert len(lines) == 1 and "BM25 search ran out of Java heap (-Xmx24m" in lines[0], out.stderr[-3000:]
    assert "DIFFRETRIEVER_JAVA_HEAP" in lines[0] and "Traceback" not in out.stderr


def test_bm25_only_runs_the_chosen_condition(scifact_slice, tmp_path):
    args = ["--dataset", "scifact", "--mirror", str(scifact_slice), "--work", str(tmp_path / "work"),
            "--runs", str(tmp_path / "runs")]
    out = subprocess.run([sys.executable, "-m", "diffretriever_pyserini", "baselines", "--bm25-only", "--bm25",
                          "multifield", *args], env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "| bm25-multifield |" in out.stdout and "bm25-flat" not in out.stdout
    runs = tmp_path / "runs" / "beir-v1.0.0-scifact"
    assert (runs / "bm25-multifield" / "bm25.trec").is_file() and not (runs / "bm25-flat").exists()
    assert not list(runs.glob("*/hybrid.trec"))  # no DiffRetriever run
