"""Evaluation of the teacher and of supernet subnets, sharded over processes."""

from __future__ import annotations

import contextlib
import copy

import torch
from torch import nn

from gtn_deploy.arch import TaskSpec
from gtn_deploy.data import BatchPlan, Dataset, eval_batches, normalize, train_batches
from gtn_deploy.spaces.base import Arch
from gtn_deploy.supernet import recalibrate_bn
from gtn_deploy.train.distributed import DistInfo, all_reduce_sum


def autocast_for(device: str, dtype: torch.dtype | None):
    if device.startswith("cuda") and dtype is not None:
        return torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext()


def prepare_batch(images: torch.Tensor, task: TaskSpec, device: str) -> torch.Tensor:
    """uint8 images -> the normalised channels_last float batch every eval forward takes."""
    x = normalize(images.to(device, non_blocking=True), task)
    return x.contiguous(memory_format=torch.channels_last)


@torch.no_grad()
def evaluate(model: nn.Module, data: Dataset, task: TaskSpec, info: DistInfo,
             batch_size: int = 500, amp_dtype: torch.dtype | None = None) -> dict[str, float]:
    """Top-1 (%) and mean cross-entropy of ``model`` on ``data``; restores train/eval mode."""
    was_training = model.training
    model.eval()
    totals = torch.zeros(6, dtype=torch.float64, device=info.device)
    try:
        for images, labels in eval_batches(data, batch_size, info.rank, info.world_size):
            labels = labels.to(info.device)
            with autocast_for(info.device, amp_dtype):
                logits = model(prepare_batch(images, task, info.device)).float()
            loss = nn.functional.cross_entropy(logits, labels, reduction="sum")
            logp = torch.log_softmax(logits, 1)
            totals += torch.stack([
                loss.double(), (logits.argmax(1) == labels).sum().double(),
                torch.tensor(float(len(labels)), dtype=torch.float64, device=info.device),
                logits.std(1).sum().double(), -(logp.exp() * logp).sum().double(),
                logp.gather(1, labels[:, None]).exp().sum().double()])
    finally:
        model.train(was_training)
    all_reduce_sum(totals, info)
    n = max(1.0, float(totals[2]))
    # how sharp the model is (a KD teacher that comes out soft transfers less): the mean
    # per-image std of the logits, the mean entropy (nats) and p(true class)
    return {"top1": round(100.0 * float(totals[1]) / n, 4), "loss": float(totals[0]) / n,
            "logit_std": round(float(totals[3]) / n, 4),
            "entropy": round(float(totals[4]) / n, 4),
            "p_true": round(float(totals[5]) / n, 4)}


@torch.no_grad()
def evaluate_subnet(supernet: nn.Module, arch: Arch, train: Dataset, val: Dataset,
                    task: TaskSpec, info: DistInfo, calib_images: int = 2000,
                    batch_size: int = 250) -> dict[str, float]:
    """Val top-1 of one subnet after BN recalibration, on a copy (the supernet is untouched)."""
    net = copy.deepcopy(supernet)
    net.set_active(arch)
    plan = BatchPlan(min(len(train), calib_images), batch_size, drop_last=False)
    calib = (prepare_batch(x, task, info.device)
             for _, x, _ in train_batches(train, task, plan, seed=0, epoch=0, do_augment=False))
    recalibrate_bn(net, calib)
    return evaluate(net, val, task, info, batch_size)
