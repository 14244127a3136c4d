"""The K-mask readout as small pure functions (REFERENCE.md sections 3-4).

Shapes: B texts in a batch, L padded length, K masks, H hidden size, V vocabulary size.
Nothing here knows which backbone produced the tensors; :class:`KMaskReader` at the bottom composes the steps
around any :class:`~diffretriever_pyserini.backbones.base.Backbone`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np
import torch

from diffretriever_pyserini.stopwords import ENGLISH_STOPWORDS

IMPACT_SCALE = 100
"""Quantisation of sparse weights to integer impacts: round(w * IMPACT_SCALE) (Lucene reads integers)."""
TOPK_ZERO_SHOT = 128
"""Terms kept per mask position, zero-shot (the reference keeps 256 for fine-tuned models)."""
TOPK_FINETUNED = 256
FALLBACK_TOPK = 10
"""When no content token survives, keep the top FALLBACK_TOPK terms over the whole vocabulary."""

_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")


# --------------------------------------------------------------------------- input layout


def assemble(prefix: Sequence[int], text: Sequence[int], suffix: Sequence[int], mask_id: int, k: int,
             tail: Sequence[int], max_length: int) -> tuple[list[int], list[int], bool]:
    """``prefix + text + suffix + [mask]*k + tail`` truncated to ``max_length`` by cutting TEXT only.

    Returns (ids, mask positions within ids, whether TEXT was truncated). Raises ValueError when the fixed parts
    alone exceed ``max_length``: the prompt, the masks and the tail always survive.
    """
    if k < 1:
        raise ValueError(f"K must be >= 1, got {k}")
    fixed = len(prefix) + len(suffix) + k + len(tail)
    if fixed > max_length:
        raise ValueError(f"prompt, {k} masks and tail take {fixed} tokens, more than max_length={max_length}")
    room = max_length - fixed
    truncated = len(text) > room
    text = list(text[:room])
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
    """L2-normalise the last dimension: (..., H) -> (..., H)."""
    return vectors / vectors.norm(dim=-1, keepdim=True).clamp_min(eps)


def single_vector(dense: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Mean of the kept (non-zeroed) normalised vectors: (B, K, H), (B, K) bool -> (B, H).

    This is the single_dense representation; it is not re-normalised (inner product over the mean).
    """
    weights = keep.to(dense.dtype).unsqueeze(-1)
    return (dense * weights).sum(1) / weights.sum(1).clamp_min(1.0)


# --------------------------------------------------------------------------- sparse


def content_words(text: str) -> list[str]:
    """Lower-cased word tokens of ``text`` minus English stopwords and punctuation, in first-seen order.

    Words are maximal runs of letters/digits (apostrophes inside a word kept, so "don't" stays one word);
    this differs from NLTK's Treebank tokenizer only in how contractions are split.
    """
    seen: dict[str, None] = {}
    for word in _WORD.findall(text.lower()):
        if word not in ENGLISH_STOPWORDS:
            seen.setdefault(word, None)
    return list(seen)


def allowed_token_mask(word_ids: Iterable[Iterable[int]], vocab_size: int, mask_id: int) -> torch.Tensor:
    """Union of the token ids of the content words as a (V,) bool mask; the mask id is never allowed."""
    allowed = torch.zeros(vocab_size, dtype=torch.bool)
    ids = [i for word in word_ids for i in word if 0 <= i < vocab_size]
    if ids:
        allowed[torch.tensor(ids, dtype=torch.long)] = True
    if 0 <= mask_id < vocab_size:
        allowed[mask_id] = False
    return allowed


def term_weights(logits: torch.Tensor) -> torch.Tensor:
    """log(1 + relu(logits)): (B, K, V) -> (B, K, V)."""
    return torch.log1p(torch.relu(logits.float()))


def decoded_stop(argmax_ids: torch.Tensor, special_ids: torch.Tensor) -> torch.Tensor:
    """Positions kept by the decoded-token stop: (B, K) argmax ids, (S,) special ids -> (B, K) bool.

    Every position from the first one (after position 0) whose argmax is a special token onward is dropped;
    position 0 is always kept.
    """
    special = torch.isin(argmax_ids, special_ids)
    special[:, 0] = False
    return torch.cumsum(special.long(), dim=1) == 0


def topk_per_position(weights: torch.Tensor, k: int) -> torch.Tensor:
    """Zero all but the k largest entries along V: (B, K, V) -> (B, K, V)."""
    k = min(k, weights.shape[-1])
    values, index = torch.topk(weights, k, dim=-1, sorted=False)
    out = torch.zeros_like(weights)
    return out.scatter(-1, index, values)


