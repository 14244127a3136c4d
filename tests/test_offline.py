"""Pyserini without the network: its prebuilt-index catalogue falls back to a kept copy, or to nothing."""

import http.server
import json
import os
import subprocess
import sys
import threading
from importlib.metadata import version
from pathlib import Path

import pytest

from conftest import offline
from diffretriever_pyserini.pyserini_bridge import offline as off

REPO = Path(__file__).resolve().parents[1]
PYSERINI_2 = int(version("pyserini").split(".")[0]) >= 2
URL = "https://raw.githubusercontent.com/castorini/prebuilt-indexes/abc123/lucene/msmarco-v1-passage-impact.json"
RECORD = {"name": "msmarco-v1-passage.unicoil", "description": "kept", "filename": "f.tar.gz",
          "urls": ["https://example.org/f.tar.gz"], "md5": "0" * 32, "size": 1}


def test_catalogue_path():
    assert off.catalogue_path(URL) == "lucene/msmarco-v1-passage-impact.json"
    assert off.catalogue_path("https://example.org/x.json") is None
    assert json.loads(off.empty_catalogue("faiss/beir-faiss.json", ["a"]))["a"]["urls"] == []
    assert [r["name"] for r in json.loads(off.empty_catalogue("lucene/x.json", ["a", "b"]))] == ["a", "b"]


@pytest.fixture()
def catalogue_server(tmp_path):
    """A local HTTP server standing for the catalogue host: serves files under ``tmp_path/served``."""
    served = tmp_path / "served"
    lucene = served / "castorini/prebuilt-indexes/abc123/lucene"
    lucene.mkdir(parents=True)
    (lucene / "msmarco-v1-passage-impact.json").write_text(json.dumps([RECORD]))
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(served), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_online_fetch_is_kept_and_used_offline(tmp_path, monkeypatch, catalogue_server):
    import urllib.request

    monkeypatch.setenv("PYSERINI_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(off.OFFLINE_ENV, raising=False)
    online = off.MetadataSource(lambda url, *a, **k: urllib.request.urlopen(
        url.replace("https://raw.githubusercontent.com", catalogue_server), *a, **k))
    assert json.load(online.urlopen(URL)) == [RECORD]
    assert json.loads((tmp_path / "cache/prebuilt-index-info/lucene/msmarco-v1-passage-impact.json").read_text()) \
        == [RECORD]

    def unreachable(url, *a, **k):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    source = off.MetadataSource(unreachable)
    assert json.load(source.urlopen(URL)) == [RECORD]  # the kept copy
    assert source.offline
    other = URL.replace("msmarco-v1-passage-impact", "beir-impact")
    assert json.load(source.urlopen(other)) == []  # nothing kept: an empty catalogue
    monkeypatch.setenv(off.OFFLINE_ENV, "1")
    assert off.MetadataSource(lambda *a, **k: pytest.fail("no network call when told offline")).offline


def _python(code: str, tmp_path: Path, **extra) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYSERINI_CACHE": str(tmp_path / "cache"), **extra}
    env.pop(off.OFFLINE_ENV, None)
    cmd, env = offline([sys.executable, "-c", code], env)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


IMPORTS = ("import pyserini.encode, pyserini.search.faiss, pyserini.search.lucene, pyserini.search.hybrid, "
           "pyserini.index.lucene, pyserini.util\nfrom pyserini.prebuilt_index_info import IMPACT_INDEX_INFO\n"
           "print('IMPORTED', 'msmarco-passage-unicoil-d2q' in IMPACT_INDEX_INFO)")


def test_pyserini_imports_with_the_network_unreachable(tmp_path):
    out = _python(IMPORTS, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "IMPORTED" in out.stdout
    if PYSERINI_2:
        lines = [line for line in out.stderr.splitlines() if "unavailable offline" in line]
        assert len(lines) == 1, out.stderr[-3000:]
        # without the hook, the same process dies in Pyserini's catalogue fetch (what the hook fixes)
        bare = _python(IMPORTS, tmp_path, DIFFRETRIEVER_NO_PYSERINI_HOOK="1")
        assert bare.returncode != 0 and "URLError" in bare.stderr


def test_a_kept_catalogue_is_read_offline(tmp_path):
    if not PYSERINI_2:
        pytest.skip("Pyserini 1.x ships its catalogue inside the package; nothing is fetched")
    kept = tmp_path / "cache/prebuilt-index-info/lucene/msmarco-v1-passage-impact.json"
    kept.parent.mkdir(parents=True)
    kept.write_text(json.dumps([RECORD, {**RECORD, "name": "msmarco-v2-passage.unicoil-0shot"}]))
    out = _python("from pyserini.prebuilt_index_info import IMPACT_INDEX_INFO as I\n"
                  "print('URLS', I['msmarco-passage-unicoil-d2q']['urls'])", tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "URLS ['https://example.org/f.tar.gz']" in out.stdout
