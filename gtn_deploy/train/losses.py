"""Loss functions of teacher training and distillation, as small pure functions.

The formulas are this project's reconstruction of GTN (see docs GTN_METHOD.md, "Our design");
they are not taken from the paper's text, which is not available to the project.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float(), labels)


def kd_kl(teacher_logits: torch.Tensor, student_logits: torch.Tensor, tau: float = 1.0
          ) -> torch.Tensor:
    """tau^2 * KL(softmax(z_T/tau) || softmax(z_S/tau)), averaged over the batch.

    Gradients reach both arguments: detach the teacher yourself where it must stay fixed.
    """
    log_p_t = F.log_softmax(teacher_logits.float() / tau, dim=1)
    log_p_s = F.log_softmax(student_logits.float() / tau, dim=1)
    kl = F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True)
    return kl * (tau * tau)


def per_sample_kl(teacher_logits: torch.Tensor, student_logits: torch.Tensor, tau: float = 1.0
                  ) -> torch.Tensor:
    """KL(softmax(z_T/tau) || softmax(z_S/tau)) per sample, without the tau^2 factor."""
    log_p_t = F.log_softmax(teacher_logits.float() / tau, dim=1)
    log_p_s = F.log_softmax(student_logits.float() / tau, dim=1)
    return (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=1)


def branch_terms(teacher_logits: torch.Tensor, branch_logits: Sequence[torch.Tensor],
                 labels: torch.Tensor, l_ce: float = 1.0, l_kl: float = 3.0, tau: float = 1.0
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """``mean_k [l_ce*CE(q_k, y) + l_kl*tau^2*KL(z_T || q_k)]`` and the mean KL (no tau^2).

    The second value is the architecture's teacher-student mismatch KL_a, the sampler's
    reward; it is returned attached, callers detach it.
    """
    if not branch_logits:
        raise ValueError("at least one branch is needed")
    terms, kls = [], []
    for q in branch_logits:
        kl = per_sample_kl(teacher_logits, q, tau).mean()
        terms.append(l_ce * cross_entropy(q, labels) + l_kl * tau * tau * kl)
        kls.append(kl)
    return torch.stack(terms).mean(), torch.stack(kls).mean()


def conditioning_loss(teacher_logits: torch.Tensor, branch_logits: Sequence[torch.Tensor],
                      labels: torch.Tensor, l_ce: float = 1.0, l_kl: float = 3.0,
                      tau: float = 1.0) -> torch.Tensor:
    """L_cond(a) = CE(z_T, y) + mean_k [l_ce*CE(q_k(a), y) + l_kl*tau^2*KL(z_T || q_k(a))]."""
    branches, _ = branch_terms(teacher_logits, branch_logits, labels, l_ce, l_kl, tau)
    return cross_entropy(teacher_logits, labels) + branches


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                      labels: torch.Tensor, alpha: float = 0.9, temperature: float = 4.0
                      ) -> torch.Tensor:
    """Phase 3: (1-alpha)*CE(q_S, y) + alpha*T^2*KL(z_T || q_S), teacher detached."""
    soft = kd_kl(teacher_logits.detach(), student_logits, temperature)
    return (1.0 - alpha) * cross_entropy(student_logits, labels) + alpha * soft
