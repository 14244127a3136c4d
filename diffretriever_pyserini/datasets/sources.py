"""Where a BEIR dataset's files come from: a local mirror (``$BEIR_MIRROR``) or the BEIR archive, downloaded once with
its checksum checked; the source files' fingerprints and content checks."""

from __future__ import annotations

import errno
import gzip
import hashlib
import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path

from diffretriever_pyserini.datasets.registry import BEIR_URL, BeirDataset, DatasetError


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
        from diffretriever_pyserini.encode.writers import file_checksum

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

log = logging.getLogger(__name__)


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


def find_file(folder: Path, stem: str) -> Path:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise DatasetError(f"missing {stem} (or {stem}.gz) in {folder}")


def source_files(dataset: BeirDataset, src: Path) -> dict[str, Path]:
    """The BEIR files a prepared dataset is made from: corpus, queries and the evaluated qrels."""
    return {"corpus.jsonl": find_file(src, "corpus.jsonl"), "queries.jsonl": find_file(src, "queries.jsonl"),
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
