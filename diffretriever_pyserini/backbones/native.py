"""Backbone glue for the native diffusion families (Dream, LLaDA): load a hub-layout folder, read at masks.

The model is built on the meta device and the checkpoint's safetensors assigned in (strict: a missing or unexpected
parameter is an error naming it), an optional PEFT LoRA adapter merged, then moved to the device and dtype.
"""

from __future__ import annotations

import torch

from diffretriever_pyserini.backbones.base import Backbone, resolve_device, resolve_dtype
from diffretriever_pyserini.backbones.checkpoint import (load_safetensors, load_tokenizer, local_folder, merge_lora,
                                                         read_config, token_id)
from diffretriever_pyserini.backbones.dream import DreamConfig, DreamModel
from diffretriever_pyserini.backbones.families import FAMILY_RECORDS
from diffretriever_pyserini.backbones.llada import LLaDAConfig, LLaDAModel


class NativeDiffusionBackbone(Backbone):
    """Shared loading and readout of Dream and LLaDA; subclasses name the model class and special tokens."""

    model_class = None
    config_class = None
    mask_token = ""
    end_of_turn_token = ""
    tied_names: tuple[str, str] | None = None  # (output weight, embedding weight) when weights are tied

    def __init__(self, source: str, device=None, dtype=None, adapter=None, shifted_logits: bool = False,
                 causal: bool = False, **_):
        self.source = str(source)
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        folder = local_folder(self.source)
        self.config = self.config_class.from_dict(read_config(folder))
        self.tokenizer = load_tokenizer(folder)
        self.shifted_logits = shifted_logits
        self.adapter = str(adapter) if adapter else None
        with torch.device("meta"):
            model = self.model_class(self.config, causal=causal)
        state = load_safetensors(folder)
        if self.tied_names and self._is_tied() and self.tied_names[0] not in state:
            state[self.tied_names[0]] = state[self.tied_names[1]]
        missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
        if missing or unexpected:
            raise ValueError(f"{folder}: checkpoint does not match the {self.family} architecture; "
                             f"missing {missing[:5]}, unexpected {unexpected[:5]}")
        if self.adapter:
            merge_lora(model, self.adapter, self.dtype)
        self.model = model.to(self.device, self.dtype).eval()

    def _is_tied(self) -> bool:
        return False

    @property
    def mask_token_id(self) -> int:
        configured = getattr(self.config, "mask_token_id", None)
        if configured is not None:
            return int(configured)
        tid = token_id(self.tokenizer, self.mask_token)
        if tid is None:
            raise ValueError(f"{self.source}: no mask_token_id in config.json and no {self.mask_token} token")
        return tid

    def end_of_turn_id(self) -> int | None:
        return token_id(self.tokenizer, self.end_of_turn_token)

    def forward_at(self, input_ids, attention_mask, positions):
        from diffretriever_pyserini.readout.representation import gather_positions

        ids, mask, pos = input_ids.to(self.device), attention_mask.to(self.device), positions.to(self.device)
        hidden = self.model.hidden_states(ids, mask)  # (B, L, D)
        at_masks = gather_positions(hidden, pos)  # (B, K, D)
        # Dream's own sampler reads position i's token from the logits of i - 1; the retriever reads unshifted
        logit_states = gather_positions(hidden, pos - 1) if self.shifted_logits else at_masks
        return at_masks, self.model.logits(logit_states)

    def describe(self) -> dict:
        return {**super().describe(), "dtype": str(self.dtype).removeprefix("torch."), "adapter": self.adapter,
                "shifted_logits": self.shifted_logits}


class DreamBackbone(NativeDiffusionBackbone):
    family = "dream"
    config_class, model_class = DreamConfig, DreamModel
    mask_token = "<|mask|>"
    end_of_turn_token = FAMILY_RECORDS["dream"].end_of_turn[0]
    tied_names = ("lm_head.weight", "model.embed_tokens.weight")

    def _is_tied(self) -> bool:
        return self.config.tie_word_embeddings

    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size

    @property
    def hidden_size(self) -> int:
        return self.config.hidden_size


class LLaDABackbone(NativeDiffusionBackbone):
    family = "llada"
    config_class, model_class = LLaDAConfig, LLaDAModel
    mask_token = "<|mdm_mask|>"
    end_of_turn_token = FAMILY_RECORDS["llada"].end_of_turn[0]
    end_of_turn_fallback = FAMILY_RECORDS["llada"].end_of_turn_fallback
    """The reference's zero-shot LLaDA tail uses LLaDA-8B's ``<|eot_id|>`` id when the tokenizer lacks the token."""

    def end_of_turn_id(self) -> int | None:
        eot = super().end_of_turn_id()
        if eot is None and self.end_of_turn_fallback < self.vocab_size:
            return self.end_of_turn_fallback
        return eot

    @property
    def vocab_size(self) -> int:
        return self.config.embedding_size

    @property
    def hidden_size(self) -> int:
        return self.config.d_model
