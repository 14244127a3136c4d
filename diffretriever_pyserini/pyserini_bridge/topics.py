"""Pyserini's own topics and qrels by name (``beir-v1.0.0-scifact-test``), where this machine has them.

Pyserini 1.x reads both from the Anserini jar (always local); Pyserini 2.x downloads them into its cache
(``$PYSERINI_CACHE`` or ``~/.cache/pyserini``) the first time a name is used, after fetching its name list, so
offline only names it fetched before resolve. Topics come back as a TSV file (``qid TAB title``) written next to
Pyserini's cache, so the rest of the pipeline reads one format.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from diffretriever_pyserini.datasets.files import one_line

log = logging.getLogger(__name__)


def _cache() -> Path:
    return Path(os.environ.get("PYSERINI_CACHE") or Path.home() / ".cache" / "pyserini")


def local_file(name: str, kind: str) -> Path | None:
    """The file of Pyserini's ``kind`` (``topics`` or ``qrels``) ``name`` on this machine, or None when Pyserini
    does not know the name or cannot reach it offline."""
    try:
        from pyserini.search import _base
    except Exception as exc:  # noqa: BLE001 - no Pyserini or no Java: nothing local
        log.info("Pyserini cannot be imported (%s); %s %r is not resolved", exc, kind, name)
        return None
    try:
        if kind == "qrels":
            return Path(_base.get_qrels_file(name))
        topics = _base.get_topics(name)
    except Exception as exc:  # noqa: BLE001 - an unknown name, or a name list / file Pyserini would download
        log.info("Pyserini has no local %s %r (%s: %s)", kind, name, type(exc).__name__, exc)
        return None
    out = _cache() / "diffretriever-topics" / f"{name}.tsv"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        for qid, fields in topics.items():
            text = fields.get("title") or fields.get("text") or next(iter(fields.values()), "")
            f.write(f"{qid}\t{one_line(str(text))}\n")
    tmp.replace(out)
    return out
