"""LLaDA (GSAI-ML/LLaDA-8B-*): LLaMA-style blocks with non-causal attention, written natively with LLaDA's own
parameter names so that its checkpoints and LoRA adapters load unchanged.

Why: the hub code needs ``trust_remote_code``, breaks on new transformers (``all_tied_weights_keys``), and old
versions ignored the padding mask; here the key-padding mask is always honoured.
Name trap: per block ``ff_proj`` is the GATE projection (SiLU applied), ``up_proj`` the up projection and
``ff_out`` the DOWN projection; the top-level ``model.transformer.ff_out`` is the LM head.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from diffretriever_pyserini.backbones.layers import (RMSNorm, apply_rope, attend, attention_mask, position_ids,
                                                     refuse_unsupported, rope_cos_sin)

SUPPORTED_FLAGS = {  # config.json flag -> values this file implements (LLaDA-8B's own values)
    "rope": {True},
    "alibi": {False},
    "block_type": {"llama"},
    "layer_norm_type": {"rms"},
    "layer_norm_with_affine": {True},
    "bias_for_layer_norm": {False, None},
    "input_emb_norm": {False},
    "scale_logits": {False},
    "activation_type": {"silu"},
    "attention_layer_norm": {False},
    "clip_qkv": {None},
    "multi_query_attention": {None, False},
    "include_qkv_bias": {False, None},
}


@dataclass(frozen=True)
class LLaDAConfig:
    embedding_size: int = 126464
    d_model: int = 4096
    n_layers: int = 32
    n_heads: int = 32
    n_kv_heads: int = 32
    mlp_hidden_size: int = 12288
    rms_norm_eps: float = 1e-5
    rope_theta: float = 500_000.0
    include_bias: bool = False
    weight_tying: bool = False
    mask_token_id: int | None = 126336

    @classmethod
    def from_dict(cls, d: dict) -> "LLaDAConfig":
        """The fields used here from a LLaDA ``config.json``; flags this file does not implement are refused."""
        refuse_unsupported(d, SUPPORTED_FLAGS, "LLaDA")
        values = {k: d[k] for k in cls.__dataclass_fields__ if k in d and d[k] is not None}
        if "embedding_size" not in values and "vocab_size" in d:
            values["embedding_size"] = d["vocab_size"]
        if "n_kv_heads" not in values:
            values["n_kv_heads"] = values.get("n_heads", cls.n_heads)
        return cls(**values)

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads


class LLaDABlock(nn.Module):
    def __init__(self, c: LLaDAConfig):
        super().__init__()
        self.c = c
        d, bias = c.head_dim, c.include_bias
        self.attn_norm = RMSNorm(c.d_model, c.rms_norm_eps)
        self.q_proj = nn.Linear(c.d_model, c.n_heads * d, bias=bias)
        self.k_proj = nn.Linear(c.d_model, c.n_kv_heads * d, bias=bias)
        self.v_proj = nn.Linear(c.d_model, c.n_kv_heads * d, bias=bias)
        self.attn_out = nn.Linear(c.n_heads * d, c.d_model, bias=bias)
        self.ff_norm = RMSNorm(c.d_model, c.rms_norm_eps)
        self.ff_proj = nn.Linear(c.d_model, c.mlp_hidden_size, bias=bias)  # gate
        self.up_proj = nn.Linear(c.d_model, c.mlp_hidden_size, bias=bias)
        self.ff_out = nn.Linear(c.mlp_hidden_size, c.d_model, bias=bias)  # down

    def forward(self, x, cos, sin, mask):
        B, L, _ = x.shape
        h = self.attn_norm(x)
        q = self.q_proj(h).view(B, L, -1, self.c.head_dim).transpose(1, 2)
        k = self.k_proj(h).view(B, L, -1, self.c.head_dim).transpose(1, 2)
        v = self.v_proj(h).view(B, L, -1, self.c.head_dim).transpose(1, 2)
        att = attend(apply_rope(q, cos, sin), apply_rope(k, cos, sin), v, mask)
        x = x + self.attn_out(att.transpose(1, 2).reshape(B, L, -1))
        h = self.ff_norm(x)
        return x + self.ff_out(nn.functional.silu(self.ff_proj(h)) * self.up_proj(h))


class LLaDAModel(nn.Module):
    """``model.transformer.{wte, blocks, ln_f, ff_out}``, bidirectional."""

    def __init__(self, c: LLaDAConfig, causal: bool = False):
        super().__init__()
        self.config = c
        self.causal = causal
        self.model = nn.Module()
        self.model.transformer = nn.ModuleDict({
            "wte": nn.Embedding(c.embedding_size, c.d_model),
            "blocks": nn.ModuleList(LLaDABlock(c) for _ in range(c.n_layers)),
            "ln_f": RMSNorm(c.d_model, c.rms_norm_eps),
        })
        if not c.weight_tying:
            self.model.transformer["ff_out"] = nn.Linear(c.d_model, c.embedding_size, bias=c.include_bias)

    def hidden_states(self, input_ids: torch.Tensor, key_padding: torch.Tensor) -> torch.Tensor:
        """(B, L) ids, (B, L) key-padding mask -> (B, L, D) last-layer states after ``ln_f``."""
        t = self.model.transformer
        x = t["wte"](input_ids)
        cos, sin = rope_cos_sin(position_ids(key_padding), self.config.head_dim, self.config.rope_theta, x.dtype)
        mask = attention_mask(key_padding, self.causal)
        for block in t["blocks"]:
            x = block(x, cos, sin, mask)
        return t["ln_f"](x)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        t = self.model.transformer
        if "ff_out" in t:
            return t["ff_out"](hidden)
        return hidden @ t["wte"].weight.T
