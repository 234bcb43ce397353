"""``gtnd bench BUNDLE --host user@device[:port]``: time a bundle on another machine over SSH.

The system ``ssh`` carries everything in one connection: the files ``run_onnx.py`` needs
(the scripts from this installation, never the bundle's copies) go in as a tar stream on
stdin, unpack into a fresh temporary folder there, the script prints one JSON line (timing
and the machine's fingerprint), and a shell trap removes the folder however the run ends.
The device needs python3, numpy and onnxruntime, never gtn_deploy; a first short connection
(``device_check.py``) checks them before anything else is sent. Host keys are checked
against known_hosts unless the caller turns that off explicitly, and the result records
which it was. Only the ssh options in SSH_OPTIONS pass; keep-alives and a bound that scales
with the work end a stalled exchange; every answer is checked by ``bench.remote_doc``.
``gtnd calibrate --host`` (``bench.remote_calibrate``) uses the same machinery.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import re
import shlex
import shutil
import signal
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gtn_deploy.bench import remote_doc
from gtn_deploy.bench.remote_doc import read_answer
from gtn_deploy.bench.run import (RESULT_KIND, RESULT_SCHEMA_VERSION, budget_verdict, check_threads,
                                  compare_prediction, verdict_lines)
from gtn_deploy.errors import BenchError, BundleError, UsageError
from gtn_deploy.machine import cores_text
from gtn_deploy.manifest import BundleManifest, load_manifest, open_bundle, verify_files
from gtn_deploy.timing import NOISY_TAIL_RATIO

SCRIPT = "run_onnx.py"
SUPPORT_FILES = ("manifest.json", "bundle_io.py", SCRIPT, "labels.txt")
# the scripts that run on the device come from this installation (export/ writes the same
# files into bundles), never from the bundle
_EXPORT_DIR = Path(__file__).resolve().parents[1] / "export"
OWN_SCRIPTS = {name: _EXPORT_DIR / name for name in ("bundle_io.py", SCRIPT)}
DEVICE_CHECK = Path(__file__).resolve().with_name("device_check.py")
CONNECT_TIMEOUT_S = 10
REMOTE_CORES_MAX = 64  # a bound for --threads before the device's core count is known
# connecting and starting python there: a device that stalls after its banner fails here
CHECK_TIMEOUT_S = CONNECT_TIMEOUT_S + 20.0
# exit statuses of the remote wrapper itself (the script exits 0, 1 or 2; ssh 255)
_NO_TEMP, _NO_UNPACK = 97, 98
# A user name as useradd allows it (no leading '-': ssh would read an option); a host name,
# IPv4 address or a bracketed IPv6 literal ("user@[::1]:22").
_HOST_RE = re.compile(r"^(?:(?P<user>[A-Za-z0-9_.][A-Za-z0-9_.-]{0,31})@)?"
                      r"(?:(?P<name>[A-Za-z0-9._-]+)|\[(?P<v6>[0-9A-Fa-f:.]+)\])"
                      r"(?::(?P<port>\d+))?$")
# What a remote run may set with --ssh-option: where and as whom to connect, which keys,
# and timeouts. Anything else (ProxyCommand, LocalCommand, KnownHostsCommand, Include, ...)
# could run a command here, so it is refused.
SSH_OPTIONS = ("AddressFamily", "BindAddress", "CheckHostIP", "Ciphers", "Compression",
               "ConnectionAttempts", "ConnectTimeout", "GlobalKnownHostsFile",
               "HostKeyAlgorithms", "HostKeyAlias", "HostName", "IdentitiesOnly",
               "IdentityFile", "IPQoS", "KexAlgorithms", "MACs", "Port",
               "PubkeyAcceptedAlgorithms", "PubkeyAcceptedKeyTypes", "ServerAliveCountMax",
               "ServerAliveInterval", "StrictHostKeyChecking", "TCPKeepAlive", "User",
               "UserKnownHostsFile")
_OPTION_RE = re.compile(r"^\s*(?P<key>[A-Za-z]+)\s*(?:=|\s)\s*(?P<value>\S.*)$")
# a stalled connection is dropped after SERVER_ALIVE_S * SERVER_ALIVE_COUNT seconds
SERVER_ALIVE_S, SERVER_ALIVE_COUNT = 5, 3


@dataclass(frozen=True)
class SshTarget:
    """Where to connect and how: ``user@name:port`` and the ssh client options."""

    name: str
    user: str | None = None
    port: int | None = None
    identity: Path | None = None
    options: tuple[str, ...] = ()
    insecure_host_key: bool = False

    @classmethod
    def parse(cls, spec: str, **kwargs: Any) -> "SshTarget":
        """``[user@]host[:port]``; anything else is a UsageError."""
        m = _HOST_RE.match(spec.strip())
        if not m or (m["name"] or "").startswith("-"):
            raise UsageError(f"--host {spec!r}: expected user@host[:port] (user and host of "
                             "letters, digits, '.', '_', '-'; an IPv6 address in brackets: "
                             "user@[::1]:22)")
        port = int(m["port"]) if m["port"] else None
        if port is not None and not 0 < port < 65536:
            raise UsageError(f"--host {spec!r}: port must be 1..65535")
        options = tuple(check_ssh_option(o) for o in kwargs.pop("options", ()))
        return cls(m["name"] or m["v6"], m["user"], port, options=options, **kwargs)

    @property
    def label(self) -> str:
        name = f"[{self.name}]" if ":" in self.name else self.name
        return (f"{self.user}@" if self.user else "") + name + (
            f":{self.port}" if self.port else "")

    def argv(self, command: str) -> list[str]:
        """The ssh command line that runs ``command`` (a shell line) there."""
        ssh = shutil.which("ssh")
        if ssh is None:
            raise BenchError("--host needs the ssh client: install openssh-client")
        # BatchMode: never prompt (a password prompt would hang a benchmark)
        argv = [ssh, "-o", "BatchMode=yes", "-o", f"ConnectTimeout={CONNECT_TIMEOUT_S}",
                "-o", "LogLevel=ERROR"]
        if self.insecure_host_key:
            argv += ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
        else:
            argv += ["-o", "StrictHostKeyChecking=yes"]
        if self.identity is not None:
            argv += ["-i", str(self.identity), "-o", "IdentitiesOnly=yes"]
        for opt in self.options:
            argv += ["-o", opt]
        # after the user's (ssh keeps an option's first value): a device that stops
        # answering mid-run is dropped instead of holding the run until its timeout
        argv += ["-o", f"ServerAliveInterval={SERVER_ALIVE_S}",
                 "-o", f"ServerAliveCountMax={SERVER_ALIVE_COUNT}"]
        if self.port:
            argv += ["-p", str(self.port)]
        if self.user:
            argv += ["-l", self.user]
        return [*argv, "--", self.name, command]


def check_ssh_option(option: str) -> str:
    """``option`` as ``Key=value`` if its key is in SSH_OPTIONS, else a UsageError."""
    m = _OPTION_RE.match(option)
    allowed = {k.lower(): k for k in SSH_OPTIONS}
    if not m or m["key"].lower() not in allowed or any(ord(c) < 32 for c in option):
        key = m["key"] if m else option.split("=")[0][:40]
        raise UsageError(f"--ssh-option {key!r} is not allowed; allowed: "
                         f"{', '.join(SSH_OPTIONS)} (as KEY=VALUE)")
    return f"{allowed[m['key'].lower()]}={m['value'].strip()}"


def needed_files(manifest: BundleManifest, model: str) -> list[str]:
    """What ``run_onnx.py --model MODEL`` reads: the model, its script and their inputs."""
    listed = {"manifest.json", *manifest.files}  # the manifest lists the rest
    missing = [f for f in SUPPORT_FILES if f not in listed]
    if missing:  # a bundle from before the standalone scripts
        raise BundleError(f"this bundle has no {', '.join(missing)}; re-export it to bench "
                          "it on another machine")
    extra = [f"{model}.data"] if f"{model}.data" in listed else []  # external weights
    return [model, *extra, *SUPPORT_FILES]


def pack(bundle_dir: Path, names: list[str], own: dict[str, Path] | None = None):
    """The files as an uncompressed tar (models do not compress), rewound for reading;
    a name in ``own`` is sent from that path instead of the folder."""
    buf = tempfile.TemporaryFile()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in names:
            tar.add((own or {}).get(name, bundle_dir / name), arcname=name, recursive=False)
    buf.seek(0)
    return buf


def remote_command(python: str, script: str, args: list[str]) -> str:
    """One POSIX shell line: a temp folder, removed on any exit, the files, ``script``
    (one of the files) run with ``python``."""
    run = " ".join(shlex.quote(a) for a in [python, script, *args])
    return (f'd=$(mktemp -d "${{TMPDIR:-/tmp}}/gtnd-bench.XXXXXX") || exit {_NO_TEMP}; '
            "trap 'rm -rf \"$d\"' EXIT; trap 'exit 129' HUP INT TERM; "
            f'tar -xf - -C "$d" || exit {_NO_UNPACK}; cd "$d" && {run}')


def ssh_problem(target: SshTarget, stderr: str) -> str:
    """ssh's own failure (exit 255) as one line that says what to do."""
    text = stderr.strip()
    where = target.label
    if "Host key verification failed" in text or "host key for" in text.lower():
        return (f"{where}: its host key is not in known_hosts or has changed; check the "
                f"device's key and add it (ssh-keyscan, or one interactive ssh), or pass "
                "--insecure-host-key to skip the check (recorded in the result)")
    if "Could not resolve hostname" in text or "Name or service not known" in text:
        return f"{where}: unknown host (the name does not resolve)"
    if "Connection refused" in text:
        return f"{where}: connection refused (is sshd running on that port?)"
    if "not responding" in text:
        return (f"{where}: stopped answering mid-run (no reply to keep-alives for "
                f"{SERVER_ALIVE_S * SERVER_ALIVE_COUNT} s)")
    if "timed out" in text:
        return f"{where}: no answer within {CONNECT_TIMEOUT_S} s (host down or port filtered)"
    if "Permission denied" in text:
        return (f"{where}: the key was refused (permission denied); give the right key with "
                "--identity FILE, or the right user")
    last = text.splitlines()[-1] if text else "ssh failed"
    return f"{where}: {last[:300]}"


