"""Sharded, resumable corpus encoding: one process per device, or Ray actors across machines.

The corpus is cut into ``shard_num`` contiguous shards made of whole encoding windows (Pyserini's
``--shard-id/--shard-num`` meaning: shard i of n is a contiguous range, the last one takes the remainder), so a
sharded run forms exactly the batches an unsharded run forms and its merged outputs are byte-identical.
Each shard is encoded into ``<encodings>/shards/shard-<i>-of-<n>/{sparse,dense}`` (written atomically by the
writers) and then marked complete by ``shard.json`` holding the sha256 of every output file. A rerun skips shards
whose marker and checksums verify and redoes the others. :func:`merge_shards` then writes the usual
``<encodings>/{sparse,dense}``: the sparse folder holds one JsonVectorCollection file per shard (Pyserini indexes
them in parallel threads), the dense folder the concatenated FAISS index, docids and K vectors.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from diffretriever_pyserini.encode.corpus import EncodeOutputs, encode_corpus
from diffretriever_pyserini.errors import UserError
from diffretriever_pyserini.encode.writers import (AtomicDir, describe_files, exclusive, file_checksum, read_metadata,
                                            write_metadata, write_npy_header)

log = logging.getLogger(__name__)

MARKER = "shard.json"


def shard_ranges(n_docs: int, shard_num: int, window: int) -> list[tuple[int, int]]:
    """Contiguous [start, end) document ranges of whole windows; the last shard takes the remainder."""
    if shard_num < 1:
        raise ValueError(f"shard_num must be >= 1, got {shard_num}")
    windows = math.ceil(n_docs / window)
    per = windows // shard_num
    if per == 0:
        raise ValueError(f"{n_docs} documents make {windows} windows of {window}: too few for {shard_num} shards")
    bounds = [min(n_docs, i * per * window) for i in range(shard_num)] + [n_docs]
    return [(bounds[i], bounds[i + 1]) for i in range(shard_num)]


@dataclass(frozen=True)
class ShardJob:
    """What one worker needs to encode one shard (picklable: sent to processes and Ray actors)."""

    corpus_dir: str
    root: str
    shard_id: int
    shard_num: int
    start: int
    end: int
    batch_size: int
    window: int
    kvector_dtype: str
    metadata: dict

    @property
    def folder(self) -> Path:
        return Path(self.root) / "shards" / f"shard-{self.shard_id:05d}-of-{self.shard_num:05d}"


def _output_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MARKER)


def shard_is_complete(folder: Path) -> bool:
    """The marker exists and every file's checksum still matches it."""
    marker = folder / MARKER
    if not marker.is_file():
        return False
    recorded = json.loads(marker.read_text())["sha256"]
    files = {str(p.relative_to(folder)): p for p in _output_files(folder)}
    return recorded.keys() == files.keys() and all(file_checksum([files[k]]) == v for k, v in recorded.items())


def encode_shard(encoder, job: ShardJob) -> dict:
    """Encode one shard (skipped when complete); returns its stats."""
    from diffretriever_pyserini.datasets import iter_prepared_corpus

    folder = job.folder
    with exclusive(folder):  # two runs on one work folder: the second waits, then finds the shard complete
        if shard_is_complete(folder):
            log.info("shard %d/%d is complete; skipping", job.shard_id, job.shard_num)
            return json.loads((folder / MARKER).read_text())["stats"]
        if folder.exists():
            shutil.rmtree(folder)  # an incomplete shard is redone from scratch
        docs = itertools.islice(iter_prepared_corpus(Path(job.corpus_dir)), job.start, job.end)
        meta = {**job.metadata, "shard": {"id": job.shard_id, "num": job.shard_num, "start": job.start,
                                          "end": job.end}}
        stats = encode_corpus(encoder, docs, EncodeOutputs(folder), batch_size=job.batch_size,
                              sort_window=job.window, total=job.end - job.start, metadata=meta,
                              kvector_dtype=job.kvector_dtype)
        checksums = {str(p.relative_to(folder)): file_checksum([p]) for p in _output_files(folder)}
        tmp = folder / (MARKER + ".tmp")
        tmp.write_text(json.dumps({"stats": stats, "sha256": checksums, "range": [job.start, job.end]}, indent=1))
        os.replace(tmp, folder / MARKER)
        return stats


def pending(jobs: list[ShardJob]) -> list[ShardJob]:
    """The shards still to encode (logs how many are already complete)."""
    todo = [j for j in jobs if not shard_is_complete(j.folder)]
    if len(todo) < len(jobs):
        log.info("%d of %d shards are complete; skipping them", len(jobs) - len(todo), len(jobs))
    return todo


def plan(corpus_dir: Path, root: Path, shard_num: int, batch_size: int, window: int, kvector_dtype: str,
         metadata: dict, n_docs: int) -> list[ShardJob]:
    return [ShardJob(str(corpus_dir), str(root), i, shard_num, s, e, batch_size, window, kvector_dtype, metadata)
            for i, (s, e) in enumerate(shard_ranges(n_docs, shard_num, window))]


def _worker(rank: int, jobs: list[ShardJob], encoder_factory, devices: list[str]) -> None:
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // len(devices)) if devices[rank] == "cpu" else 1)
    encoder = encoder_factory(devices[rank])
    for job in jobs[rank::len(devices)]:
        encode_shard(encoder, job)


