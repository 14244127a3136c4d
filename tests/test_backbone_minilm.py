"""The packaged MiniLM backbone: offline load, bidirectional attention, padding invariance, prompt layout."""

import numpy as np
import pytest
import torch

from diffretriever_pyserini.backbones import BackboneError, load_backbone
from diffretriever_pyserini.readout.kmask import KMaskReader, ReadoutConfig


@pytest.fixture(scope="module")
def minilm():
    return load_backbone("minilm", device="cpu")


def test_loads_offline_with_mask_token(minilm, monkeypatch):
    assert minilm.family == "masked_lm"
    assert minilm.tokenizer.convert_ids_to_tokens([minilm.mask_token_id]) == ["[MASK]"]
    assert minilm.vocab_size == 30522


def test_prompt_layout_keeps_masks_and_tail(minilm):
    reader = KMaskReader(minilm, "passage", ReadoutConfig(k=3, max_length=64))
    tok = minilm.tokenizer
    assert tok.convert_ids_to_tokens(reader.prefix[:2]) == ["[CLS]", "you"]
    assert tok.decode(reader.suffix).endswith('the words are : "')
    assert tok.convert_ids_to_tokens(reader.tail) == ['"', "[SEP]"]
    out = reader.read(["word " * 500])  # far longer than max_length: only the text is cut
    assert out.truncated == [True] and out.dense.shape == (1, 3, 384)


def test_bidirectional_later_tokens_change_earlier_states(minilm):
    ids = torch.tensor([[101, 2023, 2003, 103, 1037, 3231, 102]])
    mask = torch.ones_like(ids)
    pos = torch.tensor([[3]])
    h1, _ = minilm.forward_at(ids, mask, pos)
    ids2 = ids.clone()
    ids2[0, 5] = 4937  # change a token AFTER the mask position
    h2, _ = minilm.forward_at(ids2, mask, pos)
    assert (h1 - h2).abs().max() > 1e-3


def test_left_padding_does_not_change_representations(minilm):
    reader = KMaskReader(minilm, "query", ReadoutConfig(k=4, max_length=96))
    texts = ["microglia in the brain", "a much longer query about the role of interleukin signalling in sepsis"]
    batch = reader.read(texts)
    for i, text in enumerate(texts):
        alone = reader.read([text])
        np.testing.assert_allclose(batch.dense[i], alone.dense[0], atol=1e-5)
        assert batch.sparse[i] == alone.sparse[0]


def test_unknown_models_name_the_options(tmp_path):
    with pytest.raises(BackboneError, match="packaged name"):
        load_backbone("no-such-model")
    (tmp_path / "config.json").write_text('{"model_type": "gpt_neox"}')
    with pytest.raises(BackboneError, match="supported model types"):
        load_backbone(str(tmp_path))
    with pytest.raises(BackboneError, match="supported: .*'dream', 'llada', 'masked_lm'"):
        load_backbone(str(tmp_path), family="mamba")
