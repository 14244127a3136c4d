"""Fusion against naive loops and Pyserini's own HybridSearcher rule; run files; evaluation by hand."""

import math
import random

import pytest

from diffretriever_pyserini import fusion as F
from diffretriever_pyserini.evaluate.metrics import evaluate
from diffretriever_pyserini.search.runs import read_run, remove_self_hits, write_run


def _random_run(rng, qids, docs, n):
    return {q: {d: round(rng.uniform(-2, 5), 3) for d in rng.sample(docs, n)} for q in qids}


def test_normalized_fusion_matches_naive_with_missing_docs():
    rng = random.Random(3)
    docs = [f"d{i}" for i in range(30)]
    dense, sparse = _random_run(rng, ["1", "2"], docs, 12), _random_run(rng, ["1", "2"], docs, 15)
    fused = F.normalized_fusion([dense, sparse], (0.5, 0.5), depth=None)
    for q in ["1", "2"]:
        for d in set(dense[q]) | set(sparse[q]):
            expected = 0.0
            for run in (dense, sparse):
                if d in run[q]:
                    lo, hi = min(run[q].values()), max(run[q].values())
                    expected += 0.5 * (run[q][d] - lo) / (hi - lo)
            assert math.isclose(fused[q][d], expected)


def test_normalized_fusion_depth_and_degenerate_lists():
    run_a = {"q": {"a": 3.0, "b": 2.0, "c": 1.0}}
    run_b = {"q": {"c": 7.0}}  # one hit (all equal): 0 in the reference's fusion ((s - min) / max(range, 1e-9))
    fused = F.normalized_fusion([run_a, run_b], (0.5, 0.5), depth=2)
    assert fused == {"q": {"a": 0.5, "b": 0.0, "c": 0.0}}  # c is outside run_a's top-2: 0 from it
    # pyserini.fusion --method normalize maps an all-equal list to 1
    fused = F.normalized_fusion([run_a, run_b], (0.5, 0.5), depth=2, all_equal=F.ALL_EQUAL_PYSERINI)
    assert fused == {"q": {"a": 0.5, "b": 0.0, "c": 0.5}}


def test_sparse_zero_fill_takes_the_minimum_as_zero():
    dense = {"q": {"a": 1.0, "b": 0.5, "c": 0.0}}
    sparse = {"q": {"a": 30.0, "b": 10.0}}  # Lucene: only 2 of 3 documents match
    lucene = F.normalized_fusion([dense, sparse], (0.5, 0.5), depth=1000)
    assert lucene["q"] == {"a": 1.0, "b": 0.25, "c": 0.0}  # sparse min-max over (10, 30): b -> 0
    padded = F.normalized_fusion([dense, sparse], (0.5, 0.5), depth=1000, zero_floor=(False, True), pad_to=3)
    assert padded["q"] == pytest.approx({"a": 1.0, "b": 0.25 + 0.5 * 10 / 30, "c": 0.0})  # min 0, as if c scored 0
    full = F.normalized_fusion([dense, sparse], (0.5, 0.5), depth=1000, zero_floor=(False, True), pad_to=2)
    assert full == lucene  # a list as long as the corpus is not padded


def test_pyserini_hybrid_equals_pyserini_rule():
    from pyserini.search.hybrid import HybridSearcher

    class Hit:
        def __init__(self, docid, score):
            self.docid, self.score = docid, score

    rng = random.Random(7)
    docs = [f"d{i}" for i in range(40)]
    dense, sparse = _random_run(rng, ["q"], docs, 20), _random_run(rng, ["q"], docs, 20)
    for alpha, norm, wod in [(0.1, False, False), (1.0, True, False), (0.5, True, True)]:
        theirs = HybridSearcher._hybrid_results([Hit(d, s) for d, s in dense["q"].items()],
                                                [Hit(d, s) for d, s in sparse["q"].items()], alpha, 100, norm, wod)
        ours = F.pyserini_hybrid(dense, sparse, alpha, norm, wod)["q"]
        assert len(theirs) == len(ours)
        for hit in theirs:
            assert math.isclose(hit.score, ours[hit.docid], abs_tol=1e-12)


def test_paper_fusion_and_normalised_hybrid_rank_alike():
    rng = random.Random(11)
    docs = [f"d{i}" for i in range(50)]
    dense, sparse = _random_run(rng, ["q"], docs, 25), _random_run(rng, ["q"], docs, 25)
    paper = F.normalized_fusion([dense, sparse], (0.5, 0.5), depth=None)["q"]
    hybrid = F.pyserini_hybrid(dense, sparse, alpha=1.0, normalization=True)["q"]
    # hybrid = minmax_d - 1/2 + minmax_s - 1/2 (missing -> min -> 0): an affine map of the paper's score
    for d in paper:
        assert math.isclose(hybrid[d], 2 * paper[d] - 1, abs_tol=1e-9)


def test_pyserini_hybrid_survives_one_hit_lists():
    fused = F.pyserini_hybrid({"q": {"a": 1.0}}, {"q": {"a": 2.0, "b": 1.0}}, alpha=1.0, normalization=True)
    assert fused["q"] == {"a": 0.5, "b": -0.5}


def test_rrf_by_hand():
    fused = F.reciprocal_rank_fusion([{"q": {"a": 2.0, "b": 1.0}}, {"q": {"b": 5.0}}], k=60)
    assert math.isclose(fused["q"]["a"], 1 / 61) and math.isclose(fused["q"]["b"], 1 / 62 + 1 / 61)


def test_run_file_is_deterministic_and_well_formed(tmp_path):
    run = {"2": {"z": 1.0, "a": 1.0, "m": 3.0}, "10": {"x": 0.5}}
    p1 = write_run(tmp_path / "a.trec", run, "tag", k=2)
    p2 = write_run(tmp_path / "b.trec", {q: dict(reversed(list(h.items()))) for q, h in run.items()}, "tag", k=2)
    assert p1.read_bytes() == p2.read_bytes()
    assert p1.read_text().splitlines() == ["10 Q0 x 1 0.500000 tag", "2 Q0 m 1 3.000000 tag", "2 Q0 a 2 1.000000 tag"]
    assert read_run(p1) == {"10": {"x": 0.5}, "2": {"m": 3.0, "a": 1.0}}
    assert not list(tmp_path.glob(".*"))  # no temporary files left


def test_remove_self_hits():
    assert remove_self_hits({"q1": {"q1": 9.0, "d": 1.0}}) == {"q1": {"d": 1.0}}


def test_evaluate_by_hand_with_missing_query():
    qrels = {"q1": {"a": 1, "b": 2}, "q2": {"c": 1}}
    run = {"q1": {"b": 3.0, "x": 2.0, "a": 1.0}}  # q2 absent -> counts 0 (trec_eval -c)
    # trec_eval's nDCG uses linear gains: rel / log2(rank + 1)
    dcg = 2 / math.log2(2) + 1 / math.log2(4)
    idcg = 2 / math.log2(2) + 1 / math.log2(3)
    m = evaluate(qrels, run, ("ndcg_cut_10", "recall_100", "recip_rank_10"))
    assert m["ndcg_cut_10"] == pytest.approx((dcg / idcg) / 2)
    assert m["recall_100"] == pytest.approx(0.5)
    assert m["recip_rank_10"] == pytest.approx(0.5)
