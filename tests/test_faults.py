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
    from diffretriever_pyserini.search.runs import ranked, read_run

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


def _tiny_beir(root: Path, docs: dict[str, str], name: str = "scifact") -> Path:
    folder = root / name
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps({"_id": d, "title": "", "text": t}) + "\n"
                                                 for d, t in docs.items()))
    (folder / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "microglia in the brain"}) + "\n")
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    return root


def test_encodings_are_rebuilt_when_the_corpus_changes(tmp_path, caplog):
    """Same --work, another mirror with more documents (or an edited text): encoded again, every document findable."""
    from diffretriever_pyserini.pipeline import Paths, RunConfig, step_encode

    docs = {f"d{i}": f"microglia cells number {i} in the brain" for i in range(6)}
    a = _tiny_beir(tmp_path / "a", docs)
    b = _tiny_beir(tmp_path / "b", {**docs, **{f"e{i}": f"astrocytes {i}" for i in range(3)}})
    common = dict(dataset="scifact", model="minilm", k_q=2, k_p=2, p_max_length=64, q_max_length=64, device="cpu",
                  work=str(tmp_path / "work"), runs=str(tmp_path / "runs"))
    step_encode(RunConfig(mirror=str(a), **common))
    cfg = RunConfig(mirror=str(b), **common)
    step_encode(cfg)
    docids = (Paths(cfg.resolved()).encodings.dense / "docid").read_text().split()
    assert len(docids) == 9 and "e2" in docids
    assert "another corpus" in caplog.text
    step_encode(cfg)  # unchanged now: reused
    assert caplog.text.count("encoding again") == 1


def test_non_finite_vectors_and_all_empty_sparse_fail_the_encode(tmp_path):
    from diffretriever_pyserini.encode.corpus import EncodeOutputs, encode_corpus
    from diffretriever_pyserini.errors import UserError
    from diffretriever_pyserini.readout.readers import build_reader

    reader = build_reader("minilm", "passage", device="cpu", k=2, max_length=64)
    docs = [{"id": f"d{i}", "contents": f"microglia {i}"} for i in range(4)]
    with pytest.MonkeyPatch.context() as mp:
        real = reader.read

        def broken(texts):
            out = real(texts)
            out.dense[1, 0, 0] = float("nan")
            return out

        mp.setattr(reader, "read", broken)
        with pytest.raises(UserError, match=r"model .*minilm.* gave non-finite vectors for 1 of 4 documents"):
            encode_corpus(reader, docs, EncodeOutputs(tmp_path / "nan"), batch_size=4)
    assert not EncodeOutputs(tmp_path / "nan").is_complete() and not list(tmp_path.rglob("*.tmp-*"))
    empty = [{"id": f"d{i}", "contents": ""} for i in range(3)]
    with pytest.raises(UserError, match="every one of the 3 sparse vectors is empty .*every document text is empty"):
        encode_corpus(reader, empty, EncodeOutputs(tmp_path / "empty"), batch_size=4)
    assert not EncodeOutputs(tmp_path / "empty").is_complete()


@pytest.mark.parametrize("config, needle", [
    ({"n_gen_tokens": 0}, "'n_gen_tokens' must be an integer from 1 to 128, got 0"),
    ({"n_gen_tokens": -4}, "'n_gen_tokens' must be an integer from 1 to 128, got -4"),
    ({"n_gen_tokens": 10000}, "got 10000"),
    ({"n_gen_tokens": "four"}, "got 'four'"),
    ({"n_gen_tokens": "4"}, "got '4'"),
    ({"n_gen_tokens": 4.9}, "got 4.9"),
    ({"n_gen_tokens": 4, "num_denoise_steps": -3}, "'num_denoise_steps' must be an integer from 1 to 128"),
    ({"n_gen_tokens": 4, "query_prefix_ids": [1, "x"]}, "'query_prefix_ids' must be a list of token ids"),
    ({"n_gen_tokens": 4, "use_eos": "yes"}, "'use_eos' must be true or false"),
    ({}, "no readout settings"),
    ([4], "expected a JSON object"),
])
def test_retriever_config_is_checked_at_the_door(tmp_path, config, needle):
    from diffretriever_pyserini.readout import finetuned

    (tmp_path / "retriever_config.json").write_text(json.dumps(config))
    with pytest.raises(finetuned.FineTunedError, match="retriever_config.json: .*" + re_escape(needle)):
        finetuned.find(str(tmp_path))


def re_escape(text: str) -> str:
    import re

    return re.escape(text)


