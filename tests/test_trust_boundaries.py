"""Trust boundaries (issue 25): names, links, devices, data and run folders.

Each case is a bad input or fault as a user gives it (real files, real links, a real
tarball, a stand-in ``ssh`` on PATH for a device's answers): a non-zero exit, exactly one
``error:`` line, no traceback, and nothing outside the named folders touched.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gtn_deploy.cli.main import app
from cli_helpers import assert_one_error

FIXTURES = Path(__file__).parent / "fixtures"


def _listing(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` with its bytes (None for folders and links), but the
    stand-in device's own folder ``dev/``."""
    return {p.relative_to(root).as_posix(): (p.read_bytes() if p.is_file() and not
                                             p.is_symlink() else None)
            for p in sorted(root.rglob("*")) if p.relative_to(root).parts[0] != "dev"}


def _invoke(argv: list[str]):
    return CliRunner().invoke(app, [str(a) for a in argv])


# -- 1: export --name is one path component; --overwrite replaces only a bundle --------------

def _export(tmp: Path, *extra) -> list:
    return ["export", "--student", tmp / "student", "--device", "local", "--out",
            tmp / "out", *extra]


def test_export_name_must_be_one_path_component(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine\n")
    (tmp_path / "victim").mkdir()
    (tmp_path / "victim" / "data.txt").write_text("not a bundle\n")
    before = _listing(tmp_path)
    for name in ("../victim", "../../x", str(tmp_path / "abs"), ".", "..", "a/b", ".hidden"):
        result = _invoke(_export(tmp_path, "--name", name, "--overwrite"))
        assert_one_error(result, "not a plain folder name")
        assert _listing(tmp_path) == before, name


def test_export_overwrite_replaces_only_a_bundle(tmp_path):
    out = tmp_path / "out"
    (out / "mine").mkdir(parents=True)
    (out / "mine" / "data.txt").write_text("not a bundle\n")
    (out / "afile").write_text("a file\n")
    os.symlink(tmp_path / "elsewhere", out / "link")
    before = _listing(tmp_path)
    assert_one_error(_invoke(_export(tmp_path, "--name", "mine", "--overwrite")),
                     "is not a bundle", "--overwrite replaces only bundles")
    assert_one_error(_invoke(_export(tmp_path, "--name", "afile", "--overwrite")),
                     "is not a bundle folder")
    assert_one_error(_invoke(_export(tmp_path, "--name", "link", "--overwrite")),
                     "is not a bundle folder")
    assert _listing(tmp_path) == before


# -- 2: files written in place in a run folder refuse links ---------------------------------

def test_pipeline_lock_that_is_a_symlink_is_refused(tmp_path):
    outside = tmp_path / "precious.txt"
    outside.write_text("keep me\n")
    run = tmp_path / "run"
    run.mkdir()
    os.symlink(outside, run / ".lock")
    result = _invoke(["pipeline", "--devices", "local", "--task", "digits", "--out", run])
    assert_one_error(result, ".lock is a symbolic link")
    assert outside.read_text() == "keep me\n"
    assert sorted(p.name for p in run.iterdir()) == [".lock"]


def test_pipeline_lock_that_is_a_hard_link_or_fifo_is_refused(tmp_path):
    outside = tmp_path / "precious.txt"
    outside.write_text("keep me\n")
    run, fifo_run = tmp_path / "run", tmp_path / "fifo-run"
    run.mkdir()
    fifo_run.mkdir()
    os.link(outside, run / ".lock")
    os.mkfifo(fifo_run / ".lock")
    assert_one_error(_invoke(["pipeline", "--devices", "local", "--task", "digits", "--out",
                              run]), "hard link")
    assert_one_error(_invoke(["pipeline", "--devices", "local", "--task", "digits", "--out",
                              fifo_run]), "not a regular file")
    assert outside.read_text() == "keep me\n"


def test_metrics_log_append_and_resume_refuse_a_link(tmp_path):
    from gtn_deploy.errors import PathError
    from gtn_deploy.train.metrics import MetricsLog

    outside = tmp_path / "precious.txt"
    outside.write_text("keep me\n")
    os.symlink(outside, tmp_path / "metrics.jsonl")
    log = MetricsLog(tmp_path / "metrics.jsonl")
    with pytest.raises(PathError, match="symbolic link"):
        log.truncate(0)  # what a resume does first
    with pytest.raises(PathError, match="symbolic link"):
        log.write({"epoch": 1})
    assert outside.read_text() == "keep me\n"


# -- 3, 5, 13: --host runs; a stand-in ssh on PATH plays the device ---------------------------

DEVICE_OK = ('{"kind": "gtn_deploy.device_check", "python": "3.10.12", "numpy": "1.26.0", '
             '"onnxruntime": "1.17.0"}')


def _fake_ssh(tmp: Path, monkeypatch, answer: str | None = None, body: str | None = None
              ) -> Path:
    """An ``ssh`` first on PATH: it records its argv (one per line) in dev/ssh.argv, answers
    the device check, then prints ``answer`` (from a file) or runs ``body`` (shell)."""
    tmp = tmp / "dev"
    bindir = tmp / "bin"
    bindir.mkdir(parents=True, exist_ok=True)
    if answer is not None:
        (tmp / "answer.json").write_text(answer + "\n")
        body = f'cat > /dev/null; cat "{tmp / "answer.json"}"'
    script = bindir / "ssh"
    script.write_text(
        "#!/bin/sh\n"
        f'printf "%s\\n" "$@" >> "{tmp / "ssh.argv"}"\n'
        'for last; do :; done\n'
        'case "$last" in\n'
        f"  *device_check.py*) cat > /dev/null; echo '{DEVICE_OK}'; exit 0;;\n"
        "esac\n"
        f"{body}\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return tmp / "ssh.argv"


def _bench_host(tmp: Path, *extra) -> list:
    return ["bench", FIXTURES / "bundle_min", "--host", "me@board", "--iters", "20",
            "--out", tmp / "r.json", *extra]


@pytest.mark.parametrize("option", ["ProxyCommand=touch {marker}", "LocalCommand=touch {marker}",
                                    "KnownHostsCommand=touch {marker}", "Include {marker}",
                                    "PermitLocalCommand=yes"])
def test_ssh_option_outside_the_allow_list_is_refused(tmp_path, monkeypatch, option):
    argv_log = _fake_ssh(tmp_path, monkeypatch, answer="{}")
    marker = tmp_path / "ran"
    result = _invoke(_bench_host(tmp_path, "--ssh-option", option.format(marker=marker)))
    assert_one_error(result, "is not allowed", "ServerAliveInterval", "UserKnownHostsFile")
    assert not marker.exists() and not argv_log.exists() and not (tmp_path / "r.json").exists()


@pytest.mark.parametrize("host", ["-oProxyCommand=x@board", "a b@board", "me;id@board",
                                  "me$(id)@board", "me@board@other", "me@::1", "me@[::1",
                                  "me@[zz::1]:22"])
def test_host_user_and_name_are_checked(tmp_path, monkeypatch, host):
    argv_log = _fake_ssh(tmp_path, monkeypatch, answer="{}")
    result = _invoke(["bench", FIXTURES / "bundle_min", "--host", host])
    assert_one_error(result, "expected user@host[:port]")
    assert not argv_log.exists()


def test_ipv6_literal_host_reaches_ssh_as_an_address(tmp_path, monkeypatch):
    argv_log = _fake_ssh(tmp_path, monkeypatch, body="exit 255")
    result = _invoke(["bench", FIXTURES / "bundle_min", "--host", "me@[::1]:2222"])
    assert result.exit_code != 0 and "me@[::1]:2222" in result.output
    argv = argv_log.read_text().splitlines()
    assert argv[argv.index("--") + 1] == "::1" and argv[argv.index("-p") + 1] == "2222"


def _timing(**edits) -> str:
    import json

    timing = {"p50_ms": 1.0, "p90_ms": 1.1, "p95_ms": 1.2, "p99_ms": 1.3, "mean_ms": 1.05,
              "min_ms": 0.9, "max_ms": 1.4, "runs": 20, "warmup": 10, "batch_size": 1,
              "throughput_ips": 950.0}
    doc = {"kind": "gtn_deploy.bundle_timing", "model": "model.onnx", "runtime": "onnxruntime",
           "runtime_version": "1.17.0", "detail": {"provider": "CPUExecutionProvider"},
           "timing": timing, "machine": {"cpu_model": "board", "cpu_count": 4}}
    for key, value in edits.items():
        (timing if key in timing else doc)[key] = value
    return json.dumps(doc)


NEGATIVE = {k: -v for k, v in (("min_ms", 1.4), ("p50_ms", 1.3), ("p90_ms", 1.2),
                               ("p95_ms", 1.1), ("p99_ms", 1.0), ("max_ms", 0.9))}


@pytest.mark.parametrize("answer,needle", [
    ('{"kind": "gtn_deploy.bundle_timing"}', "model is missing"),
    (_timing(timing={"p50_ms": 1.0}), "timing.min_ms is missing"),
    ('{"kind": "gtn_deploy.bundle_timing", "x": ' + "[" * 100_000 + "]" * 100_000 + "}",
     "nested too deeply"),
    (_timing(**NEGATIVE), "expected a finite number > 0"),
    (_timing(p50_ms=float("nan")), "timing.p50_ms is nan"),
    (_timing(p99_ms=0.5), "out of order"),
    (_timing(runs=3), "20 were asked for"),
    (_timing(machine=[1, 2]), "machine is list"),
])
def test_bench_host_answer_is_validated(tmp_path, monkeypatch, answer, needle):
    _fake_ssh(tmp_path, monkeypatch, answer=answer)
    before = _listing(tmp_path)
    assert_one_error(_invoke(_bench_host(tmp_path)), needle)
    assert _listing(tmp_path) == before


def test_a_valid_answer_still_gives_a_result(tmp_path, monkeypatch):
    _fake_ssh(tmp_path, monkeypatch, answer=_timing())
    result = _invoke(_bench_host(tmp_path))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "r.json").is_file()


def test_bench_host_sends_our_scripts_not_the_bundles(tmp_path, monkeypatch):
    """The stand-in ssh runs the remote command here: the device is this machine. A bundle
    whose run_onnx.py was replaced (and re-hashed) must not run it."""
    import hashlib
    import json
    import shutil
    import sys

    from gtn_deploy.manifest import manifest_digest

    bundle = tmp_path / "bundle"
    shutil.copytree(FIXTURES / "bundle_min", bundle)
    marker = tmp_path / "author-ran"
    hostile = f"open({str(marker)!r}, 'w').write('x')\n".encode()
    (bundle / "run_onnx.py").write_bytes(hostile)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"]["run_onnx.py"] = {"sha256": hashlib.sha256(hostile).hexdigest(),
                                        "bytes": len(hostile)}
    manifest["manifest_sha256"] = manifest_digest(manifest)
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    _fake_ssh(tmp_path, monkeypatch, body='exec /bin/sh -c "$last" < /dev/stdin')
    result = _invoke(["bench", bundle, "--host", "me@board", "--iters", "5",
                      "--remote-python", sys.executable, "--json"])
    assert result.exit_code == 0, result.output
    assert not marker.exists()
    assert json.loads(result.stdout)["timing"]["runs"] == 5


