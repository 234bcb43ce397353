"""benchmarks/kd_power.py's arithmetic and bookkeeping: paired gains with their intervals,
the code hash that keys recorded units, and the report's fields, from synthetic units."""

from __future__ import annotations

import json
import math
import statistics

import numpy as np
import pytest
from scipy import stats

from benchmarks import kd_power
from benchmarks.power_stats import paired_summary


def test_paired_summary_is_the_mean_of_per_seed_pool_gains_with_a_t_interval():
    a = {(s, st): 80.0 + s + i for s in range(4) for i, st in enumerate("xyz")}
    gains = [0.5, 1.5, -0.5, 1.0]
    b = {(s, st): v - gains[s] for (s, st), v in a.items()}
    out = paired_summary(a, b, resamples=2000)
    assert out["mean"] == pytest.approx(statistics.mean(gains))
    half = stats.t.ppf(0.975, 3) * statistics.stdev(gains) / math.sqrt(4)
    assert out["ci95"] == pytest.approx([0.625 - half, 0.625 + half])
    assert out["half_width"] == pytest.approx(half)
    assert out["pairs"] == 12 and out["seeds"] == 4
    assert out["win_rate"] == pytest.approx(9 / 12)  # seed 2's three pairs lost
    lo, hi = out["ci95_bootstrap"]
    assert -0.5 <= lo < 0.625 < hi <= 1.5


def test_ties_count_half_and_an_incomplete_seed_is_left_out_of_the_seed_mean():
    a = {(0, "x"): 1.0, (0, "y"): 2.0, (1, "x"): 5.0}
    b = {(0, "x"): 1.0, (0, "y"): 1.0, (1, "x"): 4.0, (1, "y"): 0.0}
    out = paired_summary(a, b)
    assert out["win_rate"] == pytest.approx((0.5 + 1 + 1) / 3)
    assert out["per_seed"] == {"0": 0.5} and out["ci95"] is None


def test_the_code_hash_ignores_docstrings_and_comments_but_not_code(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "a.py").write_text('"""Doc."""\n\ndef f(x):\n    """Doc."""\n    return x + 1\n')
    before = kd_power.code_hash(tmp_path, ("pkg",), ())
    (pkg / "a.py").write_text('"""Other doc."""\n\ndef f(x):  # why\n    return x + 1\n')
    assert kd_power.code_hash(tmp_path, ("pkg",), ()) == before
    (pkg / "a.py").write_text('def f(x):\n    return x + 2\n')
    changed = kd_power.code_hash(tmp_path, ("pkg",), ())
    assert changed != before
    (pkg / "skipped.py").write_text("X = 1\n")
    assert kd_power.code_hash(tmp_path, ("pkg",), ("pkg/skipped.py",)) == changed
    assert kd_power.code_hash(tmp_path, ("pkg",), ()) != changed


def _synthetic_units(units, pool, code: str) -> None:
    """Two seeds of teachers (vanilla and gtn, with test logits) and every main method's
    students, with gtn 0.4 and vanilla 1.5 points above ce."""
    rng = np.random.default_rng(0)
    chosen = "gtn-2p-kl1"
    (units.parent / "selection.json").write_text(json.dumps({"chosen": chosen}))
    base = rng.normal(size=(50, 10))
    for seed in range(2):
        for name in ("vanilla", "gtn" if seed else chosen):
            logits = base + 0.1 * rng.normal(size=base.shape)
            unit = f"s{seed}-teacher-{name}-k"
            np.savez_compressed(units / f"{unit}.logits.npz", logits=logits.astype(np.float16))
            (units / f"{unit}.json").write_text(json.dumps({
                "unit": unit, "kind": "teacher", "seed": seed, "name": name, "net": "resnet20",
                "params": 272186, "metrics": {"val_top1": 91.0, "test_top1": 90.5, "test_logit_std": 4.0,
                            "test_entropy": 0.2, "test_p_true": 0.9},
                "train_time_s": 1.0, "code": code}))
        for i, s in enumerate(pool):
            for method, gain in (("ce", 0.0), ("vanilla", 1.5), ("dkd", 1.4),
                                 ("gtn" if seed else chosen, 1.9)):
                top1 = 85.0 + i * 0.1 + seed * 0.2 + gain
                (units / f"s{seed}-{s['id']}-{method}.json").write_text(json.dumps({
                    "kind": "student", "seed": seed, "student": s["id"], "method": method,
                    "val_top1": top1, "test_top1": top1, "code": code}))


def test_the_report_has_every_field_the_results_promise(tmp_path, monkeypatch):
    from gtn_deploy.spaces.mbconv import get_space

    monkeypatch.setattr(kd_power, "RESULTS", tmp_path)
    monkeypatch.setattr("benchmarks.common.RESULTS", tmp_path)
    space = get_space("fashion-mnist")
    pool = [{"id": f"random{i}", "kind": "random", "arch": space.min_arch(), "params": 38730}
            for i in range(3)]
    units = tmp_path / "kd_power" / "units"
    units.mkdir(parents=True)
    _synthetic_units(units, pool, "c0de")
    args = kd_power.parse_args(["--seeds", "2", "--units-dir", str(units)])
    args.code = "c0de"
    doc = kd_power.report(args, pool, units, {"train": 54000})
    saved = json.loads((tmp_path / "kd_power.json").read_text())
    for key in ("seeds", "teacher_params", "students", "comparisons", "teacher_divergence",
                "selection", "capacity_arm"):
        assert key in saved
    assert saved["seeds"] == [0, 1] and saved["teacher_params"] == 272186
    assert saved["students"][0] == {"name": "random0", "kind": "random", "params": 38730,
                                    "arch": space.min_arch().summary()}
    c = doc["comparisons"]
    assert c["gtn_vs_vanilla"]["mean"] == pytest.approx(0.4)
    assert c["vanilla_vs_ce"]["mean"] == pytest.approx(1.5)
    assert c["gtn_vs_ce"]["win_rate"] == 1.0 and c["gtn_vs_ce"]["pairs"] == 6
    for key in ("mean", "ci95", "win_rate", "pairs"):
        assert key in c["gtn_vs_vanilla"]
    div = doc["teacher_divergence"]
    assert 0 < div["gtn_vs_vanilla_kl"]["mean"] and 0 < div["vanilla_vs_vanilla_kl"]["mean"]
    chosen = next(e for e in doc["selection"] if e["variant"] == "gtn-2p-kl1")
    assert chosen["val_pool_average"] == pytest.approx(85.1 + 1.9)
    assert "| gtn vs vanilla | +0.40 |" in (tmp_path / "kd_power.md").read_text()
    # units of other training code are not results
    args.code = "other"
    assert kd_power.report(args, pool, units, {})["comparisons"]["gtn_vs_vanilla"] is None
