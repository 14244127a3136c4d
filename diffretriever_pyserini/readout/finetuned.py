"""Fine-tuned retriever folders read as trained: the reference's ``retriever_config.json``.

The authors' training code writes ``retriever_config.json`` beside every fine-tuned model (the released
``ielabgroup/diffretriever-*`` LoRA adapters carry one): the backbone type, the mask id and hidden size, K_q and
K_p, the prompt token ids of both sides, the tail length and the denoising steps the model was trained for. Reading
it is what makes a ``q4-p16`` adapter run at K_q = 4, K_p = 16 with its own prompt and the fine-tuned readout rules
(top 256 terms, rounded impacts, no decoded-token stop) instead of silently as a different model. This project's own
``train`` writes the same file (plus a ``diffretriever`` block with the recipe), so both are read the same way.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from diffretriever_pyserini.backbones.families import END_OF_TURN_TOKENS, FAMILY_RECORDS, LLADA_EOT_ID
from diffretriever_pyserini.errors import UserError
from diffretriever_pyserini.readout.limits import MAX_DENOISE_STEPS, MAX_K, MAX_TAIL

log = logging.getLogger(__name__)

RETRIEVER_CONFIG = "retriever_config.json"
LEGACY_READOUT_FILE = "diffretriever.json"
"""What this project wrote before it wrote retriever_config.json (K, lengths, top-k); still read."""
MODEL_TYPE_FAMILIES = {t: f.name for f in FAMILY_RECORDS.values() for t in f.retriever_model_types}
"""retriever_config.json ``model_type`` (the reference's backbone adapters, or this project's family) -> family."""
TRAINED_EOT_FALLBACK = LLADA_EOT_ID
"""The reference's fine-tuned tail falls back to LLaDA-8B's ``<|eot_id|>`` id when no end-of-turn token is found."""


class FineTunedError(UserError):
    """A fine-tuned folder that cannot be read as trained, or that does not fit the loaded backbone."""


INT_FIELDS = {"n_gen_tokens": (1, MAX_K), "n_gen_q_tokens": (1, MAX_K), "n_gen_p_tokens": (1, MAX_K),
              "num_denoise_steps": (1, MAX_DENOISE_STEPS), "n_tail": (0, MAX_TAIL), "max_length": (1, 1 << 20),
              "mask_token_id": (0, 1 << 31), "hidden_size": (1, 1 << 20)}
"""retriever_config.json integer fields and their allowed ranges (null = unset)."""
ID_FIELDS = ("query_prefix_ids", "query_suffix_ids", "passage_prefix_ids", "passage_suffix_ids", "tail_ids")
BOOL_FIELDS = ("use_eos", "use_k_adapter", "use_k_pre_encoder")
READOUT_FIELDS = ("model_type", "n_gen_tokens", "n_gen_q_tokens", "n_gen_p_tokens")
"""At least one of these makes a file a fine-tuned readout's config (an empty one is refused, not read as one)."""


def check_config(config, path: Path) -> dict:
    """Every field of a ``retriever_config.json`` this project reads, type- and range-checked with the file and
    field named: K between 1 and MAX_K, denoising steps between 1 and MAX_DENOISE_STEPS, ids non-negative integers
    (checked against the vocabulary in :meth:`FineTuned.check_fits`). Returns the config."""
    if not isinstance(config, dict):
        raise FineTunedError("expected a JSON object", path)
    if not any(config.get(name) is not None for name in READOUT_FIELDS):
        raise FineTunedError(f"no readout settings: expected at least one of {', '.join(READOUT_FIELDS)}", path)
    for name, (low, high) in INT_FIELDS.items():
        value = config.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise FineTunedError(f"field {name!r} must be an integer from {low} to {high}, got {value!r}", path)
    for name in ID_FIELDS:
        value = config.get(name)
        if value is None:
            continue
        if not isinstance(value, list) or any(isinstance(i, bool) or not isinstance(i, int) or i < 0
                                              for i in value):
            raise FineTunedError(f"field {name!r} must be a list of token ids (non-negative integers), got "
                                 f"{value!r}", path)
    for name in BOOL_FIELDS:
        if config.get(name) is not None and not isinstance(config[name], bool):
            raise FineTunedError(f"field {name!r} must be true or false, got {config[name]!r}", path)
    if config.get("model_type") is not None and not isinstance(config["model_type"], str):
        raise FineTunedError(f"field 'model_type' must be a string, got {config['model_type']!r}", path)
    if not isinstance(config.get("diffretriever", {}), dict):
        raise FineTunedError("field 'diffretriever' must be an object", path)
    return config


