"""plan.json's one loader: typed, its schema version checked, every bad field named."""

from __future__ import annotations

import json

import pytest

from gtn_deploy.spaces.mbconv import get_space
from gtn_deploy.errors import CheckpointError
from gtn_deploy.plan_file import PLAN_SCHEMA_VERSION, load_plan
from gtn_deploy.profiles import load_profile
from gtn_deploy.search.planner import PlanRequest, plan_device, plan_document


@pytest.fixture(scope="module")
def planned():
    space = get_space("digits")
    entry = plan_device(PlanRequest.for_device(load_profile("raspberry-pi-5"), space))[1]
    return plan_document(space, [entry])


def _write(tmp_path, doc) -> str:
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(doc))
    return str(path)


def test_a_plan_round_trips_into_types(tmp_path, planned):
    plan = load_plan(_write(tmp_path, planned))
    entry = planned["devices"][0]
    device = plan.devices[0]
    assert (plan.task, plan.space, device.device) == ("digits", "digits", "raspberry-pi-5")
    assert device.budget_ms == entry["budget"]["latency_ms"]
    assert device.best.arch.to_dict() == entry["candidates"][0]["arch"]
    assert device.best.params == entry["candidates"][0]["params"]
    assert len(plan.students()) == len(entry["candidates"])


def test_a_hand_written_plan_of_archs_only_loads(tmp_path, planned):
    arch = planned["devices"][0]["candidates"][0]["arch"]
    doc = {"schema_version": 1, "kind": "gtn_deploy.plan", "task": "digits",
           "devices": [{"candidates": [{"arch": arch}]}]}
    device = load_plan(_write(tmp_path, doc)).devices[0]
    assert device.budget_ms is None and device.best.latency_ms is None


@pytest.mark.parametrize("version, needle", [
    (PLAN_SCHEMA_VERSION + 1, "newer than this gtn_deploy reads"),
    (0, "re-run 'gtnd plan'"), ("1", "re-run 'gtnd plan'")])
def test_other_schema_versions_say_what_to_do(tmp_path, planned, version, needle):
    with pytest.raises(CheckpointError, match=needle):
        load_plan(_write(tmp_path, {**planned, "schema_version": version}))


@pytest.mark.parametrize("change, needle", [
    (lambda d: d["devices"][0]["budget"].update(latency_ms="fast"),
     r"devices\[0\]\.budget\.latency_ms must be a number"),
    (lambda d: d["devices"][0]["budget"].update(latency_ms=-1), "must be > 0"),
    (lambda d: d["devices"][0]["candidates"][1].update(params=None) or
     d["devices"][0]["candidates"][1].update(mflops=[1]), r"candidates\[1\]\.mflops"),
    (lambda d: d["devices"][0]["candidates"][0]["arch"].update(depths=[9, 9, 9]),
     r"candidates\[0\]\.arch"),
    (lambda d: d.update(devices=[]), "non-empty list"),
    (lambda d: d.update(kind="gtn_deploy.bundle"), "not a gtn_deploy plan"),
])
def test_a_bad_field_is_named(tmp_path, planned, change, needle):
    doc = json.loads(json.dumps(planned))
    change(doc)
    with pytest.raises(CheckpointError, match=needle):
        load_plan(_write(tmp_path, doc))


@pytest.mark.parametrize("version, needle", [(2, "newer than this gtn_deploy reads"),
                                             (0, "re-export the bundle")])
def test_a_manifest_of_another_schema_says_what_to_do(version, needle):
    """The bundle manifest's one loader words an older and a newer file apart, as plan's."""
    import copy

    from gtn_deploy.errors import BundleError
    from cli_helpers import fixture_bundle
    from gtn_deploy.manifest import load_manifest, validate_manifest

    fixture = fixture_bundle()
    doc = copy.deepcopy(load_manifest(fixture).doc)
    doc["schema_version"] = version
    with pytest.raises(BundleError, match=needle):
        validate_manifest(doc)