def test_ids_outside_the_vocabulary_and_the_cli_line(tmp_path):
    from diffretriever_pyserini.backbones.masked_lm import packaged_model_path

    model = tmp_path / "model"
    import shutil

    shutil.copytree(packaged_model_path("minilm"), model)
    (model / "retriever_config.json").write_text(json.dumps({"model_type": "masked_lm", "n_gen_tokens": 2,
                                                             "query_prefix_ids": [101, 999999],
                                                             "query_suffix_ids": [102]}))
    mirror = _tiny_beir(tmp_path / "m", {"d1": "microglia", "d2": "astrocytes"})
    out = subprocess.run([sys.executable, "-m", "diffretriever_pyserini", "run", "--dataset", "scifact", "--model",
                          str(model), "--mirror", str(mirror), "--work", str(tmp_path / "w"), "--runs",
                          str(tmp_path / "r"), "--device", "cpu"], env={**os.environ, "PYTHONPATH": str(REPO)},
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 2, out.stderr[-3000:]
    lines = [line for line in out.stderr.splitlines() if line.startswith("diffretriever-pyserini: error:")]
    assert len(lines) == 1 and "retriever_config.json" in lines[0] and "outside the vocabulary" in lines[0]
    assert "999999" in lines[0] and "Traceback" not in out.stderr


@pytest.mark.parametrize("config, needle", [
    ({"r": 0, "lora_alpha": 16}, "field 'r' must be a positive integer, got 0"),
    ({"lora_alpha": 16}, "field 'r' (the LoRA rank) is missing"),
    ({"r": 8, "lora_alpha": "big"}, "field 'lora_alpha' must be a positive number"),
    ({"r": 8, "rank_pattern": {"q": 0}}, "field 'rank_pattern': 'q' must be a positive integer"),
])
def test_adapter_config_is_checked_at_the_door(tmp_path, config, needle):
    from diffretriever_pyserini.backbones.checkpoint import check_lora_config
    from diffretriever_pyserini.errors import UserError

    with pytest.raises(UserError, match="adapter_config.json: " + re_escape(needle)):
        check_lora_config(config, tmp_path / "adapter_config.json")


def test_denoise_steps_and_k_are_bounded(tmp_path):
    from diffretriever_pyserini.errors import UserError
    from diffretriever_pyserini.pipeline import RunConfig

    with pytest.raises(UserError, match="denoise_steps 1000000 is more than K \\(4\\)"):
        RunConfig(dataset="scifact", k_q=4, k_p=4, denoise_steps=1_000_000).validate()
    with pytest.raises(UserError, match="k_p must be at most 128, got 10000"):
        RunConfig(dataset="scifact", k_q=4, k_p=10_000).validate()
    RunConfig(dataset="scifact", k_q=4, k_p=16, denoise_steps=16).validate()


@pytest.mark.slow
@pytest.mark.parametrize("signame, code", [("SIGINT", 130), ("SIGTERM", 143)])
def test_a_signal_during_encode_ends_cleanly(scifact_slice, tmp_path, signame, code):
    """SIGINT and SIGTERM alike: one 'interrupted' line, exit 128 + signal, no temporary folder or lock left."""
    import signal

    work = tmp_path / "work"
    proc = subprocess.Popen([sys.executable, "-m", "diffretriever_pyserini", "encode", "--dataset", "scifact",
                             "--mirror", str(scifact_slice), "--work", str(work), "--runs", str(tmp_path / "runs"),
                             "--device", "cpu", "--batch-size", "8"], stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    deadline = time.monotonic() + 300
    while not list(work.rglob(".sparse.tmp-*")) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1)
    proc.send_signal(getattr(signal, signame))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err[-3000:]
    lines = [line for line in err.splitlines() if line.startswith("diffretriever-pyserini:")]
    assert lines == [f"diffretriever-pyserini: interrupted ({signame}); no output was left half-written, run the "
                     "same command again to resume"], err[-3000:]
    assert "Traceback" not in err and "terminate called" not in err
    leftovers = [p for p in work.rglob("*") if ".tmp-" in p.name or p.name.endswith(".lock")]
    assert not leftovers, leftovers


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "diffretriever_pyserini", *map(str, args)], capture_output=True,
                          text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})


