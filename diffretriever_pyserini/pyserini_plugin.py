"""``--encoder diffretriever:<model>[?options]`` inside Pyserini's own, unmodified commands.

    python -m pyserini.encode input --corpus C --fields title text output --embeddings E --to-faiss \\
        encoder --encoder 'diffretriever:minilm?k=4' --fields title text --dimension 384 --device cpu
    python -m pyserini.encode ... output --embeddings S encoder --encoder 'diffretriever:minilm?k=4&output=sparse'
    python -m pyserini.search.faiss --index E --encoder 'diffretriever:minilm?k=4' --topics T --output run.txt
    python -m pyserini.search.lucene --impact --index I --encoder 'diffretriever:minilm?k=4&output=sparse' ...
    python -m pyserini.search.hybrid dense --index E --encoder 'diffretriever:minilm?k=4' \\
        sparse --index I --encoder 'diffretriever:minilm?k=4&output=sparse' fusion --alpha 1.0 run --topics T ...

``<model>`` is what ``--model`` takes (``minilm``, a folder, a hub id). Options after ``?`` (``&``-separated):
``k`` (masks, default 4), ``output`` (``dense`` or ``sparse``), ``top_k``, ``max_length``, ``denoise_steps``,
``quantisation``, ``stop``, ``fallback_k``, ``dense_source``, ``family``, ``adapter``, ``dtype``, ``template``,
``variant`` (unset: the defaults, or a fine-tuned model's ``retriever_config.json``). Pyserini's own
``--max-length``, ``--device``, ``--fp16``, ``--fields``, ``--batch-size`` and ``--shard-id/--shard-num`` keep their
meaning.

Pyserini picks an encoder class by the first key of its class maps found inside the lower-cased ``--encoder``
string. :func:`register` (called by the start-up import hook right after Pyserini's modules load) puts our
``diffretriever:`` key FIRST in ``document_encoder_class_map`` and ``query_encoder_class_map`` (in place, so names
already imported see it), so no other key (``dse``, ``contriever``...) can capture our strings, and teaches
``LuceneImpactSearcher`` to build our sparse query encoder from such a string.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from urllib.parse import parse_qsl

import torch

from diffretriever_pyserini.java import ensure_java

ensure_java()
# Not through _compat: this module is also imported by the start-up hook while _compat may be mid-import.
from pyserini.encode import DocumentEncoder as PyseriniDocumentEncoder  # noqa: E402
from pyserini.encode import QueryEncoder as PyseriniQueryEncoder  # noqa: E402

log = logging.getLogger(__name__)

PREFIX = "diffretriever:"
_INT_OPTIONS = {"k", "top_k", "max_length", "denoise_steps", "fallback_k"}
_READER_OPTIONS = _INT_OPTIONS | {"family", "adapter", "dtype", "template", "variant", "quantisation", "stop",
                                  "dense_source"}
_KNOWN = _READER_OPTIONS | {"output"}


def parse_spec(spec: str) -> tuple[str, dict]:
    """``diffretriever:minilm?k=4&output=sparse`` -> ("minilm", {"k": 4, "output": "sparse"})."""
    if not spec.lower().startswith(PREFIX):
        raise ValueError(f"not a DiffRetriever encoder spec (expected {PREFIX}<model>[?k=..&output=..]): {spec!r}")
    body = spec[len(PREFIX):]
    model, _, query = body.partition("?")
    if not model:
        raise ValueError(f"{spec!r}: no model after {PREFIX}")
    options: dict = {}
    for key, value in parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)):
        if key not in _KNOWN:
            raise ValueError(f"{spec!r}: unknown option {key!r}; known: {sorted(_KNOWN)}")
        options[key] = int(value) if key in _INT_OPTIONS else value
    if options.get("output", "dense") not in ("dense", "sparse"):
        raise ValueError(f"{spec!r}: output must be dense or sparse")
    return model, options


def _device(device) -> str:
    device = str(device) if device is not None else "auto"
    if device.startswith("cuda") and not torch.cuda.is_available():
        log.warning("device %s requested but CUDA is not available; using cpu", device)
        return "cpu"
    return device


def _reader_kwargs(options: dict) -> dict:
    return {k: v for k, v in options.items() if k in _READER_OPTIONS}


class PyseriniDocumentEncoderAdapter(PyseriniDocumentEncoder):
    """What ``python -m pyserini.encode`` builds for ``--encoder diffretriever:...``
    (as ``cls(model_name, device=...)``)."""

    def __init__(self, model_name: str, device=None, **ignored):
        from diffretriever_pyserini.encoders import DiffRetrieverDocumentEncoder

        model, options = parse_spec(model_name)
        if ignored:
            log.debug("ignoring Pyserini encoder options %s", sorted(ignored))
        self.output = options.get("output", "dense")
        self.inner = DiffRetrieverDocumentEncoder(model, device=_device(device), output=self.output,
                                                  **_reader_kwargs(options))
        self.spec_max_length = "max_length" in options
        self.has_model = True

    def encode(self, texts, titles=None, max_length=None, fp16=False, **kwargs):
        reader = self.inner.reader
        if max_length and not self.spec_max_length and max_length != reader.config.max_length:
            reader.config = dataclasses.replace(reader.config, max_length=int(max_length))
        if fp16 and getattr(reader.backbone, "model", None) is not None:
            reader.backbone.model.half()
        return self.inner.encode(texts, titles=titles)


class PyseriniQueryEncoderAdapter(PyseriniQueryEncoder):
    """Query encoder built by Pyserini's search commands from ``diffretriever:...`` (dense or sparse output)."""

    def __init__(self, encoder_dir: str = None, device=None, **ignored):
        from diffretriever_pyserini.encoders import DiffRetrieverQueryEncoder

        super().__init__()
        model, options = parse_spec(encoder_dir)
        self.output = options.get("output", "dense")
        self.inner = DiffRetrieverQueryEncoder(model, device=_device(device), **_reader_kwargs(options))
        self.has_model = True

    def encode(self, query: str, **kwargs):
        return self.inner.encode_sparse(query) if self.output == "sparse" else self.inner.encode(query)

    def encode_batch(self, queries):
        if self.output == "sparse":
            raise TypeError("a sparse DiffRetriever encoder has no dense batch encoding")
        return self.inner.encode_batch(queries)


