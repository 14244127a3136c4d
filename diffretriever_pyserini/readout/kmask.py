"""The readout object: :class:`ReadoutConfig` (every choice that changes results, resolved per backbone family)
and :class:`KMaskReader`, which runs the pure functions of :mod:`~diffretriever_pyserini.readout.representation`
around a backbone's forward pass, in one pass or over denoising steps (arXiv 2605.07210; the authors' released code,
``scripts/encode.py``)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
import torch

from diffretriever_pyserini.readout.limits import MAX_DENOISE_STEPS, MAX_K
from diffretriever_pyserini.readout.representation import (DEFAULT_MAX_LENGTH, DENSE_SOURCES, IMPACT_SCALE,
                                                           QUANTISATIONS, STOP_RULES, TOPK_AUTOREGRESSIVE,
                                                           TOPK_FINETUNED, TOPK_ZERO_SHOT, allowed_token_mask, assemble,
                                                           decoded_stop, generated_stop, left_pad, neg_entropy,
                                                           normalise, promptreps_fallback, shift_positions,
                                                           single_vector, sparse_impacts, term_weights, to_term_dicts,
                                                           topk_per_position, zero_shot_transfer_count)


@dataclass(frozen=True)
class ReadoutConfig:
    """Everything about the readout that changes results (recorded in every output's metadata.json).

    ``None`` fields are resolved per backbone family and zero-shot / fine-tuned by :meth:`resolve`.
    """

    k: int = 4
    max_length: int = DEFAULT_MAX_LENGTH
    text_max_length: int | None = None
    top_k: int | None = None
    quantisation: str | None = None
    stop: str | None = None
    fallback_k: int = 0
    denoise_steps: int = 1
    dense_source: str = "hidden"
    finetuned: bool = False
    impact_scale: int = IMPACT_SCALE
    variant: str | None = None
    template: str = "zero_shot"
    prefix_ids: tuple[int, ...] | None = None
    suffix_ids: tuple[int, ...] | None = None
    tail_ids: tuple[int, ...] | None = None

    def resolve(self, family: str) -> "ReadoutConfig":
        """Fill the family- and regime-dependent defaults (see the module table); check every choice."""
        autoregressive = family == "autoregressive"
        top_k = self.top_k or (TOPK_FINETUNED if self.finetuned else
                               TOPK_AUTOREGRESSIVE if autoregressive else TOPK_ZERO_SHOT)
        quantisation = self.quantisation or ("round" if self.finetuned else "truncate")
        stop = self.stop or ("none" if self.finetuned else "generated" if autoregressive else "decoded")
        for name, value, allowed in (("quantisation", quantisation, QUANTISATIONS), ("stop", stop, STOP_RULES),
                                     ("dense_source", self.dense_source, DENSE_SOURCES)):
            if value not in allowed:
                raise ValueError(f"readout {name} must be one of {allowed}, got {value!r}")
        if not 1 <= self.k <= MAX_K:
            raise ValueError(f"k must be between 1 and {MAX_K}, got {self.k}")
        if not 1 <= self.denoise_steps <= MAX_DENOISE_STEPS:
            raise ValueError(f"denoise_steps must be between 1 and {MAX_DENOISE_STEPS}, got {self.denoise_steps}")
        if autoregressive and self.denoise_steps > 1:
            raise ValueError("denoise_steps > 1 needs a mask-filling (diffusion) backbone; the autoregressive "
                             "readout decodes its K positions one by one")
        if top_k < 1 or self.fallback_k < 0 or self.max_length < 1:
            raise ValueError(f"top_k and max_length must be >= 1 and fallback_k >= 0 (got {top_k}, "
                             f"{self.max_length}, {self.fallback_k})")
        return replace(self, top_k=top_k, quantisation=quantisation, stop=stop)


@dataclass
class Readout:
    """One batch read out: ``dense`` (B, K, H) normalised with dropped positions zeroed, ``keep`` (B, K),
    ``single`` (B, H) single_dense vectors, ``sparse`` one ``{term: impact}`` per text, ``truncated`` flags and
    the ``decoded`` (B, K) token ids the stop rule looked at."""

    dense: np.ndarray
    keep: np.ndarray
    single: np.ndarray
    sparse: list[dict[str, int]]
    truncated: list[bool]
    decoded: np.ndarray


class KMaskReader:
    """Runs the K-mask readout of ``backbone`` on one side (passage or query): one forward pass per batch, or
    ``denoise_steps`` passes unmasking the K positions a few at a time."""

    def __init__(self, backbone, side: str, config: ReadoutConfig, finetuned: dict | None = None):
        from diffretriever_pyserini.prompts import default_variant, load_template

        self.backbone = backbone
        self.finetuned = finetuned
        self.side = side
        self.config = config = config.resolve(backbone.family)
        self.variant = config.variant or default_variant(config.k)
        self.prompt = load_template(config.template).side(self.variant, side, config.k)
        prefix, suffix, tail = backbone.prompt_ids(self.prompt)
        self.prefix = list(config.prefix_ids) if config.prefix_ids is not None else prefix
        self.suffix = list(config.suffix_ids) if config.suffix_ids is not None else suffix
        self.tail = list(config.tail_ids) if config.tail_ids is not None else tail
        if self.text_budget < 1:
            raise ValueError(f"{side} max_length={config.max_length} leaves no room for text: the prompt takes "
                             f"{len(self.prefix) + len(self.suffix)} tokens (the {config.k} masks and the tail come "
                             "on top of max_length)")
        self.stop_ids = torch.tensor(sorted(backbone.stop_token_ids()), dtype=torch.long)
        self._blocked = torch.zeros(backbone.vocab_size, dtype=torch.bool)
        specials = torch.tensor(sorted(backbone.special_token_ids), dtype=torch.long)
        self._blocked[specials[specials < backbone.vocab_size]] = True
        self._blocked[backbone.mask_token_id] = True
        self._blocked[len(backbone.tokenizer):] = True  # logit rows past the tokenizer (padding rows) have no term

    @property
    def dimension(self) -> int:
        """Width of the dense vectors this reader writes: H, or V when they come from the LM-head output."""
        if self.config.dense_source == "lm-head-output":
            return self.backbone.vocab_size
        return self.backbone.hidden_size

    # ----------------------------------------------------------------- rules derived from the regime

    @property
    def text_budget(self) -> int:
        """Text tokens kept: ``text_max_length`` when set (training), else ``max_length`` minus the prompt's
        prefix and suffix (the K masks and the tail come on top, as in the reference)."""
        c = self.config
        if c.text_max_length is not None:
            return c.text_max_length
        return c.max_length - len(self.prefix) - len(self.suffix)

    @property
    def weight_formula(self) -> str:
        return "log1p" if self.config.finetuned else "log(1+x)"

    @property
    def steps(self) -> int:
        return self.config.denoise_steps

    def token_lengths(self, texts: Sequence[str]) -> list[int]:
        """Tokenised TEXT lengths, for sorting a corpus into batches of similar length."""
        return [len(ids) for ids in self.backbone.text_ids(list(texts))]

    def metadata(self) -> dict:
        """How this readout was made: backbone, K, prompt ids, every rule of the module table."""
        c = self.config
        return {"side": self.side, "k": c.k, "max_length": c.max_length, "text_max_length": c.text_max_length,
                "text_budget": self.text_budget, "regime": "fine-tuned" if c.finetuned else "zero-shot",
                "top_k": c.top_k, "impact_scale": c.impact_scale, "quantisation": c.quantisation, "stop": c.stop,
                "term_weight": self.weight_formula,
                "term_weight_dtype": "model" if c.finetuned else "float32",
                "multi_step_sparse": "max then top-k" if c.finetuned else "top-k then max",
                "fallback_k": c.fallback_k, "denoise_steps": c.denoise_steps, "dense_source": c.dense_source,
                "template": c.template, "variant": self.variant, "prompt": vars(self.prompt),
                "prompt_ids": {"prefix": self.prefix, "suffix": self.suffix, "tail": self.tail},
                "finetuned": self.finetuned, "backbone": self.backbone.describe()}

    def batch_inputs(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[bool]]:
        """Assemble and left-pad a batch: (B, L) input ids, (B, L) key-padding mask, (B, K) mask positions, and
        which texts were truncated."""
        bb, k = self.backbone, self.config.k
        seqs, positions, truncated = [], [], []
        for ids in bb.text_ids(list(texts)):
            seq, pos, cut = assemble(self.prefix, ids, self.suffix, bb.mask_token_id, k, self.tail, self.text_budget)
            seqs.append(seq)
            positions.append(pos)
            truncated.append(cut)
        input_ids, attention_mask = left_pad(seqs, bb.pad_token_id)
        return input_ids, attention_mask, shift_positions(positions, [len(s) for s in seqs], input_ids.shape[1]), \
            truncated

    def allowed(self, texts: Sequence[str], vocab_size: int) -> torch.Tensor:
        """(B, V) content-token masks of the texts (the sparse readout's allowed terms)."""
        from diffretriever_pyserini.readout.lexical import content_words

        bb = self.backbone
        return torch.stack([allowed_token_mask(bb.word_ids(content_words(t)), vocab_size, bb.mask_token_id)
                            for t in texts])

    # ----------------------------------------------------------------- one pass

    def _keep(self, logits: torch.Tensor, decoded: torch.Tensor) -> torch.Tensor:
        if self.config.stop == "decoded":
            return decoded_stop(decoded, self.stop_ids)
        if self.config.stop == "generated":
            return generated_stop(logits.argmax(-1).cpu(), self.stop_ids)
        return torch.ones(decoded.shape, dtype=torch.bool)

    def _decoded(self, logits: torch.Tensor) -> torch.Tensor:
        """Greedy predictions at the mask positions, argmax of the softmax in the model's dtype as the reference
        samples them; a row with a non-finite logit keeps its masks (the reference skips it)."""
        decoded = torch.softmax(logits, dim=-1).argmax(-1).cpu()
        finite = torch.isfinite(logits).flatten(1).all(1).cpu()
        return torch.where(finite.unsqueeze(1), decoded, torch.full_like(decoded, self.backbone.mask_token_id))

    def _weights(self, logits: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        """(B, K, V) content-restricted term weights: float32 zero-shot, the model's dtype fine-tuned."""
        logits = logits if self.config.finetuned else logits.float()
        return term_weights(logits, self.weight_formula) * allowed.unsqueeze(1).to(logits.device, logits.dtype)

    def _impacts(self, weights: torch.Tensor, keep: torch.Tensor, pool_first: bool = False) -> torch.Tensor:
        c = self.config
        return sparse_impacts(weights, keep.to(weights.device), c.top_k, c.quantisation, c.impact_scale, pool_first)

    def _finish(self, dense_states: torch.Tensor, keep: torch.Tensor, decoded: torch.Tensor, truncated: list[bool],
                impacts: torch.Tensor) -> Readout:
        dense = normalise(dense_states.float().cpu()) * keep.unsqueeze(-1)
        return Readout(dense=dense.numpy(), keep=keep.numpy(), single=single_vector(dense, keep).numpy(),
                       sparse=to_term_dicts(impacts.cpu(), self.backbone.id_to_term), truncated=truncated,
                       decoded=decoded.numpy())

    def forward(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[bool]]:
        """The one forward pass at the K positions (differentiable; :meth:`read` and the trainer both use it):
        (B, K, H) hidden states, (B, K, V) logits, (B, V) allowed-term mask, truncation flags."""
        input_ids, attention_mask, pos, truncated = self.batch_inputs(texts)
        hidden, logits = self.backbone.forward_at(input_ids, attention_mask, pos)
        return hidden, logits, self.allowed(texts, logits.shape[-1]), truncated

    @torch.inference_mode()
    def read(self, texts: Sequence[str]) -> Readout:
        """Read K dense and K sparse representations of every text: one forward pass (or ``denoise_steps``)."""
        if self.steps > 1:
            return self._read_denoised(texts)
        hidden, logits, allowed, truncated = self.forward(texts)
        decoded = self._decoded(logits)
        keep = self._keep(logits, decoded)
        weights = self._weights(logits, allowed)
        impacts = self._impacts(weights, keep)
        c = self.config
        if c.fallback_k:
            impacts = promptreps_fallback(impacts, term_weights(logits.float()), keep.to(logits.device),
                                          self._blocked.to(logits.device), c.fallback_k, c.impact_scale,
                                          c.quantisation)
        return self._finish(logits if c.dense_source == "lm-head-output" else hidden, keep, decoded, truncated,
                            impacts)

    # ----------------------------------------------------------------- several passes

    def _transfer(self, logits: torch.Tensor, masked: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Which still-masked positions are unmasked at ``step`` (B, K) and their predicted tokens (B, K).

        Zero-shot (the reference's zero-shot retrievers): per text, the ``zero_shot_transfer_count`` most confident
        masks (negative entropy in the model's dtype); a text with a non-finite logit waits. Fine-tuned (its
        ``trained_diff`` encode): the ``max(1, K // S)`` most confident by float32 negative entropy, every remaining
        mask at the last step.
        """
        steps, k = self.steps, masked.shape[1]
        if self.config.finetuned:
            x0 = torch.softmax(logits.float(), -1).argmax(-1).cpu()
            if step == steps - 1:
                return masked.clone(), x0
            conf = neg_entropy(logits.float()).cpu().masked_fill(~masked, -float("inf"))
            top = conf.topk(min(max(1, k // steps), k), dim=-1).indices
            return torch.zeros_like(masked).scatter(1, top, True) & masked, x0
        x0 = torch.softmax(logits, -1).argmax(-1).cpu()
        conf = neg_entropy(logits).float().cpu()
        finite = torch.isfinite(logits).all(-1).cpu()
        transfer = torch.zeros_like(masked)
        for row in range(masked.shape[0]):
            where = torch.nonzero(masked[row]).flatten()
            if where.numel() == 0 or not bool(finite[row, where].all()):
                continue
            n = zero_shot_transfer_count(int(where.numel()), step, steps)
            transfer[row, where[torch.topk(conf[row, where], n).indices]] = True
        return transfer, x0

    @torch.inference_mode()
    def _read_denoised(self, texts: Sequence[str]) -> Readout:
        """The reference's ``--num_denoise_steps S``: each pass unmasks some of the K positions (most confident
        first) and a position is read (hidden state, logits) from the pass that unmasks it; whatever no pass
        unmasked is read from the last. The stop rule looks at the finally decoded tokens."""
        c, bb = self.config, self.backbone
        ids, attention_mask, pos, truncated = self.batch_inputs(texts)
        b, k = pos.shape
        saved = torch.zeros((b, k), dtype=torch.bool)
        dense_states = weights = allowed = None
        for step in range(self.steps):
            hidden, logits = bb.forward_at(ids, attention_mask, pos)
            states = (logits if c.dense_source == "lm-head-output" else hidden).float().cpu()
            if allowed is None:
                allowed = self.allowed(texts, logits.shape[-1])
                dense_states = torch.zeros(states.shape, dtype=torch.float32)
                weights = torch.zeros((b, 1 if c.finetuned else k, logits.shape[-1]), device=logits.device)
            transfer, x0 = self._transfer(logits, ids.gather(1, pos) == bb.mask_token_id, step)
            to_save = ~saved if step == self.steps - 1 else transfer & ~saved
            dense_states[to_save] = states[to_save]
            on_device = to_save.to(logits.device).unsqueeze(-1)
            if c.finetuned:  # unrestricted log1p(relu) in the model's dtype, max over the positions read now
                step_weights = term_weights(logits, "log1p").masked_fill(~on_device, -float("inf"))
                weights = torch.maximum(weights, step_weights.amax(1, keepdim=True).float())
            else:
                step_weights = topk_per_position(self._weights(logits, allowed), c.top_k)
                weights = torch.where(on_device, step_weights, weights)
            saved |= to_save
            ids = ids.scatter(1, pos, torch.where(transfer, x0, ids.gather(1, pos)))
        decoded = ids.gather(1, pos)
        keep = decoded_stop(decoded, self.stop_ids) if c.stop == "decoded" else torch.ones((b, k), dtype=torch.bool)
        if c.finetuned:  # the pooled vector restricted to content tokens, then its top-k
            impacts = self._impacts(weights * allowed.unsqueeze(1).to(weights.device),
                                    torch.ones((b, 1), dtype=torch.bool), pool_first=True)
        else:
            impacts = self._impacts(weights, keep)
        return self._finish(dense_states, keep, decoded, truncated, impacts)