def _one_line(proc, *needles):
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("diffretriever-pyserini: error:")]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_fusing_runs_with_disjoint_topics_is_refused(tmp_path):
    a, b = tmp_path / "a.trec", tmp_path / "b.trec"
    a.write_text("q1 Q0 d1 1 2.0 a\nq1 Q0 d2 2 1.0 a\n")
    b.write_text("q9 Q0 d1 1 2.0 b\n")
    _one_line(_cli("fuse", "--runs", a, b, "--out", tmp_path / "f.trec"), "share no topic", "1 in",
              "a.trec")
    assert not (tmp_path / "f.trec").exists()


def test_a_mirror_that_is_a_symlink_loop_is_named_as_such(tmp_path):
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    _one_line(_cli("prepare", "--dataset", "scifact", "--mirror", loop, "--work", tmp_path / "w"),
              "symbolic link loop", str(loop))


@pytest.mark.parametrize("options, needle", [
    (["--dense-index", "sq8", "--modes", "sparse"],
     "--dense-index sq8 is only read by modes that search the dense list"),
    (["--maxsim", "compressed", "--modes", "dense,sparse"], "--maxsim compressed is only read by multi_dense"),
])
def test_contradictory_options_are_refused(tmp_path, options, needle):
    _one_line(_cli("search", "--dataset", "scifact", "--work", tmp_path / "w", *options), needle)


def _dense_folder(folder: Path, n: int, k: int = 4, dim: int = 32) -> Path:
    import numpy as np

    from diffretriever_pyserini.encode.writers import FaissWriter

    rng = np.random.default_rng(0)
    kv = rng.standard_normal((n, k, dim)).astype("float32")
    kv /= np.linalg.norm(kv, axis=-1, keepdims=True)
    with FaissWriter(folder, {}, "float32") as writer:
        writer.write([f"d{i}" for i in range(n)], kv.mean(1), kv)
    return folder


def test_small_corpora_get_a_clear_error_for_trained_indexes(tmp_path):
    from diffretriever_pyserini.index import compressed
    from diffretriever_pyserini.index import dense as dense_index
    from diffretriever_pyserini.errors import UserError

    small = _dense_folder(tmp_path / "small" / "dense", 40)
    for kind in ("pq", "ivfpq"):
        with pytest.raises(UserError, match=f"--dense-index {kind} trains 256 centroids .* this corpus has 40: use"):
            dense_index.build_dense_index(small, kind)
    assert dense_index.build_dense_index(small, "sq8").is_dir()  # untrained types still work
    one = _dense_folder(tmp_path / "one" / "dense", 1)
    with pytest.raises(UserError, match="--maxsim compressed needs at least 16 documents .* has 1: use --maxsim exact"):
        compressed.build_store(one)
    assert not (one / compressed.FOLDER / "manifest.json").exists()


def _flip(path: Path, offset: int, count: int = 64) -> None:
    data = bytearray(path.read_bytes())
    for i in range(offset, min(offset + count, len(data))):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def test_damaged_index_files_are_named_when_opened(tmp_path):
    """Flipped bytes inside, a flipped header, a truncated file, a docid file one line off: each names the file and
    says to rebuild; an intact folder opens (and is hashed once, then trusted by size and time)."""
    from diffretriever_pyserini.index import compressed
    from diffretriever_pyserini.index import dense as dense_index
    from diffretriever_pyserini.errors import UserError
    from diffretriever_pyserini.integrity import STAMP
    from diffretriever_pyserini.index.multivector import MultiVectorStore
    from diffretriever_pyserini.pyserini_bridge.search import dense_searcher

    def fresh(name):
        return _dense_folder(tmp_path / name / "dense", 40)

    dense = fresh("ok")
    assert len(MultiVectorStore.open(dense).docids) == 40 and (dense / STAMP).is_file()
    folder = dense_index.build_dense_index(dense, "sq8")
    dense_searcher(folder, None)  # verified: opens

    dense = fresh("inside")
    _flip(dense / "kvectors.npy", 4096, 256)
    with pytest.raises(UserError, match=r"kvectors.npy: its sha256 differs .* delete .* to rebuild it"):
        MultiVectorStore.open(dense)
    folder = dense_index.build_dense_index(fresh("sq8"), "sq8")
    _flip(folder / "index", 0, 8)  # the header
    with pytest.raises(UserError, match=r"sq8/index: its sha256 differs"):
        dense_searcher(folder, None)
    dense = fresh("cut")
    (dense / "index").write_bytes((dense / "index").read_bytes()[:-100])
    with pytest.raises(UserError, match=r"dense/index: \d+ bytes where \d+ were written"):
        dense_searcher(dense, None)
    dense = fresh("docid")
    lines = (dense / "docid").read_text().splitlines()
    (dense / "docid").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(UserError, match=r"dense/docid: \d+ bytes where"):
        dense_searcher(dense, None)
    store = compressed.build_store(fresh("store"))
    _flip(store / "residual_codes.npy", 200, 64)
    with pytest.raises(UserError, match=r"residual_codes.npy: its sha256 differs"):
        compressed.CompressedStore(store, [f"d{i}" for i in range(40)])


