"""The teacher-training objective of each method, as one module with one forward.

One forward computes the whole step's loss (teacher plus every sampled path's branches), so
the module can be wrapped in DistributedDataParallel as is: DDP needs exactly one forward per
backward, and the supernet runs a different subnet per path.

- ``vanilla``: CE(z_T, y).
- ``sftn``: L_cond(a) for one fixed student a.
- ``gtn``: CE(z_T, y) + mean over the m sampled paths of the branch terms of L_cond(a),
  i.e. the mean of L_cond(a) over the paths (the teacher CE is shared by them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from gtn_deploy.spaces.base import Arch
from gtn_deploy.train import losses
from gtn_deploy.train.branches import StudentBranches

METHODS = ("gtn", "vanilla", "sftn")


@dataclass(frozen=True)
class LossWeights:
    l_ce: float = 1.0
    l_kl: float = 3.0
    tau: float = 1.0
    # Stop the branch KL's gradient into the teacher's logits (GTN_METHOD.md lets it flow;
    # TrainConfig turns this on by default: measured, it kept the teacher sharp)
    kl_detach: bool = False
    # Share of the batch the branches see: the batch is shuffled, so its first part is a
    # uniform sample and the branch loss on it an unbiased estimate of the whole batch's
    # (the depthwise student branches cost more than the teacher itself on a CPU)
    branch_batch: float = 1.0
    # Scale of the branch gradients that reach the teacher's features (1: the design; lower
    # keeps more of the teacher's own accuracy; 0: the teacher is not conditioned at all)
    teacher_grad: float = 1.0


class TeacherObjective(nn.Module):
    """Teacher (+ supernet and adapters for gtn/sftn); ``forward`` returns loss and stats."""

    def __init__(self, method: str, teacher: nn.Module, supernet: nn.Module | None = None,
                 image_size: int = 28, weights: LossWeights = LossWeights()):
        super().__init__()
        if method not in METHODS:
            raise ValueError(f"unknown method {method}")
        self.method, self.weights = method, weights
        self.teacher = teacher
        if method != "vanilla":
            if supernet is None:
                raise ValueError(f"method '{method}' needs a supernet")
            self.supernet = supernet
            self.branches = StudentBranches(teacher, supernet, image_size)

    @property
    def uses_branches(self) -> bool:
        return self.method != "vanilla"

    def forward(self, x: torch.Tensor, y: torch.Tensor, archs: Sequence[Arch] = (),
                branch_scale: float = 1.0, which: Sequence[int] | None = None,
                teacher_pull: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, stats); stats = [teacher CE, teacher correct, branch loss, KL_a per path].

        ``which``: the branches to run (default all). A uniformly drawn subset gives an
        unbiased estimate of the mean over all branches at a fraction of the cost.
        ``teacher_pull``: scales every branch gradient that reaches the teacher (its
        features and, unless detached, its logits through the KL); 0 trains the branches
        against a fixed teacher, the losses' values unchanged.
        """
        if not self.uses_branches:
            logits = self.teacher(x)
            ce = losses.cross_entropy(logits, y)
            return ce, _stats(ce, logits, y, ce.new_zeros(()), [])
        feats, logits = self.teacher.forward_features(x)
        ce = losses.cross_entropy(logits, y)
        n = max(1, math.ceil(self.weights.branch_batch * len(y)))
        xb, yb, target = x[:n], y[:n], logits[:n]
        fb = [_scale_grad(f[:n], self.weights.teacher_grad * teacher_pull) for f in feats]
        target = target.detach() if self.weights.kl_detach else \
            _scale_grad(target, teacher_pull)
        path_terms, path_kls = [], []
        for arch in archs:
            self.supernet.set_active(arch)
            q = self.branches(self.supernet, xb, fb, arch, which)
            term, kl = losses.branch_terms(target, q, yb, self.weights.l_ce, self.weights.l_kl,
                                           self.weights.tau)
            path_terms.append(term)
            path_kls.append(kl.detach())
        branch = torch.stack(path_terms).mean()
        return ce + branch_scale * branch, _stats(ce, logits, y, branch, path_kls)


def _scale_grad(t: torch.Tensor, scale: float) -> torch.Tensor:
    """``t`` in the forward pass; its gradient times ``scale`` in the backward pass."""
    if scale == 1.0:
        return t
    if scale == 0.0:
        return t.detach()
    return t * scale + t.detach() * (1.0 - scale)


def _stats(ce: torch.Tensor, logits: torch.Tensor, y: torch.Tensor, branch: torch.Tensor,
           kls: list[torch.Tensor]) -> torch.Tensor:
    correct = (logits.detach().argmax(1) == y).sum().float()
    parts = [ce.detach().float(), correct, branch.detach().float()] + [k.float() for k in kls]
    return torch.stack(parts)