def run_local(jobs: list[ShardJob], encoder_factory, workers: int = 1, device: str | None = None) -> None:
    """Encode every shard: in this process (one worker) or one spawned process per device.

    ``device`` auto/None uses every visible GPU (one process each) or ``workers`` CPU processes.
    """
    import torch

    if device in (None, "", "auto") and torch.cuda.is_available():
        devices = [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    else:
        devices = [device if device not in (None, "", "auto") else "cpu"] * max(1, workers)
    todo = pending(jobs)
    if len(devices) == 1 or len(todo) <= 1:
        encoder = encoder_factory(devices[0])
        for job in todo:
            encode_shard(encoder, job)
        return
    import torch.multiprocessing as mp

    mp.spawn(_worker, args=(todo, encoder_factory, devices[: len(todo)]), nprocs=min(len(devices), len(todo)))


def run_ray(jobs: list[ShardJob], encoder_factory, actors: int = 1, gpus_per_actor: float = 0.0) -> None:
    """Encode the shards with Ray Data: a pool of actors, each holding one model copy, one shard per call.

    Uses the cluster named by ``RAY_ADDRESS`` (multi-node: ``ray start --head`` on one machine, ``ray start
    --address=<head>:6379`` on the others, then run this command anywhere with RAY_ADDRESS set), else a local one.
    """
    try:
        import ray
    except ImportError as exc:
        raise ImportError("the Ray engine needs Ray Data: pip install 'ray[data]'") from exc
    todo = pending(jobs)
    if not todo:
        return
    started = not ray.is_initialized()
    if started:
        ray.init(address=os.environ.get("RAY_ADDRESS"), include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(_import_roots())}})

    class ShardActor:
        def __init__(self):
            import ray as _ray

            ids = _ray.get_gpu_ids()
            self.encoder = encoder_factory("cuda:0" if ids else "cpu")

        def __call__(self, batch):
            for job_json in batch["job"]:
                encode_shard(self.encoder, ShardJob(**json.loads(job_json)))
            return {"done": list(batch["job"])}

    try:
        ds = ray.data.from_items([{"job": json.dumps(j.__dict__)} for j in todo])
        ds = ds.map_batches(ShardActor, batch_size=1, concurrency=max(1, min(actors, len(todo))),
                            num_gpus=gpus_per_actor, num_cpus=1)
        ds.materialize()
    finally:
        if started:
            ray.shutdown()


def _import_roots() -> list[str]:
    """Where this package (and its start-up module) import from, for Ray workers."""
    import diffretriever_pyserini

    return [str(Path(diffretriever_pyserini.__file__).resolve().parents[1])]


def merge_shards(jobs: list[ShardJob], outputs: EncodeOutputs) -> EncodeOutputs:
    """Merge complete shards (in shard order) into ``outputs``; identical to an unsharded encoding's files."""
    import faiss

    missing = [j.shard_id for j in jobs if not shard_is_complete(j.folder)]
    if missing:
        raise RuntimeError(f"shards {missing} are not complete; rerun the encode command to finish them")
    shards = [EncodeOutputs(j.folder) for j in jobs]
    meta = {k: v for k, v in read_metadata(shards[0].sparse).items() if k not in ("shard", "documents", "stats")}
    stats = {"documents": 0, "truncated": 0, "empty": 0, "empty_sparse": 0}
    for j in jobs:
        for key, value in json.loads((j.folder / MARKER).read_text())["stats"].items():
            stats[key] = stats.get(key, 0) + value
    if stats["documents"] and stats["empty_sparse"] == stats["documents"]:
        raise UserError(f"every one of the {stats['documents']} sparse vectors of the {len(jobs)} shards is empty; an "
                        "impact index of them would match nothing", outputs.root)
    meta.update(stats=stats, shards=len(jobs))
    with AtomicDir(outputs.sparse) as tmp:
        for j, shard in zip(jobs, shards):
            src = next(shard.sparse.glob("*.jsonl"))
            try:
                os.link(src, tmp / f"part-{j.shard_id:05d}.jsonl")
            except OSError:
                shutil.copy(src, tmp / f"part-{j.shard_id:05d}.jsonl")
        write_metadata(tmp, {**meta, "documents": stats["documents"], "format": "JsonVectorCollection"})
    with AtomicDir(outputs.dense) as tmp:
        index = None
        arrays = []
        with open(tmp / "docid", "w", encoding="utf-8") as docids:
            for shard in shards:
                part = faiss.read_index(str(shard.dense / "index"))
                if index is None:
                    index = faiss.IndexFlatIP(part.d)
                index.add(part.reconstruct_n(0, part.ntotal))
                docids.write((shard.dense / "docid").read_text(encoding="utf-8"))
                arrays.append(np.load(shard.dense / "kvectors.npy", mmap_mode="r"))
        faiss.write_index(index, str(tmp / "index"))
        shape = (sum(a.shape[0] for a in arrays), *arrays[0].shape[1:])
        with open(tmp / "kvectors.npy", "wb") as f:
            write_npy_header(f, shape, arrays[0].dtype)
            for a in arrays:
                for s in range(0, a.shape[0], 4096):
                    f.write(np.ascontiguousarray(a[s:s + 4096]).tobytes())
        dense_meta = read_metadata(shards[0].dense)
        write_metadata(tmp, {**{k: v for k, v in dense_meta.items()
                                if k not in ("shard", "stats", "documents", "files")},
                             "documents": stats["documents"], "stats": stats, "shards": len(jobs),
                             "files": describe_files(tmp, ("index", "docid", "kvectors.npy"))})
    return outputs
