"""TREC submission checks, gzip runs, fusion with BM25, Anserini configs reproduced on the real SciFact slice."""

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from diffretriever_pyserini.search.runs import check_run, read_run, write_run


def test_check_run_finds_every_problem(tmp_path):
    good = write_run(tmp_path / "good.trec", {"1": {"a": 2.0, "b": 1.0}, "2": {"c": 0.5}}, "tag")
    assert check_run(good, ["1", "2"]) == []
    bad = tmp_path / "bad.trec"
    bad.write_text("1 Q0 a 1 1.0 t1\n1 Q0 a 2 2.0 t1\n1 Q1 b 4 0.5 t2\n3 Q0 x 1 1.0 t1\nshort line\n")
    problems = "\n".join(check_run(bad, ["1", "2"], max_hits=2))
    for expected in ["duplicate docid a", "rises above", "must be Q0", "rank 4 follows rank 2",
                     "1 topics have no hits", "not in the topic file", "2 different run tags", "expected 6 fields",
                     "has 3 hits, more than 2"]:
        assert expected in problems


def test_gzip_runs_are_deterministic_and_readable(tmp_path):
    run = {"1": {"a": 2.0, "b": 1.0}}
    a = write_run(tmp_path / "a.trec.gz", run, "t")
    b = write_run(tmp_path / "b.trec.gz", run, "t")
    assert a.read_bytes() == b.read_bytes()
    assert gzip.decompress(a.read_bytes()).decode() == "1 Q0 a 1 2.000000 t\n1 Q0 b 2 1.000000 t\n"
    assert read_run(a) == run and check_run(a, ["1"]) == []
    with pytest.raises(ValueError, match="one word"):
        write_run(tmp_path / "c.trec", run, "two words")


