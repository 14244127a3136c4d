"""Fine-tuning: the loss against naive loops, gathered negatives over 2 processes, LoRA save/reload, resumption,
and the SciFact training-claim builder on real data."""

import json
import math
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from diffretriever_pyserini.training.data import TrainingExample, read_examples, scifact_training_claims, \
    write_examples
from diffretriever_pyserini.training.losses import contrastive_loss, maxsim_scores, pooled_sparse


def _inputs(seed=0, bq=4, npass=2, kq=3, kp=2, h=5, v=7):
    g = torch.Generator().manual_seed(seed)
    q = torch.nn.functional.normalize(torch.randn(bq, kq, h, generator=g), dim=-1)
    p = torch.nn.functional.normalize(torch.randn(bq * npass, kp, h, generator=g), dim=-1)
    qs = torch.rand(bq, v, generator=g) * 2
    ps = torch.rand(bq * npass, v, generator=g) * 2
    positives = torch.arange(bq) * npass
    return q, p, qs, ps, positives


def _naive_loss(q, p, qs, ps, positives, kq, tau, w, clamp=False):
    total_d = total_s = 0.0
    for i in range(q.shape[0]):
        dense, sparse = [], []
        for j in range(p.shape[0]):
            score = 0.0
            for a in range(q.shape[1]):
                best = max(float(q[i, a] @ p[j, b]) for b in range(p.shape[1]))
                score += max(0.0, best) if clamp else best
            dense.append(score / kq / tau)
            sparse.append(sum(float(qs[i, t] * ps[j, t]) for t in range(qs.shape[1])))
        for logits, acc in ((dense, "d"), (sparse, "s")):
            m = max(logits)
            lse = m + math.log(sum(math.exp(x - m) for x in logits))
            ce = lse - logits[int(positives[i])]
            if acc == "d":
                total_d += ce
            else:
                total_s += ce
    n = q.shape[0]
    return total_d / n + w * total_s / n


def test_loss_matches_naive_loops():
    q, p, qs, ps, pos = _inputs()
    loss, parts = contrastive_loss(q, p, qs, ps, pos, k_q=3, tau=0.05, sparse_weight=0.7, gather=False)
    unclamped = _naive_loss(q, p, qs, ps, pos, 3, 0.05, 0.7)
    assert float(loss) == pytest.approx(unclamped, rel=1e-5)  # training MaxSim is not clamped (the reference's)
    assert set(parts) == {"dense", "sparse"}
    clamped, _ = contrastive_loss(q, p, qs, ps, pos, k_q=3, tau=0.05, sparse_weight=0.7, gather=False, clamp=True)
    assert float(clamped) == pytest.approx(_naive_loss(q, p, qs, ps, pos, 3, 0.05, 0.7, clamp=True), rel=1e-5)
    assert abs(float(clamped) - unclamped) > 1e-3  # the inputs have negative maxima, so the clamp matters


def test_pooled_sparse_by_hand():
    logits = torch.tensor([[[1.0, -2.0, math.e - 1], [3.0, 0.5, 0.0]]])
    allowed = torch.tensor([[True, True, False]])
    out = pooled_sparse(logits, allowed)
    assert torch.allclose(out, torch.tensor([[math.log(4.0), math.log(1.5), 0.0]]))
    q, p = torch.tensor([[[1.0, 0.0]]]), torch.tensor([[[-1.0, 0.0], [-0.5, 0.5]]])
    assert maxsim_scores(q, p).item() == -0.5 and maxsim_scores(q, p, clamp=True).item() == 0.0


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, result):
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    q, p, qs, ps, pos = _inputs()
    half_q, half_p = q.shape[0] // world, p.shape[0] // world
    sl_q, sl_p = slice(rank * half_q, (rank + 1) * half_q), slice(rank * half_p, (rank + 1) * half_p)
    local_pos = pos[sl_q] - rank * half_p
    p_local = p[sl_p].clone().requires_grad_(True)
    loss, _ = contrastive_loss(q[sl_q], p_local, qs[sl_q], ps[sl_p], local_pos, k_q=3, tau=0.05, sparse_weight=0.7)
    loss.backward()
    total = loss.detach().clone()
    dist.all_reduce(total)
    # the gather's backward already sums, over every rank's loss, the gradient w.r.t. this rank's passages
    result[rank] = (float(total) / world, (p_local.grad / world).numpy().tolist())
    dist.destroy_process_group()


