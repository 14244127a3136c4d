"""The K-mask readout as small pure functions (arXiv 2605.07210), faithful to the authors' released code.

Shapes: B texts in a batch, L padded length, K masks, H hidden size, V vocabulary size, T kept terms per position.
Nothing here knows which backbone produced the tensors; :class:`~diffretriever_pyserini.readout.kmask.KMaskReader`
composes the steps around any :class:`~diffretriever_pyserini.backbones.base.Backbone`.

Two rule sets, as in the reference (``scripts/encode.py`` with its zero-shot retrievers and its fine-tuned
``trained_diff`` path); every choice is a field of :class:`~diffretriever_pyserini.readout.kmask.ReadoutConfig`,
resolved per backbone family and
recorded in each output's metadata:

| rule | zero-shot | fine-tuned |
|---|---|---|
| terms kept per mask position (``top_k``) | 128 (diffusion, masked LM); 256 (autoregressive) | 256 |
| integer impacts (``quantisation``) | truncate: int(w * 100) | round: round(w * 100) |
| decoded-token stop (``stop``) | diffusion: ``decoded``; autoregressive: ``generated`` | none |
| term weight | log(1 + relu(x)) in float32 | log1p(relu(x)) in the model's dtype |
| multi-step sparse | top-k per position, then max over K | max over K, then top-k |
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

import torch


IMPACT_SCALE = 100
"""Sparse weights become integer impacts w * IMPACT_SCALE, truncated (zero-shot) or rounded (fine-tuned)."""
TOPK_ZERO_SHOT = 128
"""Terms kept per mask position by the zero-shot diffusion readout (and the masked-LM CPU backbone)."""
TOPK_AUTOREGRESSIVE = 256
"""Terms kept per position by the zero-shot autoregressive (PromptReps) readout (``run_encode.sh --sparse_topk``)."""
TOPK_FINETUNED = 256
"""Terms kept per position by every fine-tuned model."""
PROMPTREPS_FALLBACK_K = 10
"""PromptReps (not DiffRetriever) keeps the top 10 unrestricted terms when no content term survives; opt-in."""
DEFAULT_MAX_LENGTH = 256
"""Reference inference budget (``scripts/run_encode.sh`` MAX_LENGTH=256, queries and passages alike): the text is
cut to ``max_length - len(prefix) - len(suffix)`` tokens and the K masks and the tail come on top."""
N_TAIL = 3
"""Tokens after the K masks: the closing quote, the end-of-turn token and eos."""

QUANTISATIONS = ("truncate", "round")
STOP_RULES = ("decoded", "generated", "none")
DENSE_SOURCES = ("hidden", "lm-head-output")
ENTROPY_EPS = 1e-10
TIMESTEP_EPS = 1e-3


# --------------------------------------------------------------------------- input layout


def assemble(prefix: Sequence[int], text: Sequence[int], suffix: Sequence[int], mask_id: int, k: int,
             tail: Sequence[int], text_budget: int) -> tuple[list[int], list[int], bool]:
    """``prefix + text[:text_budget] + suffix + [mask]*k + tail``: only TEXT is ever cut.

    Returns (ids, mask positions within ids, whether TEXT was truncated).
    """
    if k < 1:
        raise ValueError(f"K must be >= 1, got {k}")
    if text_budget < 0:
        raise ValueError(f"text budget must be >= 0, got {text_budget}")
    truncated = len(text) > text_budget
    text = list(text[:text_budget])
    start = len(prefix) + len(text) + len(suffix)
    ids = list(prefix) + text + list(suffix) + [mask_id] * k + list(tail)
    return ids, list(range(start, start + k)), truncated


def left_pad(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad to the longest sequence: (B,) lists -> (B, L) input ids, (B, L) key-padding mask (1 = real)."""
    length = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), length), dtype=torch.long)
    for row, seq in enumerate(sequences):
        if seq:
            ids[row, length - len(seq):] = torch.tensor(seq, dtype=torch.long)
            mask[row, length - len(seq):] = 1
    return ids, mask


