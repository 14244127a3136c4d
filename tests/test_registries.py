"""The tables the pipeline reads: scoring modes and MaxSim methods (one entry each, failing loudly when unknown)."""

import json

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


def test_dense_index_types_are_one_registry():
    from diffretriever_pyserini.errors import UserError
    from diffretriever_pyserini.index.dense import DENSE_INDEX_TYPES, get_index_type

    assert list(DENSE_INDEX_TYPES) == ["flat", "sq16", "sq8", "sq6", "pq", "ivfpq", "hnsw-sq8"]
    assert get_index_type("flat").make is None
    index, params = get_index_type("ivfpq").make(10_000, 64)
    assert index.d == 64 and params["nlist"] == 100 and params["m"] == 16
    with pytest.raises(UserError, match="unknown dense index type 'ivf'.*index/dense.py"):
        get_index_type("ivf")


def test_every_run_setting_has_one_stage_and_commands_list_only_their_stages():
    import dataclasses

    from diffretriever_pyserini.cli.parser import COMMANDS, build_parser
    from diffretriever_pyserini.pipeline.settings import STAGES, RunConfig, stage_fields

    fields = dataclasses.fields(RunConfig)
    assert all(f.metadata["stage"] in STAGES and f.metadata["help"] for f in fields)
    assert sum(len(stage_fields(s)) for s in STAGES) == len(fields)
    sub = build_parser()._subparsers._group_actions[0].choices
    for name, (_, _, stages) in COMMANDS.items():
        if not stages:  # a command with options of its own (train, fuse, ...)
            continue
        flags = {opt for action in sub[name]._actions for opt in action.option_strings}
        for stage in STAGES:
            wanted = {"--" + f.name.replace("_", "-") for f in stage_fields(stage)}
            assert (wanted <= flags) if stage in stages else not (wanted & flags), (name, stage)
    prepare_help = sub["prepare"].format_help()
    assert "--corpus" in prepare_help and "--k-q" not in prepare_help and "--maxsim" not in prepare_help


def test_a_run_is_resolved_once(tmp_path, monkeypatch):
    """The fine-tuned folder is read once per resolve, and the steps take the resolved run as it is."""
    from diffretriever_pyserini.pipeline import settings
    from diffretriever_pyserini.pipeline.settings import RunConfig, as_run
    from diffretriever_pyserini.readout import finetuned

    folder = tmp_path / "tuned"
    folder.mkdir()
    (folder / finetuned.RETRIEVER_CONFIG).write_text(json.dumps({
        "model_type": "dream", "n_gen_q_tokens": 4, "n_gen_p_tokens": 16, "num_denoise_steps": 2,
        "diffretriever": {"run_name": "demo", "base_model": "Dream-org/Dream-v0-Instruct-7B"}}))
    calls = []
    real = finetuned.find
    monkeypatch.setattr(finetuned, "find", lambda *a: calls.append(a) or real(*a))
    run = RunConfig(dataset="scifact", model=str(folder)).resolve()
    assert len(calls) == 1
    assert (run.readout.k_q, run.readout.k_p, run.readout.denoise_steps) == (4, 16, 2)
    assert run.condition == "diffretriever.Dream-org_Dream-v0-Instruct-7B.finetuned-demo.kq4-kp16.s2"
    assert as_run(run) is run and len(calls) == 1
    assert run.record()["readout"]["k_p"] == 16 and run.record()["finetuned"] == str(folder)
    with pytest.raises(settings.SettingError, match="denoise_steps 17 is more than K"):
        RunConfig(dataset="scifact", model=str(folder), denoise_steps=17).resolve()
