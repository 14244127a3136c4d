"""Index size against quality and speed (`make bench-index`): every dense and multi-vector index type side by side.

Part 1, SciFact test (real encodings: the fine-tuned CPU model of `make demo` when it exists, else the stand-in of
benchmarks/standin.py, MiniLM window means with real signal, or with --zero-shot the zero-shot readout; K from --k-p;
complete encodings are reused): for each single-vector index
type (flat, sq16, sq8, sq6, pq, ivfpq, hnsw-sq8) and each MaxSim search (exact brute force, today's FAISS
candidates, the compressed store with and without exact re-scoring), the bytes per document a search reads, the
build time, queries per second (all test queries, top 1000, best of --repeats) and nDCG@10 / R@100 by pytrec_eval,
with the difference to the exact run.

Part 2, synthetic store at Dream's shape (3,584 dimensions, K_p = 16, random unit vectors, 100,000 documents,
generated in seeded blocks and never held whole): bytes per document and queries per second of the compressed
store and the single-vector types, and the projected size for MS MARCO (8,841,823 passages).

Last line: one JSON object with all the figures and whether the targets are met; the quality targets are judged
only when the exact searches reach nDCG@10 0.3 (benchmarks/verdicts.py), else withheld (null).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from functools import partial
from pathlib import Path

import numpy as np

from diffretriever_pyserini.index import compressed as cq
from diffretriever_pyserini.index import dense as di
from diffretriever_pyserini.index import multivector as mv
from diffretriever_pyserini.cli.options import add_run_options, run_config
from verdicts import all_met, quality_verdicts

MSMARCO_PASSAGES = 8_841_823
DREAM_DIM = 3584
log = logging.getLogger("bench_index")


def timed(fn, repeats: int):
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def timed_together(searches: dict, repeats: int) -> tuple[dict, dict]:
    """The fastest of ``repeats`` runs of each search, the searches taking turns (round 1 of each, round 2 of each,
    ...) so that a slow spell on a shared machine falls on all of them alike; and each one's output."""
    best, out = {name: float("inf") for name in searches}, {}
    for _ in range(repeats):
        for name, fn in searches.items():
            start = time.perf_counter()
            out[name] = fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best, out


def faiss_run(index, qids, queries: np.ndarray, docids, k: int) -> dict:
    scores, ids = index.search(queries, k)
    return {q: {docids[j]: float(s) for s, j in zip(scores[i], ids[i]) if j >= 0} for i, q in enumerate(qids)}


def quality(run: dict, qrels: dict) -> dict:
    from diffretriever_pyserini.evaluate.metrics import evaluate
    from diffretriever_pyserini.search.runs import finish_run

    scores = evaluate(qrels, finish_run(run, 1000, False), ("ndcg_cut_10", "recall_100"))
    return {"ndcg@10": round(scores["ndcg_cut_10"], 4), "r@100": round(scores["recall_100"], 4)}


def scifact_vectors(args, cfg):
    """SciFact's dense folder and query vectors: the model's readout, or the stand-in (``--standin``).

    Returns (dense folder, qids, (n, H) single query vectors, {qid: (K, H)}, qrels, model label)."""
    from diffretriever_pyserini.datasets import iter_prepared_corpus
    from diffretriever_pyserini.encoders import DiffRetrieverQueryEncoder
    from diffretriever_pyserini.evaluate.metrics import read_qrels
    from diffretriever_pyserini.pipeline import Paths, step_encode, step_prepare

    prepared = step_prepare(cfg)
    topics = prepared.query_texts()
    qids = list(topics)
    qrels = read_qrels(prepared.qrels)
    if args.standin:
        from standin import WindowMeans, write_standin

        dense_dir = Path(cfg.work) / "bench-index" / f"standin-k{cfg.k_p}" / "dense"
        if not (dense_dir / "metadata.json").is_file():
            write_standin(list(iter_prepared_corpus(prepared.corpus_dir)), dense_dir, cfg.k_p, cfg.batch_size)
        single, multi = WindowMeans(cfg.k_p, cfg.batch_size).encode_all([topics[q] for q in qids], "stand-in queries")
        return dense_dir, qids, single, dict(zip(qids, multi)), qrels, "stand-in: MiniLM window means"
    reader = step_encode(cfg)
    q_enc = DiffRetrieverQueryEncoder(reader.backbone, batch_size=cfg.batch_size, **cfg.resolve().readout.side("query"))
    q_enc.prime(list(topics.values()))
    single = np.stack([q_enc.encode(topics[q]) for q in qids]).astype(np.float32)
    multi = {q: q_enc.kvectors(topics[q]) for q in qids}
    return Paths(cfg).encodings.dense, qids, single, multi, qrels, cfg.model