def test_second_adversarial_round_findings(tmp_path, caplog):
    """Found by an independent round on tiny folders: each is a warning or a one-line error, never a traceback."""
    from diffretriever_pyserini.datasets import get_dataset, prepare

    judged_elsewhere = _tiny_beir(tmp_path / "m", {"d2": "astrocytes", "d3": "neurons"})  # qrels judge d1 only
    prepare(get_dataset("scifact"), tmp_path / "data", mirror=judged_elsewhere)
    assert "1 judged documents are not in the corpus (e.g. ['d1']); they can never be retrieved" in caplog.text
    mirror = _tiny_beir(tmp_path / "ok", {"d1": "microglia", "d2": "astrocytes"})
    common = ["--dataset", "scifact", "--mirror", mirror, "--work", tmp_path / "w", "--runs", tmp_path / "r"]
    _one_line(_cli("search", *common), "missing encodings or impact index", "run encode and index first")
    _one_line(_cli("baselines", "--bm25-only", *common, env={"DIFFRETRIEVER_JAVA_HEAP": "lots"}),
              "DIFFRETRIEVER_JAVA_HEAP='lots': expected a size such as 512m or 4g")


HYBRID_TIES = """
from types import SimpleNamespace as Hit
from diffretriever_pyserini.pyserini_bridge.search import hybrid_search
class Searcher:
    def __init__(self, hits): self.hits = hits
    def search(self, q, k=10): return [Hit(docid=d, score=s) for d, s in self.hits[:k]]
# normalised, d00-d08 and d20-d28 all fuse to 0: 18 tied documents for 10 places
dense = Searcher([(f"d{i:02d}", 1.0) for i in range(9)] + [("d09", 0.5)])
sparse = Searcher([(f"d{i:02d}", 2.0) for i in range(20, 29)] + [("d29", 1.0)])
run = hybrid_search(dense, sparse, {"q": "x"}, k=10)
print(sorted(run["q"].items()))
"""


def test_pyserini_hybrid_is_the_same_whatever_the_hash_seed():
    """Pyserini cuts its fused list with ties in set order (PYTHONHASHSEED); the run must not depend on it."""
    outs = {subprocess.run([sys.executable, "-c", HYBRID_TIES], capture_output=True, text=True, timeout=300,
                           env={**os.environ, "PYTHONPATH": str(REPO), "PYTHONHASHSEED": seed}).stdout
            for seed in ("1", "2", "3")}
    assert len(outs) == 1 and "d00" in next(iter(outs)), outs


def test_a_topic_whose_sparse_vector_matches_nothing_still_has_sparse_entries(tmp_path):
    """sparse.trec keeps every topic (its dense list, recorded), so every per-mode run passes check-run."""
    from diffretriever_pyserini.pipeline import RunConfig, run_dataset
    from diffretriever_pyserini.datasets import read_topics
    from diffretriever_pyserini.search.runs import check_run

    mirror = _tiny_beir(tmp_path / "m", {f"d{i}": f"microglia activation in brain tissue sample {i}"
                                         for i in range(6)})
    queries = mirror / "scifact" / "queries.jsonl"
    queries.write_text(queries.read_text() + json.dumps({"_id": "q2", "text": "xylophone zeppelin quokka"}) + "\n")
    (mirror / "scifact" / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\n")
    cfg = RunConfig(dataset="scifact", model="minilm", k_q=2, k_p=2, p_max_length=64, q_max_length=64,
                    device="cpu", mirror=str(mirror), work=str(tmp_path / "w"), runs=str(tmp_path / "r"))
    run_dataset(cfg)
    folder = next((tmp_path / "r" / "beir-v1.0.0-scifact").iterdir())
    topics = read_topics(tmp_path / "w" / "data" / "scifact" / "topics.tsv")
    for run in folder.glob("*.trec"):
        assert check_run(run, topics) == [], run.name
    config = json.loads((folder / "config.json").read_text())
    assert "q2" in config["sparse_unmatched_topics"]["topics"]  # nonsense words match no document
