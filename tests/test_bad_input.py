"""Bad input, faults and untrusted models: every case ends in one clear line (file and line where there is one), exit
code 2, and no output left half-written; no remote code ever runs.

Fixtures are written by the tests themselves (small BEIR folders, broken gzip files, model folders with custom
code); the kill tests send SIGKILL to real commands.
"""

import errno
import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "diffretriever_pyserini"]


def run_cli(*args, cwd=None, input=None, env=None, timeout=600):
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, cwd=cwd or REPO, input=input,
                          env={**os.environ, "BEIR_MIRROR": "", **(env or {})}, timeout=timeout)


def assert_one_line_error(proc, *needles):
    """Exit code 2, a single ``diffretriever-pyserini: error:`` line naming what is wrong, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-2000:], proc.stderr[-3000:])
    lines = [line for line in proc.stderr.splitlines() if line.startswith("diffretriever-pyserini: error:")]
    assert len(lines) == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def no_leftovers(root: Path) -> list[Path]:
    """Temporary outputs and completion markers anywhere under ``root`` (there must be none after a failure)."""
    return [p for p in Path(root).rglob("*") if ".tmp-" in p.name or p.name in (".complete", "metadata.json")]


def beir_folder(root: Path, corpus_lines=None, queries=None, qrels=None, name="scifact") -> Path:
    """A tiny BEIR folder ``root/<name>``; any part can be given as raw lines."""
    folder = root / name
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    corpus_lines = corpus_lines if corpus_lines is not None else [
        json.dumps({"_id": f"d{i}", "title": f"title {i}", "text": f"microglia text {i}"}) for i in range(5)]
    queries = queries if queries is not None else [json.dumps({"_id": "q1", "text": "what is microglia"})]
    qrels = qrels if qrels is not None else ["query-id\tcorpus-id\tscore", "q1\td1\t1"]
    (folder / "corpus.jsonl").write_text("\n".join(corpus_lines) + "\n")
    (folder / "queries.jsonl").write_text("\n".join(queries) + "\n")
    (folder / "qrels" / "test.tsv").write_text("\n".join(qrels) + "\n")
    return root


# --------------------------------------------------------------------------- remote code


EVIL = """from pathlib import Path
Path({marker!r}).write_text("remote code ran")
"""


def evil_folder(src: Path, dst: Path, model_type: str) -> Path:
    shutil.copytree(src, dst)
    config = json.loads((dst / "config.json").read_text())
    config.update(model_type=model_type, auto_map={"AutoConfig": "evil.EvilConfig", "AutoModel": "evil.EvilModel",
                                                   "AutoModelForCausalLM": "evil.EvilModel",
                                                   "AutoTokenizer": ["evil.EvilTokenizer", None]})
    (dst / "config.json").write_text(json.dumps(config))
    tok_config = dst / "tokenizer_config.json"
    if tok_config.is_file():
        tc = json.loads(tok_config.read_text())
        tc["auto_map"] = {"AutoTokenizer": ["evil.EvilTokenizer", None]}
        tok_config.write_text(json.dumps(tc))
    return dst


@pytest.fixture(scope="module")
def evil_models(tmp_path_factory):
    from diffretriever_pyserini.backbones.masked_lm import packaged_model_path
    from diffretriever_pyserini.testing.tiny import write_checkpoint

    root = tmp_path_factory.mktemp("evil")
    marker = root / "MARKER"
    folders = {
        "masked_lm": evil_folder(packaged_model_path("minilm"), root / "bert", "evilbert"),
        "dream": evil_folder(write_checkpoint(root / "d0", "dream"), root / "dream", "Dream"),
        "llada": evil_folder(write_checkpoint(root / "l0", "llada"), root / "llada", "llada"),
        "autoregressive": evil_folder(write_checkpoint(root / "q0", "qwen2"), root / "qwen", "qwen2"),
    }
    for folder in folders.values():
        (folder / "evil.py").write_text(EVIL.format(marker=str(marker)))
    return folders, marker


@pytest.mark.parametrize("family", ["masked_lm", "dream", "llada", "autoregressive"])
def test_remote_code_never_runs_with_any_family(evil_models, family):
    folders, marker = evil_models
    code = ("from diffretriever_pyserini.backbones import load_backbone\n"
            f"load_backbone({str(folders[family])!r}, family={family!r}, device='cpu')\n")
    proc = subprocess.run([sys.executable, "-c", code], input="y\ny\ny\n", capture_output=True, text=True,
                          cwd=REPO, timeout=300)
    assert not marker.exists(), proc.stderr[-2000:]
    assert "Do you wish to run the custom code" not in proc.stdout + proc.stderr
    if family == "masked_lm":  # an unknown model type with custom code: refused, not run
        assert proc.returncode != 0 and "trust_remote_code" in proc.stderr
    else:  # the native / built-in architecture is used; auto_map is ignored
        assert proc.returncode == 0, proc.stderr[-2000:]


def test_remote_code_never_runs_through_pyserini_encode(evil_models, tmp_path):
    folders, marker = evil_models
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "docs.jsonl").write_text(json.dumps({"id": "d1", "contents": "microglia"}) + "\n")
    for family in ("masked_lm", "dream"):
        proc = subprocess.run(
            [sys.executable, "-m", "pyserini.encode", "input", "--corpus", str(corpus), "output", "--embeddings",
             str(tmp_path / f"out-{family}"), "encoder", "--encoder",
             f"diffretriever:{folders[family]}?family={family}&k=2", "--device", "cpu", "--dimension", "64"],
            input="y\ny\ny\n", capture_output=True, text=True, cwd=REPO, timeout=600)
        assert not marker.exists(), proc.stderr[-2000:]
        assert "Do you wish to run the custom code" not in proc.stdout + proc.stderr


# --------------------------------------------------------------------------- broken input files


@pytest.mark.parametrize("kind", ["truncated", "not-gzip", "corrupted"])
def test_broken_gzip_corpus_is_named(tmp_path, kind):
    mirror = beir_folder(tmp_path / "mirror")
    plain = (mirror / "scifact" / "corpus.jsonl").read_bytes() * 200
    packed = gzip.compress(plain)
    data = {"truncated": packed[: len(packed) // 2], "not-gzip": plain,
            "corrupted": packed[:30] + bytes(b ^ 0xFF for b in packed[30:60]) + packed[60:]}[kind]
    (mirror / "scifact" / "corpus.jsonl").unlink()
    (mirror / "scifact" / "corpus.jsonl.gz").write_bytes(data)
    proc = run_cli("prepare", "--dataset", "scifact", "--mirror", mirror, "--work", tmp_path / "work")
    line = assert_one_line_error(proc, "corpus.jsonl.gz")
    assert "gzip" in line
    assert not no_leftovers(tmp_path / "work")


def test_ids_that_runs_cannot_hold_are_refused_at_the_door(tmp_path):
    cases = {
        "corpus.jsonl:3": dict(corpus_lines=[json.dumps({"_id": "d0", "text": "a"}),
                                             json.dumps({"_id": "d1", "text": "b"}),
                                             json.dumps({"_id": "doc 2", "text": "c"})]),
        "queries.jsonl:1": dict(queries=[json.dumps({"_id": "q\t1", "text": "x"})]),
        "test.tsv:2": dict(qrels=["query-id\tcorpus-id\tscore", "q1\td\n1\t1"]),
        "corpus.jsonl:1": dict(corpus_lines=[json.dumps({"_id": "d\u00010", "text": "a"})]),
    }
    for where, parts in cases.items():
        root = tmp_path / where.replace(":", "_")
        mirror = beir_folder(root / "mirror", **parts)
        proc = run_cli("prepare", "--dataset", "scifact", "--mirror", mirror, "--work", root / "work")
        assert_one_line_error(proc, where)
        assert not no_leftovers(root / "work")


def test_qrels_evaluation_errors(tmp_path):
    run = tmp_path / "run.trec"
    run.write_text("q1 Q0 d1 1 1.0 tag\n")
    empty = tmp_path / "empty.qrels"
    empty.write_text("")
    assert_one_line_error(run_cli("evaluate", "--run", run, "--qrels", empty), "empty.qrels", "no judgments")
    bad = tmp_path / "bad.qrels"
    bad.write_text("q1 0 d1 1\nq1 0 d2 high\n")
    assert_one_line_error(run_cli("evaluate", "--run", run, "--qrels", bad), "bad.qrels:2", "not an integer")
    # a BEIR qrels file with a byte-order mark: the header is still recognised
    from diffretriever_pyserini.datasets import read_beir_qrels

    (tmp_path / "b" / "qrels").mkdir(parents=True)
    (tmp_path / "b" / "qrels" / "test.tsv").write_text("\ufeffquery-id\tcorpus-id\tscore\nq1\td1\t1\n")
    assert read_beir_qrels(tmp_path / "b", "test") == {"q1": {"d1": 1}}


def test_non_finite_scores_are_never_written_or_passed(tmp_path):
    from diffretriever_pyserini.errors import UserError
    from diffretriever_pyserini.search.runs import check_run, write_run

    run = tmp_path / "nan.trec"
    run.write_text("q1 Q0 d1 1 nan tag\nq1 Q0 d2 2 0.5 tag\n")
    problems = check_run(run, ["q1"])
    assert any("not a finite number" in p for p in problems)
    proc = run_cli("check-run", "--run", run, "--topics", _topics(tmp_path))
    assert proc.returncode == 1 and "fit for submission" not in proc.stdout
    with pytest.raises(UserError, match="cannot be written"):
        write_run(tmp_path / "out.trec", {"q1": {"d1": float("inf")}}, "tag")
    with pytest.raises(UserError, match="cannot be written"):
        write_run(tmp_path / "out.trec", {"q1": {"doc 1": 1.0}}, "tag")
    assert not (tmp_path / "out.trec").exists() and not list(tmp_path.glob(".out.trec.*"))
    assert_one_line_error(run_cli("evaluate", "--run", run, "--qrels", _qrels(tmp_path)), "nan.trec:1", "finite")


def _topics(tmp_path):
    path = tmp_path / "topics.tsv"
    path.write_text("q1\tmicroglia\n")
    return path


def _qrels(tmp_path):
    path = tmp_path / "q.qrels"
    path.write_text("q1 0 d1 1\n")
    return path


def test_fuse_refuses_an_empty_run(tmp_path):
    good, empty = tmp_path / "a.trec", tmp_path / "b.trec"
    good.write_text("q1 Q0 d1 1 1.0 a\n")
    empty.write_text("")
    assert_one_line_error(run_cli("fuse", "--runs", good, empty, "--out", tmp_path / "f.trec"), "b.trec",
                          "no hits")
    assert not (tmp_path / "f.trec").exists()


def test_training_data_errors_and_missing_positives(tmp_path, caplog):
    from diffretriever_pyserini.datasets import DatasetError
    from diffretriever_pyserini.training.data import TrainingExample, keep_known_documents, scifact_training_claims

    folder = beir_folder(tmp_path, queries=[json.dumps({"text": "a claim without id", "metadata": {"d1": []}})])
    with pytest.raises(DatasetError, match=r"queries.jsonl:1: record has no id"):
        scifact_training_claims(folder / "scifact")
    examples = [TrainingExample("q1", "x", ["d1", "gone1"], ["d2", "gone2"]), TrainingExample("q2", "y", ["gone3"])]
    with caplog.at_level("WARNING"):
        kept = keep_known_documents(examples, {"d1", "d2"}, "test")
    assert kept == [TrainingExample("q1", "x", ["d1"], ["d2"])]
    assert "2 positive document ids are not in the corpus" in caplog.text and "1 of 2 examples" in caplog.text


# --------------------------------------------------------------------------- options, downloads, checkpoints


@pytest.mark.parametrize("command,args,needle", [
    ("encode", ["--shard-num", "4", "--shard-id", "4"], "--shard-id 4 is outside 0..3 (--shard-num 4)"),
    ("encode", ["--shard-id", "-1"], "--shard-id -1"),
    ("encode", ["--window", "0"], "--window must be at least 1"),
    ("encode", ["--batch-size", "0"], "--batch-size must be at least 1"),
    ("search", ["--modes", "dense,fast"], "--modes names unknown mode(s) ['fast']"),
    ("prepare", ["--topics", "t.tsv"], "--topics is read only with --corpus"),
])
def test_bad_options_are_one_line_errors(tmp_path, command, args, needle):
    proc = run_cli(command, "--dataset", "scifact", "--mirror", beir_folder(tmp_path / "m"), "--work",
                   tmp_path / "work", *args)
    assert_one_line_error(proc, needle)


def test_download_404_names_the_url(tmp_path):
    import http.server
    import threading

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/nowhere"
        proc = run_cli("prepare", "--dataset", "scifact", "--work", tmp_path / "work",
                       env={"BEIR_URL": url, "DIFFRETRIEVER_CACHE": str(tmp_path / "cache")})
    finally:
        server.shutdown()
    assert_one_line_error(proc, f"{url}/scifact.zip", "HTTP 404")
    assert not any((tmp_path / "cache").rglob("*.zip"))


def test_pickle_only_checkpoints_are_refused(tmp_path):
    from diffretriever_pyserini.backbones import load_backbone
    from diffretriever_pyserini.testing.tiny import write_checkpoint
    from diffretriever_pyserini.errors import UserError

    for family in ("dream", "qwen2"):
        folder = write_checkpoint(tmp_path / family, family)
        for shard in folder.glob("*.safetensors"):
            shard.unlink()
        (folder / "model.safetensors.index.json").unlink()
        (folder / "pytorch_model.bin").write_bytes(b"not loaded")
        with pytest.raises(UserError, match="pickled weights are never loaded"):
            load_backbone(str(folder), device="cpu")


def test_unknown_model_and_bad_config_json(tmp_path):
    proc = run_cli("encode", "--dataset", "scifact", "--mirror", beir_folder(tmp_path / "m"), "--work",
                   tmp_path / "w", "--model", tmp_path / "nothing-here")
    assert_one_line_error(proc, "nothing-here")
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "config.json").write_text("{not json")
    from diffretriever_pyserini.backbones.checkpoint import read_config
    from diffretriever_pyserini.errors import UserError

    with pytest.raises(UserError, match="config.json:1: not valid JSON"):
        read_config(folder)


def test_verbose_shows_the_traceback(tmp_path):
    proc = run_cli("-v", "evaluate", "--run", tmp_path / "missing.trec", "--qrels", tmp_path / "missing.qrels")
    assert proc.returncode == 2 and "Traceback" in proc.stderr
    assert "diffretriever-pyserini: error:" in proc.stderr and "missing" in proc.stderr


# --------------------------------------------------------------------------- mirrors


def test_mirror_files_are_verified_and_changes_prepare_again(tmp_path, caplog):
    from conftest import beir_mirror

    from diffretriever_pyserini.datasets import get_dataset, prepare

    official = tmp_path / "official"
    shutil.copytree(beir_mirror() / "scifact", official / "scifact")
    with caplog.at_level("INFO"):
        prepared = prepare(get_dataset("scifact"), tmp_path / "work", official)
    stats = json.loads((prepared.root / "dataset.json").read_text())
    assert stats["verification"]["corpus.jsonl"] == "official (sha256 verified)"
    assert stats["verification"]["queries.jsonl"] == "official (sha256 verified)"
    assert stats["verification"]["qrels/test.tsv"].startswith("not verified")
    # an edited mirror file: prepared again, with a warning that it is not the official file
    edited = tmp_path / "edited"
    shutil.copytree(official / "scifact", edited / "scifact")
    queries = (edited / "scifact" / "queries.jsonl").read_text().replace("0-dimensional", "zero-dimensional", 1)
    (edited / "scifact" / "queries.jsonl").write_text(queries)
    caplog.clear()
    with caplog.at_level("WARNING"):
        again = prepare(get_dataset("scifact"), tmp_path / "work", edited)
    assert "preparing it again" in caplog.text and "differs from the official BEIR queries.jsonl" in caplog.text
    stats = json.loads((again.root / "dataset.json").read_text())
    assert stats["verification"]["queries.jsonl"].startswith("differs from the official file")
    assert str(edited) in stats["source"]


# --------------------------------------------------------------------------- faults


def test_disk_full_leaves_nothing_and_names_the_space(tmp_path, monkeypatch):
    from diffretriever_pyserini.encode import writers
    from diffretriever_pyserini.encode.corpus import EncodeOutputs, encode_corpus
    from diffretriever_pyserini.encoders import DiffRetrieverDocumentEncoder
    from diffretriever_pyserini.errors import UserError

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writers, "raw_to_npy", full)  # the disk fills while the K vectors are finished
    encoder = DiffRetrieverDocumentEncoder("minilm", device="cpu", k=2)
    docs = [{"id": f"d{i}", "contents": f"microglia {i}"} for i in range(4)]
    outputs = EncodeOutputs(tmp_path / "enc")
    with pytest.raises(UserError, match=r"no space left on the device while writing \(about \d+ MB"):
        encode_corpus(encoder, docs, outputs, total=4)
    assert not outputs.is_complete() and not list(tmp_path.rglob("*.tmp-*"))


def test_a_killed_writer_leaves_a_temporary_that_the_next_run_removes(tmp_path):
    from diffretriever_pyserini.encode.writers import AtomicDir

    code = ("import time\nfrom diffretriever_pyserini.encode.writers import AtomicDir\n"
            f"with AtomicDir({str(tmp_path / 'out')!r}) as tmp:\n"
            "    (tmp / 'part').write_text('half')\n    print('ready', flush=True)\n    time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stale = list(tmp_path.glob(".out.tmp-*"))
    assert len(stale) == 1 and not (tmp_path / "out").exists()
    with AtomicDir(tmp_path / "out") as tmp:
        (tmp / "part").write_text("whole")
    assert not list(tmp_path.glob(".out.tmp-*")) and (tmp_path / "out" / "part").read_text() == "whole"


def test_a_second_writer_of_the_same_output_waits(tmp_path):
    """Three writers of one output: each runs alone, the waiters say so, and the lock file is gone at the end
    (a waiter holding the unlinked lock file of the first must not run beside one that opened the new file)."""
    code = ("import sys, time\nfrom diffretriever_pyserini.encode.writers import exclusive\n"
            f"with exclusive({str(tmp_path / 'enc')!r}):\n"
            "    print('start', sys.argv[1], time.time(), flush=True)\n    time.sleep(2)\n"
            "    print('end', sys.argv[1], time.time(), flush=True)\n")

    def start(name):
        return subprocess.Popen([sys.executable, "-c", code, name], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, cwd=REPO)

    first = start("a")
    assert first.stdout.readline().startswith("start a")
    waiters = [start("b"), start("c")]
    outputs = [first.communicate(timeout=60)] + [w.communicate(timeout=60) for w in waiters]
    intervals = []
    for index, (out, _) in enumerate(outputs):
        lines = ("start a 0\n" if index == 0 else "") + out
        times = {line.split()[0]: float(line.split()[2]) for line in lines.split("\n") if line.strip()}
        intervals.append((times["start"], times["end"]))
    intervals[0] = (0.0, intervals[0][1])
    intervals.sort()
    assert all(later[0] >= earlier[1] for earlier, later in zip(intervals, intervals[1:]))  # never two at once
    assert all("being written by another process" in err for _, err in outputs[1:])
    assert not list(tmp_path.glob(".*.lock"))


@pytest.mark.slow
def test_sigkill_during_lucene_indexing_leaves_no_orphan_and_the_rerun_completes(tmp_path):
    """A real impact index of 60,000 documents: kill the command while Pyserini indexes, check its child died with
    it, then rerun: the index is complete and the killed run's temporary folder is gone."""
    import random

    from diffretriever_pyserini.pyserini_bridge.lucene import index_is_complete

    sparse = tmp_path / "sparse"
    sparse.mkdir()
    rng = random.Random(0)
    vocab = [f"term{i}" for i in range(3000)]
    with open(sparse / "part-00000.jsonl", "w") as f:
        for i in range(60_000):
            vector = {t: rng.randint(1, 300) for t in rng.sample(vocab, 40)}
            f.write(json.dumps({"id": f"d{i}", "contents": "", "vector": vector}) + "\n")
    index = tmp_path / "index"
    code = ("import sys\nfrom diffretriever_pyserini.pyserini_bridge.lucene import build_impact_index\n"
            f"build_impact_index({str(sparse)!r}, {str(index)!r}, 1)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, start_new_session=False)
    child = None
    for _ in range(600):
        time.sleep(0.1)
        child = _find_child(proc.pid, "pyserini.index.lucene")
        if child and list(tmp_path.glob(".index.tmp-*")):
            break
    assert child, "the indexer never started"
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    for _ in range(100):
        if not Path(f"/proc/{child}").exists() or "zombie" in _state(child):
            break
        time.sleep(0.1)
    assert not Path(f"/proc/{child}").exists() or "zombie" in _state(child), "the indexer outlived its parent"
    assert not index_is_complete(index) and list(tmp_path.glob(".index.tmp-*"))
    rerun = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert index_is_complete(index) and not list(tmp_path.glob(".index.tmp-*"))


def _find_child(parent: int, needle: str) -> int | None:
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(fields[1]) == parent and needle in cmdline:
            return int(stat.parent.name)
    return None


def _state(pid: int) -> str:
    try:
        return (Path(f"/proc/{pid}/status")).read_text().split("State:")[1].split("\n")[0].lower()
    except (OSError, IndexError):
        return "gone"


def test_an_encoding_request_names_a_local_model_folder_by_its_absolute_path(tmp_path, monkeypatch):
    """The same fine-tuned folder named relative to two working directories is one request (its encodings are
    reused, not made again); a hub id stays as written."""
    from diffretriever_pyserini.pipeline import RunConfig, encoding_request
    from diffretriever_pyserini.pipeline.steps import _same_request

    model = tmp_path / "work" / "finetune" / "final"
    model.mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path)
    here = encoding_request(RunConfig(dataset="scifact", model="work/finetune/final"))
    monkeypatch.chdir(tmp_path / "elsewhere")
    there = encoding_request(RunConfig(dataset="scifact", model=str(model)))
    assert here["model"] == there["model"] == str(model.resolve()) and _same_request(here, there)
    assert encoding_request(RunConfig(dataset="scifact", model="GSAI-ML/LLaDA-8B-Instruct"))["model"] == \
        "GSAI-ML/LLaDA-8B-Instruct"
