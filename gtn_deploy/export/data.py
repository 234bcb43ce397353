"""Real images for calibration, parity and accuracy (numpy only, normalised like training)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gtn_deploy.errors import DataError

FASHION_MNIST_LABELS = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                        "Shirt", "Sneaker", "Bag", "Ankle boot")
CIFAR10_LABELS = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                  "ship", "truck")  # batches.meta's label_names, in label order
# Names for labels.txt where the dataset files carry none (ImageFolder's come from its folders)
CLASS_LABELS = {"fashion-mnist": FASHION_MNIST_LABELS, "cifar10": CIFAR10_LABELS,
                "digits": tuple(str(i) for i in range(10))}


@dataclass(frozen=True)
class ExportData:
    """Normalised float32 NCHW arrays: calibration (train split) and evaluation (test split)."""

    calib_images: np.ndarray
    eval_images: np.ndarray
    eval_labels: np.ndarray
    description: str
    classes: tuple[str, ...] = ()

    def parity_images(self, n: int) -> np.ndarray:
        return self.eval_images[:n]


def normalise(images_u8: np.ndarray, mean, std, scale: float = 255.0) -> np.ndarray:
    """uint8 (N, C, H, W) -> float32 (x / scale - mean) / std per channel."""
    x = images_u8.astype(np.float32) / scale
    m = np.asarray(mean, np.float32).reshape(1, -1, 1, 1)
    s = np.asarray(std, np.float32).reshape(1, -1, 1, 1)
    return np.ascontiguousarray((x - m) / s, dtype=np.float32)


def _splits(task, data_dir, image_size: int):
    """(train images, train labels, test images, test labels, class names) as numpy uint8/int64."""
    from gtn_deploy.data import load_task_data  # lazy: keeps torch out of a light module

    td = load_task_data(task, data_dir, image_size=image_size)
    return (td.train.images.numpy(), td.train.labels.numpy(), td.test.images.numpy(),
            td.test.labels.numpy(), tuple(td.classes))


def load_export_data(task, data_dir: str | Path | None = None, calib_images: int = 300,
                     eval_images: int | None = None, seed: int = 0,
                     image_size: int = 28) -> ExportData:
    """Calibration images drawn at random from the train split; eval from the test split.

    ``task`` is the space's ``TaskSpec``; the data come through ``gtn_deploy.data`` (every
    dataset it reads). ``eval_images=None`` uses the whole test split (10,000 for
    Fashion-MNIST); a smaller number takes a fixed random subset, repeatable for a seed.
    """
    train_x, _, test_x, test_y, classes = _splits(task, data_dir, image_size)
    rng = np.random.default_rng(seed)
    if calib_images > len(train_x):
        raise DataError(f"asked for {calib_images} calibration images; train split has "
                        f"{len(train_x)}")
    calib_idx = rng.choice(len(train_x), calib_images, replace=False)
    if eval_images is None or eval_images >= len(test_x):
        eval_idx = np.arange(len(test_x))
    else:
        eval_idx = np.sort(rng.choice(len(test_x), eval_images, replace=False))
    desc = (f"{task.name}: {calib_images} calibration images from train (seed {seed}); "
            f"{len(eval_idx)} of {len(test_x)} test images for parity and accuracy")
    return ExportData(normalise(train_x[calib_idx], task.mean, task.std),
                      normalise(test_x[eval_idx], task.mean, task.std),
                      test_y[eval_idx].astype(np.int64), desc, classes)


def top1(logits: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy in percent."""
    return float(np.mean(logits.argmax(1) == labels) * 100.0)
