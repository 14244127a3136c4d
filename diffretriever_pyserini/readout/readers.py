"""Building a K-mask reader (a backbone given as object, packaged name, folder or hub id, plus its readout
settings), and its two sides shaped like Pyserini's encoders: :class:`DocumentReader`, :class:`QueryReader`.

No Pyserini here: the Pyserini encoders of :mod:`diffretriever_pyserini.pyserini_bridge` are these classes with
Pyserini's base classes added; corpus encoding, sharded and Ray workers and the training loop use them as they are.
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

from diffretriever_pyserini.readout.kmask import KMaskReader, Readout, ReadoutConfig

log = logging.getLogger(__name__)


BACKBONE_OPTIONS = ("device", "dtype", "family", "adapter", "shifted_logits")


def _split(options: dict) -> tuple[dict, dict]:
    """(backbone options, readout options) from one keyword dict."""
    backbone = {k: v for k, v in options.items() if k in BACKBONE_OPTIONS}
    return backbone, {k: v for k, v in options.items() if k not in BACKBONE_OPTIONS}


def readout_config(backbone, side: str, **overrides) -> tuple[ReadoutConfig, dict | None]:
    """The readout of ``side`` on a loaded backbone: a fine-tuned folder's own settings (its
    ``retriever_config.json``, checked against the backbone) under the explicit ``overrides`` (None = unset).

    Returns the config and a description of the fine-tuned folder (None for a zero-shot model).
    """
    from diffretriever_pyserini.readout import finetuned

    tuned = finetuned.find(backbone.source, getattr(backbone, "adapter", None))
    if tuned is not None:
        tuned.check_fits(backbone)
    values = finetuned.readout_options(side, tuned, backbone)
    for name, value in overrides.items():
        if value is None:
            continue
        if name == "k" and tuned is not None and value != values["k"]:
            log.warning("%s was trained with K=%d on the %s side; reading it with K=%d as asked", tuned.folder,
                        values["k"], side, value)
        values[name] = value
    return ReadoutConfig(**values), (tuned.describe() if tuned else None)


def build_reader(model, side: str, **options) -> KMaskReader:
    """A :class:`KMaskReader` on a backbone given as an object, or as a name/folder/hub id for ``load_backbone``.

    ``options``: backbone options (device, dtype, family, adapter, shifted_logits) and :class:`ReadoutConfig`
    fields (k, max_length, top_k, denoise_steps, ...; None = the default or the fine-tuned model's own).
    """
    from diffretriever_pyserini.backbones import load_backbone
    from diffretriever_pyserini.backbones.base import Backbone

    backbone_options, readout = _split(options)
    backbone = model if isinstance(model, Backbone) else load_backbone(model, **backbone_options)
    config, tuned = readout_config(backbone, side, **readout)
    return KMaskReader(backbone, side, config, finetuned=tuned)


class DocumentReader:
    """Passage side of the K-mask readout with the methods of Pyserini's ``DocumentEncoder``: ``encode`` returns
    single_dense vectors (or sparse dicts with ``output="sparse"``); :meth:`read` returns everything from one pass.

    ``options``: see :func:`build_reader`; unset readout options come from a fine-tuned model's own config.
    """

    def __init__(self, model_name="minilm", device=None, k: int | None = None, max_length: int | None = None,
                 top_k: int | None = None, output: str = "dense", **options):
        if output not in ("dense", "sparse"):
            raise ValueError(f"output must be 'dense' or 'sparse', got {output!r}")
        self.reader = build_reader(model_name, "passage", device=device, k=k, max_length=max_length, top_k=top_k,
                                   **options)
        self.output = output
        self.has_model = True

    def read(self, texts: Sequence[str]) -> Readout:
        return self.reader.read(texts)

    def encode(self, texts, titles=None, **kwargs):
        if titles is not None:
            from diffretriever_pyserini.datasets import document_text

            texts = [document_text(t or "", x or "") for t, x in zip(titles, texts)]
        out = self.read(list(texts))
        return out.single if self.output == "dense" else out.sparse


class QueryReader:
    """Query side of the K-mask readout with the methods of Pyserini's ``QueryEncoder``: ``encode(q)`` -> (H,)
    float32 single_dense vector, :meth:`encode_sparse` -> impacts, :meth:`kvectors` -> (K, H) for MaxSim. One pass
    per batch gives all three and they are cached: :meth:`prime` encodes many queries in batches ahead of a search;
    unseen queries are encoded on demand.
    """

    def __init__(self, model_name="minilm", device=None, k: int | None = None, max_length: int | None = None,
                 top_k: int | None = None, batch_size: int = 32, **options):
        self.reader = build_reader(model_name, "query", device=device, k=k, max_length=max_length, top_k=top_k,
                                   **options)
        self.batch_size = batch_size
        self.has_model = True
        self._cache: dict[str, tuple[np.ndarray, np.ndarray, dict[str, int]]] = {}

    def prime(self, queries: Sequence[str]) -> None:
        """Encode ``queries`` in length-sorted batches (one pass per batch gives dense and sparse)."""
        todo = sorted({q for q in queries if q not in self._cache}, key=lambda q: (len(q), q))
        for start in range(0, len(todo), self.batch_size):
            batch = todo[start:start + self.batch_size]
            out = self.reader.read(batch)
            for i, q in enumerate(batch):
                self._cache[q] = (out.single[i], out.dense[i], out.sparse[i])

    def _get(self, query: str):
        if query not in self._cache:
            self.prime([query])
        return self._cache[query]

    def encode(self, query: str, **kwargs) -> np.ndarray:
        return self._get(query)[0]

    def encode_batch(self, queries: Sequence[str]) -> np.ndarray:
        """(N, H) single_dense vectors; ``FaissSearcher.batch_search`` uses this when present."""
        self.prime(queries)
        return np.stack([self._cache[q][0] for q in queries])

    def kvectors(self, query: str) -> np.ndarray:
        """(K, H) normalised query vectors (zeroed where the decoded-token stop dropped a position)."""
        return self._get(query)[1]

    def encode_sparse(self, query: str) -> dict[str, int]:
        return self._get(query)[2]
