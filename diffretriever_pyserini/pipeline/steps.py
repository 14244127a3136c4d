"""The steps of one condition on one collection: prepare -> encode -> index -> search (-> fuse -> evaluate).

Each step takes a resolved :class:`~diffretriever_pyserini.pipeline.settings.Run` (options are resolved on the way
in) and skips work whose outputs are complete, so a rerun resumes. Outputs land at
``runs/<collection>/<condition>/<mode>.trec`` with ``.metrics.json`` beside each (when there are qrels) and a
``config.json`` saying how the run was made; work files (prepared data, encodings, indexes) under ``<work>/``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from diffretriever_pyserini.datasets import prepare
from diffretriever_pyserini.datasets.prepare import iter_prepared_corpus
from diffretriever_pyserini.encode.writers import exclusive, read_metadata
from diffretriever_pyserini.errors import UserError
from diffretriever_pyserini.pipeline.records import evaluate_run, run_config
from diffretriever_pyserini.pipeline.settings import Run, RunConfig, as_run
from diffretriever_pyserini.search.modes import Fusing, first_stage_needed, get_mode, reads_dense_index, reads_maxsim
from diffretriever_pyserini.search.runs import write_run

log = logging.getLogger(__name__)

READOUT_VERSION = 2
"""Bumped when the readout's outputs change for the same options (2: the reference-faithful readout), so that a
rerun never reuses encodings made by an older readout."""


def step_prepare(cfg: RunConfig | Run):
    """Collection files (BEIR mirror or download, or your own files) -> corpus JSONL, topics TSV, qrels."""
    run = as_run(cfg)
    return prepare(run.dataset, run.paths.data, run.paths.mirror)


def passage_reader(run: Run, backbone=None, device: str | None = None):
    """The condition's passage-side K-mask reader (no Pyserini: encoding workers build only this)."""
    from diffretriever_pyserini.readout.readers import build_reader

    options = {**run.model.backbone_options(), **({"device": device} if device else {})}
    return build_reader(backbone or run.model.model, "passage", **run.readout.side("passage"), **options)


@dataclass(frozen=True)
class DocumentEncoderFactory:
    """Builds the condition's passage reader on a given device (picklable, for worker processes and Ray)."""

    run: Run

    def __call__(self, device: str | None = None):
        return passage_reader(self.run, device=device)


def encoding_request(cfg: RunConfig | Run) -> dict:
    """What a corpus encoding was asked to be (kept in its metadata; a complete encoding is reused only for the
    same request)."""
    run = as_run(cfg)
    m = run.model
    return {"readout_version": READOUT_VERSION, "model": _where(m.model), "adapter": _where(m.adapter),
            "family": m.family, "dtype": m.dtype, "shifted_logits": m.shifted_logits,
            "kvector_dtype": run.encode.kvector_dtype, **run.readout.side("passage")}


def _where(source: str | None) -> str | None:
    """A local model or adapter folder as an absolute path (the same folder named from another working directory
    is the same request); a hub id as it is."""
    return str(Path(source).resolve()) if source and Path(source).is_dir() else source


def _same_request(stored: dict | None, request: dict) -> bool:
    """Whether a stored encoding request asks for the same vectors (an unset dtype is ``auto``)."""
    def norm(r: dict) -> dict:
        return {**r, "dtype": r.get("dtype") or "auto"}

    return stored is not None and norm(stored) == norm(request)


def step_encode(cfg: RunConfig | Run, reader=None):
    """Corpus -> sparse JsonVectorCollection + FAISS index (skipped when complete); returns the passage reader (None
    when the work ran in other processes). Sharded when ``shard_num`` > 1, ``workers`` > 1 or ``engine`` is ray.

    One run writes an encoding at a time: a second run of the same condition waits for the first (``--shard-id``
    runs lock their own shard only, so machines sharing the work folder encode in parallel)."""
    run = as_run(cfg)
    prepared = step_prepare(run)
    if run.encode.shard_id is not None:
        return _encode(run, prepared, reader)
    with exclusive(run.paths.encodings.root):
        return _encode(run, prepared, reader)


