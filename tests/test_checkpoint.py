"""Student / supernet / teacher checkpoints: round trips, and one clear CheckpointError for
every kind of corrupt or mismatched file."""

from __future__ import annotations

import dataclasses
import json
import random

import pytest
import torch

from gtn_deploy.arch import TASKS
from gtn_deploy.spaces.mbconv import SPACES
from gtn_deploy.errors import CheckpointError
from gtn_deploy.models import create_teacher, load_teacher, save_teacher
from gtn_deploy.supernet import (Supernet, build_student, load_student, load_supernet,
                                 save_student, save_supernet)




SPACE = SPACES["fashion-mnist"]


def _perturb_bn(model: torch.nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)


@pytest.fixture()
def student_dir(tmp_path):
    arch = SPACE.sample(random.Random(1))
    model = build_student(SPACE, arch).eval()
    _perturb_bn(model)
    save_student(tmp_path / "s", model, arch, "fashion-mnist",
                 {"metrics": {"top1": 0.91}, "teacher": "resnet8x4"})
    return tmp_path / "s", model, arch


def test_student_round_trip(student_dir):
    folder, model, arch = student_dir
    assert sorted(p.name for p in folder.iterdir()) == ["student.json", "weights.safetensors"]
    loaded, doc = load_student(folder)
    assert doc["kind"] == "gtn_deploy.student" and doc["schema_version"] == 1
    assert doc["arch"] == arch.to_dict() and doc["metrics"] == {"top1": 0.91}
    assert doc["meta"] == {"teacher": "resnet8x4"} and doc["num_classes"] == 10
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_student_with_other_class_count_round_trips(tmp_path):
    space = dataclasses.replace(SPACES["cifar10"],
                                task=dataclasses.replace(TASKS["cifar10"], num_classes=7))
    arch = space.min_arch()
    save_student(tmp_path, build_student(space, arch), arch, "cifar10")
    loaded, doc = load_student(tmp_path)
    assert doc["num_classes"] == 7 and loaded.head.classifier.out_features == 7


def test_supernet_round_trip(tmp_path):
    net = Supernet(SPACES["digits"], kernel_transform=True).eval()
    _perturb_bn(net)
    arch = net.sample(random.Random(2))
    net.set_active(arch)
    save_supernet(tmp_path, net, {"epochs": 3})
    loaded, doc = load_supernet(tmp_path)
    assert doc["kernel_transform"] is True and doc["meta"] == {"epochs": 3}
    assert loaded.active_arch == arch
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(loaded(x), net(x))


def test_teacher_round_trip(tmp_path):
    task = TASKS["digits"]
    teacher = create_teacher("resnet8x4", task).eval()
    _perturb_bn(teacher)
    save_teacher(tmp_path, teacher, "resnet8x4", task, {"metrics": {"top1": 0.98}})
    loaded, doc = load_teacher(tmp_path)
    assert doc["name"] == "resnet8x4" and doc["metrics"] == {"top1": 0.98}
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(loaded(x), teacher(x))


def _rewrite_json(folder, edit) -> None:
    path = folder / "student.json"
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))


def _flip_byte(folder) -> None:
    path = folder / "weights.safetensors"
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))


def _change_arch(doc) -> None:
    first = doc["arch"]["expand_ratios"][0]
    doc["arch"]["expand_ratios"][0] = 6 if first != 6 else 3


def _truncate_and_rehash(folder) -> None:
    from gtn_deploy.io_utils import sha256_file

    path = folder / "weights.safetensors"
    path.write_bytes(path.read_bytes()[:100])
    _rewrite_json(folder, lambda d: d["weights"].update(sha256=sha256_file(path)))


CORRUPTIONS = {
    "flipped byte": (_flip_byte, r"weights\.safetensors: sha256 mismatch"),
    "truncated": (_truncate_and_rehash, r"weights\.safetensors: not a readable safetensors"),
    "other arch": (lambda f: _rewrite_json(f, _change_arch),
                   r"weights\.safetensors does not fit the arch in student\.json .*"
                   r"shape mismatch for stages\.0\.blocks\.0\.expand\.conv\.weight"),
    "fewer blocks": (lambda f: _rewrite_json(f, lambda d: d["arch"].update(
        depths=[1, 1, 1, 1], kernel_sizes=[3] * 4, expand_ratios=[3] * 4)),
        r"does not fit .*unexpected tensors stages\."),
    "arch outside space": (lambda f: _rewrite_json(f, lambda d: d["arch"].update(
        resolution=99)), r"student\.json: .*resolution 99 not in"),
    "wrong kind": (lambda f: _rewrite_json(f, lambda d: d.update(kind="gtn_deploy.teacher")),
                   r"student\.json: kind is 'gtn_deploy\.teacher'"),
    "future schema": (lambda f: _rewrite_json(f, lambda d: d.update(schema_version=99)),
                      r"schema_version 99 is not supported"),
    "unknown space": (lambda f: _rewrite_json(f, lambda d: d.update(space="mars")),
                      r"student\.json: unknown space 'mars'"),
    "bad json": (lambda f: (f / "student.json").write_text("{oops"), r"student\.json: not valid"),
    "no json": (lambda f: (f / "student.json").unlink(), r"student\.json: not found"),
    "no weights": (lambda f: (f / "weights.safetensors").unlink(),
                   r"weights\.safetensors: weights file not found"),
}


@pytest.mark.parametrize("kind", list(CORRUPTIONS))
def test_corrupt_student_gives_one_clear_error(student_dir, kind):
    folder, _, _ = student_dir
    corrupt, pattern = CORRUPTIONS[kind]
    corrupt(folder)
    with pytest.raises(CheckpointError, match=pattern) as info:
        load_student(folder)
    assert "\n" not in str(info.value) and str(folder) in str(info.value)


def test_teacher_with_other_task_gives_shape_error(tmp_path):
    save_teacher(tmp_path, create_teacher("resnet20", TASKS["cifar10"]), "resnet20",
                 TASKS["cifar10"])

    doc = json.loads((tmp_path / "teacher.json").read_text())
    doc["task"]["num_classes"] = 100
    (tmp_path / "teacher.json").write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match=r"shape mismatch for head\.fc\.weight"):
        load_teacher(tmp_path)
    doc["name"] = "resnet1000"
    (tmp_path / "teacher.json").write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match=r"unknown teacher 'resnet1000'; valid"):
        load_teacher(tmp_path)