def scifact_part(args, cfg) -> tuple[list[dict], list[dict], dict]:
    import faiss

    dense_dir, qids, single, multi, qrels, model = scifact_vectors(args, cfg)
    n = len(qids)

    dense_rows = []
    flat_quality = None
    for kind in di.DENSE_INDEX_TYPES:
        folder = di.build_dense_index(dense_dir, kind)
        build = json.loads((folder / "metadata.json").read_text()).get("build_seconds") if kind != "flat" else None
        index = faiss.read_index(str(folder / "index"))
        docids = (folder / "docid").read_text(encoding="utf-8").split("\n")
        t, run = timed(lambda: faiss_run(index, qids, single, docids, cfg.hits), args.repeats)
        q = quality(run, qrels)
        flat_quality = flat_quality or q
        meta = di.describe(folder)
        dense_rows.append({"index": kind, "bytes_per_doc": round(di.index_bytes(folder) / index.ntotal, 1),
                           "build_s": None if build is None else round(build, 2), "qps": round(n / t, 1), **q,
                           "d_ndcg@10": round(q["ndcg@10"] - flat_quality["ndcg@10"], 4),
                           **{key: meta[key] for key in ("nlist", "m", "nprobe") if key in meta}})

    store = mv.MultiVectorStore.open(dense_dir)
    f16_bytes = store.vectors.shape[1] * store.vectors.shape[2] * 2
    multi_rows = []
    t, exact = timed(lambda: mv.exact_search(store, multi, cfg.hits), 1)
    exact_q = quality(exact, qrels)
    multi_rows.append({"search": "exact MaxSim (bytes: the K vectors in float16)", "bytes_per_doc": f16_bytes,
                       "build_s": None,
                       "qps": round(n / t, 1), **exact_q, "d_ndcg@10": 0.0})
    start = time.perf_counter()
    mv.build_row_index(dense_dir)
    build = time.perf_counter() - start
    rows = mv.RowIndex(dense_dir)
    folder = cq.build_store(dense_dir)
    compressed = cq.CompressedStore(folder, store.docids, exact=store.vectors)
    searches = {"candidates": lambda: mv.candidate_search(store, rows, multi, cfg.hits, cfg.depth),
                **{rerank: partial(cq.compressed_search, compressed, multi, cfg.hits, rerank=rerank)
                   for rerank in (0, args.rerank)}}
    times, runs = timed_together(searches, args.repeats)
    q = quality(runs["candidates"], qrels)
    cand_bytes = f16_bytes + rows.manifest["bytes_per_doc_row_index"]
    multi_rows.append({"search": "candidates (today: float rows IVF + exact re-scoring)",
                       "bytes_per_doc": round(cand_bytes, 1), "build_s": round(build, 2),
                       "qps": round(n / times["candidates"], 1), **q,
                       "d_ndcg@10": round(q["ndcg@10"] - exact_q["ndcg@10"], 4)})
    for rerank in (0, args.rerank):
        q = quality(runs[rerank], qrels)
        label = "compressed (4-bit anchor + 4-bit residuals)" + (f", top {rerank} re-scored from float16"
                                                                 if rerank else "")
        multi_rows.append({"search": label, "bytes_per_doc": compressed.bytes_per_doc(),
                           "extra_float16_bytes_per_doc": f16_bytes if rerank else 0,
                           "build_s": compressed.manifest["build_seconds"] if not rerank else None,
                           "qps": round(n / times[rerank], 1), **q,
                           "d_ndcg@10": round(q["ndcg@10"] - exact_q["ndcg@10"], 4),
                           "nlist": compressed.manifest["nlist"], "nprobe": compressed.manifest["nprobe"]})
    shape = {"documents": len(store.docids), "k_p": int(store.vectors.shape[1]), "dim": int(store.vectors.shape[2]),
             "queries": n, "k_q": int(next(iter(multi.values())).shape[0]), "model": model}
    return dense_rows, multi_rows, shape


