"""``gtnd distill``: the KD loss, a real tiny distillation, resume after SIGKILL, bad input."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from gtn_deploy.spaces.mbconv import get_space
from gtn_deploy.cli.main import app
from gtn_deploy.train import losses
from gtn_deploy.train.losses import distillation_loss
from cli_helpers import assert_one_line_error

SPACE = get_space("digits")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # 2 shared cores: one thread avoids OpenMP contention
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory) -> Path:
    """A real vanilla resnet20 teacher on 320 digits images, plus an (untrained) supernet
    beside it so --init supernet has something to extract from."""
    from gtn_deploy.supernet import Supernet, save_supernet
    from gtn_deploy.train.config import TrainConfig
    from gtn_deploy.train.trainer import TeacherTrainer

    out = tmp_path_factory.mktemp("kd") / "teacher"
    cfg = TrainConfig(method="vanilla", task="digits", epochs=5, batch_size=32,
                      limit_train=320, limit_val=100, lr=0.05, augment=False, progress=False)
    summary = TeacherTrainer(cfg, out, device="cpu").run()
    assert summary["teacher_metrics"]["val_top1"] > 70.0, summary
    torch.manual_seed(0)
    save_supernet(out / "supernet", Supernet(SPACE), {"method": "test"})
    return out


def _plan(path: Path, task: str = "digits", space=SPACE) -> Path:
    archs = [space.min_arch(), space.max_arch(), space.min_arch()]
    doc = {"schema_version": 1, "kind": "gtn_deploy.plan", "task": task, "space": task,
           "devices": [{"device": "dev-a", "candidates": [{"arch": a.to_dict()}
                                                          for a in archs[:2]]},
                       {"device": "dev-b", "candidates": [{"arch": archs[2].to_dict()}]}]}
    path.write_text(json.dumps(doc))
    return path


def test_kd_loss_matches_hand_computation():
    s, t, y = [1.0, 0.0, -1.0], [0.0, 2.0, 0.0], 0
    T, alpha = 4.0, 0.9

    def softmax(z):
        e = [math.exp(v / T) for v in z]
        return [v / sum(e) for v in e]

    ps, pt = softmax(s), softmax(t)
    kl = sum(p * math.log(p / q) for p, q in zip(pt, ps))
    ce = -math.log(math.exp(s[y]) / sum(math.exp(v) for v in s))
    expected = (1 - alpha) * ce + alpha * T * T * kl
    got = distillation_loss(torch.tensor([s]), torch.tensor([t]), torch.tensor([y]), alpha, T)
    assert abs(float(got) - expected) < 1e-5
    # the teacher is frozen: no gradient reaches it
    teacher = torch.tensor([t], requires_grad=True)
    student = torch.tensor([s], requires_grad=True)
    distillation_loss(student, teacher, torch.tensor([y])).backward()
    assert teacher.grad is None and student.grad.abs().sum() > 0


def test_kd_is_tckd_plus_weighted_nckd():
    """The decomposition that defines DKD: per sample, classic KD (without T^2) equals
    TCKD + (1 - p_target(teacher)) * NCKD; DKD frees that weight to beta."""
    g = torch.Generator().manual_seed(0)
    z_s, z_t = torch.randn(16, 10, generator=g) * 3, torch.randn(16, 10, generator=g) * 3
    y = torch.randint(0, 10, (16,), generator=g)
    for tau in (1.0, 4.0):
        tckd, nckd = losses.dkd_terms(z_s, z_t, y, tau)
        p_target = torch.softmax(z_t / tau, dim=1).gather(1, y[:, None])[:, 0]
        kd = losses.per_sample_kl(z_t, z_s, tau)
        assert torch.allclose(kd, tckd + (1 - p_target) * nckd, atol=1e-5)
        assert (tckd >= -1e-6).all() and (nckd >= -1e-6).all()
    # identical logits: nothing to distil
    tckd, nckd = losses.dkd_terms(z_t, z_t, y, 4.0)
    assert float(tckd.abs().max()) < 1e-5 and float(nckd.abs().max()) < 1e-5


def test_kd_losses_by_name():
    z_s = torch.randn(8, 10, requires_grad=True)
    z_t, y = torch.randn(8, 10, requires_grad=True), torch.randint(0, 10, (8,))
    kd = losses.kd_loss_fn("kd", 0.9, 4.0)(z_s, z_t, y)
    assert torch.equal(kd, distillation_loss(z_s, z_t, y, 0.9, 4.0))
    dkd = losses.kd_loss_fn("dkd", 0.9, 4.0, dkd_beta=8.0)(z_s, z_t, y)
    tckd, nckd = losses.dkd_terms(z_s, z_t, y, 4.0)
    expected = 0.1 * losses.cross_entropy(z_s, y) + 0.9 * 16 * (tckd + 8 * nckd).mean()
    assert torch.allclose(dkd, expected)
    dkd.backward()
    assert z_t.grad is None and z_s.grad.abs().sum() > 0  # the teacher stays frozen
    with pytest.raises(ValueError, match="valid: kd, dkd"):
        losses.kd_loss_fn("fitnets", 0.9, 4.0)
    # the torch-free pipeline config names the same losses
    from typing import get_args

    from gtn_deploy.pipeline.config import PipelineConfig

    assert get_args(PipelineConfig.model_fields["kd_loss"].annotation) == tuple(losses.KD_LOSSES)


@pytest.mark.parametrize("kd_loss", ["kd", "dkd"])
def test_distill_end_to_end_beats_chance(tmp_path, teacher_dir, kd_loss):
    plan = _plan(tmp_path / "plan.json")
    out = tmp_path / "students"
    result = CliRunner().invoke(app, [
        "distill", "--plan", str(plan), "--teacher", str(teacher_dir), "--candidate", "0",
        "--kd-loss", kd_loss,
        "--epochs", "10", "--batch-size", "32", "--limit-train", "320", "--no-augment",
        "--limit-val", "100", "--calib-images", "200", "--no-progress", "--device", "cpu",
        "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    line = doc["students"][0]
    assert doc["out_dir"] == str(out) and line["out_dir"] == str(out / "c0")
    assert line["id"] == "c0" and line["method"] == kd_loss
    assert line["test_top1"] > 50.0, line  # chance is 10%
    from gtn_deploy.supernet import load_student

    _, doc = load_student(out / "c0")
    teacher_doc = json.loads((teacher_dir / "teacher" / "teacher.json").read_text())
    assert doc["meta"]["teacher"]["sha256"] == teacher_doc["weights"]["sha256"]
    assert doc["arch"] == SPACE.min_arch().to_dict() and doc["metrics"] == {
        k: line[k] for k in ("val_top1", "test_top1")}
    index = json.loads((out / "index.json").read_text())
    assert [s["id"] for s in index["students"]] == ["c0"]


def test_init_from_supernet_starts_from_its_weights(tmp_path, teacher_dir):
    from gtn_deploy.supernet import load_supernet
    from gtn_deploy.train.distill import KDConfig, StudentDistiller
    from gtn_deploy.train.kd_teacher import open_teacher

    cfg = KDConfig(task="digits", init="supernet", limit_train=64, limit_val=32,
                   batch_size=32, calib_images=64, progress=False)
    arch = SPACE.min_arch()
    run = StudentDistiller(cfg, arch, tmp_path / "s", open_teacher(teacher_dir))
    supernet, _ = load_supernet(teacher_dir / "supernet")
    ref = supernet.extract(arch).state_dict()
    got = run.student.state_dict()
    conv = "stages.0.blocks.0.depthwise.conv.weight"
    assert torch.equal(got[conv], ref[conv])
    # BN statistics were recalibrated before training (the saved ones are the defaults)
    bn = "stages.0.blocks.0.depthwise.bn.running_var"
    assert not torch.allclose(got[bn], ref[bn])


ARGS = ["distill", "--candidate", "0", "--epochs", "2", "--batch-size", "16",
        "--limit-train", "96", "--limit-val", "32", "--calib-images", "32",
        "--checkpoint-every", "2", "--no-progress", "--device", "cpu", "--seed", "3"]


def _cmd(plan: Path, teacher: Path, out: Path, *extra: str) -> list[str]:
    code = "from gtn_deploy.cli.main import main; main()"
    return [sys.executable, "-c", code, *ARGS, "--plan", str(plan), "--teacher", str(teacher),
            "--out", str(out), *extra]


def test_killed_distillation_resumes_to_identical_weights(tmp_path, teacher_dir):
    plan = _plan(tmp_path / "plan.json")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    reference = subprocess.Popen(_cmd(plan, teacher_dir, clean), env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    victim = subprocess.Popen(_cmd(plan, teacher_dir, killed), env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = killed / "c0" / "checkpoint" / "last.pt"
    deadline = time.monotonic() + 120
    while not ckpt.exists() and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert victim.poll() is None, "the run finished before it could be killed"
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert not (killed / "c0" / "summary.json").exists()
    _, err = reference.communicate(timeout=180)
    assert reference.returncode == 0, err.decode()[-2000:]
    resumed = subprocess.run(_cmd(plan, teacher_dir, killed, "--resume"), env=env,
                             capture_output=True, timeout=180)
    assert resumed.returncode == 0, resumed.stderr.decode()[-2000:]
    a = load_file(clean / "c0" / "weights.safetensors")
    b = load_file(killed / "c0" / "weights.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key

    def metrics(run: Path) -> list[dict]:
        rows = [json.loads(ln) for ln in (run / "c0" / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in r.items() if k != "time_s"} for r in rows]

    assert metrics(clean) == metrics(killed)


def test_bad_inputs_are_one_line_errors(tmp_path, teacher_dir):
    plan = _plan(tmp_path / "plan.json")
    other = _plan(tmp_path / "other.json", "fashion-mnist", get_space("fashion-mnist"))
    empty = tmp_path / "empty"
    empty.mkdir()
    base = ["distill", "--out", str(tmp_path / "o"), "--device", "cpu"]

    def run(*args: str):
        return CliRunner().invoke(app, [*base, *args])

    assert_one_line_error(run("--plan", str(other), "--teacher", str(teacher_dir)),
                    "task 'fashion-mnist'", "task 'digits'")
    assert_one_line_error(run("--plan", str(plan), "--teacher", str(teacher_dir), "--candidate", "3"),
                    "--candidate 3", "valid: 0..2")
    assert_one_line_error(run("--plan", str(plan), "--teacher", str(empty)), "holds no teacher")
    assert_one_line_error(run("--plan", str(plan), "--teacher", str(tmp_path / "nope")),
                    "does not exist")
    assert_one_line_error(run("--plan", str(tmp_path / "missing.json"), "--teacher", "none"),
                    "does not exist")
    assert_one_line_error(run("--plan", str(plan), "--teacher", "none", "--init", "warm"),
                    "valid inits: scratch, supernet")
    assert_one_line_error(run("--plan", str(plan), "--teacher", "none", "--kd-loss", "fitnets"),
                          "--kd-loss 'fitnets'", "valid: kd, dkd")
    assert_one_line_error(run("--plan", str(plan), "--teacher", "none", "--dkd-beta", "nan"),
                          "--dkd-beta")


def _dkd_reference(z_s, z_t, y, tau, beta=8.0):
    """DKD as its paper writes it, in float64: TCKD over (target, rest) with the rest's mass
    1 - p_target (exact enough in float64), NCKD over the non-target classes."""
    z_s, z_t = z_s.double() / tau, z_t.double() / tau
    target = torch.nn.functional.one_hot(y, z_s.shape[1]).bool()
    p_s, p_t = torch.softmax(z_s, 1), torch.softmax(z_t, 1)
    pt_s, pt_t = p_s[target], p_t[target]
    b_s, b_t = torch.stack([pt_s, 1 - pt_s], 1), torch.stack([pt_t, 1 - pt_t], 1)
    tckd = (b_t * (b_t.log() - b_s.log())).sum(1)
    q_s = torch.log_softmax(z_s.masked_fill(target, float("-inf")), 1)
    q_t = torch.log_softmax(z_t.masked_fill(target, float("-inf")), 1)
    nckd = (q_t.exp() * (q_t - q_s)).masked_fill(target, 0.0).sum(1)
    return ((tckd + beta * nckd).mean() * tau * tau)


@pytest.mark.parametrize("tau", [1.0, 4.0])
def test_dkd_keeps_its_precision_on_confident_students(tau):
    """The non-target mass of a confident student (target logit 12-16 above the rest) is
    ~1e-6: as 1 - p_target in float32 it cancels, and the gradient was off by up to a third
    at T = 1. Summed over the non-target classes it matches the float64 reference."""
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 10, (32,), generator=g)
    z_s = torch.randn(32, 10, generator=g)
    z_s[torch.arange(32), y] += 12 + 4 * torch.rand(32, generator=g)
    z_t = torch.randn(32, 10, generator=g) * 2
    z_t[torch.arange(32), y] += 6
    ours = z_s.clone().requires_grad_(True)
    tckd, nckd = losses.dkd_terms(ours, z_t, y, tau)
    ((tckd + 8.0 * nckd).mean() * tau * tau).backward()
    ref = z_s.double().clone().requires_grad_(True)
    _dkd_reference(ref, z_t, y, tau).backward()
    error = (ours.grad.double() - ref.grad).norm() / ref.grad.norm()
    assert float(error) < 1e-3, float(error)
