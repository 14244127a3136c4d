"""A two-click reproduction (2CR) page, in the manner of Pyserini's ``python -m pyserini.2cr.*`` pages: a matrix of
conditions x datasets, each cell the measured score, the expected value, an OK / OKish / FAIL verdict and a button
that copies the exact command reproducing it.

Built from committed files only: the measured scores from ``results/runs`` (metrics JSON of each run), the expected
values from the published numbers (the paper's, ``resources/paper-results.yaml``; Pyserini's BM25 baselines,
``resources/reference-results.yaml``) and, for this project's own conditions, from ``results/expected.json`` (a
snapshot of measured values recorded with ``--freeze``, as Anserini's regressions record theirs). The page's source,
the conditions with their expected values and commands, is written beside it as YAML. No network at view time: the
page has no external scripts, styles or fonts.

    python -m diffretriever_pyserini.evaluate.twocr --results results --out docs/repro [--freeze]
"""

from __future__ import annotations

import argparse
import html
import json
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

from diffretriever_pyserini.evaluate.verdicts import verdict

METRIC = "ndcg_cut_10"
PAPER_DATASETS = ("scifact", "trec-covid", "nq", "hotpotqa", "fiqa", "arguana", "quora")
OWN_DATASETS = ("scifact", "msmarco-dl19-sample")
NEEDS_GPU = "needs GPU + released weights"
MIRROR = "BEIR_MIRROR=../shared/data/beir"


@dataclass
class Cell:
    """One condition on one dataset: measured (None: not run here), expected (None: no reference), their verdict,
    the source of the expected value, the command that reproduces the measured value."""

    measured: float | None
    expected: float | None
    source: str
    command: str
    verdict: str = field(init=False)

    def __post_init__(self):
        if self.measured is None:
            self.verdict = NEEDS_GPU if self.expected is not None else "not run"
        elif self.expected is None:
            self.verdict = "no reference"
        else:
            self.verdict = verdict(self.measured, self.expected, *((3, 0.005) if "paper" in self.source else ()))


def _measured(results: Path, dataset: str, run: str, mode: str) -> float | None:
    path = results / "runs" / f"beir-v1.0.0-{dataset}" / run / f"{mode}.trec.metrics.json"
    return json.loads(path.read_text())["metrics"].get(METRIC) if path.is_file() else None


def _runs(results: Path, dataset: str) -> list[str]:
    folder = results / "runs" / f"beir-v1.0.0-{dataset}"
    return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def _reference() -> dict:
    text = (resources.files("diffretriever_pyserini") / "resources" / "reference-results.yaml").read_text("utf-8")
    return yaml.safe_load(text)