class SyntheticStore:
    """(N, K, H) random unit vectors (independent random signs / sqrt(H)) generated on demand in seeded blocks of
    ``BLOCK`` documents: the worst case for the anchors (the K vectors of a passage are unrelated)."""

    BLOCK = 512

    def __init__(self, n: int, k: int, dim: int, seed: int = 0):
        self.shape, self.seed = (n, k, dim), seed
        self.signs = np.array([[1.0 if b & (128 >> i) else -1.0 for i in range(8)] for b in range(256)],
                              dtype=np.float32) / np.float32(np.sqrt(dim))  # byte -> its 8 bits as +-1/sqrt(H)

    def _block_into(self, b: int, out: np.ndarray, lo: int, hi: int) -> None:
        """Documents lo:hi (within block ``b``) written into ``out`` (hi - lo, K, H), without an extra copy when
        the whole block is asked for."""
        size = min(self.BLOCK, self.shape[0] - b * self.BLOCK)
        rng = np.random.default_rng([self.seed, b])
        raw = rng.integers(0, 256, size=size * self.shape[1] * self.shape[2] // 8, dtype=np.uint8)
        if hi - lo == size:
            np.take(self.signs, raw, axis=0, out=out.reshape(-1, 8))
        else:
            out[:] = self.signs[raw].reshape(size, *self.shape[1:])[lo - b * self.BLOCK: hi - b * self.BLOCK]

    def __getitem__(self, item: slice) -> np.ndarray:
        start, stop, _ = item.indices(self.shape[0])
        out = np.empty((max(0, stop - start), *self.shape[1:]), dtype=np.float32)
        if stop <= start:
            return out
        for b in range(start // self.BLOCK, (stop - 1) // self.BLOCK + 1):
            lo, hi = max(start, b * self.BLOCK), min(stop, (b + 1) * self.BLOCK)
            self._block_into(b, out[lo - start: hi - start], lo, hi)
        return out


def synthetic_part(args, work: Path) -> tuple[list[dict], dict]:
    """Bytes per document, build time and queries per second at Dream's shape (the store is built once and kept
    under ``work``)."""
    import faiss

    n, k, dim = args.synthetic_docs, 16, DREAM_DIM
    rng = np.random.default_rng(1)
    queries = rng.standard_normal((args.synthetic_queries, args.synthetic_kq, dim), dtype=np.float32)
    queries /= np.linalg.norm(queries, axis=-1, keepdims=True)
    qmap = {f"q{i}": q for i, q in enumerate(queries)}
    docids = [f"s{i}" for i in range(n)]
    folder = work / f"synthetic-{n}" / "pq"
    if not (folder / "manifest.json").is_file():
        cq.build_compressed(SyntheticStore(n, k, dim), folder, nlist=args.synthetic_nlist, progress=True)
    compressed = cq.CompressedStore(folder, docids)
    t, _ = timed(lambda: cq.compressed_search(compressed, qmap, 1000), 1)
    manifest = compressed.manifest
    rows = [{"index": "multi-vector compressed", "bytes_per_doc": manifest["bytes_per_doc"],
             "build_s": manifest["build_seconds"], "qps": round(len(qmap) / t, 1), "nlist": manifest["nlist"],
             "nprobe": manifest["nprobe"]}]
    single = SyntheticStore(n, 1, dim, seed=1)
    docid_file = work / f"synthetic-{n}" / "docid"
    docid_file.write_text("\n".join(docids) + "\n")
    sample = single[0:di.TRAIN_SAMPLE][:, 0]
    first = np.ascontiguousarray(queries[:, 0])  # one vector per query for the single-vector indexes

    def chunks():
        for s in range(0, n, 4096):
            yield single[s:s + 4096][:, 0]

    for kind in args.synthetic_dense:
        folder = work / f"synthetic-{n}" / f"dense.{kind}"
        if not (folder / "metadata.json").is_file():
            if kind == "flat":
                start = time.perf_counter()
                index = faiss.IndexFlatIP(dim)
                for chunk in chunks():
                    index.add(np.ascontiguousarray(chunk))
                folder.mkdir(parents=True, exist_ok=True)
                faiss.write_index(index, str(folder / "index"))
                (folder / "docid").write_text(docid_file.read_text())
                (folder / "metadata.json").write_text(json.dumps(
                    {"index_type": "flat", "build_seconds": round(time.perf_counter() - start, 2)}))
            else:
                di.write_index(folder, kind, n, dim, sample, chunks(), docid_file)
        meta = json.loads((folder / "metadata.json").read_text())
        index = faiss.read_index(str(folder / "index"))
        t, _ = timed(lambda: index.search(first, 1000), 1)
        rows.append({"index": f"single-vector {kind}", "bytes_per_doc": round(di.index_bytes(folder) / n, 1),
                     "build_s": meta.get("build_seconds"), "qps": round(len(first) / t, 1)})
    return rows, {"documents": n, "k_p": k, "dim": dim, "queries": len(qmap), "k_q": args.synthetic_kq}


def table(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join("" if row.get(c) is None else str(row.get(c)) for c in columns) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_options(parser)
    parser.add_argument("--repeats", type=int, default=5,
                        help="timed repeats of each SciFact search (the fastest counts; the MaxSim searches "
                             "other than exact take turns)")
    parser.add_argument("--rerank", type=int, default=100, help="hits re-scored from float16 in the re-scored row")
    parser.add_argument("--synthetic-docs", type=int, default=100_000, help="documents of the synthetic store")
    parser.add_argument("--synthetic-queries", type=int, default=100, help="queries timed on the synthetic store")
    parser.add_argument("--synthetic-kq", type=int, default=4, help="query vectors per synthetic query")
    parser.add_argument("--synthetic-nlist", type=int, default=None,
                        help="anchor lists of the synthetic store (default: as for a real corpus)")
    parser.add_argument("--synthetic-dense", default="flat,sq8,sq6,ivfpq",
                        help="single-vector types built at Dream's shape (comma-separated; pq, hnsw-sq8: minutes)")
    parser.add_argument("--skip-synthetic", action="store_true", help="SciFact only")
    parser.add_argument("--zero-shot", action="store_true",
                        help="without a demo model, time the zero-shot readout instead of the stand-in (its vectors "
                             "have no signal: quality verdicts are withheld)")
    parser.set_defaults(dataset="scifact")
    args = parser.parse_args()
    args.synthetic_dense = [k for k in args.synthetic_dense.split(",") if k]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    demo = Path(args.work) / "finetune" / "minilm-scifact-claims" / "final"
    args.standin = False
    if args.model == "minilm" and (demo / "retriever_config.json").is_file():
        args.model = str(demo)
        log.info("using the fine-tuned demo model %s", demo)
    elif args.model == "minilm" and not args.zero_shot:
        args.standin = True
        log.info("no fine-tuned demo model in %s: the stand-in with real signal (MiniLM window means, "
                 "benchmarks/standin.py)", demo)
    elif args.model == "minilm":
        log.info("--zero-shot: the zero-shot readout (random-level dense vectors: no quality verdict)")
    cfg = run_config(args).resolved()
    dense_rows, multi_rows, shape = scifact_part(args, cfg)
    print(f"\nSciFact test: {shape['documents']} documents, {shape['queries']} queries, model {shape['model']}, "
          f"K_q = {shape['k_q']}, K_p = {shape['k_p']}, {shape['dim']} dimensions; top {cfg.hits}\n")
    print(table(dense_rows, ["index", "bytes_per_doc", "build_s", "qps", "ndcg@10", "r@100", "d_ndcg@10"]) + "\n")
    print(table(multi_rows, ["search", "bytes_per_doc", "extra_float16_bytes_per_doc", "build_s", "qps", "ndcg@10",
                             "r@100", "d_ndcg@10"]) + "\n")
    synthetic, sshape = ([], None) if args.skip_synthetic else synthetic_part(args, Path(args.work) / "bench-index")
    if synthetic:
        print(f"Synthetic store at Dream's shape: {sshape['documents']} documents x K_p = {sshape['k_p']} x "
              f"{sshape['dim']} dimensions (random unit vectors), {sshape['queries']} queries x K_q = "
              f"{sshape['k_q']}; top 1000\n")
        for row in synthetic:
            row["msmarco_gb"] = round(row["bytes_per_doc"] * MSMARCO_PASSAGES / 1e9, 1)
        f16 = sshape["k_p"] * sshape["dim"] * 2
        synthetic.insert(0, {"index": "multi-vector float16 (exact store)", "bytes_per_doc": f16,
                             "msmarco_gb": round(f16 * MSMARCO_PASSAGES / 1e9, 1)})
        print(table(synthetic, ["index", "bytes_per_doc", "build_s", "qps", "msmarco_gb"]) + "\n")
    exact, cand, plain, reranked = multi_rows
    flat = dense_rows[0]
    best_dense = min((r for r in dense_rows[1:] if abs(r["d_ndcg@10"]) <= 0.005),
                     key=lambda r: r["bytes_per_doc"], default=None)
    quality, withheld = quality_verdicts(min(exact["ndcg@10"], flat["ndcg@10"]), {
        "multi_ndcg_within_0.01": abs(plain["d_ndcg@10"]) <= 0.01,
        "multi_reranked_ndcg_within_0.002": abs(reranked["d_ndcg@10"]) <= 0.002,
        "dense_4x_smaller_within_0.005": best_dense is not None
        and flat["bytes_per_doc"] / best_dense["bytes_per_doc"] >= 4})
    if withheld:
        print(f"quality verdicts withheld: {withheld}\n")
        best_dense = None
    targets = {"multi_8x_smaller_than_float16": exact["bytes_per_doc"] / plain["bytes_per_doc"] >= 8,
               "multi_qps_not_below_candidates": plain["qps"] >= cand["qps"], **quality}
    print(json.dumps({"scifact": {"shape": shape, "dense": dense_rows, "multi": multi_rows},
                      "synthetic": {"shape": sshape, "rows": synthetic},
                      "multi_compression_vs_float16": round(exact["bytes_per_doc"] / plain["bytes_per_doc"], 2),
                      "dense_best": best_dense and best_dense["index"],
                      "dense_compression_vs_flat": best_dense and round(flat["bytes_per_doc"]
                                                                        / best_dense["bytes_per_doc"], 2),
                      "quality_verdicts_withheld": withheld,
                      "targets": targets, "all_targets_met": all_met(targets)}))


if __name__ == "__main__":
    main()
