"""Supervised fine-tuning of the K-mask readout (the paper's fine-tuning, arXiv 2605.07210), resumable, on CPU or GPUs.

Full fine-tuning for small backbones, LoRA (peft) for large ones; warmup + cosine schedule, weight decay, gradient
clipping, bf16 autocast (GPUs, CPUs with native bf16), optional gradient checkpointing and dropout override; in-batch
negatives, gathered across processes when ``torch.distributed`` is initialised. Checkpoints are folders written
atomically under ``<out>/checkpoint-<step>/``: the model weights as safetensors (a full model folder the encoders load
by path, or a PEFT adapter), the optimizer and scheduler state, and ``trainer_state.json``. A rerun of the same
command resumes from the last checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from diffretriever_pyserini.backbones.families import FAMILY_RECORDS, get_family
from diffretriever_pyserini.readout.kmask import KMaskReader, ReadoutConfig
from diffretriever_pyserini.readout.representation import normalise
from diffretriever_pyserini.training.data import TrainingExample, load_documents, read_examples
from diffretriever_pyserini.training.losses import contrastive_loss, pooled_sparse
from diffretriever_pyserini.training.saving import (last_checkpoint, load_checkpoint, plot_losses, save_checkpoint,
                                                    save_model)

log = logging.getLogger(__name__)


LORA_TARGETS = {name: list(f.lora_targets) for name, f in FAMILY_RECORDS.items()}
"""Family -> module names (attention and MLP projections) that get LoRA adapters (from the family records)."""


RECIPES: dict[str, dict] = {
    "paper": {
        "k_q": 4, "k_p": 4, "q_max_length": 256, "p_max_length": 256, "q_text_length": 32, "p_text_length": 156,
        "negatives": 15, "batch_size": 128, "epochs": 1.0, "lr": 1e-4, "warmup": 0.06, "weight_decay": 0.01,
        "clip": 1.0, "tau": 0.01, "sparse_weight": 1.0, "lora_r": 16, "lora_alpha": 64, "lora_dropout": 0.05,
        "precision": "auto", "dropout": None, "maxsim_clamp": False, "world_loss_scale": True,
    },
    "cpu-demo": {
        "k_q": 4, "k_p": 4, "q_max_length": 100, "p_max_length": 384, "q_text_length": None, "p_text_length": None,
        "negatives": 3, "batch_size": 16, "epochs": 2.0, "lr": 1e-4, "warmup": 0.06, "weight_decay": 0.01,
        "clip": 1.0, "tau": 0.05, "sparse_weight": 1.0, "lora_r": 16, "lora_alpha": 64, "lora_dropout": 0.05,
        "precision": "auto", "dropout": 0.0, "maxsim_clamp": False, "world_loss_scale": True,
    },
}
"""Fine-tuning recipes (every field TrainConfig leaves unset).

