"""Compressed indexes against exact search on small corpora: the single-vector FAISS types opened by Pyserini's
FaissSearcher, and the compressed MaxSim store (layout checked against naive loops, scores against decoding by
hand, rankings against exact MaxSim)."""

import dataclasses
import json

import numpy as np
import pytest

from diffretriever_pyserini.index import compressed as cq
from diffretriever_pyserini.index import dense as di
from diffretriever_pyserini.index import multivector as mv
from diffretriever_pyserini.search.runs import ranked
from diffretriever_pyserini.encode.writers import FaissWriter
from diffretriever_pyserini.index.compressed.store import _ranges

N, KP, DIM, TOP = 1500, 4, 256, 5


def document_vectors(store, docs: np.ndarray):
    """The decoded vectors (anchor + residual) of ``docs`` (n, H), each one's position in ``docs``, and the start
    of each document's run of vectors: the store's decoding, written out for the tests."""
    rows, owner, run_starts = store._rows(docs)
    residuals = cq.pq_decode(cq.unpack(np.asarray(store.residual_codes[rows])), store.tables)
    return store.anchors(docs)[owner] + residuals, owner, run_starts


def store_maxsim(store, q: np.ndarray, docs: np.ndarray) -> np.ndarray:
    """MaxSim of the query vectors ``q`` (K_q, H) with each of ``docs`` through the store's batch scorer."""
    return store.batch_maxsim(np.asarray(q, dtype=np.float32)[None], np.asarray(docs)[None])[0]


def _unit(x):
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _planted(rng, kq: int = 3):
    """Passages whose K vectors are alike (as the readout's are), and queries each built from TOP passages with
    weights 1.0 ... 0.6: their top TOP (cosines about 0.55 ... 0.33) stands apart from the rest (about 0 +- 0.06)
    by clear, ordered gaps."""
    base = _unit(rng.normal(size=(N, DIM)))
    vectors = _unit(base[:, None, :] + 0.1 * rng.normal(size=(N, KP, DIM)) / np.sqrt(DIM))
    queries = {}
    for i in range(40):
        mix = np.linspace(1.0, 0.6, TOP) @ base[rng.choice(N, TOP, replace=False)]
        queries[f"q{i}"] = _unit(mix[None, :] + 0.1 * rng.normal(size=(kq, DIM)) / np.sqrt(DIM))
    return vectors, queries


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    vectors, queries = _planted(np.random.default_rng(0))
    vectors[::5, 3] = 0.0  # dropped positions
    docids = [f"doc{i:05d}" for i in range(N)]
    folder = tmp_path_factory.mktemp("index") / "dense"
    with FaissWriter(folder) as w:
        for s in range(0, N, 256):
            pooled = vectors[s:s + 256].sum(1)
            w.write(docids[s:s + 256], pooled / np.linalg.norm(pooled, axis=-1, keepdims=True), vectors[s:s + 256])
    return folder, vectors, docids, queries


def _recall(exact: np.ndarray, got: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / len(a) for a, b in zip(exact, got)]))


class _Vectors:
    """A Pyserini query encoder returning prepared vectors by query text."""

    def __init__(self, table):
        self.table = table

    def encode(self, text, **kwargs):
        return self.table[text]


@pytest.mark.parametrize("kind,min_recall", [("sq16", 1.0), ("sq8", 1.0), ("sq6", 1.0), ("pq", 0.9),
                                             ("ivfpq", 0.9), ("hnsw-sq8", 1.0)])