def shift_positions(positions: Sequence[Sequence[int]], lengths: Sequence[int], padded_length: int) -> torch.Tensor:
    """Mask positions within each unpadded sequence -> positions in the left-padded batch, (B, K)."""
    return torch.tensor([[p + padded_length - n for p in pos] for pos, n in zip(positions, lengths)],
                        dtype=torch.long)


def gather_positions(states: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """(B, L, D) states, (B, K) positions -> (B, K, D) states at those positions."""
    index = positions.unsqueeze(-1).expand(-1, -1, states.shape[-1])
    return torch.gather(states, 1, index)


# --------------------------------------------------------------------------- dense


def normalise(vectors: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """L2-normalise the last dimension: (..., H) -> (..., H); a zero vector stays zero."""
    return vectors / vectors.norm(dim=-1, keepdim=True).clamp_min(eps)


def single_vector(dense: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Mean of the kept (non-zeroed) normalised vectors: (B, K, H), (B, K) bool -> (B, H).

    This is the single_dense representation; it is not re-normalised (inner product over the mean).
    """
    weights = keep.to(dense.dtype).unsqueeze(-1)
    return (dense * weights).sum(1) / weights.sum(1).clamp_min(1.0)


# --------------------------------------------------------------------------- decoded-token stop


def decoded_stop(decoded: torch.Tensor, stop_ids: torch.Tensor) -> torch.Tensor:
    """Zero-shot diffusion stop: (B, K) decoded ids, (S,) stop ids -> (B, K) bool, True = position kept.

    The first position whose decoded token is a stop token cuts it and every later position; a first stop at
    position 0 keeps all K positions (the reference's "model confused" fallback), whatever comes after it.
    """
    is_stop = torch.isin(decoded, stop_ids)
    k = decoded.shape[1]
    first = torch.where(is_stop.any(1), is_stop.float().argmax(1), torch.full_like(decoded[:, 0], k))
    first = torch.where(first == 0, torch.full_like(first, k), first)
    return torch.arange(k).unsqueeze(0) < first.unsqueeze(1)


def generated_stop(argmax_ids: torch.Tensor, stop_ids: torch.Tensor) -> torch.Tensor:
    """Zero-shot autoregressive (PromptReps) stop: (B, K) greedy next-token ids, (S,) stop ids -> (B, K) kept.

    Position j >= 1 holds the state of the token generated at step j, which is ``argmax_ids[:, j - 1]``; the first
    generated stop token (a special token or the closing quote) cuts its position and all later ones. Position 0
    (the prompt's last token) is always kept.
    """
    b, k = argmax_ids.shape
    generated_is_stop = torch.zeros((b, k), dtype=torch.bool)
    generated_is_stop[:, 1:] = torch.isin(argmax_ids[:, :-1], stop_ids)
    return torch.cumsum(generated_is_stop.long(), dim=1) == 0


# --------------------------------------------------------------------------- sparse


def allowed_token_mask(word_ids: Iterable[Iterable[int]], vocab_size: int, mask_id: int) -> torch.Tensor:
    """Union of the token ids of the content words as a (V,) bool mask; the mask id is never allowed."""
    allowed = torch.zeros(vocab_size, dtype=torch.bool)
    ids = [i for word in word_ids for i in word if 0 <= i < vocab_size]
    if ids:
        allowed[torch.tensor(ids, dtype=torch.long)] = True
    if 0 <= mask_id < vocab_size:
        allowed[mask_id] = False
    return allowed


def term_weights(logits: torch.Tensor, formula: str = "log(1+x)") -> torch.Tensor:
    """(..., V) logits -> (..., V) weights in the logits' dtype: ``log(1 + relu(x))`` (the zero-shot reference) or
    ``log1p(relu(x))`` (its fine-tuned path); the two differ only in float rounding, which moves truncated impacts."""
    if formula == "log1p":
        return torch.log1p(torch.relu(logits))
    if formula == "log(1+x)":
        return torch.log(1 + torch.relu(logits))
    raise ValueError(f"unknown term-weight formula {formula!r}")


def topk_per_position(weights: torch.Tensor, k: int) -> torch.Tensor:
    """Zero all but the k largest entries along V: (B, K, V) -> (B, K, V)."""
    k = min(k, weights.shape[-1])
    values, index = torch.topk(weights, k, dim=-1, sorted=False)
    return torch.zeros_like(weights).scatter(-1, index, values)


def max_pool(weights: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Element-wise max over the kept K positions: (B, K, V), (B, K) bool -> (B, V)."""
    return (weights * keep.to(weights.dtype).unsqueeze(-1)).amax(dim=1)


def quantise(weights: torch.Tensor, scale: int = IMPACT_SCALE, mode: str = "truncate") -> torch.Tensor:
    """Integer impacts of non-negative weights: (...) float -> (...) int64.

    ``truncate``: int(w * scale) (zero-shot reference, PromptReps); ``round``: round(w * scale), half to even
    (fine-tuned reference). The product is taken in float32, as the reference does.
    """
    scaled = weights.float() * scale
    if mode == "truncate":
        return torch.trunc(scaled).long()
    if mode == "round":
        return torch.round(scaled).long()
    raise ValueError(f"quantisation must be one of {QUANTISATIONS}, got {mode!r}")


def sparse_impacts(weights: torch.Tensor, keep: torch.Tensor, top_k: int, mode: str, scale: int = IMPACT_SCALE,
                   pool_first: bool = False) -> torch.Tensor:
    """(B, K, V) content-restricted weights, (B, K) kept positions -> (B, V) integer impacts.

    Default: the top ``top_k`` terms of each position, quantised, max-pooled over the kept positions (quantising
    before or after the max is the same: both quantisations are monotone). ``pool_first``: max over the kept
    positions first, then the top ``top_k`` of the pooled vector (the fine-tuned multi-step path).
    """
    if pool_first:
        pooled = max_pool(weights, keep).unsqueeze(1)
        return quantise(topk_per_position(pooled, top_k)[:, 0], scale, mode)
    return quantise(max_pool(topk_per_position(weights, top_k), keep), scale, mode)


def promptreps_fallback(impacts: torch.Tensor, weights: torch.Tensor, keep: torch.Tensor, blocked: torch.Tensor,
                        fallback_k: int, scale: int = IMPACT_SCALE, mode: str = "truncate") -> torch.Tensor:
    """PromptReps' rule (opt-in; DiffRetriever has none): a text whose pooled impacts are all zero takes the top
    ``fallback_k`` terms of its unrestricted weights instead ((V,) ``blocked`` ids, e.g. specials, excluded)."""
    empty = (impacts > 0).sum(-1) == 0
    if fallback_k > 0 and empty.any():
        open_weights = weights[empty] * (~blocked).to(weights.dtype)
        impacts = impacts.clone()
        impacts[empty] = quantise(max_pool(topk_per_position(open_weights, fallback_k), keep[empty]), scale, mode)
    return impacts


def to_term_dicts(impacts: torch.Tensor, id_to_term: Callable[[list[int]], list[str]]) -> list[dict[str, int]]:
    """(B, V) integer impacts -> one ``{term: impact}`` per row, positive impacts only, terms sorted."""
    out = []
    for row in impacts:
        ids = torch.nonzero(row > 0).flatten().tolist()
        terms = id_to_term(ids)
        vector: dict[str, int] = {}
        for term, value in zip(terms, row[ids].tolist()):
            vector[term] = max(vector.get(term, 0), int(value))  # two ids decoding to one string: keep the max
        out.append(dict(sorted(vector.items())))
    return out


# --------------------------------------------------------------------------- iterative denoising


def neg_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Confidence of a mask prediction, sum p log(p + 1e-10) in the logits' dtype: (..., V) -> (...)."""
    probs = torch.softmax(logits, dim=-1)
    return (probs * torch.log(probs + ENTROPY_EPS)).sum(-1)


def zero_shot_transfer_count(n_masked: int, step: int, steps: int) -> int:
    """Masks unmasked at ``step`` of ``steps`` by the zero-shot reference: timesteps t = linspace(1, 1e-3, S + 1),
    max(1, int(n * (1 - t[step + 1] / t[step]))) (float32), everything left at the last step."""
    if step == steps - 1:
        return n_masked
    t = torch.linspace(1, TIMESTEP_EPS, steps + 1)
    return min(n_masked, max(1, int(n_masked * (1 - t[step + 1] / t[step]))))
