"""Formulas of REFERENCE.md section 4 on hand-computed cases and against naive loops."""

import math

import numpy as np
import pytest
import torch

from diffretriever_pyserini import representation as R
from diffretriever_pyserini.scoring import maxsim, single_dense, sparse_dot
from diffretriever_pyserini.stopwords import ENGLISH_STOPWORDS


def test_assemble_truncates_text_only():
    ids, pos, cut = R.assemble([1, 2], [10, 11, 12, 13], [3], mask_id=99, k=2, tail=[4, 5], max_length=9)
    # fixed = 2 + 1 + 2 + 2 = 7 -> room for 2 text tokens
    assert ids == [1, 2, 10, 11, 3, 99, 99, 4, 5]
    assert pos == [5, 6] and cut
    ids, pos, cut = R.assemble([1], [10], [3], mask_id=99, k=3, tail=[], max_length=50)
    assert ids == [1, 10, 3, 99, 99, 99] and pos == [3, 4, 5] and not cut


def test_assemble_refuses_when_prompt_does_not_fit():
    with pytest.raises(ValueError, match="max_length=5"):
        R.assemble([1, 2, 3], [10], [4], mask_id=99, k=2, tail=[5], max_length=5)
    with pytest.raises(ValueError, match="K must be"):
        R.assemble([1], [], [], mask_id=9, k=0, tail=[], max_length=5)