@dataclass(frozen=True)
class FineTuned:
    """A fine-tuned model's ``retriever_config.json`` (or this project's legacy ``diffretriever.json``)."""

    folder: Path
    config: dict = field(repr=False)

    @property
    def path(self) -> Path:
        name = RETRIEVER_CONFIG if (self.folder / RETRIEVER_CONFIG).is_file() else LEGACY_READOUT_FILE
        return self.folder / name

    @property
    def family(self) -> str | None:
        model_type = self.config.get("model_type")
        if model_type is None:
            return None
        if model_type not in MODEL_TYPE_FAMILIES:
            raise FineTunedError(f"{self.path}: model_type {model_type!r} has no native backbone here "
                                 f"(supported: {sorted(MODEL_TYPE_FAMILIES)})")
        return MODEL_TYPE_FAMILIES[model_type]

    @property
    def k_q(self) -> int:
        return int(self.config.get("n_gen_q_tokens") or self.config.get("n_gen_tokens") or 4)

    @property
    def k_p(self) -> int:
        return int(self.config.get("n_gen_p_tokens") or self.config.get("n_gen_tokens") or 4)

    @property
    def denoise_steps(self) -> int:
        """The trained denoising steps, capped at the larger K as the reference's model does."""
        return max(1, min(int(self.config.get("num_denoise_steps") or 1), max(self.k_q, self.k_p)))

    @property
    def extras(self) -> dict:
        """This project's own block (recipe, top-k, run name); {} for the authors' folders."""
        return self.config.get("diffretriever", {})

    def prompt_ids(self, side: str) -> tuple[tuple[int, ...] | None, tuple[int, ...] | None]:
        """(prefix, suffix) ids of ``side`` ("query" or "passage"); (None, None) when the folder has none."""
        prefix, suffix = self.config.get(f"{side}_prefix_ids"), self.config.get(f"{side}_suffix_ids")
        if prefix is None or suffix is None:
            return None, None
        return tuple(int(i) for i in prefix), tuple(int(i) for i in suffix)

    def tail_ids(self, backbone) -> tuple[int, ...] | None:
        """The tail the model was trained with: explicit ``tail_ids`` (this project), the reference's trained rule
        for ``n_tail`` tokens, or the legacy eos-only tail; None = the backbone's zero-shot tail."""
        c = self.config
        if "tail_ids" in c:
            return tuple(int(i) for i in c["tail_ids"])
        if "n_tail" in c:
            return tuple(trained_tail_ids(backbone, int(c["n_tail"])))
        if "query_prefix_ids" in c:  # the authors' checkpoints from before the structural tail
            eos = backbone.tokenizer.eos_token_id
            return (int(eos),) if c.get("use_eos") else ()
        return None

    def check_fits(self, backbone) -> None:
        """Refuse a model whose backbone is not the one it was trained on (family, mask id, hidden size), and
        anything in it this project cannot run; warn when the adapter names another base checkpoint."""
        c = self.config
        for flag in ("use_k_adapter", "use_k_pre_encoder"):
            if c.get(flag):
                raise FineTunedError(f"{self.path}: {flag} is set; its K-routing heads are pickled .bin files and "
                                     "change the readout, which this project does not run")
        family = self.family
        if family is not None and family != backbone.family:
            raise FineTunedError(f"{self.path}: trained on a {family} backbone ({c.get('model_type')}), but the "
                                 f"loaded model {backbone.source} is {backbone.family}")
        for name in ID_FIELDS:
            outside = [i for i in c.get(name) or () if i >= backbone.vocab_size]
            if outside:
                raise FineTunedError(f"field {name!r} has token ids outside the vocabulary of {backbone.source} "
                                     f"({backbone.vocab_size} ids): {outside[:5]}", self.path)
        for key, have in (("mask_token_id", backbone.mask_token_id), ("hidden_size", backbone.hidden_size)):
            if key in c and c[key] is not None and int(c[key]) != int(have):
                raise FineTunedError(f"{self.path}: trained with {key}={c[key]}, the loaded model "
                                     f"{backbone.source} has {have}: the adapter belongs to another base model")
        base = adapter_base_model(self.folder)
        if base and backbone.adapter and not same_checkpoint_name(base, backbone.source):
            log.warning("%s: the adapter was trained on %s; the loaded base is %s (the released DiffRetriever "
                        "adapters sit on the Instruct checkpoints)", self.folder, base, backbone.source)

    def describe(self) -> dict:
        """What run metadata records about the fine-tuned folder."""
        return {"folder": str(self.folder), "file": self.path.name, "model_type": self.config.get("model_type"),
                "k_q": self.k_q, "k_p": self.k_p, "denoise_steps": self.denoise_steps,
                "trained_max_length": self.config.get("max_length"), "n_tail": self.config.get("n_tail"),
                "adapter_base_model": adapter_base_model(self.folder)}


