"""The Backbone interface: what the K-mask readout needs from a model, and nothing more.

A backbone turns prompt pieces into token ids and runs one forward pass returning the last-layer hidden states and
vocabulary logits at requested positions. Families (masked LM here; Dream, LLaDA and autoregressive models plug in
the same way) implement :meth:`Backbone.forward_at` and say how they are loaded.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
import torch

PLACEHOLDER = "\u2063TEXT\u2063"
"""Stands for the input text while a chat template is rendered; the template is then split around it."""


class Backbone(ABC):
    """A tokenizer plus a model read at the mask positions.

    Subclasses set ``tokenizer``, ``family``, ``source`` (folder or hub id), ``device`` and implement
    :meth:`forward_at`. Token ids of the mask, padding, end-of-turn and end-of-sequence come from the checkpoint's own
    tokenizer and config.
    """

    family: str = ""
    tokenizer = None
    source: str = ""
    adapter: str | None = None
    device: torch.device = torch.device("cpu")

    # ----------------------------------------------------------------- token facts

    @property
    def mask_token_id(self) -> int:
        return int(self.tokenizer.mask_token_id)

    @property
    def pad_token_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return int(pad if pad is not None else self.tokenizer.eos_token_id)

    @property
    def special_token_ids(self) -> frozenset[int]:
        """The tokenizer's special token ids (never index terms of the PromptReps fallback)."""
        return frozenset(int(i) for i in self.tokenizer.all_special_ids)

    def stop_token_ids(self) -> frozenset[int]:
        """Decoded tokens that end the zero-shot readout: the tokenizer's special ids without the mask id (the
        reference's ``set(tokenizer.all_special_ids) - {mask_token_id}``)."""
        return self.special_token_ids - {self.mask_token_id}

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Size V of the logits' last dimension."""

    @property
    @abstractmethod
    def hidden_size(self) -> int:
        """Size H of the last hidden states."""

    # ----------------------------------------------------------------- tokenisation

    def text_ids(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each TEXT alone, without special tokens."""
        # verbose=False: texts longer than the model are expected here; assemble() truncates them
        return self.tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"] if texts else []

    def word_ids(self, words: list[str]) -> list[list[int]]:
        """Token ids of each content word tokenised alone (the allowed set of the sparse readout)."""
        return self.text_ids(words)

    def id_to_term(self, ids: list[int]) -> list[str]:
        """Index terms for token ids: the tokenizer's own token strings (WordPiece ``##ing``, BPE ``Ġword``)."""
        return self.tokenizer.convert_ids_to_tokens(ids)

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    def prompt_ids(self, prompt) -> tuple[list[int], list[int], list[int]]:
        """(prefix, suffix, tail) token ids around TEXT and the K masks for a :class:`SidePrompt`.

        With a chat template (the reference's layout): the system message (left out when empty) and the user message
        are rendered with the generation prompt, split at the text, and the assistant prefix appended to the suffix;
        the tail is :meth:`tail_ids`. Without one (encoder models): ``[CLS] system user_prefix`` TEXT
        ``user_suffix assistant_prefix`` masks ``tail [SEP]``.
        """
        tok = self.tokenizer
        if getattr(tok, "chat_template", None):
            messages = [{"role": "system", "content": prompt.system}] if prompt.system else []
            messages.append({"role": "user", "content": prompt.user_prefix + PLACEHOLDER + prompt.user_suffix})
            rendered = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            if rendered.count(PLACEHOLDER) != 1:
                raise ValueError(f"chat template of {self.source} does not keep the user message intact")
            before, after = rendered.split(PLACEHOLDER)
            return self._ids(before), self._ids(after + prompt.assistant_prefix), self.tail_ids(prompt.tail)
        prefix = [tok.cls_token_id] if tok.cls_token_id is not None else []
        prefix += self._ids(f"{prompt.system} {prompt.user_prefix}")
        suffix = self._ids(f"{prompt.user_suffix} {prompt.assistant_prefix}")
        end = [tok.sep_token_id] if tok.sep_token_id is not None else []
        return prefix, suffix, self._ids(prompt.tail) + end

    def tail_ids(self, quote: str, n_tail: int = 3) -> list[int]:
        """The reference's zero-shot tail after the K masks: the closing quote (when it is one token), the
        end-of-turn token (when there is one and it is not eos), then eos up to ``n_tail`` tokens."""
        ids = self._ids(quote)
        tail = ids if len(ids) == 1 else []
        eot, eos = self.end_of_turn_id(), self.tokenizer.eos_token_id
        if eot is not None and eot != eos:
            tail.append(eot)
        if eos is None and len(tail) < n_tail:
            raise ValueError(f"{self.source}: the tokenizer has no eos token to end the prompt tail")
        return (tail + [int(eos)] * n_tail)[:n_tail]

    def end_of_turn_id(self) -> int | None:
        """The token closing an assistant turn (family-specific; none by default)."""
        return None

    # ----------------------------------------------------------------- model

    @abstractmethod
    def forward_at(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                   positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One forward pass: (B, L) ids, (B, L) key-padding mask, (B, K) positions -> (B, K, H) last-layer hidden
        states (after the final norm) and (B, K, V) logits at those positions."""

    def describe(self) -> dict:
        """What metadata.json records about the backbone."""
        return {"family": self.family, "source": self.source, "vocab_size": self.vocab_size,
                "hidden_size": self.hidden_size, "mask_token_id": self.mask_token_id, "pad_token_id": self.pad_token_id,
                "stop_token_ids": sorted(self.stop_token_ids())}


def resolve_device(device: str | None) -> torch.device:
    """``auto``/None -> cuda when present, else cpu; anything else as given."""
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str | None, device: torch.device) -> torch.dtype:
    """``auto`` -> bfloat16 on cuda, float32 on cpu; else ``bf16``/``fp16``/``fp32``."""
    table = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16,
             "fp32": torch.float32, "float32": torch.float32}
    if dtype in (None, "", "auto"):
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if dtype not in table:
        raise ValueError(f"unknown dtype {dtype!r}; use one of auto, {', '.join(sorted(table))}")
    return table[dtype]

