"""Retrieval prompt templates, kept as YAML data and validated on load.

A template file holds a ``system`` message, the ``tail`` written after the K masks, and ``variants`` (one / few /
three words), each with a ``passage`` and a ``query`` side made of ``user_prefix``, ``user_suffix`` and
``assistant_prefix``. The user message is ``user_prefix + TEXT + user_suffix``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from diffretriever_pyserini.errors import UserError

SIDES = ("passage", "query")
NUMBER_WORDS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
"""Count words the prompts may name; a prompt is rewritten to name K (the reference's K adaptation)."""
SIDE_FIELDS = ("user_prefix", "user_suffix", "assistant_prefix")
DEFAULT_TEMPLATE = "zero_shot"


class PromptError(UserError):
    """A template file that is missing, malformed or lacks a field; the message names file and field."""


@dataclass(frozen=True)
class SidePrompt:
    """The fixed text around one input on one side (passage or query) of one variant."""

    system: str
    user_prefix: str
    user_suffix: str
    assistant_prefix: str
    tail: str


@dataclass(frozen=True)
class PromptTemplate:
    """A validated template file: ``side(variant, side)`` gives the pieces for one input kind."""

    name: str
    system: str
    tail: str
    variants: dict

    def side(self, variant: str, side: str, k: int | None = None) -> SidePrompt:
        """The pieces for one input kind; with ``k`` the count words are rewritten to name K (:func:`adapt_to_k`)."""
        if variant not in self.variants:
            raise PromptError(f"template {self.name!r} has no variant {variant!r}; it has {sorted(self.variants)}")
        if side not in SIDES:
            raise PromptError(f"side must be one of {SIDES}, got {side!r}")
        fields = self.variants[variant][side]
        suffix, assistant = fields["user_suffix"], fields["assistant_prefix"]
        if k is not None:
            suffix, assistant = adapt_to_k(suffix, k), adapt_to_k(assistant, k)
        return SidePrompt(self.system, fields["user_prefix"], suffix, assistant, self.tail)


_COUNT = re.compile(r"\b(?:" + "|".join(NUMBER_WORDS) + r")\b\s+words?")


def adapt_to_k(text: str, k: int) -> str:
    """Rewrite the count a prompt names to match K masks, as the reference does for every prompt side.

    K = 1 leaves the text alone. Otherwise "<number word> word(s)" becomes "<K> words" (K spelled out up to ten,
    digits above) and "word is" becomes "words are": the "one" variant at K = 4 asks for "four words" and says
    "The words are", the "three" variant at K = 4 asks for "four words"; "a few words" names no count and stays.
    """
    if k <= 1 or not text:
        return text
    count = NUMBER_WORDS[k - 1] if k <= len(NUMBER_WORDS) else str(k)
    text = _COUNT.sub(f"{count} words", text)
    return re.sub(r"\bword is\b", "words are", text)


def default_variant(k: int) -> str:
    """The paper's wording for a budget of K masks: "one word" for K = 1, "a few words" otherwise."""
    return "one" if k == 1 else "few"


def load_template(name_or_path: str = DEFAULT_TEMPLATE) -> PromptTemplate:
    """Load a packaged template by name (``zero_shot``) or a YAML file by path, validating every field."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise PromptError(f"prompt template file {path} does not exist")
        text, label = path.read_text(encoding="utf-8"), str(path)
    else:
        packaged = resources.files(__name__) / f"{name_or_path}.yaml"
        if not packaged.is_file():
            names = sorted(p.name[:-5] for p in resources.files(__name__).iterdir() if p.name.endswith(".yaml"))
            raise PromptError(f"unknown prompt template {name_or_path!r}; packaged: {names}, or give a .yaml path")
        text, label = packaged.read_text(encoding="utf-8"), f"{name_or_path}.yaml"
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PromptError(f"{label}: invalid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise PromptError(f"{label}: expected a mapping at the top level")
    for key in ("system", "tail", "variants"):
        if key not in data:
            raise PromptError(f"{label}: missing top-level field {key!r}")
    variants = data["variants"]
    if not isinstance(variants, dict) or not variants:
        raise PromptError(f"{label}: 'variants' must be a non-empty mapping")
    for variant, sides in variants.items():
        for side in SIDES:
            if not isinstance(sides, dict) or side not in sides:
                raise PromptError(f"{label}: variant {variant!r} lacks the {side!r} side")
            for field in SIDE_FIELDS:
                if not isinstance(sides[side].get(field), str):
                    raise PromptError(f"{label}: variants.{variant}.{side}.{field} must be a string")
    return PromptTemplate(name=str(name_or_path), system=str(data["system"]), tail=str(data["tail"]),
                          variants=variants)
