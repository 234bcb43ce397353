"""Whole datasets as uint8 tensors in memory, with deterministic splits and subsets.

``load_task_data(task)`` gives train / val / test splits for a task of ``gtn_deploy.arch``:
val is a stratified, seeded slice of the official training set (``split_seed``, independent
of the training seed, so every run of a comparison sees the same val images); test is the
official test set (digits has none: a fixed 20% slice of the 1797 images).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gtn_deploy.arch import TASKS, TaskSpec
from gtn_deploy.spaces.base import Space
from gtn_deploy.data import sources
from gtn_deploy.errors import DataError, UsageError

DATASETS = ("fashion-mnist", "digits", "cifar10", "cifar100", "imagefolder")


@dataclass(frozen=True)
class Dataset:
    """Images uint8 (N, C, H, W) and labels int64 (N,), both CPU tensors."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, index: torch.Tensor) -> "Dataset":
        return Dataset(self.images[index].contiguous(), self.labels[index].contiguous())


@dataclass(frozen=True)
class TaskData:
    task: TaskSpec
    train: Dataset
    val: Dataset
    test: Dataset
    classes: tuple[str, ...] = ()

    def summary(self) -> dict:
        return {"task": self.task.name, "train": len(self.train), "val": len(self.val),
                "test": len(self.test), "image_shape": list(self.train.images.shape[1:])}


def stratified_split(labels: torch.Tensor, fraction: float, seed: int
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (rest, picked): ``fraction`` of each class picked, seeded and deterministic."""
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(labels), generator=gen)
    picked = []
    for cls in torch.unique(labels).tolist():
        members = order[labels[order] == cls]
        picked.append(members[: int(round(len(members) * fraction))])
    mask = torch.zeros(len(labels), dtype=torch.bool)
    mask[torch.cat(picked)] = True
    return order[~mask[order]], order[mask[order]]


def stratified_subset(labels: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """``n`` indices with class proportions kept (largest remainders), seeded."""
    total = len(labels)
    if n >= total:
        return torch.arange(total)
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(total, generator=gen)
    classes, counts = torch.unique(labels, return_counts=True)
    share = counts.double() * n / total
    take = share.floor().long()
    remainder = n - int(take.sum())
    if remainder:
        take[torch.argsort(share - take, descending=True, stable=True)[:remainder]] += 1
    parts = [order[labels[order] == c][: int(k)] for c, k in zip(classes.tolist(), take)]
    return torch.cat(parts)[torch.randperm(n, generator=gen)]


def _to_dataset(raw: sources.RawSplit) -> Dataset:
    return Dataset(torch.from_numpy(np.ascontiguousarray(raw.images)),
                   torch.from_numpy(raw.labels.astype(np.int64)))


def _raw_splits(task: TaskSpec, data_dir: Path | None, image_size: int
                ) -> dict[str, sources.RawSplit]:
    name = task.dataset
    if name == "fashion-mnist":
        return sources.load_fashion_mnist(data_dir)
    if name in ("cifar10", "cifar100"):
        return sources.load_cifar(data_dir, 10 if name == "cifar10" else 100)
    if name == "digits":
        return sources.load_digits(image_size)
    if name == "imagefolder":
        return sources.load_image_folder(data_dir, image_size, task.in_channels)
    raise UsageError(f"unknown dataset '{name}'; valid datasets: {', '.join(DATASETS)}")


def load_task_data(task: TaskSpec | str, data_dir: str | Path | None = None, *,
                   image_size: int = 28, val_fraction: float = 0.1, split_seed: int = 0,
                   limit_train: int | None = None, limit_val: int | None = None) -> TaskData:
    """Load a task's data into memory as train / val / test ``Dataset``s."""
    if isinstance(task, str):
        if task not in TASKS:
            raise UsageError(f"unknown task '{task}'; valid tasks: {', '.join(TASKS)}")
        task = TASKS[task]
    if not 0.0 < val_fraction < 1.0:
        raise UsageError(f"val_fraction must be in (0, 1), got {val_fraction}")
    raw = _raw_splits(task, Path(data_dir) if data_dir else None, image_size)
    if "all" in raw:  # no official test split: carve a fixed one first
        full = _to_dataset(raw["all"])
        rest, test_idx = stratified_split(full.labels, 0.2, seed=12345)
        train_full, test = full.subset(rest), full.subset(test_idx)
    else:
        train_full = _to_dataset(raw["train"])
        test = _to_dataset(raw["test"]) if "test" in raw else None
    train_idx, val_idx = stratified_split(train_full.labels, val_fraction, split_seed)
    train, val = train_full.subset(train_idx), train_full.subset(val_idx)
    _check_splits(train_full, train, val, val_fraction)
    test = test if test is not None else val
    _check(task, train)
    if limit_train is not None:
        train = train.subset(stratified_subset(train.labels, _positive(limit_train), split_seed))
    if limit_val is not None:
        val = val.subset(stratified_subset(val.labels, _positive(limit_val), split_seed + 1))
    classes = raw.get("train", raw.get("all")).classes
    return TaskData(task, train, val, test, classes)


def _check_splits(full: Dataset, train: Dataset, val: Dataset, val_fraction: float) -> None:
    """Neither split may be empty: a 0-image val split reads as 'val top-1 0.00%'."""
    if len(train) and len(val):
        return
    counts = np.bincount(full.labels.numpy())
    raise DataError(f"the validation split is empty or takes every image: it is "
                    f"{val_fraction:.0%} of each class of the training images, and the "
                    f"{len(counts)} classes have {int(counts.min())}-{int(counts.max())} "
                    f"images; give at least {int(np.ceil(1 / val_fraction))} images per class")


def _positive(n: int) -> int:
    if n < 1:
        raise UsageError(f"a dataset limit must be a positive number of images, got {n}")
    return int(n)


def _check(task: TaskSpec, train: Dataset) -> None:
    channels = train.images.shape[1]
    if channels != task.in_channels:
        raise DataError(f"task '{task.name}' expects {task.in_channels}-channel images, "
                        f"the data has {channels}")
    top = int(train.labels.max())
    if top >= task.num_classes:
        raise DataError(f"task '{task.name}' has {task.num_classes} classes but the data has "
                        f"label {top}")


def load_space_data(space: Space, data_dir: str | Path | None = None, **kwargs) -> TaskData:
    """Like ``load_task_data`` with the image size taken from the space's largest resolution."""
    kwargs.setdefault("image_size", max(space.resolutions))
    return load_task_data(space.task, data_dir, **kwargs)