def test_dense_index_types_through_pyserini_against_flat(corpus, kind, min_recall, caplog, capfd):
    """sq16, sq8, sq6 and hnsw-sq8 are lossless enough here to return exactly the flat index's top hits; the 16x
    smaller pq and ivfpq keep at least the stated share of them."""
    import logging

    import faiss

    from diffretriever_pyserini.pyserini_bridge.search import dense_searcher

    folder, vectors, docids, queries = corpus
    single = {q: _unit(v.sum(0)) for q, v in queries.items()}
    with caplog.at_level(logging.INFO, logger="diffretriever_pyserini.index.dense"):
        built = di.build_dense_index(folder, kind)
    small = [r.getMessage() for r in caplog.records if "training vectors" in r.getMessage()]
    if kind in ("pq", "ivfpq"):  # 1,500 training vectors for 256 centroids: said once, not by FAISS per sub-quantizer
        assert small == [f"{kind}: 1500 training vectors for the 256 centroids of each of {DIM // 4} sub-quantizers "
                         "(FAISS asks for 9984; the codes fit a small corpus less finely)"]
        assert "WARNING clustering" not in capfd.readouterr().err
    else:
        assert not small
    assert built == di.index_folder(folder, kind) and built != folder
    meta = json.loads((built / "metadata.json").read_text())
    flat_bytes = di.index_bytes(folder) / N
    assert meta["index_type"] == kind and meta["documents"] == N and meta["dimension"] == DIM
    assert meta["bytes_per_doc"] == pytest.approx(di.index_bytes(built) / N, abs=0.01)
    # (the code tables of pq and ivfpq weigh in on 1,500 passages: 16x fewer code bytes, 4x fewer in all here)
    assert meta["bytes_per_doc"] < flat_bytes * {"sq16": 0.55, "sq8": 0.3, "sq6": 0.22, "pq": 0.25, "ivfpq": 0.3,
                                                 "hnsw-sq8": 0.6}[kind]
    searcher = dense_searcher(built, _Vectors(single))
    if kind == "ivfpq":  # the search parameter travels inside the index file, so Pyserini uses it
        assert faiss.extract_index_ivf(searcher.index).nprobe == meta["nprobe"] > 1
    if kind == "hnsw-sq8":
        assert searcher.index.hnsw.efSearch == meta["ef_search"]
    results = searcher.batch_search(list(single), list(single), k=TOP, threads=1)
    got = [[h.docid for h in results[q]] for q in single]
    flat = faiss.read_index(str(folder / "index"))
    scores, ids = flat.search(np.stack(list(single.values())), TOP)
    exact = [[docids[j] for j in row] for row in ids]
    recall = float(np.mean([len(set(a) & set(b)) / TOP for a, b in zip(exact, got)]))
    assert recall >= min_recall, f"{kind}: recall@{TOP} {recall:.3f} against flat"
    if kind == "sq16":  # the same top hits in the same order, scores to 1e-3
        assert got == exact
        for i, q in enumerate(single):
            assert [h.score for h in results[q]] == pytest.approx(scores[i].tolist(), abs=1e-3)
    assert di.build_dense_index(folder, kind) == built  # complete: reused, not rebuilt
    assert json.loads((built / "metadata.json").read_text())["build_seconds"] == meta["build_seconds"]


def test_unknown_dense_index_type_is_refused(corpus):
    from diffretriever_pyserini.errors import UserError

    with pytest.raises(UserError, match="unknown dense index type 'ivf-flat'"):
        di.build_dense_index(corpus[0], "ivf-flat")


@pytest.fixture(scope="module")
def store(corpus):
    """The compressed store of a corpus whose K vectors per passage are alike (as the readout's are)."""
    folder, _, docids, _ = corpus
    vectors, queries = _planted(np.random.default_rng(3))
    vectors[::5, 3] = 0.0  # dropped positions
    vectors[7] = 0.0  # a passage without any vector
    out = cq.build_compressed(vectors, folder.parent / "pq", chunk_docs=100)
    return cq.CompressedStore(out, docids, exact=vectors), vectors, docids, queries


def _exact(vectors, docids, queries, k):
    scores = mv.maxsim_block(np.stack(list(queries.values())), vectors)
    return {q: {docids[j]: float(scores[i, j]) for j in np.argsort(-scores[i], kind="stable")[:k]}
            for i, q in enumerate(queries)}


