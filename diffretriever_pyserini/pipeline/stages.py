"""The settings each stage of a resolved run reads: small frozen dataclasses built once by
:func:`~diffretriever_pyserini.pipeline.settings.resolve` (model, readout, encode, index, search, paths) and the
:class:`Run` holding them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from diffretriever_pyserini.datasets import BeirDataset
from diffretriever_pyserini.readout import finetuned
from diffretriever_pyserini.search.maxsim import MaxSimMethod, MaxSimOptions, get_method
from diffretriever_pyserini.search.runs import search_depth


@dataclass(frozen=True)
class ModelSettings:
    model: str
    family: str | None
    adapter: str | None
    shifted_logits: bool
    device: str | None
    dtype: str | None
    batch_size: int

    def backbone_options(self) -> dict:
        """Keyword arguments for ``load_backbone``."""
        return {"device": self.device, "dtype": self.dtype, "family": self.family, "adapter": self.adapter,
                "shifted_logits": self.shifted_logits}


@dataclass(frozen=True)
class ReadoutSettings:
    """The readout of both sides, resolved (K, lengths and steps set)."""

    k_q: int
    k_p: int
    q_max_length: int
    p_max_length: int
    top_k: int | None
    denoise_steps: int
    quantisation: str | None
    stop: str | None
    promptreps_fallback: int
    dense_source: str
    variant: str | None

    def side(self, side: str) -> dict:
        """Keyword arguments for the readout on ``side`` (``query`` or ``passage``; None = the family's default)."""
        query = side == "query"
        return {"k": self.k_q if query else self.k_p, "max_length": self.q_max_length if query else self.p_max_length,
                "top_k": self.top_k, "denoise_steps": self.denoise_steps, "quantisation": self.quantisation,
                "stop": self.stop, "fallback_k": self.promptreps_fallback or None, "dense_source": self.dense_source,
                "variant": self.variant}

    def tag(self) -> str:
        """Run-name parts of the options that differ from the defaults (the defaults add nothing)."""
        parts = [(f".s{self.denoise_steps}", self.denoise_steps > 1), (f".{self.quantisation}", self.quantisation),
                 (f".stop-{self.stop}", self.stop), (f".fallback{self.promptreps_fallback}", self.promptreps_fallback),
                 (".dense-lm-head", self.dense_source != "hidden"), (f".{self.variant}", self.variant)]
        return "".join(tag for tag, present in parts if present)


@dataclass(frozen=True)
class IndexSettings:
    """The search indexes built beside the encodings: the single-vector FAISS type and the MaxSim method's index."""

    dense_index: str
    maxsim: str
    maxsim_options: MaxSimOptions
    threads: int

    @property
    def maxsim_method(self) -> MaxSimMethod:
        return get_method(self.maxsim)

    def tag(self) -> str:
        """Run-name parts of non-default indexes (flat dense index and exact MaxSim add nothing)."""
        rerank = self.maxsim_options.rerank
        rerank_tag = f"-rerank{rerank}" if self.maxsim == "compressed" and rerank else ""
        parts = [(f".dense-{self.dense_index}", self.dense_index != "flat"),
                 (f".maxsim-{self.maxsim}{rerank_tag}", self.maxsim != "exact")]
        return "".join(tag for tag, present in parts if present)


@dataclass(frozen=True)
class SearchSettings:
    modes: tuple[str, ...]
    hits: int
    remove_self_hits: bool
    keep_self_hits: bool
    sparse_zero_fill: bool
    maxsim_check: int
    threads: int

    @property
    def depth(self) -> int:
        """Hits fetched per topic (one more when self hits are removed afterwards)."""
        return search_depth(self.hits, self.remove_self_hits)


@dataclass(frozen=True)
class EncodeSettings:
    """How the corpus is encoded: the K vectors' storage, length-sorting windows, shards, workers and engine."""

    kvector_dtype: str
    window: int
    shard_num: int
    shard_id: int | None
    workers: int
    engine: str

    @property
    def sharded(self) -> bool:
        """Whether encoding goes through shards (several shards or workers, Ray, or one shard by hand)."""
        return self.shard_num > 1 or self.workers > 1 or self.engine != "local" or self.shard_id is not None


@dataclass(frozen=True)
class RunPaths:
    """Where the steps of one condition read and write."""

    work: Path
    runs: Path
    mirror: str | None
    dataset: str
    run_prefix: str
    condition: str
    passage_condition: str

    @property
    def data(self) -> Path:
        return self.work / "data"

    @property
    def encodings(self):
        from diffretriever_pyserini.encode.corpus import EncodeOutputs

        return EncodeOutputs(self.work / "encodings" / self.dataset / self.passage_condition)

    @property
    def impact_index(self) -> Path:
        return self.work / "indexes" / self.dataset / f"{self.passage_condition}.impact"

    @property
    def indexes(self) -> Path:
        return self.work / "indexes" / self.dataset

    @property
    def run_dir(self) -> Path:
        return self.runs / self.run_prefix / self.condition


@dataclass(frozen=True)
class Run:
    """A run resolved once: the options with defaults filled (``options``) and the settings each stage reads."""

    options: "RunConfig"  # noqa: F821 - pipeline.settings.RunConfig (it imports this module)
    dataset: BeirDataset
    finetuned: "finetuned.FineTuned | None"
    model: ModelSettings
    readout: ReadoutSettings
    index: IndexSettings
    search: SearchSettings
    encode: EncodeSettings
    paths: RunPaths

    @property
    def condition(self) -> str:
        return self.paths.condition

    @property
    def passage_condition(self) -> str:
        return self.paths.passage_condition

    def record(self) -> dict:
        """The settings as ``config.json`` records them (per stage)."""
        out = {}
        for name in ("model", "readout", "encode", "index", "search"):
            out[name] = dataclasses.asdict(getattr(self, name))
        out["paths"] = {k: str(v) for k, v in dataclasses.asdict(self.paths).items()}
        out["dataset"] = {"name": self.dataset.name, "run_prefix": self.dataset.run_prefix,
                          "source": getattr(self.dataset, "files", None) or "registry"}
        out["finetuned"] = str(self.finetuned.folder) if self.finetuned else None
        return out
