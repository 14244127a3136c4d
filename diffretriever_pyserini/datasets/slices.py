"""A small real slice of a BEIR dataset folder: the first judged test queries, their relevant documents, and the
first other documents of the corpus, written as a BEIR folder (used by the tests and the cross-stack check)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path


def slice_beir(src: Path, out: Path, queries: int, extra_docs: int) -> Path:
    """Write ``out`` (``corpus.jsonl``, ``queries.jsonl``, ``qrels/test.tsv``) from the BEIR folder ``src``: the
    first ``queries`` judged test queries, every document relevant to them, and the first ``extra_docs`` others."""
    lines = (src / "qrels" / "test.tsv").read_text().splitlines()
    qrels = [line.split("\t") for line in lines[1:]]
    qids = list(dict.fromkeys(q for q, _, _ in qrels))[:queries]
    kept = [r for r in qrels if r[0] in qids]
    relevant = {d for _, d, _ in kept}
    (out / "qrels").mkdir(parents=True, exist_ok=True)
    (out / "qrels" / "test.tsv").write_text(lines[0] + "\n" + "".join("\t".join(r) + "\n" for r in kept))
    (out / "queries.jsonl").write_bytes((src / "queries.jsonl").read_bytes())
    corpus = src / "corpus.jsonl.gz"
    opener = gzip.open if corpus.is_file() else open
    extra = 0
    with opener(corpus if corpus.is_file() else src / "corpus.jsonl", "rt", encoding="utf-8") as f, \
            open(out / "corpus.jsonl", "w", encoding="utf-8") as w:
        for line in f:
            docid = json.loads(line)["_id"]
            if docid in relevant or extra < extra_docs:
                extra += docid not in relevant
                w.write(line)
    return out