def test_pq_helpers_against_naive_loops():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(300, 12)).astype(np.float32)
    tables = cq.train_pq(x, 4, ksub=16, iterations=5)
    codes = cq.encode(x, tables)
    for i in range(0, 300, 17):
        for j in range(4):
            sub = x[i, j * 3:(j + 1) * 3]
            assert codes[i, j] == np.argmin(((tables[j] - sub) ** 2).sum(1))
    assert cq.unpack(np.array([[1 + 2 * 16, 15]], dtype=np.uint8)).tolist() == [[1, 2, 15, 0]]
    assert np.array_equal(cq.unpack(cq.product_quantizer(tables).compute_codes(x)), codes)
    by_hand = np.concatenate([[tables[j, codes[0, j]] for j in range(4)]], axis=None)
    assert np.allclose(cq.pq_decode(codes[:1], tables)[0], by_hand)
    error = np.linalg.norm(cq.pq_decode(codes, tables) - x, axis=1).mean()
    untrained = tables.copy()
    untrained[:] = x[:16].reshape(16, 4, 3).transpose(1, 0, 2)
    assert error < np.linalg.norm(cq.pq_decode(cq.encode(x, untrained), untrained) - x, axis=1).mean()
    assert cq.residual_m(3584) == 448 and cq.residual_m(384) == 48 and cq.residual_m(12) == 2