@pytest.mark.slow
def test_anserini_config_reproduces_the_pipeline_run(slice_run, tmp_path):
    """The config written from the measured slice run follows Anserini's schema, its TsvString topics hold the same
    vectors as the JSONL ones, its expected results equal the pipeline's own sparse run as Anserini searches it
    (Lucene's lists, -removeQuery), and check-config reproduces them from another working directory."""
    import dataclasses
    import os

    import yaml

    from diffretriever_pyserini.evaluate.metrics import evaluate, read_qrels
    from diffretriever_pyserini.regressions.anserini import encode_queries, read_tsv_string, write_configs
    from diffretriever_pyserini.regressions.schema import schema_problems
    from diffretriever_pyserini.search.runs import remove_self_hits

    cfg, _ = slice_run
    cfg = dataclasses.replace(cfg, k_q=4, k_p=4)
    run = cfg.resolve()
    queries = encode_queries(cfg)
    lines = [json.loads(line) for line in queries.read_text().splitlines()]
    assert set(lines[0]) == {"qid", "contents", "vector"}
    assert all(isinstance(v, int) for v in lines[0]["vector"].values())
    assert (queries.with_suffix(".dense") / "embedding.pkl").is_file()
    assert read_tsv_string(queries.with_suffix(".tsv.gz")) == {o["qid"]: o["vector"] for o in lines}
    [path] = write_configs(cfg, tmp_path / "anserini", tmp_path / "configs")
    config = yaml.safe_load(path.read_text())
    assert schema_problems(config) == []
    assert config["topic_reader"] == "TsvString" and "-removeQuery" in config["models"][0]["params"]
    assert not Path(config["corpus_path"]).is_absolute() and config["topics"][0]["qrel"].startswith("qrels.")
    # expected = the pipeline's sparse run without its filled topics, self hits removed, evaluated independently
    written = read_run(run.paths.run_dir / "sparse.trec")
    filled = (json.loads((run.paths.run_dir / "config.json").read_text())["sparse_unmatched_topics"] or {})
    lucene = remove_self_hits({q: h for q, h in written.items() if q not in filled.get("topics", [])})
    ours = evaluate(read_qrels(run.paths.data / "scifact" / "qrels.txt"), lucene, ("ndcg_cut_10", "recall_100"))
    results = config["models"][0]["results"]
    assert results["nDCG@10"] == [round(ours["ndcg_cut_10"], 4)] and results["R@100"] == [round(ours["recall_100"], 4)]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    cli = [sys.executable, "-m", "diffretriever_pyserini", "check-config"]
    res = subprocess.run([*cli, str(path)], cwd=elsewhere, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.count("OK ") == 6 and "FAIL" not in res.stdout, res.stdout  # 3 index statistics, 3 metrics
    # a wrong expectation is reported as FAIL, a close one as OKish
    config["models"][0]["results"]["nDCG@10"] = [round(results["nDCG@10"][0] + 0.01, 4)]
    config["models"][0]["results"]["R@100"] = [round(results["R@100"][0] + 0.0003, 4)]
    path.write_text("---\n" + yaml.safe_dump(config, sort_keys=False))
    res = subprocess.run([*cli, str(path)], cwd=elsewhere, env=env, capture_output=True, text=True)
    assert res.returncode == 1 and "FAIL" in res.stdout and "OKish" in res.stdout, res.stdout
    # another root without the files: one line naming what is missing, nothing started (no index folder)
    empty = tmp_path / "empty-root"
    res = subprocess.run([*cli, str(path), "--root", str(empty)], cwd=elsewhere, env=env, capture_output=True,
                         text=True)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "missing" in res.stderr and "corpus" in res.stderr and "topics[0]" in res.stderr and "qrel[0]" in res.stderr
    assert not empty.exists()


@pytest.mark.slow
def test_fuse_command_with_bm25(slice_run, tmp_path):
    from diffretriever_pyserini.pipeline import Paths, run_bm25, run_bm25_multifield

    cfg, _ = slice_run
    bm25 = run_bm25(cfg)
    multifield = run_bm25_multifield(cfg)
    assert multifield["metrics"]["ndcg_cut_10"] > 0.5 and bm25["metrics"]["ndcg_cut_10"] > 0.5
    ours = Paths(cfg.resolved()).run_dir / "hybrid.trec"
    out = tmp_path / "fused.trec"
    qrels = Path(cfg.work) / "data" / "scifact" / "qrels.txt"
    res = subprocess.run([sys.executable, "-m", "diffretriever_pyserini", "fuse", "--runs", str(ours), bm25["run"],
                          "--method", "rrf", "--out", str(out), "--qrels", str(qrels)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    fused = read_run(out)
    a, b = read_run(ours), read_run(bm25["run"])
    q = next(iter(fused))
    top = max(fused[q], key=fused[q].get)
    rank_a = sorted(a[q], key=lambda d: (-a[q][d], d)).index(top) + 1 if top in a[q] else None
    rank_b = sorted(b[q], key=lambda d: (-b[q][d], d)).index(top) + 1 if top in b[q] else None
    expected = (1 / (60 + rank_a) if rank_a else 0) + (1 / (60 + rank_b) if rank_b else 0)
    assert fused[q][top] == pytest.approx(expected, abs=1e-6)
    assert "ndcg_cut_10" in res.stdout


@pytest.mark.slow
def test_pre_encoded_queries_in_pyserini_commands(slice_run, tmp_path):
    """The pre-encoded query files drive Pyserini's own search commands and reproduce our runs."""
    import dataclasses
    import os

    from conftest import offline
    from diffretriever_pyserini.pipeline import Paths
    from diffretriever_pyserini.regressions.anserini import encode_queries

    cfg, _ = slice_run
    cfg = dataclasses.replace(cfg, k_q=4, k_p=4).resolved()
    paths = Paths(cfg)
    queries = encode_queries(cfg, tmp_path / "q.jsonl")
    topics = Path(cfg.work) / "data" / "scifact" / "topics.tsv"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    for name, args in [("impact", ["pyserini.search.lucene", "--impact", "--index", str(paths.impact_index),
                                   "--encoder", str(queries)]),
                       ("faiss", ["pyserini.search.faiss", "--index", str(paths.encodings.dense),
                                  "--encoded-queries", str(queries.with_suffix(".dense"))])]:
        out = tmp_path / f"{name}.trec"
        cmd, run_env = offline([sys.executable, "-m", *args, "--topics", str(topics), "--output", str(out),
                                "--hits", "10"], env)  # as the README documents them: no network needed
        res = subprocess.run(cmd, env=run_env, capture_output=True, text=True)
        assert res.returncode == 0, res.stderr[-2000:]
        theirs = read_run(out)
        ours = read_run(paths.run_dir / ("sparse.trec" if name == "impact" else "dense.trec"))
        for qid, hits in theirs.items():
            top_theirs = sorted(hits.items(), key=lambda x: (-x[1], x[0]))[:5]
            top_ours = sorted(ours[qid].items(), key=lambda x: (-x[1], x[0]))[:5]
            assert [round(s, 3) for _, s in top_theirs] == [round(s, 3) for _, s in top_ours]


def test_paper_verdicts():
    from diffretriever_pyserini.evaluate.paper import paper_status

    assert paper_status(0.7334, 0.733) == "OK" and paper_status(0.7325, 0.733) == "OK"
    assert paper_status(0.7364, 0.733) == "OKish" and paper_status(0.728, 0.733) == "OKish"
    assert paper_status(0.7381, 0.733) == "FAIL" and paper_status(0.70, 0.733) == "FAIL"


def test_paper_configs_carry_the_published_numbers(tmp_path):
    import yaml

    from diffretriever_pyserini.evaluate.paper import published, run_config_for, write_paper_configs

    written = {p.name: yaml.safe_load(p.read_text()) for p in write_paper_configs(tmp_path)}
    scifact = written["beir-v1.0.0-scifact.diffretriever-llada-8b-single.yaml"]
    assert scifact["models"] == [{"name": "dense", "display": "DiffRetriever llada-8b-single single_dense",
                                  "results": {"nDCG@10": [0.733]}}]
    assert "huggingface.co/ielabgroup/diffretriever-llada-8b-single" in scifact["paper"]["source"]
    # the reference's evaluation: ArguAna/Quora keep self hits, MS MARCO reports MRR@10 for three modes
    assert written["beir-v1.0.0-arguana.diffretriever-llada-8b-single.yaml"]["condition"]["keep_self_hits"]
    msmarco = written["beir-v1.0.0-msmarco.diffretriever-llada-8b-single.yaml"]
    assert {m["name"]: m["results"]["MRR@10"][0] for m in msmarco["models"]} == {
        "dense": 0.424, "sparse": 0.347, "hybrid": 0.405}
    assert len(written) == len([d for d in published()["llada-8b-single"]["results"]])
    cfg = run_config_for(msmarco, model="/models/LLaDA-8B-Instruct", device="cuda")
    assert (cfg.model, cfg.adapter, cfg.k_q, cfg.modes) == ("/models/LLaDA-8B-Instruct",
                                                            "ielabgroup/diffretriever-llada-8b-single", 1,
                                                            "dense,sparse,hybrid")
    assert cfg.sparse_zero_fill and cfg.maxsim == "exact"
    # the packaged configs are what the published numbers give
    packaged = Path(__file__).resolve().parents[1] / "paper_configs"
    assert {p.name for p in packaged.glob("*.yaml")} == set(written)
    for name, config in written.items():
        assert yaml.safe_load((packaged / name).read_text()) == config


@pytest.mark.slow
def test_paper_check_runs_the_pipeline_and_compares(scifact_slice, tmp_path):
    """A released-layout adapter on a tiny LLaDA through check-config: the verdicts follow the measured numbers."""
    import yaml

    from diffretriever_pyserini.backbones import load_backbone
    from diffretriever_pyserini.testing.tiny import write_checkpoint
    from diffretriever_pyserini.evaluate.paper import check_paper_config

    import peft
    from safetensors.torch import save_file

    model = write_checkpoint(tmp_path / "llada", "llada")
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    bb = load_backbone(str(model), device="cpu", dtype="fp32")
    lora = peft.LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "ff_out"], init_lora_weights=False)
    state = peft.get_peft_model_state_dict(peft.inject_adapter_in_model(lora, bb.model))
    save_file({f"base_model.model.{k}": v.contiguous() for k, v in state.items()},
              str(adapter / "adapter_model.safetensors"))
    (adapter / "adapter_config.json").write_text(json.dumps(
        {"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["q_proj", "ff_out"]}))
    (adapter / "retriever_config.json").write_text(json.dumps(
        {"model_type": "llada1", "mask_token_id": bb.mask_token_id, "hidden_size": bb.hidden_size,
         "n_gen_q_tokens": 1, "n_gen_p_tokens": 1, "n_tail": 3, "num_denoise_steps": 1}))
    config = {"paper": {"checkpoint": "tiny", "adapter": str(adapter), "base": str(model), "source": "a test"},
              "dataset": "scifact", "condition": {"k_q": 1, "k_p": 1, "keep_self_hits": False,
                                                  "sparse_zero_fill": True, "maxsim": "exact", "hits": 100},
              "metrics": [{"metric": "nDCG@10", "trec_eval": "ndcg_cut_10", "metric_precision": 3}],
              "models": [{"name": "dense", "results": {"nDCG@10": [0.5]}},
                         {"name": "sparse", "results": {"nDCG@10": [0.5]}}]}
    path = tmp_path / "paper.yaml"
    path.write_text(yaml.safe_dump(config))
    options = dict(device="cpu", dtype="fp32", mirror=str(scifact_slice), work=str(tmp_path / "w"),
                   runs=str(tmp_path / "r"))
    rows = check_paper_config(path, **options)
    measured = {mode: value for mode, _, _, value, _ in rows}
    config["models"] = [{"name": "dense", "results": {"nDCG@10": [round(measured["dense"], 3)]}},
                        {"name": "sparse", "results": {"nDCG@10": [round(measured["sparse"] + 0.003, 3)]}}]
    path.write_text(yaml.safe_dump(config))
    rows = check_paper_config(path, **options)
    assert [r[4] for r in rows] == ["OK", "OKish"]
    run_cfg = json.loads(next((tmp_path / "r").rglob("config.json")).read_text())
    assert run_cfg["readout_query"]["regime"] == "fine-tuned" and run_cfg["sparse_zero_fill"]
