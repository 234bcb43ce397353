"""The benchmarks' run cache is keyed by every setting that changes a result."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import settings_key  # noqa: E402
from gtn_deploy.train.config import TrainConfig  # noqa: E402
from gtn_deploy.train.distill import KDConfig  # noqa: E402


def _changed(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str):
        return value + "x"
    if value is None:
        return 7
    if isinstance(value, tuple):
        return value + ({"depths": [1]},)
    if isinstance(value, dict):
        return {**value, "k": 1}
    raise TypeError(type(value))


@pytest.mark.parametrize("config", [TrainConfig(), KDConfig()])
def test_every_field_changes_the_key(config):
    base = settings_key(config.to_dict())
    for field in dataclasses.fields(config):
        other = dataclasses.replace(config, **{field.name: _changed(getattr(config, field.name))})
        assert settings_key(other.to_dict()) != base, field.name
    assert settings_key(dataclasses.replace(config).to_dict()) == base
