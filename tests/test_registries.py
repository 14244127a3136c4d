"""The tables the pipeline reads: scoring modes and MaxSim methods (one entry each, failing loudly when unknown)."""

import numpy as np
import pytest

from diffretriever_pyserini.search import maxsim

from diffretriever_pyserini.search import modes


def test_mode_table_is_consistent():
    for mode in modes.MODE_TABLE.values():
        assert set(mode.reads) <= set(modes.FIRST_STAGE), mode.name
        if mode.name in modes.FIRST_STAGE:
            assert mode.reads == (mode.name,) and mode.combine is None
        else:
            assert mode.combine is not None and len(mode.reads) == 2
    assert modes.first_stage_needed(["hybrid-multi", "rrf"]) == ["dense", "sparse", "multi_dense"]
    assert modes.first_stage_needed(["sparse"]) == ["sparse"]
    assert modes.reads_dense_index(["hybrid-pyserini"]) and not modes.reads_dense_index(["hybrid-multi"])
    assert modes.reads_maxsim(["hybrid-multi"]) and not modes.reads_maxsim(["rrf"])
    with pytest.raises(ValueError, match="unknown mode 'bm25'.*modes.py"):
        modes.get_mode("bm25")


def test_paper_names_come_from_the_table():
    from diffretriever_pyserini.evaluate.paper import MODE_NAMES

    assert MODE_NAMES == {"dense": "single_dense", "sparse": "sparse_max", "hybrid": "fusion_single_sparse_max",
                          "multi_dense": "multi_dense", "hybrid-multi": "fusion_multi_sparse_max"}


def test_combining_modes_fuse_the_first_stage_lists():
    dense = {"q": {"a": 0.9, "b": 0.5, "c": 0.1}}
    sparse = {"q": {"b": 30.0, "c": 10.0}}
    f = modes.Fusing({"dense": dense, "sparse": sparse, "multi_dense": dense}, {"q": "x"}, 10, False, False, 3)
    hybrid = modes.get_mode("hybrid").combine(f)["q"]
    # by hand: dense min-max a 1, b 0.5, c 0; sparse b 1, c 0; 0.5 / 0.5
    assert hybrid == pytest.approx({"a": 0.5, "b": 0.75, "c": 0.0})
    assert modes.get_mode("hybrid-multi").combine(f) == modes.get_mode("hybrid").combine(f)
    rrf = modes.get_mode("rrf").combine(f)["q"]
    assert rrf["b"] == pytest.approx(1 / 62 + 1 / 61) and rrf["a"] == pytest.approx(1 / 61)


def test_maxsim_methods_agree_with_exact_search(tmp_path):
    from diffretriever_pyserini.index.multivector import MultiVectorStore
    from diffretriever_pyserini.encode.writers import FaissWriter

    rng = np.random.default_rng(0)
    kv = rng.standard_normal((300, 4, 32)).astype("float32")
    kv /= np.linalg.norm(kv, axis=-1, keepdims=True)
    dense = tmp_path / "dense"
    with FaissWriter(dense, {}) as writer:
        writer.write([f"d{i:03d}" for i in range(300)], kv.mean(1), kv)
    store = MultiVectorStore.open(dense)
    queries = {f"q{i}": kv[i * 7] + 0.1 * rng.standard_normal((4, 32)).astype("float32") for i in range(5)}
    exact = maxsim.get_method("exact").search(store, dense, queries, 10, maxsim.MaxSimOptions())
    for name, options in (("candidates", maxsim.MaxSimOptions(depth=300)),
                          ("compressed", maxsim.MaxSimOptions(nprobe=10_000, rerank=300))):
        method = maxsim.get_method(name)
        method.build(dense)
        got = method.search(store, dense, queries, 10, options)
        for q in queries:
            assert max(got[q], key=got[q].get) == max(exact[q], key=exact[q].get), (name, q)
        assert method.describe(dense, options)["search"] == name
    with pytest.raises(ValueError, match="unknown MaxSim method 'ivf'.*maxsim.py"):
        maxsim.get_method("ivf")


def test_one_record_per_backbone_family():
    from diffretriever_pyserini.backbones import FAMILIES, MODEL_TYPES
    from diffretriever_pyserini.backbones.families import FAMILY_RECORDS, LLADA_EOT_ID, get_family
    from diffretriever_pyserini.readout.finetuned import MODEL_TYPE_FAMILIES
    from diffretriever_pyserini.training.trainer import LORA_TARGETS, default_recipe

    assert set(FAMILIES) == set(FAMILY_RECORDS) == set(LORA_TARGETS) == set(MODEL_TYPE_FAMILIES.values())
    assert MODEL_TYPES["qwen2"] == "autoregressive" and MODEL_TYPES["bert"] == "masked_lm"
    assert MODEL_TYPE_FAMILIES["llada15"] == "llada"
    for name, family in FAMILY_RECORDS.items():
        assert family.backbone_class().family == name  # the loader builds this family's backbone
        assert default_recipe(name) == family.recipe
    assert get_family("llada").end_of_turn_fallback == LLADA_EOT_ID == 126348
    with pytest.raises(ValueError, match="unknown backbone family 'mamba'.*families.py"):
        get_family("mamba")