def test_ssh_keeps_a_stalled_device_bounded(tmp_path, monkeypatch):
    """A device that accepts the connection and then says nothing fails at the device check
    (a short bound), and every ssh call carries keep-alives."""
    from gtn_deploy.bench import remote

    argv_log = _fake_ssh(tmp_path, monkeypatch, body="exec sleep 60")
    (tmp_path / "dev" / "bin" / "ssh").write_text(
        (tmp_path / "dev" / "bin" / "ssh").read_text().replace("  *device_check.py*", "  *nomatch*"))
    monkeypatch.setattr(remote, "CHECK_TIMEOUT_S", 1.0)
    assert_one_error(_invoke(_bench_host(tmp_path)), "no result within 1 s")
    argv = argv_log.read_text().splitlines()
    assert "ServerAliveInterval=5" in argv and "ServerAliveCountMax=3" in argv
    assert not (tmp_path / "r.json").exists()


def test_bench_bound_scales_with_the_work():
    from gtn_deploy.bench.remote import bench_timeout_s

    small = bench_timeout_s(1_000_000, 110, None)
    assert small < 120 < bench_timeout_s(1_000_000, 5000, None)
    assert bench_timeout_s(1_000_000, 110, 100.0) > small  # a slow model gets more time


# -- 5, 13: calibrate --host -------------------------------------------------------------------

