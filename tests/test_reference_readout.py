"""The readout against the authors' released code, rule by rule, on tiny Dream, LLaDA and autoregressive checkpoints.

Each expected value comes from a naive re-statement of the reference's steps written here with explicit loops
(``scripts/encode.py`` with ``DreamRetriever`` / ``LLaDA2Retriever`` for zero-shot and ``TrainableDiffusionRetriever``
for fine-tuned models, as REFERENCE.md sections 3-5 describe them): the sentinel split of the chat template, the
tokenizer's own truncation of the text, per-row decoding and stop loops, per-position top-k, int() or round().
Only the network's forward pass is shared with the code under test.
"""

import json
import math

import numpy as np
import pytest
import torch

from diffretriever_pyserini.backbones import load_backbone
from diffretriever_pyserini.testing.tiny import write_checkpoint
from diffretriever_pyserini.encoders import DiffRetrieverDocumentEncoder, DiffRetrieverQueryEncoder, build_reader
from diffretriever_pyserini.readout.lexical import content_words
from diffretriever_pyserini.prompts import load_template
from diffretriever_pyserini.readout.kmask import KMaskReader, ReadoutConfig

SENTINEL = "XSENTINELX"
LONG = " ".join(["microglia brain immune cells protein gene expression cancer tumour patients"] * 40)
TEXTS = ["what about microglia?", "Cancer. Tumour growth factor receptor signalling in mouse model study results",
         LONG, "Don't stop: covid-19 vaccine trial showed 3.5 fold increased levels"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-ref")
    return {f: write_checkpoint(root / f, f, seed=i + 3) for i, f in enumerate(["dream", "llada", "qwen2"])}


@pytest.fixture(scope="module")
def backbones(tiny):
    return {f: load_backbone(str(tiny[f]), device="cpu", dtype="fp32") for f in tiny}


# --------------------------------------------------------------------------- the reference, re-stated naively


def ref_prompt_ids(tok, side, k, variant="few"):
    """prefix / suffix ids by the reference's sentinel split of the rendered chat template."""
    p = load_template().side(variant, side, k)
    messages = [{"role": "system", "content": p.system},
                {"role": "user", "content": p.user_prefix + SENTINEL + p.user_suffix}]
    full = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    pre, post = full.split(SENTINEL, 1)
    return tok.encode(pre, add_special_tokens=False), tok.encode(post + p.assistant_prefix, add_special_tokens=False)


def ref_tail(tok, eot_token):
    """Zero-shot tail: the quote if it is one token, the end-of-turn token unless it is eos, eos to 3 tokens."""
    quote = tok.encode('"', add_special_tokens=False)
    eot = tok.convert_tokens_to_ids(eot_token)
    tail = [quote[0]] if len(quote) == 1 else []
    if eot is not None and eot != tok.unk_token_id and eot != tok.eos_token_id:
        tail.append(eot)
    while len(tail) < 3:
        tail.append(tok.eos_token_id)
    return tail[:3]


def ref_inputs(bb, texts, side, k, max_length=256, eot_token="<|im_end|>", prefix=None, suffix=None, tail=None):
    tok = bb.tokenizer
    if prefix is None:
        prefix, suffix = ref_prompt_ids(tok, side, k)
    tail = ref_tail(tok, eot_token) if tail is None else tail
    budget = max_length - len(prefix) - len(suffix)
    texts_ids = tok(texts, truncation=True, max_length=budget, add_special_tokens=False)["input_ids"]
    return [prefix + ids + suffix + [bb.mask_token_id] * k + tail for ids in texts_ids]


def ref_forward(bb, seqs):
    """Left-padded batch through the network: (B, L, H) hidden states, (B, L, V) logits, padded length."""
    length = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), length), bb.pad_token_id)
    mask = torch.zeros((len(seqs), length), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, length - len(s):] = torch.tensor(s)
        mask[i, length - len(s):] = 1
    with torch.no_grad():
        hidden = bb.model.hidden_states(ids, mask)
        return ids, mask, hidden, bb.model.logits(hidden)


