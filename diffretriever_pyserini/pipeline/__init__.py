"""A whole dataset end to end: prepare -> encode -> index -> search -> fuse -> evaluate.

Outputs land at ``runs/beir-v1.0.0-<dataset>/<condition>/{dense,sparse,hybrid,hybrid-pyserini}.trec`` with
``.metrics.json`` beside each; work files (prepared data, encodings, indexes) under ``<work>/``. Steps whose
outputs are complete are skipped, so a rerun resumes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from diffretriever_pyserini.index import compressed

from diffretriever_pyserini.readout import finetuned
from diffretriever_pyserini.index.dense import DENSE_INDEX_TYPES
from diffretriever_pyserini.datasets import get_dataset, iter_prepared_corpus, prepare
from diffretriever_pyserini.errors import UserError
from diffretriever_pyserini.evaluate.metrics import evaluate_run_file
from diffretriever_pyserini.readout.limits import MAX_K
from diffretriever_pyserini.search.maxsim import METHODS, MaxSimOptions, get_method
from diffretriever_pyserini.search.modes import (MODE_TABLE, MODES, Fusing, first_stage_needed, get_mode,
                                          reads_dense_index, reads_maxsim)
from diffretriever_pyserini.index.multivector import DEFAULT_DEPTH
from diffretriever_pyserini.search.runs import search_depth, write_run
from diffretriever_pyserini.encode.writers import exclusive, read_metadata

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class RunConfig:
    """One DiffRetriever condition on one dataset."""

    dataset: str = field(default="scifact", metadata={"help": "BEIR dataset name (see `datasets`)"})
    model: str = field(default="minilm", metadata={"help": "packaged name, model folder or hub id"})
    family: str | None = field(default=None, metadata={"help": "backbone family; None = from config.json"})
    adapter: str | None = field(default=None, metadata={"help": "PEFT LoRA adapter folder or hub id, merged at load"})
    shifted_logits: bool = field(default=False, metadata={"help": "read logits one position earlier, as Dream's "
                                                                  "sampler does (the retriever reads unshifted)"})
    k_q: int | None = field(default=None, metadata={"help": "query masks K_q (default 4, or the fine-tuned model's)"})
    k_p: int | None = field(default=None, metadata={"help": "passage masks K_p (default 4, or the fine-tuned model's)"})
    q_max_length: int | None = field(default=None, metadata={
        "help": "query budget: the text is cut to q_max_length minus the prompt's tokens, the K masks and the tail "
                "come on top (reference inference: 256)"})
    p_max_length: int | None = field(default=None, metadata={"help": "passage budget, as q_max_length (256)"})
    top_k: int | None = field(default=None, metadata={
        "help": "sparse terms kept per mask position (default: 128 zero-shot diffusion, 256 zero-shot "
                "autoregressive and every fine-tuned model)"})
    denoise_steps: int | None = field(default=None, metadata={
        "help": "unmask the K positions over S forward passes, most confident first, reading each position at the "
                "pass that unmasks it (the reference's --num_denoise_steps); default 1 = the paper's one-pass "
                "readout, or a fine-tuned model's own"})
    quantisation: str | None = field(default=None, metadata={"choices": ("truncate", "round"),
        "help": "integer impacts: truncate = int(w*100) (default zero-shot), round (default fine-tuned)"})
    stop: str | None = field(default=None, metadata={"choices": ("decoded", "generated", "none"),
        "help": "decoded-token stop: decoded (default zero-shot diffusion), generated (default zero-shot "
                "autoregressive: special token or closing quote), none (default fine-tuned)"})
    promptreps_fallback: int = field(default=0, metadata={
        "help": "PromptReps' rule: a text with no surviving content term keeps this many unrestricted top terms "
                "(DiffRetriever and the reference have none: 0)"})
    dense_source: str = field(default="hidden", metadata={"choices": ("hidden", "lm-head-output"),
        "help": "dense vectors from the last hidden state (the method's definition) or lm-head-output (what the "
                "reference's fine-tuned LLaDA readout actually reads, its hidden-state hook being lost in the LoRA "
                "merge; vocabulary-sized vectors)"})
    variant: str | None = field(default=None, metadata={"choices": ("one", "few", "three"),
        "help": "prompt wording: one, few or three (default: one for K=1, few otherwise); count words are "
                "rewritten to name K, as the reference does"})
    device: str | None = field(default=None, metadata={"help": "auto (cuda if present), cpu, cuda:0 ..."})
    dtype: str | None = field(default=None, metadata={"help": "auto, bf16, fp16, fp32"})
    batch_size: int = field(default=32, metadata={"help": "texts per forward pass"})
    hits: int = field(default=1000, metadata={"help": "hits per topic in each run"})
    modes: str = field(default=",".join(MODES), metadata={"help": "comma-separated scoring modes to run: "
                                                                + ", ".join(f"{m} ({d})" for m, d in MODES.items())})
    keep_self_hits: bool = field(default=False, metadata={
        "help": "keep a hit whose docid equals the query id on ArguAna and Quora (the reference does; BEIR, "
                "Anserini and Pyserini's --remove-query drop it, which is the default here)"})
    sparse_zero_fill: bool = field(default=False, metadata={
        "help": "when fusing, count a sparse list shorter than --hits as padded with zero-score documents (min 0), "
                "as the reference's brute-force sparse scoring returns; Lucene returns matching documents only"})
    maxsim: str = field(default="exact", metadata={"choices": tuple(METHODS),
        "help": "multi_dense search: exact (blocked brute force over the float K vectors, as the reference scores), "
                "candidates (FAISS float rows + exact re-scoring) or compressed (an anchor per passage in a 4-bit "
                "IVF index + a 4-bit product-quantized residual per vector, about 9x smaller than float16 at 384 "
                "dimensions and 21x at 3,584; --maxsim-rerank re-scores its top hits exactly); an approximate "
                "run's recall against exact search on --maxsim-check queries is written beside it"})
    maxsim_check: int = field(default=100, metadata={
        "help": "queries on which a candidates or compressed run is compared with exact MaxSim (0 = skip)"})
    depth: int = field(default=DEFAULT_DEPTH, metadata={"help": "candidate rows per query vector (maxsim=candidates)"})
    maxsim_nprobe: int | None = field(default=None, metadata={
        "help": "anchor lists probed per query (maxsim=compressed; default: the store's own, lists holding "
                "about 20,000 passages, so all of a small corpus)"})
    maxsim_ndocs: int = field(default=compressed.DEFAULT_NDOCS, metadata={
        "help": "passages per query scored with MaxSim over their decoded vectors, the best by anchor score; the "
                "rest of the top --hits follow in anchor-score order (maxsim=compressed)"})
    maxsim_rerank: int = field(default=0, metadata={
        "help": "top hits re-scored exactly from the float K vectors (maxsim=compressed; 0 = none)"})
    dense_index: str = field(default="flat", metadata={"choices": DENSE_INDEX_TYPES,
        "help": "single-vector (dense) index searched by Pyserini's FaissSearcher: flat (exact, float32), sq16, sq8, "
                "sq6 (scalar quantized, 2x, 4x, 5.3x smaller), pq (16x, exhaustive), ivfpq (16x, nprobe lists) or "
                "hnsw-sq8 (graph over 8-bit codes); built once beside the flat index"})
    kvector_dtype: str = field(default="float32", metadata={"choices": ("float32", "float16"),
                                                            "help": "storage of the K vectors: float32 or float16"})
    window: int = field(default=8192, metadata={"help": "documents sorted by length together (batches form inside "
                                                        "a window; shards are made of whole windows)"})
    shard_num: int = field(default=1, metadata={"help": "encode in this many contiguous shards (resumable)"})
    shard_id: int | None = field(default=None, metadata={"help": "encode only this shard (multi-machine by hand); "
                                                                 "default: all, then merge"})
    workers: int = field(default=1, metadata={"help": "encoding processes on this machine (one per GPU when "
                                                      "device is auto and GPUs are present)"})
    engine: str = field(default="local", metadata={"choices": ("local", "ray"),
                                                   "help": "local (processes) or ray (Ray Data actors; set "
                                                           "RAY_ADDRESS for a cluster)"})
    threads: int = field(default=2, metadata={"help": "indexing and search threads"})
    mirror: str | None = field(default=None, metadata={"help": "BEIR mirror; None = $BEIR_MIRROR, else download"})
    work: str = field(default="runs/work", metadata={"help": "folder for prepared data, encodings, indexes"})
    runs: str = field(default="runs", metadata={"help": "folder for run files and metrics"})

    def _stem(self) -> str:
        def short(x: str) -> str:
            return Path(x).name if Path(x).exists() else x.replace("/", "_")

        tuned = finetuned.find(self.model, self.adapter)
        if tuned is not None and tuned.extras.get("run_name"):
            base = short(tuned.extras.get("base_model", self.model))
            return f"diffretriever.{base}.finetuned-{tuned.extras['run_name']}"
        mode = f"ft-{short(self.adapter)}" if self.adapter else "ft" if tuned is not None else "zs"
        return f"diffretriever.{short(self.model)}.{mode}"

    def _readout_tag(self) -> str:
        """Name parts of the readout options that differ from the defaults (the defaults add nothing)."""
        parts = [(".shifted", self.shifted_logits), (f".s{self.denoise_steps}", (self.denoise_steps or 1) > 1),
                 (f".{self.quantisation}", self.quantisation), (f".stop-{self.stop}", self.stop),
                 (f".fallback{self.promptreps_fallback}", self.promptreps_fallback),
                 (".dense-lm-head", self.dense_source != "hidden"), (f".{self.variant}", self.variant)]
        return "".join(tag for tag, present in parts if present)

    def _index_tag(self) -> str:
        """Name parts of the search indexes that differ from the defaults (flat dense index, exact MaxSim)."""
        rerank = f"-rerank{self.maxsim_rerank}" if self.maxsim == "compressed" and self.maxsim_rerank else ""
        parts = [(f".dense-{self.dense_index}", self.dense_index != "flat"),
                 (f".maxsim-{self.maxsim}{rerank}", self.maxsim != "exact")]
        return "".join(tag for tag, present in parts if present)

    @property
    def condition(self) -> str:
        """Run folder name: backbone, zero-shot / fine-tuned / adapter, K budgets, readout and index options
        (non-default ones only)."""
        c = self.resolved()
        top = f".top{c.top_k}" if c.top_k else ""
        return f"{self._stem()}.kq{c.k_q}-kp{c.k_p}{top}{c._readout_tag()}{c._index_tag()}"

    @property
    def passage_condition(self) -> str:
        """What the corpus encoding depends on (shared by conditions that differ only on the query side)."""
        c = self.resolved()
        top = f".top{c.top_k}" if c.top_k else ""
        extra = c._readout_tag() + (".f16" if self.kvector_dtype == "float16" else "")
        return f"{self._stem()}.kp{c.k_p}.len{c.p_max_length}{top}{extra}"

    def mode_list(self) -> list[str]:
        modes = [m.strip() for m in self.modes.split(",") if m.strip()]
        unknown = [m for m in modes if m not in MODES]
        if unknown:
            raise UserError(f"unknown mode(s) {unknown}; choose from {', '.join(MODES)}")
        return [get_mode(m).name for m in modes]

    def resolved(self) -> "RunConfig":
        """Unset K, lengths and denoising steps filled from a fine-tuned model's ``retriever_config.json``, else
        the zero-shot defaults (K 4, max_length 256 on both sides, one pass)."""
        defaults = finetuned.run_defaults(self.model, self.adapter)
        return dataclasses.replace(self, **{name: value if getattr(self, name) is None else getattr(self, name)
                                            for name, value in defaults.items()}).validate()

    def validate(self) -> "RunConfig":
        """Refuse values no step can use, naming the option (a one-line error rather than a failure later)."""
        positive = {"--batch-size": self.batch_size, "--hits": self.hits, "--window": self.window,
                    "--shard-num": self.shard_num, "--workers": self.workers, "--threads": self.threads,
                    "--depth": self.depth, "--k-q": self.k_q, "--k-p": self.k_p,
                    "--q-max-length": self.q_max_length, "--p-max-length": self.p_max_length,
                    "--denoise-steps": self.denoise_steps, "--top-k": self.top_k,
                    "--maxsim-nprobe": self.maxsim_nprobe, "--maxsim-ndocs": self.maxsim_ndocs}
        for flag, value in positive.items():
            if value is not None and value < 1:
                raise UserError(f"{flag} must be at least 1, got {value}")
        for flag, value in {"--k-q": self.k_q, "--k-p": self.k_p}.items():
            if value is not None and value > MAX_K:
                raise UserError(f"{flag} must be at most {MAX_K}, got {value}")
        k_max = max(self.k_q or 1, self.k_p or 1)
        if self.denoise_steps is not None and self.denoise_steps > k_max:
            raise UserError(f"--denoise-steps {self.denoise_steps} is more than K ({k_max}): each pass unmasks at "
                            f"least one of the K masks, so --denoise-steps {k_max} already reads the same vectors")
        for flag, value in {"--promptreps-fallback": self.promptreps_fallback,
                            "--maxsim-check": self.maxsim_check, "--maxsim-rerank": self.maxsim_rerank}.items():
            if value < 0:
                raise UserError(f"{flag} must not be negative, got {value}")
        if self.shard_id is not None and not 0 <= self.shard_id < self.shard_num:
            raise UserError(f"--shard-id {self.shard_id} is outside 0..{self.shard_num - 1} (--shard-num "
                            f"{self.shard_num})")
        self._check_consistent()
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            value = getattr(self, f.name)
            if choices and value is not None and value not in choices:
                raise UserError(f"--{f.name.replace('_', '-')} must be one of {', '.join(choices)}, got {value!r}")
        self.mode_list()
        return self

    def _check_consistent(self) -> None:
        """Refuse index options that no selected mode uses (the run would be named after an index it never read)."""
        modes = self.mode_list()
        if self.dense_index != "flat" and not reads_dense_index(modes):
            raise UserError(f"--dense-index {self.dense_index} is only read by modes that search the dense list "
                            f"({', '.join(m for m in MODES if reads_dense_index([m]))}), and --modes {self.modes} "
                            "has none of them")
        if self.maxsim != "exact" and not reads_maxsim(modes):
            readers = " and ".join(m for m in MODES if reads_maxsim([m]))
            raise UserError(f"--maxsim {self.maxsim} is only read by {readers}, and --modes {self.modes} has neither")

    def maxsim_options(self) -> MaxSimOptions:
        """The options of the ``--maxsim`` method."""
        return MaxSimOptions(self.depth, self.maxsim_nprobe, self.maxsim_ndocs, self.maxsim_rerank)

    def backbone_options(self) -> dict:
        """Keyword arguments for ``load_backbone``."""
        return {"device": self.device, "dtype": self.dtype, "family": self.family, "adapter": self.adapter,
                "shifted_logits": self.shifted_logits}

    def readout_options(self, side: str) -> dict:
        """Keyword arguments for the encoders' readout on ``side`` (None = default, or the fine-tuned model's)."""
        query = side == "query"
        return {"k": self.k_q if query else self.k_p, "max_length": self.q_max_length if query else self.p_max_length,
                "top_k": self.top_k, "denoise_steps": self.denoise_steps, "quantisation": self.quantisation,
                "stop": self.stop, "fallback_k": self.promptreps_fallback or None, "dense_source": self.dense_source,
                "variant": self.variant}

    @property
    def remove_self_hits(self) -> bool:
        return get_dataset(self.dataset).remove_query and not self.keep_self_hits


@dataclass(frozen=True)
class Paths:
    """Where the steps of one condition read and write."""

    cfg: RunConfig

    @property
    def dataset(self):
        return get_dataset(self.cfg.dataset)

    @property
    def encodings(self):
        from diffretriever_pyserini.encode.corpus import EncodeOutputs

        return EncodeOutputs(Path(self.cfg.work) / "encodings" / self.dataset.name / self.cfg.passage_condition)

    @property
    def impact_index(self) -> Path:
        return Path(self.cfg.work) / "indexes" / self.dataset.name / f"{self.cfg.passage_condition}.impact"

    @property
    def run_dir(self) -> Path:
        return Path(self.cfg.runs) / self.dataset.run_prefix / self.cfg.condition


def step_prepare(cfg: RunConfig):
    """BEIR files (mirror or download) -> corpus JSONL, topics TSV, qrels."""
    return prepare(get_dataset(cfg.dataset), Path(cfg.work) / "data", cfg.mirror)


def _passage_reader(cfg: RunConfig, backbone=None):
    """The condition's passage-side K-mask reader (no Pyserini: encoding workers build only this)."""
    from diffretriever_pyserini.readout.readers import build_reader

    return build_reader(backbone or cfg.model, "passage", **cfg.readout_options("passage"), **cfg.backbone_options())


