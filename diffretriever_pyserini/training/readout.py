"""The readout a fine-tuned model was trained for, stored beside it as ``diffretriever.json``."""

from __future__ import annotations

import json
from pathlib import Path

READOUT_FILE = "diffretriever.json"


def finetuned_readout(model: str | None, adapter: str | None = None) -> dict:
    """Contents of ``diffretriever.json`` in the adapter folder (if any) or the model folder; {} when absent."""
    for folder in (adapter, model):
        if folder and (Path(folder) / READOUT_FILE).is_file():
            return json.loads((Path(folder) / READOUT_FILE).read_text())
    return {}
