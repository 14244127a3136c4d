"""Dream, LLaDA and autoregressive backbones on tiny random-weight models in the real hub layouts."""

import json
import math

import numpy as np
import pytest
import torch

from diffretriever_pyserini.backbones import load_backbone
from diffretriever_pyserini.testing.tiny import write_checkpoint
from diffretriever_pyserini.readout.kmask import KMaskReader, ReadoutConfig

FAMILIES = ["dream", "llada", "qwen2"]


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return {f: write_checkpoint(root / f, f, seed=i) for i, f in enumerate(FAMILIES)}


@pytest.fixture(scope="session")
def backbones(tiny):
    return {f: load_backbone(str(tiny[f]), device="cpu", dtype="fp32") for f in FAMILIES}


def test_registry_dispatches_on_config_model_type(backbones, tiny):
    assert backbones["dream"].family == "dream"  # config says "Dream" (capital D): matched case-insensitively
    assert json.loads((tiny["dream"] / "config.json").read_text())["model_type"] == "Dream"
    assert backbones["llada"].family == "llada" and backbones["qwen2"].family == "autoregressive"


def test_special_tokens_come_from_the_checkpoint(backbones):
    dream, llada = backbones["dream"], backbones["llada"]
    assert dream.tokenizer.convert_ids_to_tokens([dream.mask_token_id]) == ["<|mask|>"]
    assert llada.tokenizer.convert_ids_to_tokens([llada.mask_token_id]) == ["<|mdm_mask|>"]
    tail = KMaskReader(dream, "passage", ReadoutConfig(k=2)).tail
    assert dream.tokenizer.convert_ids_to_tokens(tail) == ['"', "<|im_end|>", "<|endoftext|>"]
    tail = KMaskReader(llada, "passage", ReadoutConfig(k=2)).tail
    assert llada.tokenizer.convert_ids_to_tokens(tail) == ['"', "<|eot_id|>", "<|endoftext|>"]


@pytest.mark.parametrize("family", FAMILIES)
def test_bidirectional_attention(backbones, family):
    bb = backbones[family]
    ids = torch.tensor([[10, 11, 12, 13, 14, 15, 16, 17]])
    mask = torch.ones_like(ids)
    changed = ids.clone()
    changed[0, 6] = 40
    if family == "qwen2":  # causal: a later token never changes an earlier state
        model = bb.model.get_decoder()
        h1 = model(input_ids=ids, attention_mask=mask).last_hidden_state[0, 3]
        h2 = model(input_ids=changed, attention_mask=mask).last_hidden_state[0, 3]
        assert torch.allclose(h1, h2, atol=1e-6)
    else:
        pos = torch.tensor([[3]])
        h1, _ = bb.forward_at(ids, mask, pos)
        h2, _ = bb.forward_at(changed, mask, pos)
        assert (h1 - h2).abs().max() > 1e-4


@pytest.mark.parametrize("family", FAMILIES)
def test_left_padding_invariance(backbones, family):
    """A left-padded batch equals each text alone to 1e-5 in fp32 (key-padding mask + positions from 0)."""
    reader = KMaskReader(backbones[family], "query", ReadoutConfig(k=3, max_length=200))
    texts = ["microglia", "clinical trial of a vaccine against virus infection in patients with heart disease"]
    batch = reader.read(texts)
    for i, text in enumerate(texts):
        alone = reader.read([text])
        np.testing.assert_allclose(batch.dense[i], alone.dense[0], atol=1e-5)
        assert batch.sparse[i] == alone.sparse[0]


