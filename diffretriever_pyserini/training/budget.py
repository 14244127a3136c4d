"""``select-budget``: choose (K_q, K_p) on held-out training queries, as the paper chose (4, 16) on training data.

Each candidate budget re-ranks the BM25 top ``depth`` (plus the positives) of every held-out query with the model's
MaxSim + sparse fusion (hybrid-multi); the budget with the best nDCG@10 over the held-out queries wins.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class BudgetConfig:
    """What ``select-budget`` compares: the model, held-out queries, their candidates and the budgets."""

    model: str = field(metadata={"help": "backbone (fine-tuned folder, packaged name, folder)"})
    heldout: str = field(metadata={"help": "held-out training JSONL (never trained on)"})
    corpus: str = field(metadata={"help": "prepared corpus folder"})
    bm25_index: str = field(metadata={"help": "BM25 index of that corpus (candidates)"})
    adapter: str | None = field(default=None, metadata={"help": "LoRA adapter folder"})
    budgets: str = field(default="1:1,4:4,4:16,16:16", metadata={"help": "candidate K_q:K_p budgets"})
    depth: int = field(default=30, metadata={"help": "BM25 candidates per held-out query"})
    device: str | None = field(default=None, metadata={"help": "auto, cpu, cuda:N"})
    batch_size: int = field(default=32, metadata={"help": "texts per forward pass"})


def select_budget(args: BudgetConfig) -> tuple[tuple[int, int], str]:
    from diffretriever_pyserini.backbones import load_backbone
    from diffretriever_pyserini.evaluate.metrics import evaluate
    from diffretriever_pyserini.fusion import normalized_fusion
    from diffretriever_pyserini.evaluate.report import parse_budgets
    from diffretriever_pyserini.readout.readers import readout_config
    from diffretriever_pyserini.readout.kmask import KMaskReader
    from diffretriever_pyserini.search.scoring import maxsim, sparse_dot
    from diffretriever_pyserini.pyserini_bridge.search import bm25_search
    from diffretriever_pyserini.training.data import load_documents, read_examples

    examples = read_examples(Path(args.heldout))
    topics = {ex.query_id: ex.query for ex in examples}
    qrels = {ex.query_id: {d: 1 for d in ex.positive_ids} for ex in examples}
    bm25 = bm25_search(args.bm25_index, topics, k=args.depth)
    candidates = {q: sorted(set(bm25.get(q, {})) | set(qrels[q])) for q in topics}
    docs = load_documents(Path(args.corpus), {d for ds in candidates.values() for d in ds})
    doc_ids = sorted(docs)
    backbone = load_backbone(args.model, device=args.device, adapter=args.adapter)

    def reader(side: str, k: int) -> KMaskReader:  # the model's own readout (retriever_config.json), at K = k
        config, tuned = readout_config(backbone, side, k=k)
        return KMaskReader(backbone, side, config, finetuned=tuned)

    def read_all(reader, texts):
        outs = [reader.read(texts[i:i + args.batch_size]) for i in range(0, len(texts), args.batch_size)]
        return np.concatenate([o.dense for o in outs]), [v for o in outs for v in o.sparse]

    results, passage_cache, rows = {}, {}, []
    for kq, kp in parse_budgets(args.budgets):
        if kp not in passage_cache:
            passage_cache[kp] = read_all(reader("passage", kp), [docs[d] for d in doc_ids])
        p_dense, p_sparse = passage_cache[kp]
        index = {d: i for i, d in enumerate(doc_ids)}
        q_dense, q_sparse = read_all(reader("query", kq), list(topics.values()))
        dense_run, sparse_run = {}, {}
        for i, qid in enumerate(topics):
            rows_i = [index[d] for d in candidates[qid]]
            scores = maxsim(q_dense[i], p_dense[rows_i])
            dense_run[qid] = {d: float(s) for d, s in zip(candidates[qid], scores)}
            sparse_run[qid] = {d: float(sparse_dot(q_sparse[i], p_sparse[index[d]])) for d in candidates[qid]}
        fused = normalized_fusion([dense_run, sparse_run], (0.5, 0.5), depth=None)
        results[(kq, kp)] = evaluate(qrels, fused, ("ndcg_cut_10",))["ndcg_cut_10"]
        rows.append(f"| {kq}, {kp} | {results[(kq, kp)]:.4f} |")
    best = max(results, key=lambda b: (results[b], -b[0] - b[1]))
    table = f"held-out queries: {len(topics)}; BM25 top-{args.depth} + positives re-ranked by hybrid-multi\n" \
            "| K_q, K_p | nDCG@10 |\n|---|---|\n" + "\n".join(rows)
    return best, table
