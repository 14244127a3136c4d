"""BEIR datasets: the registry, where the files come from (mirror or checked download), and their conversion.

A prepared dataset is a folder holding what Pyserini reads:
``corpus/part-NNNNN.jsonl`` (``id``, ``title``, ``text``, ``contents`` = title + ". " + text),
``topics.tsv`` (qid TAB text, the judged queries of the split) and ``qrels.txt`` (TREC: qid 0 docid rel).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import shutil
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

log = logging.getLogger(__name__)

BEIR_URL = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets"
"""Official BEIR download folder; ``<name>.zip`` lives there. Override with ``BEIR_URL``."""

CQADUPSTACK_FORUMS = (
    "android", "english", "gaming", "gis", "mathematica", "physics",
    "programmers", "stats", "tex", "unix", "webmasters", "wordpress",
)
DOC_SEPARATOR = ". "
"""Document text = title + DOC_SEPARATOR + text (REFERENCE.md section 3)."""
PREPARE_FORMAT = 2
"""Version of the prepared layout; a prepared folder of another version is prepared again (2: contents joined
without stripping title and text, and queries.jsonl with the exact query texts, as the reference reads them)."""
CORPUS_SHARD_SIZE = 500_000


class DatasetError(ValueError):
    """A dataset name, folder or file that cannot be used; the message names the bad input."""


@dataclass(frozen=True)
class BeirDataset:
    """One BEIR evaluation set.

    name: our name (``scifact``, ``cqadupstack-android``); archive: the official zip's stem;
    subdir: the folder inside the extracted archive; split: qrels file used for evaluation;
    md5: checksum of the official zip (None when not publicly downloadable);
    remove_query: queries are corpus documents, so drop self hits (ArguAna, Quora);
    metrics: the headline metric first.
    """

    name: str
    archive: str | None
    subdir: str
    split: str = "test"
    md5: str | None = None
    sha256: str | None = None
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
    plain = {  # name: md5 of the official zip (REFERENCE.md section 8)
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
                    sha256="536e14446a0ba56ed1398ab1055f39fe852686ecad24a6306c80c490fa8e0165"),
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


# --------------------------------------------------------------------------- sources: mirror or download


def _digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download_archive(dataset: BeirDataset, cache_dir: Path, base_url: str | None = None) -> Path:
    """Download ``<archive>.zip``, verify its checksums, extract it safely; return the extracted root.

    The archive goes to a temporary file first: a failed or corrupt download leaves nothing behind.
    """
    if dataset.archive is None:
        raise DatasetError(f"{dataset.name} is not publicly downloadable; configure BEIR_MIRROR with its files")
    base_url = (base_url or os.environ.get("BEIR_URL") or BEIR_URL).rstrip("/")
    root = cache_dir / dataset.archive
    if (root / ".complete").exists():
        return cache_dir
    cache_dir.mkdir(parents=True, exist_ok=True)
    url = f"{base_url}/{dataset.archive}.zip"
    log.info("downloading %s", url)
    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        zip_path = Path(tmp) / f"{dataset.archive}.zip"
        with urllib.request.urlopen(url, timeout=60) as response, open(zip_path, "wb") as out:
            shutil.copyfileobj(response, out)
        for algorithm, expected in (("md5", dataset.md5), ("sha256", dataset.sha256)):
            if expected and _digest(zip_path, algorithm) != expected:
                raise DatasetError(f"checksum mismatch for {url}: {algorithm} is not {expected}; nothing was kept")
        extract_to = Path(tmp) / "extract"
        with zipfile.ZipFile(zip_path) as archive:
            for member in archive.namelist():
                target = (extract_to / member).resolve()
                if not target.is_relative_to(extract_to.resolve()):
                    raise DatasetError(f"{url}: archive member {member!r} escapes the extraction folder")
            archive.extractall(extract_to)
        if not (extract_to / dataset.archive).is_dir():
            raise DatasetError(f"{url}: archive has no top-level folder {dataset.archive!r}")
        if root.exists():
            shutil.rmtree(root)
        (extract_to / dataset.archive).rename(root)
        (root / ".complete").write_text(url + "\n")
    return cache_dir


def source_dir(dataset: BeirDataset, mirror: str | os.PathLike | None = None, cache_dir: Path | None = None) -> Path:
    """Folder with the BEIR files of ``dataset``: from the mirror when one is configured, else downloaded."""
    mirror = mirror if mirror is not None else os.environ.get("BEIR_MIRROR") or None
    if mirror:
        mirror = Path(mirror)
        if not mirror.is_dir():
            raise DatasetError(f"BEIR mirror folder {mirror} does not exist (set by BEIR_MIRROR / MIRROR)")
        folder = mirror / dataset.subdir
        if not folder.is_dir():
            raise DatasetError(f"dataset {dataset.name} is not in the BEIR mirror {mirror} (no folder {folder})")
        return folder
    cache_dir = cache_dir or Path(os.environ.get("DIFFRETRIEVER_CACHE", Path.home() / ".cache" / "diffretriever"))
    return download_archive(dataset, cache_dir / "beir") / dataset.subdir


# --------------------------------------------------------------------------- reading BEIR files


def _find(folder: Path, stem: str) -> Path:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise DatasetError(f"missing {stem} (or {stem}.gz) in {folder}")


def read_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    """Yield ``(line number, object)``; malformed JSON or bad UTF-8 raises DatasetError naming file and line."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DatasetError(f"{path}:{lineno}: invalid UTF-8 ({exc.reason} at byte {exc.start})") from exc
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}:{lineno}: malformed JSON ({exc.msg}, column {exc.colno})") from exc
            if not isinstance(obj, dict):
                raise DatasetError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
            yield lineno, obj


