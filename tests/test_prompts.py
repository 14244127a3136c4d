"""Prompt templates are data: packaged YAML loads, broken files are named precisely."""

import pytest

from diffretriever_pyserini.prompts import PromptError, default_variant, load_template


def test_packaged_template_has_the_paper_wording():
    t = load_template("zero_shot")
    p = t.side("few", "passage")
    assert p.system == "You are an AI assistant that can understand human language."
    assert p.user_prefix == 'Passage: "'
    assert p.user_suffix.startswith('". Use a few words to represent the passage in a retrieval task.')
    assert p.assistant_prefix == 'The words are: "' and p.tail == '"'
    assert t.side("one", "query").assistant_prefix == 'The word is: "'
    assert "split them by space" in t.side("three", "query").user_suffix
    assert default_variant(1) == "one" and default_variant(4) == "few"


def test_bad_templates_are_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("system: hi\ntail: x\nvariants:\n  few:\n"
                   "    passage: {user_prefix: a, user_suffix: b, assistant_prefix: c}\n")
    with pytest.raises(PromptError, match="lacks the 'query' side"):
        load_template(str(bad))
    bad.write_text("system: hi\ntail: x\nvariants:\n  few:\n    passage: {user_prefix: a, user_suffix: b}\n"
                   "    query: {user_prefix: a, user_suffix: b, assistant_prefix: c}\n")
    with pytest.raises(PromptError, match="variants.few.passage.assistant_prefix"):
        load_template(str(bad))
    with pytest.raises(PromptError, match="unknown prompt template 'nope'"):
        load_template("nope")
    with pytest.raises(PromptError, match="no variant 'many'"):
        load_template().side("many", "query")


def test_count_words_are_rewritten_to_name_k():
    from diffretriever_pyserini.prompts import adapt_to_k

    t = load_template()
    one = t.side("one", "passage", 4)
    assert one.user_suffix == ('". Use four words to represent the passage in a retrieval task. Make sure your words '
                               'are in lowercase.')
    assert one.assistant_prefix == 'The words are: "'
    assert t.side("one", "query", 1) == t.side("one", "query")  # K = 1 leaves the prompt alone
    assert t.side("few", "query", 16) == t.side("few", "query")  # "a few words" names no count
    assert "Use 16 words" in t.side("three", "query", 16).user_suffix
    assert "Use four words" in t.side("three", "query", 4).user_suffix
    # the reference's two substitutions in order, quirks included: the count rewrite consumes "word is" first
    assert adapt_to_k("ten word is", 10) == "ten words is"
    assert adapt_to_k("your word is", 2) == "your words are"
    assert adapt_to_k("one wordy", 2) == "two wordsy"