def max_pool(weights: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Element-wise max over the kept K positions: (B, K, V), (B, K) bool -> (B, V)."""
    return (weights * keep.to(weights.dtype).unsqueeze(-1)).amax(dim=1)


def quantise(weights: torch.Tensor, scale: int = IMPACT_SCALE) -> torch.Tensor:
    """Integer impacts round(w * scale) (round half to even): (...) float -> (...) int64."""
    return torch.round(weights * scale).long()


def sparse_vectors(logits: torch.Tensor, allowed: torch.Tensor, keep: torch.Tensor, top_k: int,
                   blocked: torch.Tensor, scale: int = IMPACT_SCALE,
                   fallback_k: int = FALLBACK_TOPK) -> torch.Tensor:
    """Sparse readout of one batch: (B, K, V) logits, (B, V) allowed, (B, K) keep, (V,) blocked -> (B, V) impacts.

    Per mask position: weights log(1+relu(logit)) restricted to the allowed content tokens, top-k; max-pool over
    the kept positions; quantise. A text whose pooled vector is empty falls back to the top ``fallback_k`` terms of
    the unrestricted weights (``blocked`` ids, e.g. the mask and special tokens, excluded).
    """
    weights = term_weights(logits)
    restricted = topk_per_position(weights * allowed.unsqueeze(1).to(weights.dtype), top_k)
    impacts = quantise(max_pool(restricted, keep), scale)
    empty = (impacts > 0).sum(-1) == 0
    if empty.any():
        open_weights = weights[empty] * (~blocked).to(weights.dtype)
        fallback = topk_per_position(open_weights, fallback_k)
        impacts[empty] = quantise(max_pool(fallback, keep[empty]), scale)
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


# --------------------------------------------------------------------------- the readout


@dataclass(frozen=True)
class ReadoutConfig:
    """Everything about the readout that changes results (recorded in every output's metadata.json)."""

    k: int = 4
    max_length: int = 256
    top_k: int = TOPK_ZERO_SHOT
    impact_scale: int = IMPACT_SCALE
    fallback_k: int = FALLBACK_TOPK
    variant: str | None = None
    template: str = "zero_shot"
    decoded_stop: bool = True


@dataclass
class Readout:
    """One batch read out: ``dense`` (B, K, H) normalised with dropped positions zeroed, ``keep`` (B, K),
    ``single`` (B, H) single_dense vectors, ``sparse`` one ``{term: impact}`` per text, and ``truncated`` flags."""

    dense: np.ndarray
    keep: np.ndarray
    single: np.ndarray
    sparse: list[dict[str, int]]
    truncated: list[bool]


class KMaskReader:
    """Runs the K-mask readout of ``backbone`` on one side (passage or query): one forward pass per batch."""

    def __init__(self, backbone, side: str, config: ReadoutConfig):
        from diffretriever_pyserini.prompts import default_variant, load_template

        self.backbone = backbone
        self.side = side
        self.config = config
        template = load_template(config.template)
        self.variant = config.variant or default_variant(config.k)
        self.prompt = template.side(self.variant, side)
        self.prefix, self.suffix, self.tail = backbone.prompt_ids(self.prompt)
        fixed = len(self.prefix) + len(self.suffix) + config.k + len(self.tail)
        if fixed > config.max_length:
            raise ValueError(f"{side} max_length={config.max_length} leaves no room: the prompt, {config.k} masks "
                             f"and tail take {fixed} tokens")
        self.special_ids = torch.tensor(sorted(backbone.special_token_ids), dtype=torch.long)
        self._blocked = torch.zeros(backbone.vocab_size, dtype=torch.bool)
        self._blocked[self.special_ids[self.special_ids < backbone.vocab_size]] = True
        self._blocked[backbone.mask_token_id] = True
        self._blocked[len(backbone.tokenizer):] = True  # logit rows past the tokenizer (padding rows) have no term

    def token_lengths(self, texts: Sequence[str]) -> list[int]:
        """Tokenised TEXT lengths, for sorting a corpus into batches of similar length."""
        return [len(ids) for ids in self.backbone.text_ids(list(texts))]

    def metadata(self) -> dict:
        """How this readout was made: backbone, K, prompt, top-k, quantisation."""
        return {"side": self.side, "k": self.config.k, "max_length": self.config.max_length,
                "top_k": self.config.top_k, "impact_scale": self.config.impact_scale,
                "fallback_k": self.config.fallback_k, "decoded_stop": self.config.decoded_stop,
                "template": self.config.template, "variant": self.variant, "prompt": vars(self.prompt),
                "backbone": self.backbone.describe()}

    def batch_inputs(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[bool]]:
        """Assemble and left-pad a batch: (B, L) input ids, (B, L) key-padding mask, (B, K) mask positions, and
        which texts were truncated."""
        cfg, bb = self.config, self.backbone
        seqs, positions, truncated = [], [], []
        for ids in bb.text_ids(list(texts)):
            seq, pos, cut = assemble(self.prefix, ids, self.suffix, bb.mask_token_id, cfg.k, self.tail,
                                     cfg.max_length)
            seqs.append(seq)
            positions.append(pos)
            truncated.append(cut)
        input_ids, attention_mask = left_pad(seqs, bb.pad_token_id)
        return input_ids, attention_mask, shift_positions(positions, [len(s) for s in seqs], input_ids.shape[1]), \
            truncated

    def allowed(self, texts: Sequence[str], vocab_size: int) -> torch.Tensor:
        """(B, V) content-token masks of the texts (the sparse readout's allowed terms)."""
        bb = self.backbone
        return torch.stack([allowed_token_mask(bb.word_ids(content_words(t)), vocab_size, bb.mask_token_id)
                            for t in texts])

    @torch.inference_mode()
    def read(self, texts: Sequence[str]) -> Readout:
        """Read K dense and K sparse representations of every text in one forward pass."""
        cfg, bb = self.config, self.backbone
        input_ids, attention_mask, pos, truncated = self.batch_inputs(texts)
        hidden, logits = bb.forward_at(input_ids, attention_mask, pos)  # (B, K, H), (B, K, V)
        hidden, logits = hidden.float().cpu(), logits.float().cpu()
        if cfg.decoded_stop:
            keep = decoded_stop(logits.argmax(-1), self.special_ids)
        else:
            keep = torch.ones(logits.shape[:2], dtype=torch.bool)
        dense = normalise(hidden) * keep.unsqueeze(-1)
        allowed = self.allowed(texts, logits.shape[-1])
        impacts = sparse_vectors(logits, allowed, keep, cfg.top_k, self._blocked, cfg.impact_scale, cfg.fallback_k)
        return Readout(dense=dense.numpy(), keep=keep.numpy(), single=single_vector(dense, keep).numpy(),
                       sparse=to_term_dicts(impacts, bb.id_to_term), truncated=truncated)