def find(model: str | None, adapter: str | None = None) -> FineTuned | None:
    """The fine-tuned config in the adapter folder (if any), else the model folder; None for a zero-shot model."""
    for folder in (adapter, model):
        if not folder or not Path(folder).is_dir():
            continue
        folder = Path(folder)
        for name in (RETRIEVER_CONFIG, LEGACY_READOUT_FILE):
            path = folder / name
            if path.is_file():
                try:
                    config = json.loads(path.read_text())
                except json.JSONDecodeError as exc:
                    raise FineTunedError(f"{path}: not valid JSON ({exc})") from exc
                if name == LEGACY_READOUT_FILE and isinstance(config, dict):
                    config = _from_legacy(config)
                return FineTuned(folder, check_config(config, path))
    return None


def _from_legacy(old: dict) -> dict:
    return {"model_type": old.get("family"), "n_gen_q_tokens": old.get("k_q"), "n_gen_p_tokens": old.get("k_p"),
            "diffretriever": {k: v for k, v in old.items() if k not in ("k_q", "k_p")}}


def adapter_base_model(folder: Path) -> str | None:
    """``base_model_name_or_path`` of a PEFT adapter folder, if it is one."""
    path = Path(folder) / "adapter_config.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text()).get("base_model_name_or_path")


def same_checkpoint_name(a: str, b: str) -> bool:
    """Whether two hub ids / folders name the same checkpoint (compared by their last path component)."""
    return Path(str(a).rstrip("/")).name.lower() == Path(str(b).rstrip("/")).name.lower()


def trained_tail_ids(backbone, n_tail: int) -> list[int]:
    """The reference's fine-tuned tail: the closing quote (eos if it is not one token), the first of
    ``<|im_end|>`` / ``<|eot_id|>`` that exists and is not eos (falling back to id 126348), eos up to ``n_tail``."""
    if n_tail <= 0:
        return []
    tok = backbone.tokenizer
    eos = tok.eos_token_id
    quote = tok('"', add_special_tokens=False)["input_ids"]
    tail = [quote[0] if len(quote) == 1 else eos]
    from diffretriever_pyserini.backbones.checkpoint import token_id

    eot = next((i for i in (token_id(tok, t) for t in END_OF_TURN_TOKENS) if i is not None and i != eos), None)
    if eot is None:
        eot = TRAINED_EOT_FALLBACK if TRAINED_EOT_FALLBACK != eos else None
    if eot is not None:
        if eot >= backbone.vocab_size:
            raise FineTunedError(f"{backbone.source}: no end-of-turn token in the tokenizer and the reference's "
                                 f"fallback id {eot} is outside the vocabulary ({backbone.vocab_size})")
        tail.append(eot)
    return (tail + [eos] * n_tail)[:n_tail]


def run_defaults(tuned: FineTuned | None) -> dict:
    """K, lengths and denoising steps a run uses when unset: the fine-tuned folder's own K and steps (``tuned``: its
    record from :func:`find`, None for a zero-shot model), the reference's inference budget of 256 tokens on both
    sides."""
    from diffretriever_pyserini.readout.representation import DEFAULT_MAX_LENGTH

    return {"k_q": tuned.k_q if tuned else 4, "k_p": tuned.k_p if tuned else 4,
            "q_max_length": DEFAULT_MAX_LENGTH, "p_max_length": DEFAULT_MAX_LENGTH,
            "denoise_steps": tuned.denoise_steps if tuned else 1}


def readout_options(side: str, tuned: FineTuned | None, backbone=None) -> dict:
    """ReadoutConfig fields a fine-tuned folder fixes for ``side`` ({} for a zero-shot model): the fine-tuned
    regime, K, the trained prompt and tail ids, the denoising steps."""
    if tuned is None:
        return {}
    prefix, suffix = tuned.prompt_ids(side)
    options = {"finetuned": True, "k": tuned.k_q if side == "query" else tuned.k_p,
               "denoise_steps": tuned.denoise_steps, "prefix_ids": prefix, "suffix_ids": suffix}
    if backbone is not None:
        options["tail_ids"] = tuned.tail_ids(backbone)
    top_k = tuned.extras.get("top_k")
    if top_k:
        options["top_k"] = int(top_k)
    return options
