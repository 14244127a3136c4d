"""``--encoder diffretriever:<model>[?options]`` inside Pyserini's own, unmodified commands.

    python -m pyserini.encode input --corpus C --fields title text output --embeddings E --to-faiss \\
        encoder --encoder 'diffretriever:minilm?k=4' --fields title text --device cpu
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
already imported see it), so no other key (``dse``, ``contriever``...) can capture our strings; teaches
``LuceneImpactSearcher`` to build our sparse query encoder from such a string; and gives Pyserini's FAISS writer the
dimension of our encoder, so ``--dimension`` (default 768 in Pyserini) need not be given.

The adapter classes subclass the ``DocumentEncoder`` / ``QueryEncoder`` of the Pyserini module being registered, so
importing this module imports neither Pyserini nor torch.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import sys
from urllib.parse import parse_qsl

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
    import torch

    device = str(device) if device is not None else "auto"
    if device.startswith("cuda") and not torch.cuda.is_available():
        log.warning("device %s requested but CUDA is not available; using cpu", device)
        return "cpu"
    return device


def _reader_kwargs(options: dict) -> dict:
    return {k: v for k, v in options.items() if k in _READER_OPTIONS}


# The dense width of the DiffRetriever document encoder built in this process (set by the adapter, read by the
# FAISS writer that Pyserini's encode command builds right after it).
_ACTIVE = {"dimension": None}


@functools.lru_cache(maxsize=None)
def adapter_classes(document_base: type, query_base: type) -> tuple[type, type]:
    """Our document and query encoder adapters, as subclasses of the given Pyserini base classes."""

    class PyseriniDocumentEncoderAdapter(document_base):
        """What ``python -m pyserini.encode`` builds for ``--encoder diffretriever:...``
        (as ``cls(model_name, device=...)``)."""

        def __init__(self, model_name: str, device=None, **ignored):
            from diffretriever_pyserini.readout.readers import DocumentReader

            model, options = parse_spec(model_name)
            if ignored:
                log.debug("ignoring Pyserini encoder options %s", sorted(ignored))
            self.output = options.get("output", "dense")
            self.inner = DocumentReader(model, device=_device(device), output=self.output,
                                        **_reader_kwargs(options))
            self.spec_max_length = "max_length" in options
            self.has_model = True
            if self.output == "dense":
                _ACTIVE["dimension"] = self.inner.reader.dimension

        def encode(self, texts, titles=None, max_length=None, fp16=False, **kwargs):
            reader = self.inner.reader
            if max_length and not self.spec_max_length and max_length != reader.config.max_length:
                reader.config = dataclasses.replace(reader.config, max_length=int(max_length))
            if fp16 and getattr(reader.backbone, "model", None) is not None:
                reader.backbone.model.half()
            return self.inner.encode(texts, titles=titles)

    class PyseriniQueryEncoderAdapter(query_base):
        """Query encoder built by Pyserini's search commands from ``diffretriever:...`` (dense or sparse output)."""

        def __init__(self, encoder_dir: str = None, device=None, **ignored):
            from diffretriever_pyserini.readout.readers import QueryReader

            super().__init__()
            model, options = parse_spec(encoder_dir)
            self.output = options.get("output", "dense")
            self.inner = QueryReader(model, device=_device(device), **_reader_kwargs(options))
            self.has_model = True

        def encode(self, query: str, **kwargs):
            return self.inner.encode_sparse(query) if self.output == "sparse" else self.inner.encode(query)

        def encode_batch(self, queries):
            if self.output == "sparse":
                raise TypeError("a sparse DiffRetriever encoder has no dense batch encoding")
            return self.inner.encode_batch(queries)

    return PyseriniDocumentEncoderAdapter, PyseriniQueryEncoderAdapter


def _first(mapping: dict, key: str, value) -> None:
    """Make ``key`` the first entry of ``mapping``, in place (keeps the dict object other modules imported)."""
    items = [(k, v) for k, v in mapping.items() if k != key]
    mapping.clear()
    mapping[key] = value
    mapping.update(items)


def writer_dimension(asked: int, explicit: bool) -> int:
    """The dimension Pyserini's FAISS writer should use: our encoder's, when one was built in this process.

    ``asked`` is the writer's argument (Pyserini's ``--dimension``, default 768), ``explicit`` whether the user gave
    ``--dimension``. A given value that contradicts the encoder ends the command with one line naming the right value.
    """
    ours = _ACTIVE["dimension"]
    if ours is None or asked == ours:
        return asked
    if explicit:
        raise SystemExit(f"pyserini.encode: error: --dimension {asked} does not match the DiffRetriever encoder's "
                         f"{ours}-dimensional vectors; drop --dimension or pass --dimension {ours}")
    log.info("FAISS writer: dimension %d from the DiffRetriever encoder (Pyserini's default is %d)", ours, asked)
    return ours


def _patch_faiss_writer(writer: type) -> None:
    """Give ``writer`` (Pyserini's ``FaissRepresentationWriter``) our encoder's dimension when it is built."""
    original = writer.__init__
    if getattr(original, "_diffretriever", False):
        return

    @functools.wraps(original)
    def __init__(self, dir_path, dimension=768, *args, **kwargs):
        explicit = any(a == "--dimension" or a.startswith("--dimension=") for a in sys.argv)
        original(self, dir_path, writer_dimension(dimension, explicit), *args, **kwargs)

    __init__._diffretriever = True
    writer.__init__ = __init__


def register(module) -> None:
    """Register the plugin in a just-loaded Pyserini module (called by the start-up import hook); idempotent."""
    name = module.__name__
    if name == "pyserini.encode":
        document_adapter, query_adapter = adapter_classes(module.DocumentEncoder, module.QueryEncoder)
        _first(module.document_encoder_class_map, PREFIX, document_adapter)
        _first(module.query_encoder_class_map, PREFIX, query_adapter)
        if hasattr(module, "FaissRepresentationWriter"):  # Pyserini 1.x
            _patch_faiss_writer(module.FaissRepresentationWriter)
    elif name == "pyserini.encode.optional._faiss":  # Pyserini 2.x
        _patch_faiss_writer(module.FaissRepresentationWriter)
    elif name == "pyserini.search.lucene._impact_searcher":
        searcher = module.LuceneImpactSearcher
        original = searcher._init_query_encoder_from_str
        if getattr(original, "_diffretriever", False):
            return

        def init_query_encoder_from_str(query_encoder):
            if isinstance(query_encoder, str) and query_encoder.lower().startswith(PREFIX):
                import pyserini.encode as encode

                return adapter_classes(encode.DocumentEncoder, encode.QueryEncoder)[1](query_encoder)
            return original(query_encoder)

        init_query_encoder_from_str._diffretriever = True
        searcher._init_query_encoder_from_str = staticmethod(init_query_encoder_from_str)