def _calibrate_host(tmp: Path, *extra) -> list:
    return ["calibrate", "--device", "local", "--host", "me@board", "--samples", "4",
            "--holdout", "2", "--rounds", "2", "--iters", "5", "--out", tmp / "remote.yaml",
            "--report", tmp / "report.json", *extra]


def test_calibrate_host_checks_the_connection_before_exporting(tmp_path, monkeypatch):
    _fake_ssh(tmp_path, monkeypatch, body="echo 'ssh: connect to host board port 22: "
                                           "Connection refused' >&2; exit 255")
    (tmp_path / "dev" / "bin" / "ssh").write_text(
        (tmp_path / "dev" / "bin" / "ssh").read_text().replace("  *device_check.py*", "  *nomatch*"))
    result = _invoke(_calibrate_host(tmp_path))  # not -q: no "sending subnets" line either
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1, result.output
    assert_one_error(result, "connection refused")
    assert not (tmp_path / "remote.yaml").exists()


def _subnet_answer(call_ms) -> str:
    import json

    rounds = [[[1.0, 1.1, call_ms, 1.2, 1.0], [1.0, 1.05, 1.1, 1.0, 1.2]] for _ in range(6)]
    return json.dumps({"kind": "gtn_deploy.subnet_timing", "runtime": "onnxruntime",
                       "runtime_version": "1.17.0", "provider": "CPUExecutionProvider",
                       "threads": 1, "rounds": rounds, "order": list(range(6)) * 2,
                       "stop": "max_rounds", "timing_s": 1.0, "nodes": [],
                       "machine": {"cpu_model": "board"}})