def _multi_dense(cfg: RunConfig, paths: "Paths", query_encoder, topics: dict[str, str]) -> dict:
    """MaxSim run: exact brute force (the default, as the reference scores), FAISS row candidates + exact
    re-scoring (``--maxsim candidates``) or the compressed store (``--maxsim compressed``). An approximate run's
    agreement with exact search on ``maxsim_check`` queries is written to ``multi_dense.<method>.json`` beside it."""
    from diffretriever_pyserini.index import multivector as mv
    from diffretriever_pyserini.pyserini_bridge.search import finish_run

    store = mv.MultiVectorStore.open(paths.encodings.dense)
    queries = {qid: query_encoder.kvectors(text) for qid, text in topics.items()}
    depth = search_depth(cfg.hits, cfg.remove_self_hits)
    method = get_method(cfg.maxsim)
    run = method.search(store, paths.encodings.dense, queries, depth, cfg.maxsim_options())
    if cfg.maxsim == "exact":
        return finish_run(run, cfg.hits, cfg.remove_self_hits)
    report = {"method": cfg.maxsim, **_maxsim_description(cfg, paths)}
    run = finish_run(run, cfg.hits, cfg.remove_self_hits)
    if cfg.maxsim_check > 0:
        checked = dict(list(queries.items())[: cfg.maxsim_check])
        exact = finish_run(mv.exact_search(store, checked, depth), cfg.hits, cfg.remove_self_hits)
        report.update(mv.agreement(exact, {q: run[q] for q in checked}, cfg.hits))
        paths.run_dir.mkdir(parents=True, exist_ok=True)
        (paths.run_dir / f"multi_dense.{cfg.maxsim}.json").write_text(json.dumps(report, indent=2) + "\n")
        log.info("maxsim %s vs exact on %d queries: recall@%d %.4f, recall@10 %.4f", cfg.maxsim, report["queries"],
                 cfg.hits, report[f"recall@{cfg.hits}"], report["recall@10"])
    return run


