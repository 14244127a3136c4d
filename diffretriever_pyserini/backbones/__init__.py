"""Backbone registry: model family -> loader.

``load_backbone("minilm")`` gives the packaged CPU backbone; a folder or hub id is dispatched on the
``model_type`` in its config.json (never on words in its name). Add a family by adding a loader to ``FAMILIES``
and its model types to ``MODEL_TYPES`` in this file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from diffretriever_pyserini.backbones.base import Backbone
from diffretriever_pyserini.errors import UserError


def _load_masked_lm(source: str, device=None, dtype=None, adapter=None, **_) -> Backbone:
    from diffretriever_pyserini.backbones.masked_lm import MaskedLMBackbone

    return MaskedLMBackbone(source, device=device, dtype=dtype, adapter=adapter)


def _load_dream(source: str, **kwargs) -> Backbone:
    from diffretriever_pyserini.backbones.native import DreamBackbone

    return DreamBackbone(source, **kwargs)


def _load_llada(source: str, **kwargs) -> Backbone:
    from diffretriever_pyserini.backbones.native import LLaDABackbone

    return LLaDABackbone(source, **kwargs)


def _load_autoregressive(source: str, **kwargs) -> Backbone:
    from diffretriever_pyserini.backbones.autoregressive import AutoregressiveBackbone

    return AutoregressiveBackbone(source, **kwargs)


FAMILIES: dict[str, Callable[..., Backbone]] = {
    "masked_lm": _load_masked_lm,
    "dream": _load_dream,
    "llada": _load_llada,
    "autoregressive": _load_autoregressive,
}
MODEL_TYPES = {  # config.json model_type (lower-cased) -> family
    "dream": "dream", "llada": "llada", "qwen2": "autoregressive", "llama": "autoregressive",
    "bert": "masked_lm", "roberta": "masked_lm", "xlm-roberta": "masked_lm", "distilbert": "masked_lm",
    "electra": "masked_lm", "deberta-v2": "masked_lm", "modernbert": "masked_lm",
}


class BackboneError(UserError):
    """An unknown family or a model that cannot be found; the message names the supported options."""


def family_of(source: str) -> str:
    """The family of a local folder from its config.json ``model_type`` (matched case-insensitively)."""
    config = Path(source) / "config.json"
    if not config.is_file():
        raise BackboneError(f"model {source!r}: no config.json there; give a model folder, a hub id with "
                            f"family=..., or one of the packaged names {sorted(_packaged())}")
    model_type = str(json.loads(config.read_text()).get("model_type", "")).lower()
    if model_type not in MODEL_TYPES:
        raise BackboneError(f"{config}: model_type {model_type!r} has no backbone family; supported model types: "
                            f"{sorted(MODEL_TYPES)} (families {sorted(FAMILIES)}; extend "
                            f"diffretriever_pyserini/backbones/__init__.py)")
    return MODEL_TYPES[model_type]


def _packaged() -> dict:
    from diffretriever_pyserini.backbones.masked_lm import PACKAGED_MODELS

    return PACKAGED_MODELS


def model_folder(model: str) -> Path:
    """The local folder of a packaged name or an existing folder (for tools that need a path, not a backbone)."""
    packaged = _packaged()
    if model in packaged:
        from diffretriever_pyserini.backbones.masked_lm import packaged_model_path

        return packaged_model_path(model)
    if not Path(model).is_dir():
        raise BackboneError(f"model {model!r} is neither a packaged name ({sorted(packaged)}) nor a folder")
    return Path(model)


def load_backbone(model: str, family: str | None = None, device: str | None = None, dtype: str | None = None,
                  **kwargs) -> Backbone:
    """Load a backbone from a packaged name (``minilm``), a local folder, or a hub id with ``family`` given."""
    packaged = _packaged()
    if model in packaged:
        from diffretriever_pyserini.backbones.masked_lm import packaged_model_path

        source, family = str(packaged_model_path(model)), family or "masked_lm"
    else:
        source = model
        if family is None:
            if not Path(model).exists():
                raise BackboneError(f"model {model!r} is neither a packaged name ({sorted(packaged)}) nor an "
                                    f"existing folder; for a hub id also pass its family ({sorted(FAMILIES)})")
            family = family_of(model)
    if family not in FAMILIES:
        raise BackboneError(f"unknown backbone family {family!r}; supported: {sorted(FAMILIES)} "
                            f"(extend diffretriever_pyserini/backbones/__init__.py)")
    return FAMILIES[family](source, device=device, dtype=dtype, **kwargs)