def _reusable(run: Run, request: dict, corpus: dict) -> bool:
    """Whether the complete encodings were made for this request and corpus; if not, they (and the impact index
    built from them) are removed."""
    encodings = run.paths.encodings
    made = read_metadata(encodings.sparse)
    stored = made.get("request")
    if _same_request(stored, request) and made.get("corpus_sha256") == corpus["corpus_sha256"]:
        log.info("encodings in %s are complete; reusing them", encodings.root)
        return True
    if not _same_request(stored, request):
        why = "an older version of this package" if stored is None else f"another readout: {stored} != {request}"
    else:
        why = f"another corpus (sha256 {str(made.get('corpus_sha256'))[:12]}, now {corpus['corpus_sha256'][:12]})"
    log.warning("encodings in %s were made by %s; encoding again", encodings.root, why)
    shutil.rmtree(encodings.root)
    shutil.rmtree(run.paths.impact_index, ignore_errors=True)
    return False


def _encode(run: Run, prepared, reader):
    from diffretriever_pyserini.encode.corpus import corpus_metadata, encode_corpus

    request, corpus = encoding_request(run), corpus_metadata(prepared.corpus_dir)
    encodings = run.paths.encodings
    if encodings.is_complete() and _reusable(run, request, corpus):
        return reader or passage_reader(run)
    documents = json.loads((prepared.root / "dataset.json").read_text())["documents"]
    meta = {"dataset": run.dataset.name, "request": request, **corpus}
    shards = run.encode
    if shards.sharded:
        from diffretriever_pyserini.encode import sharding

        jobs = sharding.plan(prepared.corpus_dir, encodings.root, shards.shard_num, run.model.batch_size,
                             shards.window, run.encode.kvector_dtype, meta, documents)
        factory = DocumentEncoderFactory(run)
        if shards.shard_id is not None:
            sharding.encode_shard(factory(run.model.device), jobs[shards.shard_id])
            return None
        if shards.engine == "ray":
            import torch

            gpus = 1.0 if torch.cuda.is_available() and run.model.device != "cpu" else 0.0
            sharding.run_ray(jobs, factory, actors=shards.workers, gpus_per_actor=gpus)
        else:
            sharding.run_local(jobs, factory, shards.workers, run.model.device)
        sharding.merge_shards(jobs, encodings)
        return reader
    reader = reader or passage_reader(run)
    encode_corpus(reader, iter_prepared_corpus(prepared.corpus_dir), encodings, batch_size=run.model.batch_size,
                  sort_window=shards.window, total=documents, metadata=meta, kvector_dtype=run.encode.kvector_dtype)
    return reader


def step_index(cfg: RunConfig | Run) -> Path:
    """Sparse JsonVectorCollection -> Lucene impact index; the ``dense_index`` index and the MaxSim method's index
    when a selected mode reads them (each skipped when complete)."""
    from diffretriever_pyserini.index.dense import build_dense_index
    from diffretriever_pyserini.pyserini_bridge.lucene import build_impact_index, index_is_complete

    run = as_run(cfg)
    paths = run.paths
    if not paths.encodings.is_complete():
        raise UserError("no complete encodings here; run the encode step first", paths.encodings.root)
    if not index_is_complete(paths.impact_index):
        build_impact_index(paths.encodings.sparse, paths.impact_index, run.index.threads)
    if run.index.dense_index != "flat" and reads_dense_index(run.search.modes):
        build_dense_index(paths.encodings.dense, run.index.dense_index)
    build = run.index.maxsim_method.build
    if build is not None and reads_maxsim(run.search.modes):
        build(paths.encodings.dense)
    return paths.impact_index


def _dense_folder(run: Run) -> Path:
    """The folder of the ``dense_index`` index the index step built (flat: the encoding folder itself)."""
    from diffretriever_pyserini.index.dense import index_folder

    kind = run.index.dense_index
    folder = index_folder(run.paths.encodings.dense, kind)
    if kind != "flat" and not (folder / "metadata.json").is_file():
        raise UserError(f"no complete {kind} dense index here; run the index step first", folder)
    return folder


def multi_dense_run(run: Run, query_encoder, topics: dict[str, str]) -> dict:
    """The MaxSim run with the ``maxsim`` method; an approximate method's agreement with exact search on
    ``maxsim_check`` queries is written to ``multi_dense.<method>.json`` beside it."""
    from diffretriever_pyserini.index import multivector as mv
    from diffretriever_pyserini.search.runs import finish_run

    dense, s = run.paths.encodings.dense, run.search
    store = mv.MultiVectorStore.open(dense)
    queries = {qid: query_encoder.kvectors(text) for qid, text in topics.items()}
    found = run.index.maxsim_method.search(store, dense, queries, s.depth, run.index.maxsim_options)
    result = finish_run(found, s.hits, s.remove_self_hits)
    if run.index.maxsim == "exact" or s.maxsim_check == 0:
        return result
    report = {"method": run.index.maxsim, **run.index.maxsim_method.describe(dense, run.index.maxsim_options)}
    checked = dict(list(queries.items())[: s.maxsim_check])
    exact = finish_run(mv.exact_search(store, checked, s.depth), s.hits, s.remove_self_hits)
    report.update(mv.agreement(exact, {q: result[q] for q in checked}, s.hits))
    run.paths.run_dir.mkdir(parents=True, exist_ok=True)
    (run.paths.run_dir / f"multi_dense.{run.index.maxsim}.json").write_text(json.dumps(report, indent=2) + "\n")
    log.info("maxsim %s vs exact on %d queries: recall@%d %.4f, recall@10 %.4f", run.index.maxsim,
             report["queries"], s.hits, report[f"recall@{s.hits}"], report["recall@10"])
    return result


