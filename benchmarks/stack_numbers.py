"""The same SciFact runs on each stack (`make stack-numbers`, once per interpreter): metrics and run-file digests.

Builds a real SciFact slice from the mirror (the first QUERIES judged test claims, their relevant abstracts and the
first EXTRA other abstracts), runs every scoring mode with the packaged MiniLM at K_q = K_p = 4 through the pipeline
(Pyserini's Lucene and FAISS searchers, our trec_eval), and writes ``runs/stack-numbers/python<version>.json`` with the
stack's versions, each mode's nDCG@10 / R@100 and the sha256 of each run file. Two stacks agree when those files
agree; ``--compare A.json B.json`` prints the differences (the last line: JSON).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

OUT = Path("runs/stack-numbers")


def measure(mirror: Path, queries: int, extra: int) -> dict:
    from diffretriever_pyserini.pipeline import Paths, RunConfig, run_dataset
    from diffretriever_pyserini.datasets.slices import slice_beir

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        slice_beir(mirror / "scifact", root / "mirror" / "scifact", queries, extra)
        cfg = RunConfig(dataset="scifact", model="minilm", k_q=4, k_p=4, device="cpu", batch_size=32,
                        mirror=str(root / "mirror"), work=str(root / "work"), runs=str(root / "runs"))
        records = run_dataset(cfg)
        run_dir = Paths(cfg.resolved()).run_dir
        modes = {name: {"ndcg_cut_10": round(rec["metrics"]["ndcg_cut_10"], 4),
                        "recall_100": round(rec["metrics"]["recall_100"], 4),
                        "sha256": hashlib.sha256((run_dir / f"{name}.trec").read_bytes()).hexdigest()}
                 for name, rec in sorted(records.items())}
    return {"python": platform.python_version(), "pyserini": version("pyserini"), "torch": version("torch"),
            "transformers": version("transformers"), "queries": queries, "extra_docs": extra, "modes": modes}


def compare(a: dict, b: dict) -> dict:
    """Per mode: equal run files, and the metric differences."""
    out = {}
    for mode in sorted(set(a["modes"]) | set(b["modes"])):
        x, y = a["modes"].get(mode), b["modes"].get(mode)
        if x is None or y is None:
            out[mode] = "missing on one stack"
            continue
        out[mode] = {"same_run_file": x["sha256"] == y["sha256"],
                     "ndcg_cut_10": [x["ndcg_cut_10"], y["ndcg_cut_10"]],
                     "recall_100": [x["recall_100"], y["recall_100"]]}
    return {"stacks": [f"Python {a['python']} + Pyserini {a['pyserini']}", f"Python {b['python']} + Pyserini "
                       f"{b['pyserini']}"], "modes": out,
            "same_numbers": all(isinstance(v, dict) and v["ndcg_cut_10"][0] == v["ndcg_cut_10"][1]
                                and v["recall_100"][0] == v["recall_100"][1] for v in out.values())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mirror", default=os.environ.get("BEIR_MIRROR"), help="BEIR mirror holding scifact/")
    parser.add_argument("--queries", type=int, default=300, help="judged test claims in the slice")
    parser.add_argument("--extra-docs", type=int, default=1000, help="other abstracts in the slice")
    parser.add_argument("--compare", nargs=2, metavar="JSON", help="compare two stacks' result files instead")
    args = parser.parse_args()
    if args.compare:
        print(json.dumps(compare(*(json.loads(Path(p).read_text()) for p in args.compare)), indent=None))
        return
    if not args.mirror:
        sys.exit("stack_numbers: error: --mirror (or BEIR_MIRROR) is required")
    result = measure(Path(args.mirror), args.queries, args.extra_docs)
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"python{result['python']}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
