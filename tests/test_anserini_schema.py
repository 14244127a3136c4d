"""Anserini's regression schema: every committed config follows it, and the checker finds what Anserini's runner
would trip on."""

import copy
from pathlib import Path

import pytest
import yaml

from diffretriever_pyserini.regressions.anserini import SIDECAR_SUFFIX, tsv_string
from diffretriever_pyserini.regressions.schema import anserini_paths, schema_problems

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "anserini_configs").glob("*.yaml"))

# The shape of one of Anserini's own cached-query impact regressions (beir-v1.0.0-<ds>.splade-pp-ed.cached).
ANSERINI_SHAPED = {
    "corpus": "beir-v1.0.0-arguana-splade-pp-ed", "corpus_path": "collections/beir-v1.0.0/splade-pp-ed/arguana",
    "index_path": "indexes/lucene-index.beir-v1.0.0-arguana-splade-pp-ed/", "collection_class": "JsonVectorCollection",
    "generator_class": "DefaultLuceneDocumentGenerator", "index_threads": 16, "index_options": "-impact -pretokenized",
    "index_stats": {"documents": 8674, "documents (non-empty)": 8674, "total terms": 71992355},
    "metrics": [{"metric": m, "command": "bin/trec_eval", "params": p, "separator": "\t", "parse_index": 2,
                 "metric_precision": 4, "can_combine": False}
                for m, p in (("nDCG@10", "-c -m ndcg_cut.10"), ("R@100", "-c -m recall.100"))],
    "topic_reader": "TsvString",
    "topics": [{"name": "BEIR (v1.0.0): ArguAna", "id": "test",
                "path": "topics.beir-v1.0.0-arguana.test.splade-pp-ed.tsv.gz",
                "qrel": "qrels.beir-v1.0.0-arguana.test.txt"}],
    "models": [{"name": "splade-pp-ed", "display": "SPLADE++ (CoCondenser-EnsembleDistil)",
                "params": "-impact -pretokenized -removeQuery -hits 1000",
                "results": {"nDCG@10": [0.5203], "R@100": [0.9744]}}],
}


def test_the_checker_accepts_anserinis_own_shape_and_names_each_problem():
    assert schema_problems(ANSERINI_SHAPED) == []
    bad = copy.deepcopy(ANSERINI_SHAPED)
    bad["topics"][0]["qrels"] = bad["topics"][0].pop("qrel")
    bad["download_url"] = None  # allowed
    bad["reproduce"] = {"command": "make"}
    bad["models"][0]["type"] = "impact"
    problems = "\n".join(schema_problems(bad))
    assert "topics[0]: missing key 'qrel'" in problems and "topics[0]: unknown key 'qrels'" in problems
    assert "unknown key 'reproduce'" in problems and "models[0]: unknown key 'type'" in problems
    json_topics = copy.deepcopy(ANSERINI_SHAPED)
    json_topics["topic_reader"] = "JsonStringVector"
    assert any("-topicField vector" in p for p in schema_problems(json_topics))
    json_topics["models"][0]["params"] += " -topicField vector"
    assert schema_problems(json_topics) == []
    short = copy.deepcopy(ANSERINI_SHAPED)
    short["models"][0]["results"] = {"nDCG@10": [0.5]}
    assert schema_problems(short) == ["models[0].results['R@100']: expected 1 number(s), one per topic set"]


def test_paths_follow_anserinis_rules(tmp_path):
    paths = anserini_paths(ANSERINI_SHAPED, tmp_path)
    assert paths["corpus"] == tmp_path / "collections/beir-v1.0.0/splade-pp-ed/arguana"
    assert paths["topics[0]"] == tmp_path / "tools/topics-and-qrels/topics.beir-v1.0.0-arguana.test.splade-pp-ed.tsv.gz"
    absolute = copy.deepcopy(ANSERINI_SHAPED)
    absolute["topics"][0]["qrel"] = "/data/qrels.txt"
    assert anserini_paths(absolute, tmp_path)["qrel[0]"] == Path("/data/qrels.txt")


def test_tsv_string_repeats_each_term_by_its_weight():
    assert tsv_string({"b": 2, "a": 3, "zero": 0}) == "a a a b b"


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_committed_config_follows_anserinis_schema(path):
    config = yaml.safe_load(path.read_text())
    assert schema_problems(config) == []
    assert config["topic_reader"] == "TsvString"
    assert all("-removeQuery" in m["params"] for m in config["models"])
    assert Path(str(path).removesuffix(".yaml") + SIDECAR_SUFFIX).is_file()


def test_there_are_committed_configs():
    assert len(CONFIGS) >= 2
