"""Datasets on real files: Fashion-MNIST IDX, digits, CIFAR pickles (restricted), ImageFolder."""

from __future__ import annotations

import dataclasses
import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from gtn_deploy.arch import TASKS
from gtn_deploy.data import (BatchPlan, augment, load_task_data, normalize, random_crop,
                             stratified_split, stratified_subset, train_batches)
from gtn_deploy.data import sources
from gtn_deploy.errors import DataError, UsageError

FMNIST = Path("/usr/share/datasets/fashion-mnist")
needs_fmnist = pytest.mark.skipif(not (FMNIST / "train-labels-idx1-ubyte.gz").exists(),
                                  reason="apt-get install dataset-fashion-mnist")


@pytest.fixture(scope="module")
def digits():
    return load_task_data("digits")


@needs_fmnist
def test_fashion_mnist_idx_splits_and_limit():
    data = load_task_data("fashion-mnist", limit_train=500)
    assert data.train.images.dtype == torch.uint8 and data.train.images.shape[1:] == (1, 28, 28)
    assert len(data.val) == 6000 and len(data.test) == 10000
    assert torch.bincount(data.train.labels).tolist() == [50] * 10  # stratified
    assert torch.bincount(data.val.labels).tolist() == [600] * 10
    again = load_task_data("fashion-mnist", limit_train=500)
    assert torch.equal(again.train.labels, data.train.labels)
    assert torch.equal(again.val.images, data.val.images)
    # the real test set: its first label is 9 (ankle boot) in every copy of Fashion-MNIST
    assert int(data.test.labels[0]) == 9


def test_missing_fashion_mnist_says_how_to_get_it(tmp_path):
    with pytest.raises(DataError) as err:
        load_task_data("fashion-mnist", tmp_path)
    msg = str(err.value)
    assert "apt-get install dataset-fashion-mnist" in msg and str(tmp_path) in msg
    assert "\n" not in msg


def test_bad_idx_magic(tmp_path):
    path = tmp_path / "x-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(b"\x00\x00\x09\x03" + bytes(12)))
    with pytest.raises(DataError, match="magic"):
        sources.read_idx(path)


def test_digits_upsampled(digits):
    assert digits.train.images.shape[1:] == (1, 28, 28)
    assert len(digits.train) + len(digits.val) + len(digits.test) == 1797
    assert int(digits.train.images.max()) == 255
    assert digits.summary()["task"] == "digits"


def test_unknown_task_lists_choices():
    with pytest.raises(UsageError, match="valid tasks: .*fashion-mnist"):
        load_task_data("mnist-9000")


def test_split_is_seeded_and_disjoint():
    labels = torch.arange(100) % 4
    rest, picked = stratified_split(labels, 0.2, seed=1)
    assert len(picked) == 20 and torch.bincount(labels[picked]).tolist() == [5] * 4
    assert not set(rest.tolist()) & set(picked.tolist())
    assert torch.equal(stratified_split(labels, 0.2, seed=1)[1], picked)
    assert not torch.equal(stratified_split(labels, 0.2, seed=2)[1], picked)
    sub = stratified_subset(labels, 10, seed=0)
    assert len(set(sub.tolist())) == 10 and sorted(torch.bincount(labels[sub]).tolist()) \
        == [2, 2, 3, 3]


def _cifar10_dir(root: Path, n: int = 4) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 b"labels": [int(v) for v in rng.integers(0, 10, n)]}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    return folder


def test_cifar_pickles_through_restricted_unpickler(tmp_path):
    folder = _cifar10_dir(tmp_path)
    raw = sources.load_cifar(tmp_path, 10)
    assert raw["train"].images.shape == (20, 3, 32, 32) and raw["test"].labels.shape == (4,)
    first = pickle.loads((folder / "data_batch_1").read_bytes())
    assert np.array_equal(raw["train"].images[0].reshape(-1), first[b"data"][0])


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/gtn_deploy_pwned_test",))


def test_hostile_pickle_is_refused(tmp_path):
    folder = _cifar10_dir(tmp_path)
    (folder / "data_batch_3").write_bytes(pickle.dumps({b"data": _Evil()}))
    with pytest.raises(DataError, match="not allowed"):
        sources.load_cifar(tmp_path, 10)
    assert not Path("/tmp/gtn_deploy_pwned_test").exists()


def test_image_folder(tmp_path):
    from PIL import Image

    for split, count in (("train", 3), ("val", 2)):
        for cls, colour in (("cat", 30), ("dog", 200)):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(count):
                Image.new("RGB", (40, 30), (colour, i, 0)).save(tmp_path / split / cls / f"{i}.png")
    raw = sources.load_image_folder(tmp_path, 24, 3)
    assert raw["train"].images.shape == (6, 3, 24, 24) and raw["train"].classes == ("cat", "dog")
    assert raw["train"].labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert raw["test"].images[3, 0, 0, 0] == 200
    with pytest.raises(DataError, match="train"):
        sources.load_image_folder(tmp_path / "nope", 24, 3)


def test_random_crop_is_a_shifted_window():
    images = torch.arange(2 * 1 * 6 * 6, dtype=torch.uint8).reshape(2, 1, 6, 6)
    gen = torch.Generator().manual_seed(3)
    out = random_crop(images, 2, gen)
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    for i in range(2):
        windows = [padded[i, :, y:y + 6, x:x + 6] for y in range(5) for x in range(5)]
        assert any(torch.equal(out[i], w) for w in windows)
    assert torch.equal(random_crop(images, 0, gen), images)


def test_flip_only_where_the_task_allows():
    images = torch.randint(0, 255, (64, 1, 8, 8), dtype=torch.uint8)
    no_flip = dataclasses.replace(TASKS["digits"], hflip=False)
    flip = dataclasses.replace(no_flip, hflip=True)
    a = augment(images, no_flip, torch.Generator().manual_seed(0), pad=0)
    b = augment(images, flip, torch.Generator().manual_seed(0), pad=0)
    assert torch.equal(a, images)
    flipped = [torch.equal(b[i], images[i].flip(2)) for i in range(64)]
    assert 10 < sum(flipped) < 54


def test_batches_reproducible_and_sharded(digits):
    plan = BatchPlan(len(digits.train), 32)
    first = [(s, x, y) for s, x, y in train_batches(digits.train, digits.task, plan, 5, 2)]
    resumed = list(train_batches(digits.train, digits.task, plan, 5, 2, start_step=3))
    assert len(first) == plan.steps and resumed[0][0] == 3
    assert torch.equal(resumed[0][1], first[3][1]) and torch.equal(resumed[0][2], first[3][2])
    other_epoch = next(train_batches(digits.train, digits.task, plan, 5, 3))
    assert not torch.equal(other_epoch[2], first[0][2])
    halves = [next(train_batches(digits.train, digits.task,
                                 BatchPlan(len(digits.train), 32, rank=r, world_size=2), 5, 2))
              for r in (0, 1)]
    assert torch.equal(torch.cat([halves[0][1], halves[1][1]]), first[0][1])


def test_normalize_uses_task_stats(digits):
    x = normalize(digits.train.images, digits.task)
    assert x.dtype == torch.float32
    raw = digits.train.images.float() / 255
    assert torch.allclose(x, (raw - 0.3) / 0.38)