def _record_id(obj: dict, path: Path, lineno: int) -> str:
    for key in ("_id", "id", "docid"):
        if key in obj and obj[key] is not None and str(obj[key]).strip():
            return str(obj[key])
    raise DatasetError(f"{path}:{lineno}: record has no id (expected field '_id')")


def iter_corpus(folder: Path) -> Iterator[dict]:
    """BEIR corpus records as ``{"id", "title", "text"}``; rejects missing and duplicate ids."""
    path = _find(folder, "corpus.jsonl")
    seen: dict[str, int] = {}
    for lineno, obj in read_jsonl(path):
        docid = _record_id(obj, path, lineno)
        if docid in seen:
            raise DatasetError(f"{path}:{lineno}: duplicate document id {docid!r} (first at line {seen[docid]})")
        seen[docid] = lineno
        yield {"id": docid, "title": str(obj.get("title") or ""), "text": str(obj.get("text") or "")}


def document_text(title: str, text: str) -> str:
    """``title + ". " + text`` exactly as the reference joins BEIR fields (no stripping); an empty title or text
    gives the other alone."""
    if title and text:
        return title + DOC_SEPARATOR + text
    return title or text


def read_qrels(folder: Path, split: str) -> dict[str, dict[str, int]]:
    """BEIR ``qrels/<split>.tsv`` (header ``query-id corpus-id score``) as ``{qid: {docid: rel}}``."""
    path = folder / "qrels" / f"{split}.tsv"
    if not path.is_file():
        raise DatasetError(f"missing qrels file {path}")
    qrels: dict[str, dict[str, int]] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            parts = line.rstrip("\n").split("\t")
            if lineno == 1 and parts[0] == "query-id":
                continue
            if not line.strip():
                continue
            if len(parts) != 3:
                raise DatasetError(f"{path}:{lineno}: expected 3 tab-separated fields, got {len(parts)}")
            try:
                rel = int(parts[2])
            except ValueError as exc:
                raise DatasetError(f"{path}:{lineno}: relevance {parts[2]!r} is not an integer") from exc
            qrels.setdefault(parts[0], {})[parts[1]] = rel
    return qrels


def read_queries(folder: Path) -> dict[str, str]:
    """``queries.jsonl`` as ``{qid: text}``, texts exactly as given (the reference encodes them unchanged)."""
    path = _find(folder, "queries.jsonl")
    queries: dict[str, str] = {}
    for lineno, obj in read_jsonl(path):
        qid = _record_id(obj, path, lineno)
        if qid in queries:
            raise DatasetError(f"{path}:{lineno}: duplicate query id {qid!r}")
        queries[qid] = str(obj.get("text") or "")
    return queries


def one_line(text: str) -> str:
    """Whitespace runs collapsed to single spaces: a query as a topics TSV line can hold it."""
    return " ".join(text.split())


# --------------------------------------------------------------------------- conversion


@dataclass(frozen=True)
class PreparedDataset:
    """Paths of a converted dataset (what Pyserini reads)."""

    dataset: BeirDataset
    root: Path

    @property
    def corpus_dir(self) -> Path:
        return self.root / "corpus"

    @property
    def topics(self) -> Path:
        return self.root / "topics.tsv"

    @property
    def qrels(self) -> Path:
        return self.root / "qrels.txt"

    @property
    def queries(self) -> Path:
        return self.root / "queries.jsonl"

    def query_texts(self) -> dict[str, str]:
        """The judged queries ``{qid: text}`` in topic order, texts exactly as in the source (``topics.tsv`` holds
        them on one line each, for Pyserini's command-line tools)."""
        return {obj["id"]: obj["text"] for _, obj in read_jsonl(self.queries)}

    def is_complete(self) -> bool:
        return (self.root / ".complete").exists()


