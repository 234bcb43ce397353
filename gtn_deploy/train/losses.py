"""Loss functions of teacher training and distillation, as small pure functions.

The formulas are this project's reconstruction of GTN (see docs GTN_METHOD.md, "Our design");
they are not taken from the paper's text, which is not available to the project.
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

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


def dkd_terms(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
              tau: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample (TCKD, NCKD) of Decoupled KD (Zhao et al., CVPR 2022), without tau^2.

    TCKD is the KL between the binary (target, rest) distributions of teacher and student;
    NCKD the KL between their distributions over the non-target classes. Classic KD is
    TCKD + (1 - p_target(teacher)) * NCKD per sample (tests/test_distill.py checks this).
    """
    z_s, z_t = student_logits.float() / tau, teacher_logits.float() / tau
    target = F.one_hot(labels, z_s.shape[1]).bool()
    p_s, p_t = F.softmax(z_s, dim=1), F.softmax(z_t, dim=1)
    # the non-target mass as a sum, not 1 - p_target: on a confident model 1 - p_target
    # cancels in float32 and the clamp then bent the gradient by up to a third
    b_s = torch.stack([p_s[target], p_s.masked_fill(target, 0.0).sum(1)], dim=1)
    b_t = torch.stack([p_t[target], p_t.masked_fill(target, 0.0).sum(1)], dim=1)
    b_s, b_t = b_s.clamp_min(1e-30), b_t.clamp_min(1e-30)
    tckd = (b_t * (b_t.log() - b_s.log())).sum(dim=1)
    # a large finite offset (not -inf) removes the target class and keeps 0 * log terms finite
    log_q_s = F.log_softmax(z_s - 1000.0 * target, dim=1)
    log_q_t = F.log_softmax(z_t - 1000.0 * target, dim=1)
    nckd = (log_q_t.exp() * (log_q_t - log_q_s)).sum(dim=1)
    return tckd, nckd


def decoupled_kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                      labels: torch.Tensor, alpha: float = 0.9, temperature: float = 4.0,
                      beta: float = 8.0) -> torch.Tensor:
    """(1-alpha)*CE(q_S, y) + alpha*T^2*mean(TCKD + beta*NCKD), teacher detached.

    DKD frees the non-target term's weight, which classic KD ties to 1 - p_target(teacher).
    With alpha = 0.5 this is half the paper's CE + TCKD + beta*NCKD (its alpha = 1); the
    paper's linear warm-up of the KD term over 20 epochs is left out: our students train
    for one to a few epochs.
    """
    tckd, nckd = dkd_terms(student_logits, teacher_logits.detach(), labels, temperature)
    soft = (tckd + beta * nckd).mean() * temperature * temperature
    return (1.0 - alpha) * cross_entropy(student_logits, labels) + alpha * soft


# KD losses by name (--kd-loss): pure functions of (student logits, teacher logits, labels,
# alpha, temperature, their own options). A new loss is a function here and its entry.
KD_LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "kd": distillation_loss,
    "dkd": decoupled_kd_loss,
}


def kd_loss_fn(name: str, alpha: float, temperature: float, dkd_beta: float = 8.0
               ) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    """The named loss as a function of (student logits, teacher logits, labels)."""
    if name not in KD_LOSSES:
        raise ValueError(f"unknown KD loss '{name}'; valid: {', '.join(KD_LOSSES)}")
    options = {"dkd": {"beta": dkd_beta}}.get(name, {})
    return functools.partial(KD_LOSSES[name], alpha=alpha, temperature=temperature, **options)