@dataclass(frozen=True)
class DocumentEncoderFactory:
    """Builds the condition's passage reader on a given device (picklable, for worker processes and Ray)."""

    cfg: RunConfig

    def __call__(self, device: str | None = None):
        return _passage_reader(dataclasses.replace(self.cfg, device=device or self.cfg.device))


READOUT_VERSION = 2
"""Bumped when the readout's outputs change for the same options (2: the reference-faithful readout), so that a
rerun never reuses encodings made by an older readout."""


def encoding_request(cfg: RunConfig) -> dict:
    """What a corpus encoding was asked to be (kept in its metadata; a complete encoding is reused only for the
    same request)."""
    return {"readout_version": READOUT_VERSION, "model": _where(cfg.model), "adapter": _where(cfg.adapter),
            "family": cfg.family,
            "dtype": cfg.dtype, "shifted_logits": cfg.shifted_logits, "kvector_dtype": cfg.kvector_dtype,
            **cfg.readout_options("passage")}


def _where(source: str | None) -> str | None:
    """A local model or adapter folder as an absolute path (the same folder named from another working directory
    is the same request); a hub id as it is."""
    return str(Path(source).resolve()) if source and Path(source).is_dir() else source


def _same_request(stored: dict | None, request: dict) -> bool:
    """Whether a stored encoding request asks for the same vectors (an unset dtype is ``auto``)."""
    def norm(r: dict) -> dict:
        return {**r, "dtype": r.get("dtype") or "auto"}

    return stored is not None and norm(stored) == norm(request)