def step_search(cfg: RunConfig | Run, backbone=None) -> dict[str, dict]:
    """Queries -> a run per selected mode (see the mode table), each evaluated when there are qrels."""
    from diffretriever_pyserini.pyserini_bridge.encoders import DiffRetrieverQueryEncoder
    from diffretriever_pyserini.pyserini_bridge.lucene import index_is_complete
    from diffretriever_pyserini.pyserini_bridge.search import dense_searcher, impact_searcher, search_topics

    run = as_run(cfg)
    prepared, paths, s = step_prepare(run), run.paths, run.search
    if not paths.encodings.is_complete() or not index_is_complete(paths.impact_index):
        raise UserError(f"missing encodings or impact index for {run.condition}; run encode and index first",
                        paths.work)
    query_encoder = DiffRetrieverQueryEncoder(backbone or run.model.model, batch_size=run.model.batch_size,
                                              **run.readout.side("query"), **run.model.backbone_options())
    topics = prepared.query_texts()
    query_encoder.prime(list(topics.values()))
    dense_folder = _dense_folder(run) if reads_dense_index(s.modes) else paths.encodings.dense
    dense = dense_searcher(dense_folder, query_encoder)
    sparse = impact_searcher(paths.impact_index, query_encoder.sparse)
    first = {"dense": lambda: search_topics(dense, topics, s.hits, s.remove_self_hits, s.threads),
             "sparse": lambda: search_topics(sparse, topics, s.hits, s.remove_self_hits, s.threads),
             "multi_dense": lambda: multi_dense_run(run, query_encoder, topics)}
    runs: dict[str, dict] = {stage: first[stage]() for stage in first_stage_needed(s.modes)}
    documents = json.loads((prepared.root / "dataset.json").read_text())["documents"]
    fusing = Fusing(runs, topics, s.hits, s.remove_self_hits, s.sparse_zero_fill, documents, dense, sparse)
    for name in s.modes:
        if get_mode(name).combine is not None:
            runs[name] = get_mode(name).combine(fusing)
    runs = {m: runs[m] for m in s.modes}
    lucene_only = runs.get("sparse")
    unmatched = [q for q in topics if not lucene_only.get(q)] if "sparse" in runs else []
    if unmatched:  # the written sparse run only: the fusions above fused the Lucene lists as they are
        log.warning("%d topics match no document in the impact index (e.g. %s); their sparse run entries are their "
                    "dense lists (config.json: sparse_unmatched_topics)", len(unmatched), unmatched[:3])
        runs["sparse"] = {**runs["sparse"], **search_topics(dense, {q: topics[q] for q in unmatched}, s.hits,
                                                           s.remove_self_hits, s.threads)}
    records = {}
    for name, ranked in runs.items():
        path = write_run(paths.run_dir / f"{name}.trec", ranked, tag=f"{run.condition}.{name}", k=s.hits,
                         topic_order=topics)
        records[name] = evaluate_run(path, prepared, run.dataset.metrics,
                                     lucene_only if name == "sparse" and unmatched else None)
    config = run_config(run, query_encoder.reader.metadata(), dense_folder, unmatched)
    (paths.run_dir / "config.json").write_text(json.dumps(config, indent=2, default=str) + "\n")
    return records


def run_dataset(cfg: RunConfig | Run) -> dict[str, dict]:
    """All steps for one condition on one collection (complete steps are reused); ``{run name: metrics record}``."""
    run = as_run(cfg)
    reader = step_encode(run)
    step_index(run)
    return step_search(run, backbone=reader.backbone if reader else None)


def with_options(run: Run, **changes) -> Run:
    """The same run with some options changed, resolved again."""
    return dataclasses.replace(run.options, **changes).resolve()
