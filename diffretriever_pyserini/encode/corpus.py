"""Corpus encoding: prepared corpus -> K-mask readout -> sparse JsonVectorCollection + FAISS index, in one pass.

Documents are read in windows of ``sort_window``; each window is sorted by token length (longest first, ties by
docid) and cut into batches, so padding is small and memory stays bounded by the window, not the corpus.
"""

from __future__ import annotations

import logging
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from tqdm import tqdm

from diffretriever_pyserini import __version__
from diffretriever_pyserini.errors import UserError, disk_full_error
from diffretriever_pyserini.encode.writers import FaissWriter, SparseWriter, file_checksum

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EncodeOutputs:
    """Where one corpus encoding goes: ``sparse/`` (JsonVectorCollection) and ``dense/`` (FAISS)."""

    root: Path

    @property
    def sparse(self) -> Path:
        return self.root / "sparse"

    @property
    def dense(self) -> Path:
        return self.root / "dense"

    def is_complete(self) -> bool:
        return (self.sparse / "metadata.json").is_file() and (self.dense / "metadata.json").is_file()


def versions() -> dict:
    """Versions of what shapes the outputs (recorded in metadata.json)."""
    import faiss
    import torch
    import transformers

    out = {"diffretriever_pyserini": __version__, "torch": torch.__version__,
           "transformers": transformers.__version__, "faiss": faiss.__version__, "python": platform.python_version()}
    try:
        from importlib.metadata import version

        out["pyserini"] = version("pyserini")
    except Exception:  # pragma: no cover
        pass
    return out


def _windows(docs: Iterable[dict], size: int) -> Iterator[list[dict]]:
    window: list[dict] = []
    for doc in docs:
        window.append(doc)
        if len(window) == size:
            yield window
            window = []
    if window:
        yield window


def encode_corpus(reader, docs: Iterable[dict], outputs: EncodeOutputs, batch_size: int = 32,
                  sort_window: int = 8192, total: int | None = None, metadata: dict | None = None,
                  kvector_dtype: str = "float32") -> dict:
    """Encode ``docs`` (``{"id", "contents"}``) with a passage-side :class:`~.representation.KMaskReader` (or
    anything holding one as ``.reader``, such as the Pyserini document encoder); return stats.

    Both outputs are written atomically: an interrupted run leaves neither looking complete.
    """
    reader = getattr(reader, "reader", reader)
    meta = {"readout": reader.metadata(), "versions": versions(), **(metadata or {})}
    stats = {"documents": 0, "truncated": 0, "empty": 0, "empty_sparse": 0}
    progress = tqdm(total=total, unit="doc", desc="encode corpus", mininterval=2.0)
    try:
        _encode_into(reader, docs, outputs, meta, stats, progress, batch_size, sort_window, kvector_dtype)
    except UserError as exc:
        cause = exc.__cause__
        full = disk_full_error(cause, outputs.root, _bytes_needed(reader, total, kvector_dtype)) \
            if isinstance(cause, OSError) else None
        if full is not None:  # the same error, now with the space the whole encoding needs
            raise full from cause
        raise
    progress.close()
    if stats["truncated"]:
        log.info("%d of %d documents were longer than max_length=%d and had their text truncated",
                 stats["truncated"], stats["documents"], reader.config.max_length)
    return stats


def _bytes_needed(reader, total: int | None, kvector_dtype: str) -> int | None:
    """About how much an encoding of ``total`` documents writes: the K vectors (written, then copied into
    ``kvectors.npy``), the single vectors, a few KB of sparse terms per document."""
    if not total:
        return None
    width = reader.backbone.vocab_size if reader.config.dense_source == "lm-head-output" else \
        reader.backbone.hidden_size
    item = 2 if kvector_dtype == "float16" else 4
    return total * (2 * reader.config.k * width * item + 4 * width + 4096)


def _encode_into(reader, docs, outputs: EncodeOutputs, meta: dict, stats: dict, progress, batch_size: int,
                 sort_window: int, kvector_dtype: str) -> None:
    with SparseWriter(outputs.sparse, meta) as sparse, FaissWriter(outputs.dense, meta, kvector_dtype) as dense:
        for window in _windows(docs, sort_window):
            lengths = reader.token_lengths([d["contents"] for d in window])
            order = sorted(range(len(window)), key=lambda i: (-lengths[i], window[i]["id"]))
            for start in range(0, len(order), batch_size):
                batch = [window[i] for i in order[start:start + batch_size]]
                texts = [d["contents"] for d in batch]
                ids = [d["id"] for d in batch]
                out = reader.read(texts)
                _check_finite(reader, out, ids)
                sparse.write(ids, texts, out.sparse)
                dense.write(ids, out.single, out.dense)
                stats["documents"] += len(batch)
                stats["truncated"] += sum(out.truncated)
                stats["empty"] += sum(not t for t in texts)
                stats["empty_sparse"] += sum(not v for v in out.sparse)
                progress.update(len(batch))
        if stats["documents"] and stats["empty_sparse"] == stats["documents"] and "shard" not in meta:
            raise UserError(f"every one of the {stats['documents']} sparse vectors is empty ({_source(reader)}"
                            f"{', and every document text is empty' if stats['empty'] == stats['documents'] else ''})"
                            "; an impact index of them would match nothing, so nothing was kept", outputs.root)
        sparse.metadata["stats"] = dense.metadata["stats"] = stats


def _source(reader) -> str:
    """The model (and adapter) a reader runs, for messages."""
    backbone = reader.backbone
    adapter = getattr(backbone, "adapter", None)
    return f"model {backbone.source}" + (f", adapter {adapter}" if adapter else "")


def _check_finite(reader, out, ids: list[str]) -> None:
    """Refuse NaN / infinite vectors (a broken checkpoint or adapter): naming the model and a document."""
    bad = ~np.isfinite(out.single).all(axis=1) | ~np.isfinite(out.dense).reshape(len(ids), -1).all(axis=1)
    if bad.any():
        first = ids[int(np.flatnonzero(bad)[0])]
        raise UserError(f"the readout of {_source(reader)} gave non-finite vectors for {int(bad.sum())} of "
                        f"{len(ids)} documents (first: {first}); check the checkpoint / adapter weights; nothing "
                        "was kept")


def corpus_metadata(corpus_dir: Path) -> dict:
    """The corpus path and its checksum (sha256 over the part files in name order)."""
    parts = sorted(Path(corpus_dir).glob("*.jsonl"))
    return {"corpus": str(corpus_dir), "corpus_sha256": file_checksum(parts)}