@pytest.mark.parametrize("call_ms,needle", [(float("nan"), "is nan"), (0.0, "is 0.0"),
                                            (-1.0, "is -1.0")])
def test_calibrate_host_refuses_bad_timings(tmp_path, monkeypatch, call_ms, needle):
    _fake_ssh(tmp_path, monkeypatch, answer=_subnet_answer(call_ms))
    before = _listing(tmp_path)
    assert_one_error(_invoke(["-q", *_calibrate_host(tmp_path)]), needle, "rounds[0][0]")
    assert _listing(tmp_path) == before


# -- 4, 6: archives: nothing after the end, member counts stop at the limit -------------------

def _tarball(tmp: Path, name: str = "b.tar.gz", mode: str = "w:gz") -> Path:
    import tarfile

    with tarfile.open(tmp / name, mode) as tar:
        tar.add(FIXTURES / "bundle_min", arcname="bundle_min")
    return tmp / name


def _hidden_tar(tmp: Path) -> bytes:
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("bundle_min/hidden.sh")
        data = b"echo pwned\n"
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_a_clean_tarball_still_verifies(tmp_path):
    result = _invoke(["bundle", "verify", _tarball(tmp_path)])
    assert result.exit_code == 0, result.output


def test_a_second_gzip_member_appended_is_refused(tmp_path):
    import gzip

    path = _tarball(tmp_path)
    with open(path, "ab") as fh:
        fh.write(gzip.compress(_hidden_tar(tmp_path)))
    before = _listing(tmp_path)
    for argv in (["bundle", "verify", path], ["bundle", "info", path],
                 ["bench", path, "--iters", "5"]):
        assert_one_error(_invoke(argv), "after the end")
    assert _listing(tmp_path) == before


def test_tar_data_after_the_end_marker_is_refused(tmp_path):
    import gzip
    import tarfile

    plain = _tarball(tmp_path, "b.tar", "w")
    data = plain.read_bytes() + _hidden_tar(tmp_path)  # inside the one gzip stream
    (tmp_path / "c.tar.gz").write_bytes(gzip.compress(data))
    with tarfile.open(tmp_path / "c.tar.gz") as tar:  # what tarfile itself sees: no hidden
        assert "bundle_min/hidden.sh" not in tar.getnames()
    assert_one_error(_invoke(["bundle", "verify", tmp_path / "c.tar.gz"]), "after the end")


def test_many_empty_members_stop_at_the_limit(tmp_path):
    import tarfile

    with tarfile.open(tmp_path / "many.tar.gz", "w:gz") as tar:
        for i in range(3000):
            tar.addfile(tarfile.TarInfo(f"bundle_min/e{i}"))
    assert_one_error(_invoke(["bundle", "verify", tmp_path / "many.tar.gz"]),
                     "more than a bundle's 1000 members")


# -- 7: an output never overwrites an input, nor a file of another kind ------------------------

def _board(tmp: Path) -> Path:
    import shutil

    shutil.copyfile(FIXTURES / "profiles" / "my-board.yaml", tmp / "my-board.yaml")
    return tmp / "my-board.yaml"


def _bundle_copy(tmp: Path) -> Path:
    import shutil

    shutil.copytree(FIXTURES / "bundle_min", tmp / "bundle")
    return tmp / "bundle"


OUTPUT_CASES = [
    ("bench-out-manifest", lambda t: ["bench", _bundle_copy(t), "--iters", "5", "--out",
                                      t / "bundle" / "manifest.json"], "an input"),
    ("bench-out-model", lambda t: ["bench", _bundle_copy(t), "--iters", "5", "--out",
                                   t / "bundle" / "model.onnx"], "an input"),
    ("bench-out-tarball", lambda t: ["bench", _tarball(t), "--iters", "5", "--out",
                                     t / "b.tar.gz"], "an input"),
    ("bench-out-other-kind", lambda t: (t / "notes.json").write_text('{"mine": 1}') and
     ["bench", FIXTURES / "bundle_min", "--iters", "5", "--out", t / "notes.json"],
     "is not a bench result"),
    ("calibrate-report-is-the-profile",
     lambda t: ["calibrate", "--device", _board(t), "--samples", "4", "--holdout", "2",
                "--report", t / "my-board.yaml"], "an input"),
    ("calibrate-out-is-report",
     lambda t: ["calibrate", "--device", "local", "--samples", "4", "--holdout", "2",
                "--out", t / "x.yaml", "--report", t / "x.yaml"], "name the same file"),
    ("calibrate-report-other-kind",
     lambda t: (t / "r.json").write_text("keep\n") and
     ["calibrate", "--device", "local", "--samples", "4", "--holdout", "2",
      "--report", t / "r.json"], "is not a calibration report"),
    ("plan-out-is-the-profile",
     lambda t: ["plan", "--device", _board(t), "--task", "digits", "--out",
                t / "my-board.yaml"], "an input"),
    ("plan-out-other-kind", lambda t: (t / "todo.txt").write_text("keep\n") and
     ["plan", "--device", "rpi5", "--task", "digits", "--out", t / "todo.txt"],
     "is not a plan"),
]


