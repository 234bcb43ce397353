"""gtnd bench --host and gtnd calibrate --host end to end (issue 16): a real OpenSSH server on
127.0.0.1 with a throwaway host key, user key, sshd_config and known_hosts, all in tmp. The
"device" is this machine, the remote python the venv's (numpy and onnxruntime; calibrate's
with gtn_deploy and torch made unimportable, as on a device).

Skips where /usr/sbin/sshd is missing; .ci/run installs openssh-server.
"""

from __future__ import annotations

import getpass
import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from cli_helpers import assert_one_line_error
from typer.testing import CliRunner

from gtn_deploy.cli.main import app

SSHD = Path("/usr/sbin/sshd")
BUNDLE = Path(__file__).parent / "fixtures" / "bundle_min"
RUNNER = CliRunner()

pytestmark = pytest.mark.skipif(
    not SSHD.is_file() or not shutil.which("ssh") or not shutil.which("ssh-keygen"),
    reason="needs OpenSSH (/usr/sbin/sshd, ssh, ssh-keygen): apt-get install openssh-server "
    "openssh-client (.ci/run does)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "gtnd-test",
                    "-f", str(path)], check=True)
    return path


def wait_listening(port: int, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.skip(f"sshd did not start: {log.read_text().strip()[-300:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    pytest.skip("sshd did not listen within 10 s")


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    d = tmp_path_factory.mktemp("sshd")
    host_key, user_key = keygen(d / "host_key"), keygen(d / "user_key")
    keygen(d / "other_key")
    (d / "authorized_keys").write_text((d / "user_key.pub").read_text())
    port = free_port()
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\n"
        f"AuthorizedKeysFile {d / 'authorized_keys'}\nPidFile {d / 'sshd.pid'}\n"
        "StrictModes no\nUsePAM no\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
        "PermitRootLogin prohibit-password\n")
    if os.geteuid() == 0:  # sshd as root wants its privilege-separation folder
        os.makedirs("/run/sshd", exist_ok=True)
    log = d / "sshd.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(d / "sshd_config")],
                                stdout=fh, stderr=subprocess.STDOUT)
    try:
        wait_listening(port, proc, log)
        key_type, key = (d / "host_key.pub").read_text().split()[:2]
        (d / "known_hosts").write_text(f"[127.0.0.1]:{port} {key_type} {key}\n")
        (d / "empty_known_hosts").write_text("")
        yield {"dir": d, "port": port, "host": f"{getpass.getuser()}@127.0.0.1:{port}",
               "user_key": user_key}
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def bench(sshd, *extra, known_hosts="known_hosts", key="user_key", host=None,
          python=sys.executable):
    args = ["bench", str(BUNDLE), "--host", host or sshd["host"], "--remote-python", python,
            "--identity", str(sshd["dir"] / key), "--iters", "50",
            "--ssh-option", f"UserKnownHostsFile={sshd['dir'] / known_hosts}",
            "--ssh-option", "GlobalKnownHostsFile=/dev/null", *extra]
    return RUNNER.invoke(app, args)


def leftovers() -> set[str]:
    return set(glob.glob(os.path.join("/tmp", "gtnd-bench.*")))


def test_bench_on_host_brings_back_timing_and_fingerprint(sshd, tmp_path):
    before = leftovers()
    out = tmp_path / "remote.json"
    res = bench(sshd, "--out", str(out))
    assert res.exit_code == 0, res.output
    assert f"on {sshd['host']}" in res.output and " ms  p90 " in res.output
    doc = json.loads(out.read_text())
    assert doc["kind"] == "gtn_deploy.bench_result" and doc["backend"] == "onnxruntime"
    t = doc["timing"]
    assert t["runs"] == 50 and 0 < t["p50_ms"] <= t["p90_ms"] <= t["p99_ms"]
    assert doc["remote"] == {"host": sshd["host"], "remote_python": sys.executable,
                             "host_key_checked": True}
    env = doc["environment"]
    import numpy
    import onnxruntime

    assert env["numpy"] == numpy.__version__ and env["onnxruntime"] == onnxruntime.__version__
    assert env["python"] == ".".join(map(str, sys.version_info[:3]))
    assert env["cpu_model"] and env["os"] and "power_mode" in env
    assert leftovers() == before  # the remote temp folder is gone