def prepare(dataset: BeirDataset, out_root: Path, mirror=None, shard_size: int = CORPUS_SHARD_SIZE) -> PreparedDataset:
    """Convert a BEIR dataset into Pyserini inputs under ``out_root/<name>`` (skipped when already complete).

    Writes into a temporary folder renamed into place at the end, so an interrupted run leaves no folder that looks
    complete. Documents with an empty title and text are kept (their prompt still encodes) and counted in the log.
    """
    prepared = PreparedDataset(dataset, Path(out_root) / dataset.name)
    if prepared.is_complete():
        made = json.loads((prepared.root / "dataset.json").read_text()).get("format")
        if made == PREPARE_FORMAT:
            log.info("%s already prepared in %s", dataset.name, prepared.root)
            return prepared
        log.warning("%s in %s was prepared by an older version (format %s, now %s); preparing it again",
                    dataset.name, prepared.root, made, PREPARE_FORMAT)
    src = source_dir(dataset, mirror)
    qrels = read_qrels(src, dataset.split)
    queries = read_queries(src)
    missing = sorted(set(qrels) - set(queries))
    if missing:
        raise DatasetError(f"{src}: {len(missing)} judged queries have no text in queries.jsonl, e.g. {missing[:3]}")
    prepared.root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dataset.name}-", dir=prepared.root.parent))
    try:
        (tmp / "corpus").mkdir()
        n_docs = n_empty = 0
        out = None
        for doc in iter_corpus(src):
            if n_docs % shard_size == 0:
                if out:
                    out.close()
                out = open(tmp / "corpus" / f"part-{n_docs // shard_size:05d}.jsonl", "w", encoding="utf-8")
            contents = document_text(doc["title"], doc["text"])
            n_empty += not contents
            out.write(json.dumps({**doc, "contents": contents}, ensure_ascii=False) + "\n")
            n_docs += 1
        if out:
            out.close()
        if n_docs == 0:
            raise DatasetError(f"{src}: the corpus is empty")
        with open(tmp / "topics.tsv", "w", encoding="utf-8") as f, \
                open(tmp / "queries.jsonl", "w", encoding="utf-8") as exact:
            for qid in sorted(qrels, key=_natural_key):
                f.write(f"{qid}\t{one_line(queries[qid])}\n")
                exact.write(json.dumps({"id": qid, "text": queries[qid]}, ensure_ascii=False) + "\n")
        with open(tmp / "qrels.txt", "w", encoding="utf-8") as f:
            for qid in sorted(qrels, key=_natural_key):
                for docid, rel in sorted(qrels[qid].items()):
                    f.write(f"{qid} 0 {docid} {rel}\n")
        stats = {"format": PREPARE_FORMAT, "dataset": dataset.name, "source": str(src), "documents": n_docs,
                 "empty_documents": n_empty,
                 "queries": len(qrels), "qrels": sum(len(v) for v in qrels.values())}
        (tmp / "dataset.json").write_text(json.dumps(stats, indent=2) + "\n")
        (tmp / ".complete").write_text("")
        if prepared.root.exists():
            shutil.rmtree(prepared.root)
        tmp.rename(prepared.root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if n_empty:
        log.warning("%s: %d documents have neither title nor text; they are kept and encoded from the prompt alone",
                    dataset.name, n_empty)
    log.info("prepared %s: %d documents, %d queries -> %s", dataset.name, n_docs, len(qrels), prepared.root)
    return prepared


def _natural_key(qid: str):
    return (0, int(qid), qid) if qid.isdigit() else (1, 0, qid)


def read_topics(path: Path) -> dict[str, str]:
    """A topics TSV (qid TAB text) as an ordered dict."""
    topics: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            qid, sep, text = line.rstrip("\n").partition("\t")
            if not sep:
                raise DatasetError(f"{path}:{lineno}: expected 'qid<TAB>text'")
            topics[qid] = text
    return topics


def iter_prepared_corpus(corpus_dir: Path) -> Iterator[dict]:
    """Records of a prepared corpus folder (``part-*.jsonl`` in name order)."""
    parts = sorted(Path(corpus_dir).glob("*.jsonl"))
    if not parts:
        raise DatasetError(f"no *.jsonl corpus files in {corpus_dir}")
    for part in parts:
        for lineno, obj in read_jsonl(part):
            if "id" not in obj:
                raise DatasetError(f"{part}:{lineno}: record has no 'id'")
            yield obj
