"""Sharded, resumable encoding: SIGKILL + rerun, worker processes and Ray all give the unsharded outputs."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from diffretriever_pyserini.encode.sharding import shard_ranges

REPO = Path(__file__).resolve().parents[1]


def test_shard_ranges_are_contiguous_whole_windows():
    assert shard_ranges(1000, 3, 100) == [(0, 300), (300, 600), (600, 1000)]
    assert shard_ranges(50, 1, 8192) == [(0, 50)]
    with pytest.raises(ValueError, match="too few"):
        shard_ranges(150, 3, 100)


@pytest.fixture(scope="module")
def tiny_dream(tmp_path_factory):
    from diffretriever_pyserini.testing.tiny import write_checkpoint

    return write_checkpoint(tmp_path_factory.mktemp("tiny") / "dream", "dream")


def _cfg(tiny_dream, scifact_slice, work, **kw):
    from diffretriever_pyserini.pipeline import RunConfig

    return RunConfig(dataset="scifact", model=str(tiny_dream), k_q=2, k_p=4, p_max_length=160, q_max_length=96,
                     device="cpu", dtype="fp32", batch_size=32, window=128, mirror=str(scifact_slice),
                     work=str(work), runs=str(work / "runs"), hits=100, modes="dense,sparse,hybrid", **kw)


def _data_bytes(cfg) -> dict:
    from diffretriever_pyserini.pipeline import Paths

    enc = Paths(cfg.resolved()).encodings
    sparse = b"".join(p.read_bytes() for p in sorted(enc.sparse.glob("*.jsonl")))
    return {"sparse": sparse, **{name: (enc.dense / name).read_bytes() for name in ("index", "docid", "kvectors.npy")}}


@pytest.fixture(scope="module")
def unsharded(tiny_dream, scifact_slice, tmp_path_factory):
    from diffretriever_pyserini.pipeline import step_encode

    cfg = _cfg(tiny_dream, scifact_slice, tmp_path_factory.mktemp("unsharded"))
    step_encode(cfg)
    return _data_bytes(cfg)


@pytest.mark.slow
def test_sigkill_midway_then_rerun_gives_identical_outputs(tiny_dream, scifact_slice, unsharded, tmp_path):
    cmd = [sys.executable, "-m", "diffretriever_pyserini", "encode", "--dataset", "scifact", "--mirror",
           str(scifact_slice), "--model", str(tiny_dream), "--k-p", "4", "--p-max-length", "160", "--device", "cpu",
           "--dtype", "fp32", "--batch-size", "32", "--window", "128", "--shard-num", "3", "--work", str(tmp_path)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shards = None
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        found = list(tmp_path.glob("encodings/scifact/*/shards/*/shard.json"))
        if found:
            shards = found[0].parents[1]
            break
        time.sleep(0.05)
    assert shards is not None, "no shard completed before the process ended"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = {p.parent.name for p in shards.glob("*/shard.json")}
    assert 1 <= len(done_before) < 3 and not (shards.parent / "dense").exists()
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "shards are complete; skipping them" in rerun.stderr
    cfg = _cfg(tiny_dream, scifact_slice, tmp_path, shard_num=3)
    assert _data_bytes(cfg) == unsharded


@pytest.mark.slow
def test_worker_processes_give_identical_outputs(tiny_dream, scifact_slice, unsharded, tmp_path):
    from diffretriever_pyserini.pipeline import step_encode

    cfg = _cfg(tiny_dream, scifact_slice, tmp_path, shard_num=3, workers=2)
    step_encode(cfg)
    assert _data_bytes(cfg) == unsharded


@pytest.mark.slow
def test_ray_path_gives_the_single_process_run_files(tiny_dream, scifact_slice, unsharded, tmp_path):
    """Through the CLI in child processes: Ray installs signal handlers in its driver, which must not outlive into a
    process where the JVM (which relies on its own SIGSEGV handling) already runs, as it would inside pytest."""
    import ray  # noqa: F401  (installed by the test extra)

    from diffretriever_pyserini.pipeline import Paths

    def run(work, *extra):
        cmd = [sys.executable, "-m", "diffretriever_pyserini", "run", "--dataset", "scifact", "--mirror",
               str(scifact_slice), "--model", str(tiny_dream), "--k-q", "2", "--k-p", "4", "--p-max-length", "160",
               "--q-max-length", "96", "--device", "cpu", "--dtype", "fp32", "--batch-size", "32", "--window", "128",
               "--hits", "100", "--modes", "dense,sparse,hybrid", "--work", str(work), "--runs", str(work / "runs"),
               *extra]
        res = subprocess.run(cmd, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True)
        assert res.returncode == 0, res.stderr[-3000:]

    run(tmp_path / "single")
    run(tmp_path / "ray", "--shard-num", "3", "--workers", "2", "--engine", "ray")
    single = _cfg(tiny_dream, scifact_slice, tmp_path / "single")
    ray_cfg = _cfg(tiny_dream, scifact_slice, tmp_path / "ray", shard_num=3, workers=2, engine="ray")
    assert _data_bytes(ray_cfg) == unsharded
    for name in ("dense", "sparse", "hybrid"):
        a = (Paths(single.resolved()).run_dir / f"{name}.trec").read_bytes()
        b = (Paths(ray_cfg.resolved()).run_dir / f"{name}.trec").read_bytes()
        assert a == b
