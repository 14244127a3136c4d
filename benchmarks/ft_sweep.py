"""Fine-tuning recipe sweep on a GPU (no Pyserini needed): train the CPU backbone on SciFact training claims with
several settings, read SciFact test out, and report nDCG@10 of dense (MaxSim and single), sparse and hybrid runs.

Used to choose the demo's recipe; the demo itself re-measures the chosen one on the CPU with pytrec_eval.
Expects a folder (``--data``) holding ``minilm/`` (model), ``corpus/part-00000.jsonl``, ``topics.tsv``,
``qrels.txt`` and training JSONL files. Writes ``sweep.json`` to $OUT after every setting.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from diffretriever_pyserini.fusion import normalized_fusion
from diffretriever_pyserini.index.multivector import maxsim_block
from diffretriever_pyserini.training.trainer import TrainConfig, train


def ndcg10(qrels: dict, run: dict) -> float:
    """trec_eval's nDCG@10 (linear gains) averaged over all judged queries."""
    total = 0.0
    for qid, rels in qrels.items():
        ranked = sorted(run.get(qid, {}).items(), key=lambda x: (-x[1], x[0]))[:10]
        dcg = sum(rels.get(d, 0) / math.log2(i + 2) for i, (d, _) in enumerate(ranked))
        ideal = sorted(rels.values(), reverse=True)[:10]
        idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
        total += dcg / idcg if idcg else 0.0
    return total / len(qrels)


def top(scores: np.ndarray, docids: list[str], k: int = 1000) -> dict:
    idx = np.argpartition(-scores, k)[:k] if k < len(scores) else np.arange(len(scores))
    return {docids[i]: float(scores[i]) for i in idx}


def evaluate_model(model: str, data: Path, device: str) -> dict:
    """The fine-tuned model read as trained (its retriever_config.json), every scoring mode on the test queries."""
    from diffretriever_pyserini.backbones import load_backbone
    from diffretriever_pyserini.encoders import build_reader

    bb = load_backbone(model, device=device, dtype="fp32")
    docs = [json.loads(line) for line in (data / "corpus" / "part-00000.jsonl").read_text().splitlines()]
    topics = dict(line.split("\t", 1) for line in (data / "topics.tsv").read_text().splitlines())
    qrels: dict = {}
    for line in (data / "qrels.txt").read_text().splitlines():
        q, _, d, r = line.split()
        qrels.setdefault(q, {})[d] = int(r)
    p_reader, q_reader = build_reader(bb, "passage"), build_reader(bb, "query")
    order = sorted(range(len(docs)), key=lambda i: -len(docs[i]["contents"]))
    kv, single, sparse = [None] * len(docs), [None] * len(docs), [None] * len(docs)
    for s in range(0, len(order), 128):
        batch = order[s:s + 128]
        out = p_reader.read([docs[i]["contents"] for i in batch])
        for j, i in enumerate(batch):
            kv[i], single[i], sparse[i] = out.dense[j], out.single[j], out.sparse[j]
    docids = [d["id"] for d in docs]
    qids = list(topics)
    qout = q_reader.read([topics[q] for q in qids])
    vocab: dict[str, int] = {}

    def matrix(vectors):
        rows, cols, vals = [], [], []
        for r, v in enumerate(vectors):
            for t, w in v.items():
                rows.append(r)
                cols.append(vocab.setdefault(t, len(vocab)))
                vals.append(w)
        return rows, cols, vals

    dr, dc, dv = matrix(sparse)
    qr, qc, qv = matrix(qout.sparse)
    n = len(vocab)
    D = sp.csr_matrix((dv, (dr, dc)), shape=(len(docs), n), dtype=np.float64)
    Q = sp.csr_matrix((qv, (qr, qc)), shape=(len(qids), n), dtype=np.float64)
    sparse_scores = (Q @ D.T).toarray()
    multi = maxsim_block(qout.dense.astype(np.float32), np.stack(kv).astype(np.float32))
    single_scores = qout.single @ np.stack(single).T
    runs = {"multi_dense": {}, "dense": {}, "sparse": {}}
    for i, q in enumerate(qids):
        runs["multi_dense"][q] = top(multi[i], docids)
        runs["dense"][q] = top(single_scores[i], docids)
        nz = sparse_scores[i] > 0
        runs["sparse"][q] = top(np.where(nz, sparse_scores[i], -np.inf), docids) if nz.any() else {}
        runs["sparse"][q] = {d: s for d, s in runs["sparse"][q].items() if s > -np.inf}
    runs["hybrid"] = normalized_fusion([runs["dense"], runs["sparse"]])
    runs["hybrid-multi"] = normalized_fusion([runs["multi_dense"], runs["sparse"]])
    return {name: round(ndcg10(qrels, run), 4) for name, run in runs.items()}