``paper``: the reference's (the authors' ``scripts/train_diffretriever.py`` as run for the paper): global
batch 128 queries, 15 hard negatives shuffled per query, 1 epoch, lr 1e-4, warmup 6 %, cosine, weight decay 0.01,
clip 1.0, tau 0.01, sparse weight 1.0, LoRA r 16 / alpha 64 / dropout 0.05, bf16, texts cut to 32 (query) and 156
(passage) tokens with the prompt, masks and tail on top, training MaxSim not clamped at 0, the loss scaled by the
number of processes; K (4, 16) on Dream and (4, 4) elsewhere, as the paper's budget selection chose.
``cpu-demo``: what fits SciFact's 564 training pairs into minutes on a 2-core CPU (``make demo``; chosen with
benchmarks/ft_sweep.py, docs/ft-sweep.md): full fine-tuning of MiniLM, batch 16, 3 BM25 negatives, 2 epochs, tau
0.05, 100 / 384-token inputs (prompt included), dropout off; the reference's loss otherwise.
"""


RECIPE_K = {"paper": {"dream": (4, 16)}}
"""Family-specific K of a recipe (the paper's selected budgets)."""


def default_recipe(family: str) -> str:
    """The family record's recipe: ``paper`` for Dream, LLaDA and autoregressive, ``cpu-demo`` for the masked LM."""
    return get_family(family).recipe


@dataclass(frozen=True)
class TrainConfig:
    """One fine-tuning run; ``None`` fields come from the recipe (see RECIPES)."""

    train: str = field(metadata={"help": "training JSONL (see diffretriever_pyserini/training/data.py)"})
    corpus: str = field(metadata={"help": "prepared corpus folder holding the documents the examples name"})
    out: str = field(metadata={"help": "output folder (checkpoints, final model, loss curve)"})
    model: str = field(default="minilm", metadata={"help": "backbone: packaged name, folder or hub id"})
    family: str | None = field(default=None, metadata={"help": "backbone family (default: from config.json)"})
    recipe: str = field(default="auto", metadata={"choices": ("auto", "paper", "cpu-demo"),
        "help": "hyper-parameters for every unset option: paper (the reference's; default for Dream, LLaDA and "
                "autoregressive backbones), cpu-demo (the CPU demo's; default for masked-LM backbones), or auto"})
    method: str = field(default="auto", metadata={"choices": ("auto", "full", "lora"),
                                                  "help": "full, lora, or auto (full for masked_lm, else lora)"})
    k_q: int | None = field(default=None, metadata={"help": "query masks (paper: 4)"})
    k_p: int | None = field(default=None, metadata={"help": "passage masks (paper: 16 on Dream, 4 otherwise)"})
    q_max_length: int | None = field(default=None, metadata={
        "help": "query budget, prompt included (masks and tail on top), when q_text_length is unset"})
    p_max_length: int | None = field(default=None, metadata={"help": "passage budget, as q_max_length"})
    q_text_length: int | None = field(default=None, metadata={
        "help": "cut query TEXT to this many tokens (paper: 32); the prompt, masks and tail come on top"})
    p_text_length: int | None = field(default=None, metadata={"help": "cut passage TEXT to this many tokens "
                                                                      "(paper: 156)"})
    negatives: int | None = field(default=None, metadata={
        "help": "hard negatives per query in each batch, drawn from the example's list shuffled per query (a "
                "window that moves every epoch; with replacement when the list is shorter) (paper: 15)"})
    batch_size: int | None = field(default=None, metadata={"help": "queries per optimizer step over all processes "
                                                                     "(paper: 128)"})
    epochs: float | None = field(default=None, metadata={"help": "passes over the training examples (paper: 1)"})
    lr: float | None = field(default=None, metadata={"help": "peak learning rate (paper: 1e-4)"})
    warmup: float | None = field(default=None, metadata={"help": "warmup fraction of the steps (paper: 0.06)"})
    weight_decay: float | None = field(default=None, metadata={"help": "AdamW weight decay (paper: 0.01)"})
    clip: float | None = field(default=None, metadata={"help": "gradient-norm clipping (paper: 1.0)"})
    tau: float | None = field(default=None, metadata={"help": "MaxSim temperature (paper: 0.01)"})
    sparse_weight: float | None = field(default=None, metadata={"help": "weight of the sparse loss (paper: 1.0)"})
    maxsim_clamp: bool | None = field(default=None, metadata={
        "help": "clamp each training MaxSim max at 0 (the reference does not: paper false; search always clamps)"})
    world_loss_scale: bool | None = field(default=None, metadata={
        "help": "multiply the loss by the number of processes, as the reference does under DDP (paper: true)"})
    lora_r: int | None = field(default=None, metadata={"help": "LoRA rank (paper: 16)"})
    lora_alpha: int | None = field(default=None, metadata={"help": "LoRA alpha (paper: 64)"})
    lora_dropout: float | None = field(default=None, metadata={"help": "LoRA dropout (paper: 0.05)"})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "recompute activations in backward"})
    dropout: float | None = field(default=None, metadata={
        "help": "set every dropout probability of the backbone to this (0 turns dropout off, which also lets the "
                "CPU use its fused attention; default: keep the model's own)"})
    precision: str | None = field(default=None, metadata={"choices": ("auto", "bf16", "fp32"),
        "help": "forward passes in bf16 autocast or fp32: auto (bf16 on CUDA and on CPUs with native bf16 "
                "instructions, else fp32), bf16, fp32; master weights stay fp32"})
    save_every: int = field(default=20, metadata={"help": "steps between checkpoints"})
    keep_checkpoints: int = field(default=2, metadata={"help": "checkpoints kept"})
    device: str | None = field(default=None, metadata={"help": "auto, cpu, cuda:N"})
    seed: int = field(default=13, metadata={"help": "seed of batching, negatives, dropout and initialisation"})
    max_steps: int | None = field(default=None, metadata={"help": "stop after this many steps (default: epochs)"})

    def resolve(self, family: str) -> "TrainConfig":
        """Every unset field from the recipe (``auto``: :func:`default_recipe` of ``family``)."""
        recipe = self.recipe if self.recipe != "auto" else default_recipe(family)
        if recipe not in RECIPES:
            raise ValueError(f"unknown recipe {recipe!r}; choose from auto, {', '.join(RECIPES)}")
        values = dict(RECIPES[recipe])
        values["k_q"], values["k_p"] = RECIPE_K.get(recipe, {}).get(family, (values["k_q"], values["k_p"]))
        return replace(self, recipe=recipe, **{k: getattr(self, k) if getattr(self, k) is not None else v
                                               for k, v in values.items()})


