"""Reading hub-layout checkpoint folders without remote code: config.json, (sharded) safetensors, tokenizer,
and PEFT LoRA adapters merged into the weights at load.

Only safetensors are read (no pickle). A hub id is resolved to a local folder with ``huggingface_hub`` (which
honours ``HF_HUB_OFFLINE``); ``auto_map`` entries pointing at remote .py files are ignored.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from diffretriever_pyserini.errors import UserError


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
        raise UserError(f"not a local folder and not fetchable from the hub ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else ''})", source) from exc


def read_config(folder: Path) -> dict:
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise UserError("no config.json", folder)
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"not valid JSON ({exc.msg})", path, exc.lineno) from exc
    if not isinstance(config, dict):
        raise UserError("expected a JSON object", path)
    return config


def require_safetensors(folder: Path) -> None:
    """Refuse a checkpoint folder that has only pickled weights (``*.bin``, ``*.pt``): loading them could run code."""
    folder = Path(folder)
    if not any(folder.glob("*.safetensors")):
        pickled = sorted(p.name for p in folder.glob("*") if p.suffix in (".bin", ".pt", ".pth", ".ckpt"))
        raise UserError("no *.safetensors weights" + (
            f"; found {pickled}, but pickled weights are never loaded (they can run code): convert them with "
            "safetensors' convert script or save the model with safe_serialization=True" if pickled else ""),
            folder)


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
        require_safetensors(folder)
        raise UserError("no model.safetensors or model.safetensors.index.json", folder)
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
LORA_REFUSED = {  # adapter_config.json flag -> why it cannot be merged as W += scale * B @ A
    "use_dora": "DoRA adapters rescale the merged weight by a learned magnitude",
    "lora_bias": "the adapter trains a bias on lora_B",
    "modules_to_save": "the adapter replaces whole modules",
    "trainable_token_indices": "the adapter trains embedding rows",
    "layer_replication": "the adapter duplicates layers",
    "target_parameters": "the adapter targets raw parameters, not linear layers",
}


def pattern_key(patterns, name: str) -> str | None:
    """The first of ``patterns`` (PEFT ``rank_pattern`` / ``alpha_pattern`` keys, regular expressions) matching the
    end of module ``name`` at a dot boundary, as PEFT resolves them; None when none does."""
    for key in patterns:
        if re.match(rf"(.*\.)?({key})$", name):
            return key
    return None


def _number(value, positive_int: bool) -> bool:
    if isinstance(value, bool):
        return False
    return (isinstance(value, int) and value >= 1) if positive_int else (isinstance(value, (int, float))
                                                                           and value > 0)


def check_lora_config(config, path: Path) -> None:
    """The fields of ``adapter_config.json`` the merge reads, type- and range-checked, naming file and field:
    ``r`` a positive integer, ``lora_alpha`` a positive number (default ``r``), the patterns' values likewise."""
    if not isinstance(config, dict):
        raise UserError("expected a JSON object", path)
    if "r" not in config:
        raise UserError("field 'r' (the LoRA rank) is missing", path)
    if not _number(config["r"], positive_int=True):
        raise UserError(f"field 'r' must be a positive integer, got {config['r']!r}", path)
    if "lora_alpha" in config and not _number(config["lora_alpha"], positive_int=False):
        raise UserError(f"field 'lora_alpha' must be a positive number, got {config['lora_alpha']!r}", path)
    for field, ints in (("rank_pattern", True), ("alpha_pattern", False)):
        patterns = config.get(field) or {}
        if not isinstance(patterns, dict):
            raise UserError(f"field {field!r} must be an object of pattern: value, got {patterns!r}", path)
        for key, value in patterns.items():
            if not _number(value, positive_int=ints):
                raise UserError(f"field {field!r}: {key!r} must be a positive "
                                f"{'integer' if ints else 'number'}, got {value!r}", path)


