"""Scale-out and fault checks, run for real (`make bench-scale`).

1. kill/resume: a sharded encode of SciFact (tiny random Dream, 4 shards) is SIGKILLed after its first shard
   completes, rerun with the same command, and its merged outputs compared byte for byte with an unsharded run.
2. memory: peak RSS of encoding a 10,000- and a 100,000-document synthetic corpus (same tiny model), each in its
   own process (``ru_maxrss`` of the child).
3. Ray: SciFact encoded through Ray Data actors (local cluster, 2 actors) and through the single-process path;
   the dense, sparse and hybrid run files are compared byte for byte.
The last line is one JSON object with kill_resume_identical, rss_ratio_100k_vs_10k and ray_equals_single.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def _encode_cmd(model, mirror, work, dataset="scifact", *extra):
    return [sys.executable, "-m", "diffretriever_pyserini", "encode", "--dataset", dataset, "--mirror", str(mirror),
            "--model", str(model), "--k-p", "4", "--p-max-length", "128", "--device", "cpu", "--dtype", "fp32",
            "--batch-size", "64", "--window", "1024", "--work", str(work), *extra]


def _outputs(work: Path) -> bytes:
    enc = next((work / "encodings").glob("*/*"))
    parts = sorted((enc / "sparse").glob("*.jsonl")) + [enc / "dense" / n for n in ("index", "docid", "kvectors.npy")]
    return b"".join(p.read_bytes() for p in parts)


def kill_resume(model, mirror, root: Path) -> bool:
    subprocess.run(_encode_cmd(model, mirror, root / "plain"), env=_env(), check=True, capture_output=True)
    cmd = _encode_cmd(model, mirror, root / "sharded", "scifact", "--shard-num", "4")
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while proc.poll() is None and not list((root / "sharded").glob("encodings/*/*/shards/*/shard.json")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(list((root / "sharded").glob("encodings/*/*/shards/*/shard.json")))
    print(f"kill/resume: SIGKILL after {done} of 4 shards; rerunning the same command")
    subprocess.run(cmd, env=_env(), check=True, capture_output=True)
    return _outputs(root / "plain") == _outputs(root / "sharded")


def synthetic_mirror(root: Path, n_docs: int) -> Path:
    """A BEIR-layout folder (named like the registry's mirror-only smoke set) of n short synthetic documents."""
    rng = random.Random(0)
    words = ("microglia brain immune cells protein gene expression cancer tumour patients treatment clinical trial "
             "risk disease infection virus vaccine blood pressure heart cell growth factor receptor").split()
    folder = root / "msmarco-dl19-sample"
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    with open(folder / "corpus.jsonl", "w") as f:
        for i in range(n_docs):
            f.write(json.dumps({"_id": f"d{i}", "title": "", "text": " ".join(rng.choices(words, k=24))}) + "\n")
    (folder / "queries.jsonl").write_text(json.dumps({"_id": "q0", "text": "immune cells"}) + "\n")
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq0\td0\t1\n")
    return root


def peak_rss_mb(model, n_docs: int, root: Path) -> float:
    mirror = synthetic_mirror(root / f"mirror{n_docs}", n_docs)
    prep = [sys.executable, "-m", "diffretriever_pyserini", "prepare", "--dataset", "msmarco-dl19-sample", "--mirror",
            str(mirror), "--work", str(root / f"work{n_docs}")]
    subprocess.run(prep, env=_env(), check=True, capture_output=True)
    proc = subprocess.Popen(_encode_cmd(model, mirror, root / f"work{n_docs}", "msmarco-dl19-sample"), env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise RuntimeError(f"encoding {n_docs} documents failed ({status})")
    return usage.ru_maxrss / 1024


def ray_equals_single(model, mirror, root: Path) -> bool:
    def run(work, *extra):
        cmd = [sys.executable, "-m", "diffretriever_pyserini", "run", "--dataset", "scifact", "--mirror", str(mirror),
               "--model", str(model), "--k-q", "2", "--k-p", "4", "--p-max-length", "128", "--device", "cpu",
               "--dtype", "fp32", "--batch-size", "64", "--window", "1024", "--modes", "dense,sparse,hybrid",
               "--work", str(work / "work"), "--runs", str(work / "runs"), *extra]
        subprocess.run(cmd, env=_env(), check=True, capture_output=True)
        return {p.name: p.read_bytes() for p in sorted((work / "runs").rglob("*.trec"))}

    single = run(root / "single")
    ray = run(root / "ray", "--engine", "ray", "--workers", "2", "--shard-num", "4")
    return bool(single) and single == ray


def main() -> None:
    from diffretriever_pyserini.testing.tiny import write_checkpoint

    mirror = Path(os.environ.get("BEIR_MIRROR") or REPO.parent / "shared" / "data" / "beir")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = write_checkpoint(root / "tiny-dream", "dream", hidden=64, layers=2)
        t = time.perf_counter()
        identical = kill_resume(model, mirror, root / "kill")
        print(f"kill/resume outputs identical to an unsharded run: {identical} ({time.perf_counter() - t:.0f} s)")
        t = time.perf_counter()
        small, large = peak_rss_mb(model, 10_000, root / "rss"), peak_rss_mb(model, 100_000, root / "rss")
        print(f"peak RSS: 10k documents {small:.0f} MB, 100k documents {large:.0f} MB, ratio {large / small:.3f} "
              f"({time.perf_counter() - t:.0f} s)")
        t = time.perf_counter()
        same = ray_equals_single(model, mirror, root / "ray")
        print(f"Ray (2 actors, 4 shards) run files equal the single-process ones: {same} "
              f"({time.perf_counter() - t:.0f} s)")
    print(json.dumps({"kill_resume_identical": identical, "rss_ratio_100k_vs_10k": round(large / small, 3),
                      "ray_equals_single": same, "rss_mb": {"10k": round(small), "100k": round(large)}}))


if __name__ == "__main__":
    main()
