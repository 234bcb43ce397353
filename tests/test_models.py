"""Teachers: created by name for every task, per-stage features consistent with their
declared channels and strides."""

from __future__ import annotations

import pytest
import torch

from gtn_deploy.arch import TASKS
from gtn_deploy.errors import UsageError
from gtn_deploy.models import (LARGE_INPUT_TEACHERS, SMALL_INPUT_TEACHERS, TEACHERS,
                               create_teacher)




CASES = [(name, task, 28 if TASKS[task].in_channels == 1 else 32)
         for name, task in zip(SMALL_INPUT_TEACHERS,
                               ("fashion-mnist", "cifar10", "cifar100", "digits", "cifar10"))]
CASES += [(name, "imagenet", 64) for name in LARGE_INPUT_TEACHERS]  # 64 px keeps CPU time low


@pytest.mark.parametrize("name,task,size", CASES)
def test_forward_features_match_declared_stages(name, task, size):
    spec = TASKS[task]
    teacher = create_teacher(name, spec).eval()
    x = torch.randn(2, spec.in_channels, size, size)
    with torch.no_grad():
        feats, logits = teacher.forward_features(x)
        assert torch.allclose(teacher(x), logits)
        stem = teacher.stem_features(x)
    assert logits.shape == (2, spec.num_classes)
    assert stem.shape[1] == teacher.stem_channels
    assert stem.shape[-1] == -(-size // teacher.stem_stride)
    assert len(feats) == len(teacher.stage_channels) == len(teacher.stage_strides)
    for f, channels, stride in zip(feats, teacher.stage_channels, teacher.stage_strides):
        assert f.shape[:2] == (2, channels)
        assert f.shape[-1] == -(-size // stride)


def test_registry_names_and_unknown_name():
    assert set(SMALL_INPUT_TEACHERS) | set(LARGE_INPUT_TEACHERS) == set(TEACHERS)
    assert {"resnet8x4", "resnet32x4", "resnet20", "wrn_16_2", "wrn_40_2", "resnet18",
            "resnet34"} <= set(TEACHERS)
    with pytest.raises(UsageError, match="unknown teacher 'vgg'; valid teachers: resnet20"):
        create_teacher("vgg", TASKS["cifar10"])


def test_teachers_have_the_published_sizes():
    """Parameter counts of the CRD / torchvision references (100 or 1000 classes)."""
    expected = {"resnet20": 0.28e6, "resnet8x4": 1.23e6, "resnet32x4": 7.43e6,
                "wrn_16_2": 0.70e6, "wrn_40_2": 2.26e6, "resnet18": 11.69e6}

    for name, params in expected.items():
        task = TASKS["imagenet" if name == "resnet18" else "cifar100"]
        n = sum(p.numel() for p in create_teacher(name, task).parameters())
        assert abs(n - params) / params < 0.01, (name, n)
