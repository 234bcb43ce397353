"""Batches, batch augmentation and normalisation, all on whole tensors.

Every random choice is a function of (seed, epoch, step): the shuffle order of an epoch comes
from (seed, epoch) and the augmentation of a batch from (seed, epoch, step). A run that
resumes at step ``s`` of epoch ``e`` therefore sees exactly the batches an uninterrupted run
would, and data-parallel ranks take equal slices of the same global batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch

from gtn_deploy.arch import TaskSpec
from gtn_deploy.data.datasets import Dataset


def _generator(*keys: int) -> torch.Generator:
    # A fixed mix of the keys; distinct (seed, epoch, step) give distinct streams.
    value = 0x9E3779B1
    for key in keys:
        value = (value * 1000003 + int(key) + 0x632BE5AB) % (2**63 - 1)
    return torch.Generator().manual_seed(value)


def random_crop(images: torch.Tensor, pad: int, gen: torch.Generator) -> torch.Tensor:
    """Zero-pad by ``pad`` and crop back to the original size at a random offset per image."""
    if pad <= 0:
        return images
    n, c, h, w = images.shape
    padded = torch.nn.functional.pad(images, (pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    ox = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    rows = (oy[:, None] + torch.arange(h))[:, None, :, None]
    cols = (ox[:, None] + torch.arange(w))[:, None, None, :]
    return padded[torch.arange(n)[:, None, None, None], torch.arange(c)[None, :, None, None],
                  rows, cols]


def random_hflip(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    flip = torch.rand(images.shape[0], generator=gen) < 0.5
    return torch.where(flip[:, None, None, None], images.flip(3), images)


def augment(images: torch.Tensor, task: TaskSpec, gen: torch.Generator,
            pad: int | None = None) -> torch.Tensor:
    """Random crop with padding (``size // 8`` by default) and, if the task allows, h-flip."""
    pad = images.shape[-1] // 8 if pad is None else pad
    out = random_crop(images, pad, gen)
    if task.hflip:
        out = random_hflip(out, gen)
    return out


def normalize(images: torch.Tensor, task: TaskSpec, dtype: torch.dtype = torch.float32
              ) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float, scaled to [0, 1] then standardised with the task's stats."""
    mean = torch.tensor(task.mean, dtype=dtype, device=images.device).view(1, -1, 1, 1)
    std = torch.tensor(task.std, dtype=dtype, device=images.device).view(1, -1, 1, 1)
    return (images.to(dtype) / 255.0 - mean) / std


@dataclass(frozen=True)
class BatchPlan:
    """How one epoch is cut into global batches, and which slice a rank takes."""

    num_items: int
    batch_size: int  # global, over all ranks
    drop_last: bool = True
    rank: int = 0
    world_size: int = 1

    def __post_init__(self) -> None:
        if self.batch_size % self.world_size:
            raise ValueError(f"global batch {self.batch_size} is not divisible by "
                             f"{self.world_size} processes")

    @property
    def steps(self) -> int:
        full, rest = divmod(self.num_items, self.batch_size)
        return full if (self.drop_last or not rest) else full + 1

    def local_slice(self, size: int) -> slice:
        per = -(-size // self.world_size)
        return slice(self.rank * per, min(size, (self.rank + 1) * per))


def train_batches(data: Dataset, task: TaskSpec, plan: BatchPlan, seed: int, epoch: int,
                  start_step: int = 0, do_augment: bool = True, with_index: bool = False
                  ) -> Iterator[tuple]:
    """Yield ``(step, images_uint8, labels)`` of this rank for steps ``start_step..``.

    ``with_index`` appends the images' positions in ``data`` (for per-image caches such as
    the teacher logits of KD without augmentation).
    """
    order = torch.randperm(len(data), generator=_generator(seed, epoch))
    for step in range(start_step, plan.steps):
        index = order[step * plan.batch_size:(step + 1) * plan.batch_size]
        images, labels = data.images[index], data.labels[index]
        if do_augment:
            images = augment(images, task, _generator(seed, epoch, step, 1))
        part = plan.local_slice(len(index))
        if with_index:
            yield step, images[part], labels[part], index[part]
        else:
            yield step, images[part], labels[part]


def eval_batches(data: Dataset, batch_size: int, rank: int = 0, world_size: int = 1
                 ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Sequential batches; with several ranks each takes an interleaved share of them."""
    for i, start in enumerate(range(0, len(data), batch_size)):
        if i % world_size == rank:
            yield data.images[start:start + batch_size], data.labels[start:start + batch_size]
