"""Our encoder inside Pyserini's own, unmodified commands (python -m pyserini.encode / search.* / fusion / eval), on
real data, each command in a process with the network unreachable (Pyserini 2.x fetches its catalogue at import)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import offline
from diffretriever_pyserini.pyserini_bridge.plugin import parse_spec, writer_dimension

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def test_parse_spec():
    assert parse_spec("diffretriever:minilm") == ("minilm", {})
    assert parse_spec("diffretriever:/models/Dream?k=16&output=sparse&top_k=256") == (
        "/models/Dream", {"k": 16, "output": "sparse", "top_k": 256})
    with pytest.raises(ValueError, match="unknown option 'kk'"):
        parse_spec("diffretriever:minilm?kk=3")
    with pytest.raises(ValueError, match="output must be"):
        parse_spec("diffretriever:minilm?output=both")


def test_registered_first_in_pyserini_maps():
    """Our key wins Pyserini's substring dispatch even when a path contains other keys ('dse', 'contriever')."""
    code = ("import pyserini.encode as e; print(list(e.document_encoder_class_map)[0]); "
            "print(list(e.query_encoder_class_map)[0]); "
            "from pyserini.encode.__main__ import init_encoder; "
            "enc = init_encoder('diffretriever:minilm?k=2', None, 'cpu', 'cls', False, None, False, False); "
            "print(type(enc).__name__)")
    out = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["diffretriever:", "diffretriever:", "PyseriniDocumentEncoderAdapter"]


def _env():
    return {**os.environ, "PYTHONPATH": str(REPO)}


def _run(args, expect=0, **kw):
    """``python -m <args>`` with the network unreachable for that process (no kept catalogue either)."""
    cmd, env = offline([sys.executable, "-m", *args], {**_env(), "PYSERINI_CACHE": "/nonexistent/no-kept-catalogue"})
    env.pop("DIFFRETRIEVER_OFFLINE", None)
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, **kw)
    assert out.returncode == expect, f"{' '.join(args)}\n{out.stderr[-3000:]}"
    return out


def test_writer_dimension_rule(monkeypatch):
    from diffretriever_pyserini.pyserini_bridge import plugin

    monkeypatch.setitem(plugin._ACTIVE, "dimension", None)
    assert writer_dimension(768, explicit=False) == 768  # not our encoder: Pyserini's value as it is
    monkeypatch.setitem(plugin._ACTIVE, "dimension", 384)
    assert writer_dimension(768, explicit=False) == 384
    assert writer_dimension(384, explicit=True) == 384
    with pytest.raises(SystemExit, match="--dimension 768 does not match .* pass --dimension 384"):
        writer_dimension(768, explicit=True)