def _cpu(**changes) -> dict:
    """A "fast-*" setting: 384-token passages, dropout off, bf16 autocast, plus ``changes`` (which may override)."""
    return {"p_max_length": 384, "dropout": 0.0, "precision": "bf16", **changes}


SETTINGS = {
    "claims-sampled": dict(train="claims-sampled.jsonl"),
    "claims-top1": dict(train="claims-top1.jsonl"),
    "pairs-top1": dict(train="pairs-top1.jsonl"),
    "pairs-top1-3ep": dict(train="pairs-top1.jsonl", epochs=3.0),
    "pairs-top1-lr1e-4": dict(train="pairs-top1.jsonl", lr=1e-4),
    "pairs-top1-tau0.02": dict(train="pairs-top1.jsonl", tau=0.02),
    "pairs-top3": dict(train="pairs-top3.jsonl", negatives=3),
    "pairs-top1-sw0.5": dict(train="pairs-top1.jsonl", sparse_weight=0.5),
    "pairs-top1-len384": dict(train="pairs-top1.jsonl", p_max_length=384),
    "pairs-top1-len384-lr1e-4": dict(train="pairs-top1.jsonl", p_max_length=384, lr=1e-4),
    "pairs-top1-len512": dict(train="pairs-top1.jsonl", p_max_length=512),
    "pairs-top1-bs32-lr1e-4": dict(train="pairs-top1.jsonl", batch_size=32, lr=1e-4, epochs=3.0),
    "claims-top1-len384-lr1e-4": dict(train="claims-top1.jsonl", p_max_length=384, lr=1e-4),
    "pairs-top1-len384-lr2e-4": dict(train="pairs-top1.jsonl", p_max_length=384, lr=2e-4),
    "pairs-top1-len384-lr1e-4-3ep": dict(train="pairs-top1.jsonl", p_max_length=384, lr=1e-4, epochs=3.0),
    "pairs-top3-len384-lr1e-4": dict(train="pairs-top3.jsonl", p_max_length=384, lr=1e-4, negatives=3),
    "pairs-top1-len512-lr1e-4": dict(train="pairs-top1.jsonl", p_max_length=512, lr=1e-4),
    "pairs-top1-len384-lr1e-4-seed2": dict(train="pairs-top1.jsonl", p_max_length=384, lr=1e-4, seed=2),
    # CPU speed-ups (dropout off lets the CPU use fused attention; bf16 autocast on CPUs with native bf16)
    "fast-demo": _cpu(train="pairs-top1.jsonl", lr=2e-4),
    "fast-demo-dropout": _cpu(train="pairs-top1.jsonl", lr=2e-4, dropout=None),
    "fast-top3": _cpu(train="pairs-top3.jsonl", lr=2e-4, negatives=3),
    "fast-top3-lr1e-4": _cpu(train="pairs-top3.jsonl", lr=1e-4, negatives=3),
    "fast-top3-lr1e-4-seed2": _cpu(train="pairs-top3.jsonl", lr=1e-4, negatives=3, seed=2),
    "fast-top3-lr1e-4-seed3": _cpu(train="pairs-top3.jsonl", lr=1e-4, negatives=3, seed=3),
    "fast-top5-lr1e-4": _cpu(train="pairs-top5.jsonl", lr=1e-4, negatives=5),
    "fast-top5-lr1e-4-seed2": _cpu(train="pairs-top5.jsonl", lr=1e-4, negatives=5, seed=2),
    "fast-top3-3ep": _cpu(train="pairs-top3.jsonl", lr=2e-4, negatives=3, epochs=3.0),
    "fast-top3-len512": _cpu(train="pairs-top3.jsonl", lr=2e-4, negatives=3, p_max_length=512),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=".gpu", help="folder with model, corpus, topics, qrels, training files")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), help="which settings to run")
    parser.add_argument("--device", default="cuda", help="cuda or cpu")
    parser.add_argument("--max-steps", type=int, default=None, help="cap the training steps (smoke runs)")
    args = parser.parse_args()
    data = Path(args.data)
    out = Path(os.environ.get("OUT", ".")) / "sweep.json"
    results = {}
    base = dict(corpus=str(data / "corpus"), model=str(data / "minilm"), recipe="cpu-demo", lr=5e-5, negatives=1,
                p_max_length=256, device=args.device, save_every=10_000, max_steps=args.max_steps)
    for name in args.settings:
        t = time.perf_counter()
        setting = {**base, **SETTINGS[name]}
        setting["train"] = str(data / setting["train"])
        cfg = TrainConfig(out=f"/tmp/sweep/{name}", **setting)
        final = train(cfg)
        trained = time.perf_counter() - t
        results[name] = {**evaluate_model(str(final), data, args.device),
                         "seconds": round(time.perf_counter() - t, 1),
                         "train_seconds": round(trained, 1), "setting": SETTINGS[name]}
        print(name, results[name], flush=True)
        out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
