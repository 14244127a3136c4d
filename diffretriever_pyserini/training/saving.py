"""What fine-tuning writes: resumable checkpoints (trainable weights, optimizer, schedule, position), the final
model folder with its ``retriever_config.json`` (the readout it was trained with, read back by
:mod:`~diffretriever_pyserini.readout.finetuned`) and the loss plot; every folder written atomically."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import torch

from diffretriever_pyserini import __version__
from diffretriever_pyserini.backbones.families import get_family
from diffretriever_pyserini.encode.writers import AtomicDir
from diffretriever_pyserini.readout.finetuned import RETRIEVER_CONFIG


def last_checkpoint(out: Path) -> Path | None:
    done = [p for p in out.glob("checkpoint-*") if (p / "trainer_state.json").is_file()]
    return max(done, key=lambda p: int(p.name.split("-")[1])) if done else None


def trainable_state(trainer) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().contiguous() for n, p in trainer.model.named_parameters() if p.requires_grad}


def save_checkpoint(out: Path, trainer, scheduler, state: dict) -> None:
    from safetensors.torch import save_file

    target = out / f"checkpoint-{state['step']}"
    with AtomicDir(target) as tmp:
        save_file(trainable_state(trainer), str(tmp / "trainable.safetensors"))
        torch.save({"optimizer": trainer.optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "rng": torch.get_rng_state()}, tmp / "optimizer.pt")
        (tmp / "trainer_state.json").write_text(json.dumps(state) + "\n")
    done = sorted((p for p in out.glob("checkpoint-*") if (p / "trainer_state.json").is_file()),
                  key=lambda p: int(p.name.split("-")[1]))
    for old in done[: -trainer.cfg.keep_checkpoints]:
        shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(folder: Path, trainer, scheduler) -> dict:
    from safetensors.torch import load_file

    weights = load_file(str(folder / "trainable.safetensors"))
    params = dict(trainer.model.named_parameters())
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value.to(params[name].device))
    extra = torch.load(folder / "optimizer.pt", weights_only=True)  # our own file; tensors and plain data only
    trainer.optimizer.load_state_dict(extra["optimizer"])
    scheduler.load_state_dict(extra["scheduler"])
    torch.set_rng_state(extra["rng"])
    return json.loads((folder / "trainer_state.json").read_text())


def retriever_config(trainer) -> dict:
    """``retriever_config.json`` for a model trained here: the reference's keys (backbone type, mask id, hidden
    size, K, prompt ids, tail, denoising steps, loss settings) plus a ``diffretriever`` block with every
    hyper-parameter of the run, so the encoders read it exactly as they read the authors' released checkpoints."""
    cfg, bb = trainer.cfg, trainer.backbone
    return {"model_type": bb.family, "mask_token_id": bb.mask_token_id, "hidden_size": bb.hidden_size,
            "max_length": cfg.p_max_length, "n_gen_tokens": cfg.k_q, "n_gen_q_tokens": cfg.k_q,
            "n_gen_p_tokens": cfg.k_p, "temperature": cfg.tau, "num_denoise_steps": 1,
            "sparse_weight": cfg.sparse_weight, "normalize": True,
            "query_prefix_ids": trainer.q_reader.prefix, "query_suffix_ids": trainer.q_reader.suffix,
            "passage_prefix_ids": trainer.p_reader.prefix, "passage_suffix_ids": trainer.p_reader.suffix,
            "n_tail": len(trainer.p_reader.tail), "tail_ids": trainer.p_reader.tail,
            "lora_rank": cfg.lora_r if trainer.method == "lora" else 0, "lora_alpha": cfg.lora_alpha,
            "use_eos": False, "use_k_adapter": False, "use_k_pre_encoder": False,
            "diffretriever": {**asdict(cfg), "method": trainer.method, "family": bb.family, "base_model": cfg.model,
                              "run_name": Path(cfg.out).name, "version": __version__}}


def save_model(final: Path, trainer) -> None:
    """Full fine-tuning: a model folder loadable by ``--model``; LoRA: a PEFT adapter folder for ``--adapter``;
    either with its ``retriever_config.json``."""
    cfg, bb = trainer.cfg, trainer.backbone
    with AtomicDir(final) as tmp:
        if trainer.method == "full" and hasattr(trainer.model, "save_pretrained"):
            trainer.model.save_pretrained(str(tmp), safe_serialization=True)
            bb.tokenizer.save_pretrained(str(tmp))
        elif trainer.method == "full":  # native Dream / LLaDA: the hub layout they load from
            from safetensors.torch import save_file

            from diffretriever_pyserini.backbones.checkpoint import local_folder

            save_file({k: v.detach().cpu().contiguous() for k, v in trainer.model.state_dict().items()},
                      str(tmp / "model.safetensors"))
            shutil.copy(local_folder(cfg.model) / "config.json", tmp / "config.json")
            bb.tokenizer.save_pretrained(str(tmp))
        else:
            import peft
            from safetensors.torch import save_file

            state = peft.get_peft_model_state_dict(trainer.model)
            save_file({f"base_model.model.{k}": v.detach().cpu().contiguous() for k, v in state.items()},
                      str(tmp / "adapter_model.safetensors"))
            (tmp / "adapter_config.json").write_text(json.dumps(
                {"peft_type": "LORA", "r": cfg.lora_r, "lora_alpha": cfg.lora_alpha, "lora_dropout": cfg.lora_dropout,
                 "target_modules": list(get_family(bb.family).lora_targets), "base_model_name_or_path": cfg.model},
                indent=2))
        (tmp / RETRIEVER_CONFIG).write_text(json.dumps(retriever_config(trainer), indent=2) + "\n")


def plot_losses(losses: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    steps = [r["step"] for r in losses]
    for key in ("loss", "dense", "sparse"):
        ax.plot(steps, [r[key] for r in losses], label=key)
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy")
    ax.set_title("fine-tuning loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
