"""Datasets in memory as uint8 tensors, deterministic splits, batch augmentation.

Formats: Fashion-MNIST IDX (the Debian package ``dataset-fashion-mnist``), CIFAR-10/100
python pickles (restricted unpickler), ImageFolder trees (Pillow), scikit-learn digits.
"""

from gtn_deploy.data.batches import (BatchPlan, augment, eval_batches, normalize, random_crop,
                                     random_hflip, train_batches)
from gtn_deploy.data.datasets import (DATASETS, Dataset, TaskData, load_space_data,
                                      load_task_data, stratified_split, stratified_subset)

__all__ = [
    "BatchPlan", "DATASETS", "Dataset", "TaskData", "augment", "eval_batches",
    "load_space_data", "load_task_data", "normalize", "random_crop", "random_hflip",
    "stratified_split", "stratified_subset", "train_batches",
]
