"""`make results`: copy what the docs and the reproduction page read from ``runs/`` into the committed ``results/``.

Per run folder: each ``<mode>.trec.metrics.json`` (the run files themselves stay in ``runs/``: too big to commit) and
``config.json``; fusions under ``<collection>/fusion/``; ``runs/stack-numbers/*.json``; benchmark JSON named on the
command line (``--bench NAME=FILE``, the last JSON line of a benchmark's output). Paths inside the files are kept as
written. A metrics file of the same run is replaced; nothing else in ``results/`` is removed.

    python tools/collect_results.py [--runs runs] [--results results] [--bench bench-index=log.txt]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path


def collect(runs: Path, results: Path) -> list[Path]:
    copied = []
    for path in sorted(runs.glob("*/*/*.metrics.json")) + sorted(runs.glob("*/*/config.json")):
        if path.parts[-3] in ("work", "stack-numbers"):
            continue
        target = results / "runs" / path.relative_to(runs)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        copied.append(target)
    for path in sorted((runs / "stack-numbers").glob("python*.json")):
        target = results / "stack-numbers" / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        copied.append(target)
    return copied


def last_json(text: str) -> dict:
    """The last line of ``text`` that parses as a JSON object (a benchmark's result line)."""
    for line in reversed(text.strip().splitlines()):
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    raise ValueError("no JSON line in the benchmark output")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="runs", help="the runs folder")
    parser.add_argument("--results", default="results", help="the committed results folder")
    parser.add_argument("--bench", action="append", default=[], metavar="NAME=FILE",
                        help="a benchmark's output; its last JSON line becomes results/bench/NAME.json")
    args = parser.parse_args(argv)
    copied = collect(Path(args.runs), Path(args.results))
    for spec in args.bench:
        name, _, file = spec.partition("=")
        target = Path(args.results) / "bench" / f"{name}.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(last_json(Path(file).read_text()), indent=2) + "\n")
        copied.append(target)
    print(f"{len(copied)} files under {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
