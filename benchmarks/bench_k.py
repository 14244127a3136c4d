"""Latency vs K: the diffusion one-pass readout against the autoregressive sequential readout (`make bench-k`).

Both readouts run the SAME network (same sizes and weights, a Dream/Qwen2-shaped random model): bidirectional with K
mask slots read in one pass (Dream family), and causal with K greedy decoding steps over a KV cache (autoregressive
family, PromptReps). Latency is per passage (batch 1), measured side by side in one run on the same passages,
in interleaved rounds;
each cell reports its fastest round (the least disturbed by other work on a shared machine).
The last line is one JSON object with diffusion_ratio_k16 and ar_ratio_k16 = latency(K=16) / latency(K=1).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from diffretriever_pyserini.backbones import load_backbone
from diffretriever_pyserini.testing.tiny import write_checkpoint
from diffretriever_pyserini.readout.kmask import KMaskReader, ReadoutConfig

KS = (1, 2, 4, 8, 16)


def passages(n: int) -> list[str]:
    """The first n SciFact abstracts from the BEIR mirror when configured, else fixed synthetic text."""
    mirror = os.environ.get("BEIR_MIRROR")
    corpus = Path(mirror) / "scifact" / "corpus.jsonl.gz" if mirror else None
    if corpus and corpus.is_file():
        out = []
        with gzip.open(corpus, "rt", encoding="utf-8") as f:
            for line in f:
                doc = json.loads(line)
                out.append(f"{doc['title']}. {doc['text']}")
                if len(out) == n:
                    return out
    words = "microglia brain immune cells protein gene expression cancer patients treatment risk disease".split()
    return [" ".join(words[(i + j) % len(words)] for j in range(120)) for i in range(n)]


def time_once(reader: KMaskReader, texts: list[str]) -> float:
    """Mean seconds per passage over ``texts``, one passage per forward pass (batch 1)."""
    start = time.perf_counter()
    for text in texts:
        reader.read([text])
    return (time.perf_counter() - start) / len(texts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=256, help="model width")
    parser.add_argument("--layers", type=int, default=28, help="transformer blocks (Dream-7B's depth)")
    parser.add_argument("--heads", type=int, default=4, help="attention heads")
    parser.add_argument("--kv-heads", type=int, default=2, help="key/value heads (grouped-query attention)")
    parser.add_argument("--intermediate", type=int, default=768, help="MLP width")
    parser.add_argument("--vocab", type=int, default=64000, help="vocabulary rows of the embedding and LM head")
    parser.add_argument("--passages", type=int, default=12, help="passages timed per K")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved timing rounds (the minimum is reported)")
    parser.add_argument("--max-length", type=int, default=156, help="passage input tokens, prompt included")
    args = parser.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        dream_dir = write_checkpoint(Path(tmp) / "dream", "dream", hidden=args.hidden, layers=args.layers,
                                     heads=args.heads, kv_heads=args.kv_heads, intermediate=args.intermediate,
                                     vocab_size=args.vocab)
        diffusion = load_backbone(str(dream_dir), device="cpu", dtype="fp32")
        state = {k: v.clone() for k, v in diffusion.model.state_dict().items()}
        ar_dir = write_checkpoint(Path(tmp) / "ar", "qwen2", hidden=args.hidden, layers=args.layers,
                                  heads=args.heads, kv_heads=args.kv_heads, intermediate=args.intermediate,
                                  vocab_size=args.vocab, state=state)
        autoregressive = load_backbone(str(ar_dir), device="cpu", dtype="fp32")
        params = sum(p.numel() for p in diffusion.model.parameters())
        texts = passages(args.passages)
        print(f"shape: hidden {args.hidden}, {args.layers} layers, {args.heads}/{args.kv_heads} heads, vocab "
              f"{args.vocab}: {params / 1e6:.1f}M parameters, the same weights in both; {len(texts)} passages, "
              f"max_length {args.max_length}, batch 1, {torch.get_num_threads()} threads")
        print(f"{'K':>3} | {'diffusion ms/passage':>21} | {'AR ms/passage':>14} | {'AR / diffusion':>14}")
        print(f"{'---':>3} | {'---':>21} | {'---':>14} | {'---':>14}")
        readers = {(k, name): KMaskReader(bb, "passage", ReadoutConfig(k=k, max_length=args.max_length, stop="none"))
                   for k in KS for name, bb in (("diffusion", diffusion), ("ar", autoregressive))}
        for reader in readers.values():
            reader.read(texts[:2])  # warm-up
        # rounds interleave every (K, readout) so drift on a shared machine hits all of them alike; min per cell
        times: dict = {key: [] for key in readers}
        for _ in range(args.repeats):
            for key, reader in readers.items():
                times[key].append(time_once(reader, texts))
        rows = {k: (min(times[(k, "diffusion")]), min(times[(k, "ar")])) for k in KS}
        for k, (d, a) in rows.items():
            print(f"{k:>3} | {d * 1e3:>21.1f} | {a * 1e3:>14.1f} | {a / d:>14.2f}")
    result = {"diffusion_ratio_k16": round(rows[16][0] / rows[1][0], 3),
              "ar_ratio_k16": round(rows[16][1] / rows[1][1], 3),
              "params_millions": round(params / 1e6, 1),
              "ms_per_passage": {str(k): {"diffusion": round(d * 1e3, 2), "ar": round(a * 1e3, 2)}
                                 for k, (d, a) in rows.items()}}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