def test_unknown_host_key_is_refused_unless_insecure_flag_is_given(sshd, tmp_path):
    out = tmp_path / "r.json"
    res = bench(sshd, "--out", str(out), known_hosts="empty_known_hosts")
    assert_one_line_error(res, "host key", "--insecure-host-key")
    assert not out.exists()
    res = bench(sshd, "--json", "--insecure-host-key", known_hosts="empty_known_hosts")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["remote"]["host_key_checked"] is False


SSH_FAILURES = ("refused", "wrong_key", "bad_host")


def ssh_failure(case: str) -> tuple[dict, tuple[str, ...]]:
    """The arguments that make ssh itself fail, and the words its one error line holds."""
    user = getpass.getuser()
    if case == "refused":
        return {"host": f"{user}@127.0.0.1:{free_port()}"}, ("connection refused",)
    if case == "wrong_key":
        return {"key": "other_key"}, ("key was refused", "--identity")
    return {"host": f"{user}@no-such-device.invalid"}, ("unknown host",)


def onnxruntime_blocked(folder: Path) -> Path:
    """A folder that, first on the path, makes ``import onnxruntime`` fail."""
    block = folder / "block"
    block.mkdir()
    (block / "onnxruntime.py").write_text("raise ImportError('blocked for the test')\n")
    return block


@pytest.mark.parametrize("case", ["refused", "wrong_key", "bad_host", "no_numpy",
                                  "no_onnxruntime"])
def test_failures_are_one_line_and_write_nothing(sshd, tmp_path, case):
    if case in SSH_FAILURES:
        kwargs, needles = ssh_failure(case)
    elif case == "no_numpy":
        python = "/usr/bin/python3"
        if subprocess.run([python, "-c", "import numpy"], capture_output=True).returncode == 0:
            pytest.skip(f"{python} has numpy here")
        kwargs, needles = {"python": python}, ("numpy",)
    else:  # the venv's python with onnxruntime made unimportable
        kwargs = {"python": bare_python(tmp_path, onnxruntime_blocked(tmp_path))}
        needles = ("onnxruntime does not import",)
    before = leftovers()
    out = tmp_path / "r.json"
    res = bench(sshd, "--out", str(out), **kwargs)
    assert_one_line_error(res, *needles)
    assert not out.exists() and leftovers() == before


def test_host_spec_and_unsupported_flags_are_usage_errors():
    res = RUNNER.invoke(app, ["bench", str(BUNDLE), "--host", "me@host:99999"])
    assert_one_line_error(res, "port must be 1..65535")
    res = RUNNER.invoke(app, ["bench", str(BUNDLE), "--host", "me@host", "--seconds", "1"])
    assert_one_line_error(res, "--host runs the bundle's run_onnx.py")


# -- gtnd calibrate --host ----------------------------------------------------------------------

def bare_python(folder: Path, block: Path | None = None) -> str:
    """The venv's python with gtn_deploy and torch unimportable (and ``block`` first on the
    path): what a device has."""
    wrapper = folder / ("python-bare" if block is None else "python-blocked")
    path = f"PYTHONPATH={block} " if block else ""
    wrapper.write_text(
        f"#!/bin/sh\n{path}exec {sys.executable} -c \"import runpy, sys; "
        "sys.modules['gtn_deploy'] = None; sys.modules['torch'] = None; "
        "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')\" \"$@\"\n")
    wrapper.chmod(0o755)
    return str(wrapper)


def calibrate(sshd, tmp_path, *extra, key="user_key", host=None, python=None, quiet=False):
    args = (["-q"] if quiet else []) + [
        "calibrate", "--device", "local", "--host", host or sshd["host"],
        "--remote-python", python or bare_python(tmp_path), "--identity", str(sshd["dir"] / key),
        "--ssh-option", f"UserKnownHostsFile={sshd['dir'] / 'known_hosts'}",
        "--ssh-option", "GlobalKnownHostsFile=/dev/null", "--samples", "4", "--holdout", "2",
        "--rounds", "2", "--iters", "5", "--out", str(tmp_path / "remote.yaml"),
        "--report", str(tmp_path / "report.json"), *extra]
    return RUNNER.invoke(app, args)


