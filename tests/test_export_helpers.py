"""Shared by the export/bundle tests: one briefly trained student per pytest session.

An INT8 accuracy drop only means something for a student with real accuracy, so the student
is trained with cross-entropy on 2,048 Fashion-MNIST images (about 3 s; ~50% top-1) once per
session and saved with ``save_student`` under the session's temporary folder.
"""

from __future__ import annotations

from pathlib import Path

import torch

from gtn_deploy.spaces.mbconv import get_space
from gtn_deploy.data.sources import load_fashion_mnist
from gtn_deploy.export.data import normalise
from gtn_deploy.export.onnx import torch_threads
from gtn_deploy.supernet import build_student, save_student

SPACE = get_space("fashion-mnist")


def train_briefly(model, images, labels, batch_size: int = 32, lr: float = 2e-3, seed: int = 0):
    """One pass of Adam + cross-entropy; returns the model in eval mode.

    One intra-op thread: on a shared 2-core machine torch's second thread mostly waits, and
    the same loop ran 10-40x slower with two.
    """
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr)
    x, y = torch.from_numpy(images), torch.from_numpy(labels)
    model.train()
    with torch_threads(1):
        for i in range(0, len(x), batch_size):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x[i:i + batch_size]), y[i:i + batch_size])
            loss.backward()
            opt.step()
    return model.eval()


def trained_student_dir(tmp_path_factory, n_images: int = 2048) -> Path:
    """The session's trained min-arch student folder (weights.safetensors + student.json)."""
    folder = tmp_path_factory.getbasetemp() / "trained-student"
    if (folder / "student.json").is_file():
        return folder
    train = load_fashion_mnist(None)["train"]
    images = normalise(train.images[:n_images], SPACE.task.mean, SPACE.task.std)
    torch.manual_seed(0)
    arch = SPACE.min_arch()
    model = train_briefly(build_student(SPACE, arch), images, train.labels[:n_images])
    save_student(folder, model, arch, SPACE, {"teacher_sha256": "0" * 64,
                                              "metrics": {"note": "test student"}})
    return folder