def merge_lora(model: torch.nn.Module, adapter: str | Path, dtype: torch.dtype | None = None) -> int:
    """Merge a PEFT LoRA adapter folder into ``model``'s linear weights: W += (alpha / r) * B @ A.

    The sum is taken in float32 and then cast to ``dtype`` (default: the weight's own), so a bf16-stored base run in
    fp32 is merged at fp32 precision, and a bf16 run gets bf16(W + delta) as PEFT's merge does. ``alpha_pattern``
    and ``rank_pattern`` are honoured per layer (rank from the tensors, alpha from the first matching pattern), as is
    ``use_rslora`` (alpha / sqrt(r)) and ``fan_in_fan_out``. Adapter kinds whose merge is not a plain low-rank
    update (DoRA, a LoRA bias, modules to save, ...) are refused with an error naming the flag, as is any tensor
    other than ``lora_A`` / ``lora_B`` weights. Returns the number of merged layers.
    """
    from safetensors.torch import load_file

    folder = local_folder(str(adapter))
    config_path = folder / "adapter_config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{folder}: no adapter_config.json (not a PEFT adapter folder)")
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"not valid JSON ({exc})", config_path) from exc
    check_lora_config(config, config_path)
    if config.get("peft_type", "LORA") != "LORA":
        raise ValueError(f"{config_path}: only LoRA adapters are supported, got peft_type {config.get('peft_type')}")
    for flag, why in LORA_REFUSED.items():
        if config.get(flag):
            raise ValueError(f"{config_path}: {flag}={config[flag]!r} is not supported ({why}); merge it with peft "
                             "and pass the merged model instead")
    weights_path = folder / "adapter_model.safetensors"
    if not weights_path.is_file():
        found = sorted(p.name for p in folder.glob("adapter_model*"))
        raise FileNotFoundError(f"{folder}: no adapter_model.safetensors" + (
            f"; found {found}, but pickled weights are not loaded" if found else ""))
    tensors = load_file(str(weights_path))
    unknown = sorted(k for k in tensors if not k.endswith(("lora_A.weight", "lora_B.weight")))
    if unknown:
        raise ValueError(f"{weights_path}: tensors other than LoRA A/B weights are not supported: {unknown[:3]}")
    alpha_default = config.get("lora_alpha", config["r"])
    alpha_pattern = config.get("alpha_pattern") or {}
    rank_pattern = config.get("rank_pattern") or {}
    modules = dict(model.named_modules())
    merged = 0
    for key in sorted(k for k in tensors if k.endswith("lora_A.weight")):
        name = key[: -len(".lora_A.weight")]
        for prefix in ADAPTER_PREFIXES:
            name = name.removeprefix(prefix)
        if name not in modules:
            raise KeyError(f"{folder}: adapter targets {name!r}, which the model does not have")
        a, b = tensors[key].float(), tensors[key.replace("lora_A", "lora_B")].float()
        rank = a.shape[0]
        if rank < 1 or tuple(b.shape[1:]) != (rank,):
            raise UserError(f"{name}: LoRA tensors of rank {rank} (A {tuple(a.shape)}, B {tuple(b.shape)}) cannot be "
                            "merged", weights_path)
        pattern = pattern_key(rank_pattern, name)
        if pattern is not None and rank_pattern[pattern] != rank:
            raise ValueError(f"{config_path}: rank_pattern gives {name} rank {rank_pattern[pattern]}, its tensors "
                             f"have rank {rank}")
        pattern = pattern_key(alpha_pattern, name)
        alpha = alpha_pattern[pattern] if pattern is not None else alpha_default
        scale = alpha / rank ** 0.5 if config.get("use_rslora") else alpha / rank
        delta = scale * (b @ a)
        layer = modules[name]
        if config.get("fan_in_fan_out"):
            delta = delta.T
        if tuple(delta.shape) != tuple(layer.weight.shape):
            raise ValueError(f"{folder}: adapter for {name} has shape {tuple(delta.shape)}, the model's weight "
                             f"{tuple(layer.weight.shape)}: the adapter belongs to another base model")
        with torch.no_grad():
            merged_weight = (layer.weight.float() + delta.to(layer.weight.device)).to(dtype or layer.weight.dtype)
            layer.weight = torch.nn.Parameter(merged_weight, requires_grad=layer.weight.requires_grad)
        merged += 1
    if merged == 0:
        raise ValueError(f"{folder}: no LoRA weights found")
    return merged