def step_encode(cfg: RunConfig, reader=None):
    """Corpus -> sparse JsonVectorCollection + FAISS index (skipped when complete); returns the passage reader (None
    when the work ran in other processes). Sharded when ``shard_num`` > 1, ``workers`` > 1 or ``engine`` is ray.

    One run writes an encoding at a time: a second run of the same condition waits for the first (``--shard-id``
    runs lock their own shard only, so machines sharing the work folder encode in parallel)."""
    cfg = cfg.resolved()
    prepared, paths = step_prepare(cfg), Paths(cfg)
    if cfg.shard_id is not None:
        return _encode(cfg, prepared, paths, reader)
    with exclusive(paths.encodings.root):
        return _encode(cfg, prepared, paths, reader)


def _encode(cfg: RunConfig, prepared, paths: Paths, reader):
    from diffretriever_pyserini.encode.corpus import corpus_metadata, encode_corpus

    request = encoding_request(cfg)
    corpus = corpus_metadata(prepared.corpus_dir)
    if paths.encodings.is_complete():
        made = read_metadata(paths.encodings.sparse)
        stored = made.get("request")
        if _same_request(stored, request) and made.get("corpus_sha256") == corpus["corpus_sha256"]:
            log.info("encodings in %s are complete; reusing them", paths.encodings.root)
            return reader or _passage_reader(cfg)
        if not _same_request(stored, request):
            why = "an older version of this package" if stored is None else f"another readout: {stored} != {request}"
        else:
            why = (f"another corpus (sha256 {str(made.get('corpus_sha256'))[:12]}, now "
                   f"{corpus['corpus_sha256'][:12]})")
        log.warning("encodings in %s were made by %s; encoding again", paths.encodings.root, why)
        import shutil

        shutil.rmtree(paths.encodings.root)
        shutil.rmtree(paths.impact_index, ignore_errors=True)
    stats = json.loads((prepared.root / "dataset.json").read_text())
    meta = {"dataset": paths.dataset.name, "request": request, **corpus}
    if cfg.shard_num > 1 or cfg.workers > 1 or cfg.engine != "local" or cfg.shard_id is not None:
        from diffretriever_pyserini.encode import sharding

        jobs = sharding.plan(prepared.corpus_dir, paths.encodings.root, cfg.shard_num, cfg.batch_size, cfg.window,
                             cfg.kvector_dtype, meta, stats["documents"])
        factory = DocumentEncoderFactory(cfg)
        if cfg.shard_id is not None:
            sharding.encode_shard(factory(cfg.device), jobs[cfg.shard_id])
            return None
        if cfg.engine == "ray":
            import torch

            sharding.run_ray(jobs, factory, actors=cfg.workers,
                             gpus_per_actor=1.0 if torch.cuda.is_available() and cfg.device != "cpu" else 0.0)
        else:
            sharding.run_local(jobs, factory, cfg.workers, cfg.device)
        sharding.merge_shards(jobs, paths.encodings)
        return reader
    reader = reader or _passage_reader(cfg)
    encode_corpus(reader, iter_prepared_corpus(prepared.corpus_dir), paths.encodings,
                  batch_size=cfg.batch_size, sort_window=cfg.window, total=stats["documents"], metadata=meta,
                  kvector_dtype=cfg.kvector_dtype)
    return reader


