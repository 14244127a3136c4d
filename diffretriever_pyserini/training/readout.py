"""The readout a fine-tuned model was trained for, stored beside it as ``diffretriever.json``."""

from __future__ import annotations

import json
from pathlib import Path

READOUT_FILE = "diffretriever.json"
READOUT_DEFAULTS = {"k_q": 4, "k_p": 4, "q_max_length": 100, "p_max_length": 256, "top_k": 128}
"""Zero-shot readout defaults (REFERENCE.md section 4: top 128 terms zero-shot)."""


def finetuned_readout(model: str | None, adapter: str | None = None) -> dict:
    """Contents of ``diffretriever.json`` in the adapter folder (if any) or the model folder; {} when absent."""
    for folder in (adapter, model):
        if folder and (Path(folder) / READOUT_FILE).is_file():
            return json.loads((Path(folder) / READOUT_FILE).read_text())
    return {}


def readout_defaults(model: str | None, adapter: str | None = None) -> dict:
    """K_q, K_p, lengths and top-k to use when unset: the fine-tuned model's own, else the zero-shot defaults."""
    tuned = finetuned_readout(model, adapter)
    return {name: tuned.get(name, default) for name, default in READOUT_DEFAULTS.items()}
