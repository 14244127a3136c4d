"""Dream-7B-shaped throughput on a GPU: passages/s at K_p = 16 with 156-token passages, and the fraction of the
GPU's bf16 peak achieved. Random weights in bf16 (no download); runs without Pyserini (only torch).

Also checks that the backbone and representation modules run on the GPU: a tiny Dream read on cuda (fp32) must match
the same read on the CPU. Writes gpu_dream7b.json to $OUT (or the current folder).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from diffretriever_pyserini.backbones.dream import DreamConfig, DreamModel
from diffretriever_pyserini.readout.representation import gather_positions, term_weights, topk_per_position

PEAK_BF16_TFLOPS = {"H100": 989.4, "H200": 989.4, "A100": 312.0}  # dense bf16 tensor-core peak (vendor sheets)


def flops_per_passage(c: DreamConfig, length: int, k: int) -> float:
    """Matmul FLOPs of one passage: projections + MLP per token, attention scores and values, LM head at K masks."""
    d = c.head_dim
    proj = c.hidden_size * (c.num_attention_heads * d) * 2 + c.hidden_size * (c.num_key_value_heads * d) * 2
    mlp = 3 * c.hidden_size * c.intermediate_size
    per_layer = 2 * length * (proj + mlp) + 4 * length * length * c.num_attention_heads * d
    return c.num_hidden_layers * per_layer + 2 * k * c.hidden_size * c.vocab_size


def tiny_device_check() -> dict:
    """The representation stack on cuda (fp32) against the CPU, on a tiny random Dream."""
    from diffretriever_pyserini.backbones import load_backbone
    from diffretriever_pyserini.testing.tiny import write_checkpoint
    from diffretriever_pyserini.readout.kmask import KMaskReader, ReadoutConfig

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    texts = ["microglia are the immune cells of the brain", "a vaccine trial in patients with heart disease"]
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_checkpoint(Path(tmp) / "dream", "dream")
        outs = {dev: KMaskReader(load_backbone(str(folder), device=dev, dtype="fp32"), "passage",
                                 ReadoutConfig(k=4, max_length=128)).read(texts) for dev in ("cpu", "cuda")}
    diff = float(abs(outs["cpu"].dense - outs["cuda"].dense).max())
    return {"tiny_dense_max_abs_diff_cuda_vs_cpu": diff, "tiny_sparse_equal": outs["cpu"].sparse == outs["cuda"].sparse}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=156, help="passage input tokens, prompt and masks included")
    parser.add_argument("--k", type=int, default=16, help="passage masks K_p")
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 128, 256], help="batch sizes to time")
    parser.add_argument("--iters", type=int, default=5, help="timed iterations per batch size")
    parser.add_argument("--layers", type=int, default=None, help="override the layer count (28 for Dream-7B)")
    parser.add_argument("--device", default="cuda", help="cuda (the benchmark) or cpu (a quick dry run of the script)")
    args = parser.parse_args()
    on_gpu = args.device.startswith("cuda")
    result = {"device": torch.cuda.get_device_name() if on_gpu else "cpu", "torch": torch.__version__}
    if on_gpu:
        result.update(tiny_device_check())
    torch.backends.cuda.matmul.allow_tf32 = True
    c = DreamConfig() if args.layers is None else DreamConfig(num_hidden_layers=args.layers)
    t0 = time.perf_counter()
    torch.set_default_dtype(torch.bfloat16)
    with torch.device(args.device):
        model = DreamModel(c).eval()
    torch.set_default_dtype(torch.float32)
    params = sum(p.numel() for p in model.parameters())
    result.update(build_s=round(time.perf_counter() - t0, 1), params_billions=round(params / 1e9, 3),
                  length=args.length, k=args.k)
    # the K masks sit right before a 3-token tail
    positions_1 = torch.arange(args.length - args.k - 3, args.length - 3, device=args.device)
    peak = next((v for name, v in PEAK_BF16_TFLOPS.items() if name in result["device"]), None)
    rows = []
    for batch in args.batches:
        ids = torch.randint(0, c.vocab_size, (batch, args.length), device=args.device)
        ids[:, positions_1] = c.mask_token_id
        pad = torch.ones_like(ids)
        pos = positions_1.expand(batch, -1)

        @torch.inference_mode()
        def step():
            hidden = model.hidden_states(ids, pad)
            logits = model.logits(gather_positions(hidden, pos))  # (B, K, V) at the masks only
            return topk_per_position(term_weights(logits), 128)

        for _ in range(2):
            step()
        if on_gpu:
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(args.iters):
            step()
        if on_gpu:
            torch.cuda.synchronize()
        seconds = (time.perf_counter() - start) / args.iters
        tflops = flops_per_passage(c, args.length, args.k) * batch / seconds / 1e12
        rows.append({"batch": batch, "passages_per_s": round(batch / seconds, 1), "tflops": round(tflops, 1),
                     "fraction_of_bf16_peak": round(tflops / peak, 3) if peak else None,
                     "max_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 1) if on_gpu else None})
        print(rows[-1], flush=True)
    result["rows"] = rows
    best = max(rows, key=lambda r: r["passages_per_s"])
    result.update(best_passages_per_s=best["passages_per_s"], best_fraction_of_bf16_peak=best["fraction_of_bf16_peak"],
                  peak_bf16_tflops=peak)
    out = Path(os.environ.get("OUT", ".")) / "gpu_dream7b.json"
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
