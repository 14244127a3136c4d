"""The schema of Anserini's regression configs (``src/main/resources/regression/*.yaml``), as Anserini's own runner
(``src/main/python/run_regression.py``) reads them, and Anserini's path rules.

Keys the runner reads: ``corpus``, ``corpus_path``, ``index_path``, ``collection_class``, ``generator_class``,
``index_threads``, ``index_options``, ``index_stats`` (``--verify``), ``metrics`` (``metric``, ``command``,
``params``, ``separator``, ``parse_index``, ``metric_precision``, ``can_combine``), ``topic_reader``, ``topics``
(``name``, ``id``, ``path``, ``qrel``; optionally their own ``topic_reader`` and ``convert_params``), ``models``
(``name``, ``display``, ``params``, ``results``: for each metric one value per topic set); optional ``download_url``,
``download_checksum``, ``download_corpus``, ``conversions``. Anything else is an unknown key.

Paths: ``corpus_path`` and ``index_path`` are relative to the Anserini checkout (the runner also tries a few
machine-specific roots); a topic's ``path`` and ``qrel`` are joined onto ``tools/topics-and-qrels/``. An absolute path
is used as it is (``os.path.join`` keeps an absolute second part), which is the rule for files outside a checkout.
"""

from __future__ import annotations

import os
from pathlib import Path

REQUIRED = ("corpus", "corpus_path", "index_path", "collection_class", "generator_class", "index_threads",
            "index_options", "index_stats", "metrics", "topic_reader", "topics", "models")
OPTIONAL = ("download_url", "download_checksum", "download_corpus", "conversions")
METRIC_KEYS = ("metric", "command", "params", "separator", "parse_index", "metric_precision", "can_combine")
TOPIC_KEYS = ("name", "id", "path", "qrel")
TOPIC_OPTIONAL = ("topic_reader", "convert_params")
MODEL_KEYS = ("name", "display", "params", "results")
TOPICS_FOLDER = Path("tools") / "topics-and-qrels"
IMPACT_TOPIC_READERS = ("TsvString", "TsvInt", "JsonStringVector", "JsonIntVector")
"""Topic readers Anserini's impact search accepts for cached (pre-encoded) queries; the JSON vector readers also need
``-topicField vector`` in the model's params."""


def _items(config: dict, key: str, required: tuple, optional: tuple = ()) -> list[str]:
    problems = []
    items = config.get(key)
    if not isinstance(items, list) or not items:
        return [f"{key}: expected a non-empty list"]
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            problems.append(f"{key}[{i}]: expected a mapping")
            continue
        problems += [f"{key}[{i}]: missing key {k!r}" for k in required if k not in item]
        problems += [f"{key}[{i}]: unknown key {k!r}" for k in item if k not in required + optional]
    return problems


def schema_problems(config) -> list[str]:
    """What keeps Anserini's runner from running ``config`` (empty: nothing)."""
    if not isinstance(config, dict):
        return ["expected a YAML mapping"]
    problems = [f"missing key {k!r}" for k in REQUIRED if k not in config]
    problems += [f"unknown key {k!r}" for k in config if k not in REQUIRED + OPTIONAL]
    problems += _items(config, "metrics", METRIC_KEYS)
    problems += _items(config, "topics", TOPIC_KEYS, TOPIC_OPTIONAL)
    problems += _items(config, "models", MODEL_KEYS)
    if problems:
        return problems
    metrics = [m["metric"] for m in config["metrics"]]
    n_topics = len(config["topics"])
    for i, model in enumerate(config["models"]):
        results = model["results"]
        if not isinstance(results, dict):
            problems.append(f"models[{i}].results: expected a mapping of metric -> values")
            continue
        for metric in metrics:
            values = results.get(metric)
            if not isinstance(values, list) or len(values) != n_topics or \
                    not all(isinstance(v, (int, float)) for v in values):
                problems.append(f"models[{i}].results[{metric!r}]: expected {n_topics} number(s), one per topic set")
    readers = {t.get("topic_reader") or config["topic_reader"] for t in config["topics"]}
    impact = "-impact" in config["index_options"]
    for reader in readers:
        if impact and reader not in IMPACT_TOPIC_READERS:
            problems.append(f"topic_reader {reader!r} is not one Anserini reads pre-encoded impact queries with "
                            f"({', '.join(IMPACT_TOPIC_READERS)})")
        if reader.startswith("Json") and not all("-topicField vector" in m["params"] for m in config["models"]):
            problems.append(f"topic_reader {reader} keeps only the 'vector' field when the models pass "
                            "-topicField vector")
    if not isinstance(config["index_stats"], dict):
        problems.append("index_stats: expected a mapping")
    return problems


def anserini_paths(config: dict, root: Path) -> dict[str, Path]:
    """The files a config names, resolved as Anserini's runner does from the checkout ``root``: ``corpus``,
    ``index`` and per topic set ``topics[i]`` and ``qrel[i]``."""
    root = Path(root)
    paths = {"corpus": root / config["corpus_path"], "index": root / config["index_path"]}
    for i, topic in enumerate(config["topics"]):
        paths[f"topics[{i}]"] = Path(os.path.join(root / TOPICS_FOLDER, topic["path"]))
        paths[f"qrel[{i}]"] = Path(os.path.join(root / TOPICS_FOLDER, topic["qrel"]))
    return paths
