"""Formulas of REFERENCE.md section 4 on hand-computed cases and against naive loops."""

import math

import numpy as np
import pytest
import torch

from diffretriever_pyserini.readout import representation as R
from diffretriever_pyserini.search.scoring import maxsim, sparse_dot
from diffretriever_pyserini.readout.lexical import content_words as R_content_words
from diffretriever_pyserini.readout.lexical import english_stopwords


def test_assemble_cuts_text_only_and_puts_masks_and_tail_on_top():
    ids, pos, cut = R.assemble([1, 2], [10, 11, 12, 13], [3], mask_id=99, k=2, tail=[4, 5], text_budget=2)
    assert ids == [1, 2, 10, 11, 3, 99, 99, 4, 5]  # 2 text tokens kept; masks and tail come on top of the budget
    assert pos == [5, 6] and cut
    ids, pos, cut = R.assemble([1], [10], [3], mask_id=99, k=3, tail=[], text_budget=50)
    assert ids == [1, 10, 3, 99, 99, 99] and pos == [3, 4, 5] and not cut


def test_assemble_refuses_bad_budgets():
    with pytest.raises(ValueError, match="text budget"):
        R.assemble([1, 2, 3], [10], [4], mask_id=99, k=2, tail=[5], text_budget=-1)
    with pytest.raises(ValueError, match="K must be"):
        R.assemble([1], [], [], mask_id=9, k=0, tail=[], text_budget=5)


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


def test_stopwords_are_nltk_english_198():
    words = english_stopwords()
    assert len(words) == 198
    assert {"the", "don't", "wouldn't", "ourselves", "y"} <= words  # the 179 of nltk_data before 2025-02
    assert {"i'm", "he's", "they've", "we'll", "it'd"} <= words  # 19 pronoun contractions added in 2025-02
    assert "protein" not in words and "n't" not in words


def test_content_words_follow_nltk_treebank_rules():
    words = R_content_words("Don't stop. COVID-19 rates rose 3.5% in the U.S. last year, e.g. \"Quoted\" text... end")
    # contractions split ("do" is a stopword, "n't" is not); hyphenated words and decimals stay one token; the
    # sentence-final period splits off and is dropped as punctuation, abbreviations keep theirs; double quotes
    # become `` and '' (not single punctuation characters, so kept, as in the reference)
    assert words == ["n't", "stop", "covid-19", "rates", "rose", "3.5", "u.s.", "last", "year", "e.g", "``",
                     "quoted", "''", "text", "...", "end"]
    assert R_content_words("The Microglia, and THE microglia's role: 42 cells!") == [
        "microglia", "microglia", "'s", "role", "42", "cells"]
    assert R_content_words("it is what it is .") == [] and R_content_words("") == []
    assert R_content_words("I'm sure they've gone") == ["'m", "sure", "'ve", "gone"]


def test_allowed_mask_never_allows_mask_id():
    allowed = R.allowed_token_mask([[1, 2], [2, 7], [99]], vocab_size=8, mask_id=7)
    assert allowed.tolist() == [False, True, True, False, False, False, False, False]


def test_term_weights_both_formulas():
    x = torch.tensor([[[-1.0, 0.0, math.e - 1, 3.0]]])
    expected = torch.tensor([[[0.0, 0.0, 1.0, math.log(4.0)]]])
    assert torch.allclose(R.term_weights(x), expected) and torch.allclose(R.term_weights(x, "log1p"), expected)
    # float32 rounding differs: 1 + 1e-8 is 1, so log(1 + x) is 0 where log1p(x) is 1e-8 (it moves truncated impacts)
    tiny = torch.tensor([1e-8])
    assert R.term_weights(tiny, "log(1+x)").item() == 0.0 and R.term_weights(tiny, "log1p").item() > 0.0
    with pytest.raises(ValueError, match="formula"):
        R.term_weights(tiny, "exp")


def test_decoded_stop_reference_rules():
    stop = torch.tensor([0, 1])
    decoded = torch.tensor([[0, 5, 6, 1], [5, 6, 1, 7], [5, 6, 7, 8], [5, 0, 6, 7], [1, 5, 0, 0]])
    assert R.decoded_stop(decoded, stop).tolist() == [
        [True, True, True, True],    # first stop at position 0: every position kept, later stops too
        [True, True, False, False],  # first stop at position 2: it and the rest dropped
        [True, True, True, True],    # no stop
        [True, False, False, False],
        [True, True, True, True],
    ]


def test_generated_stop_autoregressive_rules():
    stop = torch.tensor([0, 9])  # a special token and the closing quote
    # argmax at position j is the token generated next, i.e. what position j + 1 holds
    argmax = torch.tensor([[5, 9, 6, 7], [9, 5, 6, 7], [5, 6, 7, 9], [5, 6, 7, 8]])
    assert R.generated_stop(argmax, stop).tolist() == [
        [True, True, False, False],  # position 2 holds the quote: it and the rest dropped
        [True, False, False, False],  # the first generated token is the quote; position 0 always stays
        [True, True, True, True],  # the last argmax is never fed
        [True, True, True, True],
    ]


