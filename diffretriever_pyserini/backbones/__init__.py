"""Backbone registry: model family -> loader.

``load_backbone("minilm")`` gives the packaged CPU backbone; a folder or hub id is dispatched on the
``model_type`` in its config.json (never on words in its name). Add a family with one backbone file and one record
in :mod:`.families`.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from diffretriever_pyserini.backbones.families import FAMILY_RECORDS, Family
from diffretriever_pyserini.errors import UserError

if TYPE_CHECKING:
    from diffretriever_pyserini.backbones.base import Backbone


def _loader(family: Family) -> Callable[..., Backbone]:
    """Build ``family``'s backbone, passing the options its class takes (the masked-LM class takes no
    diffusion-only options such as ``shifted_logits``)."""

    def load(source: str, **kwargs) -> Backbone:
        cls = family.backbone_class()
        params = inspect.signature(cls.__init__).parameters
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            kwargs = {k: v for k, v in kwargs.items() if k in params}
        return cls(source, **kwargs)

    return load


FAMILIES: dict[str, Callable[..., Backbone]] = {name: _loader(f) for name, f in FAMILY_RECORDS.items()}
"""Family -> loader (from :data:`~.families.FAMILY_RECORDS`)."""
MODEL_TYPES = {t: f.name for f in FAMILY_RECORDS.values() for t in f.model_types}
"""config.json ``model_type`` (lower-cased) -> family."""


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
                            f"{sorted(MODEL_TYPES)} (families {sorted(FAMILIES)}; add a record to "
                            f"diffretriever_pyserini/backbones/families.py)")
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
                            f"(add a record to diffretriever_pyserini/backbones/families.py)")
    return FAMILIES[family](source, device=device, dtype=dtype, **kwargs)
