"""Shared fixtures: a real-data SciFact slice from the BEIR mirror, run once per session through the pipeline."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SLICE_QUERIES = 60
SLICE_EXTRA_DOCS = 800


def beir_mirror() -> Path:
    """The BEIR mirror (``BEIR_MIRROR``, else ../shared/data/beir beside the checkout); required by the real-data
    tests, which fail loudly rather than skip when it is missing."""
    mirror = Path(os.environ.get("BEIR_MIRROR") or REPO.parent / "shared" / "data" / "beir")
    if not (mirror / "scifact" / "corpus.jsonl.gz").is_file():
        pytest.fail(f"BEIR mirror with SciFact not found at {mirror}; set BEIR_MIRROR (CI sets ../shared/data/beir)")
    return mirror


@pytest.fixture(scope="session")
def scifact_slice(tmp_path_factory) -> Path:
    """A mirror folder holding real SciFact: the first 60 judged test queries, their relevant abstracts, and the
    first 800 other abstracts of the corpus."""
    from diffretriever_pyserini.datasets.slices import slice_beir

    out = slice_beir(beir_mirror() / "scifact", tmp_path_factory.mktemp("mirror") / "scifact", SLICE_QUERIES,
                     SLICE_EXTRA_DOCS)
    return out.parent


@pytest.fixture(scope="session")
def slice_run(scifact_slice, tmp_path_factory):
    """The whole pipeline on the slice with the packaged MiniLM (K_q = K_p = 4): config and records."""
    from diffretriever_pyserini.pipeline import RunConfig, run_dataset

    root = tmp_path_factory.mktemp("pipeline")
    cfg = RunConfig(dataset="scifact", model="minilm", k_q=4, k_p=4, p_max_length=128, q_max_length=96,
                    device="cpu", batch_size=32, mirror=str(scifact_slice), work=str(root / "work"),
                    runs=str(root / "runs"))
    return cfg, run_dataset(cfg)


def offline(cmd: list[str], env: dict) -> tuple[list[str], dict]:
    """``cmd`` and ``env`` for a process with the network unreachable: a new, empty network namespace
    (``unshare --net``, as root or with user namespaces), else every proxy variable at a closed loopback port."""
    import shutil
    import subprocess

    if shutil.which("unshare") and subprocess.run(["unshare", "--net", "true"], capture_output=True).returncode == 0:
        return ["unshare", "--net", *cmd], env
    dead = "http://127.0.0.1:9"
    return cmd, {**env, "http_proxy": dead, "https_proxy": dead, "HTTP_PROXY": dead, "HTTPS_PROXY": dead,
                 "no_proxy": "", "NO_PROXY": ""}