def test_quantise_truncates_zero_shot_and_rounds_fine_tuned():
    w = torch.tensor([0.004, 0.006, 0.026, 1.234, 2.0, 0.125, 0.019999])
    # w * 100 in float32: 0.4, 0.6, 2.6000001, 123.4, 200, 12.5, 1.9999
    assert R.quantise(w, mode="truncate").tolist() == [0, 0, 2, 123, 200, 12, 1]
    assert R.quantise(w, mode="round").tolist() == [0, 1, 3, 123, 200, 12, 2]  # 12.5 -> 12: half to even
    assert R.quantise(w).dtype == torch.int64
    with pytest.raises(ValueError, match="quantisation"):
        R.quantise(w, mode="floor")


def test_zero_shot_transfer_counts_by_hand():
    # timesteps linspace(1, 1e-3, S + 1); n = max(1, int(m * (1 - t[s + 1] / t[s]))), all remaining at the end
    assert [R.zero_shot_transfer_count(4, 0, 2), R.zero_shot_transfer_count(3, 1, 2)] == [1, 3]  # 4 * 0.4995
    assert R.zero_shot_transfer_count(16, 0, 2) == 7  # int(16 * 0.4995) = 7
    assert [R.zero_shot_transfer_count(m, s, 4) for m, s in ((4, 0), (3, 1), (2, 2), (1, 3))] == [1, 1, 1, 1]
    assert R.zero_shot_transfer_count(5, 0, 1) == 5


def test_neg_entropy():
    logits = torch.tensor([[0.0, 0.0], [10.0, -10.0]])
    conf = R.neg_entropy(logits)
    assert conf[0].item() == pytest.approx(-math.log(2), abs=1e-6) and conf[1].item() > conf[0].item()


def _naive_sparse(logits, allowed, keep, top_k, mode, pool_first=False):
    """Explicit loops over texts, positions and terms: the reference's per-position top-k, quantise, max over the
    kept positions (or, ``pool_first``, the max over positions first and then the top-k)."""
    B, K, V = logits.shape
    q = (lambda x: int(x * 100)) if mode == "truncate" else (lambda x: int(round(x * 100)))
    out = []
    for b in range(B):
        weights = [[math.log(1 + max(float(logits[b, k, v]), 0.0)) if allowed[b][v] else 0.0 for v in range(V)]
                   for k in range(K)]
        pooled = [0] * V
        if pool_first:
            best = [max(weights[k][v] for k in range(K) if keep[b][k]) for v in range(V)]
            for v in sorted(range(V), key=lambda v: -best[v])[:top_k]:
                pooled[v] = q(best[v])
        else:
            for k in range(K):
                if keep[b][k]:
                    for v in sorted(range(V), key=lambda v: -weights[k][v])[:top_k]:
                        pooled[v] = max(pooled[v], q(weights[k][v]))
        out.append(pooled)
    return out


@pytest.mark.parametrize("mode", ["truncate", "round"])
@pytest.mark.parametrize("pool_first", [False, True])
def test_sparse_impacts_match_naive_loops(mode, pool_first):
    g = torch.Generator().manual_seed(0)
    B, K, V = 4, 3, 40
    logits = torch.randn(B, K, V, generator=g, dtype=torch.float64).float() * 3
    allowed = torch.rand(B, V, generator=g) < 0.5
    allowed[3] = False  # no content token at all: the vector stays empty (no fallback)
    keep = torch.tensor([[True, True, True], [True, False, False], [True, True, False], [True, True, True]])
    weights = R.term_weights(logits) * allowed.unsqueeze(1)
    got = R.sparse_impacts(weights, keep, top_k=5, mode=mode, pool_first=pool_first)
    assert got.tolist() == _naive_sparse(logits, allowed, keep, 5, mode, pool_first)
    assert not got[3].any()
    if not pool_first:
        assert (got[0] > 0).sum() > 5  # per-position top-5 of 3 positions: a union of up to 15 terms


def test_promptreps_fallback_is_opt_in():
    weights = torch.zeros(1, 2, 6)
    open_weights = torch.tensor([[[0.1, 0.9, 0.5, 0.0, 0.3, 0.7], [0.2, 0.0, 0.0, 0.8, 0.0, 0.0]]])
    keep = torch.tensor([[True, False]])
    empty = R.sparse_impacts(weights, keep, top_k=3, mode="truncate")
    assert not empty.any()
    blocked = torch.tensor([False, True, False, False, False, False])
    filled = R.promptreps_fallback(empty, open_weights, keep, blocked, fallback_k=2)
    assert filled.tolist() == [[0, 0, 50, 0, 0, 70]]  # top 2 of the kept position, blocked id 1 excluded
    assert torch.equal(R.promptreps_fallback(empty, open_weights, keep, blocked, fallback_k=0), empty)


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
    assert np.allclose(maxsim(q[:1], p[:, :1]), [max(0.0, float(p[n, 0] @ q[0])) for n in range(4)])
    assert sparse_dot({"a": 2, "b": 3}, {"b": 4, "c": 9}) == 12
