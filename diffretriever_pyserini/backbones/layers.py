"""Transformer pieces shared by the native Dream and LLaDA backbones (plain PyTorch, no remote code).

Shapes: B batch, L length, h heads, g key/value heads, d head size, D model size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) * weight, computed in float32."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


def rope_cos_sin(position_ids: torch.Tensor, head_dim: int, theta: float, dtype: torch.dtype):
    """(B, L) positions -> cos, sin of shape (B, 1, L, d), recomputed at every call (never stored in checkpoints)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=position_ids.device, dtype=torch.float32)
                                / head_dim))
    freqs = position_ids.float().unsqueeze(-1) * inv_freq  # (B, L, d/2)
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos().to(dtype).unsqueeze(1), emb.sin().to(dtype).unsqueeze(1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding, half-split convention (Qwen2, LLaMA, OLMo): (B, h, L, d) -> (B, h, L, d)."""
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


def attention_mask(key_padding: torch.Tensor, causal: bool) -> torch.Tensor | None:
    """(B, L) key-padding mask (1 = real) -> (B, 1, L, L) boolean mask (True = may attend), or None.

    Bidirectional unless ``causal``. Every position may attend to itself, so padding rows never see an all-masked
    row (which would give NaN that then leaks through the values). A bidirectional batch without padding needs no
    mask at all (None), which lets SDPA use its flash kernel.
    """
    if not causal and bool(key_padding.all()):
        return None
    length = key_padding.shape[1]
    allowed = key_padding.bool()[:, None, None, :].expand(-1, 1, length, -1)
    if causal:
        allowed = allowed & torch.ones(length, length, dtype=torch.bool, device=key_padding.device).tril()
    eye = torch.eye(length, dtype=torch.bool, device=key_padding.device)
    return allowed | eye


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Scaled dot-product attention with grouped key/values: q (B, h, L, d), k/v (B, g, L, d) -> (B, h, L, d).

    PyTorch SDPA picks the fastest kernel available (flash / memory-efficient / math).
    """
    if k.shape[1] != q.shape[1]:
        repeat = q.shape[1] // k.shape[1]
        k = k.repeat_interleave(repeat, dim=1)
        v = v.repeat_interleave(repeat, dim=1)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def position_ids(key_padding: torch.Tensor) -> torch.Tensor:
    """Positions counted from each row's first real token (left padding invisible): (B, L) -> (B, L)."""
    return (key_padding.long().cumsum(-1) - 1).clamp_min(0)


def refuse_unsupported(config: dict, supported: dict, family: str) -> None:
    """Raise ValueError naming the first config.json flag whose value the native code does not implement.

    ``supported`` maps a flag to the set of values that run as written here (a missing flag counts as supported):
    a checkpoint that asks for something else must not run silently as the standard architecture.
    """
    for flag, allowed in supported.items():
        if flag in config and not any(config[flag] == value for value in allowed):
            shown = sorted(allowed, key=repr)
            raise ValueError(f"config.json of this {family} checkpoint sets {flag}={config[flag]!r}, which the native "
                             f"{family} code does not implement (supported: {shown}); refusing to run it as the "
                             "standard architecture")
