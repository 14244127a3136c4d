"""BEIR datasets: the registry, where the files come from (mirror or checked download), and their conversion.

A prepared dataset is a folder holding what Pyserini reads:
``corpus/part-NNNNN.jsonl`` (``id``, ``title``, ``text``, ``contents`` = title + ". " + text),
``topics.tsv`` (qid TAB text, the judged queries of the split) and ``qrels.txt`` (TREC: qid 0 docid rel).
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import json
import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from diffretriever_pyserini.errors import UserError

log = logging.getLogger(__name__)

BEIR_URL = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets"
"""Official BEIR download folder; ``<name>.zip`` lives there. Override with ``BEIR_URL``."""

CQADUPSTACK_FORUMS = (
    "android", "english", "gaming", "gis", "mathematica", "physics",
    "programmers", "stats", "tex", "unix", "webmasters", "wordpress",
)
DOC_SEPARATOR = ". "
"""Document text = title + DOC_SEPARATOR + text (as the authors' code joins a BEIR document)."""
PREPARE_FORMAT = 2
"""Version of the prepared layout; a prepared folder of another version is prepared again (2: contents joined
without stripping title and text, and queries.jsonl with the exact query texts, as the reference reads them)."""
CORPUS_SHARD_SIZE = 500_000


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


# --------------------------------------------------------------------------- sources: mirror or download


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
        try:
            with urllib.request.urlopen(url, timeout=60) as response, open(zip_path, "wb") as out:
                shutil.copyfileobj(response, out)
        except urllib.error.HTTPError as exc:
            raise DatasetError(f"download failed: HTTP {exc.code} {exc.reason}; nothing was kept (set BEIR_MIRROR to "
                               "a local copy, or BEIR_URL to another server)", url) from exc
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            raise DatasetError(f"download failed: {getattr(exc, 'reason', exc)}; nothing was kept (set BEIR_MIRROR "
                               "to a local copy)", url) from exc
        from diffretriever_pyserini.writers import file_checksum

        for algorithm, expected in (("md5", dataset.md5), ("sha256", dataset.sha256)):
            if expected and file_checksum([zip_path], algorithm) != expected:
                raise DatasetError(f"checksum mismatch for {url}: {algorithm} is not {expected}; nothing was kept")
        extract_to = Path(tmp) / "extract"
        if not zipfile.is_zipfile(zip_path):
            raise DatasetError("the download is not a zip archive; nothing was kept", url)
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
        try:
            mirror.resolve(strict=True)
        except RuntimeError as exc:  # Python < 3.13
            raise DatasetError(f"BEIR mirror folder {mirror} is a symbolic link loop ({exc})") from exc
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise DatasetError(f"BEIR mirror folder {mirror} is a symbolic link loop") from exc
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
    """Yield ``(line number, object)``; malformed JSON, bad UTF-8 or a broken gzip stream raises DatasetError
    naming file and line."""
    opener = gzip.open if path.suffix == ".gz" else open
    lineno = 0
    try:
        with opener(path, "rb") as f:
            for lineno, raw in enumerate(f, start=1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise DatasetError(f"invalid UTF-8 ({exc.reason} at byte {exc.start})", path, lineno) from exc
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DatasetError(f"malformed JSON ({exc.msg}, column {exc.colno})", path, lineno) from exc
                if not isinstance(obj, dict):
                    raise DatasetError(f"expected a JSON object, got {type(obj).__name__}", path, lineno)
                yield lineno, obj
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        what = "is not gzip-compressed" if isinstance(exc, gzip.BadGzipFile) and lineno == 0 else \
            "ends early or is corrupted" if lineno == 0 else f"is truncated or corrupted after line {lineno}"
        raise DatasetError(f"the gzip stream {what} ({type(exc).__name__}: {exc}); copy or download it again",
                           path) from exc


def check_id(value: str, path, lineno: int, what: str = "id") -> str:
    """``value`` if it can live in TREC run, qrels and FAISS docid files (no whitespace, no control character, not
    empty); else a DatasetError naming file and line."""
    from diffretriever_pyserini.runs import id_problem

    problem = id_problem(value)
    if problem:
        raise DatasetError(f"{what} {value!r} {problem}, which TREC run and qrels files and FAISS docid files "
                           "cannot hold", path, lineno)
    return value


def record_id(obj: dict, path: Path, lineno: int) -> str:
    for key in ("_id", "id", "docid"):
        if key in obj and obj[key] is not None and str(obj[key]) != "":
            return check_id(str(obj[key]), path, lineno, f"field {key!r}")
    raise DatasetError("record has no id (expected field '_id')", path, lineno)


def iter_corpus(folder: Path) -> Iterator[dict]:
    """BEIR corpus records as ``{"id", "title", "text"}``; rejects missing and duplicate ids."""
    path = _find(folder, "corpus.jsonl")
    seen: dict[str, int] = {}
    for lineno, obj in read_jsonl(path):
        docid = record_id(obj, path, lineno)
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


def read_beir_qrels(folder: Path, split: str) -> dict[str, dict[str, int]]:
    """BEIR ``qrels/<split>.tsv`` (header ``query-id corpus-id score``) as ``{qid: {docid: rel}}``."""
    path = folder / "qrels" / f"{split}.tsv"
    if not path.is_file():
        raise DatasetError(f"missing qrels file {path}")
    qrels: dict[str, dict[str, int]] = {}
    with open(path, encoding="utf-8-sig") as f:  # a byte-order mark must not hide the header
        for lineno, line in enumerate(f, start=1):
            parts = line.rstrip("\n").split("\t")
            if lineno == 1 and parts[0] == "query-id":
                continue
            if not line.strip():
                continue
            if len(parts) != 3:
                raise DatasetError(f"expected 3 tab-separated fields, got {len(parts)}", path, lineno)
            try:
                rel = int(parts[2])
            except ValueError as exc:
                raise DatasetError(f"relevance {parts[2]!r} is not an integer", path, lineno) from exc
            qid = check_id(parts[0], path, lineno, "query id")
            qrels.setdefault(qid, {})[check_id(parts[1], path, lineno, "document id")] = rel
    return qrels


def read_queries(folder: Path) -> dict[str, str]:
    """``queries.jsonl`` as ``{qid: text}``, texts exactly as given (the reference encodes them unchanged)."""
    path = _find(folder, "queries.jsonl")
    queries: dict[str, str] = {}
    for lineno, obj in read_jsonl(path):
        qid = record_id(obj, path, lineno)
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


def source_files(dataset: BeirDataset, src: Path) -> dict[str, Path]:
    """The BEIR files a prepared dataset is made from: corpus, queries and the evaluated qrels."""
    return {"corpus.jsonl": _find(src, "corpus.jsonl"), "queries.jsonl": _find(src, "queries.jsonl"),
            f"qrels/{dataset.split}.tsv": src / "qrels" / f"{dataset.split}.tsv"}


def fingerprint(files: dict[str, Path]) -> dict[str, dict]:
    """Path, size and modification time of each source file: cheap to compare on every run."""
    return {name: {"path": str(path.resolve()), "size": path.stat().st_size, "mtime_ns": path.stat().st_mtime_ns}
            for name, path in files.items() if path.is_file()}


def content_sha256(path: Path) -> str:
    """sha256 of a file's uncompressed bytes (a ``.gz`` file is hashed as what it decompresses to)."""
    h = hashlib.sha256()
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DatasetError(f"the gzip stream is truncated or corrupted ({type(exc).__name__}: {exc})", path) from exc
    return h.hexdigest()


def verify_sources(dataset: BeirDataset, files: dict[str, Path]) -> dict[str, str]:
    """Check the source files against the official checksums the registry knows; returns {file: verdict}.

    A file that differs from the official one is prepared anyway (a slice or an edited copy can be useful) with a
    warning that its runs are not comparable with published numbers; a file without a known checksum is said so.
    """
    known = dict(dataset.files_sha256)
    verdicts = {}
    for name, path in files.items():
        if name not in known:
            verdicts[name] = "not verified: the registry has no checksum for this file"
            continue
        digest = content_sha256(path)
        if digest == known[name]:
            verdicts[name] = "official (sha256 verified)"
        else:
            verdicts[name] = f"differs from the official file (sha256 {digest}, official {known[name]})"
            log.warning("%s differs from the official BEIR %s (sha256 %s, official %s): runs on it are not "
                        "comparable with published numbers", path, name, digest[:12], known[name][:12])
    unknown = [n for n, v in verdicts.items() if v.startswith("not verified")]
    if unknown:
        log.info("%s: no official checksum known for %s; not verified", dataset.name, ", ".join(unknown))
    return verdicts


def prepare(dataset: BeirDataset, out_root: Path, mirror=None, shard_size: int = CORPUS_SHARD_SIZE) -> PreparedDataset:
    """Convert a BEIR dataset into Pyserini inputs under ``out_root/<name>`` (skipped when already complete).

    Writes into a temporary folder renamed into place at the end, so an interrupted run leaves no folder that looks
    complete. Documents with an empty title and text are kept (their prompt still encodes) and counted in the log.
    The source files' fingerprints (path, size, time) and checksums are recorded: a prepared folder is reused only
    for the same sources, so another mirror or an edited file is prepared again. One process prepares at a time.
    """
    from diffretriever_pyserini.writers import exclusive

    prepared = PreparedDataset(dataset, Path(out_root) / dataset.name)
    with exclusive(prepared.root):
        return _prepare(dataset, prepared, mirror, shard_size)


def _prepare(dataset: BeirDataset, prepared: PreparedDataset, mirror, shard_size: int) -> PreparedDataset:
    src = source_dir(dataset, mirror)
    files = source_files(dataset, src)
    if prepared.is_complete():
        made = json.loads((prepared.root / "dataset.json").read_text())
        if made.get("format") == PREPARE_FORMAT and made.get("sources") == fingerprint(files):
            log.info("%s already prepared in %s", dataset.name, prepared.root)
            return prepared
        why = (f"by an older version (format {made.get('format')}, now {PREPARE_FORMAT})"
               if made.get("format") != PREPARE_FORMAT else f"from other source files than {src}")
        log.warning("%s in %s was prepared %s; preparing it again", dataset.name, prepared.root, why)
    verdicts = verify_sources(dataset, files)
    qrels = read_beir_qrels(src, dataset.split)
    queries = read_queries(src)
    missing = sorted(set(qrels) - set(queries))
    if missing:
        raise DatasetError(f"{src}: {len(missing)} judged queries have no text in queries.jsonl, e.g. {missing[:3]}")
    empty = sorted(q for q in qrels if not queries[q].strip())
    if empty:
        log.warning("%s: %d judged queries have empty text (e.g. %s); they are encoded from the prompt alone",
                    files["queries.jsonl"], len(empty), empty[:3])
    from diffretriever_pyserini.writers import AtomicDir

    with AtomicDir(prepared.root) as tmp:
        (tmp / "corpus").mkdir()
        n_docs = n_empty = 0
        out = None
        judged = {d for rels in qrels.values() for d in rels}
        for doc in iter_corpus(src):
            judged.discard(doc["id"])
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
        if judged:
            log.warning("%s: %d judged documents are not in the corpus (e.g. %s); they can never be retrieved",
                        files[f"qrels/{dataset.split}.tsv"], len(judged), sorted(judged)[:3])
        with open(tmp / "topics.tsv", "w", encoding="utf-8") as f, \
                open(tmp / "queries.jsonl", "w", encoding="utf-8") as exact:
            for qid in sorted(qrels, key=_natural_key):
                f.write(f"{qid}\t{one_line(queries[qid])}\n")
                exact.write(json.dumps({"id": qid, "text": queries[qid]}, ensure_ascii=False) + "\n")
        with open(tmp / "qrels.txt", "w", encoding="utf-8") as f:
            for qid in sorted(qrels, key=_natural_key):
                for docid, rel in sorted(qrels[qid].items()):
                    f.write(f"{qid} 0 {docid} {rel}\n")
        stats = {"format": PREPARE_FORMAT, "dataset": dataset.name, "source": str(src),
                 "sources": fingerprint(files), "verification": verdicts, "documents": n_docs,
                 "empty_documents": n_empty, "queries": len(qrels), "qrels": sum(len(v) for v in qrels.values())}
        (tmp / "dataset.json").write_text(json.dumps(stats, indent=2) + "\n")
        (tmp / ".complete").write_text("")
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