def test_left_pad_and_positions():
    ids, mask = R.left_pad([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    pos = R.shift_positions([[1, 2], [0, 1]], [3, 2], padded_length=3)
    assert pos.tolist() == [[1, 2], [1, 2]]


def test_gather_positions_matches_indexing():
    states = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    pos = torch.tensor([[0, 3], [2, 1]])
    out = R.gather_positions(states, pos)
    assert out.shape == (2, 2, 3)
    assert torch.equal(out[0, 1], states[0, 3]) and torch.equal(out[1, 0], states[1, 2])


def test_normalise_and_single_vector():
    v = torch.tensor([[[3.0, 4.0], [0.0, 2.0], [1.0, 0.0]]])
    n = R.normalise(v)
    assert torch.allclose(n[0, 0], torch.tensor([0.6, 0.8]))
    keep = torch.tensor([[True, True, False]])
    dense = n * keep.unsqueeze(-1)
    single = R.single_vector(dense, keep)
    assert torch.allclose(single, torch.tensor([[0.3, 0.9]]))  # mean of (0.6, 0.8) and (0, 1), not re-normalised


def test_stopwords_are_nltk_english_179():
    assert len(ENGLISH_STOPWORDS) == 179
    assert {"the", "don't", "wouldn't", "ourselves", "y"} <= ENGLISH_STOPWORDS
    assert "protein" not in ENGLISH_STOPWORDS


def test_content_words():
    assert R.content_words("The Microglia, and THE microglia's role: 42 cells!") == [
        "microglia", "microglia's", "role", "42", "cells"]
    assert R.content_words("it is what it is ...") == []


def test_allowed_mask_never_allows_mask_id():
    allowed = R.allowed_token_mask([[1, 2], [2, 7], [99]], vocab_size=8, mask_id=7)
    assert allowed.tolist() == [False, True, True, False, False, False, False, False]


def test_term_weights_log1p_relu():
    w = R.term_weights(torch.tensor([[[-1.0, 0.0, math.e - 1, 3.0]]]))
    assert torch.allclose(w, torch.tensor([[[0.0, 0.0, 1.0, math.log(4.0)]]]))


def test_decoded_stop():
    special = torch.tensor([0, 1])
    argmax = torch.tensor([[0, 5, 6, 1], [5, 6, 1, 7], [5, 6, 7, 8], [5, 0, 6, 7]])
    keep = R.decoded_stop(argmax, special)
    assert keep.tolist() == [
        [True, True, True, False],   # position 0 special: kept, the scan goes on
        [True, True, False, False],  # stop at position 2 onward
        [True, True, True, True],
        [True, False, False, False],
    ]


def test_quantise_rounds_to_integer_impacts():
    q = R.quantise(torch.tensor([0.004, 0.006, 0.026, 1.234, 2.0]))
    assert q.tolist() == [0, 1, 3, 123, 200] and q.dtype == torch.int64


def test_topk_and_max_pool():
    w = torch.tensor([[[0.1, 0.5, 0.3, 0.0], [0.4, 0.0, 0.2, 0.9]]])
    top = R.topk_per_position(w, 2)
    assert torch.equal(top, torch.tensor([[[0.0, 0.5, 0.3, 0.0], [0.4, 0.0, 0.0, 0.9]]]))
    pooled = R.max_pool(top, torch.tensor([[True, False]]))
    assert torch.equal(pooled, torch.tensor([[0.0, 0.5, 0.3, 0.0]]))
    assert torch.equal(R.max_pool(top, torch.tensor([[True, True]])), torch.tensor([[0.4, 0.5, 0.3, 0.9]]))


def _naive_sparse(logits, allowed, keep, top_k, blocked, fallback_k):
    """Explicit loops over texts, positions and terms."""
    B, K, V = logits.shape
    out = []
    for b in range(B):
        pooled = [0.0] * V
        for k in range(K):
            if not keep[b][k]:
                continue
            weights = [math.log1p(max(float(logits[b, k, v]), 0.0)) if allowed[b][v] else 0.0 for v in range(V)]
            best = sorted(range(V), key=lambda v: -weights[v])[:top_k]
            for v in best:
                pooled[v] = max(pooled[v], weights[v])
        impacts = [int(round(x * 100)) for x in pooled]
        if not any(impacts):
            pooled = [0.0] * V
            for k in range(K):
                if not keep[b][k]:
                    continue
                weights = [0.0 if blocked[v] else math.log1p(max(float(logits[b, k, v]), 0.0)) for v in range(V)]
                for v in sorted(range(V), key=lambda v: -weights[v])[:fallback_k]:
                    pooled[v] = max(pooled[v], weights[v])
            impacts = [int(round(x * 100)) for x in pooled]
        out.append(impacts)
    return out


def test_sparse_vectors_match_naive_loops():
    g = torch.Generator().manual_seed(0)
    B, K, V = 4, 3, 40
    logits = torch.randn(B, K, V, generator=g) * 3
    allowed = torch.rand(B, V, generator=g) < 0.3
    allowed[3] = False  # no content token at all -> fallback
    keep = torch.tensor([[True, True, True], [True, False, False], [True, True, False], [True, True, True]])
    blocked = torch.zeros(V, dtype=torch.bool)
    blocked[[0, 1, 39]] = True
    got = R.sparse_vectors(logits, allowed, keep, top_k=5, blocked=blocked, fallback_k=4)
    assert got.tolist() == _naive_sparse(logits, allowed, keep, 5, blocked, 4)
    assert 0 < (got[3] > 0).sum() <= 4 * 3 and not got[3, blocked].any()  # top 4 per kept position


def test_to_term_dicts_keeps_positive_integer_impacts():
    impacts = torch.tensor([[0, 5, 0, 7], [0, 0, 0, 0]])
    names = {1: "b", 3: "a"}
    out = R.to_term_dicts(impacts, lambda ids: [names[i] for i in ids])
    assert out == [{"a": 7, "b": 5}, {}]
    assert list(out[0]) == ["a", "b"]


def test_scoring_modes_against_loops():
    rng = np.random.default_rng(1)
    q = rng.normal(size=(3, 5))
    p = rng.normal(size=(4, 2, 5))
    expected = [sum(max(0.0, max(float(q[i] @ p[n, j]) for j in range(2))) for i in range(3)) for n in range(4)]
    assert np.allclose(maxsim(q, p), expected)
    # clamping: a query vector opposite to every passage vector adds 0, not a negative number
    assert maxsim(np.array([[1.0, 0.0]]), np.array([[[-1.0, 0.0]]])).tolist() == [0.0]
    assert np.allclose(single_dense(q[0], p[:, 0]), [float(p[n, 0] @ q[0]) for n in range(4)])
    assert sparse_dot({"a": 2, "b": 3}, {"b": 4, "c": 9}) == 12
