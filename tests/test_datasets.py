"""Registry, conversion, bad input, and the checked download against a server on 127.0.0.1."""

import gzip
import hashlib
import http.server
import io
import json
import threading
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from diffretriever_pyserini import datasets as D


def write_beir(folder: Path, corpus_lines, queries=None, qrels="query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\t2\n"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "corpus.jsonl").write_bytes(b"".join(
        (line if isinstance(line, bytes) else line.encode()) + b"\n" for line in corpus_lines))
    queries = queries or [{"_id": "q1", "text": "what  is\tmicroglia"}, {"_id": "q9", "text": "unjudged"}]
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (folder / "qrels").mkdir(exist_ok=True)
    (folder / "qrels" / "test.tsv").write_text(qrels)
    return folder


GOOD = [json.dumps({"_id": "d1", "title": "Microglia", "text": "Brain immune cells."}),
        json.dumps({"_id": "d2", "title": "", "text": "Only text."}),
        json.dumps({"_id": "d3", "title": "", "text": ""})]


def test_registry_has_every_public_beir_set():
    names = set(D.DATASETS)
    for name in ["msmarco", "trec-covid", "nfcorpus", "nq", "hotpotqa", "fiqa", "arguana", "webis-touche2020",
                 "quora", "dbpedia-entity", "scidocs", "fever", "climate-fever", "scifact"]:
        assert name in names
    forums = [n for n in names if n.startswith("cqadupstack-")]
    assert len(forums) == 12
    assert D.get_dataset("scifact").pyserini_name == "beir-v1.0.0-scifact-test"
    assert D.get_dataset("beir-v1.0.0-cqadupstack-gis-test").subdir == "cqadupstack/gis"
    assert D.get_dataset("arguana").remove_query and D.get_dataset("quora").remove_query
    assert not D.get_dataset("scifact").remove_query


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(D.DatasetError, match="valid names: .*scifact"):
        D.get_dataset("scifakt")


def test_prepare_converts_to_pyserini_inputs(tmp_path):
    mirror = tmp_path / "mirror"
    write_beir(mirror / "scifact", GOOD)
    prepared = D.prepare(D.get_dataset("scifact"), tmp_path / "out", mirror=mirror)
    docs = list(D.iter_prepared_corpus(prepared.corpus_dir))
    assert [d["id"] for d in docs] == ["d1", "d2", "d3"]
    assert docs[0]["contents"] == "Microglia. Brain immune cells."
    assert docs[1]["contents"] == "Only text." and docs[2]["contents"] == ""
    assert prepared.topics.read_text() == "q1\twhat is microglia\n"  # judged queries only, whitespace collapsed
    assert prepared.qrels.read_text() == "q1 0 d1 1\nq1 0 d2 2\n"
    assert json.loads((prepared.root / "dataset.json").read_text())["empty_documents"] == 1
    assert prepared.is_complete()


@pytest.mark.parametrize("lines, message", [
    ([GOOD[0], "{not json"], r"corpus.jsonl:2: malformed JSON"),
    ([GOOD[0], json.dumps({"title": "x", "text": "y"})], r"corpus.jsonl:2: record has no id"),
    ([GOOD[0], GOOD[1], GOOD[0]], r"corpus.jsonl:3: duplicate document id 'd1' \(first at line 1\)"),
    ([GOOD[0], b'{"_id": "d9", "text": "caf\xe9"}'], r"corpus.jsonl:2: invalid UTF-8"),
])
def test_bad_corpus_is_reported_and_leaves_nothing(tmp_path, lines, message):
    mirror = tmp_path / "mirror"
    write_beir(mirror / "scifact", lines)
    out = tmp_path / "out"
    with pytest.raises(D.DatasetError, match=message):
        D.prepare(D.get_dataset("scifact"), out, mirror=mirror)
    assert not (out / "scifact").exists()
    assert list(out.iterdir()) == []  # the temporary folder is gone too


def test_missing_mirror_and_dataset_folder(tmp_path):
    with pytest.raises(D.DatasetError, match="mirror folder .* does not exist"):
        D.source_dir(D.get_dataset("scifact"), mirror=tmp_path / "nope")
    with pytest.raises(D.DatasetError, match="nfcorpus is not in the BEIR mirror"):
        D.source_dir(D.get_dataset("nfcorpus"), mirror=tmp_path)


def test_gzipped_mirror_like_the_shared_one(tmp_path):
    folder = write_beir(tmp_path / "mirror" / "scifact", GOOD)
    raw = (folder / "corpus.jsonl").read_bytes()
    (folder / "corpus.jsonl").unlink()
    (folder / "corpus.jsonl.gz").write_bytes(gzip.compress(raw))
    assert [d["id"] for d in D.iter_corpus(folder)] == ["d1", "d2", "d3"]


class _Server:
    """Serves files from a dict on 127.0.0.1 in a thread."""

    def __init__(self, files: dict[str, bytes]):
        files_ = files

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = files_.get(self.path)
                self.send_response(200 if body is not None else 404)
                self.end_headers()
                if body is not None:
                    self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()


def _zip_dataset(tmp_path) -> bytes:
    src = write_beir(tmp_path / "zipsrc" / "scifact", GOOD)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for f in sorted(src.rglob("*")):
            if f.is_file():
                z.write(f, f"scifact/{f.relative_to(src)}")
    return buf.getvalue()


def test_download_verifies_checksums(tmp_path, monkeypatch):
    body = _zip_dataset(tmp_path)
    server = _Server({"/scifact.zip": body})
    try:
        good = replace(D.get_dataset("scifact"), md5=hashlib.md5(body).hexdigest(),
                       sha256=hashlib.sha256(body).hexdigest())
        monkeypatch.setenv("BEIR_URL", server.url)
        monkeypatch.delenv("BEIR_MIRROR", raising=False)
        folder = D.source_dir(good, mirror=None, cache_dir=tmp_path / "cache")
        assert [d["id"] for d in D.iter_corpus(folder)] == ["d1", "d2", "d3"]
        # the real SciFact checksums reject this archive, and nothing is kept
        with pytest.raises(D.DatasetError, match="checksum mismatch"):
            D.source_dir(D.get_dataset("scifact"), mirror=None, cache_dir=tmp_path / "cache2")
        assert not (tmp_path / "cache2" / "beir" / "scifact").exists()
    finally:
        server.close()


def test_download_rejects_path_escape(tmp_path, monkeypatch):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("../evil.txt", "x")
    body = buf.getvalue()
    server = _Server({"/scifact.zip": body})
    try:
        ds = replace(D.get_dataset("scifact"), md5=hashlib.md5(body).hexdigest(), sha256=None)
        monkeypatch.setenv("BEIR_URL", server.url)
        with pytest.raises(D.DatasetError, match="escapes"):
            D.download_archive(ds, tmp_path / "cache")
        assert not (tmp_path / "evil.txt").exists()
    finally:
        server.close()
