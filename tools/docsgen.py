"""`make docs`: every results table and plot of the README and docs/, regenerated from the committed result files.

Result files live under ``results/`` (``make results`` copies them from ``runs/``): ``results/runs/<collection>/<run>/
<mode>.trec.metrics.json`` and ``config.json`` per run, ``results/runs/<collection>/fusion/*.metrics.json``,
``results/bench/*.json`` (benchmark outputs), ``results/stack-numbers/python*.json``. A table sits in a markdown file
between ``<!-- generated:NAME -->`` and ``<!-- /generated:NAME -->``; ``--check`` exits 1 when a committed table differs
from what the files give (the consistency test runs it).

    python tools/docsgen.py [--results results] [--check]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
METRIC_NAMES = {"ndcg_cut_10": "nDCG@10", "recall_100": "R@100", "recall_1000": "R@1000", "recip_rank_10": "MRR@10"}
MODE_LABELS = {"dense": "dense (single vector)", "multi_dense": "multi_dense (MaxSim)", "sparse": "sparse",
               "hybrid": "hybrid (paper fusion)", "hybrid-pyserini": "hybrid (Pyserini HybridSearcher)",
               "rrf": "RRF of dense and sparse", "hybrid-multi": "hybrid-multi (MaxSim + sparse)"}
MODE_ORDER = list(MODE_LABELS)
BLOCK = re.compile(r"(<!-- generated:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /generated:(?P=name) -->)", re.S)


# --------------------------------------------------------------------------- reading result files

def load_runs(results: Path) -> dict[str, dict[str, dict[str, dict]]]:
    """``{collection: {run: {mode: metrics record}}}`` from ``results/runs`` (fusions under run ``fusion``)."""
    out: dict = {}
    for path in sorted((results / "runs").glob("*/*/*.metrics.json")):
        collection, run = path.parts[-3], path.parts[-2]
        mode = path.name.removesuffix(".metrics.json").removesuffix(".trec")
        out.setdefault(collection, {}).setdefault(run, {})[mode] = json.loads(path.read_text())
    return out


def run_label(run: str, config: dict | None = None) -> str:
    """A reader's name for a run folder: ``bm25-flat`` -> BM25 flat, ``diffretriever.minilm.zs.kq4-kp4`` ->
    zero-shot readout (K_q=4, K_p=4), a fine-tuned condition -> fine-tuned readout, ``meanpool.<model>`` ->
    mean pooling."""
    if run.startswith("bm25-"):
        return "BM25 " + run.removeprefix("bm25-")
    if run.startswith("meanpool."):
        model = run.removeprefix("meanpool.")
        return f"mean pooling ({'packaged MiniLM' if model == 'model' else model}), pyserini.encode + FaissSearcher"
    k = re.search(r"\.kq(\d+)-kp(\d+)", run)
    budget = f" (K_q={k.group(1)}, K_p={k.group(2)})" if k else ""
    model = run.split(".")[1] if run.startswith("diffretriever.") else run
    if ".zs." in run:
        return f"zero-shot {model} readout{budget}"
    if ".finetuned-" in run or ".ft" in run:
        return f"fine-tuned {model} readout{budget}"
    return run


def fusion_label(name: str) -> str:
    """``<condition>.hybrid+bm25-flat.rrf`` (a fusion run's name) -> its row label."""
    condition, _, fused = name.partition(".hybrid+")
    return f"{run_label(condition)} hybrid + {fused.replace('.', ' (', 1)})"


def _fmt(value) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "–"


def table(rows: list[tuple[str, dict]], metrics: list[str]) -> str:
    """A markdown table of (label, metrics) rows."""
    head = "| run | " + " | ".join(METRIC_NAMES.get(m, m) for m in metrics) + " |\n"
    head += "|---|" + "---:|" * len(metrics) + "\n"
    return head + "".join(f"| {label} | " + " | ".join(_fmt(values.get(m)) for m in metrics) + " |\n"
                          for label, values in rows)


def _metric_keys(collection: str) -> list[str]:
    return ["recip_rank_10", "ndcg_cut_10", "recall_100"] if "msmarco" in collection else \
        ["ndcg_cut_10", "recall_100", "recall_1000"]


def _ordered_runs(runs: dict) -> list[str]:
    def key(run: str):
        rank = 0 if run.startswith("bm25") else 1 if run.startswith("meanpool") else \
            2 if ".zs." in run else 4 if run == "fusion" else 3
        return rank, run

    return sorted(runs, key=key)


def collection_rows(runs: dict) -> list[tuple[str, dict]]:
    """Every run of a collection, modes in the mode table's order, fusions last."""
    rows = []
    for run in _ordered_runs(runs):
        modes = runs[run]
        if run == "fusion":
            rows += [(fusion_label(name), modes[name]["metrics"]) for name in sorted(modes)]
            continue
        for mode in sorted(modes, key=lambda m: MODE_ORDER.index(m) if m in MODE_ORDER else 99):
            suffix = "" if mode in ("bm25", "dense") and not run.startswith("diffretriever") else \
                f" {MODE_LABELS.get(mode, mode)}"
            rows.append((run_label(run) + suffix, modes[mode]["metrics"]))
    return rows


# --------------------------------------------------------------------------- the tables

HEADLINE_MODES = ("sparse", "hybrid", "hybrid-multi")
K_SWEEP = "beir-v1.0.0-msmarco-dl19-sample"
"""The collection of the K sweep (``report --dataset msmarco-dl19-sample``)."""


def headline(results: Path) -> str:
    """README: SciFact test, the controls, the zero-shot and fine-tuned readouts' best modes, fusion with BM25."""
    runs = load_runs(results).get("beir-v1.0.0-scifact", {})
    rows = []
    for run in _ordered_runs(runs):
        modes = runs[run]
        if run == "fusion":
            rows += [(fusion_label(name), m["metrics"]) for name, m in sorted(modes.items()) if name.endswith(".rrf")]
        elif run.startswith(("bm25", "meanpool")):
            rows += [(run_label(run), m["metrics"]) for m in modes.values()]
        elif ".kq4-kp4" in run or ".finetuned" in run:
            rows += [(f"{run_label(run)} {MODE_LABELS[mode]}", modes[mode]["metrics"]) for mode in HEADLINE_MODES
                     if mode in modes]
    return "SciFact test (300 queries, 5,183 abstracts), measured on a 2-core CPU:\n\n" + \
        table(rows, ["ndcg_cut_10", "recall_100"])


def collection_table(collection: str):
    def build(results: Path) -> str:
        runs = load_runs(results).get(collection, {})
        return table(collection_rows(runs), _metric_keys(collection))

    return build


def stack_table(results: Path) -> str:
    """The same SciFact slice on each stack: nDCG@10 per mode and whether the run files are byte-identical."""
    files = sorted((results / "stack-numbers").glob("python*.json"))
    stacks = [json.loads(p.read_text()) for p in files]
    if not stacks:
        return "No stack measurements in results/stack-numbers.\n"
    head = "| mode | " + " | ".join(f"Python {s['python']} + Pyserini {s['pyserini']}" for s in stacks) + \
        " | same run file |\n|---|" + "---:|" * len(stacks) + "---|\n"
    body = ""
    for mode in sorted(stacks[0]["modes"], key=lambda m: MODE_ORDER.index(m) if m in MODE_ORDER else 99):
        values = [s["modes"].get(mode, {}) for s in stacks]
        same = len({v.get("sha256") for v in values}) == 1
        body += f"| {mode} | " + " | ".join(_fmt(v.get("ndcg_cut_10")) for v in values) + \
            f" | {'yes' if same else 'no'} |\n"
    intro = f"nDCG@10 on the SciFact slice of `make stack-numbers` ({stacks[0]['queries']} test claims):\n\n"
    return intro + head + body


def paper_table(results: Path) -> str:
    """The paper's published numbers this project lists (resources/paper-results.yaml), with their sources."""
    import yaml

    data = yaml.safe_load((REPO / "diffretriever_pyserini" / "resources" / "paper-results.yaml").read_text())
    rows = ["| checkpoint | dataset | mode | metric | published | source |", "|---|---|---|---|---:|---|"]
    for name, entry in data["checkpoints"].items():
        for dataset, modes in entry.get("results", {}).items():
            for mode, metrics in modes.items():
                for metric, value in metrics.items():
                    rows.append(f"| {name} | {dataset} | {mode} | {METRIC_NAMES.get(metric, metric)} | {value:.3f} | "
                                f"{entry.get('source', '')} |")
    return "\n".join(rows) + "\n"


def index_table(results: Path) -> str:
    """Index types on SciFact (bench-index): bytes per document, nDCG@10, R@100, the change against flat / exact."""
    path = results / "bench" / "bench-index.json"
    if not path.is_file():
        return "No bench-index result in results/bench.\n"
    bench = json.loads(path.read_text())
    data = bench["scifact"]
    shape = data["shape"]
    rows = [f"{shape['documents']:,} documents, {shape['queries']} queries, K_q = {shape['k_q']}, "
            f"K_p = {shape['k_p']}, {shape['dim']} dimensions; vectors: {shape['model']}.", "",
            "| index | searches | bytes / doc | queries/s | nDCG@10 | R@100 | vs flat / exact |",
            "|---|---|---:|---:|---:|---:|---:|"]
    for kind, entries in (("dense", data.get("dense", [])), ("multi_dense", data.get("multi", []))):
        for e in entries:
            rows.append(f"| {e.get('index') or e.get('search')} | {kind} | {e['bytes_per_doc']:,.1f} | "
                        f"{e['qps']:,.0f} | {_fmt(e.get('ndcg@10'))} | {_fmt(e.get('r@100'))} | "
                        f"{e.get('d_ndcg@10', 0):+.4f} |")
    targets = bench.get("targets") or {}
    rows += ["", "Targets: " + ", ".join(f"{k} {'met' if v else 'NOT met'}" for k, v in targets.items()) + "."]
    return "\n".join(rows) + "\n"


def k_sweep_table(results: Path) -> str:
    """nDCG@10 of every mode at each (K_q, K_p) budget of the zero-shot readout (report on the K_SWEEP collection)."""
    runs = load_runs(results).get(K_SWEEP, {})
    budgets = sorted((tuple(int(x) for x in re.search(r"\.kq(\d+)-kp(\d+)$", r).groups()), r) for r in runs
                     if ".zs." in r and re.search(r"\.kq(\d+)-kp(\d+)$", r))
    if not budgets:
        return "No zero-shot K budgets in results.\n"
    modes = [m for m in MODE_ORDER if any(m in runs[r] for _, r in budgets)]
    head = "| K_q, K_p | " + " | ".join(modes) + " |\n|---|" + "---:|" * len(modes) + "\n"
    return head + "".join(f"| {kq}, {kp} | " + " | ".join(_fmt(runs[r].get(m, {}).get("metrics", {}).get(
        "ndcg_cut_10")) for m in modes) + " |\n" for (kq, kp), r in budgets)


TABLES = {
    "headline": ("README.md", headline),
    "scifact-runs": ("docs/demo.md", collection_table("beir-v1.0.0-scifact")),
    "dl19-runs": ("docs/collections.md", collection_table("beir-v1.0.0-msmarco-dl19-sample")),
    "stacks": ("docs/stacks.md", stack_table),
    "paper": ("docs/paper.md", paper_table),
    "index-types": ("docs/index-types.md", index_table),
    "k-sweep": ("docs/demo.md", k_sweep_table),
}
"""Table name -> (the markdown file holding it, the function building it from the results folder)."""


# --------------------------------------------------------------------------- plots

def _save(fig, ax, path: Path) -> Path:
    """Legend, layout, a PNG without a software stamp; the figure closed."""
    import matplotlib.pyplot as plt

    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)
    return path