def remote_problem(target: SshTarget, rc: int, stderr: str) -> str:
    """The remote side's failure as one line: the script's own ``error:`` line when there is
    one, else what the shell said."""
    if rc == _NO_TEMP:
        return f"{target.label}: cannot create a temporary folder (mktemp)"
    if rc == _NO_UNPACK:
        return f"{target.label}: cannot unpack the files sent (is tar installed, the disk full?)"
    lines = [ln.strip() for ln in stderr.strip().splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]
    if errors:
        return f"{target.label}: {errors[-1][len('error:'):].strip()}"
    if rc == 127:
        return f"{target.label}: the remote python was not found (--remote-python)"
    last = lines[-1] if lines else f"exit status {rc}"
    return f"{target.label}: the remote run failed: {last[:300]}"


def run_over_ssh(target: SshTarget, command: str, stdin, timeout_s: float) -> str:
    """Run ``command`` there with ``stdin``; its stdout, or a one-line BenchError."""
    # a session of its own: on a timeout the whole group goes (a ProxyJump or an ssh
    # helper holding the pipes would otherwise keep communicate() waiting)
    proc = subprocess.Popen(target.argv(command), stdin=stdin, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        raise BenchError(f"{target.label}: no result within {timeout_s:.0f} s (the device "
                         "stopped answering, or the work took far longer than expected)"
                         ) from None
    except BaseException:
        _kill_group(proc)
        raise
    if proc.returncode == 255:
        raise BenchError(ssh_problem(target, stderr))
    if proc.returncode != 0:
        raise BenchError(remote_problem(target, proc.returncode, stderr))
    return stdout


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()


def parse_output(target: SshTarget, stdout: str, kind: str = "gtn_deploy.bundle_timing",
                 script: str = f"bundle's {SCRIPT}") -> dict[str, Any]:
    """The script's JSON line of ``kind``, read without trusting its size or depth."""
    return read_answer(target.label, stdout, kind, script)


def check_device(target: SshTarget, remote_python: str) -> dict[str, Any]:
    """Connect, and check the python, numpy and onnxruntime there, within a short bound:
    a refused connection, a stalled device or a missing runtime fails here, before any
    export or transfer."""
    with pack(DEVICE_CHECK.parent, [DEVICE_CHECK.name]) as tar:
        stdout = run_over_ssh(target, remote_command(remote_python, DEVICE_CHECK.name, []),
                              tar, CHECK_TIMEOUT_S)
    doc = remote_doc.check_device(target.label, read_answer(
        target.label, stdout, "gtn_deploy.device_check", DEVICE_CHECK.name))
    if tuple(int(x) for x in re.findall(r"\d+", doc["python"])[:2]) < (3, 8):
        raise BenchError(f"{target.label}: python {doc['python']} there; the scripts need "
                         "3.8 or newer (--remote-python)")
    return doc


def bench_timeout_s(size_bytes: int, calls: int, predicted_ms: float | None) -> float:
    """A bound on one bench exchange that scales with the work: connecting, sending the
    files at a slow 1 MB/s, and each call at 50x its predicted latency (at least 0.2 s)."""
    per_call_s = max(0.2, 50 * (predicted_ms or 0) / 1e3)
    return CONNECT_TIMEOUT_S + 30 + size_bytes / 1e6 + calls * per_call_s


def bench_remote(path: str | Path, target: SshTarget, remote_python: str = "python3",
                 precision: str | None = None, threads: int | None = None,
                 warmup: int = 10, iters: int | None = None, force: bool = False,
                 timeout_s: float | None = None) -> dict[str, Any]:
    """Time a bundle on ``target`` with gtn_deploy's run_onnx.py; the results document.
    ``timeout_s``: None scales the bound with the work (``bench_timeout_s``)."""
    if warmup < 0 or (iters is not None and iters < 1) or (threads is not None and threads < 1):
        raise UsageError("--warmup must be >= 0, --iters and --threads >= 1")
    check_threads(threads, REMOTE_CORES_MAX)  # the device's cores are not known yet
    with open_bundle(path) as bundle_dir:
        manifest = load_manifest(bundle_dir)
        problems = verify_files(bundle_dir)
        if problems and not force:
            raise BundleError(f"bundle {bundle_dir}: {problems[0]}; --force runs anyway")
        precision, model = _model(manifest, precision)
        args = ["--json", "--model", model, "--warmup", str(warmup)]
        args += ["--runs", str(iters)] if iters else []
        args += ["--threads", str(threads)] if threads else []
        names = needed_files(manifest, model)
        check_device(target, remote_python)
        if timeout_s is None:
            timeout_s = bench_timeout_s(
                sum((bundle_dir / n).stat().st_size for n in names), warmup + (iters or 100),
                (manifest.latency_prediction or {}).get("latency_ms"))
        # our own scripts run there, never the bundle's: a bundle from elsewhere must not
        # run its author's Python on the device
        with pack(bundle_dir, names, own=OWN_SCRIPTS) as tar:
            doc = remote_doc.check_bundle_timing(target.label, parse_output(
                target, run_over_ssh(target, remote_command(remote_python, SCRIPT, args), tar,
                                     timeout_s)), iters)
    return _result(path, manifest, target, remote_python, precision, threads, doc, problems)


def _model(manifest: BundleManifest, precision: str | None) -> tuple[str, str]:
    """(precision, ONNX file) to time, as local onnxruntime bench picks them."""
    models = manifest.models
    if precision is None:
        precision = "int8" if manifest.recommended_precision == "int8" else "fp32"
    if not models.get(precision):
        raise UsageError(f"--precision {precision}: this bundle has no {precision} ONNX model "
                         f"(it has {', '.join(k for k, v in models.items() if v)})")
    return precision, models[precision]


def _result(path, manifest, target, remote_python, precision, threads, doc,
            problems) -> dict[str, Any]:
    t = doc["timing"]
    ratio = t["p99_ms"] / t["p50_ms"] if t["p50_ms"] > 0 else None
    warning = None
    if ratio is not None and ratio > NOISY_TAIL_RATIO:
        warning = (f"noisy run: p99 is {ratio:.1f}x p50 (threshold {NOISY_TAIL_RATIO}x) on "
                   f"{target.label}; trust p50 and rerun on a quiet device for the tail")
    return {
        "schema_version": RESULT_SCHEMA_VERSION, "kind": RESULT_KIND,
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "bundle": {"path": str(path), **manifest.identity()},
        "backend": doc["runtime"], "precision": precision, "batch_size": t["batch_size"],
        "threads": threads, "runner": {"script": SCRIPT, "model": doc["model"],
                                       "runtime_version": doc["runtime_version"],
                                       **doc.get("detail", {})},
        "timing": {k: round(v, 5) if isinstance(v, float) else v for k, v in t.items()},
        "prediction": compare_prediction(manifest, t["p50_ms"], precision, t["batch_size"]),
        # the host is the device the user named: its measurement is taken as on target
        "budget": budget_verdict(manifest, t, on_target=True),
        "noise": {"p99_over_p50": None if ratio is None else round(ratio, 3),
                  "warning": warning},
        "forced": problems,
        "remote": {"host": target.label, "remote_python": remote_python,
                   "host_key_checked": not target.insecure_host_key},
        "environment": doc["machine"],
    }


def format_remote(r: dict) -> str:
    """The terminal summary of a remote result."""
    t, env, remote = r["timing"], r["environment"], r["remote"]
    lines = [
        f"{r['bundle']['name']} | {r['backend']} {r['runner']['runtime_version']} "
        f"{r['runner'].get('provider', '')} {r['precision']} batch {r['batch_size']} "
        f"on {remote['host']}" + ("" if remote["host_key_checked"]
                                  else " (host key NOT checked: --insecure-host-key)"),
        f"  {env.get('cpu_model')} ({env.get('machine')}, {cores_text(env.get('cpu_count'))}), "
        f"{env.get('os')}, python {env.get('python')}, numpy {env.get('numpy')}"
        + (f", power mode {env['power_mode']}" if env.get("power_mode") else ""),
        f"  p50 {t['p50_ms']:.3f} ms  p90 {t['p90_ms']:.3f} ms  p95 {t['p95_ms']:.3f} ms  "
        f"p99 {t['p99_ms']:.3f} ms",
        f"  mean {t['mean_ms']:.3f} ms  min {t['min_ms']:.3f} ms  max {t['max_ms']:.3f} ms  "
        f"{t['throughput_ips']:.1f} img/s over {t['runs']} runs (warm-up {t['warmup']})",
    ]
    return "\n".join(lines + verdict_lines(r))

