"""Reading hub-layout checkpoint folders without remote code: config.json, (sharded) safetensors, tokenizer,
and PEFT LoRA adapters merged into the weights at load.

Only safetensors are read (no pickle). A hub id is resolved to a local folder with ``huggingface_hub`` (which
honours ``HF_HUB_OFFLINE``); ``auto_map`` entries pointing at remote .py files are ignored.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch


def local_folder(source: str) -> Path:
    """A local checkpoint folder for ``source`` (a folder, or a hub id fetched/cached by huggingface_hub)."""
    path = Path(source)
    if path.is_dir():
        return path
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(source, allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model",
                                                              "*.jinja"]))
    except Exception as exc:
        raise FileNotFoundError(f"model {source!r}: not a local folder and not fetchable from the hub ({exc})") from exc


def read_config(folder: Path) -> dict:
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{folder}: no config.json")
    return json.loads(path.read_text())


def load_safetensors(folder: Path) -> dict[str, torch.Tensor]:
    """All tensors of ``model.safetensors`` or of the shards listed in ``model.safetensors.index.json``."""
    from safetensors.torch import load_file

    folder = Path(folder)
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    elif (folder / "model.safetensors").is_file():
        files = ["model.safetensors"]
    else:
        found = sorted(p.name for p in folder.glob("*.bin"))
        raise FileNotFoundError(f"{folder}: no model.safetensors(.index.json)"
                                + (f"; found {found}, but pickled weights are not loaded" if found else ""))
    state: dict[str, torch.Tensor] = {}
    for name in files:
        state.update(load_file(str(folder / name)))
    return state


def load_tokenizer(folder: Path):
    """The checkpoint's tokenizer without remote code: AutoTokenizer, else the fast tokenizer from tokenizer.json."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    try:
        return AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False)
    except Exception:
        if not (Path(folder) / "tokenizer.json").is_file():
            raise
        config_path = Path(folder) / "tokenizer_config.json"
        config = json.loads(config_path.read_text()) if config_path.is_file() else {}
        specials = {k: v for k, v in config.items()
                    if k in ("bos_token", "eos_token", "pad_token", "unk_token", "mask_token") and isinstance(v, str)}
        tok = PreTrainedTokenizerFast(tokenizer_file=str(Path(folder) / "tokenizer.json"), **specials)
        if config.get("chat_template"):
            tok.chat_template = config["chat_template"]
        return tok


def token_id(tokenizer, token: str) -> int | None:
    """Id of a token string in the tokenizer's vocabulary, None if absent."""
    tid = tokenizer.convert_tokens_to_ids(token)
    return None if tid is None or tid == tokenizer.unk_token_id else int(tid)


ADAPTER_PREFIXES = ("base_model.model.",)


def merge_lora(model: torch.nn.Module, adapter: str | Path) -> int:
    """Merge a PEFT LoRA adapter folder into ``model``'s linear weights: W += (alpha / r) * B @ A.

    Reads ``adapter_config.json`` (``r``, ``lora_alpha``, ``use_rslora``) and ``adapter_model.safetensors``;
    parameter names may carry PEFT's ``base_model.model.`` prefix. Returns the number of merged layers; an adapter
    whose target is missing from the model raises KeyError naming it.
    """
    from safetensors.torch import load_file

    folder = local_folder(str(adapter))
    config = json.loads((folder / "adapter_config.json").read_text())
    if config.get("peft_type", "LORA") != "LORA":
        raise ValueError(f"{folder}: only LoRA adapters are supported, got {config.get('peft_type')}")
    r, alpha = config["r"], config.get("lora_alpha", config["r"])
    scale = alpha / (r ** 0.5) if config.get("use_rslora") else alpha / r
    tensors = load_file(str(folder / "adapter_model.safetensors"))
    modules = dict(model.named_modules())
    merged = 0
    for key in sorted(k for k in tensors if k.endswith("lora_A.weight")):
        name = key[: -len(".lora_A.weight")]
        for prefix in ADAPTER_PREFIXES:
            name = name.removeprefix(prefix)
        if name not in modules:
            raise KeyError(f"{folder}: adapter targets {name!r}, which the model does not have")
        a, b = tensors[key].float(), tensors[key.replace("lora_A", "lora_B")].float()
        layer = modules[name]
        with torch.no_grad():
            layer.weight.add_((scale * (b @ a)).to(layer.weight.dtype))
        merged += 1
    if merged == 0:
        raise ValueError(f"{folder}: no LoRA weights found")
    return merged
