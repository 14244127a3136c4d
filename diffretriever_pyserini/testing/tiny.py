"""Random-weight checkpoints in the real hub layouts, for tests and benchmarks (no downloads).

``write_checkpoint(folder, "dream" | "llada" | "qwen2", ...)`` writes config.json, sharded safetensors with the
original parameter names, and a small byte-level BPE tokenizer with the family's special tokens and a chat template
of the same shape as the real one.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

EXTRA_SPECIALS = {"dream": ["<|im_start|>", "<|im_end|>"], "qwen2": ["<|im_start|>", "<|im_end|>"]}
"""Tokens the family's real tokenizer lists as additional special tokens (Qwen2.5 / Dream: the chat markers), so
they are in ``all_special_ids`` and stop the zero-shot readout, as with the real checkpoints."""
FAMILY_TOKENS = {
    # family: (special tokens in id order, roles: bos, eos, pad, mask, end of turn)
    "dream": (["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|mask|>"],
              {"bos": "<|endoftext|>", "eos": "<|endoftext|>", "pad": "<|endoftext|>", "mask": "<|mask|>"}),
    "qwen2": (["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
              {"bos": None, "eos": "<|im_end|>", "pad": "<|endoftext|>", "mask": None}),
    "llada": (["<|startoftext|>", "<|endoftext|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
               "<|mdm_mask|>"],
              {"bos": "<|startoftext|>", "eos": "<|endoftext|>", "pad": "<|endoftext|>", "mask": "<|mdm_mask|>"}),
}
CHAT_TEMPLATES = {
    "qwen": ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
             "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"),
    "llama3": ("<|startoftext|>{% for message in messages %}<|start_header_id|>{{ message['role'] }}"
               "<|end_header_id|>\n\n{{ message['content'] }}<|eot_id|>{% endfor %}{% if add_generation_prompt %}"
               "<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"),
}
_TRAINING_TEXT = """You are an AI assistant that can understand human language. Passage: Query: Use one word a few
words three words to represent the passage query in a retrieval task. Make sure your word words are in lowercase and
split them by space. The word is: The words are: microglia brain immune cells protein gene expression cancer tumour
patients treatment clinical trial risk disease infection virus vaccine blood pressure heart cell growth factor
receptor signalling pathway mouse model study results show increased decreased levels associated with effect of
"""


def build_tokenizer(family: str, vocab_size: int = 600):
    """A byte-level BPE tokenizer (every string encodes) with ``family``'s special tokens and chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials, roles = FAMILY_TOKENS[family]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([_TRAINING_TEXT] * 4, trainer)
    kwargs = {f"{role}_token": token for role, token in roles.items() if token}
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **kwargs)
    if family in EXTRA_SPECIALS:
        fast.add_special_tokens({"additional_special_tokens": EXTRA_SPECIALS[family]})
    fast.chat_template = CHAT_TEMPLATES["llama3" if family == "llada" else "qwen"]
    return fast


def _shard_and_save(state: dict[str, torch.Tensor], folder: Path, shards: int = 2) -> None:
    from safetensors.torch import save_file

    names = sorted(state)
    per = -(-len(names) // shards)
    weight_map = {}
    for i in range(shards):
        part = names[i * per:(i + 1) * per]
        if not part:
            continue
        filename = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        save_file({n: state[n].contiguous() for n in part}, str(folder / filename), metadata={"format": "pt"})
        weight_map.update({n: filename for n in part})
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


def write_checkpoint(folder: str | Path, family: str, hidden: int = 64, layers: int = 2, heads: int = 4,
                     kv_heads: int = 2, intermediate: int = 128, vocab_size: int = 600, seed: int = 0,
                     dtype: torch.dtype = torch.float32, state: dict | None = None) -> Path:
    """Write a random-weight checkpoint folder of ``family`` (dream, llada, qwen2); return the folder.

    ``state`` reuses given weights (e.g. a Dream checkpoint's, to build the same network as a causal qwen2 model).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer("dream" if family == "qwen2" else family, vocab_size)
    tokenizer.save_pretrained(str(folder))
    vocab = max(vocab_size, len(tokenizer))
    torch.manual_seed(seed)
    if family in ("dream", "qwen2"):
        from diffretriever_pyserini.backbones.dream import DreamConfig, DreamModel

        cfg = DreamConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=intermediate,
                          num_hidden_layers=layers,
                          num_attention_heads=heads, num_key_value_heads=kv_heads, rope_theta=10000.0,
                          mask_token_id=tokenizer.convert_tokens_to_ids("<|mask|>") if family == "dream" else None)
        config = {**cfg.__dict__, "architectures": ["DreamModel"], "model_type": "Dream",
                  "auto_map": {"AutoModel": "modeling_dream.DreamModel"}, "torch_dtype": "float32",
                  "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
                  "pad_token_id": tokenizer.pad_token_id, "max_position_embeddings": 4096, "hidden_act": "silu"}
        if family == "qwen2":
            config.update(model_type="qwen2", architectures=["Qwen2ForCausalLM"], mask_token_id=None)
            config.pop("auto_map")
        build = lambda: DreamModel(cfg)  # noqa: E731
    elif family == "llada":
        from diffretriever_pyserini.backbones.llada import LLaDAConfig, LLaDAModel

        cfg = LLaDAConfig(embedding_size=vocab, d_model=hidden, n_layers=layers, n_heads=heads, n_kv_heads=heads,
                          mlp_hidden_size=intermediate, rope_theta=10000.0,
                          mask_token_id=tokenizer.convert_tokens_to_ids("<|mdm_mask|>"))
        config = {**cfg.__dict__, "vocab_size": vocab, "model_type": "llada", "architectures": ["LLaDAModelLM"],
                  "auto_map": {"AutoModel": "modeling_llada.LLaDAModelLM"}, "block_type": "llama",
                  "activation_type": "silu", "layer_norm_type": "rms"}
        build = lambda: LLaDAModel(cfg)  # noqa: E731
    else:
        raise ValueError(f"unknown tiny family {family!r}; use dream, llada or qwen2")
    if state is None:
        model = build()
        for name, p in model.named_parameters():
            if p.dim() > 1:
                torch.nn.init.normal_(p, std=0.05)
            elif name.endswith("bias"):
                torch.nn.init.normal_(p, std=0.02)
        state = {k: v.to(dtype) for k, v in model.state_dict().items()}
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    _shard_and_save(state, folder)
    return folder
