"""The BEIR datasets this package knows by name: split, archive, metrics, whether self hits are removed, and the
Pyserini / Anserini names of each."""

from __future__ import annotations

from dataclasses import dataclass

from diffretriever_pyserini.errors import UserError

BEIR_URL = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets"
"""Official BEIR download folder; ``<name>.zip`` lives there. Override with ``BEIR_URL``."""


CQADUPSTACK_FORUMS = (
    "android", "english", "gaming", "gis", "mathematica", "physics",
    "programmers", "stats", "tex", "unix", "webmasters", "wordpress",
)


class DatasetError(UserError):
    """A dataset name, folder or file that cannot be used; the message names the bad input."""


@dataclass(frozen=True)
class BeirDataset:
    """One BEIR evaluation set.

    name: our name (``scifact``, ``cqadupstack-android``); archive: the official zip's stem;
    subdir: the folder inside the extracted archive; split: qrels file used for evaluation;
    md5: checksum of the official zip (None when not publicly downloadable);
    files_sha256: (file, sha256 of its uncompressed bytes) of the official files, to verify a mirror;
    remove_query: queries are corpus documents, so drop self hits (ArguAna, Quora);
    metrics: the headline metric first.
    """

    name: str
    archive: str | None
    subdir: str
    split: str = "test"
    md5: str | None = None
    sha256: str | None = None
    files_sha256: tuple[tuple[str, str], ...] = ()
    remove_query: bool = False
    metrics: tuple[str, ...] = ("ndcg_cut_10", "recall_100", "recall_1000")

    @property
    def pyserini_name(self) -> str:
        """Pyserini/Anserini topic and qrels name, e.g. ``beir-v1.0.0-scifact-test``."""
        return f"beir-v1.0.0-{self.name}-{self.split}" if self.name != "msmarco" else "beir-v1.0.0-msmarco-dev"

    @property
    def run_prefix(self) -> str:
        """Folder name under runs/: ``beir-v1.0.0-<name>``."""
        return f"beir-v1.0.0-{self.name}"


def _registry() -> dict[str, BeirDataset]:
    plain = {  # name: md5 of the official BEIR zip
        "trec-covid": "ce62140cb23feb9becf6270d0d1fe6d1",
        "nfcorpus": "a89dba18a62ef92f7d323ec890a0d38d",
        "nq": "d4d3d2e48787a744b6f6e691ff534307",
        "hotpotqa": "f412724f78b0d91183a0e86805e16114",
        "fiqa": "17918ed23cd04fb15047f73e6c3bd9d9",
        "webis-touche2020": "46f650ba5a527fc69e0a6521c5a23563",
        "dbpedia-entity": "c2a39eb420a3164af735795df012ac2c",
        "scidocs": "38121350fc3a4d2f48850f6aff52e4a9",
        "fever": "5a818580227bfb4b35bb6fa46d9b6c03",
        "climate-fever": "8b66f0a9126c521bae2bde127b4dc99d",
    }
    sets = [BeirDataset(name, name, name, md5=md5) for name, md5 in plain.items()]
    sets += [
        BeirDataset("scifact", "scifact", "scifact", md5="5f7d1de60b170fc8027bb7898e2efca1",
                    sha256="536e14446a0ba56ed1398ab1055f39fe852686ecad24a6306c80c490fa8e0165",
                    files_sha256=(  # ../shared/data/beir/SOURCES.md: the official files, uncompressed
                        ("corpus.jsonl", "dec31c8182f3d744c7d2c09423756fd1d17cbef75808db13ba01cc0aab4d1ac6"),
                        ("queries.jsonl", "8ff84a7c903f722981cd8d595c022660140c51867b27608a6d4910db86080313"))),
        BeirDataset("msmarco", "msmarco", "msmarco", split="dev", md5="444067daf65d982533ea17ebd59501e4",
                    metrics=("recip_rank_10", "ndcg_cut_10", "recall_100", "recall_1000")),
        BeirDataset("arguana", "arguana", "arguana", md5="8ad3e3c2a5867cdced806d6503f29b99", remove_query=True),
        BeirDataset("quora", "quora", "quora", md5="18fb154900ba42a600f84b839c173167", remove_query=True),
        # A smoke set of the local mirror (5,000 MS MARCO passages, DL19 queries); not downloadable.
        BeirDataset("msmarco-dl19-sample", None, "msmarco-dl19-sample",
                    metrics=("ndcg_cut_10", "recall_100", "recall_1000", "recip_rank_10")),
    ]
    sets += [
        BeirDataset(f"cqadupstack-{forum}", "cqadupstack", f"cqadupstack/{forum}",
                    md5="4e41456d7df8ee7760a7f866133bda78")
        for forum in CQADUPSTACK_FORUMS
    ]
    return {d.name: d for d in sets}


DATASETS: dict[str, BeirDataset] = _registry()


def get_dataset(name: str) -> BeirDataset:
    """Registry look-up; an unknown name raises DatasetError listing the valid ones."""
    key = name.removeprefix("beir-v1.0.0-").removesuffix("-test")
    if key not in DATASETS:
        raise DatasetError(
            f"unknown BEIR dataset {name!r}; valid names: {', '.join(sorted(DATASETS))} "
            f"(extend diffretriever_pyserini/datasets.py to add one)"
        )
    return DATASETS[key]