@pytest.mark.parametrize("family", ["dream", "llada"])
def test_checkpoint_round_trip_reproduces_outputs(backbones, tiny, family, tmp_path):
    """Write the loaded weights back in hub layout (sharded, original names) and reload: identical outputs."""
    from safetensors.torch import load_file

    bb = backbones[family]
    index = json.loads((tiny[family] / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) == 2
    names = set(index["weight_map"])
    if family == "llada":
        assert {"model.transformer.wte.weight", "model.transformer.ff_out.weight",
                "model.transformer.blocks.0.ff_proj.weight", "model.transformer.blocks.0.attn_out.weight"} <= names
    else:
        assert {"model.embed_tokens.weight", "lm_head.weight", "model.layers.0.self_attn.q_proj.bias"} <= names
    state = {k: v.clone() for k, v in bb.model.state_dict().items()}
    out = write_checkpoint(tmp_path / family, family, state=state)
    shard = next(out.glob("*.safetensors"))
    assert set(load_file(str(shard))) <= names
    again = load_backbone(str(out), device="cpu", dtype="fp32")
    ids = torch.tensor([[3, 20, 21, 22, bb.mask_token_id, bb.mask_token_id]])
    mask, pos = torch.ones_like(ids), torch.tensor([[4, 5]])
    h1, l1 = bb.forward_at(ids, mask, pos)
    h2, l2 = again.forward_at(ids, mask, pos)
    assert torch.equal(h1, h2) and torch.equal(l1, l2)


def _naive_block(x, w, eps, theta, n_heads, n_kv, bias):
    """One pre-norm block with explicit loops over heads and positions (no SDPA, no broadcasting tricks)."""
    L, D = x.shape
    d = D // n_heads

    def rms(v, g):
        return g * v / torch.sqrt((v * v).mean(-1, keepdim=True) + eps)

    def lin(v, name):
        out = v @ w[name + ".weight"].T
        return out + w[name + ".bias"] if bias and name + ".bias" in w else out

    def rope(v, pos):  # v: (d,)
        out = v.clone()
        for i in range(d // 2):
            angle = pos / theta ** (2 * i / d)
            a, b = v[i], v[i + d // 2]
            out[i] = a * math.cos(angle) - b * math.sin(angle)
            out[i + d // 2] = b * math.cos(angle) + a * math.sin(angle)
        return out

    h = rms(x, w["attn_norm"])
    q, k, v = lin(h, "q"), lin(h, "k"), lin(h, "v")
    heads = []
    for head in range(n_heads):
        kv = head // (n_heads // n_kv)
        qs = torch.stack([rope(q[t, head * d:(head + 1) * d], t) for t in range(L)])
        ks = torch.stack([rope(k[t, kv * d:(kv + 1) * d], t) for t in range(L)])
        vs = v[:, kv * d:(kv + 1) * d]
        scores = torch.zeros(L, L)
        for i in range(L):
            for j in range(L):  # bidirectional: every position sees every position
                scores[i, j] = (qs[i] * ks[j]).sum() / math.sqrt(d)
        heads.append(torch.softmax(scores, dim=-1) @ vs)
    x = x + lin(torch.cat(heads, dim=-1), "o")
    h = rms(x, w["ff_norm"])
    gate, up = lin(h, "gate"), lin(h, "up")
    return x + lin(gate * torch.sigmoid(gate) * up, "down")


@pytest.mark.parametrize("family", ["dream", "llada"])
def test_block_matches_naive_implementation(backbones, family):
    bb = backbones[family]
    torch.manual_seed(0)
    if family == "dream":
        c = bb.config
        block = bb.model.model.layers[0]
        w = {"attn_norm": block.input_layernorm.weight, "ff_norm": block.post_attention_layernorm.weight}
        for short, mod in [("q", block.self_attn.q_proj), ("k", block.self_attn.k_proj), ("v", block.self_attn.v_proj),
                           ("o", block.self_attn.o_proj), ("gate", block.mlp.gate_proj), ("up", block.mlp.up_proj),
                           ("down", block.mlp.down_proj)]:
            w[short + ".weight"] = mod.weight
            if mod.bias is not None:
                w[short + ".bias"] = mod.bias
        eps, theta, heads, kv, dim = c.rms_norm_eps, c.rope_theta, c.num_attention_heads, c.num_key_value_heads, \
            c.hidden_size
    else:
        c = bb.config
        block = bb.model.model.transformer["blocks"][0]
        w = {"attn_norm": block.attn_norm.weight, "ff_norm": block.ff_norm.weight}
        for short, mod in [("q", block.q_proj), ("k", block.k_proj), ("v", block.v_proj), ("o", block.attn_out),
                           ("gate", block.ff_proj), ("up", block.up_proj), ("down", block.ff_out)]:
            w[short + ".weight"] = mod.weight
        eps, theta, heads, kv, dim = c.rms_norm_eps, c.rope_theta, c.n_heads, c.n_kv_heads, c.d_model
    from diffretriever_pyserini.backbones.layers import attention_mask, rope_cos_sin

    x = torch.randn(1, 6, dim)
    pad = torch.ones(1, 6, dtype=torch.long)
    cos, sin = rope_cos_sin(torch.arange(6)[None], dim // heads, theta, x.dtype)
    with torch.no_grad():
        ours = block(x, cos, sin, attention_mask(pad, causal=False))[0]
        naive = _naive_block(x[0], {k: v.detach() for k, v in w.items()}, eps, theta, heads, kv, family == "dream")
    torch.testing.assert_close(ours, naive, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("family", ["dream", "llada"])
def test_lora_adapter_merged_at_load_equals_peft_forward(backbones, tiny, family, tmp_path):
    import peft  # a test dependency (pip install '.[test]')
    from safetensors.torch import save_file

    base = load_backbone(str(tiny[family]), device="cpu", dtype="fp32")
    targets = ["q_proj", "v_proj", "o_proj", "up_proj"] if family == "dream" else \
        ["q_proj", "v_proj", "attn_out", "ff_proj", "up_proj", "ff_out"]
    config = peft.LoraConfig(r=4, lora_alpha=16, target_modules=targets, lora_dropout=0.0, init_lora_weights=False)
    torch.manual_seed(1)
    model = peft.inject_adapter_in_model(config, base.model)
    model.eval()
    ids = torch.tensor([[3, 20, 21, 22, base.mask_token_id, base.mask_token_id]])
    mask, pos = torch.ones_like(ids), torch.tensor([[4, 5]])
    with torch.no_grad():
        h_peft, l_peft = base.forward_at(ids, mask, pos)  # peft's unmerged LoRA layers in the forward
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    state = peft.get_peft_model_state_dict(model)
    save_file({f"base_model.model.{k}": v.contiguous() for k, v in state.items()},
              str(adapter / "adapter_model.safetensors"))
    (adapter / "adapter_config.json").write_text(json.dumps(
        {"peft_type": "LORA", "r": 4, "lora_alpha": 16, "target_modules": targets}))
    merged = load_backbone(str(tiny[family]), device="cpu", dtype="fp32", adapter=str(adapter))
    h_merged, l_merged = merged.forward_at(ids, mask, pos)
    fresh = load_backbone(str(tiny[family]), device="cpu", dtype="fp32")
    h_base, _ = fresh.forward_at(ids, mask, pos)
    assert (h_base - h_peft).abs().max() > 1e-3  # the adapter does change the model
    torch.testing.assert_close(h_merged, h_peft, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(l_merged, l_peft, atol=1e-4, rtol=1e-4)


def test_autoregressive_k_steps_follow_greedy_decoding(backbones):
    """The AR readout's K states are those of greedy generation: step j+1 is the state after feeding argmax j."""
    bb = backbones["qwen2"]
    reader = KMaskReader(bb, "query", ReadoutConfig(k=3, max_length=200, stop="none"))
    prompt = reader.prefix + bb.text_ids(["cancer"])[0] + reader.suffix
    ids = torch.tensor([prompt + [bb.mask_token_id] * 3 + reader.tail])
    pos = torch.tensor([[len(prompt), len(prompt) + 1, len(prompt) + 2]])
    hidden, logits = bb.forward_at(ids, torch.ones_like(ids), pos)
    seq = list(prompt)
    for step in range(3):  # no cache: recompute the whole sequence each step
        full = bb.model.get_decoder()(input_ids=torch.tensor([seq])).last_hidden_state[0, -1]
        torch.testing.assert_close(hidden[0, step], full, atol=1e-5, rtol=1e-4)
        seq.append(int(logits[0, step].argmax()))


def test_shifted_logits_option(tiny):
    plain = load_backbone(str(tiny["dream"]), device="cpu", dtype="fp32")
    shifted = load_backbone(str(tiny["dream"]), device="cpu", dtype="fp32", shifted_logits=True)
    ids = torch.tensor([[3, 20, 21, 22, plain.mask_token_id]])
    mask, pos = torch.ones_like(ids), torch.tensor([[4]])
    h, l_plain = plain.forward_at(ids, mask, pos)
    _, l_shift = shifted.forward_at(ids, mask, pos)
    _, l_prev = plain.forward_at(ids, mask, torch.tensor([[3]]))
    torch.testing.assert_close(l_shift, l_prev)
    assert not torch.allclose(l_plain, l_shift)


@pytest.mark.slow
@pytest.mark.parametrize("family", ["dream", "llada"])
def test_pipeline_on_tiny_models(tiny, family, scifact_slice, tmp_path):
    """encode, index, search and evaluate through Pyserini with a tiny Dream / LLaDA on a real SciFact slice."""
    from diffretriever_pyserini.pipeline import Paths, RunConfig, run_dataset

    cfg = RunConfig(dataset="scifact", model=str(tiny[family]), k_q=2, k_p=4, p_max_length=160, q_max_length=96,
                    device="cpu", dtype="fp32", batch_size=64, mirror=str(scifact_slice), work=str(tmp_path / "w"),
                    runs=str(tmp_path / "r"), hits=100)
    records = run_dataset(cfg)
    assert {"dense", "sparse", "hybrid", "hybrid-pyserini", "multi_dense", "hybrid-multi"} <= set(records)
    for rec in records.values():
        assert rec["queries_judged"] == 60 and 0.0 <= rec["metrics"]["ndcg_cut_10"] <= 1.0
    meta = json.loads((Paths(cfg).encodings.dense / "metadata.json").read_text())
    assert meta["readout"]["backbone"]["family"] == family and meta["readout"]["k"] == 4