def step_index(cfg: RunConfig) -> Path:
    """Sparse JsonVectorCollection -> Lucene impact index; the ``--dense-index`` index and the compressed MaxSim
    store when asked for (each skipped when complete)."""
    cfg = cfg.resolved()
    from diffretriever_pyserini.index.dense import build_dense_index
    from diffretriever_pyserini.pyserini_bridge.lucene import build_impact_index, index_is_complete

    paths = Paths(cfg)
    if not paths.encodings.is_complete():
        raise UserError("no complete encodings here; run the encode step first", paths.encodings.root)
    if not index_is_complete(paths.impact_index):
        build_impact_index(paths.encodings.sparse, paths.impact_index, cfg.threads)
    modes = cfg.mode_list()
    if cfg.dense_index != "flat" and reads_dense_index(modes):
        build_dense_index(paths.encodings.dense, cfg.dense_index)
    build = get_method(cfg.maxsim).build
    if build is not None and reads_maxsim(modes):
        build(paths.encodings.dense)
    return paths.impact_index


def step_search(cfg: RunConfig, backbone=None) -> dict[str, dict]:
    """Queries -> a run per selected mode (see MODES), each evaluated."""
    cfg = cfg.resolved()
    from diffretriever_pyserini.index.dense import build_dense_index, describe
    from diffretriever_pyserini.pyserini_bridge.encoders import DiffRetrieverQueryEncoder
    from diffretriever_pyserini.pyserini_bridge.lucene import index_is_complete
    from diffretriever_pyserini.pyserini_bridge.search import dense_searcher, impact_searcher, search_topics

    prepared, paths = step_prepare(cfg), Paths(cfg)
    if not paths.encodings.is_complete() or not index_is_complete(paths.impact_index):
        raise UserError(f"missing encodings or impact index for {cfg.condition}; run encode and index first",
                        Path(cfg.work))
    query_encoder = DiffRetrieverQueryEncoder(backbone or cfg.model, batch_size=cfg.batch_size,
                                              **cfg.readout_options("query"), **cfg.backbone_options())
    topics = prepared.query_texts()
    query_encoder.prime(list(topics.values()))
    dense_folder = build_dense_index(paths.encodings.dense, cfg.dense_index)  # (built once; flat: the folder itself)
    dense = dense_searcher(dense_folder, query_encoder)
    sparse = impact_searcher(paths.impact_index, query_encoder.sparse)
    rq, modes = cfg.remove_self_hits, cfg.mode_list()
    first = {"dense": lambda: search_topics(dense, topics, cfg.hits, rq, cfg.threads),
             "sparse": lambda: search_topics(sparse, topics, cfg.hits, rq, cfg.threads),
             "multi_dense": lambda: _multi_dense(cfg, paths, query_encoder, topics)}
    runs: dict[str, dict] = {stage: first[stage]() for stage in first_stage_needed(modes)}
    fusing = Fusing(runs, topics, cfg.hits, rq, cfg.sparse_zero_fill,
                    json.loads((prepared.root / "dataset.json").read_text())["documents"], dense, sparse)
    for name in modes:
        if get_mode(name).combine is not None:
            runs[name] = get_mode(name).combine(fusing)
    runs = {m: runs[m] for m in modes}
    lucene_only = runs.get("sparse")
    unmatched = [q for q in topics if not lucene_only.get(q)] if "sparse" in runs else []
    if unmatched:  # the written sparse run only: the fusions above fused the Lucene lists as they are
        log.warning("%d topics match no document in the impact index (e.g. %s); their sparse run entries are their "
                    "dense lists (config.json: sparse_unmatched_topics)", len(unmatched), unmatched[:3])
        runs["sparse"] = {**runs["sparse"], **search_topics(dense, {q: topics[q] for q in unmatched}, cfg.hits, rq,
                                                           cfg.threads)}
    records = {}
    for name, run in runs.items():
        path = write_run(paths.run_dir / f"{name}.trec", run, tag=f"{cfg.condition}.{name}", k=cfg.hits,
                         topic_order=topics)
        records[name] = evaluate_run_file(path, prepared.qrels, paths.dataset.metrics)
    if unmatched:  # what Anserini's impact search of the same index gives (no entries for those topics)
        from diffretriever_pyserini.evaluate.metrics import evaluate, read_qrels

        records["sparse"]["lucene_only_metrics"] = evaluate(read_qrels(prepared.qrels), lucene_only,
                                                            paths.dataset.metrics)
        metrics_file = paths.run_dir / "sparse.trec.metrics.json"
        metrics_file.write_text(json.dumps(records["sparse"], indent=2) + "\n")
    config = {**asdict(cfg), "condition": cfg.condition, "readout_query": query_encoder.reader.metadata(),
              "readout_passage": read_metadata(paths.encodings.sparse).get("readout"),
              "modes": {m: MODES[m] for m in runs},
              "indexes": {"dense": {"folder": str(dense_folder), **describe(dense_folder)},
                          "multi_dense": _maxsim_description(cfg, paths)},
              "fusion": _fusion_rules(cfg),
              "sparse_unmatched_topics": {"rule": SPARSE_UNMATCHED_RULE, "topics": unmatched} if unmatched else None,
              "differences_from_reference": deliberate_differences(cfg, paths.dataset)}
    (paths.run_dir / "config.json").write_text(json.dumps(config, indent=2, default=str) + "\n")
    return records