@pytest.mark.parametrize("build,needle", [pytest.param(*c[1:], id=c[0]) for c in OUTPUT_CASES])
def test_an_output_that_is_an_input_is_refused(tmp_path, monkeypatch, build, needle):
    monkeypatch.chdir(tmp_path)
    argv = build(tmp_path)
    before = _listing(tmp_path)
    assert_one_error(_invoke(argv), needle)
    assert _listing(tmp_path) == before


# -- 6, 10, 12: run files and the dry run check what the run checks ---------------------------

def _run_file(tmp: Path, text: str) -> Path:
    (tmp / "run.yaml").write_text(text)
    return tmp / "run.yaml"


RUN_CASES = [
    ("out-is-a-file", lambda t: ["--devices", "local", "--out", _afile(t)], "is a file"),
    ("teacher-unknown", lambda t: ["--devices", "local", "--teacher", "foo", "--out",
                                   t / "run"], "unknown teacher 'foo'"),
    ("device-twice", lambda t: ["--devices", "local,local", "--out", t / "run"],
     "named twice"),
    ("device-alias-twice", lambda t: ["--devices", "rpi5,raspberry-pi-5", "--out", t / "run"],
     "are the same device"),
    ("runfile-devices-5", lambda t: ["--config", _run_file(t, "devices: 5\n"), "--out",
                                     t / "run"], "expected a list of devices"),
    ("runfile-alias-bomb",
     lambda t: ["--config", _run_file(t, "a: &a [x, x]\nb: &b [*a, *a]\nc: &c [*b, *b]\n"
                                         "devices: [*c, *c]\n"), "--out", t / "run"],
     "alias '*a' is not supported"),
    ("runfile-120000-devices",
     lambda t: ["--config", _run_file(t, "devices:\n" + "- local\n" * 120_000), "--out",
                t / "run"], "a run takes at most 32"),
]


def _afile(tmp: Path) -> Path:
    (tmp / "afile").write_text("a file\n")
    return tmp / "afile"


@pytest.mark.parametrize("dry", [True, False], ids=["dry-run", "run"])
@pytest.mark.parametrize("build,needle", [pytest.param(*c[1:], id=c[0]) for c in RUN_CASES])
def test_dry_run_and_run_refuse_the_same_inputs(tmp_path, monkeypatch, build, needle, dry):
    monkeypatch.chdir(tmp_path)
    argv = ["pipeline", "--task", "digits", *build(tmp_path)] + (["--dry-run"] if dry else [])
    before = _listing(tmp_path)
    assert_one_error(_invoke(argv), needle)
    assert _listing(tmp_path) == before


# -- 9: damaged run folders are re-run, saying so ---------------------------------------------

def _stubbed_run(tmp: Path, monkeypatch) -> tuple:
    """A real run folder (the plan stage real) whose training, export and bench stages are
    stubs that write one file each: no model is trained."""
    from gtn_deploy.pipeline import run as run_mod
    from gtn_deploy.pipeline.config import load_config

    def stub(name):
        def build(*args):
            folder = next(a for a in args if isinstance(a, Path))  # the stage's work folder
            (folder / f"{name}.out").write_text(f"{name} output\n")
            return {"stub": name}
        return build

    for fn in ("_teacher", "_distill", "_export", "_bench"):
        monkeypatch.setattr(run_mod, fn, stub(fn))
    monkeypatch.setattr(run_mod, "write_report", lambda run: None)
    cfg = load_config(None, {"devices": "local", "task": "digits", "quick": True,
                             "baseline": "none"})
    lines: list[str] = []
    run = run_mod.run_pipeline(cfg, tmp / "run", log=lines.append)
    return cfg, run, lines