@pytest.fixture(scope="module")
def small(scifact_slice, tmp_path_factory):
    """150 real SciFact abstracts (the relevant ones of 20 test claims first) as a prepared corpus."""
    from diffretriever_pyserini.datasets import get_dataset, prepare

    root = tmp_path_factory.mktemp("native")
    prepared = prepare(get_dataset("scifact"), root / "data", mirror=scifact_slice)
    topics = prepared.topics.read_text().splitlines()[:20]
    qids = {t.split("\t")[0] for t in topics}
    qrels = [line for line in prepared.qrels.read_text().splitlines() if line.split()[0] in qids]
    relevant = {line.split()[2] for line in qrels}
    docs = [json.loads(line) for line in next(prepared.corpus_dir.glob("*.jsonl")).read_text().splitlines()]
    docs = [d for d in docs if d["id"] in relevant] + [d for d in docs if d["id"] not in relevant]
    corpus = root / "corpus"
    corpus.mkdir()
    (corpus / "part-00000.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs[:150]))
    (root / "topics.tsv").write_text("\n".join(topics) + "\n")
    (root / "qrels.txt").write_text("\n".join(qrels) + "\n")
    return root


def test_pyserini_encode_and_hybrid_search_commands(small):
    root = small
    spec = "diffretriever:minilm?k=4"
    common = ["input", "--corpus", str(root / "corpus"), "--fields", "title", "text"]
    enc = ["encoder", "--fields", "title", "text", "--device", "cpu", "--batch-size", "16", "--max-length", "128"]
    # no --dimension: the plugin gives Pyserini's FAISS writer the encoder's 384 (Pyserini's default is 768)
    _run(["pyserini.encode", *common, "output", "--embeddings", str(root / "dense"), "--to-faiss",
          *enc, "--encoder", spec])
    _run(["pyserini.encode", *common, "output", "--embeddings", str(root / "sparse"),
          *enc, "--encoder", spec + "&output=sparse"])
    # a contradicting --dimension is one line naming the right value, not Pyserini's bare assert
    bad = _run(["pyserini.encode", *common, "output", "--embeddings", str(root / "bad"), "--to-faiss",
                *enc, "--encoder", spec, "--dimension", "768"], expect=1)
    assert "--dimension 768 does not match the DiffRetriever encoder's 384-dimensional vectors" in bad.stderr
    assert "Traceback" not in bad.stderr
    rows = [json.loads(line) for line in (root / "sparse" / "embeddings.jsonl").read_text().splitlines()]
    assert len(rows) == 150 and all(isinstance(v, int) for r in rows for v in r["vector"].values())
    _run(["pyserini.index.lucene", "--collection", "JsonVectorCollection", "--input", str(root / "sparse"),
          "--index", str(root / "impact"), "--impact", "--pretokenized", "--threads", "1"])

    # the vectors Pyserini wrote are exactly our encoder's (same model, K, max_length, title + ". " + text)
    import faiss

    from diffretriever_pyserini.encoders import DiffRetrieverDocumentEncoder

    docs = [json.loads(line) for line in (root / "corpus" / "part-00000.jsonl").read_text().splitlines()][:16]
    ours = DiffRetrieverDocumentEncoder("minilm", device="cpu", k=4, max_length=128).read(
        [d["contents"] for d in docs])
    index = faiss.read_index(str(root / "dense" / "index"))
    np.testing.assert_allclose(index.reconstruct_n(0, 16), ours.single, atol=1e-5)
    assert [r["vector"] for r in rows[:16]] == ours.sparse

    run = root / "hybrid.trec"
    _run(["pyserini.search.hybrid",
          "dense", "--index", str(root / "dense"), "--encoder", spec, "--device", "cpu",
          "sparse", "--index", str(root / "impact"), "--encoder", spec + "&output=sparse", "--impact",
          "fusion", "--alpha", "0.001",
          "run", "--topics", str(root / "topics.tsv"), "--output", str(run), "--hits", "100"])
    for mode, args in [("faiss", ["pyserini.search.faiss", "--index", str(root / "dense"), "--encoder", spec,
                                  "--device", "cpu"]),
                       ("impact", ["pyserini.search.lucene", "--impact", "--index", str(root / "impact"),
                                   "--encoder", spec + "&output=sparse"])]:
        _run([*args, "--topics", str(root / "topics.tsv"), "--output", str(root / f"{mode}.trec"), "--hits", "100"])

    # Pyserini's own fusion and trec_eval on those runs
    _run(["pyserini.fusion", "--runs", str(root / "faiss.trec"), str(root / "impact.trec"), "--output",
          str(root / "fused.trec"), "--method", "rrf", "--k", "100"])
    scored = _run(["pyserini.eval.trec_eval", "-c", "-m", "ndcg_cut.10", str(root / "qrels.txt"),
                   str(root / "impact.trec")])

    from diffretriever_pyserini.evaluate.metrics import evaluate_run_file

    ndcg = evaluate_run_file(root / "impact.trec", root / "qrels.txt")["metrics"]["ndcg_cut_10"]
    assert f"{ndcg:.4f}" in scored.stdout.split("ndcg_cut_10")[1].split("\n")[0]
    for name in ("hybrid", "faiss", "impact", "fused"):
        rec = evaluate_run_file(root / f"{name}.trec", root / "qrels.txt")
        assert rec["queries_in_run"] >= 18
        assert 0.0 <= rec["metrics"]["ndcg_cut_10"] <= 1.0
    # the sparse side retrieves clearly above chance on 150 documents with the relevant ones inside
    assert evaluate_run_file(root / "impact.trec", root / "qrels.txt")["metrics"]["ndcg_cut_10"] > 0.2


def test_a_pyserini_topics_name_resolves_where_pyserini_holds_it(tmp_path):
    """A topics name goes through Pyserini's own lookup: what it returns becomes a TSV file the pipeline reads (here
    Pyserini's lookup answers from a stub, as it would from its cache); offline with nothing cached (both stacks
    download topics on first use) the name is one clear error before anything runs."""
    code = ("from pyserini.search import _base; "
            "_base.get_topics = lambda name: {1: {'title': 'first  topic'}, 'b2': {'title': 'second'}}; "
            "from diffretriever_pyserini.pyserini_bridge.topics import local_file; "
            "print('FOUND', local_file('my-topics', 'topics'))")
    cmd, env = offline([sys.executable, "-c", code], {**_env(), "PYSERINI_CACHE": str(tmp_path / "cache")})
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    found = Path(out.stdout.split("FOUND ", 1)[1].strip())
    assert found == tmp_path / "cache" / "diffretriever-topics" / "my-topics.tsv"
    assert found.read_text() == "1\tfirst topic\nb2\tsecond\n"
    run = tmp_path / "r.trec"
    run.write_text("1 Q0 d 1 1.0 t\n")
    cmd, env = offline([sys.executable, "-m", "diffretriever_pyserini", "check-run", "--run", str(run),
                        "--topics", "beir-v1.0.0-scifact-test"], {**_env(), "PYSERINI_CACHE": str(tmp_path)})
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    last = res.stderr.strip().splitlines()[-1]  # after the offline catalogue's log lines
    assert res.returncode == 2 and last.startswith("diffretriever-pyserini: error: topics"), res.stderr
    assert "neither a file nor a topics name Pyserini holds" in last