SPARSE_UNMATCHED_RULE = ("a topic whose sparse query vector matches no document gets its dense list in sparse.trec "
                         "(every per-mode run has every topic, as a TREC submission must); fusions use the Lucene "
                         "lists as they are")


def _fusion_rules(cfg: RunConfig) -> dict[str, str]:
    """How each combining mode fuses (config.json), from the mode table."""
    zero = ", a short sparse list padded with zeros" if cfg.sparse_zero_fill else ""
    return {m.name: m.fusion_rule + (zero if m.name == "hybrid" else "") for m in MODE_TABLE.values()
            if m.fusion_rule}


def _maxsim_description(cfg: RunConfig, paths: Paths) -> dict:
    """How the multi_dense run was searched (config.json)."""
    return get_method(cfg.maxsim).describe(paths.encodings.dense, cfg.maxsim_options())


def deliberate_differences(cfg: RunConfig, dataset) -> dict:
    """Where this run differs from the authors' released code on purpose, and the option that switches it."""
    out = {"sparse_search": "Lucene impact search returns matching documents only"
                            + ("; fusion pads short lists with zeros (--sparse-zero-fill)" if cfg.sparse_zero_fill
                               else " (--sparse-zero-fill makes fusion count them as padded with zeros)")}
    if dataset.remove_query:
        out["self_hits"] = ("kept (--keep-self-hits), as the reference does" if cfg.keep_self_hits else
                            "a hit equal to the query id is removed (BEIR/Anserini); --keep-self-hits keeps it")
    if cfg.dense_source != "hidden":
        out["dense_source"] = "LM-head output, the reference's fine-tuned LLaDA behaviour (--dense-source)"
    return out