def test_calibrate_on_host_records_the_device(sshd, tmp_path):
    from gtn_deploy.machine import cpu_model

    pytest.importorskip("torch")  # the subnets are exported here
    before = leftovers()
    res = calibrate(sshd, tmp_path)
    assert res.exit_code == 0, res.output
    assert f"to {sshd['host']}; measuring there in one ssh connection" in res.output
    assert f"measured on {sshd['host']} over ssh (host key checked)" in res.output
    c = yaml.safe_load((tmp_path / "remote.yaml").read_text())["calibration"]
    assert json.loads((tmp_path / "report.json").read_text()) == c
    assert c["remote"] == {"host": sshd["host"], "remote_python": str(tmp_path / "python-bare"),
                           "host_key_checked": True}
    import numpy
    import onnxruntime

    env = c["environment"]  # bundle_io's fingerprint of the device
    assert env["numpy"] == numpy.__version__ and env["onnxruntime"] == onnxruntime.__version__
    assert env["python"] == ".".join(map(str, sys.version_info[:3]))
    assert env["cpu_model"] and env["os"] and env["kernel"] and "power_mode" in env
    fp = c["fingerprint"]  # the same fingerprint a calibration on the device would have
    assert fp["cpu_model"] == cpu_model() and fp["runtime_version"] == onnxruntime.__version__
    assert fp["provider"] == "CPUExecutionProvider" and fp["threads"] == 1
    m = c["measurement"]
    assert m["train_subnets"] == 4 and m["held_out_subnets"] == 2 and m["rounds"][0] >= 2
    assert c["runtime"]["tier2"] is True and c["tier2"] is not None  # the node profiler ran
    assert c["tier"] in (1, 2) and set(c["validation"]["held_out"]) == {"0", "1", "2"}
    assert leftovers() == before
    # plan with it here: the device's fingerprint is not compared with this machine's
    from gtn_deploy.cli.main import app
    from typer.testing import CliRunner

    c["fingerprint"]["cpu_model"] = "another board"
    data = yaml.safe_load((tmp_path / "remote.yaml").read_text())
    data["calibration"] = c
    (tmp_path / "remote.yaml").write_text(yaml.safe_dump(data))
    plan = CliRunner().invoke(app, ["plan", "--device", str(tmp_path / "remote.yaml"),
                                    "--task", "fashion-mnist"])
    assert plan.exit_code == 0, plan.output
    assert "does not match this machine" not in plan.output


@pytest.fixture
def quick_export(monkeypatch):
    """Placeholder ONNX files: the failures below happen before any model is loaded."""
    from gtn_deploy.bench import remote_calibrate

    def export_all(space, archs, folder):
        paths = [folder / f"subnet_{i:03d}.onnx" for i in range(len(archs))]
        for path in paths:
            path.write_bytes(b"not read")
        return paths

    monkeypatch.setattr(remote_calibrate, "export_all", export_all)


@pytest.mark.parametrize("case", ["refused", "wrong_key", "bad_host", "no_onnxruntime"])
def test_calibrate_failures_are_one_line_and_write_nothing(sshd, tmp_path, case, quick_export):
    if case in SSH_FAILURES:
        kwargs, needles = ssh_failure(case)
    else:
        kwargs = {"python": bare_python(tmp_path, onnxruntime_blocked(tmp_path))}
        needles = ("onnxruntime does not import", "pip install onnxruntime")
    before = leftovers()
    res = calibrate(sshd, tmp_path, quiet=True, **kwargs)  # -q: the error line alone
    assert_one_line_error(res, *needles)
    assert not (tmp_path / "remote.yaml").exists() and not (tmp_path / "report.json").exists()
    assert leftovers() == before
    if case == "refused":  # without -q too: the device is checked before any export
        res = calibrate(sshd, tmp_path, **kwargs)
        assert_one_line_error(res, *needles)

