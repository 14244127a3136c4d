"""A documented stand-in with real signal for the index benchmark when no fine-tuned model exists.

MiniLM (all-MiniLM-L6-v2, the packaged CPU backbone) read the way it was trained, by mean pooling its last hidden
states, is a strong retriever (nDCG@10 about 0.64 on SciFact), while the zero-shot K-mask readout of this MLM-head-less
model retrieves at random level. The stand-in gives each text K vectors: the L2-normalised means of K contiguous
windows of its tokens, and as single vector the normalised mean of all of them (MiniLM's own embedding). Its exact
MaxSim and flat searches have real signal, so index types can be judged on it. Text: title + ". " + text, at most
256 tokens (MiniLM's budget).
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

MAX_LENGTH = 256


class WindowMeans:
    """MiniLM window means: ``encode(texts)`` -> single (B, H), K vectors (B, K, H), both L2-normalised."""

    def __init__(self, k: int = 4, batch_size: int = 32):
        from transformers import AutoModel, AutoTokenizer

        from diffretriever_pyserini.backbones.masked_lm import packaged_model_path

        folder = packaged_model_path("minilm")
        self.tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
        self.model = AutoModel.from_pretrained(folder, trust_remote_code=False, use_safetensors=True).eval()
        self.k, self.batch_size = k, batch_size

    @torch.inference_mode()
    def encode(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
        hidden = self.model(**batch).last_hidden_state  # (B, L, H)
        mask = batch["attention_mask"].bool()
        single, multi = [], []
        for i in range(hidden.shape[0]):
            tokens = hidden[i][mask[i]]  # (L_i, H)
            single.append(tokens.mean(0))
            windows = torch.tensor_split(tokens, min(self.k, len(tokens)))
            vecs = torch.stack([w.mean(0) for w in windows] + [windows[-1].mean(0)] * (self.k - len(windows)))
            multi.append(vecs)
        single, multi = torch.stack(single), torch.stack(multi)
        return (torch.nn.functional.normalize(single, dim=-1).numpy(),
                torch.nn.functional.normalize(multi, dim=-1).numpy())

    def encode_all(self, texts: list[str], desc: str) -> tuple[np.ndarray, np.ndarray]:
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        single = multi = None
        for s in tqdm(range(0, len(texts), self.batch_size), desc=desc, unit="batch", mininterval=2.0):
            idx = order[s:s + self.batch_size]
            one, many = self.encode([texts[i] for i in idx])
            if single is None:
                single = np.zeros((len(texts), one.shape[1]), np.float32)
                multi = np.zeros((len(texts), self.k, one.shape[1]), np.float32)
            single[idx], multi[idx] = one, many
        return single, multi


def write_standin(corpus_docs: list[dict], dense_dir, k: int = 4, batch_size: int = 32) -> None:
    """Encode ``corpus_docs`` (``{"id", "contents"}``) into a dense folder laid out as the pipeline's (``index``,
    ``docid``, ``kvectors.npy``, metadata naming the stand-in)."""
    from diffretriever_pyserini.encode.writers import FaissWriter

    single, multi = WindowMeans(k, batch_size).encode_all([d["contents"] for d in corpus_docs], "stand-in corpus")
    meta = {"standin": "MiniLM window means (benchmarks/standin.py)", "k": k, "max_length": MAX_LENGTH}
    with FaissWriter(dense_dir, meta) as writer:
        for s in range(0, len(corpus_docs), 4096):
            writer.write([d["id"] for d in corpus_docs[s:s + 4096]], single[s:s + 4096], multi[s:s + 4096])