def _steps(cfg: TrainConfig, n_examples: int) -> int:
    per_epoch = math.ceil(n_examples / cfg.batch_size)
    return cfg.max_steps or max(1, int(round(per_epoch * cfg.epochs)))


def batch_order(n: int, batch: int, steps: int, seed: int, world: int = 1, rank: int = 0) -> list[list[int]]:
    """Deterministic batches of example indices (reshuffled every epoch): each step takes ``batch`` examples over
    all processes and process ``rank`` its slice of ``batch // world``."""
    rng = random.Random(seed)
    order: list[int] = []
    while len(order) < steps * batch:
        perm = list(range(n))
        rng.shuffle(perm)
        order += perm
    local = batch // world
    return [order[s * batch + rank * local: s * batch + (rank + 1) * local] for s in range(steps)]


def _example_rng(seed: int, query_id: str) -> random.Random:
    """A per-query random stream, stable across runs and processes (not Python's salted hash)."""
    digest = hashlib.sha256(f"{seed}:{query_id}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def pick_negatives(example: TrainingExample, n: int, seed: int, epoch: int) -> list[str]:
    """``n`` hard negatives for ``example`` in ``epoch``, as the reference's data loader draws them: the list
    shuffled by a per-query seed, then a window of ``n`` that moves by ``n`` every epoch (wrapping around); a list
    shorter than ``n`` is sampled with replacement; no list gives none (in-batch negatives only)."""
    negatives = list(example.negative_ids)
    if not negatives or n <= 0:
        return []
    rng = _example_rng(seed, example.query_id)
    rng.shuffle(negatives)
    if len(negatives) >= n:
        offset = (epoch * n) % len(negatives)
        return (negatives + negatives)[offset: offset + n]
    return [negatives[rng.randrange(len(negatives))] for _ in range(n)]


def pick_positive(example: TrainingExample, seed: int, epoch: int) -> str:
    """The positive of ``example`` in ``epoch``: the list rotated by a per-query seed plus the epoch."""
    start = _example_rng(seed, example.query_id).randrange(1 << 30)
    return example.positive_ids[(start + epoch) % len(example.positive_ids)]


class Trainer:
    """Holds the backbone, the two readers, the optimizer and the schedule."""

    def __init__(self, cfg: TrainConfig):
        from diffretriever_pyserini.backbones import load_backbone

        self.world, self.rank = _dist_info()
        torch.manual_seed(cfg.seed)
        self.backbone = load_backbone(cfg.model, family=cfg.family, device=cfg.device, dtype="fp32")
        self.cfg = cfg = cfg.resolve(self.backbone.family)
        if cfg.batch_size % self.world:
            raise ValueError(f"batch_size {cfg.batch_size} is the global batch; it must divide among {self.world} "
                             "processes")
        method = cfg.method if cfg.method != "auto" else ("full" if self.backbone.family == "masked_lm" else "lora")
        if method not in ("full", "lora"):
            raise ValueError(f"method must be full, lora or auto, got {cfg.method!r}")
        self.method = method
        model = self.backbone.model
        if method == "lora":
            import peft

            config = peft.LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                                     target_modules=LORA_TARGETS[self.backbone.family])
            model = peft.inject_adapter_in_model(config, model)
            for name, p in model.named_parameters():
                p.requires_grad = "lora_" in name
        if cfg.gradient_checkpointing:
            _enable_checkpointing(model)
        if cfg.dropout is not None:
            _set_dropout(model, cfg.dropout)
        self.model = model
        self.bf16 = _use_bf16(cfg.precision, self.backbone.device)
        self.q_reader = KMaskReader(self.backbone, "query", ReadoutConfig(
            k=cfg.k_q, max_length=cfg.q_max_length, text_max_length=cfg.q_text_length))
        self.p_reader = KMaskReader(self.backbone, "passage", ReadoutConfig(
            k=cfg.k_p, max_length=cfg.p_max_length, text_max_length=cfg.p_text_length))
        params = [p for p in model.parameters() if p.requires_grad]
        decay = [p for p in params if p.dim() > 1]
        no_decay = [p for p in params if p.dim() <= 1]
        self.optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                            {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)

    def encode(self, reader: KMaskReader, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Differentiable readout: (B, K, H) normalised vectors and (B, V) pooled content-restricted sparse."""
        with torch.autocast(self.backbone.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            hidden, logits, allowed, _ = reader.forward(texts)
        return normalise(hidden.float()), pooled_sparse(logits, allowed.to(logits.device))

    def step_loss(self, batch: list[TrainingExample], docs: dict[str, str], epoch: int):
        """The loss of one step's local examples: each query against its positive, its hard negatives and every
        other passage of the (gathered) batch."""
        cfg = self.cfg
        queries, passages, positives = [], [], []
        for ex in batch:
            positives.append(len(passages))
            passages.append(docs[pick_positive(ex, cfg.seed, epoch)])
            passages += [docs[d] for d in pick_negatives(ex, cfg.negatives, cfg.seed, epoch)]
            queries.append(ex.query)
        q_dense, q_sparse = self.encode(self.q_reader, queries)
        p_dense, p_sparse = self.encode(self.p_reader, passages)
        loss, parts = contrastive_loss(q_dense, p_dense, q_sparse, p_sparse,
                                       torch.tensor(positives, device=q_dense.device), cfg.k_q, cfg.tau,
                                       cfg.sparse_weight, clamp=cfg.maxsim_clamp)
        return (loss * self.world if cfg.world_loss_scale else loss), parts


def _dist_info() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def cpu_has_bf16() -> bool:
    """Whether this CPU executes bf16 matrix products natively (AVX512-BF16 or AMX); emulated bf16 is slower."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _use_bf16(precision: str, device: torch.device) -> bool:
    if precision not in ("auto", "bf16", "fp32"):
        raise ValueError(f"precision must be auto, bf16 or fp32, got {precision!r}")
    if precision != "auto":
        return precision == "bf16"
    return device.type == "cuda" or (device.type == "cpu" and cpu_has_bf16())


def _set_dropout(model, p: float) -> None:
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {p}")
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = p


def _enable_checkpointing(model) -> None:
    if hasattr(model, "gradient_checkpointing_enable"):
        model.gradient_checkpointing_enable()
        return
    from torch.utils.checkpoint import checkpoint

    for module in model.modules():
        blocks = getattr(module, "layers", None) or getattr(module, "blocks", None)
        if isinstance(blocks, torch.nn.ModuleList):
            for block in blocks:
                forward = block.forward
                block.forward = lambda *a, _f=forward: checkpoint(_f, *a, use_reentrant=False)


def _schedule(optimizer, warmup_steps: int, total: int):
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        progress = (step - warmup_steps) / max(1, total - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def train(cfg: TrainConfig, stop_after: int | None = None) -> Path:
    """Run (or resume) fine-tuning; returns the final model folder ``<out>/final``.

    ``stop_after`` ends the run after that many steps without finishing it (used to test resumption).
    """
    out = Path(cfg.out)
    examples = read_examples(Path(cfg.train))
    trainer = Trainer(cfg)
    cfg = trainer.cfg  # the recipe filled in
    needed = {d for ex in examples for d in ex.positive_ids + ex.negative_ids}
    docs = load_documents(Path(cfg.corpus), needed)
    total = _steps(cfg, len(examples))
    per_epoch = math.ceil(len(examples) / cfg.batch_size)
    batches = batch_order(len(examples), cfg.batch_size, total, cfg.seed, trainer.world, trainer.rank)
    scheduler = _schedule(trainer.optimizer, int(cfg.warmup * total), total)
    state = {"step": 0, "losses": [], "config": asdict(cfg), "method": trainer.method, "total_steps": total}
    last = last_checkpoint(out)
    if last is not None:
        state = load_checkpoint(last, trainer, scheduler)
        log.info("resuming from %s (step %d of %d)", last, state["step"], total)
    from tqdm import tqdm

    trainer.model.train()
    progress = tqdm(total=total, initial=state["step"], desc="fine-tune", unit="step", disable=trainer.rank != 0)
    while state["step"] < total:
        step = state["step"]
        loss, parts = trainer.step_loss([examples[i] for i in batches[step]], docs, epoch=step // per_epoch)
        trainer.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        _all_reduce_grads(trainer.model, trainer.world)
        torch.nn.utils.clip_grad_norm_([p for p in trainer.model.parameters() if p.requires_grad], cfg.clip)
        trainer.optimizer.step()
        scheduler.step()
        state["step"] = step + 1
        state["losses"].append({"step": step + 1, "loss": float(loss.detach()), **parts,
                                "lr": scheduler.get_last_lr()[0]})
        progress.update(1)
        progress.set_postfix(loss=f"{float(loss.detach()):.3f}")
        if trainer.rank == 0 and (state["step"] % cfg.save_every == 0 or state["step"] == total):
            save_checkpoint(out, trainer, scheduler, state)
        if stop_after is not None and state["step"] >= stop_after:
            progress.close()
            return out
    progress.close()
    final = out / "final"
    if trainer.rank == 0:
        save_model(final, trainer)
        plot_losses(state["losses"], out / "loss.png")
        (out / "losses.json").write_text(json.dumps(state["losses"], indent=1) + "\n")
    return final


def _all_reduce_grads(model, world: int) -> None:
    if world == 1:
        return
    import torch.distributed as dist

    for p in model.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= world
