"""Reproduction configs whose expected results are the paper's published numbers (``paper_configs/``).

One YAML per released checkpoint and dataset with a published number (``resources/paper-results.yaml`` lists them with
their sources), in the shape of the Anserini configs beside them: the condition (checkpoint, K, the reference's
evaluation choices), the metrics, and per scoring mode the expected results. ``check-config`` on such a file runs
the whole pipeline with the weights the user has (``--model`` base folder or hub id, ``--adapter`` the released LoRA
folder or hub id) and prints OK / OKish / FAIL per number. Published numbers have three decimals: OK when the
measured value rounds to it, OKish within 0.005 (bf16 kernels and batch shapes move nDCG@10 by a few thousandths),
FAIL otherwise.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml

from diffretriever_pyserini.search.modes import MODE_TABLE

from diffretriever_pyserini.datasets import DATASETS

RESULTS_FILE = "paper-results.yaml"
PAPER_PRECISION = 3
PAPER_OKISH = 0.005
METRIC_NAMES = {"ndcg_cut_10": "nDCG@10", "recip_rank_10": "MRR@10", "recall_100": "R@100",
                "recall_1000": "R@1000"}
MODE_NAMES = {m.name: m.paper for m in MODE_TABLE.values() if m.paper}
"""Our run file stem -> the paper's mode name (the modes the paper reports)."""


def published() -> dict:
    """The published numbers per checkpoint (``resources/paper-results.yaml``)."""
    text = (resources.files("diffretriever_pyserini") / "resources" / RESULTS_FILE).read_text(encoding="utf-8")
    return yaml.safe_load(text)["checkpoints"]


def paper_config(name: str, entry: dict, dataset: str) -> dict:
    """The reproduction config of checkpoint ``name`` on ``dataset``.

    The condition follows the reference's evaluation: self hits kept on ArguAna and Quora (it does not remove
    them), short sparse lists counted as padded with zeros when fusing, exact MaxSim.
    """
    results = entry["results"][dataset]
    ds = DATASETS[dataset]
    metrics = sorted({m for by_metric in results.values() for m in by_metric})
    return {
        "paper": {"checkpoint": name, "adapter": entry["adapter"], "base": entry["base"], "source": entry["source"]},
        "dataset": dataset,
        "topics": ds.pyserini_name,
        "condition": {"k_q": entry["k_q"], "k_p": entry["k_p"], "keep_self_hits": ds.remove_query,
                      "sparse_zero_fill": True, "maxsim": "exact", "hits": 1000},
        "metrics": [{"metric": METRIC_NAMES[m], "trec_eval": m, "metric_precision": PAPER_PRECISION}
                    for m in metrics],
        "models": [{"name": mode, "display": f"DiffRetriever {name} {MODE_NAMES[mode]}",
                    "results": {METRIC_NAMES[m]: [value] for m, value in by_metric.items()}}
                   for mode, by_metric in results.items()],
        "reproduce": {"command": f"make paper-check CHECKPOINT={name} DATASET={dataset} MODEL=<{entry['base']} "
                                 f"folder or id> ADAPTER=<{entry['adapter']} folder or id>",
                      "verdicts": f"OK: equal at {PAPER_PRECISION} decimals; OKish: within {PAPER_OKISH}; else FAIL"},
    }


def config_name(name: str, dataset: str) -> str:
    return f"{DATASETS[dataset].run_prefix}.diffretriever-{name}.yaml"


def write_paper_configs(folder: Path) -> list[Path]:
    """A config per (checkpoint, registry dataset) with a published number; returns the files written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, entry in published().items():
        for dataset in entry["results"]:
            if dataset not in DATASETS:
                continue  # TREC DL 2019 / 2020 are not BEIR sets of the registry
            path = folder / config_name(name, dataset)
            path.write_text("---\n" + yaml.safe_dump(paper_config(name, entry, dataset), sort_keys=False))
            written.append(path)
    return written


def paper_status(measured: float, expected: float) -> str:
    """OK (rounds to the published value), OKish (within 0.005), FAIL."""
    from diffretriever_pyserini.evaluate.verdicts import verdict

    return verdict(measured, expected, PAPER_PRECISION, PAPER_OKISH)


def run_config_for(config: dict, **overrides):
    """The :class:`~diffretriever_pyserini.pipeline.RunConfig` a paper config runs (``overrides``: model, adapter,
    device, dtype, mirror, work, runs, ...; None = the config's own)."""
    from diffretriever_pyserini.pipeline import RunConfig

    paper, condition = config["paper"], config["condition"]
    values = {"dataset": config["dataset"], "model": paper["base"], "adapter": paper["adapter"],
              "modes": ",".join(m["name"] for m in config["models"]), **condition}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return RunConfig(**values)


def check_paper_config(path: Path, **overrides) -> list[tuple[str, str, float, float, str]]:
    """Run the condition of a paper config end to end and compare with the published numbers: rows (mode, metric,
    expected, measured, verdict)."""
    from diffretriever_pyserini.pipeline import run_dataset

    config = yaml.safe_load(Path(path).read_text())
    records = run_dataset(run_config_for(config, **overrides))
    names = {m["metric"]: m["trec_eval"] for m in config["metrics"]}
    rows = []
    for model in config["models"]:
        measured = records[model["name"]]["metrics"]
        for display, values in model["results"].items():
            value = measured[names[display]]
            rows.append((model["name"], display, values[0], value, paper_status(value, values[0])))
    return rows