def conditions(results: Path) -> list[dict]:
    """The rows of the page: ``{"name", "display", "group", "cells": {dataset: Cell}}``."""
    from diffretriever_pyserini.evaluate.paper import published

    expected = json.loads((results / "expected.json").read_text()) if (results / "expected.json").is_file() else {}
    reference = _reference()
    rows = []
    for name, display in (("bm25-flat", "BM25 flat"), ("bm25-multifield", "BM25 multifield")):
        cells = {}
        for ds in OWN_DATASETS:
            ref = reference.get(ds, {}).get(name)
            cells[ds] = Cell(_measured(results, ds, name, "bm25"), ref[METRIC] if ref else
                             expected.get(f"{ds}/{name}/bm25"), ref["source"] if ref else "results/expected.json",
                             f"{MIRROR} python -m diffretriever_pyserini baselines --bm25-only --bm25 "
                             f"{name.removeprefix('bm25-')} --dataset {ds}")
        rows.append({"name": name, "display": display, "group": "Anserini BM25 baselines", "cells": cells})
    own = {}
    for ds in OWN_DATASETS:
        for run in _runs(results, ds):
            if run.startswith("diffretriever.") and (".kq4-kp4" in run or ".finetuned-" in run):
                tuned = ".finetuned-" in run
                for mode_file in sorted((results / "runs" / f"beir-v1.0.0-{ds}" / run).glob("*.trec.metrics.json")):
                    mode = mode_file.name.removesuffix(".trec.metrics.json")
                    key = ("fine-tuned" if tuned else "zero-shot", mode)
                    command = ("make demo MIRROR=../shared/data/beir  # fine-tunes on SciFact's training claims, "
                               "then runs every mode" if tuned else
                               f"{MIRROR} python -m diffretriever_pyserini run --dataset {ds} --model minilm "
                               f"--k-q 4 --k-p 4 --modes {mode} --device cpu")
                    own.setdefault(key, {})[ds] = Cell(_measured(results, ds, run, mode),
                                                       expected.get(f"{ds}/{run}/{mode}"), "results/expected.json",
                                                       command)
    for (regime, mode), cells in sorted(own.items(), key=lambda kv: (kv[0][0] != "zero-shot", kv[0][1])):
        rows.append({"name": f"{regime}-{mode}", "display": f"DiffRetriever (MiniLM) {regime} {mode}",
                     "group": f"DiffRetriever, {regime} readout", "cells": cells})
    for ds in OWN_DATASETS:
        fusion = results / "runs" / f"beir-v1.0.0-{ds}" / "fusion"
        for path in sorted(fusion.glob("*.metrics.json")) if fusion.is_dir() else []:
            stem = path.name.removesuffix(".trec.metrics.json")
            condition, _, fused = stem.partition(".hybrid+")
            regime = "fine-tuned" if ".finetuned-" in condition else "zero-shot"
            name = f"{regime}-hybrid+{fused}"
            row = next((r for r in rows if r["name"] == name), None)
            if row is None:
                row = {"name": name, "display": f"{regime} hybrid + {fused.replace('.', ' (')})",
                       "group": "Fusion with BM25", "cells": {}}
                rows.append(row)
            row["cells"][ds] = Cell(json.loads(path.read_text())["metrics"].get(METRIC),
                                    expected.get(f"{ds}/fusion/{stem}"), "results/expected.json",
                                    f"make baselines DATASET={ds} MIRROR=../shared/data/beir")
    for checkpoint, entry in published().items():
        modes = sorted({m for by_mode in entry["results"].values() for m in by_mode})
        for mode in modes:
            cells = {}
            for ds, by_mode in entry["results"].items():
                value = by_mode.get(mode, {}).get(METRIC)
                if value is not None and ds in PAPER_DATASETS:
                    cells[ds] = Cell(None, value, f"paper ({checkpoint})",
                                     f"make paper-check CHECKPOINT={checkpoint} DATASET={ds} MODEL=<{entry['base']} "
                                     f"folder> ADAPTER=<{entry['adapter']} folder> DEVICE=cuda")
            if cells:
                rows.append({"name": f"paper-{checkpoint}-{mode}", "display": f"paper: {checkpoint} {mode}",
                             "group": "The paper's released checkpoints", "cells": cells})
    return rows


def freeze(results: Path) -> Path:
    """Record the measured scores of this project's conditions as their expected values (``expected.json``)."""
    values = {}
    for folder in sorted((results / "runs").glob("beir-v1.0.0-*")):
        ds = folder.name.removeprefix("beir-v1.0.0-")
        for path in sorted(folder.glob("*/*.metrics.json")):
            run, mode = path.parent.name, path.name.removesuffix(".metrics.json").removesuffix(".trec")
            value = json.loads(path.read_text())["metrics"].get(METRIC)
            if value is not None:
                values[f"{ds}/{run}/{mode}"] = round(value, 4)
    out = results / "expected.json"
    out.write_text(json.dumps(values, indent=2, sort_keys=True) + "\n")
    return out


def source_yaml(rows: list[dict]) -> str:
    """The page's source: conditions, datasets, expected values, their sources and commands."""
    data = {"metric": METRIC, "datasets": list(_datasets(rows)), "conditions": [
        {"name": r["name"], "display": r["display"], "group": r["group"],
         "cells": {ds: {"expected": c.expected, "expected_source": c.source,
                       "measured": None if c.measured is None else round(c.measured, 4),
                        "verdict": c.verdict, "command": c.command} for ds, c in r["cells"].items()}}
        for r in rows]}
    return yaml.safe_dump(data, sort_keys=False, width=200)


def _datasets(rows: list[dict]) -> list[str]:
    seen = [ds for ds in OWN_DATASETS]
    seen += [ds for ds in PAPER_DATASETS if ds not in seen and any(ds in r["cells"] for r in rows)]
    return seen


