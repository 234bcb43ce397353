"""The --full time estimate: a probe of real steps, scaled by the images each stage trains on."""

from __future__ import annotations

from gtn_deploy.spaces.mbconv import get_space
from gtn_deploy.pipeline.config import load_config
from gtn_deploy.pipeline.estimate import describe, probe


def test_estimate_scales_with_the_work_and_reads_as_one_line():
    cfg = load_config(None, {"devices": "local", "task": "digits", "batch_size": 16,
                             "teacher_epochs": 2, "distill_epochs": 3})
    space = get_space("digits")
    archs = {"small": space.min_arch(), "large": space.max_arch()}
    one = probe(cfg, archs, train_images=1000, student_images=500)
    assert one["teacher_s"] > 0 and all(s > 0 for s in one["students_s"].values())
    assert one["total_s"] == one["teacher_s"] + sum(one["students_s"].values())
    text = describe(one)
    assert text.startswith("estimated training time here: teacher") and "\n" not in text