def run_dataset(cfg: RunConfig) -> dict[str, dict]:
    """All steps for one condition on one dataset (complete steps are reused); ``{run name: metrics record}``."""
    cfg = cfg.resolved()
    reader = step_encode(cfg)
    step_index(cfg)
    return step_search(cfg, backbone=reader.backbone if reader else None)


BM25_MULTIFIELD_BOOSTS = {"contents": 1.0, "title": 1.0}
"""Field boosts of Anserini's ``beir-v1.0.0-<ds>.multifield`` condition (title and text as separate fields)."""


def bm25_index(cfg: RunConfig, multifield: bool = False) -> Path:
    """The BM25 index of the prepared corpus, built by Pyserini when missing: flat (``contents`` = title + text,
    Anserini's ``.flat``) or multifield (``contents`` = text, plus ``title``)."""
    from diffretriever_pyserini.pyserini_bridge.lucene import build_bm25_index, index_is_complete

    dataset, prepared = get_dataset(cfg.dataset), step_prepare(cfg)
    index_dir = Path(cfg.work) / "indexes" / dataset.name / ("bm25-multifield" if multifield else "bm25-flat")
    if index_is_complete(index_dir):
        return index_dir
    if not multifield:
        return build_bm25_index(prepared.corpus_dir, index_dir, cfg.threads)
    corpus = Path(cfg.work) / "data" / dataset.name / "corpus-multifield"
    corpus.mkdir(parents=True, exist_ok=True)
    with open(corpus / "part-00000.jsonl", "w", encoding="utf-8") as f:
        for doc in iter_prepared_corpus(prepared.corpus_dir):
            f.write(json.dumps({"id": doc["id"], "contents": doc["text"], "title": doc["title"]},
                               ensure_ascii=False) + "\n")
    return build_bm25_index(corpus, index_dir, cfg.threads, fields=("title",))


