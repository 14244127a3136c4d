"""BM25 under a long-query load (`make bench-bm25`): our baseline search beside Pyserini's own command.

Builds SciFact's BM25 flat and multifield indexes (as the `baselines` command does), then uses the first 1,000
SciFact abstracts (title + text, ~200 words each: an ArguAna-like load) as topics and searches them at 1,000 hits
with 2 threads, two ways, each in its own process tree, side by side in this run:

- ours: ``pyserini_bridge.search.bm25_search`` (a child process, topics in batches, bounded heap);
- Pyserini's: ``python -m pyserini.search.lucene --bm25 --index I --topics T --output O --hits 1000 --threads 2
  --batch-size 16`` (``--fields contents=1.0 title=1.0`` for multifield).

Peak RSS is the largest resident set of any process of the tree (``ru_maxrss`` of the waited-for children); time is
wall-clock. Targets: ours within 2x of Pyserini's memory and time, and under 2 GB. Both runs' top-10 docids are
compared topic by topic. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

QUERIES = 1000
HITS = 1000
RSS_LIMIT_MB = 2048
FIELDS = {"contents": 1.0, "title": 1.0}

MEASURE = """
import resource, subprocess, sys, time
start = time.monotonic()
rc = subprocess.run(sys.argv[1:], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL).returncode
print(rc, time.monotonic() - start, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
"""

OURS = """
import sys, json
from pathlib import Path
from diffretriever_pyserini.pyserini_bridge.search import bm25_search
from diffretriever_pyserini.search.runs import write_run
index, topics_path, out, fields = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
topics = dict(line.rstrip("\\n").split("\\t", 1) for line in open(topics_path, encoding="utf-8"))
run = bm25_search(index, topics, k=1000, threads=2, fields=fields or None)
write_run(Path(out), run, "ours", 1000, topic_order=topics)
"""


def measured(cmd: list[str]) -> dict:
    """Run ``cmd`` under a small wrapper process: exit code, seconds, peak RSS (MB) of its process tree."""
    out = subprocess.run([sys.executable, "-c", MEASURE, *cmd], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    rc, seconds, rss = out.stdout.split()
    if int(rc) != 0:
        raise SystemExit(f"bench_bm25: {' '.join(cmd[:4])} ... failed (exit {rc}): {out.stderr[-1500:]}")
    return {"seconds": round(float(seconds), 1), "peak_rss_mb": round(float(rss))}


def top10(path: Path) -> dict[str, list[str]]:
    from diffretriever_pyserini.search.runs import ranked, read_run

    return {q: [d for d, _ in ranked(hits, 10)] for q, hits in read_run(path).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mirror", default=os.environ.get("BEIR_MIRROR"), help="BEIR mirror holding scifact/")
    parser.add_argument("--work", default="runs/work", help="work folder (prepared data, indexes)")
    parser.add_argument("--queries", type=int, default=QUERIES, help="abstracts used as long topics")
    args = parser.parse_args()
    from diffretriever_pyserini.datasets import iter_prepared_corpus
    from diffretriever_pyserini.pipeline import RunConfig, bm25_index

    cfg = RunConfig(dataset="scifact", mirror=args.mirror, work=args.work, threads=2)
    indexes = {"flat": bm25_index(cfg, multifield=False), "multifield": bm25_index(cfg, multifield=True)}
    from diffretriever_pyserini.pipeline import step_prepare

    docs = iter_prepared_corpus(step_prepare(cfg).corpus_dir)
    topics = {}
    for doc in docs:
        topics[f"a{doc['id']}"] = " ".join(f"{doc['title']} {doc['text']}".split())
        if len(topics) == args.queries:
            break
    words = sum(len(t.split()) for t in topics.values()) / len(topics)
    result = {"queries": len(topics), "mean_query_words": round(words, 1), "hits": HITS, "threads": 2}
    with tempfile.TemporaryDirectory(prefix="bench-bm25-") as tmp:
        tsv = Path(tmp) / "topics.tsv"
        tsv.write_text("".join(f"{q}\t{t}\n" for q, t in topics.items()), encoding="utf-8")
        for name, index in indexes.items():
            fields = FIELDS if name == "multifield" else {}
            ours_run, theirs_run = Path(tmp) / f"ours.{name}.trec", Path(tmp) / f"pyserini.{name}.trec"
            pyserini_cmd = [sys.executable, "-m", "pyserini.search.lucene", "--bm25", "--index", str(index),
                            "--topics", str(tsv), "--output", str(theirs_run), "--hits", str(HITS), "--threads", "2",
                            "--batch-size", "16"] + (["--fields", *[f"{k}={v}" for k, v in fields.items()]]
                                                     if fields else [])
            theirs = measured(pyserini_cmd)
            ours = measured([sys.executable, "-c", OURS, str(index), str(tsv), str(ours_run), json.dumps(fields)])
            a, b = top10(ours_run), top10(theirs_run)
            same = sum(a.get(q) == b.get(q) for q in topics) / len(topics)
            result[name] = {"ours": ours, "pyserini": theirs,
                            "rss_ratio": round(ours["peak_rss_mb"] / theirs["peak_rss_mb"], 2),
                            "time_ratio": round(ours["seconds"] / theirs["seconds"], 2),
                            "same_top10_fraction": round(same, 4)}
            print(f"{name}: ours {ours}, pyserini {theirs}, same top-10 for {same:.1%} of topics", file=sys.stderr)
    result["targets"] = {f"{name}_{what}": ok for name in indexes for what, ok in (
        ("rss_within_2x", result[name]["rss_ratio"] <= 2.0),
        ("time_within_2x", result[name]["time_ratio"] <= 2.0),
        ("rss_under_2gb", result[name]["ours"]["peak_rss_mb"] < RSS_LIMIT_MB))}
    result["all_targets_met"] = all(result["targets"].values())
    print(json.dumps(result))


if __name__ == "__main__":
    main()
