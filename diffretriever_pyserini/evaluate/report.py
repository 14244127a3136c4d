"""K-sweep report: every scoring mode at several (K_q, K_p) budgets, as a markdown table and a PNG plot."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from diffretriever_pyserini.pipeline import MODES, RunConfig, run_dataset

DEFAULT_BUDGETS = ((1, 1), (4, 4), (16, 16), (4, 16))
"""K_q = K_p in {1, 4, 16}, and the paper's Dream budget (4, 16)."""


def parse_budgets(text: str) -> list[tuple[int, int]]:
    """``"1:1,4:4,4:16"`` -> [(1, 1), (4, 4), (4, 16)]."""
    out = []
    for part in text.split(","):
        kq, _, kp = part.strip().partition(":")
        out.append((int(kq), int(kp or kq)))
    return out


def k_sweep(cfg: RunConfig, budgets=DEFAULT_BUDGETS, metric: str = "ndcg_cut_10") -> tuple[Path, Path]:
    """Run every budget (complete steps reused), write ``report.md`` and ``report.png`` under the dataset's runs."""
    results: dict[tuple[int, int], dict] = {}
    for kq, kp in budgets:
        run_cfg = dataclasses.replace(cfg, k_q=kq, k_p=kp, modes=",".join(MODES))
        records = run_dataset(run_cfg)
        results[(kq, kp)] = {mode: rec["metrics"][metric] for mode, rec in records.items()}
    out_dir = Path(cfg.runs) / f"beir-v1.0.0-{cfg.dataset}"
    modes = list(MODES)
    lines = [f"# {cfg.dataset}: {metric} per scoring mode and budget ({cfg.model}, zero-shot)\n",
             "| K_q, K_p | " + " | ".join(modes) + " |", "|---|" + "---|" * len(modes)]
    for (kq, kp), row in results.items():
        lines.append(f"| {kq}, {kp} | " + " | ".join(f"{row[m]:.4f}" for m in modes) + " |")
    lines.append("\nModes: " + "; ".join(f"`{m}` = {d}" for m, d in MODES.items()) + ".")
    table = out_dir / "report.md"
    table.write_text("\n".join(lines) + "\n")
    plot = out_dir / "report.png"
    _plot(results, modes, metric, plot, cfg)
    return table, plot


def _plot(results, modes, metric, path: Path, cfg: RunConfig) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    same = sorted((kq, kp) for kq, kp in results if kq == kp)
    for i, mode in enumerate(modes):
        color = f"C{i}"
        ax.plot([kq for kq, _ in same], [results[b][mode] for b in same], marker="o", color=color, label=mode)
        for kq, kp in results:
            if kq != kp:
                ax.scatter([kp], [results[(kq, kp)][mode]], marker="*", s=120, color=color)
    ax.set_xscale("log", base=2)
    ax.set_xticks([k for k, _ in same])
    ax.set_xticklabels([str(k) for k, _ in same])
    ax.set_xlabel("K (K_q = K_p; stars: K_q = 4, K_p = 16)")
    ax.set_ylabel(metric)
    ax.set_title(f"{cfg.dataset}: {metric} vs K ({cfg.model}, zero-shot)")
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