def test_gathered_negatives_on_two_processes_equal_single_process():
    q, p, qs, ps, pos = _inputs()
    p_single = p.clone().requires_grad_(True)
    single, _ = contrastive_loss(q, p_single, qs, ps, pos, k_q=3, tau=0.05, sparse_weight=0.7, gather=False)
    single.backward()
    manager = mp.Manager()
    result = manager.dict()
    mp.spawn(_worker, args=(2, _free_port(), result), nprocs=2, join=True)
    assert result[0][0] == pytest.approx(float(single.detach()), rel=1e-5)
    assert result[1][0] == pytest.approx(float(single.detach()), rel=1e-5)
    # each rank's passage gradient equals the single-process gradient of those passages
    half = p.shape[0] // 2
    np.testing.assert_allclose(result[0][1], p_single.grad[:half].numpy(), atol=1e-5)
    np.testing.assert_allclose(result[1][1], p_single.grad[half:].numpy(), atol=1e-5)


@pytest.fixture()
def tiny_task(tmp_path):
    """A tiny Dream checkpoint, a 12-document corpus and 8 training examples."""
    from diffretriever_pyserini.testing.tiny import write_checkpoint

    model = write_checkpoint(tmp_path / "dream", "dream")
    words = "microglia brain immune cells protein gene cancer tumour vaccine virus heart blood".split()
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    docs = [{"id": f"d{i}", "title": words[i], "text": f"{words[i]} {words[(i + 3) % 12]} study results",
             "contents": f"{words[i]}. {words[i]} {words[(i + 3) % 12]} study results"} for i in range(12)]
    (corpus / "part-00000.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    examples = [TrainingExample(f"q{i}", f"what about {words[i]}", [f"d{i}"], [f"d{(i + 1) % 12}"]) for i in range(8)]
    train = tmp_path / "train.jsonl"
    write_examples(train, examples)
    return model, corpus, train


def _cfg(tiny_task, out, **kw):
    from diffretriever_pyserini.training.trainer import TrainConfig

    model, corpus, train = tiny_task
    base = dict(train=str(train), corpus=str(corpus), out=str(out), model=str(model), k_q=2, k_p=2, q_max_length=96,
                p_max_length=128, batch_size=4, epochs=1.0, lr=1e-3, device="cpu", save_every=1, max_steps=4,
                lora_r=4, lora_alpha=16, lora_dropout=0.0, tau=0.1, precision="fp32", negatives=1)
    base.update(kw)
    return TrainConfig(**base)


def test_lora_finetune_saves_and_reloads(tiny_task, tmp_path):
    from diffretriever_pyserini.encoders import DiffRetrieverQueryEncoder
    from diffretriever_pyserini.training.trainer import Trainer, train

    cfg = _cfg(tiny_task, tmp_path / "lora")
    final = train(cfg)
    assert (final / "adapter_model.safetensors").is_file() and (final / "adapter_config.json").is_file()
    losses = json.loads((tmp_path / "lora" / "losses.json").read_text())
    assert len(losses) == 4 and (tmp_path / "lora" / "loss.png").is_file()
    # the reloaded encoder (base + merged adapter) reproduces the trained model's outputs
    trained = Trainer(cfg)
    from diffretriever_pyserini.training.saving import last_checkpoint, load_checkpoint
    from diffretriever_pyserini.training.trainer import _schedule

    load_checkpoint(last_checkpoint(tmp_path / "lora"), trained, _schedule(trained.optimizer, 0, 4))
    trained.model.eval()
    with torch.no_grad():
        dense_trained, _ = trained.encode(trained.q_reader, ["what about cancer"])
    enc = DiffRetrieverQueryEncoder(cfg.model, device="cpu", dtype="fp32", adapter=str(final), stop="none")
    assert enc.reader.config.k == 2 and enc.reader.config.finetuned  # from the adapter's retriever_config.json
    np.testing.assert_allclose(enc.kvectors("what about cancer"), dense_trained[0].numpy(), atol=1e-4)
    base = DiffRetrieverQueryEncoder(cfg.model, device="cpu", dtype="fp32", k=2, stop="none")
    assert np.abs(base.kvectors("what about cancer") - dense_trained[0].numpy()).max() > 1e-3


def test_interrupted_run_resumes_to_the_same_weights(tiny_task, tmp_path):
    from safetensors.torch import load_file

    from diffretriever_pyserini.training.trainer import train

    straight = train(_cfg(tiny_task, tmp_path / "straight"))
    resumed_out = tmp_path / "resumed"
    train(_cfg(tiny_task, resumed_out), stop_after=2)  # the "crash": stops after 2 of 4 steps
    assert not (resumed_out / "final").exists() and (resumed_out / "checkpoint-2").is_dir()
    resumed = train(_cfg(tiny_task, resumed_out))
    a = load_file(str(straight / "adapter_model.safetensors"))
    b = load_file(str(resumed / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=1e-5)


def test_scifact_training_claims_never_include_test_claims(tmp_path):
    from conftest import beir_mirror

    folder = beir_mirror() / "scifact"
    examples = scifact_training_claims(folder)
    test_ids = {line.split("\t")[0] for line in (folder / "qrels" / "test.tsv").read_text().splitlines()[1:]}
    assert len(examples) == 505 and sum(len(e.positive_ids) for e in examples) == 564
    assert not {e.query_id for e in examples} & test_ids
    write_examples(tmp_path / "t.jsonl", examples)
    assert read_examples(tmp_path / "t.jsonl")[0] == examples[0]
    (tmp_path / "bad.jsonl").write_text('{"query_id": "1", "query": "x", "positive_ids": []}\n')
    from diffretriever_pyserini.datasets import DatasetError

    with pytest.raises(DatasetError, match="bad.jsonl:1: 'positive_ids' is empty"):
        read_examples(tmp_path / "bad.jsonl")


@pytest.mark.slow
def test_select_budget_picks_the_best_scoring_budget(slice_run, tmp_path):
    import argparse

    from diffretriever_pyserini.cli.options import add_options, from_args
    from diffretriever_pyserini.pipeline import run_bm25
    from diffretriever_pyserini.testing.tiny import write_checkpoint
    from diffretriever_pyserini.training.budget import BudgetConfig, select_budget

    cfg, _ = slice_run
    run_bm25(cfg)
    work = Path(cfg.work)
    qrels = {}
    for line in (work / "data" / "scifact" / "qrels.txt").read_text().splitlines()[:12]:
        q, _, d, _ = line.split()
        qrels.setdefault(q, []).append(d)
    topics = dict(line.split("\t", 1) for line in (work / "data" / "scifact" / "topics.tsv").read_text().splitlines())
    heldout = tmp_path / "heldout.jsonl"
    write_examples(heldout, [TrainingExample(q, topics[q], ds) for q, ds in qrels.items()])
    model = write_checkpoint(tmp_path / "dream", "dream")
    parser = argparse.ArgumentParser()
    add_options(parser, BudgetConfig)
    args = parser.parse_args(["--model", str(model), "--heldout", str(heldout), "--corpus",
                              str(work / "data" / "scifact" / "corpus"), "--bm25-index",
                              str(work / "indexes" / "scifact" / "bm25-flat"), "--budgets", "1:1,2:4",
                              "--depth", "10", "--device", "cpu"])
    best, table = select_budget(from_args(BudgetConfig, args))
    scores = {tuple(int(x) for x in row.split("|")[1].split(",")): float(row.split("|")[2])
              for row in table.splitlines() if row.startswith("| ") and row.split("|")[1].strip()[:1].isdigit()}
    assert set(scores) == {(1, 1), (2, 4)}
    assert best == max(scores, key=lambda b: (scores[b], -sum(b)))


def test_dropout_override_and_bf16_autocast(tiny_task, tmp_path):

    from diffretriever_pyserini.training.data import load_documents
    from diffretriever_pyserini.training.trainer import Trainer, _use_bf16, cpu_has_bf16

    texts = ["microglia are the immune cells of the brain", "vaccine response"]
    # the packaged MiniLM carries dropout 0.1: in train mode two passes differ unless dropout is overridden to 0
    passes = {}
    for dropout in (None, 0.0):
        # recipe paper keeps the model's own dropout when none is given (cpu-demo turns it off)
        trainer = Trainer(_cfg(tiny_task, tmp_path / "m", model="minilm", method="full", dropout=dropout,
                               recipe="paper"))
        trainer.model.train()
        with torch.no_grad():
            passes[dropout] = [trainer.encode(trainer.p_reader, texts)[0] for _ in range(2)]
    assert (passes[None][0] - passes[None][1]).abs().max() > 1e-3
    torch.testing.assert_close(passes[0.0][0], passes[0.0][1], atol=0, rtol=0)
    # bf16 autocast: close to fp32, not equal, and the loss trains (finite, gradients reach the weights)
    fp32 = Trainer(_cfg(tiny_task, tmp_path / "a"))
    bf16 = Trainer(_cfg(tiny_task, tmp_path / "b", precision="bf16"))
    with torch.no_grad():
        a, b = fp32.encode(fp32.p_reader, texts)[0], bf16.encode(bf16.p_reader, texts)[0]
    assert 0 < (a - b).abs().max() < 0.05
    model, corpus, train_file = tiny_task
    examples = read_examples(train_file)
    docs = load_documents(corpus, {d for ex in examples for d in ex.positive_ids + ex.negative_ids})
    loss, _ = bf16.step_loss(examples[:4], docs, epoch=0)
    loss.backward()
    assert math.isfinite(float(loss.detach()))
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in bf16.model.parameters())
    assert _use_bf16("auto", torch.device("cpu")) == cpu_has_bf16()
    assert _use_bf16("fp32", torch.device("cuda")) is False
    with pytest.raises(ValueError, match="precision must be auto, bf16 or fp32"):
        _use_bf16("fp16", torch.device("cpu"))
