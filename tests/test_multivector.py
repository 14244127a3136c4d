"""MaxSim against naive loops; exact block search; candidate generation + re-scoring; fp16 storage."""

import numpy as np
import pytest

from diffretriever_pyserini.index import multivector as mv
from diffretriever_pyserini.encode.writers import FaissWriter


def _naive_maxsim(q, p):
    total = 0.0
    for i in range(q.shape[0]):
        best = max(float(np.dot(q[i], p[j])) for j in range(p.shape[0]))
        total += max(0.0, best)
    return total


def _normed(rng, *shape):
    x = rng.normal(size=shape).astype(np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_maxsim_block_matches_naive_loops_with_clamping():
    rng = np.random.default_rng(0)
    q = _normed(rng, 3, 4, 8)
    d = _normed(rng, 5, 6, 8)
    d[2] = 0.0  # a document whose every vector was dropped scores 0
    q[1, 0] = -d[0, 0]  # a query vector opposite to a document vector
    got = mv.maxsim_block(q, d)
    for a in range(3):
        for b in range(5):
            assert got[a, b] == pytest.approx(_naive_maxsim(q[a], d[b]), abs=1e-5)
    assert np.all(got[:, 2] == 0.0)
    neg = mv.maxsim_block(np.array([[[1.0, 0.0]]], dtype=np.float32), np.array([[[-1.0, 0.0]]], dtype=np.float32))
    assert neg.tolist() == [[0.0]]


@pytest.fixture()
def store(tmp_path):
    rng = np.random.default_rng(1)
    n, kp, dim = 300, 4, 16
    vectors = _normed(rng, n, kp, dim)
    vectors[::7, 3] = 0.0  # dropped positions
    docids = [f"d{i:03d}" for i in range(n)]
    with FaissWriter(tmp_path / "dense") as w:
        for s in range(0, n, 64):
            w.write(docids[s:s + 64], vectors[s:s + 64].mean(1), vectors[s:s + 64])
    return tmp_path / "dense", vectors, docids


def test_exact_search_equals_naive_ranking(store):
    folder, vectors, docids = store
    rng = np.random.default_rng(2)
    queries = {f"q{i}": _normed(rng, 3, 16) for i in range(5)}
    run = mv.exact_search(mv.MultiVectorStore.open(folder), queries, k=10, doc_block=37, query_block=2)
    for qid, q in queries.items():
        naive = sorted(((_naive_maxsim(q, vectors[j]), docids[j]) for j in range(len(docids))), reverse=True)[:10]
        assert set(run[qid]) == {d for _, d in naive}
        for score, d in naive:
            assert run[qid][d] == pytest.approx(score, abs=1e-5)


@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_candidates_reproduce_exact_top10(store, kind):
    folder, _, _ = store
    rows = mv.build_row_index(folder, kind=kind, nlist=8)
    manifest = (rows / "manifest.json").read_text()
    assert '"rows": 1157' in manifest  # 300 * 4 vectors minus the 43 dropped ones
    assert len((rows / "docid").read_text().split()) == 1157  # one docid line per row
    rng = np.random.default_rng(3)
    queries = {f"q{i}": _normed(rng, 3, 16) for i in range(10)}
    s = mv.MultiVectorStore.open(folder)
    exact = mv.exact_search(s, queries, k=10)
    approx = mv.candidate_search(s, mv.RowIndex(folder, nprobe=8), queries, k=10, depth=300)
    assert mv.top10_agreement(exact, approx) == 1.0
    shallow = mv.candidate_search(s, mv.RowIndex(folder, nprobe=1), queries, k=10, depth=1)
    assert mv.top10_agreement(exact, shallow) < 1.0  # the depth matters: the agreement can fail


def test_float16_storage_halves_bytes_and_keeps_rankings(tmp_path):
    rng = np.random.default_rng(4)
    vectors = _normed(rng, 50, 4, 32)
    for dtype in ("float32", "float16"):
        with FaissWriter(tmp_path / dtype, kvector_dtype=dtype) as w:
            w.write([f"d{i}" for i in range(50)], vectors.mean(1), vectors)
    s32, s16 = mv.MultiVectorStore.open(tmp_path / "float32"), mv.MultiVectorStore.open(tmp_path / "float16")
    assert s16.vectors.dtype == np.float16 and s16.bytes_per_doc() * 2 == s32.bytes_per_doc()
    q = {"q": _normed(rng, 2, 32)}
    top32 = sorted(mv.exact_search(s32, q, 5)["q"].items(), key=lambda x: -x[1])
    top16 = sorted(mv.exact_search(s16, q, 5)["q"].items(), key=lambda x: -x[1])
    assert [d for d, _ in top32] == [d for d, _ in top16]
