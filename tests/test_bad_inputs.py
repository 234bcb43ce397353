"""Bad inputs and faults through the real CLI (issue 12 and issue 16, part 6).

Every case: a non-zero exit, exactly one ``error:`` line that names the problem, no
traceback, and nothing written outside the command's target. Cases are grouped by the
issue's families; corrupted checkpoints (tests/test_train_integrity.py), archive bombs and
hostile members (tests/test_bundle_security.py) have their own tests and only a neighbour
here. Nothing here trains a model.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gtn_deploy.spaces.mbconv import get_space
from gtn_deploy.cli.main import app
from cli_helpers import assert_one_error

FIXTURES = Path(__file__).parent / "fixtures"
BUNDLE = FIXTURES / "bundle_min"
BIG_SEED = str(2**64)
TINY_TEACHER = ["--task", "digits", "--epochs", "1", "--batch-size", "16", "--limit-train",
                "64", "--limit-val", "32", "--no-progress", "--device", "cpu"]


# -- what every case checks ------------------------------------------------------------------

def _listing(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


# -- inputs the cases build --------------------------------------------------------------------

def _afile(tmp: Path) -> Path:
    (tmp / "afile").write_text("a regular file\n")
    return tmp / "afile"


def _plan(tmp: Path, name: str = "plan.json", **edits) -> str:
    space = get_space("digits")
    archs = [space.min_arch(), space.max_arch()]
    doc = {"schema_version": 1, "kind": "gtn_deploy.plan", "task": "digits", "space": "digits",
           "devices": [{"device": "dev-a", "candidates": [{"arch": a.to_dict()}
                                                          for a in archs]}]}
    doc.update(edits)
    (tmp / name).write_text(json.dumps(doc))
    return str(tmp / name)


def _bundle(tmp: Path, edit=None, files: dict[str, bytes] | None = None,
            rehash: bool = True) -> str:
    """A copy of the committed bundle; edits keep its hashes consistent (unless ``rehash``
    is off), so only the edit itself is wrong."""
    from gtn_deploy.manifest import manifest_digest

    folder = tmp / "bundle"
    shutil.copytree(BUNDLE, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    for name, data in (files or {}).items():
        (folder / name).write_bytes(data)
        manifest["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(),
                                   "bytes": len(data)}
    if edit:
        edit(manifest)
        if rehash:
            manifest["manifest_sha256"] = manifest_digest(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return str(folder)


def _deep_bundle(tmp: Path) -> str:
    folder = Path(_bundle(tmp))
    (folder / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    return str(folder)


def _profile(tmp: Path, extra: str = "", replace: tuple[str, str] | None = None) -> str:
    text = (FIXTURES / "profiles" / "my-board.yaml").read_text()
    if replace:
        assert replace[0] in text
        text = text.replace(*replace)
    (tmp / "board.yaml").write_text(text + extra)
    return str(tmp / "board.yaml")


def _run_file(tmp: Path, data: bytes) -> str:
    (tmp / "run.yaml").write_bytes(data)
    return str(tmp / "run.yaml")


def _fifo(tmp: Path) -> str:
    os.mkfifo(tmp / "pipe.yaml")
    return str(tmp / "pipe.yaml")


def _vanilla_teacher(tmp: Path) -> str:
    """A teacher run folder without a supernet (what 'gtnd teacher train --method vanilla'
    leaves); its weights are never read by these cases."""
    folder = tmp / "teacher" / "teacher"
    folder.mkdir(parents=True)
    (folder / "teacher.json").write_text(json.dumps({
        "kind": "gtn_deploy.teacher", "name": "resnet20", "task": {"name": "digits"},
        "weights": {"sha256": "0" * 64}, "meta": {"method": "vanilla"}}))
    return str(tmp / "teacher")


def _garbage_checkpoint(tmp: Path) -> str:
    (tmp / "run" / "checkpoint").mkdir(parents=True)
    (tmp / "run" / "checkpoint" / "last.pt").write_bytes(os.urandom(4096))
    return str(tmp / "run")


def _distill(tmp: Path, *extra: str, plan: str | None = None) -> list[str]:
    return ["distill", "--plan", plan or _plan(tmp), "--teacher", "none", "--out",
            str(tmp / "kd"), "--device", "cpu", "--no-progress", *extra]


def _plan_cmd(*extra: str) -> list[str]:
    return ["plan", "--device", "rpi5", "--task", "digits", "--top-k", "1", *extra]


def _calibrate(*extra: str) -> list[str]:
    return ["calibrate", "--device", "local", "--samples", "4", "--holdout", "2", *extra]


# (id, build(tmp) -> argv, needle in the error line, text that must not be in it)
CASES = [
    # 4 / issue 16.6: an output path that cannot be written, for every command that writes
    ("plan-out-is-a-folder", lambda t: _plan_cmd("--out", str(t)), "is a folder", None),
    ("plan-out-under-a-file", lambda t: _plan_cmd("--out", f"{_afile(t)}/plan.json"),
     "afile is a file, not a folder", None),
    ("plan-out-in-proc", lambda t: _plan_cmd("--out", "/proc/x.json"),
     "cannot write /proc/x.json", None),
    ("bench-out-is-a-folder", lambda t: ["bench", str(BUNDLE), "--iters", "5", "--out", str(t)],
     "is a folder", None),
    ("bench-out-under-a-file",
     lambda t: ["bench", str(BUNDLE), "--iters", "5", "--out", f"{_afile(t)}/r.json"],
     "afile is a file, not a folder", None),
    ("calibrate-out-is-a-folder",
     lambda t: (t / "p.yaml").mkdir() or _calibrate("--out", str(t / "p.yaml")),
     "is a folder", None),
    ("calibrate-report-under-a-file",
     lambda t: _calibrate("--out", str(t / "p.yaml"), "--report", f"{_afile(t)}/r.json"),
     "afile is a file, not a folder", None),
    ("export-out-is-a-file",
     lambda t: ["export", "--student", str(t / "s"), "--device", "local", "--out",
                str(_afile(t))], "is a file, not a folder", None),
    ("distill-out-under-a-file",
     lambda t: _distill(t)[:5] + ["--out", f"{_afile(t)}/kd", "--device", "cpu"],
     "afile is a file, not a folder", None),
    ("teacher-out-under-a-file",
     lambda t: ["teacher", "train", "--out", f"{_afile(t)}/run", "--method", "vanilla",
                *TINY_TEACHER], "afile is a file, not a folder", None),
    ("pipeline-out-under-a-file",
     lambda t: ["pipeline", "--devices", "rpi5", "--task", "digits", "--out",
                f"{_afile(t)}/run"], "afile is a file, not a folder", None),
    ("predictor-out-is-a-folder",
     lambda t: ["predictor", "fit", "--teacher", _vanilla_teacher(t), "--out", str(t)],
     "is a folder", None),
    # 5: NaN, infinity and out-of-range numbers
    ("plan-latency-nan", lambda t: _plan_cmd("--latency-ms", "nan"), "--latency-ms", None),
    ("plan-memory-inf", lambda t: _plan_cmd("--memory-mb", "inf"), "--memory-mb", None),
    ("plan-margin-nan", lambda t: _plan_cmd("--margin", "nan"), "--margin", None),
    ("plan-batch-size-0", lambda t: _plan_cmd("--batch-size", "0"), "batch", None),
    ("bench-seconds-inf", lambda t: ["bench", str(BUNDLE), "--seconds", "inf"], "--seconds",
     None),
    ("export-max-drop-nan",
     lambda t: ["export", "--student", str(t / "s"), "--device", "local", "--out",
                str(t / "o"), "--max-drop", "nan"], "--max-drop", None),
    ("distill-temperature-nan", lambda t: _distill(t, "--temperature", "nan"), "--temperature",
     None),
    ("distill-lr-inf", lambda t: _distill(t, "--lr", "inf"), "--lr", None),
    ("teacher-lr-nan", lambda t: ["teacher", "train", "--out", str(t / "run"), "--lr", "nan",
                                  *TINY_TEACHER], "--lr", None),
    ("teacher-tau-0", lambda t: ["teacher", "train", "--out", str(t / "run"), "--tau", "0",
                                 *TINY_TEACHER], "--tau", None),
    ("predictor-holdout-nan",
     lambda t: ["predictor", "fit", "--teacher", str(t), "--out", str(t / "p.json"),
                "--holdout", "nan"], "--holdout", None),
    ("pipeline-alpha-nan",
     lambda t: ["pipeline", "--devices", "rpi5", "--out", str(t / "run"), "--alpha", "nan"],
     "alpha", None),
    ("runfile-infinite-budget",
     lambda t: ["pipeline", "--out", str(t / "run"), "--config",
                _run_file(t, b"devices:\n  - {device: rpi5, latency_ms: .inf}\n")],
     "latency_ms", None),
    ("profile-infinite-budget",
     lambda t: ["plan", "--device", _profile(t, replace=("value: 20,", "value: .inf,"))],
     "latency_ms", None),
    # 8: counts and seeds, refused before any stage runs
    ("teacher-checkpoint-every-negative",
     lambda t: ["teacher", "train", "--out", str(t / "run"), "--checkpoint-every", "-1",
                *TINY_TEACHER], "--checkpoint-every", None),
    ("distill-checkpoint-every-negative", lambda t: _distill(t, "--checkpoint-every", "-1"),
     "--checkpoint-every", None),
    ("plan-seed-negative", lambda t: _plan_cmd("--seed", "-1"), "--seed", None),
    ("plan-seed-huge", lambda t: _plan_cmd("--seed", BIG_SEED), "--seed", None),
    ("teacher-seed-huge", lambda t: ["teacher", "train", "--out", str(t / "run"), "--seed",
                                     BIG_SEED, *TINY_TEACHER], "--seed", None),
    ("distill-seed-huge", lambda t: _distill(t, "--seed", BIG_SEED), "--seed", None),
    ("calibrate-seed-negative", lambda t: _calibrate("--seed", "-1"), "--seed", None),
    ("predictor-seed-huge",
     lambda t: ["predictor", "fit", "--teacher", str(t), "--out", str(t / "p.json"),
                "--seed", BIG_SEED], "--seed", None),
    ("pipeline-seed-huge",
     lambda t: ["pipeline", "--devices", "rpi5", "--out", str(t / "run"), "--seed", BIG_SEED],
     "seed", None),
    # 6: inputs that used to raise tracebacks
    ("runfile-binary", lambda t: ["pipeline", "--out", str(t / "run"), "--config",
                                  _run_file(t, b"\x80\x81\x00\xfe binary")], "not UTF-8", None),
    ("runfile-is-a-folder", lambda t: ["pipeline", "--out", str(t / "run"), "--config",
                                       str(t)], "is a folder", None),
    ("verify-deep-manifest", lambda t: ["bundle", "verify", _deep_bundle(t)],
     "nested too deeply", None),
    ("info-deep-manifest", lambda t: ["bundle", "info", _deep_bundle(t)], "nested too deeply",
     None),
    ("bench-deep-manifest", lambda t: ["bench", _deep_bundle(t)], "nested too deeply", None),
    ("bench-model-will-not-load",
     lambda t: ["bench", _bundle(t, lambda m: None, {"model.onnx": b"not a model"}),
                "--iters", "5"], "cannot load or run its model", None),
    ("info-empty-device", lambda t: ["bundle", "info", _bundle(t, lambda m: m.update(device={}))],
     "device.runtime", None),
    # 7: devices and special files given as profiles
    ("profile-dev-zero", lambda t: ["plan", "--device", "/dev/zero"], "not a regular file", None),
    ("profile-dev-urandom", lambda t: ["plan", "--device", "/dev/urandom"], "not a regular file",
     None),
    ("profile-fifo", lambda t: ["plan", "--device", _fifo(t)], "not a regular file", None),
    ("profile-is-a-folder", lambda t: ["plan", "--device", str(t) + "/"], "is a folder", None),
    ("profile-too-big", lambda t: ["plan", "--device", _profile(t, "#" * (2 << 20) + "\n")],
     "larger than", None),
    # 8: silent acceptances
    ("profile-duplicate-key", lambda t: ["plan", "--device", _profile(t, "\nid: other\n")],
     "duplicate key 'id'", None),
    ("runfile-duplicate-key",
     lambda t: ["pipeline", "--out", str(t / "run"), "--config",
                _run_file(t, b"devices: [rpi5]\nseed: 1\nseed: 2\n")], "duplicate key 'seed'",
     None),
    ("plan-schema-version-7", lambda t: _distill(t, plan=_plan(t, schema_version=7)),
     "schema_version 7", None),
    ("plan-space-contradicts-task",
     lambda t: _distill(t, plan=_plan(t, space="imagenet")), "contradicts", None),
    ("distill-candidate-twice", lambda t: _distill(t, "--candidate", "0,0"), "given twice",
     None),
    # 9: messages that named the wrong problem
    ("teacher-device-tpu", lambda t: ["teacher", "train", "--out", str(t / "run"), "--device",
                                      "tpu", *TINY_TEACHER[:-2]], "valid: auto, cpu, cuda",
     "cuda asked for"),
    ("distill-device-tpu", lambda t: _distill(t)[:-3] + ["--device", "tpu"],
     "valid: auto, cpu, cuda", "cuda asked for"),
    ("student-plan-colon-word",
     lambda t: ["teacher", "train", "--out", str(t / "run"), "--method", "sftn", "--student",
                _plan(t) + ":abc", *TINY_TEACHER], "not 'abc'", "does not exist"),
    ("distill-plan-is-a-folder", lambda t: _distill(t, plan=str(t)), "is a folder",
     "does not exist"),
    ("predictor-vanilla-teacher",
     lambda t: ["predictor", "fit", "--teacher", _vanilla_teacher(t), "--out",
                str(t / "p.json"), "--device", "cpu"], "no trained supernet", "--init"),
    # neighbours of 1-3, whose main tests live elsewhere
    ("checkpoint-garbage",
     lambda t: ["teacher", "train", "--out", _garbage_checkpoint(t), "--method", "vanilla",
                "--resume", *TINY_TEACHER], "corrupt", None),
    ("bundle-not-a-tarball",
     lambda t: (t / "b.tar.gz").write_bytes(b"\x1f\x8b junk") and
     ["bundle", "verify", str(t / "b.tar.gz")], "not a readable .tar.gz", None),
    ("manifest-without-its-hash",
     lambda t: ["bundle", "verify", _bundle(t, lambda m: m.pop("manifest_sha256"),
                                                rehash=False)],
     "manifest_sha256", None),
]


@pytest.mark.parametrize("build,needle,absent", [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_bad_input_is_one_error_line_and_writes_nothing(tmp_path, monkeypatch, build, needle,
                                                        absent):
    monkeypatch.chdir(tmp_path)  # a relative default output would land here and be seen
    argv = build(tmp_path)
    before = _listing(tmp_path)
    result = CliRunner().invoke(app, argv)
    assert_one_error(result, needle, absent=absent)
    assert _listing(tmp_path) == before


def test_every_family_has_a_case():
    ids = " ".join(c[0] for c in CASES)
    for word in ("out", "nan", "inf", "seed", "checkpoint-every", "binary", "deep",
                 "will-not-load", "empty-device", "dev-zero", "duplicate-key",
                 "schema-version", "contradicts", "twice", "tpu", "colon", "vanilla",
                 "checkpoint-garbage", "tarball", "without-its-hash"):
        assert word in ids, word


# -- faults ----------------------------------------------------------------------------------

def _enospc(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_bench_prints_its_measurements_before_a_failing_write(tmp_path, monkeypatch):
    monkeypatch.setattr("gtn_deploy.io_utils._replace_with", _enospc)
    result = CliRunner().invoke(app, ["bench", str(BUNDLE), "--iters", "20", "--out",
                                      str(tmp_path / "r.json")])
    assert_one_error(result, "No space left on device")
    assert "p50" in result.output and "img/s" in result.output  # the measurement survived
    assert not list(tmp_path.iterdir())


def test_calibrate_prints_its_report_before_a_failing_write(tmp_path, monkeypatch):
    from gtn_deploy import io_utils

    real = io_utils._replace_with

    def full_for_the_profile(path, data):  # the subnets' temporary ONNX files still fit
        return _enospc() if path.name == "p.yaml" else real(path, data)

    monkeypatch.setattr(io_utils, "_replace_with", full_for_the_profile)
    result = CliRunner().invoke(app, _calibrate("--rounds", "1", "--iters", "1", "--out",
                                                str(tmp_path / "p.yaml")))
    assert_one_error(result, "cannot write")
    assert "held-out" in result.output and "tier 1" in result.output
    assert not list(tmp_path.iterdir())


def test_a_failing_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    import torch

    from gtn_deploy.errors import PathError
    from gtn_deploy.train import checkpoint as ckpt

    path = tmp_path / "checkpoint" / "last.pt"
    ckpt.save_checkpoint(path, {"config": "{}", "model": {"w": torch.zeros(8)}})

    def replace_fails(src, dst):  # the new bytes are written and synced, the rename fails
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", replace_fails)
    with pytest.raises(PathError, match=r"cannot write .*last\.pt: No space left"):
        ckpt.save_checkpoint(path, {"config": "{}", "model": {"w": torch.ones(8)}})
    monkeypatch.undo()
    assert ckpt.load_checkpoint(path)["model"]["w"].sum() == 0  # the previous one, intact
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.pt"]  # no temporary left


def test_training_refuses_an_unwritable_folder_before_loading_data(tmp_path, monkeypatch):
    """The check happens before the data is loaded: a run never loses an epoch to it."""
    def no_data(*_a, **_k):
        raise AssertionError("data loaded before the output folder was checked")

    monkeypatch.setattr("gtn_deploy.train.trainer.load_space_data", no_data)
    monkeypatch.setattr("gtn_deploy.train.distill.load_space_data", no_data)
    blocked = f"{_afile(tmp_path)}/run"
    result = CliRunner().invoke(app, ["teacher", "train", "--out", blocked, "--method",
                                      "vanilla", *TINY_TEACHER])
    assert_one_error(result, "is a file, not a folder")
    result = CliRunner().invoke(app, ["distill", "--plan", _plan(tmp_path), "--teacher", "none",
                                      "--out", blocked, "--device", "cpu", "--no-progress"])
    assert_one_error(result, "is a file, not a folder")


# Real filesystem faults: a small tmpfs in a private mount namespace (nothing to unmount
# afterwards, nothing global); where namespaces or mount are not allowed, skipped.

def _in_tmpfs(tmp_path: Path, options: str, script: str) -> subprocess.CompletedProcess:
    """Run ``script`` (sh; ``$GTND`` is the CLI) inside a fresh tmpfs mounted with
    ``options``, in a private user and mount namespace."""
    gtnd = Path(sys.executable).parent / "gtnd"
    if shutil.which("unshare") is None or not gtnd.is_file():
        pytest.skip("needs unshare(1) and the gtnd script to mount a private tmpfs")
    mnt = tmp_path / "mnt"
    mnt.mkdir(exist_ok=True)
    mount = f"mount -t tmpfs -o {options} tmpfs '{mnt}'"
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", mount], capture_output=True,
                           text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs in a user namespace here: {probe.stderr.strip()}")
    env = dict(os.environ, OMP_NUM_THREADS="1", GTND=str(gtnd))
    return subprocess.run(["unshare", "-rm", "sh", "-c", f"{mount} && cd '{mnt}' && {script}"],
                          capture_output=True, text=True, env=env, timeout=120)


def _one_error_line(proc: subprocess.CompletedProcess, needle: str) -> None:
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and needle in errors[0], proc.stderr


FILL = "dd if=/dev/zero of=fill bs=4k 2>/dev/null;"


def test_full_disk(tmp_path):
    """plan and bench on a full tmpfs: one line each; bench still shows its numbers."""
    proc = _in_tmpfs(tmp_path, "size=256k", f'{FILL} "$GTND" plan --device rpi5 --task digits '
                     "--top-k 1 --out plan.json")
    _one_error_line(proc, "No space left on device")
    proc = _in_tmpfs(tmp_path, "size=256k", f'{FILL} "$GTND" bench "{BUNDLE}" --iters 20 '
                     "--out r.json")
    _one_error_line(proc, "No space left on device")
    assert "p50" in proc.stdout


def test_read_only_output_folder(tmp_path):
    """A read-only folder: chmod where that binds (not root), else a read-only tmpfs."""
    plan = "plan --device rpi5 --task digits --top-k 1"
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        try:
            result = CliRunner().invoke(app, [*plan.split(), "--out", str(ro / "plan.json")])
            assert_one_error(result, "Permission denied")
            result = CliRunner().invoke(app, ["pipeline", "--devices", "rpi5", "--out",
                                              str(ro / "run")])
            assert_one_error(result, "Permission denied")
        finally:
            ro.chmod(0o755)
        return
    # root ignores file modes: a read-only mount is the read-only folder it has
    proc = _in_tmpfs(tmp_path, "size=64k,ro", f'"$GTND" {plan} --out plan.json')
    _one_error_line(proc, "Read-only file system")
    proc = _in_tmpfs(tmp_path, "size=64k,ro", '"$GTND" pipeline --devices rpi5 --out run')
    _one_error_line(proc, "Read-only file system")
