"""Autoregressive family (Qwen2.5 / LLaMA-3 instruct, causal, from transformers): the PromptReps readout.

K = 1 reads the last prompt token (the one that predicts the first answer word). K > 1 decodes greedily with a KV
cache and reads the state that predicts each next token: K sequential steps, where diffusion backbones need one pass.
It fits the same Backbone interface: the mask slots the reader appends are never fed to the model; their count
is K, and the prompt is everything before the first slot (the same index in every left-padded row).
"""

from __future__ import annotations

import inspect

import torch

from diffretriever_pyserini.backbones.base import Backbone, resolve_device, resolve_dtype
from diffretriever_pyserini.backbones.checkpoint import (load_tokenizer, local_folder, merge_lora,
                                                         require_safetensors, token_id)
from diffretriever_pyserini.backbones.families import FAMILY_RECORDS
from diffretriever_pyserini.backbones.layers import position_ids


class AutoregressiveBackbone(Backbone):
    """A causal LM read PromptReps-style; ``mask_token_id`` is only a placeholder for the K answer slots."""

    family = "autoregressive"

    def __init__(self, source: str, device=None, dtype=None, adapter=None, **_):
        from transformers import AutoModelForCausalLM

        self.source = str(source)
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        folder = local_folder(self.source)
        require_safetensors(folder)
        self.tokenizer = load_tokenizer(folder)
        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32, use_safetensors=True,
                                                     attn_implementation="sdpa", trust_remote_code=False)
        self.adapter = str(adapter) if adapter else None
        if self.adapter:
            merge_lora(model, self.adapter, self.dtype)
        self.model = model.to(self.device, self.dtype).eval()
        # transformers renamed the KV-cache argument past_key_values -> cache (5.2x); accept both
        params = inspect.signature(self.model.get_decoder().forward).parameters
        self._cache_kwarg = "cache" if "cache" in params else "past_key_values"

    @property
    def mask_token_id(self) -> int:
        return int(self.tokenizer.eos_token_id)

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def vocab_size(self) -> int:
        return int(self.model.get_output_embeddings().weight.shape[0])

    def end_of_turn_id(self) -> int | None:
        return next((i for i in (token_id(self.tokenizer, t) for t in FAMILY_RECORDS[self.family].end_of_turn)
                     if i), None)

    def stop_token_ids(self) -> frozenset[int]:
        """PromptReps stops at a generated special token or closing quote (all special ids, mask placeholder
        included, and the ids of ``"``)."""
        return self.special_token_ids | frozenset(self._ids('"'))

    def forward_at(self, input_ids, attention_mask, positions):
        start, k = int(positions[0, 0]), positions.shape[1]
        ids = input_ids[:, :start].to(self.device)
        mask = attention_mask[:, :start].to(self.device)
        decoder, head = self.model.get_decoder(), self.model.get_output_embeddings()
        pos = position_ids(mask)
        out = decoder(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True)
        cache = _cache_of(out)
        hidden = out.last_hidden_state[:, -1:]  # (B, 1, D), after the final norm
        states, logits = [], []
        for step in range(k):
            step_logits = head(hidden)
            states.append(hidden)
            logits.append(step_logits)
            if step == k - 1:
                break
            nxt = step_logits.argmax(-1)  # greedy, (B, 1)
            mask = torch.cat([mask, torch.ones_like(nxt)], dim=1)
            pos = pos[:, -1:] + 1
            out = decoder(input_ids=nxt, attention_mask=mask, position_ids=pos, use_cache=True,
                          **{self._cache_kwarg: cache})
            cache, hidden = _cache_of(out), out.last_hidden_state
        return torch.cat(states, dim=1), torch.cat(logits, dim=1)

    def describe(self) -> dict:
        return {**super().describe(), "dtype": str(self.dtype).removeprefix("torch."), "adapter": self.adapter,
                "readout": "PromptReps: greedy decoding with a KV cache, one step per K"}


def _cache_of(output):
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values