def content_ids(tok, text):
    words = content_words(text)
    return {i for ids in tok(words, add_special_tokens=False)["input_ids"] for i in ids} if words else set()


def position_sparse(logit_row, allowed, mask_id, top_k, mode, exclude_mask=True):
    """One position: logits outside the content ids (and the mask id) zeroed, log(1 + relu), top-k, quantised."""
    keep = torch.zeros_like(logit_row)
    if allowed:
        keep[list(allowed)] = 1.0
    if exclude_mask:
        keep[mask_id] = 0.0
    if mode == "truncate":
        values, index = torch.log(1 + torch.relu(logit_row * keep)).topk(top_k)
        values = (values * 100).int()
    else:
        values, index = (torch.log1p(torch.relu(logit_row)) * keep).topk(top_k)
        values = (values.float() * 100).round().int()
    return {int(i): int(v) for i, v in zip(index, values) if v > 0}


def pool(dicts):
    out = {}
    for d in dicts:
        for i, v in d.items():
            out[i] = max(out.get(i, 0), v)
    return out


def ref_zero_shot(bb, texts, side, k, steps=1, eot_token="<|im_end|>"):
    """``DreamRetriever`` / ``LLaDA2Retriever`` all_steps encoding (zero-shot), per text."""
    tok = bb.tokenizer
    seqs = ref_inputs(bb, texts, side, k, eot_token=eot_token)
    ids, mask, _, _ = ref_forward(bb, seqs)
    g = ids.shape[1] - k - 3
    b = len(texts)
    dense = torch.zeros(b, k, bb.hidden_size)
    sparse = [[{} for _ in range(k)] for _ in range(b)]
    saved = torch.zeros(b, k, dtype=torch.bool)
    timesteps = torch.linspace(1, 1e-3, steps + 1)
    allowed = [content_ids(tok, t) for t in texts]
    for step in range(steps):
        with torch.no_grad():
            hidden = bb.model.hidden_states(ids, mask)
            logits = bb.model.logits(hidden)
        for i in range(b):
            block = ids[i, g:g + k + 3]
            masked = block == bb.mask_token_id
            n = int(masked.sum())
            if n == 0:
                continue
            mlogits = logits[i, g:g + k + 3][masked]
            probs = torch.softmax(mlogits, -1)
            x0 = probs.max(-1).indices
            conf = (probs * torch.log(probs + 1e-10)).sum(-1)
            take = n if step == steps - 1 else min(n, max(1, int(n * (1 - timesteps[step + 1] / timesteps[step]))))
            chosen = torch.topk(conf, take).indices
            where = torch.where(masked)[0]
            for c in chosen.tolist():
                pos = int(where[c])
                if pos < k and not saved[i, pos]:
                    dense[i, pos] = hidden[i, g + pos]
                    sparse[i][pos] = position_sparse(logits[i, g + pos], allowed[i], bb.mask_token_id, 128,
                                                     "truncate")
                    saved[i, pos] = True
            ids[i, g + where[chosen]] = x0[chosen]
    stop_ids = set(tok.all_special_ids) - {bb.mask_token_id}
    out_dense, out_sparse = [], []
    for i in range(b):
        cutoff = next((p for p in range(k) if int(ids[i, g + p]) in stop_ids), k)
        if cutoff > 0:
            dense[i, cutoff:] = 0.0
            for p in range(cutoff, k):
                sparse[i][p] = {}
        norms = dense[i].norm(dim=-1, keepdim=True).clamp_min(1e-12)
        out_dense.append((dense[i] / norms).numpy())
        out_sparse.append(pool(sparse[i]))
    return np.stack(out_dense), out_sparse, ids[:, g:g + k]


