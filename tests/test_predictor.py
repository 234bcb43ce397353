"""The accuracy predictor: encoding, fit quality on real subnets, JSON round-trip, plan use."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from gtn_deploy.spaces.mbconv import ArchConfig, get_space
from gtn_deploy.cli.main import app
from gtn_deploy.errors import CheckpointError, UsageError
from gtn_deploy.search.predictor import (
    encode,
    encoding_size,
    fit_predictor,
    fit_with_holdout,
    load_predictor,
)

FMNIST = get_space("fashion-mnist")
# 100 subnets of a GTN-trained fashion-mnist supernet, each BN-recalibrated and evaluated
# on held-out validation images by `gtnd predictor fit` (see the file's "source").
REAL = Path(__file__).parent / "fixtures" / "subnet_accuracies_fashion_mnist.json"


def _real() -> tuple[list[ArchConfig], list[float]]:
    doc = json.loads(REAL.read_text())
    return [ArchConfig.from_dict(r["arch"]) for r in doc["subnets"]], \
        [r["top1"] for r in doc["subnets"]]


def test_encoding_is_one_hot_with_empty_slots():
    arch = FMNIST.min_arch()
    x = encode(FMNIST, arch, 1.0, 10)
    assert x.shape == (encoding_size(FMNIST),)
    per_slot = len(FMNIST.kernel_choices) + len(FMNIST.expand_choices)
    first_stage = x[: per_slot * FMNIST.max_depth]
    assert first_stage[:per_slot].sum() == 2 and first_stage[per_slot:].sum() == 0
    assert x[-2:].tolist() == [0.0, 1.0]  # log10 MFLOPs, log10 params


def test_holdout_of_one_reports_no_kendall_tau():
    archs, acc = _real()
    model = fit_with_holdout(FMNIST, archs[:4], acc[:4], holdout=1, seed=0)
    assert model.report["holdout_n"] == 1
    # tau of one pair-less subnet is undefined: null, and the report stays strict JSON
    assert model.report["holdout_kendall_tau"] is None
    json.dumps(model.report, allow_nan=False)


def test_fit_ranks_real_subnets_better_than_chance():
    archs, acc = _real()
    assert len(archs) >= 100 and np.std(acc) > 0.5
    # the subnets' top-1 carries ~2 points of sampling noise (500 images), as much as their
    # spread: hold out 30% on five splits; every split must rank better than chance
    taus = []
    for seed in range(5):
        model = fit_with_holdout(FMNIST, archs, acc, holdout=30, seed=seed)
        assert model.report["holdout_n"] == 30
        taus.append(model.report["holdout_kendall_tau"])
    assert min(taus) > 0.0 and float(np.mean(taus)) > 0.15, taus


def test_save_load_round_trip_and_space_check(tmp_path):
    archs, acc = _real()
    model = fit_predictor(FMNIST, archs, acc)
    path = model.save(tmp_path / "p.json")
    again = load_predictor(path, FMNIST)
    probe = [FMNIST.sample(random.Random(i)) for i in range(5)]
    assert np.array_equal(model.predict(FMNIST, probe), again.predict(FMNIST, probe))
    assert again.name == "accuracy-predictor" and again.alpha == model.alpha
    with pytest.raises(UsageError, match="fitted for space 'fashion-mnist'"):
        load_predictor(path, get_space("cifar100"))
    (tmp_path / "bad.json").write_text(json.dumps({"kind": "something-else"}))
    with pytest.raises(CheckpointError, match="not an accuracy predictor"):
        load_predictor(tmp_path / "bad.json", FMNIST)


def test_plan_maximises_predicted_accuracy(tmp_path):
    archs, acc = _real()
    path = fit_predictor(FMNIST, archs, acc).save(tmp_path / "p.json")
    result = CliRunner().invoke(app, ["plan", "--device", "raspberry-pi-4", "--task",
                                      "fashion-mnist", "--predictor", str(path), "--json",
                                      "--latency-ms", "5", "--top-k", "2"])
    assert result.exit_code == 0, result.output
    entry = json.loads(result.output[result.output.index("{"):])["devices"][0]
    assert entry["objective"] == "accuracy-predictor"
    best = entry["candidates"][0]
    predictor = load_predictor(path, FMNIST)
    arch = ArchConfig.from_dict(best["arch"])
    expected = predictor(arch, best["mflops"], best["params"])
    assert abs(best["objective"] - expected) < 1e-3
    bad = CliRunner().invoke(app, ["plan", "--device", "raspberry-pi-4", "--task", "cifar100",
                                   "--predictor", str(path)])
    assert bad.exit_code != 0 and "fitted for space 'fashion-mnist'" in bad.output


@pytest.mark.parametrize("family", ["mbconv", "resnet"])
def test_predictor_fit_cli_on_a_teacher_folder(tmp_path, family):
    """The whole command on a tiny digits supernet of each family (mechanics, not quality):
    the space, and the arch type, come from the supernet."""
    import torch

    from gtn_deploy.models import create_teacher, save_teacher
    from gtn_deploy.spaces import create_space
    from gtn_deploy.supernet import create_supernet, save_supernet

    torch.set_num_threads(1)
    space = create_space(family, "digits")
    torch.manual_seed(0)
    run = tmp_path / "teacher"
    save_teacher(run / "teacher", create_teacher("resnet20", space.task), "resnet20",
                 space.task, {"method": "gtn"})
    save_supernet(run / "supernet", create_supernet(space), {"method": "gtn"})
    out = tmp_path / "pred.json"
    result = CliRunner().invoke(app, [
        "predictor", "fit", "--teacher", str(run), "--samples", "6", "--holdout", "2",
        "--calib-images", "32", "--limit-val", "40", "--device", "cpu", "--quiet",
        "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["predictor_path"] == str(out)
    assert report["n"] == 6 and report["holdout_n"] == 2 and "holdout_kendall_tau" in report
    assert load_predictor(out, space).space == space.name
    doc = json.loads(out.with_name("pred.subnets.json").read_text())
    rows = doc["subnets"]
    assert rows[0]["summary"] == space.max_arch().summary() and len(rows) == 6
    assert doc["space"] == space.name and space.arch_from_dict(rows[0]["arch"])
    empty = tmp_path / "empty"
    empty.mkdir()
    bad = CliRunner().invoke(app, ["predictor", "fit", "--teacher", str(empty), "--out",
                                   str(out)])
    assert bad.exit_code != 0 and "holds no teacher" in bad.output
