"""Your own collection (``--corpus/--topics/--qrels/--name``): the same checks as registry data, the same runs, and
MaxSim from the command line."""

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from diffretriever_pyserini.datasets import DatasetError
from diffretriever_pyserini.datasets.custom import custom_dataset, iter_custom_corpus, read_custom_topics
from diffretriever_pyserini.evaluate.metrics import read_qrels

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "diffretriever_pyserini", *map(str, args)], capture_output=True,
                          text=True, env=ENV, cwd=cwd)


def test_topic_and_qrels_formats(tmp_path):
    tsv = tmp_path / "t.tsv"
    tsv.write_text("2\tsecond  query\n10\ttenth\n")
    jsonl = tmp_path / "t.jsonl.gz"
    with gzip.open(jsonl, "wt") as f:
        f.write(json.dumps({"_id": "2", "text": "second  query"}) + "\n" + json.dumps({"qid": 10, "query": "tenth"}))
    pyserini_json = tmp_path / "t.json"
    pyserini_json.write_text(json.dumps({"2": {"title": "second  query"}, "10": {"title": "tenth"}}))
    for path in (tsv, jsonl, pyserini_json):
        assert read_custom_topics(path) == {"2": "second  query", "10": "tenth"}, path
    dup = tmp_path / "dup.tsv"
    dup.write_text("1\ta\n1\tb\n")
    with pytest.raises(DatasetError, match=r"dup.tsv:2: duplicate query id '1'"):
        read_custom_topics(dup)
    trec, beir = tmp_path / "q.trec", tmp_path / "q.tsv"
    trec.write_text("2 0 d1 1\n2 0 d2 2\n")
    beir.write_text("query-id\tcorpus-id\tscore\n2\td1\t1\n2\td2\t2\n")
    assert read_qrels(trec) == read_qrels(beir) == {"2": {"d1": 1, "d2": 2}}
    bad = tmp_path / "bad.tsv"
    bad.write_text("2 d1 high\n")
    with pytest.raises(ValueError, match="bad.tsv:1: relevance 'high' is not an integer"):
        read_qrels(bad)


def test_corpus_formats_and_checks(tmp_path):
    folder = tmp_path / "collection"
    folder.mkdir()
    (folder / "a.jsonl").write_text(json.dumps({"id": "d1", "contents": "Aspirin. Lowers fever."}) + "\n")
    with gzip.open(folder / "b.jsonl.gz", "wt") as f:
        f.write(json.dumps({"_id": "d2", "title": "Cells", "text": "divide"}) + "\n")
    (folder / "notes.txt").write_text("not a corpus file")
    assert list(iter_custom_corpus(folder)) == [{"id": "d1", "title": "", "text": "Aspirin. Lowers fever."},
                                                {"id": "d2", "title": "Cells", "text": "divide"}]
    (folder / "c.jsonl").write_text(json.dumps({"id": "d1", "contents": "again"}) + "\n")
    with pytest.raises(DatasetError, match=r"c.jsonl:1: duplicate document id 'd1' \(first at .*a.jsonl:1\)"):
        list(iter_custom_corpus(folder))
    topics = tmp_path / "t.tsv"
    topics.write_text("1\tq\n")
    assert custom_dataset(str(folder), str(topics)).name == "collection"
    with pytest.raises(DatasetError, match="corpus not found"):
        custom_dataset(str(tmp_path / "nowhere.jsonl"), str(topics))
    with pytest.raises(DatasetError, match="topics 'beir-v1.0.0-nothing-test' is neither a file"):
        custom_dataset(str(folder), "beir-v1.0.0-nothing-test")
    with pytest.raises(DatasetError, match="collection name 'a b'"):
        custom_dataset(str(folder), str(topics), name="a b")


