"""One record per backbone family: everything the package needs to know about a family, in one place.

A family's record names its loader (the backbone class, imported when first used), the ``model_type`` values of a
checkpoint's ``config.json`` and of a fine-tuned folder's ``retriever_config.json`` that belong to it, the modules
that get LoRA adapters, the tokens that close an assistant turn (the prompt tail) and the training recipe used by
default. Adding a family is one backbone file and one :class:`Family` entry in :data:`FAMILY_RECORDS`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

LLADA_EOT_ID = 126348
"""LLaDA-8B's ``<|eot_id|>``: the authors' code falls back to this id for the tail when a tokenizer lacks the token
(the zero-shot LLaDA tail and every fine-tuned tail)."""
END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>")
"""The turn-closing tokens the authors' fine-tuned tail looks for, in this order (Qwen / Dream, then Llama / LLaDA)."""


@dataclass(frozen=True)
class Family:
    """A backbone family. ``backbone``: ``module:Class`` of its :class:`~.base.Backbone`; ``model_types``:
    config.json ``model_type`` values (lower-cased); ``retriever_model_types``: retriever_config.json ``model_type``
    values; ``lora_targets``: module names that get LoRA adapters; ``end_of_turn``: the tokens closing a turn, tried
    in order; ``end_of_turn_fallback``: the id used when the tokenizer has none; ``recipe``: the default training
    recipe."""

    name: str
    backbone: str
    model_types: tuple[str, ...]
    retriever_model_types: tuple[str, ...]
    lora_targets: tuple[str, ...]
    end_of_turn: tuple[str, ...] = ()
    end_of_turn_fallback: int | None = None
    recipe: str = "paper"

    def backbone_class(self) -> type:
        module, _, cls = self.backbone.partition(":")
        return getattr(importlib.import_module(module), cls)


_ATTENTION_MLP = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

FAMILY_RECORDS: dict[str, Family] = {f.name: f for f in (
    Family("masked_lm", "diffretriever_pyserini.backbones.masked_lm:MaskedLMBackbone",
           ("bert", "roberta", "xlm-roberta", "distilbert", "electra", "deberta-v2", "modernbert"), ("masked_lm",),
           ("query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"),
           recipe="cpu-demo"),
    Family("dream", "diffretriever_pyserini.backbones.native:DreamBackbone", ("dream",), ("dream",), _ATTENTION_MLP,
           end_of_turn=("<|im_end|>",)),
    Family("llada", "diffretriever_pyserini.backbones.native:LLaDABackbone", ("llada",),
           ("llada", "llada1", "llada15"), ("q_proj", "k_proj", "v_proj", "attn_out", "ff_proj", "up_proj", "ff_out"),
           end_of_turn=("<|eot_id|>",), end_of_turn_fallback=LLADA_EOT_ID),
    Family("autoregressive", "diffretriever_pyserini.backbones.autoregressive:AutoregressiveBackbone",
           ("qwen2", "llama"), ("autoregressive",), _ATTENTION_MLP, end_of_turn=END_OF_TURN_TOKENS),
)}


def get_family(name: str) -> Family:
    """The record of family ``name``; an unknown one raises ValueError naming the supported ones and this file."""
    if name not in FAMILY_RECORDS:
        raise ValueError(f"unknown backbone family {name!r}; supported: {sorted(FAMILY_RECORDS)} (add a record to "
                         "diffretriever_pyserini/backbones/families.py)")
    return FAMILY_RECORDS[name]