def _run_bm25(cfg: RunConfig, multifield: bool) -> dict:
    from diffretriever_pyserini.pyserini_bridge.search import bm25_search

    dataset, prepared = get_dataset(cfg.dataset), step_prepare(cfg)
    index_dir = bm25_index(cfg, multifield)
    topics = prepared.query_texts()
    run = bm25_search(index_dir, topics, cfg.hits, cfg.remove_self_hits, cfg.threads,
                      fields=BM25_MULTIFIELD_BOOSTS if multifield else None)
    name = index_dir.name
    path = write_run(Path(cfg.runs) / dataset.run_prefix / name / "bm25.trec", run, name, cfg.hits,
                     topic_order=topics)
    return evaluate_run_file(path, prepared.qrels, dataset.metrics)


def run_bm25(cfg: RunConfig) -> dict:
    """Control: BM25 flat over the same prepared corpus, through Pyserini's Lucene index and searcher."""
    return _run_bm25(cfg, multifield=False)


def run_bm25_multifield(cfg: RunConfig) -> dict:
    """Control: BM25 multifield (title and text as separate fields, boost 1.0 each), as Anserini's
    ``beir-v1.0.0-<ds>.multifield`` condition, through Pyserini's Lucene index and searcher."""
    return _run_bm25(cfg, multifield=True)


def run_meanpool_control(cfg: RunConfig, max_length: int = 256) -> dict:
    """Control: Pyserini's own AutoDocumentEncoder (mean pooling, L2) on the same backbone, encoded by the
    unmodified ``python -m pyserini.encode`` command and searched with ``FaissSearcher``."""
    from diffretriever_pyserini.backbones import model_folder
    from diffretriever_pyserini.pyserini_bridge.search import dense_searcher, meanpool_query_encoder, search_topics
    from diffretriever_pyserini.encode.writers import AtomicDir

    from diffretriever_pyserini.backbones.checkpoint import read_config

    dataset, prepared = get_dataset(cfg.dataset), step_prepare(cfg)
    model_dir = str(model_folder(cfg.model))
    config = read_config(Path(model_dir))
    if config.get("auto_map"):  # Pyserini's own encoder would offer to run the folder's code
        raise UserError("config.json names custom code (auto_map); the mean-pooling control runs Pyserini's own "
                        "encoder, which would offer to execute it, so it refuses this model", model_dir)
    dim = config["hidden_size"]
    index_dir = Path(cfg.work) / "indexes" / dataset.name / f"meanpool.{Path(model_dir).name}"
    if not (index_dir / "index").is_file():
        with AtomicDir(index_dir) as tmp:
            cmd = [sys.executable, "-m", "pyserini.encode",
                   "input", "--corpus", str(prepared.corpus_dir), "--fields", "title", "text",
                   "output", "--embeddings", str(tmp), "--to-faiss",
                   "encoder", "--encoder", model_dir, "--encoder-class", "auto", "--pooling", "mean", "--l2-norm",
                   "--fields", "title", "text", "--dimension", str(dim), "--max-length", str(max_length),
                   "--batch-size", str(cfg.batch_size), "--device", cfg.device or "cpu"]
            log.info("running %s", " ".join(cmd))
            proc = subprocess.run(cmd, stdin=subprocess.DEVNULL)  # its progress bar goes to the terminal
            if proc.returncode != 0:
                raise RuntimeError(f"pyserini.encode failed with exit code {proc.returncode} (its output is above)")
    encoder = meanpool_query_encoder(model_dir)
    topics = prepared.query_texts()
    run = search_topics(dense_searcher(index_dir, encoder), topics, cfg.hits, cfg.remove_self_hits, cfg.threads)
    path = write_run(Path(cfg.runs) / dataset.run_prefix / f"meanpool.{Path(model_dir).name}" / "dense.trec", run,
                     "meanpool", cfg.hits, topic_order=topics)
    return evaluate_run_file(path, prepared.qrels, dataset.metrics)


def metrics_table(rows: list[tuple[str, dict]], metrics=("ndcg_cut_10", "recall_100")) -> str:
    """A markdown table of ``(label, metrics record)`` rows."""
    head = "| run | " + " | ".join(metrics) + " |\n|---|" + "---|" * len(metrics) + "\n"
    body = "".join(f"| {label} | " + " | ".join(f"{rec['metrics'][m]:.4f}" for m in metrics) + " |\n"
                   for label, rec in rows)
    return head + body