def ref_fine_tuned(bb, texts, side, k, steps=1, prefix=None, suffix=None, tail=None, max_k=None,
                   eot_token="<|im_end|>"):
    """``TrainableDiffusionRetriever.encode`` + ``scripts/encode.py``'s trained path (top 256, round, no stop)."""
    tok = bb.tokenizer
    seqs = ref_inputs(bb, texts, side, k, prefix=prefix, suffix=suffix, tail=tail, eot_token=eot_token)
    ids, mask, hidden, logits = ref_forward(bb, seqs)
    g = ids.shape[1] - k - (3 if tail is None else len(tail))
    b = len(texts)
    allowed = [content_ids(tok, t) for t in texts]
    steps = min(steps, max_k or k)
    if steps <= 1:
        dense = hidden[:, g:g + k]
        sparse = [pool(position_sparse(logits[i, g + p], allowed[i], bb.mask_token_id, 256, "round",
                                       exclude_mask=False) for p in range(k)) for i in range(b)]
    else:
        dense = torch.zeros(b, k, bb.hidden_size)
        pooled = torch.zeros(b, logits.shape[-1])
        saved = torch.zeros(b, k, dtype=torch.bool)
        per_step = max(1, k // steps)
        for step in range(steps):
            with torch.no_grad():
                hidden = bb.model.hidden_states(ids, mask)
                logits = bb.model.logits(hidden)
            gen = ids[:, g:g + k]
            masked = gen == bb.mask_token_id
            probs = torch.softmax(logits[:, g:g + k].float(), -1)
            conf = (probs * torch.log(probs + 1e-10)).sum(-1)
            x0 = probs.argmax(-1)
            if step == steps - 1:
                transfer = masked.clone()
            else:
                conf = torch.where(masked, conf, torch.full_like(conf, -float("inf")))
                transfer = torch.zeros_like(masked)
                for i in range(b):
                    transfer[i, conf[i].topk(min(per_step, k)).indices] = True
                transfer &= masked
            ids[:, g:g + k] = torch.where(transfer, x0, gen)
            for i in range(b):
                for p in range(k):
                    if (transfer[i, p] or step == steps - 1) and not saved[i, p]:
                        dense[i, p] = hidden[i, g + p]
                        pooled[i] = torch.maximum(pooled[i], torch.log1p(torch.relu(logits[i, g + p])))
                        saved[i, p] = True
        sparse = []
        for i in range(b):
            keep = torch.zeros(pooled.shape[1])
            keep[list(allowed[i])] = 1.0
            values, index = (pooled[i] * keep).topk(256)
            sparse.append({int(j): int(v) for j, v in zip(index, (values * 100).round().int()) if v > 0})
    dense = dense / dense.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return dense.numpy(), sparse


def as_terms(bb, sparse_ids):
    """{token id: impact} -> {token string: impact} (two ids with one string keep the max), as the writers index."""
    out = {}
    for i, v in sparse_ids.items():
        term = bb.tokenizer.convert_ids_to_tokens([i])[0]
        out[term] = max(out.get(term, 0), v)
    return dict(sorted(out.items()))


EOT = {"dream": "<|im_end|>", "llada": "<|eot_id|>"}


# --------------------------------------------------------------------------- input layout


@pytest.mark.parametrize("family", ["dream", "llada"])
@pytest.mark.parametrize("side", ["query", "passage"])
def test_input_ids_match_the_reference_layout(backbones, family, side):
    bb = backbones[family]
    for k in (1, 4, 16):
        reader = KMaskReader(bb, side, ReadoutConfig(k=k, variant="few"))
        expected = ref_inputs(bb, TEXTS, side, k, eot_token=EOT[family])
        ids, mask, pos, truncated = reader.batch_inputs(TEXTS)
        got = [row[m.bool()].tolist() for row, m in zip(ids, mask)]
        assert got == expected
        assert truncated == [False, False, True, False]
        # the long text keeps exactly 256 - prompt tokens of TEXT; the K masks and the 3-token tail come on top
        assert len(got[2]) == 256 + k + 3
        assert [row[p].tolist() for row, p in zip(ids, pos)] == [[bb.mask_token_id] * k] * len(TEXTS)


def test_title_documents_and_the_one_word_prompt(backbones):
    bb = backbones["dream"]
    from diffretriever_pyserini.datasets import document_text

    doc = document_text("Microglia ", " in the brain")  # joined as the reference joins BEIR fields, no stripping
    assert doc == "Microglia .  in the brain"
    reader = KMaskReader(bb, "passage", ReadoutConfig(k=4, variant="one"))
    prefix, suffix = ref_prompt_ids(bb.tokenizer, "passage", 4, variant="one")
    assert (reader.prefix, reader.suffix) == (prefix, suffix)
    assert "Use four words" in bb.tokenizer.decode(reader.suffix)  # the count rewritten to K


def test_autoregressive_prompt_layout(backbones):
    """PromptReps reads prefix + text + suffix (no masks fed); the same text budget."""
    bb = backbones["qwen2"]
    reader = KMaskReader(bb, "query", ReadoutConfig(k=1))
    prefix, suffix = ref_prompt_ids(bb.tokenizer, "query", 1, variant="one")
    assert (reader.prefix, reader.suffix) == (prefix, suffix)
    assert reader.text_budget == 256 - len(prefix) - len(suffix)
    meta = reader.metadata()
    assert (meta["top_k"], meta["quantisation"], meta["stop"]) == (256, "truncate", "generated")
    quote = bb.tokenizer.encode('"', add_special_tokens=False)
    assert set(quote) <= bb.stop_token_ids() and set(bb.tokenizer.all_special_ids) <= bb.stop_token_ids()


# --------------------------------------------------------------------------- one pass and several


@pytest.mark.parametrize("family", ["dream", "llada"])
@pytest.mark.parametrize("k", [1, 4, 16])
def test_zero_shot_readout_equals_the_reference(backbones, family, k):
    bb = backbones[family]
    reader = KMaskReader(bb, "passage", ReadoutConfig(k=k, variant="few"))
    out = reader.read(TEXTS)
    dense, sparse, decoded = ref_zero_shot(bb, TEXTS, "passage", k, eot_token=EOT[family])
    np.testing.assert_allclose(out.dense, dense, atol=1e-5)
    assert out.sparse == [as_terms(bb, s) for s in sparse]
    assert out.decoded.tolist() == decoded.tolist()
    meta = reader.metadata()
    assert (meta["top_k"], meta["quantisation"], meta["stop"], meta["fallback_k"]) == (128, "truncate", "decoded", 0)


@pytest.mark.parametrize("family", ["dream", "llada"])
def test_multi_step_denoising_equals_the_reference(backbones, family):
    bb = backbones[family]
    for k, steps in ((4, 2), (4, 4), (6, 3)):
        reader = KMaskReader(bb, "query", ReadoutConfig(k=k, denoise_steps=steps, variant="few"))
        out = reader.read(TEXTS)
        dense, sparse, decoded = ref_zero_shot(bb, TEXTS, "query", k, steps=steps, eot_token=EOT[family])
        np.testing.assert_allclose(out.dense, dense, atol=1e-5)
        assert out.sparse == [as_terms(bb, s) for s in sparse]
        assert out.decoded.tolist() == decoded.tolist()
    one_pass = KMaskReader(bb, "query", ReadoutConfig(k=4, variant="few")).read(TEXTS)
    assert np.abs(one_pass.dense - KMaskReader(bb, "query", ReadoutConfig(k=4, denoise_steps=4)).read(
        TEXTS).dense).max() > 1e-4  # later passes see decoded tokens: the vectors move


@pytest.mark.parametrize("finetuned", [False, True])
def test_one_denoising_step_is_the_one_pass_readout(backbones, finetuned):
    bb = backbones["dream"]
    reader = KMaskReader(bb, "passage", ReadoutConfig(k=4, finetuned=finetuned))
    one_pass = reader.read(TEXTS)
    looped = reader._read_denoised(TEXTS)  # the multi-step loop run with S = 1
    np.testing.assert_allclose(looped.dense, one_pass.dense, atol=1e-6)
    if not finetuned:  # fine-tuned multi-step pools before its top-k (the reference's order); top 256 of 529 differ
        assert looped.sparse == one_pass.sparse
    assert looped.keep.tolist() == one_pass.keep.tolist()


@pytest.mark.parametrize("steps", [1, 2, 4])
def test_fine_tuned_rules_equal_the_reference(backbones, steps):
    bb = backbones["llada"]
    reader = KMaskReader(bb, "passage", ReadoutConfig(k=4, finetuned=True, denoise_steps=steps))
    out = reader.read(TEXTS)
    dense, sparse = ref_fine_tuned(bb, TEXTS, "passage", 4, steps=steps, eot_token=EOT["llada"])
    np.testing.assert_allclose(out.dense, dense, atol=1e-5)
    assert out.sparse == [as_terms(bb, s) for s in sparse]
    assert out.keep.all()  # never a decoded-token stop for a fine-tuned model
    meta = reader.metadata()
    assert (meta["top_k"], meta["quantisation"], meta["stop"], meta["term_weight"]) == (256, "round", "none",
                                                                                          "log1p")


def test_dense_from_the_lm_head_output(backbones):
    """The reference's fine-tuned LLaDA readout: the dense vector is the (normalised) LM-head output."""
    bb = backbones["llada"]
    reader = KMaskReader(bb, "query", ReadoutConfig(k=2, finetuned=True, dense_source="lm-head-output"))
    out = reader.read(TEXTS[:2])
    seqs = ref_inputs(bb, TEXTS[:2], "query", 2, eot_token=EOT["llada"])
    ids, _, _, logits = ref_forward(bb, seqs)
    g = ids.shape[1] - 2 - 3
    expected = logits[:, g:g + 2] / logits[:, g:g + 2].norm(dim=-1, keepdim=True)
    assert out.dense.shape == (2, 2, bb.vocab_size)
    np.testing.assert_allclose(out.dense, expected.numpy(), atol=1e-5)


# --------------------------------------------------------------------------- fine-tuned folders


def _adapter(bb_source, folder, family, alpha_pattern=None, rank_pattern=None, targets=None, seed=2, **config):
    """A PEFT LoRA adapter of a tiny checkpoint, saved in the released layout (adapter_config.json +
    adapter_model.safetensors); returns the peft-wrapped fp32 model for an unmerged forward."""
    import peft
    from safetensors.torch import save_file

    base = load_backbone(str(bb_source), device="cpu", dtype="fp32")
    targets = targets or (["q_proj", "v_proj", "o_proj", "up_proj"] if family == "dream" else
                          ["q_proj", "v_proj", "attn_out", "ff_proj", "up_proj", "ff_out"])
    lora = peft.LoraConfig(r=4, lora_alpha=16, target_modules=targets, lora_dropout=0.0, init_lora_weights=False,
                           alpha_pattern=alpha_pattern or {}, rank_pattern=rank_pattern or {})
    torch.manual_seed(seed)
    model = peft.inject_adapter_in_model(lora, base.model)
    model.eval()
    folder.mkdir(parents=True, exist_ok=True)
    state = peft.get_peft_model_state_dict(model)
    save_file({f"base_model.model.{k}": v.contiguous() for k, v in state.items()},
              str(folder / "adapter_model.safetensors"))
    (folder / "adapter_config.json").write_text(json.dumps(
        {"peft_type": "LORA", "r": 4, "lora_alpha": 16, "target_modules": targets,
         "alpha_pattern": alpha_pattern or {}, "rank_pattern": rank_pattern or {},
         "base_model_name_or_path": "Dream-org/Dream-v0-Instruct-7B", **config}))
    return base


def _released(bb, folder, k_q=2, k_p=3, **extra):
    """retriever_config.json as the reference's training code writes it (prompt ids of the "one" prompt
    rewritten for K, as its from_backbone does)."""
    q_prefix, q_suffix = ref_prompt_ids(bb.tokenizer, "query", k_q, variant="one")
    p_prefix, p_suffix = ref_prompt_ids(bb.tokenizer, "passage", k_p, variant="one")
    config = {"model_type": "dream", "mask_token_id": bb.mask_token_id, "hidden_size": bb.hidden_size,
              "max_length": 512, "n_gen_tokens": 4, "n_gen_q_tokens": k_q, "n_gen_p_tokens": k_p,
              "temperature": 0.01, "flops_weight": 0.0, "num_denoise_steps": 1, "sparse_weight": 1.0,
              "normalize": True, "query_prefix_ids": q_prefix, "query_suffix_ids": q_suffix,
              "passage_prefix_ids": p_prefix, "passage_suffix_ids": p_suffix, "lora_rank": 4, "lora_alpha": 16,
              "use_eos": False, "n_tail": 3, **extra}
    (folder / "retriever_config.json").write_text(json.dumps(config))
    return config


def test_released_checkpoint_folder_is_read_as_trained(tiny, tmp_path):
    adapter = tmp_path / "diffretriever-dream-multi-q2-p3"
    _adapter(tiny["dream"], adapter, "dream")
    config = _released(load_backbone(str(tiny["dream"]), device="cpu", dtype="fp32"), adapter)
    doc = DiffRetrieverDocumentEncoder(str(tiny["dream"]), device="cpu", dtype="fp32", adapter=str(adapter))
    query = DiffRetrieverQueryEncoder(str(tiny["dream"]), device="cpu", dtype="fp32", adapter=str(adapter))
    assert (query.reader.config.k, doc.reader.config.k) == (2, 3)  # K_q, K_p from the folder, not 4/4
    for enc, side in ((query, "query"), (doc, "passage")):
        meta = enc.reader.metadata()
        assert meta["regime"] == "fine-tuned" and meta["top_k"] == 256 and meta["quantisation"] == "round"
        assert meta["stop"] == "none" and meta["finetuned"]["k_q"] == 2
        assert enc.reader.prefix == config[f"{side}_prefix_ids"] and enc.reader.suffix == config[f"{side}_suffix_ids"]
        tok = enc.reader.backbone.tokenizer
        assert tok.convert_ids_to_tokens(enc.reader.tail) == ['"', "<|im_end|>", "<|endoftext|>"]
    bb = doc.reader.backbone  # the base with the adapter merged
    dense, sparse = ref_fine_tuned(bb, TEXTS, "passage", 3, prefix=config["passage_prefix_ids"],
                                   suffix=config["passage_suffix_ids"], tail=list(doc.reader.tail))
    out = doc.read(TEXTS)
    np.testing.assert_allclose(out.dense, dense, atol=1e-5)
    assert out.sparse == [as_terms(bb, s) for s in sparse]


def test_adapters_that_do_not_fit_are_refused(tiny, tmp_path):
    from diffretriever_pyserini.readout.finetuned import FineTunedError

    bb = load_backbone(str(tiny["dream"]), device="cpu", dtype="fp32")
    adapter = tmp_path / "a"
    _adapter(tiny["dream"], adapter, "dream")
    _released(bb, adapter, mask_token_id=bb.mask_token_id + 1)
    with pytest.raises(FineTunedError, match="mask_token_id"):
        DiffRetrieverQueryEncoder(str(tiny["dream"]), device="cpu", adapter=str(adapter))
    _released(bb, adapter, model_type="llada1")
    with pytest.raises(FineTunedError, match="trained on a llada backbone"):
        DiffRetrieverQueryEncoder(str(tiny["dream"]), device="cpu", adapter=str(adapter))
    _released(bb, adapter, use_k_adapter=True)
    with pytest.raises(FineTunedError, match="use_k_adapter"):
        DiffRetrieverQueryEncoder(str(tiny["dream"]), device="cpu", adapter=str(adapter))
    # an adapter of another architecture (LLaDA weights on Dream): a clear error, not a silent partial merge
    other = tmp_path / "llada-adapter"
    _adapter(tiny["llada"], other, "llada")
    with pytest.raises(KeyError, match="model does not have"):
        load_backbone(str(tiny["dream"]), device="cpu", adapter=str(other))


def test_lora_merge_in_fp32_on_a_bf16_checkpoint(tiny, tmp_path):
    """A bf16-stored base run in fp32: merged at fp32 precision, equal to peft's unmerged fp32 forward."""
    base = load_backbone(str(tiny["dream"]), device="cpu", dtype="fp32")
    bf16 = write_checkpoint(tmp_path / "bf16", "dream", state={k: v.to(torch.bfloat16)
                                                               for k, v in base.model.state_dict().items()})
    adapter = tmp_path / "adapter"
    peft_model = _adapter(bf16, adapter, "dream")  # peft on the bf16 weights cast to fp32
    ids = torch.tensor([[3, 20, 21, 22, base.mask_token_id, base.mask_token_id]])
    mask, pos = torch.ones_like(ids), torch.tensor([[4, 5]])
    with torch.no_grad():
        h_peft, _ = peft_model.forward_at(ids, mask, pos)
    merged = load_backbone(str(bf16), device="cpu", dtype="fp32", adapter=str(adapter))
    h_merged, _ = merged.forward_at(ids, mask, pos)
    torch.testing.assert_close(h_merged, h_peft, atol=2e-6, rtol=1e-5)
    # what merging in bf16 first would give: visibly further away
    from diffretriever_pyserini.backbones.checkpoint import merge_lora

    in_bf16 = load_backbone(str(bf16), device="cpu", dtype="bf16")
    merge_lora(in_bf16.model, adapter, torch.bfloat16)
    in_bf16.model.float()
    h_bf16, _ = in_bf16.forward_at(ids, mask, pos)
    assert (h_bf16 - h_peft).abs().max() > 10 * (h_merged - h_peft).abs().max()


def test_alpha_and_rank_patterns_are_honoured(tiny, tmp_path):
    adapter = tmp_path / "patterns"
    peft_model = _adapter(tiny["dream"], adapter, "dream", alpha_pattern={"q_proj": 64, "layers.1.mlp.up_proj": 2},
                          rank_pattern={"v_proj": 2})
    ids = torch.tensor([[3, 20, 21, 22, peft_model.mask_token_id]])
    mask, pos = torch.ones_like(ids), torch.tensor([[4]])
    with torch.no_grad():
        h_peft, l_peft = peft_model.forward_at(ids, mask, pos)
    merged = load_backbone(str(tiny["dream"]), device="cpu", dtype="fp32", adapter=str(adapter))
    h, logits = merged.forward_at(ids, mask, pos)
    torch.testing.assert_close(h, h_peft, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(logits, l_peft, atol=1e-4, rtol=1e-4)
    # ignoring the pattern (alpha 16 everywhere) would be far off
    config = json.loads((adapter / "adapter_config.json").read_text())
    config["alpha_pattern"] = {}
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    plain = load_backbone(str(tiny["dream"]), device="cpu", dtype="fp32", adapter=str(adapter))
    assert (plain.forward_at(ids, mask, pos)[0] - h_peft).abs().max() > 1e-3


@pytest.mark.parametrize("flag", [{"use_dora": True}, {"lora_bias": True}, {"modules_to_save": ["lm_head"]}])
def test_adapters_merge_cannot_express_are_refused(tiny, tmp_path, flag):
    adapter = tmp_path / "x"
    _adapter(tiny["dream"], adapter, "dream", **flag)
    with pytest.raises(ValueError, match=list(flag)[0]):
        load_backbone(str(tiny["dream"]), device="cpu", adapter=str(adapter))


@pytest.mark.parametrize("family,flag", [
    ("llada", {"rope": False}), ("llada", {"block_type": "sequential"}), ("llada", {"layer_norm_type": "default"}),
    ("llada", {"input_emb_norm": True}), ("llada", {"scale_logits": True}), ("llada", {"alibi": True}),
    ("dream", {"rope_scaling": {"type": "linear", "factor": 2.0}}), ("dream", {"use_sliding_window": True})])
def test_unsupported_architecture_flags_are_refused(tiny, tmp_path, family, flag):
    import shutil

    folder = tmp_path / family
    shutil.copytree(tiny[family], folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(flag)
    (folder / "config.json").write_text(json.dumps(config))
    name = list(flag)[0]
    with pytest.raises(ValueError, match=f"sets {name}="):
        load_backbone(str(folder), device="cpu")


def test_trained_here_writes_what_the_encoders_read(tiny, tmp_path):
    """This project's own fine-tuned folder carries a retriever_config.json of the reference's shape."""
    from diffretriever_pyserini.readout.finetuned import find

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    docs = [{"id": f"d{i}", "contents": f"document {i} about microglia cells"} for i in range(6)]
    (corpus / "part-00000.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    from diffretriever_pyserini.training.data import TrainingExample, write_examples
    from diffretriever_pyserini.training.trainer import TrainConfig, train

    write_examples(tmp_path / "t.jsonl", [TrainingExample(f"q{i}", f"query {i}", [f"d{i}"], [f"d{(i + 1) % 6}"])
                                          for i in range(4)])
    final = train(TrainConfig(train=str(tmp_path / "t.jsonl"), corpus=str(corpus), out=str(tmp_path / "ft"),
                              model=str(tiny["llada"]), device="cpu", max_steps=1, batch_size=2, negatives=1,
                              lora_r=2, precision="fp32", save_every=1))
    tuned = find(str(tiny["llada"]), str(final))
    c = tuned.config
    assert (tuned.k_q, tuned.k_p, tuned.family) == (4, 4, "llada")  # the paper recipe's K on LLaDA
    assert {"query_prefix_ids", "passage_suffix_ids", "n_tail", "mask_token_id", "hidden_size"} <= set(c)
    recipe = c["diffretriever"]
    assert recipe["recipe"] == "paper" and recipe["tau"] == 0.01 and recipe["q_text_length"] == 32
    assert recipe["maxsim_clamp"] is False and recipe["lr"] == 1e-4 and recipe["negatives"] == 1
    enc = DiffRetrieverQueryEncoder(str(tiny["llada"]), device="cpu", dtype="fp32", adapter=str(final))
    assert enc.reader.metadata()["regime"] == "fine-tuned" and enc.reader.prefix == c["query_prefix_ids"]


def test_build_reader_takes_explicit_options_over_the_folder(tiny, tmp_path):
    adapter = tmp_path / "a"
    _adapter(tiny["dream"], adapter, "dream")
    _released(load_backbone(str(tiny["dream"]), device="cpu", dtype="fp32"), adapter, num_denoise_steps=2)
    reader = build_reader(str(tiny["dream"]), "query", device="cpu", adapter=str(adapter))
    assert reader.config.denoise_steps == 2  # the trained steps, capped at max(K_q, K_p) = 3
    reader = build_reader(str(tiny["dream"]), "query", device="cpu", adapter=str(adapter), denoise_steps=1,
                          top_k=64, quantisation="truncate")
    assert (reader.config.denoise_steps, reader.config.top_k, reader.config.quantisation) == (1, 64, "truncate")
    assert math.isclose(len(reader.read(["microglia"]).dense[0]), 2)
