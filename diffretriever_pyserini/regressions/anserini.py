"""Anserini regression configs for the DiffRetriever impact index, laid out so that Anserini's own runner runs them,
and their check here.

:func:`write_configs` writes, for a measured condition, an Anserini checkout-shaped folder (the *root*):

- ``collections/beir-v1.0.0/diffretriever/<condition>/<dataset>`` -> the sparse JsonVectorCollection (a link);
- ``indexes/lucene-index.<collection>.diffretriever.<condition>/`` -> the Lucene impact index (a link);
- ``tools/topics-and-qrels/topics.<collection>.<split>.diffretriever.<condition>.tsv.gz``: the pre-encoded queries as
  ``TsvString`` (each term repeated as often as its integer weight, the format of Anserini's cached SPLADE topics);
- ``tools/topics-and-qrels/qrels.<collection>.<split>.txt``: the qrels under Anserini's own name;
- the YAML, in Anserini's regression schema exactly (:mod:`~diffretriever_pyserini.regressions.schema`; relative
  paths, Anserini's topic reader for cached impact queries, ``-removeQuery`` as every Anserini BEIR regression
  passes), in ``--folder`` (default ``<root>/src/main/resources/regression``), with a sidecar
  ``<name>.sidecar.json`` beside it for what Anserini's schema has no key for (the model, the root, the command that
  reproduces it, the pipeline's own sparse-run metrics).

Copy ``collections/``, ``tools/topics-and-qrels/`` and the YAML into an Anserini checkout and run
``python src/main/python/run_regression.py --index --verify --search --regression <name>``. :func:`check_config`
does the same here with Pyserini (index when missing, search the TsvString topics, evaluate, OK / OKish / FAIL per
metric), from any working directory; it names every missing file before starting anything.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import shutil
from collections import Counter
from pathlib import Path

import yaml

from diffretriever_pyserini.datasets.files import iter_tsv, one_line
from diffretriever_pyserini.errors import UserError
from diffretriever_pyserini.evaluate.verdicts import verdict
from diffretriever_pyserini.regressions.schema import TOPICS_FOLDER, anserini_paths, schema_problems

log = logging.getLogger(__name__)

METRICS = [("nDCG@10", "-c -m ndcg_cut.10", "ndcg_cut_10"), ("R@100", "-c -m recall.100", "recall_100"),
           ("R@1000", "-c -m recall.1000", "recall_1000")]
HITS = 1000
MODEL_PARAMS = f"-impact -pretokenized -removeQuery -hits {HITS}"
"""Every Anserini BEIR regression passes ``-removeQuery``: a hit whose docid equals the query id is dropped."""
SIDECAR_SUFFIX = ".sidecar.json"
TOPIC_READER = "TsvString"


def query_file(run) -> Path:
    """Pre-encoded queries of a resolved run (JsonStringVector JSONL, Pyserini's cached-encoder format)."""
    return run.paths.work / "queries" / run.dataset.name / f"{run.condition}.jsonl"


def tsv_string(vector: dict[str, int]) -> str:
    """A sparse query as Anserini's cached impact topics hold it: each term repeated ``weight`` times (terms in
    name order; a term holding whitespace cannot be one token and is left out, with a warning)."""
    bad = [t for t in vector if not t or any(c.isspace() for c in t)]
    if bad:
        log.warning("%d query terms hold whitespace and are left out of the TsvString topics (e.g. %r)", len(bad),
                    bad[0])
    return " ".join(" ".join([term] * int(weight)) for term, weight in sorted(vector.items())
                    if term not in bad and int(weight) > 0)


def read_tsv_string(path: Path) -> dict[str, dict[str, int]]:
    """TsvString topics back as ``{qid: {term: weight}}`` (the weight of a term = its repetitions)."""
    return {qid: dict(Counter(tokens.split())) for _, qid, tokens in iter_tsv(path)}


def encode_queries(cfg, out: Path | None = None) -> Path:
    """Write the sparse query vectors (JsonStringVector / Pyserini cached-encoder JSONL), beside them the same
    vectors as Anserini ``TsvString`` topics (``<stem>.tsv.gz``) and the dense single vectors as
    ``<stem>.dense/embedding.pkl`` for ``pyserini.search.faiss --encoded-queries``."""
    import pandas as pd

    from diffretriever_pyserini.pipeline.steps import step_prepare
    from diffretriever_pyserini.pyserini_bridge.encoders import DiffRetrieverQueryEncoder

    run = cfg.resolve()
    topics = step_prepare(run).query_texts()
    encoder = DiffRetrieverQueryEncoder(run.model.model, batch_size=run.model.batch_size,
                                        **run.readout.side("query"), **run.model.backbone_options())
    encoder.prime(list(topics.values()))
    out = Path(out) if out else query_file(run)
    out.parent.mkdir(parents=True, exist_ok=True)
    vectors = {qid: encoder.encode_sparse(text) for qid, text in topics.items()}
    with open(out, "w", encoding="utf-8") as f:
        for qid, text in topics.items():
            # keyed by the topics.tsv line (what Pyserini's search commands look up), encoded from the exact text
            f.write(json.dumps({"qid": qid, "contents": one_line(text), "vector": vectors[qid]},
                               ensure_ascii=False) + "\n")
    with gzip.open(out.with_suffix(".tsv.gz"), "wt", encoding="utf-8") as f:
        for qid in topics:
            f.write(f"{qid}\t{tsv_string(vectors[qid])}\n")
    dense_dir = out.with_suffix(".dense")
    dense_dir.mkdir(exist_ok=True)
    pd.DataFrame({"id": list(topics), "text": [one_line(t) for t in topics.values()],
                  "embedding": [encoder.encode(t) for t in topics.values()]}).to_pickle(dense_dir / "embedding.pkl")
    return out


def config_name(run) -> str:
    """``<collection>.diffretriever.<condition>`` (the condition starts with ``diffretriever.``)."""
    return f"{run.dataset.run_prefix}.{run.condition}"


def anserini_layout(run) -> dict[str, str]:
    """The relative paths of a condition's files in an Anserini checkout (as Anserini names BEIR's)."""
    prefix, split = run.dataset.run_prefix, run.dataset.split
    collections = "beir-v1.0.0" if prefix.startswith("beir-v1.0.0-") else prefix
    return {"corpus_path": f"collections/{collections}/diffretriever/{run.condition}/{run.dataset.name}",
            "index_path": f"indexes/lucene-index.{config_name(run)}/",
            "topics": f"topics.{prefix}.{split}.{run.condition}.tsv.gz",
            "qrel": f"qrels.{prefix}.{split}.txt"}


def config_for(run, results: dict | None, index_stats: dict, threads: int = 16) -> dict:
    """The Anserini regression config of a condition (``results``: {metric: value}, None when not measured)."""
    layout = anserini_layout(run)
    r = run.readout
    return {
        "corpus": config_name(run),
        "corpus_path": layout["corpus_path"],
        "index_path": layout["index_path"],
        "collection_class": "JsonVectorCollection",
        "generator_class": "DefaultLuceneDocumentGenerator",
        "index_threads": threads,
        "index_options": "-impact -pretokenized",
        "index_stats": index_stats,
        "metrics": [{"metric": name, "command": "bin/trec_eval", "params": params, "separator": "\t",
                     "parse_index": 2, "metric_precision": 4, "can_combine": False} for name, params, _ in METRICS],
        "topic_reader": TOPIC_READER,
        "topics": [{"name": f"BEIR (v1.0.0): {run.dataset.name}" if run.dataset.run_prefix.startswith("beir-")
                    else run.dataset.name,
                    "id": run.dataset.split, "path": layout["topics"], "qrel": layout["qrel"]}],
        "models": [{"name": run.condition, "display": f"DiffRetriever sparse ({run.model.model}, K_q={r.k_q}, "
                                                      f"K_p={r.k_p})",
                    "params": MODEL_PARAMS,
                    "results": {name: [round(results[name], 4)] for name, _, _ in METRICS} if results else {}}],
    }


def _link(target: Path, link: Path) -> None:
    """``link`` -> ``target`` (replacing an older link)."""
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.is_file():
        link.unlink()
    elif link.is_dir():
        shutil.rmtree(link)
    link.symlink_to(Path(target).resolve(), target_is_directory=Path(target).is_dir())


def lay_out(run, root: Path) -> dict[str, str]:
    """Put a measured condition's files under the Anserini-shaped ``root`` (links to the corpus and the index,
    the TsvString topics and the qrels copied); returns the layout."""
    from diffretriever_pyserini.pipeline.steps import step_prepare

    layout = anserini_layout(run)
    topics = query_file(run).with_suffix(".tsv.gz")
    prepared = step_prepare(run)
    needed = {"sparse encodings": run.paths.encodings.sparse, "impact index": run.paths.impact_index,
              "pre-encoded topics (encode-queries)": topics, "qrels": prepared.qrels}
    missing = [f"{what}: {path}" for what, path in needed.items() if not Path(path).exists()]
    if missing:
        raise UserError(f"run the condition and encode-queries first; missing {'; '.join(missing)}")
    _link(run.paths.encodings.sparse, root / layout["corpus_path"])
    _link(run.paths.impact_index, root / layout["index_path"].rstrip("/"))
    (root / TOPICS_FOLDER).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(topics, root / TOPICS_FOLDER / layout["topics"])
    shutil.copyfile(prepared.qrels, root / TOPICS_FOLDER / layout["qrel"])
    return layout


def write_configs(cfg, root: Path, folder: Path | None = None, overwrite: bool = False) -> list[Path]:
    """Lay out the condition of ``cfg`` under ``root`` and write its config (expected results measured by the same
    search :func:`check_config` runs) with its sidecar into ``folder`` (default: the root's regression folder).
    An existing different config is replaced only with ``overwrite``."""
    from diffretriever_pyserini.pyserini_bridge.lucene import index_statistics

    run = cfg.resolve()
    root = Path(root).resolve()
    folder = Path(folder) if folder else root / "src" / "main" / "resources" / "regression"
    lay_out(run, root)
    config = config_for(run, None, index_statistics(run.paths.impact_index))
    measured = _search_and_evaluate(config, anserini_paths(config, root))
    config["models"][0]["results"] = {name: [round(measured[key], 4)] for name, _, key in METRICS}
    problems = schema_problems(config)
    if problems:  # a bug here, not a user error
        raise RuntimeError(f"the config does not follow Anserini's schema: {problems}")
    path = folder / f"{config_name(run)}.yaml"
    text = "---\n" + yaml.safe_dump(config, sort_keys=False)
    if path.is_file() and path.read_text() != text and not overwrite:
        raise UserError("a different config is already there; pass --overwrite to replace it", path)
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    pipeline_metrics = run.paths.run_dir / "sparse.trec.metrics.json"
    sidecar = {"anserini_root": os.path.relpath(root, folder.resolve()), "model": run.model.model,
               "adapter": run.model.adapter, "readout": run.record()["readout"], "dataset": run.dataset.name,
               "reproduce": f"make beir-{run.dataset.name} MODEL={run.model.model} && make anserini-configs "
                            f"DATASET={run.dataset.name} MODEL={run.model.model}"
               if run.dataset.run_prefix.startswith("beir-") else
               "diffretriever-pyserini run " + " ".join(f"--{k} {v}" for k, v in run.dataset.files.items()) +
               f" --name {run.dataset.name} && diffretriever-pyserini encode-queries (same options) && "
               "diffretriever-pyserini anserini-configs (same options)",
               "pipeline_sparse_metrics": json.loads(pipeline_metrics.read_text()).get("metrics")
               if pipeline_metrics.is_file() else None,
               "note": "expected results measured by Lucene impact search of this index with the TsvString topics "
                       "and -removeQuery, as Anserini's runner searches"}
    (folder / f"{config_name(run)}{SIDECAR_SUFFIX}").write_text(json.dumps(sidecar, indent=2) + "\n")
    return [path]


def _search_and_evaluate(config: dict, paths: dict[str, Path]) -> dict[str, float]:
    """Search the config's first topic set as Anserini's runner would (impact search, ``-removeQuery`` when the
    model passes it) and evaluate with trec_eval's measures."""
    from diffretriever_pyserini.evaluate.metrics import evaluate, read_qrels
    from diffretriever_pyserini.pyserini_bridge.search import impact_searcher, search_topics

    vectors = read_tsv_string(paths["topics[0]"])
    searcher = impact_searcher(paths["index"], _TopicVectors(vectors))
    remove = "-removeQuery" in config["models"][0]["params"]
    run = search_topics(searcher, {q: q for q in vectors}, HITS, remove)
    return evaluate(read_qrels(paths["qrel[0]"]), run, tuple(key for _, _, key in METRICS))


class _TopicVectors:
    """Query encoder answering with the pre-encoded vector of a topic id (the 'query' passed is the qid)."""

    def __init__(self, vectors: dict[str, dict[str, int]]):
        self.vectors = vectors

    def encode(self, qid: str):
        return self.vectors[qid]


def config_root(path: Path, root: Path | None = None) -> Path:
    """The Anserini root a config's relative paths start from: ``root`` if given, else the sidecar's (relative to
    the config's folder), else the folder three levels above ``src/main/resources/regression``."""
    if root is not None:
        return Path(root).resolve()
    sidecar = Path(str(path).removesuffix(".yaml") + SIDECAR_SUFFIX)
    if sidecar.is_file():
        return (path.parent / json.loads(sidecar.read_text())["anserini_root"]).resolve()
    return path.resolve().parents[4] if len(path.resolve().parents) > 4 else path.resolve().parent


def check_config(path: Path, root: Path | None = None) -> list[tuple[str, str, float, float, str]]:
    """Reproduce a config: index (built when missing), search its pre-encoded topics, evaluate, compare.

    Every file is resolved before anything starts (Anserini's rules from the root); a schema problem or a missing
    file raises UserError naming them all. Returns rows (model, metric, expected, measured, verdict); index
    statistics are compared too."""
    from diffretriever_pyserini.pyserini_bridge.lucene import build_impact_index, index_is_complete, index_statistics

    path = Path(path)
    if not path.is_file():
        raise UserError("no such config", path)
    config = yaml.safe_load(path.read_text())
    problems = schema_problems(config)
    if problems:
        raise UserError("not an Anserini regression config: " + "; ".join(problems), path)
    paths = anserini_paths(config, config_root(path, root))
    index = paths["index"]
    needed = {k: p for k, p in paths.items() if k != "index" and (k != "corpus" or not index_is_complete(index))}
    missing = [f"{k} {p}" for k, p in needed.items() if not p.exists()]
    if missing:
        raise UserError(f"missing {', '.join(missing)} (root {config_root(path, root)}; make anserini-configs lays "
                        "the files out, --root names another Anserini checkout)", path)
    if not index_is_complete(index):
        build_impact_index(paths["corpus"], index, int(config.get("index_threads", 2)))
    stats = index_statistics(index)
    rows = [("index", key, expected, stats[key], "OK" if stats[key] == expected else "FAIL")
            for key, expected in (config.get("index_stats") or {}).items()]
    measured = _search_and_evaluate(config, paths)
    for model in config["models"]:
        for name, _, key in METRICS:
            if name in model["results"]:
                expected = model["results"][name][0]
                rows.append((model["name"], name, expected, measured[key], verdict(measured[key], expected)))
    return rows
