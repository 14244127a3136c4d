"""The MaxSim search methods, one registry: how ``multi_dense`` is searched over an encoding's K vectors.

- ``exact``: blocked brute force over the float K vectors (the reference's scoring; the default);
- ``candidates``: FAISS over the float rows for candidates, re-scored exactly (:mod:`.multivector`);
- ``compressed``: an anchor per passage in a 4-bit IVF index + 4-bit residual codes (:mod:`.compressed`).

Each method says how its index is built (the index step), how it searches and how it is described in
``config.json``. Adding a method is one :class:`MaxSimMethod` entry and its functions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from diffretriever_pyserini.index import compressed
from diffretriever_pyserini.index import multivector as mv
from diffretriever_pyserini.search.runs import Run


@dataclass(frozen=True)
class MaxSimOptions:
    """The search options a method may read: ``depth`` (candidates per query), ``nprobe`` (None: the compressed
    store's own), ``ndocs`` and ``rerank`` (compressed store)."""

    depth: int = mv.DEFAULT_DEPTH
    nprobe: int | None = None
    ndocs: int = compressed.DEFAULT_NDOCS
    rerank: int = 0


@dataclass(frozen=True)
class MaxSimMethod:
    """``build(dense_dir)``: its index (None: nothing to build); ``search(store, dense_dir, queries, k, options)``
    -> run; ``describe(dense_dir, options)`` -> what config.json records."""

    name: str
    build: Callable[[Path], object] | None
    search: Callable[..., Run]
    describe: Callable[[Path, MaxSimOptions], dict]


def _build_rows(dense_dir: Path) -> None:
    if not (Path(dense_dir) / "rows" / "manifest.json").is_file():
        mv.build_row_index(dense_dir)


def _candidates(store, dense_dir: Path, queries, k: int, o: MaxSimOptions) -> Run:
    _build_rows(dense_dir)
    return mv.candidate_search(store, mv.RowIndex(dense_dir), queries, k, o.depth)


def _compressed(store, dense_dir: Path, queries, k: int, o: MaxSimOptions) -> Run:
    packed = compressed.CompressedStore(compressed.build_store(dense_dir), store.docids, exact=store.vectors)
    return compressed.compressed_search(packed, queries, k, o.nprobe, o.ndocs, o.rerank)


def _describe_compressed(dense_dir: Path, o: MaxSimOptions) -> dict:
    manifest = Path(dense_dir) / compressed.FOLDER / "manifest.json"
    built = json.loads(manifest.read_text()) if manifest.is_file() else {}
    return {"search": "compressed", "store": str(manifest.parent), **built, "nprobe": o.nprobe or built.get("nprobe"),
            "ndocs": o.ndocs, "rerank": o.rerank}


METHODS: dict[str, MaxSimMethod] = {m.name: m for m in (
    MaxSimMethod("exact", None, lambda store, dense_dir, queries, k, o: mv.exact_search(store, queries, k),
                 lambda dense_dir, o: {"search": "exact", "store": str(Path(dense_dir) / "kvectors.npy")}),
    MaxSimMethod("candidates", _build_rows, _candidates,
                 lambda dense_dir, o: {"search": "candidates", "depth": o.depth, "nprobe": mv.DEFAULT_NPROBE,
                                       "row_index": str(Path(dense_dir) / "rows")}),
    MaxSimMethod("compressed", compressed.build_store, _compressed, _describe_compressed),
)}


def get_method(name: str) -> MaxSimMethod:
    """The MaxSim method ``name``; an unknown one raises ValueError naming the known ones and this file."""
    if name not in METHODS:
        raise ValueError(f"unknown MaxSim method {name!r}; choose from {', '.join(METHODS)} (maxsim.py lists them)")
    return METHODS[name]
