"""MaxSim at scale on SciFact (`make bench-maxsim`): exact brute force vs FAISS candidates + exact re-scoring.

Encodes SciFact with K_q = K_p = 16 on the CPU backbone (reusing complete encodings), then times both searches over
all test queries (top 1000), measured side by side in one run. The last line is one JSON object with
top10_agreement (fraction of (query, rank) positions of the exact top-10 that the candidate search reproduces at its
default depth), qps_exact, qps_candidates and bytes_per_doc.
"""

from __future__ import annotations

import argparse
import json
import time

from diffretriever_pyserini.index import multivector as mv
from diffretriever_pyserini.cli.options import add_run_options, run_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_options(parser)
    parser.add_argument("--row-index", default="ivf", choices=["ivf", "flat"], help="FAISS index over the rows")
    parser.add_argument("--nprobe", type=int, default=mv.DEFAULT_NPROBE, help="IVF lists probed per query vector")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (fastest reported)")
    parser.set_defaults(k_q=16, k_p=16, dataset="scifact")
    args = parser.parse_args()
    from diffretriever_pyserini.encoders import DiffRetrieverQueryEncoder
    from diffretriever_pyserini.pipeline import Paths, step_encode, step_prepare

    cfg = run_config(args).resolved()
    reader = step_encode(cfg)
    paths, prepared = Paths(cfg), step_prepare(cfg)
    topics = prepared.query_texts()
    q_enc = DiffRetrieverQueryEncoder(reader.backbone, batch_size=cfg.batch_size,
                                      **cfg.resolve().readout.side("query"))
    q_enc.prime(list(topics.values()))
    queries = {qid: q_enc.kvectors(text) for qid, text in topics.items()}
    store = mv.MultiVectorStore.open(paths.encodings.dense)
    start = time.perf_counter()
    mv.build_row_index(paths.encodings.dense, kind=args.row_index)
    build_s = time.perf_counter() - start
    rows = mv.RowIndex(paths.encodings.dense, nprobe=args.nprobe)

    def timed(fn):
        best, out = float("inf"), None
        for _ in range(args.repeats):
            t = time.perf_counter()
            out = fn()
            best = min(best, time.perf_counter() - t)
        return best, out

    t_exact, exact = timed(lambda: mv.exact_search(store, queries, cfg.hits))
    t_cand, cand = timed(lambda: mv.candidate_search(store, rows, queries, cfg.hits, cfg.depth))
    agreement = mv.top10_agreement(exact, cand)
    n = len(queries)
    manifest = rows.manifest
    print(f"SciFact: {len(store.docids)} documents x K_p={store.vectors.shape[1]} vectors of {store.vectors.shape[2]} "
          f"({store.vectors.dtype}); {n} queries x K_q={cfg.k_q}; top {cfg.hits}")
    print(f"row index: {args.row_index} over {manifest['rows']} rows (nlist {manifest['nlist']}, nprobe "
          f"{args.nprobe}), built in {build_s:.1f} s; candidate depth {cfg.depth} rows per query vector")
    print("| search | queries/s | index bytes per document |\n|---|---|---|")
    print(f"| exact brute force (blocked) | {n / t_exact:.1f} | {store.bytes_per_doc():.0f} |")
    print(f"| candidates + exact re-scoring | {n / t_cand:.1f} | "
          f"{store.bytes_per_doc() + manifest['bytes_per_doc_row_index']:.0f} |")
    print(f"top-10 agreement: {agreement:.4f}; speed-up {t_exact / t_cand:.2f}x")
    print(json.dumps({"top10_agreement": round(agreement, 4), "qps_exact": round(n / t_exact, 2),
                      "qps_candidates": round(n / t_cand, 2), "bytes_per_doc": store.bytes_per_doc(),
                      "bytes_per_doc_with_row_index": round(store.bytes_per_doc()
                                                            + manifest["bytes_per_doc_row_index"], 1),
                      "depth": cfg.depth, "nprobe": args.nprobe, "row_index": args.row_index}))


if __name__ == "__main__":
    main()