CSS = """body{font-family:sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;font-size:13px}
th,td{border:1px solid #ccc;padding:4px 6px;vertical-align:top}th{background:#f3f3f3}td.group{background:#e8eef7;
font-weight:bold}.score{font-weight:bold}.exp{color:#666;font-size:11px}.v{font-size:11px;padding:1px 4px;
border-radius:3px}.OK{background:#c8f0c8}.OKish{background:#f5e6a8}.FAIL{background:#f5b5b5}.other{background:#e4e4e4}
button.copy{font-size:11px;margin-top:2px}#summary{margin:.8em 0;font-weight:bold}"""

JS = """document.querySelectorAll('button.copy').forEach(function(b){b.addEventListener('click',function(){
var c=b.getAttribute('data-command');function done(){b.textContent='copied'}
if(navigator.clipboard){navigator.clipboard.writeText(c).then(done,function(){fallback(c);done()})}else{fallback(c);done()}})});
function fallback(c){var t=document.createElement('textarea');t.value=c;document.body.appendChild(t);t.select();
try{document.execCommand('copy')}catch(e){}document.body.removeChild(t)}
var n={};document.querySelectorAll('td.cell').forEach(function(td){var v=td.getAttribute('data-verdict');
n[v]=(n[v]||0)+1});document.getElementById('summary').textContent='cells: '+Object.keys(n).sort().map(function(k){
return k+' '+n[k]}).join(', ');"""


def page(rows: list[dict]) -> str:
    """The static HTML page (inline style and script only)."""
    datasets = _datasets(rows)
    out = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
           "<title>DiffRetriever: two-click reproductions</title>", f"<style>{CSS}</style></head><body>",
           "<h1>DiffRetriever two-click reproductions (nDCG@10)</h1>",
           "<p>Each cell: the measured score, the expected value and its source, the verdict (OK: equal at the shown "
           "precision; OKish: within 0.0005, or 0.005 for the paper's three-decimal numbers; FAIL), and a button "
           "copying the command that reproduces it. Generated by <code>make repro-page</code> from the committed "
           "result files.</p><div id='summary'></div>",
           "<table id='matrix'><thead><tr><th>condition</th>"
           + "".join(f"<th>{html.escape(ds)}</th>" for ds in datasets) + "</tr></thead><tbody>"]
    group = None
    for r in rows:
        if r["group"] != group:
            group = r["group"]
            out.append(f"<tr><td class='group' colspan='{len(datasets) + 1}'>{html.escape(group)}</td></tr>")
        out.append(f"<tr data-condition='{html.escape(r['name'])}'><td>{html.escape(r['display'])}</td>")
        for ds in datasets:
            c = r["cells"].get(ds)
            if c is None:
                out.append("<td></td>")
                continue
            v = c.verdict if c.verdict in ("OK", "OKish", "FAIL") else "other"
            score = f"{c.measured:.4f}" if c.measured is not None else "–"
            exp = f"{c.expected:.4f}" if c.expected is not None else "–"
            out.append(f"<td class='cell' data-verdict='{html.escape(c.verdict)}'><span class='score'>{score}</span>"
                       f"<div class='exp'>expected {exp} ({html.escape(c.source)})</div>"
                       f"<span class='v {v}'>{html.escape(c.verdict)}</span><br>"
                       f"<button class='copy' data-command='{html.escape(c.command, quote=True)}' "
                       f"title='{html.escape(c.command, quote=True)}'>copy command</button></td>")
        out.append("</tr>")
    out.append(f"</tbody></table><script>{JS}</script></body></html>")
    return "\n".join(out) + "\n"


def write(results: Path, out: Path, do_freeze: bool = False) -> tuple[Path, Path]:
    """Write ``out/index.html`` and ``out/diffretriever.yaml`` (``do_freeze``: record expected values first)."""
    if do_freeze:
        freeze(results)
    rows = conditions(results)
    out.mkdir(parents=True, exist_ok=True)
    (out / "diffretriever.yaml").write_text(source_yaml(rows))
    (out / "index.html").write_text(page(rows))
    return out / "index.html", out / "diffretriever.yaml"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m diffretriever_pyserini.evaluate.twocr",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--results", default="results", help="the committed results folder")
    parser.add_argument("--out", default="docs/repro", help="where index.html and its YAML source go")
    parser.add_argument("--freeze", action="store_true", help="record the measured scores as expected values first")
    args = parser.parse_args(argv)
    for path in write(Path(args.results), Path(args.out), args.freeze):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