def _as_files(mirror: Path, out: Path, pyserini_format: bool) -> tuple[Path, Path, Path]:
    """The slice as a user would hold it: corpus JSONL (BEIR fields, or Pyserini id + contents), topics JSONL with
    the judged queries' exact texts, TREC qrels."""
    from diffretriever_pyserini.datasets import document_text, iter_corpus, read_beir_qrels, read_queries

    out.mkdir(parents=True)
    corpus = out / ("corpus-folder" if pyserini_format else "corpus.jsonl")
    target = corpus / "docs.jsonl" if pyserini_format else corpus
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "w") as dst:
        for doc in iter_corpus(mirror / "scifact"):
            record = {"id": doc["id"], "contents": document_text(doc["title"], doc["text"])} if pyserini_format \
                else {"_id": doc["id"], "title": doc["title"], "text": doc["text"]}
            dst.write(json.dumps(record) + "\n")
    qrels = read_beir_qrels(mirror / "scifact", "test")
    queries = read_queries(mirror / "scifact")
    topics = out / "topics.jsonl"
    topics.write_text("".join(json.dumps({"_id": q, "text": queries[q]}) + "\n" for q in qrels))
    trec = out / "qrels.txt"
    trec.write_text("".join(f"{q} 0 {d} {r}\n" for q, rels in qrels.items() for d, r in rels.items()))
    return corpus, topics, trec


OPTIONS = ["--model", "minilm", "--k-q", "4", "--k-p", "4", "--p-max-length", "128", "--q-max-length", "96",
           "--device", "cpu", "--batch-size", "32"]


@pytest.fixture(scope="module")
def registry_cli_run(scifact_slice, tmp_path_factory):
    """The registry route on the slice through the command line (a fresh process, as every route compared here:
    run files are compared between processes started the same way)."""
    root = tmp_path_factory.mktemp("registry-cli")
    res = _cli("run", "--dataset", "scifact", "--mirror", scifact_slice, *OPTIONS, "--work", root / "work", "--runs",
               root / "runs", cwd=root)
    assert res.returncode == 0, res.stderr[-3000:]
    return root


@pytest.mark.slow
@pytest.mark.parametrize("pyserini_format", [False, True], ids=["beir-jsonl", "jsonvectorcollection-folder"])
def test_your_own_files_give_the_registry_runs(registry_cli_run, scifact_slice, tmp_path, pyserini_format):
    """The slice given only as --corpus/--topics/--qrels files runs through the command line to the same run files,
    byte for byte, as the registry route (every mode), with the same metrics."""
    corpus, topics, qrels = _as_files(scifact_slice, tmp_path / "files", pyserini_format)
    res = _cli("run", "--corpus", corpus, "--topics", topics, "--qrels", qrels, "--name", "my-slice", *OPTIONS,
               "--work", tmp_path / "work", "--runs", tmp_path / "runs", cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    [registry_dir] = (registry_cli_run / "runs" / "beir-v1.0.0-scifact").iterdir()
    mine = tmp_path / "runs" / "my-slice" / registry_dir.name
    modes = sorted(p.name for p in registry_dir.glob("*.trec"))
    assert len(modes) == 7 and sorted(p.name for p in mine.glob("*.trec")) == modes
    for name in modes:
        assert (mine / name).read_bytes() == (registry_dir / name).read_bytes(), name
        ours = json.loads((mine / f"{name}.metrics.json").read_text())["metrics"]
        assert ours == json.loads((registry_dir / f"{name}.metrics.json").read_text())["metrics"], name
    config = json.loads((mine / "config.json").read_text())
    assert config["settings"]["dataset"]["source"]["corpus"] == str(corpus.resolve())


@pytest.mark.slow
def test_maxsim_from_the_command_line_writes_the_search_run(registry_cli_run, tmp_path):
    [run_dir] = (registry_cli_run / "runs" / "beir-v1.0.0-scifact").iterdir()
    [dense] = (registry_cli_run / "work" / "encodings" / "scifact").glob("*/dense")
    out = tmp_path / "maxsim.trec"
    topics = registry_cli_run / "work" / "data" / "scifact" / "topics.tsv"
    cmd = [sys.executable, "-m", "diffretriever_pyserini.search.maxsim", "--index", str(dense),
           "--topics", str(topics), "--output", str(out), "--hits", "1000", "--max-length", "96", "--device", "cpu",
           "--run-tag", f"{run_dir.name}.multi_dense"]
    res = subprocess.run(cmd, capture_output=True, text=True, env=ENV)
    assert res.returncode == 0, res.stderr[-3000:]
    assert out.read_bytes() == (run_dir / "multi_dense.trec").read_bytes()
    res = subprocess.run([*cmd[:4], str(tmp_path), *cmd[5:]], capture_output=True, text=True, env=ENV)
    assert res.returncode == 2 and "no kvectors.npy" in res.stderr and len(res.stderr.strip().splitlines()) == 1
