"""Dream (Dream-org/Dream-v0-*-7B): the Qwen2.5 architecture with non-causal attention, written natively.

Why: the hub code needs ``trust_remote_code`` and breaks on current transformers (rope-init KeyError). This file
loads Dream checkpoints unchanged (Qwen2 parameter names, sharded safetensors, ``model_type: Dream``) on the
transformers Pyserini installs. RoPE tables are not in the checkpoint; they are recomputed at every call.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from diffretriever_pyserini.backbones.layers import (RMSNorm, apply_rope, attend, attention_mask, position_ids,
                                                     refuse_unsupported, rope_cos_sin)

SUPPORTED_FLAGS = {  # config.json flag -> values this file implements
    "rope_scaling": {None},
    "use_sliding_window": {False, None},
    "hidden_act": {"silu"},
    "attention_bias": {True, None},
}


@dataclass(frozen=True)
class DreamConfig:
    vocab_size: int = 152064
    hidden_size: int = 3584
    intermediate_size: int = 18944
    num_hidden_layers: int = 28
    num_attention_heads: int = 28
    num_key_value_heads: int = 4
    rms_norm_eps: float = 1e-6
    rope_theta: float = 1_000_000.0
    tie_word_embeddings: bool = False
    mask_token_id: int | None = 151666

    @classmethod
    def from_dict(cls, d: dict) -> "DreamConfig":
        """The fields used here from a Dream ``config.json``; flags this file does not implement are refused."""
        refuse_unsupported(d, SUPPORTED_FLAGS, "Dream")
        rope = d.get("rope_parameters") or {}
        if rope.get("rope_type", "default") != "default":
            raise ValueError(f"config.json of this Dream checkpoint sets rope_parameters.rope_type="
                             f"{rope['rope_type']!r}; only the default rotary embedding is implemented")
        theta = d.get("rope_theta", rope.get("rope_theta", cls.rope_theta))
        fields = {k: d[k] for k in cls.__dataclass_fields__ if k in d and k != "rope_theta"}
        return cls(**fields, rope_theta=float(theta))

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


class DreamAttention(nn.Module):
    def __init__(self, c: DreamConfig):
        super().__init__()
        self.c = c
        d = c.head_dim
        self.q_proj = nn.Linear(c.hidden_size, c.num_attention_heads * d, bias=True)
        self.k_proj = nn.Linear(c.hidden_size, c.num_key_value_heads * d, bias=True)
        self.v_proj = nn.Linear(c.hidden_size, c.num_key_value_heads * d, bias=True)
        self.o_proj = nn.Linear(c.num_attention_heads * d, c.hidden_size, bias=False)

    def forward(self, x, cos, sin, mask):
        B, L, _ = x.shape
        d = self.c.head_dim
        q = self.q_proj(x).view(B, L, -1, d).transpose(1, 2)
        k = self.k_proj(x).view(B, L, -1, d).transpose(1, 2)
        v = self.v_proj(x).view(B, L, -1, d).transpose(1, 2)
        out = attend(apply_rope(q, cos, sin), apply_rope(k, cos, sin), v, mask)
        return self.o_proj(out.transpose(1, 2).reshape(B, L, -1))


class DreamMLP(nn.Module):
    def __init__(self, c: DreamConfig):
        super().__init__()
        self.gate_proj = nn.Linear(c.hidden_size, c.intermediate_size, bias=False)
        self.up_proj = nn.Linear(c.hidden_size, c.intermediate_size, bias=False)
        self.down_proj = nn.Linear(c.intermediate_size, c.hidden_size, bias=False)

    def forward(self, x):
        return self.down_proj(nn.functional.silu(self.gate_proj(x)) * self.up_proj(x))


class DreamBlock(nn.Module):
    def __init__(self, c: DreamConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.self_attn = DreamAttention(c)
        self.post_attention_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.mlp = DreamMLP(c)

    def forward(self, x, cos, sin, mask):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class DreamDecoder(nn.Module):
    """The ``model.`` part of the checkpoint: embeddings, blocks, final norm."""

    def __init__(self, c: DreamConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(c.vocab_size, c.hidden_size)
        self.layers = nn.ModuleList(DreamBlock(c) for _ in range(c.num_hidden_layers))
        self.norm = RMSNorm(c.hidden_size, c.rms_norm_eps)


class DreamModel(nn.Module):
    """Dream with bidirectional attention (``causal=True`` gives the same weights as a causal LM, for benchmarks)."""

    def __init__(self, c: DreamConfig, causal: bool = False):
        super().__init__()
        self.config = c
        self.causal = causal
        self.model = DreamDecoder(c)
        self.lm_head = nn.Linear(c.hidden_size, c.vocab_size, bias=False)

    def hidden_states(self, input_ids: torch.Tensor, key_padding: torch.Tensor) -> torch.Tensor:
        """(B, L) ids, (B, L) key-padding mask -> (B, L, D) last-layer states after the final RMSNorm."""
        x = self.model.embed_tokens(input_ids)
        cos, sin = rope_cos_sin(position_ids(key_padding), self.config.head_dim, self.config.rope_theta, x.dtype)
        mask = attention_mask(key_padding, self.causal)
        for block in self.model.layers:
            x = block(x, cos, sin, mask)
        return self.model.norm(x)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.lm_head(hidden)