def _first(mapping: dict, key: str, value) -> None:
    """Make ``key`` the first entry of ``mapping``, in place (keeps the dict object other modules imported)."""
    items = [(k, v) for k, v in mapping.items() if k != key]
    mapping.clear()
    mapping[key] = value
    mapping.update(items)


def register(module) -> None:
    """Register our encoders in a just-loaded Pyserini module (called by the start-up import hook)."""
    name = module.__name__
    if name == "pyserini.encode":
        _first(module.document_encoder_class_map, PREFIX, PyseriniDocumentEncoderAdapter)
        _first(module.query_encoder_class_map, PREFIX, PyseriniQueryEncoderAdapter)
    elif name == "pyserini.search.lucene._impact_searcher":
        searcher = module.LuceneImpactSearcher
        original = searcher._init_query_encoder_from_str
        if getattr(original, "_diffretriever", False):
            return

        def init_query_encoder_from_str(query_encoder):
            if isinstance(query_encoder, str) and query_encoder.lower().startswith(PREFIX):
                return PyseriniQueryEncoderAdapter(query_encoder)
            return original(query_encoder)

        init_query_encoder_from_str._diffretriever = True
        searcher._init_query_encoder_from_str = staticmethod(init_query_encoder_from_str)


# When this module is imported before Pyserini, importing Pyserini above fired the start-up hook while this module
# was still half-defined; register now in whatever Pyserini modules are already loaded.
# A module still being initialised is skipped: the hook registers in it once it has run.
for _name in ("pyserini.encode", "pyserini.search.lucene._impact_searcher"):
    _module = sys.modules.get(_name)
    if _module is not None and not getattr(getattr(_module, "__spec__", None), "_initializing", False):
        register(_module)
READY = True
