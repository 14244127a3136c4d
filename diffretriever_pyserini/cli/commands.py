"""The sub-commands: each parses nothing itself (its arguments come from :mod:`~diffretriever_pyserini.cli.parser`),
calls the library and prints what it made."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from diffretriever_pyserini.cli.options import from_args, run_config

log = logging.getLogger("diffretriever_pyserini")


def cmd_datasets(args) -> int:
    from diffretriever_pyserini.datasets import DATASETS

    for d in DATASETS.values():
        source = "mirror only" if d.archive is None else f"{d.archive}.zip"
        print(f"{d.name:24s} {d.pyserini_name:44s} split={d.split:5s} {source}"
              + ("  remove-query" if d.remove_query else ""))
    return 0


def cmd_prepare(args) -> int:
    from diffretriever_pyserini.pipeline import step_prepare

    print(step_prepare(run_config(args)).root)
    return 0


def cmd_encode(args) -> int:
    from diffretriever_pyserini.pipeline import step_encode

    run = run_config(args).resolve()
    step_encode(run)
    root, shard = run.paths.encodings.root, run.encode.shard_id
    print(root if shard is None else f"shard {shard} of {run.encode.shard_num} under {root / 'shards'}")
    return 0


def cmd_index(args) -> int:
    from diffretriever_pyserini.pipeline import step_index

    print(step_index(run_config(args)))
    return 0


def _print_records(records: dict) -> None:
    for name, rec in records.items():
        values = "  ".join(f"{m}={v:.4f}" for m, v in rec["metrics"].items())
        print(f"{name:16s} {values}  ({rec['run']})")


def cmd_search(args) -> int:
    from diffretriever_pyserini.pipeline import step_search

    _print_records(step_search(run_config(args)))
    return 0


def cmd_run(args) -> int:
    from diffretriever_pyserini.pipeline import run_dataset

    _print_records(run_dataset(run_config(args)))
    return 0


def cmd_controls(args) -> int:
    from diffretriever_pyserini.pipeline import run_bm25, run_meanpool_control

    cfg = run_config(args)
    _print_records({"bm25-flat": run_bm25(cfg), "meanpool": run_meanpool_control(cfg)})
    return 0


def cmd_baselines(args) -> int:
    """Anserini's BM25 flat and multifield conditions on the same corpus, each fused with our hybrid run."""
    from diffretriever_pyserini.pipeline import baselines

    table, saved = baselines(run_config(args), args.bm25, bm25_only=args.bm25_only)
    print(f"\n{table}" + (f"\ntable saved to {saved}" if saved else ""))
    return 0


def cmd_demo(args) -> int:
    """SciFact: zero-shot and fine-tuned K-mask readouts beside the BM25 and mean-pooling controls, as a table."""
    from diffretriever_pyserini.pipeline.demo import demo

    run = run_config(args).resolve()
    table, saved = demo(run, finetune=not args.skip_finetune)
    print(f"\n{run.dataset.name} test (nDCG@10, R@100); table saved to {saved}\n\n{table}")
    return 0


def cmd_report(args) -> int:
    from diffretriever_pyserini.evaluate.report import k_sweep, parse_budgets

    table, plot = k_sweep(run_config(args), parse_budgets(args.budgets))
    print(table.read_text())
    print(f"table: {table}\nplot: {plot}")
    return 0


def cmd_train_data(args) -> int:
    from diffretriever_pyserini.training.build import build_training_data

    path, n = build_training_data(run_config(args), args.source, args.negatives, args.out, args.tevatron, args.holdout,
                                  args.pairs)
    print(f"{n} training examples -> {path}")
    return 0


def cmd_train(args) -> int:
    from diffretriever_pyserini.training.trainer import TrainConfig, train

    final = train(from_args(TrainConfig, args))
    print(f"fine-tuned model: {final}")
    return 0


def cmd_select_budget(args) -> int:
    from diffretriever_pyserini.training.budget import BudgetConfig, select_budget

    best, table = select_budget(from_args(BudgetConfig, args))
    print(table)
    print(f"selected (K_q, K_p) = {best}")
    return 0


def cmd_encode_queries(args) -> int:
    from diffretriever_pyserini.regressions.anserini import encode_queries

    out = encode_queries(run_config(args), args.out)
    print(f"sparse (JsonStringVector / cached-encoder JSONL): {out}\ndense (--encoded-queries): "
          f"{out.with_suffix('.dense')}")
    return 0


