"""One run's configuration: the options as given (:class:`RunConfig`, one field per command-line flag) and the same
run resolved once (:func:`resolve` -> :class:`Run`): small frozen settings per stage (model, readout, encode,
index, search, paths; :mod:`~diffretriever_pyserini.pipeline.stages`) with the fine-tuned folder's defaults
filled in and every value checked.

Steps read only a :class:`Run`, so K, the fine-tuned folder, the dataset and the run names are worked out in one
place, before any step runs, and ``config.json`` records exactly what the steps read (``settings``).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path

from diffretriever_pyserini.datasets import BeirDataset, get_dataset
from diffretriever_pyserini.datasets.custom import custom_dataset
from diffretriever_pyserini.errors import UserError
from diffretriever_pyserini.index.compressed import DEFAULT_NDOCS
from diffretriever_pyserini.index.dense import DENSE_INDEX_TYPES
from diffretriever_pyserini.index.multivector import DEFAULT_DEPTH
from diffretriever_pyserini.pipeline.stages import (EncodeSettings, IndexSettings, ModelSettings, ReadoutSettings, Run,
                                                    RunPaths, SearchSettings)
from diffretriever_pyserini.readout import finetuned
from diffretriever_pyserini.readout.limits import MAX_K
from diffretriever_pyserini.search.maxsim import METHODS, MaxSimOptions
from diffretriever_pyserini.search.modes import MODES, get_mode, reads_dense_index, reads_maxsim


def _opt(default, stage: str, help: str, **extra):
    """A RunConfig field: its default, the stage whose settings it belongs to, and its help text."""
    return field(default=default, metadata={"stage": stage, "help": help, **extra})


@dataclass(frozen=True)
class RunConfig:
    """One DiffRetriever condition on one collection, as asked for (``None`` = the default, or the fine-tuned
    model's); :meth:`resolve` turns it into the :class:`Run` the steps read."""

    dataset: str = _opt("scifact", "dataset", "BEIR dataset name of the registry (see `datasets`)")
    corpus: str | None = _opt(None, "dataset", "your own corpus instead of --dataset: a Pyserini JsonCollection folder "
                                              "or a JSONL / JSONL.gz file (id + contents, or BEIR _id + title + text)")
    topics: str | None = _opt(None, "dataset", "with --corpus: topics as TSV (qid TAB text), Pyserini / BEIR JSON or "
                                              "JSONL (_id/id/qid + text/title/query)")
    qrels: str | None = _opt(None, "dataset", "with --corpus: relevance judgements, TREC (qid 0 docid rel) or BEIR "
                                             "TSV (query-id corpus-id score, with a header); none: runs without "
                                             "metrics")
    name: str | None = _opt(None, "dataset", "with --corpus: the collection's name in run folders (default: the "
                                            "corpus file or folder name)")
    model: str = _opt("minilm", "model", "packaged name, model folder or hub id")
    family: str | None = _opt(None, "model", "backbone family; None = from config.json")
    adapter: str | None = _opt(None, "model", "PEFT LoRA adapter folder or hub id, merged at load")
    shifted_logits: bool = _opt(False, "model", "read logits one position earlier, as Dream's sampler does (the "
                                                "retriever reads unshifted)")
    device: str | None = _opt(None, "model", "auto (cuda if present), cpu, cuda:0 ...")
    dtype: str | None = _opt(None, "model", "auto, bf16, fp16, fp32")
    batch_size: int = _opt(32, "model", "texts per forward pass")
    k_q: int | None = _opt(None, "readout", "query masks K_q (default 4, or the fine-tuned model's)")
    k_p: int | None = _opt(None, "readout", "passage masks K_p (default 4, or the fine-tuned model's)")
    q_max_length: int | None = _opt(None, "readout", "query budget: the text is cut to q_max_length minus the "
                                                     "prompt's tokens, the K masks and the tail come on top "
                                                     "(reference inference: 256)")
    p_max_length: int | None = _opt(None, "readout", "passage budget, as q_max_length (256)")
    top_k: int | None = _opt(None, "readout", "sparse terms kept per mask position (default: 128 zero-shot "
                                              "diffusion, 256 zero-shot autoregressive and every fine-tuned model)")
    denoise_steps: int | None = _opt(None, "readout", "unmask the K positions over S forward passes, most confident "
                                                      "first, reading each position at the pass that unmasks it (the "
                                                      "reference's --num_denoise_steps); default 1 = the paper's "
                                                      "one-pass readout, or a fine-tuned model's own")
    quantisation: str | None = _opt(None, "readout", "integer impacts: truncate = int(w*100) (default zero-shot), "
                                                     "round (default fine-tuned)", choices=("truncate", "round"))
    stop: str | None = _opt(None, "readout", "decoded-token stop: decoded (default zero-shot diffusion), generated "
                                             "(default zero-shot autoregressive: special token or closing quote), "
                                             "none (default fine-tuned)", choices=("decoded", "generated", "none"))
    promptreps_fallback: int = _opt(0, "readout", "PromptReps' rule: a text with no surviving content term keeps "
                                                  "this many unrestricted top terms (DiffRetriever and the reference "
                                                  "have none: 0)")
    dense_source: str = _opt("hidden", "readout", "dense vectors from the last hidden state (the method's "
                                                  "definition) or lm-head-output (what the reference's fine-tuned "
                                                  "LLaDA readout actually reads, its hidden-state hook being lost in "
                                                  "the LoRA merge; vocabulary-sized vectors)",
                             choices=("hidden", "lm-head-output"))
    variant: str | None = _opt(None, "readout", "prompt wording: one, few or three (default: one for K=1, few "
                                                "otherwise); count words are rewritten to name K, as the reference "
                                                "does", choices=("one", "few", "three"))
    dense_index: str = _opt("flat", "index", "single-vector (dense) index searched by Pyserini's FaissSearcher: flat "
                                             "(exact, float32), sq16, sq8, sq6 (scalar quantized, 2x, 4x, 5.3x "
                                             "smaller), pq (16x, exhaustive), ivfpq (16x, nprobe lists) or hnsw-sq8 "
                                             "(graph over 8-bit codes); built once beside the flat index",
                            choices=DENSE_INDEX_TYPES)
    maxsim: str = _opt("exact", "index", "multi_dense search: exact (blocked brute force over the float K vectors, "
                                         "as the reference scores), candidates (FAISS float rows + exact "
                                         "re-scoring) or compressed (an anchor per passage in a 4-bit IVF index + a "
                                         "4-bit product-quantized residual per vector, about 9x smaller than "
                                         "float16 at 384 dimensions and 21x at 3,584; --maxsim-rerank re-scores its "
                                         "top hits exactly); an approximate run's recall against exact search on "
                                         "--maxsim-check queries is written beside it", choices=tuple(METHODS))
    depth: int = _opt(DEFAULT_DEPTH, "index", "candidate rows per query vector (maxsim=candidates)")
    maxsim_nprobe: int | None = _opt(None, "index", "anchor lists probed per query (maxsim=compressed; default: the "
                                                    "store's own, lists holding about 20,000 passages, so all of a "
                                                    "small corpus)")
    maxsim_ndocs: int = _opt(DEFAULT_NDOCS, "index", "passages per query scored with MaxSim over their decoded "
                                                     "vectors, the best by anchor score; the rest of the top --hits "
                                                     "follow in anchor-score order (maxsim=compressed)")
    maxsim_rerank: int = _opt(0, "index", "top hits re-scored exactly from the float K vectors (maxsim=compressed; "
                                          "0 = none)")
    hits: int = _opt(1000, "search", "hits per topic in each run")
    modes: str = _opt(",".join(MODES), "search", "comma-separated scoring modes to run: "
                      + ", ".join(f"{m} ({d})" for m, d in MODES.items()))
    keep_self_hits: bool = _opt(False, "search", "keep a hit whose docid equals the query id on ArguAna and Quora "
                                                 "(the reference does; BEIR, Anserini and Pyserini's --remove-query "
                                                 "drop it, which is the default here)")
    sparse_zero_fill: bool = _opt(False, "search", "when fusing, count a sparse list shorter than --hits as padded "
                                                   "with zero-score documents (min 0), as the reference's brute-force "
                                                   "sparse scoring returns; Lucene returns matching documents only")
    maxsim_check: int = _opt(100, "search", "queries on which a candidates or compressed run is compared with exact "
                                            "MaxSim (0 = skip)")
    threads: int = _opt(2, "index", "indexing and search threads")
    kvector_dtype: str = _opt("float32", "encode", "storage of the K vectors: float32 or float16",
                              choices=("float32", "float16"))
    window: int = _opt(8192, "encode", "documents sorted by length together (batches form inside a window; shards "
                                         "are made of whole windows)")
    shard_num: int = _opt(1, "encode", "encode in this many contiguous shards (resumable)")
    shard_id: int | None = _opt(None, "encode", "encode only this shard (multi-machine by hand); default: all, then "
                                                  "merge")
    workers: int = _opt(1, "encode", "encoding processes on this machine (one per GPU when device is auto and GPUs "
                                       "are present)")
    engine: str = _opt("local", "encode", "local (processes) or ray (Ray Data actors; set RAY_ADDRESS for a "
                                            "cluster)", choices=("local", "ray"))
    mirror: str | None = _opt(None, "paths", "BEIR mirror; None = $BEIR_MIRROR, else download")
    work: str = _opt("runs/work", "paths", "folder for prepared data, encodings, indexes")
    runs: str = _opt("runs", "paths", "folder for run files and metrics")

    def resolve(self) -> "Run":
        """This configuration resolved and checked (see :func:`resolve`)."""
        return resolve(self)

    # Conveniences of the resolved run, for callers holding options (each resolves again; steps hold a Run).
    def resolved(self) -> "RunConfig":
        """The options with K, lengths and denoising steps filled in (the fine-tuned model's, else the defaults)."""
        return self.resolve().options

    def validate(self) -> "RunConfig":
        """Raise :class:`SettingError` for a value no step can use; returns the options unchanged."""
        self.resolve()
        return self

    @property
    def condition(self) -> str:
        return self.resolve().condition

    @property
    def passage_condition(self) -> str:
        return self.resolve().passage_condition

    @property
    def remove_self_hits(self) -> bool:
        return self.resolve().search.remove_self_hits


def stage_fields(stage: str) -> list[dataclasses.Field]:
    """The RunConfig fields of one stage (see :data:`STAGES`)."""
    return [f for f in dataclasses.fields(RunConfig) if f.metadata["stage"] == stage]


STAGES = ("dataset", "model", "readout", "encode", "index", "search", "paths")


class SettingError(UserError):
    """A setting no step can use. The ``template`` names settings as ``{setting}`` fields: ``str()`` shows the
    setting names (the Python API); :meth:`render` with another spelling gives, say, the command-line flags."""

    def __init__(self, template: str, **values):
        self.template, self.values = template, values
        super().__init__(self.render(lambda name: name))

    def render(self, spell) -> str:
        names = {n: spell(n) for n in re.findall(r"\{(\w+)\}", self.template) if n not in self.values}
        return self.template.format(**names, **self.values)


def _check(o: RunConfig) -> None:
    """Refuse values no step can use, naming the setting (one line rather than a failure later)."""
    at_least_one = ("batch_size", "hits", "window", "shard_num", "workers", "threads", "depth", "k_q", "k_p",
                    "q_max_length", "p_max_length", "denoise_steps", "top_k", "maxsim_nprobe", "maxsim_ndocs")
    for name in at_least_one:
        value = getattr(o, name)
        if value is not None and value < 1:
            raise SettingError(f"{{{name}}} must be at least 1, got {{value}}", value=value)
    for name in ("k_q", "k_p"):
        if getattr(o, name) > MAX_K:
            raise SettingError(f"{{{name}}} must be at most {{limit}}, got {{value}}", limit=MAX_K,
                               value=getattr(o, name))
    k_max = max(o.k_q, o.k_p)
    if o.denoise_steps > k_max:
        raise SettingError("{denoise_steps} {value} is more than K ({k}): each pass unmasks at least one of the K "
                           "masks, so {denoise_steps} {k} already reads the same vectors", value=o.denoise_steps,
                           k=k_max)
    for name in ("promptreps_fallback", "maxsim_check", "maxsim_rerank"):
        if getattr(o, name) < 0:
            raise SettingError(f"{{{name}}} must not be negative, got {{value}}", value=getattr(o, name))
    if o.shard_id is not None and not 0 <= o.shard_id < o.shard_num:
        raise SettingError("{shard_id} {value} is outside 0..{last} ({shard_num} {n})", value=o.shard_id,
                           last=o.shard_num - 1, n=o.shard_num)
    for f in dataclasses.fields(o):
        choices = f.metadata.get("choices")
        value = getattr(o, f.name)
        if choices and value is not None and value not in choices:
            raise SettingError(f"{{{f.name}}} must be one of {{choices}}, got {{value!r}}",
                               choices=", ".join(choices), value=value)
    if (o.topics or o.qrels or o.name) and not o.corpus:
        given = [n for n in ("topics", "qrels", "name") if getattr(o, n)]
        raise SettingError(f"{{{given[0]}}} is read only with {{corpus}} (your own collection); registry datasets "
                           "bring their own topics and qrels")
    if o.corpus and not o.topics:
        raise SettingError("{corpus} needs {topics}: the queries to search with")


def _modes(o: RunConfig) -> tuple[str, ...]:
    names = [m.strip() for m in o.modes.split(",") if m.strip()]
    unknown = [m for m in names if m not in MODES]
    if unknown or not names:
        raise SettingError("{modes} names unknown mode(s) {unknown}; choose from {known}", unknown=unknown,
                           known=", ".join(MODES))
    modes = tuple(get_mode(m).name for m in names)
    if o.dense_index != "flat" and not reads_dense_index(modes):
        raise SettingError("{dense_index} {value} is only read by modes that search the dense list ({readers}), and "
                           "{modes} {given} has none of them", value=o.dense_index, given=o.modes,
                           readers=", ".join(m for m in MODES if reads_dense_index([m])))
    if o.maxsim != "exact" and not reads_maxsim(modes):
        raise SettingError("{maxsim} {value} is only read by {readers}, and {modes} {given} has neither",
                           value=o.maxsim, given=o.modes,
                           readers=" and ".join(m for m in MODES if reads_maxsim([m])))
    return modes


def _stem(o: RunConfig, tuned) -> str:
    def short(x: str) -> str:
        return Path(x).name if Path(x).exists() else x.replace("/", "_")

    if tuned is not None and tuned.extras.get("run_name"):
        return f"diffretriever.{short(tuned.extras.get('base_model', o.model))}.finetuned-{tuned.extras['run_name']}"
    mode = f"ft-{short(o.adapter)}" if o.adapter else "ft" if tuned is not None else "zs"
    return f"diffretriever.{short(o.model)}.{mode}"


def _dataset(o: RunConfig) -> BeirDataset:
    if o.corpus:
        return custom_dataset(o.corpus, named_file(o.topics, "topics"), o.qrels and named_file(o.qrels, "qrels"),
                              o.name)
    return get_dataset(o.dataset)


def named_file(value: str, kind: str) -> str:
    """``value`` when it is a file, else the file of Pyserini's ``kind`` (topics or qrels) of that name on this
    machine, else ``value`` unchanged (the collection check then names it)."""
    if Path(value).expanduser().is_file():
        return value
    from diffretriever_pyserini.pyserini_bridge.topics import local_file

    found = local_file(value, kind)
    return str(found) if found else value


def resolve(options: RunConfig) -> Run:
    """Resolve ``options`` once: the fine-tuned folder is read (if any) and its K and denoising steps fill the unset
    ones, lengths default to 256, every value is checked (:class:`SettingError` names the setting), and the run and
    encoding names are fixed."""
    tuned = finetuned.find(options.model, options.adapter)
    defaults = finetuned.run_defaults(tuned)
    o = dataclasses.replace(options, **{k: v for k, v in defaults.items() if getattr(options, k) is None})
    _check(o)
    modes = _modes(o)
    dataset = _dataset(o)
    readout = ReadoutSettings(o.k_q, o.k_p, o.q_max_length, o.p_max_length, o.top_k, o.denoise_steps,
                              o.quantisation, o.stop, o.promptreps_fallback, o.dense_source, o.variant)
    index = IndexSettings(o.dense_index, o.maxsim,
                          MaxSimOptions(o.depth, o.maxsim_nprobe, o.maxsim_ndocs, o.maxsim_rerank), o.threads)
    search = SearchSettings(modes, o.hits, dataset.remove_query and not o.keep_self_hits, o.keep_self_hits,
                            o.sparse_zero_fill, o.maxsim_check, o.threads)
    stem, top = _stem(o, tuned), f".top{o.top_k}" if o.top_k else ""
    readout_tag = (".shifted" if o.shifted_logits else "") + readout.tag()
    condition = f"{stem}.kq{o.k_q}-kp{o.k_p}{top}{readout_tag}{index.tag()}"
    passage = f"{stem}.kp{o.k_p}.len{o.p_max_length}{top}{readout_tag}" + \
        (".f16" if o.kvector_dtype == "float16" else "")
    return Run(options=o, dataset=dataset, finetuned=tuned,
               model=ModelSettings(o.model, o.family, o.adapter, o.shifted_logits, o.device, o.dtype, o.batch_size),
               readout=readout, index=index, search=search,
               encode=EncodeSettings(o.kvector_dtype, o.window, o.shard_num, o.shard_id, o.workers, o.engine),
               paths=RunPaths(Path(o.work), Path(o.runs), o.mirror, dataset.name, dataset.run_prefix, condition,
                              passage))


def as_run(cfg: "RunConfig | Run") -> Run:
    """A Run from either form (steps accept both; a Run is used as it is)."""
    return cfg if isinstance(cfg, Run) else resolve(cfg)
