"""The fine-tuning objective (the paper's contrastive objective, arXiv 2605.07210) as pure tensor functions.

loss = CE(MaxSim(q, p) / K_q / tau) + sparse_weight * CE(<s_q, s_p>)   (training MaxSim not clamped at 0)

where s = max over the K positions of log(1 + relu(logits)) restricted to the text's content tokens. Every query is
scored against every passage of the batch (its positive, its hard negatives, and all other queries' passages:
in-batch negatives); with several processes the passages of all processes are gathered as negatives.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

DEFAULT_TAU = 0.01
DEFAULT_SPARSE_WEIGHT = 1.0


def maxsim_scores(q: torch.Tensor, p: torch.Tensor, clamp: bool = False) -> torch.Tensor:
    """(Bq, K_q, H), (Bp, K_p, H) -> (Bq, Bp): sum_i max_j <q_i, p_j>, each max clamped at 0 with ``clamp``.

    The reference trains without the clamp (its evaluation MaxSim clamps, as search does here).
    """
    best = torch.einsum("akh,bjh->abkj", q, p).amax(dim=-1)
    return (best.clamp_min(0.0) if clamp else best).sum(dim=-1)


def pooled_sparse(logits: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """(B, K, V) logits, (B, V) allowed -> (B, V): max over K of log(1 + relu(logits)) on the allowed tokens."""
    return (torch.log1p(torch.relu(logits.float())) * allowed.unsqueeze(1).to(torch.float32)).amax(dim=1)


class _GatherWithGrad(torch.autograd.Function):
    """all_gather forward; backward sums every rank's gradient of the gathered tensor and keeps the local slice
    (so each rank's passages receive the gradient of all ranks' losses). Contiguous buffers throughout."""

    @staticmethod
    def forward(ctx, x):
        import torch.distributed as dist

        world, rank = dist.get_world_size(), dist.get_rank()
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x.contiguous())
        ctx.rank, ctx.size = rank, x.shape[0]
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad):
        import torch.distributed as dist

        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.size:(ctx.rank + 1) * ctx.size]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from every process (rank order), keeping the gradient path to the local part."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    return _GatherWithGrad.apply(x)


def contrastive_loss(q_dense: torch.Tensor, p_dense: torch.Tensor, q_sparse: torch.Tensor, p_sparse: torch.Tensor,
                     positives: torch.Tensor, k_q: int, tau: float = DEFAULT_TAU,
                     sparse_weight: float = DEFAULT_SPARSE_WEIGHT, gather: bool = True,
                     clamp: bool = False) -> tuple[torch.Tensor, dict]:
    """Local queries against all (gathered) passages (``clamp``: clamp each MaxSim max at 0).

    positives: (Bq,) index of each local query's positive among the LOCAL passages; with gathering it is offset by
    rank * local passage count. Returns (loss, parts) with the dense and sparse terms for logging.
    """
    offset = 0
    if gather:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            offset = dist.get_rank() * p_dense.shape[0]
        p_dense, p_sparse = gather_with_grad(p_dense), gather_with_grad(p_sparse)
    targets = positives + offset
    dense_logits = maxsim_scores(q_dense.float(), p_dense.float(), clamp) / k_q / tau
    sparse_logits = q_sparse @ p_sparse.T
    dense_loss = F.cross_entropy(dense_logits, targets)
    sparse_loss = F.cross_entropy(sparse_logits, targets)
    loss = dense_loss + sparse_weight * sparse_loss
    return loss, {"dense": float(dense_loss.detach()), "sparse": float(sparse_loss.detach())}