def cmd_anserini_configs(args) -> int:
    from diffretriever_pyserini.regressions.anserini import write_configs

    cfg = run_config(args)
    root = Path(args.root) if args.root else Path(cfg.work) / "anserini"
    for path in write_configs(cfg, root, Path(args.folder) if args.folder else None, overwrite=args.overwrite):
        print(path)
    return 0


def cmd_check_config(args) -> int:
    import yaml

    from diffretriever_pyserini.evaluate.paper import check_paper_config
    from diffretriever_pyserini.regressions.anserini import check_config

    overrides = {k: getattr(args, k) for k in ("model", "adapter", "device", "dtype", "batch_size", "mirror",
                                               "work", "runs", "dense_source")}
    failed = False
    for config in map(Path, args.config):
        if not config.is_file():
            from diffretriever_pyserini.errors import UserError

            raise UserError("no such config", config)
        if "paper" in (yaml.safe_load(config.read_text()) or {}):
            rows = check_paper_config(config, **overrides)
        else:
            rows = check_config(config, Path(args.root) if args.root else None)
        print(config)
        for model, metric, expected, measured, verdict in rows:
            shown = f"{measured:.4f}" if isinstance(measured, float) else measured
            print(f"  {verdict:6s} {model} {metric}: expected {expected}, measured {shown}")
        if not rows:
            print("  no expected results in this config (not measured here)")
        failed |= any(r[4] == "FAIL" for r in rows)
    return 1 if failed else 0


def cmd_paper_configs(args) -> int:
    from diffretriever_pyserini.evaluate.paper import write_paper_configs

    for path in write_paper_configs(Path(args.folder)):
        print(path)
    return 0


def cmd_check_run(args) -> int:
    from diffretriever_pyserini.datasets.custom import read_custom_topics
    from diffretriever_pyserini.errors import UserError
    from diffretriever_pyserini.pipeline.settings import named_file
    from diffretriever_pyserini.search.runs import check_run

    topics = Path(named_file(args.topics, "topics"))
    if not topics.is_file():
        raise UserError(f"topics {args.topics!r} is neither a file nor a topics name Pyserini holds on this machine")
    problems = check_run(args.run, list(read_custom_topics(topics)), args.max_hits)
    for p in problems:
        print(p)
    print(f"{args.run}: " + ("fit for submission" if not problems else f"{len(problems)} problem(s)"))
    return 1 if problems else 0


def cmd_fuse(args) -> int:
    from diffretriever_pyserini.errors import UserError
    from diffretriever_pyserini.evaluate.metrics import evaluate_run_file
    from diffretriever_pyserini.fusion import normalized_fusion, reciprocal_rank_fusion
    from diffretriever_pyserini.search.runs import read_run, write_run

    runs = [read_run(r) for r in args.runs]
    for path, run in zip(args.runs, runs):
        if not any(run.values()):
            raise UserError("the run has no hits; fusing it would silently give the other runs back", path)
    shared = set.intersection(*(set(run) for run in runs))
    if not shared:
        raise UserError(f"the runs share no topic ({', '.join(f'{len(r)} in {p}' for p, r in zip(args.runs, runs))})"
                        "; were they made on different topic sets?")
    for path, run in zip(args.runs, runs):
        if len(run) > len(shared):
            log.warning("%s: %d of its %d topics are missing from another run; fused from the runs that have them",
                        path, len(run) - len(shared), len(run))
    fused = reciprocal_rank_fusion(runs, k=args.rrf_k) if args.method == "rrf" else \
        normalized_fusion(runs, [1.0 / len(runs)] * len(runs), all_equal=args.all_equal)
    path = write_run(args.out, fused, args.tag, k=args.hits)
    print(path)
    if args.qrels:
        print(json.dumps(evaluate_run_file(path, args.qrels)["metrics"], indent=2))
    return 0


def cmd_evaluate(args) -> int:
    from diffretriever_pyserini.evaluate.metrics import evaluate_run_file

    rec = evaluate_run_file(args.run, args.qrels, tuple(args.metrics), write=not args.no_write)
    print(json.dumps(rec["metrics"], indent=2))
    return 0


def cmd_java(args) -> int:
    from diffretriever_pyserini.pyserini_bridge.java import ensure_java, install_startup_hook, java_major

    home = ensure_java()
    print(f"JAVA_HOME={home} (Java {java_major(home)})")
    if args.install_hook:
        install_startup_hook()
    return 0
