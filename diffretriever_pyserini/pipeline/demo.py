"""The SciFact demo: the zero-shot readout's runs beside BM25 flat and Pyserini's mean pooling, and the readout
fine-tuned on SciFact's training claims with the CPU recipe, in one table (``diffretriever-pyserini demo``)."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from diffretriever_pyserini.pipeline.controls import run_bm25, run_meanpool_control
from diffretriever_pyserini.pipeline.records import metrics_table
from diffretriever_pyserini.pipeline.settings import Run, RunConfig, as_run
from diffretriever_pyserini.pipeline.steps import run_dataset, step_prepare

log = logging.getLogger(__name__)


def demo(cfg: RunConfig | Run, finetune: bool = True) -> tuple[str, Path]:
    """The demo table: our zero-shot readout's runs beside BM25 flat and mean pooling and, on SciFact with
    ``finetune``, the readout fine-tuned on SciFact's training claims (CPU recipe); the table and its file."""
    import shutil

    from diffretriever_pyserini.training.build import build_training_data
    from diffretriever_pyserini.training.trainer import RECIPES, TrainConfig, train

    run = as_run(cfg)
    r = run.readout
    rows = [(f"zero-shot readout {name} (K_q={r.k_q}, K_p={r.k_p})", rec) for name, rec in run_dataset(run).items()]
    rows.append(("BM25 flat (Lucene; published 0.6789)", run_bm25(run)))
    rows.append((f"mean pooling, pyserini.encode + FaissSearcher ({run.model.model})", run_meanpool_control(run)))
    if run.dataset.name == "scifact" and finetune:
        recipe = RECIPES["cpu-demo"]
        train_file, _ = build_training_data(run.options, "scifact-claims", recipe["negatives"], None, pairs=True)
        out = run.paths.work / "finetune" / f"{Path(run.model.model).name}-scifact-claims"
        final = train(TrainConfig(train=str(train_file), corpus=str(step_prepare(run).corpus_dir), out=str(out),
                                  model=run.model.model, device=run.model.device, recipe="cpu-demo"))
        tuned = dataclasses.replace(run.options, model=str(final), k_q=None, k_p=None, q_max_length=None,
                                    p_max_length=None, top_k=None, denoise_steps=None).resolve()
        records = run_dataset(tuned)
        shutil.copy(out / "loss.png", tuned.paths.run_dir / "loss.png")
        for name, rec in records.items():
            rows.append((f"fine-tuned readout {name} (K_q={tuned.readout.k_q}, K_p={tuned.readout.k_p})", rec))
        log.info("loss curve: %s", tuned.paths.run_dir / "loss.png")
    table = metrics_table(rows)
    out_md = run.paths.runs / run.dataset.run_prefix / "demo.md"
    out_md.write_text(f"# {run.dataset.name} test ({run.model.model})\n\n{table}")
    return table, out_md