def test_damaged_stages_are_rebuilt_and_named(tmp_path, monkeypatch):
    from gtn_deploy.pipeline import run as run_mod

    cfg, first, _ = _stubbed_run(tmp_path, monkeypatch)
    assert "plan-local" in first.stages_run
    stages = {p.name.rsplit("-", 1)[0]: p for p in (tmp_path / "run" / "stages").iterdir()}
    (stages["plan-local"] / "_stage.json").write_text("{not json")
    (stages["student-local"] / "_distill.out").unlink()
    flipped = bytearray((stages["bundle-local"] / "_export.out").read_bytes())
    flipped[:4] = b"XXXX"
    (stages["bundle-local"] / "_export.out").write_bytes(bytes(flipped))

    dry = _invoke(["pipeline", "--dry-run", "--devices", "local", "--task", "digits",
                   "--quick", "--baseline", "none", "--out", tmp_path / "run", "--json"])
    assert dry.exit_code == 0 and "Traceback" not in dry.output, dry.output
    import json

    status = {s["name"]: s["status"] for s in json.loads(dry.stdout)["stages"]}
    assert status["plan-local"] == status["student-local"] == status["bundle-local"] == \
        "damaged (re-runs)"
    assert status["teacher"] == "cached"

    lines: list[str] = []
    again = run_mod.run_pipeline(cfg, tmp_path / "run", log=lines.append)
    assert again.stages_run == ["plan-local", "student-local", "bundle-local"]
    text = "\n".join(lines)
    assert "plan-local: its _stage.json is damaged; re-running" in text
    assert "student-local: its output _distill.out is missing; re-running" in text
    assert "bundle-local: its output _export.out changed since the stage wrote it" in text
    assert (stages["plan-local"] / "plan.json").is_file()


# -- 12: smaller silent wrongs ----------------------------------------------------------------

