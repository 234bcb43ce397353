"""Teacher logits over a training set, computed once per (teacher, data) and shared.

Without augmentation a frozen teacher's output for a training image never changes, so KD
needs no teacher forward per step: the logits are computed once (eval mode, as in the step)
and looked up by image index. A KD run then costs what a CE run costs. Every student of a
process that uses the same teacher and training images (the pipeline's devices, the
benchmarks' students and seeds) shares one table.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import torch
from torch import nn

from gtn_deploy.arch import TaskSpec
from gtn_deploy.data import Dataset, eval_batches
from gtn_deploy.train.evaluate import prepare_batch

# Above this size (bytes) the table is not worth its memory: compute logits per step instead.
MAX_TABLE_BYTES = 512 * 2**20
_TABLES: OrderedDict[tuple[str, str], torch.Tensor] = OrderedDict()
_KEEP = 4


def fits(data: Dataset, num_classes: int) -> bool:
    return len(data) * num_classes * 4 <= MAX_TABLE_BYTES


def dataset_fingerprint(data: Dataset) -> str:
    """sha256 of the images and labels: two datasets with equal bytes share a table."""
    digest = hashlib.sha256()
    digest.update(str(tuple(data.images.shape)).encode())
    digest.update(data.images.contiguous().numpy().tobytes())
    digest.update(data.labels.contiguous().numpy().tobytes())
    return digest.hexdigest()


@torch.no_grad()
def training_logits(teacher: nn.Module, teacher_sha256: str, data: Dataset, task: TaskSpec,
                    device: str = "cpu", batch_size: int = 500) -> torch.Tensor:
    """(N, classes) float32 logits of the eval-mode ``teacher`` on every image of ``data``."""
    key = (teacher_sha256, dataset_fingerprint(data))
    if key in _TABLES:
        _TABLES.move_to_end(key)
        return _TABLES[key]
    was_training = teacher.training
    teacher.eval()
    parts = []
    try:
        for images, _ in eval_batches(data, batch_size):
            parts.append(teacher(prepare_batch(images, task, device)).float().cpu())
    finally:
        teacher.train(was_training)
    table = torch.cat(parts)
    _TABLES[key] = table
    while len(_TABLES) > _KEEP:
        _TABLES.popitem(last=False)
    return table