def test_compressed_layout_and_decoding(store):
    packed, vectors, docids, _ = store
    manifest = packed.manifest
    counts = (np.abs(vectors).sum(-1) > 0).sum(1)
    assert manifest["documents"] == N and manifest["vectors"] == counts.sum() and manifest["k_p"] == KP
    assert np.asarray(packed.docstart).tolist() == np.concatenate([[0], np.cumsum(counts)]).tolist()
    assert packed.residual_codes.shape == (counts.sum(), manifest["residual_m"] // 2)
    assert manifest["bytes_per_doc"] == pytest.approx(sum((packed.folder / f).stat().st_size
                                                          for f in cq.SEARCH_FILES) / N, abs=0.05)
    assert 0.9 < manifest["anchor_cosine"] <= 1.0 and 0 < manifest["relative_error"] < 0.2
    docs = np.array([0, 5, 7, 8, 1499])
    decoded, owner, starts = document_vectors(packed, docs)
    anchors = packed.anchors(docs)
    for d, a in zip(docs, anchors):
        kept = vectors[d][np.abs(vectors[d]).sum(-1) > 0]
        if len(kept):  # the anchor is the passage's mean vector, in 4-bit codes
            assert np.linalg.norm(a - kept.mean(0)) < 0.25
    for r, (o, row) in enumerate(zip(owner, _ranges(np.asarray(packed.docstart[docs]),
                                                          np.asarray(packed.docstart[docs + 1])))):
        codes = cq.unpack(np.asarray(packed.residual_codes[row:row + 1]))[0]
        by_hand = anchors[o] + np.concatenate([packed.tables[j, codes[j]] for j in range(len(codes))])
        assert np.allclose(decoded[r], by_hand, atol=1e-6)
    assert len(decoded) == counts[docs].sum() and 7 not in docs[owner]  # passage 7 has no vectors
    true = np.concatenate([vectors[d][np.abs(vectors[d]).sum(-1) > 0] for d in docs])
    assert np.median(np.linalg.norm(decoded - true, axis=1)) < 0.15
    q = true[:2]
    assert store_maxsim(packed, q, docs)[2] == 0.0  # no vectors: MaxSim 0, as exact search scores it


def test_lookup_table_maxsim_and_the_full_scan_equal_their_naive_definitions(store):
    """batch_maxsim (per-code lookup tables, padded query batches) equals MaxSim computed by loops over the
    decoded vectors; the batched anchor scan returns what FAISS's IVF search returns with every list probed."""
    import faiss

    packed, vectors, docids, queries = store
    names = list(queries)[:6]
    rng = np.random.default_rng(3)
    docs = np.stack([rng.choice(N, 9, replace=False) for _ in names])
    docs[1, 4] = -1  # no document: scores 0
    docs[2, 0] = 7  # a passage without vectors: 0
    padded = np.zeros((len(names), 5, DIM), dtype=np.float32)
    for i, name in enumerate(names):
        padded[i, :len(queries[name])] = queries[name]
    wide = _unit(rng.normal(size=(len(names), 11, DIM)))  # K_q >= H / m: decoded residuals instead of tables
    wide[1, 9:] = 0.0  # (zero vectors pad a query)
    assert padded.shape[1] < packed.tables.shape[2] <= wide.shape[1]
    for batch in (padded, wide):
        got = packed.batch_maxsim(batch, docs)
        for i in range(len(names)):
            for j, d in enumerate(docs[i]):
                if d < 0:
                    assert got[i, j] == 0.0
                    continue
                decoded, _, _ = document_vectors(packed, np.array([d]))
                naive = sum(max([0.0] + [float(np.dot(q, v)) for v in decoded]) for q in batch[i])
                assert got[i, j] == pytest.approx(naive, abs=1e-4)
    got = packed.batch_maxsim(padded, docs)
    means = np.stack([queries[name].mean(0) for name in names]).astype(np.float32)
    scores, found = packed.scan(means, 50)
    faiss.extract_index_ivf(packed.index).nprobe = packed.manifest["nlist"]
    want_scores, want = packed.index.search(means, 50)
    assert np.allclose(scores, want_scores, atol=1e-4)
    assert (found == want).mean() > 0.98  # the same documents in the same order (up to rounding near-ties)
    fresh = cq.CompressedStore(packed.folder, docids)  # every anchor decoded once in memory: the same answers
    assert not fresh.decode_all(limit=N * DIM * 4 - 1) and fresh.decode_all()
    assert np.array_equal(fresh.scan(means, 50)[1], cq.CompressedStore(packed.folder, docids).scan(means, 50)[1])
    assert np.allclose(fresh.batch_maxsim(padded, docs), got, atol=1e-5)
    padded_scores, padded_found = packed.scan(means, N + 5)
    assert (padded_found[:, N:] == -1).all() and np.isinf(padded_scores[:, N:]).all()
    assert sorted(padded_found[0, :N].tolist()) == list(range(N))


@pytest.mark.parametrize("k_q", [3, 12])  # lookup tables; decoded residuals (K_q >= H / m)
def test_compressed_search_with_everything_probed_and_rescored_equals_exact(store, k_q):
    packed, vectors, docids, queries = store
    if k_q != 3:
        rng = np.random.default_rng(5)
        queries = {q: _unit(v[rng.integers(0, 3, k_q)] + 0.05 * rng.normal(size=(k_q, DIM)) / np.sqrt(DIM))
                   for q, v in list(queries.items())[:10]}
    exact = _exact(vectors, docids, queries, N)
    full = cq.compressed_search(packed, queries, k=N, nprobe=packed.manifest["nlist"], ndocs=N, rerank=N)
    for qid in queries:
        assert set(full[qid]) == set(exact[qid])
        order = [d for d, _ in ranked(full[qid])]  # ranked by exact score (equal to float rounding: either order)
        assert all(exact[qid][a] >= exact[qid][b] - 1e-5 for a, b in zip(order, order[1:]))
        for d, s in full[qid].items():
            assert s == pytest.approx(exact[qid][d], abs=1e-5)


def test_compressed_search_defaults_recall_and_rerank(store):
    """At the defaults the compressed scores keep the clearly best hits; re-scoring the top 30 from the float
    vectors returns exact MaxSim's top hits in exact order."""
    packed, vectors, docids, queries = store
    assert packed.manifest["nprobe"] == packed.manifest["nlist"]  # a small corpus is probed whole by default
    exact = _exact(vectors, docids, queries, 100)
    plain = {q: ranked(hits) for q, hits in cq.compressed_search(packed, queries, k=100).items()}
    top = {q: list(hits)[:TOP] for q, hits in exact.items()}
    assert np.mean([set(top[q]) == {d for d, _ in plain[q][:TOP]} for q in queries]) >= 0.95
    assert mv.agreement(exact, {q: dict(hits) for q, hits in plain.items()}, 100)["recall@100"] >= 0.5  # near-ties
    reranked = cq.compressed_search(packed, queries, k=100, rerank=30)
    for qid, q in queries.items():
        hits = ranked(reranked[qid])
        assert len(hits) == 100 and len(plain[qid]) == 100
        assert [d for d, _ in hits[:TOP]] == top[qid]
        head = hits[:30]
        truth = mv.maxsim_block(q[None], vectors[[docids.index(d) for d, _ in head]])[0]
        assert [s for _, s in head] == pytest.approx(truth.tolist(), abs=1e-5)  # exact scores, in order
        assert {d for d, _ in head} == {d for d, _ in plain[qid][:30]}  # re-scoring re-orders the same top 30
        assert min(s for _, s in head) > max(s for _, s in hits[30:])  # the rest below the re-scored ones
    short = cq.compressed_search(packed, queries, k=10)  # fewer hits than the 100 scored candidates
    deep = cq.compressed_search(packed, queries, k=1000, batch=7, threads=2)  # past the scored ones, other batches
    for qid in queries:
        assert ranked(short[qid]) == plain[qid][:10]
        deep_hits = ranked(deep[qid])
        assert len(deep_hits) == 1000 and {d for d, _ in deep_hits[:100]} == {d for d, _ in plain[qid]}
        assert [s for _, s in deep_hits[:100]] == pytest.approx([s for _, s in plain[qid]], abs=1e-5)
        anchors = [max(0.0, float(packed.index.reconstruct(docids.index(d)) @ queries[qid].mean(0)))
                   for d, _ in deep_hits[100:]]  # anchor MaxSim: negative products count 0
        assert all(a >= b - 1e-5 for a, b in zip(anchors, anchors[1:]))  # the rest in anchor order


def test_compressed_search_needs_the_float_vectors_to_rescore(store):
    from diffretriever_pyserini.errors import UserError

    packed, _, docids, queries = store
    bare = cq.CompressedStore(packed.folder, docids)
    with pytest.raises(UserError, match="--maxsim-rerank"):
        cq.compressed_search(bare, queries, rerank=5)
    with pytest.raises(UserError, match="1500 documents in the compressed store but 3 docids"):
        cq.CompressedStore(packed.folder, docids[:3])


def test_index_options_are_validated_and_named():
    from diffretriever_pyserini.errors import UserError
    from diffretriever_pyserini.pipeline import RunConfig

    base = RunConfig(dataset="scifact", model="minilm")
    assert ".dense-" not in base.condition and ".maxsim-" not in base.condition
    named = dataclasses.replace(base, dense_index="sq8", maxsim="compressed", maxsim_rerank=100).condition
    assert named.endswith(".dense-sq8.maxsim-compressed-rerank100")
    from diffretriever_pyserini.cli.options import with_flags

    for bad, match in [({"dense_index": "ivf"}, "dense_index must be one of"),
                       ({"maxsim": "plaid"}, "maxsim must be one of"),
                       ({"maxsim_nprobe": 0}, "maxsim_nprobe must be at least 1"),
                       ({"maxsim_rerank": -1}, "maxsim_rerank must not be negative")]:
        with pytest.raises(UserError, match=match) as caught:
            dataclasses.replace(base, **bad).validate()
        # the Python API names the setting, the command line the flag
        setting = match.split()[0]
        assert with_flags(caught.value) == str(caught.value).replace(setting, "--" + setting.replace("_", "-"), 1)