def _edited_bundle(tmp: Path, edit) -> Path:
    """A copy of the committed bundle with its manifest edited and re-hashed, so only the
    edit is wrong."""
    import json

    from gtn_deploy.manifest import manifest_digest

    folder = _bundle_copy(tmp)
    manifest = json.loads((folder / "manifest.json").read_text())
    edit(manifest)
    manifest["manifest_sha256"] = manifest_digest(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def _plan_doc(tmp: Path, arch: dict | None = None, **edits) -> Path:
    import json

    from gtn_deploy.spaces.mbconv import get_space

    space = get_space("digits")
    doc = {"schema_version": 1, "kind": "gtn_deploy.plan", "task": "digits", "space": "digits",
           "devices": [{"device": "dev-a",
                        "candidates": [{"arch": arch or space.min_arch().to_dict()}]}]}
    doc.update(edits)
    (tmp / "plan.json").write_text(json.dumps(doc))
    return tmp / "plan.json"


def _ofa(**edits) -> dict:
    from gtn_deploy.spaces.mbconv import get_space

    space = get_space("digits")
    arch = space.max_arch().to_ofa(max(space.depth_choices))
    arch.pop("r")
    arch.update(edits)
    return arch


def _predictor(tmp: Path, **edits) -> Path:
    import json

    from gtn_deploy.spaces.mbconv import get_space
    from gtn_deploy.search.predictor import PREDICTOR_KIND, encoding_size

    n = encoding_size(get_space("digits"))
    doc = {"kind": PREDICTOR_KIND, "space": "digits", "task": "digits", "mean": [0.5] * n,
           "scale": [0.5] * n, "weights": [0.1] * n, "bias": 90.0, "alpha": 1.0}
    # a number for an array fills it
    doc.update({k: [v] * n if k in ("mean", "scale", "weights") else v
                for k, v in edits.items()})
    (tmp / "pred.json").write_text(json.dumps(doc))
    return tmp / "pred.json"


def _distill_plan(tmp: Path, plan: Path, *extra) -> list:
    return ["distill", "--plan", plan, "--teacher", "none", "--out", tmp / "kd", "--device",
            "cpu", "--no-progress", *extra]


SILENT_CASES = [
    ("bench-output-shape-differs",
     lambda t: ["bench", _edited_bundle(t, lambda m: m["output"].update(shape=[1, 1000])),
                "--iters", "5"], "the manifest declares (1, 1000)"),
    ("verify-no-model",
     lambda t: ["bundle", "verify",
                _edited_bundle(t, lambda m: m["models"].update(fp32=None, int8=None))],
     "names no model"),
    ("bench-missing-precision-names-what-is-there",
     lambda t: ["bench", _edited_bundle(t, lambda m: m.update(
         models={"fp32": None, "int8": "model.onnx"}, recommended_precision="int8")),
         "--precision", "fp32", "--iters", "5", "--force"], "valid here: int8"),
    ("plan-predictor-nan",
     lambda t: ["plan", "--device", "rpi5", "--task", "digits", "--predictor",
                _predictor(t, bias=float("nan"))], "bias holds a value that is not finite"),
    ("plan-predictor-zero-scale",
     lambda t: ["plan", "--device", "rpi5", "--task", "digits", "--predictor",
                _predictor(t, scale=0.0)],
     "scale holds a value <= 0"),
    ("plan-predictor-1e308",
     lambda t: ["plan", "--device", "rpi5", "--task", "digits", "--predictor",
                _predictor(t, bias=1e308)], "beyond"),
    ("distill-dkd-without-teacher",
     lambda t: _distill_plan(t, _plan_doc(t), "--kd-loss", "dkd"), "needs a teacher"),
    ("plan-family-transformer",
     lambda t: _distill_plan(t, _plan_doc(t, family="transformer")),
     "family 'transformer' is not one"),
    ("ofa-arch-unknown-key",
     lambda t: _distill_plan(t, _plan_doc(t, arch=_ofa(r=[28], img_size=[28]))),
     "unknown keys ['img_size']"),
    ("ofa-arch-resolutions-disagree",
     lambda t: _distill_plan(t, _plan_doc(t, arch=_ofa(r=[28], image_size=[224]))),
     "disagree on the resolution"),
]


@pytest.mark.parametrize("build,needle", [pytest.param(*c[1:], id=c[0]) for c in SILENT_CASES])
def test_silent_wrongs_are_one_error_line(tmp_path, monkeypatch, build, needle):
    monkeypatch.chdir(tmp_path)
    argv = build(tmp_path)
    before = _listing(tmp_path)
    assert_one_error(_invoke(argv), needle)
    assert _listing(tmp_path) == before


def test_ofa_image_size_is_the_resolution():
    from gtn_deploy.spaces.mbconv import ArchConfig

    assert ArchConfig.from_dict(_ofa(image_size=[28])).resolution == 28
    assert ArchConfig.from_dict(_ofa(image_size=28, r=[28])).resolution == 28


# -- 8, 6: ImageFolder data is checked as it is read -----------------------------------------

def _image_tree(root: Path, layout: dict[str, dict[str, int]]) -> Path:
    """``root/<split>/<class>/<i>.png`` with ``layout[split][class]`` 8x8 images each."""
    from PIL import Image

    for split, classes in layout.items():
        for name, n in classes.items():
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.new("RGB", (8, 8), (i * 7 % 255, 0, 0)).save(folder / f"{i}.png")
    return root


def _teacher_on(tmp: Path, data: Path) -> list:
    return ["teacher", "train", "--task", "imagenet", "--data-dir", data, "--out",
            tmp / "run", "--method", "vanilla", "--epochs", "1", "--batch-size", "16",
            "--no-progress", "--device", "cpu"]


def _nested(tmp: Path) -> Path:
    root = _image_tree(tmp / "data", {"train": {"a": 12, "b": 12}, "val": {"a": 2, "b": 2}})
    (root / "train" / "b" / "sub").mkdir()
    for p in (root / "train" / "b").glob("*.png"):
        p.rename(root / "train" / "b" / "sub" / p.name)
    return root


def _linked(tmp: Path) -> Path:
    root = _image_tree(tmp / "data", {"train": {"a": 12, "b": 12}, "val": {"a": 2, "b": 2}})
    os.symlink(".", root / "train" / "c")
    return root


def _bomb(tmp: Path) -> Path:
    """A PNG that says it has 20000 x 20000 pixels (a decompression bomb), a few KB big."""
    import struct
    import zlib

    root = _image_tree(tmp / "data", {"train": {"a": 12, "b": 12}})
    side = 20000
    raw = zlib.compress(b"\0" * (side + 1) * 64)  # the first rows; the rest never decode

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + \
            struct.pack(">I", zlib.crc32(kind + data))

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0,
                                                           0, 0)) + \
        chunk(b"IDAT", raw) + chunk(b"IEND", b"")
    (root / "train" / "a" / "bomb.png").write_bytes(png)
    return root


IMAGE_CASES = [
    ("one-class", lambda t: _image_tree(t / "data", {"train": {"a": 20}}),
     "1 class folder(s) (a); a classifier needs at least 2"),
    ("val-split-empty", lambda t: _image_tree(t / "data", {"train": {"a": 4, "b": 4}}),
     "the validation split is empty"),
    ("class-in-subfolder", _nested, "12 images sit in its subfolders"),
    ("val-class-missing",
     lambda t: _image_tree(t / "data", {"train": {"a": 12, "b": 12, "c": 12},
                                        "val": {"a": 2, "b": 2}}),
     "lacks 1 of train's classes (c)"),
    ("class-linked-to-dot", _linked, "is a symbolic link"),
    ("decompression-bomb", _bomb, "bomb.png is too large to decode"),
]