def plots(results: Path, out: Path) -> list[Path]:
    """nDCG@10 vs K per mode (zero-shot readout, SciFact) and bytes per document vs nDCG@10 per index type."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    written = []
    runs = load_runs(results).get(K_SWEEP, {})
    sweep = sorted((int(m.group(1)), int(m.group(2)), r) for r in runs if ".zs." in r
                   for m in [re.search(r"\.kq(\d+)-kp(\d+)$", r)] if m and m.group(1) == m.group(2))
    if sweep:
        fig, ax = plt.subplots(figsize=(6, 4))
        for mode in MODE_ORDER:
            points = [(kq, runs[r][mode]["metrics"]["ndcg_cut_10"]) for kq, _, r in sweep if mode in runs[r]]
            if points:
                ax.plot(*zip(*points), marker="o", label=mode)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("K (K_q = K_p)")
        ax.set_ylabel("nDCG@10")
        ax.set_title("MS MARCO DL19 sample, zero-shot MiniLM readout: nDCG@10 vs K")
        written.append(_save(fig, ax, out / "ndcg-vs-k.png"))
    bench = results / "bench" / "bench-index.json"
    if bench.is_file():
        data = json.loads(bench.read_text())["scifact"]
        fig, ax = plt.subplots(figsize=(6, 4))
        for kind, entries in (("dense", data.get("dense", [])), ("multi_dense", data.get("multi", []))):
            xs = [e["bytes_per_doc"] + e.get("extra_float16_bytes_per_doc", 0) for e in entries]
            ys = [e["ndcg@10"] for e in entries]
            ax.scatter(xs, ys, label=kind)
            for e, x, y in zip(entries, xs, ys):
                ax.annotate((e.get("index") or e.get("search")).split(" (")[0][:24], (x, y), fontsize=6)
        ax.set_xscale("log")
        ax.set_xlabel("bytes per document")
        ax.set_ylabel("nDCG@10")
        ax.set_title("SciFact: index size vs quality")
        written.append(_save(fig, ax, out / "bytes-vs-ndcg.png"))
    return written


# --------------------------------------------------------------------------- rendering

def render(results: Path, repo: Path = REPO) -> dict[Path, str]:
    """Each markdown file with a generated table -> its text with every table rebuilt from ``results``."""
    files: dict[Path, str] = {}
    for rel in dict.fromkeys(rel for rel, _ in TABLES.values()):
        path = repo / rel
        text, found = path.read_text(), []

        def rebuild(m: re.Match) -> str:
            name = m.group("name")
            if name not in TABLES or TABLES[name][0] != rel:
                raise SystemExit(f"{rel}: block {name!r} is not a table of this file")
            found.append(name)
            return m.group(1) + TABLES[name][1](results) + m.group(4)

        files[path] = BLOCK.sub(rebuild, text)
        missing = [n for n, (r, _) in TABLES.items() if r == rel and n not in found]
        if missing:
            raise SystemExit(f"{rel}: no <!-- generated:NAME --> block for {missing}")
    return files


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default=str(REPO / "results"), help="the results folder")
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when a table differs")
    args = parser.parse_args(argv)
    results = Path(args.results)
    rendered = render(results)
    stale = [p for p, text in rendered.items() if p.read_text() != text]
    if args.check:
        for p in stale:
            print(f"{p.relative_to(REPO)}: a generated table differs from what {results} gives; run make docs")
        return 1 if stale else 0
    for p, text in rendered.items():
        p.write_text(text)
    for p in plots(results, REPO / "docs" / "plots"):
        print(p.relative_to(REPO))
    print(f"{len(TABLES)} tables in {len(rendered)} files ({len(stale)} changed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