@pytest.mark.parametrize("build,needle", [pytest.param(*c[1:], id=c[0]) for c in IMAGE_CASES])
def test_imagefolder_data_is_checked(tmp_path, monkeypatch, build, needle):
    monkeypatch.chdir(tmp_path)
    data = build(tmp_path)
    before = _listing(tmp_path)
    assert_one_error(_invoke(_teacher_on(tmp_path, data)), needle)
    # the run folder is made (checked writable) before the data is read: it stays empty
    after = {k: v for k, v in _listing(tmp_path).items() if k.split("/")[0] != "run"}
    assert after == before
    assert not [p for p in (tmp_path / "run").rglob("*") if p.is_file()]


# -- 6c, 11: bench threads; the estimate sizes what the run trains -----------------------------

def test_bench_threads_are_capped_by_the_cores(tmp_path):
    assert_one_error(_invoke(["bench", FIXTURES / "bundle_min", "--threads", "100000"]),
                     "--threads 100000: more than 4 per core")
    assert_one_error(_invoke(["bench", FIXTURES / "bundle_min", "--host", "me@board",
                              "--threads", "100000"]), "more than 4 per core")


def test_dry_run_estimate_sizes_teacher_and_students_as_the_run_does(tmp_path, monkeypatch):
    from gtn_deploy.data import load_task_data
    from gtn_deploy.pipeline import dry_run as dry
    from gtn_deploy.pipeline.config import load_config

    seen = {}

    def probe(cfg, archs, train_images, student_images):  # the timed steps, not under test
        seen.update(teacher=train_images, students=student_images)
        return {"teacher_s": 1.0, "student_run_s": {k: 1.0 for k in archs}}

    monkeypatch.setattr("gtn_deploy.pipeline.estimate.probe", probe)
    full = len(load_task_data("digits").train)
    cfg = load_config(None, {"devices": "local", "task": "digits", "quick": True,
                             "limit_train": 200, "distill_limit_train": 1000})
    dry.dry_run(cfg, tmp_path / "run")
    assert seen == {"teacher": 200, "students": min(1000, full)}
    cfg = load_config(None, {"devices": "local", "task": "digits", "quick": False,
                             "limit_train": 200})
    dry.dry_run(cfg, tmp_path / "run")
    assert seen == {"teacher": 200, "students": full}  # --full: students see every image


def test_limit_train_help_names_each_limit():
    result = CliRunner().invoke(app, ["pipeline", "--help"], env={"COLUMNS": "400"})
    assert "teacher trains on a stratified subset" in result.output
    assert "distill_limit_train" in result.output


# -- 15: a piped pipeline prints progress lines in its training stages -------------------------

def test_off_a_terminal_a_line_every_interval_whatever_the_step_rate(monkeypatch):
    import io

    from gtn_deploy import progress

    now = [0.0]
    monkeypatch.setattr(progress.time, "perf_counter", lambda: now[0])
    stream = io.StringIO()
    with progress.StepProgress(100, stream=stream, description="teacher", every_s=30) as bar:
        for step in range(1, 101):
            now[0] += 1.0  # one second a step: a line every 30 steps
            bar.update(step, 0, 128, loss=1.0, acc=50.0)
    lines = stream.getvalue().splitlines()
    assert [ln.split()[4] for ln in lines] == ["1/100", "31/100", "61/100", "91/100",
                                              "100/100"], lines
    assert all(ln.startswith("teacher: epoch 1 step ") and "img/s" in ln and "eta" in ln
               and "loss 1.0000" in ln for ln in lines)


def test_pipeline_training_stages_report_progress_when_piped(tmp_path):
    from gtn_deploy.pipeline import run as run_mod
    from gtn_deploy.pipeline.config import load_config

    cfg = load_config(None, {"devices": "local", "task": "digits", "quick": True})
    teacher = run_mod._teacher_config(cfg, [])
    kd = run_mod._kd_config(cfg, True)
    assert teacher.progress and kd.progress  # CliRunner is not a terminal: lines, not bars
    assert teacher.progress_every_s == kd.progress_every_s == run_mod.PROGRESS_EVERY_S
    # display only: the stage keys (and so every cached stage) do not change
    assert "progress_every_s" not in run_mod._teacher_inputs(cfg, [])


def test_the_cli_docs_list_the_ssh_option_allow_list():
    from gtn_deploy.bench.remote import SSH_OPTIONS

    docs = " ".join((Path(__file__).parents[1] / "docs" / "cli.md").read_text().split())
    assert ", ".join(SSH_OPTIONS) in docs
