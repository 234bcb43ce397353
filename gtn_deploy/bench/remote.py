"""``gtnd bench BUNDLE --host user@device[:port]``: time a bundle on another machine over SSH.

The system ``ssh`` carries everything in one connection: the files the bundle's own
``run_onnx.py`` needs go in as a tar stream on stdin, unpack into a fresh temporary folder
there, the script prints one JSON line (timing and the machine's fingerprint), and a shell
trap removes the folder however the run ends. The device needs python3, numpy and
onnxruntime, never gtn_deploy. Host keys are checked against known_hosts unless the caller
turns that off explicitly, and the result records which it was. ``gtnd calibrate --host``
(``bench.remote_calibrate``) sends its subnets and script through the same machinery.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
import shlex
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gtn_deploy.bench.run import (RESULT_KIND, RESULT_SCHEMA_VERSION, budget_verdict,
                                  compare_prediction, verdict_lines)
from gtn_deploy.timing import NOISY_TAIL_RATIO
from gtn_deploy.errors import BenchError, BundleError, UsageError
from gtn_deploy.machine import cores_text
from gtn_deploy.manifest import BundleManifest

SCRIPT = "run_onnx.py"
SUPPORT_FILES = ("manifest.json", "bundle_io.py", SCRIPT, "labels.txt")
CONNECT_TIMEOUT_S = 10
# exit statuses of the remote wrapper itself (the script exits 0, 1 or 2; ssh 255)
_NO_TEMP, _NO_UNPACK = 97, 98
_HOST_RE = re.compile(r"^(?:(?P<user>[^@\s:]+)@)?(?P<name>[A-Za-z0-9._-]+)(?::(?P<port>\d+))?$")


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
        if not m or m["name"].startswith("-"):
            raise UsageError(f"--host {spec!r}: expected user@host or user@host:port")
        port = int(m["port"]) if m["port"] else None
        if port is not None and not 0 < port < 65536:
            raise UsageError(f"--host {spec!r}: port must be 1..65535")
        return cls(m["name"], m["user"], port, **kwargs)

    @property
    def label(self) -> str:
        return (f"{self.user}@" if self.user else "") + self.name + (
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
        if self.port:
            argv += ["-p", str(self.port)]
        if self.user:
            argv += ["-l", self.user]
        return [*argv, "--", self.name, command]


def needed_files(manifest: BundleManifest, model: str) -> list[str]:
    """What ``run_onnx.py --model MODEL`` reads: the model, its script and their inputs."""
    listed = {"manifest.json", *manifest.files}  # the manifest lists the rest
    missing = [f for f in SUPPORT_FILES if f not in listed]
    if missing:  # a bundle from before the standalone scripts
        raise BundleError(f"this bundle has no {', '.join(missing)}; re-export it to bench "
                          "it on another machine")
    extra = [f"{model}.data"] if f"{model}.data" in listed else []  # external weights
    return [model, *extra, *SUPPORT_FILES]


def pack(bundle_dir: Path, names: list[str]):
    """The files as an uncompressed tar (models do not compress), rewound for reading."""
    buf = tempfile.TemporaryFile()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in names:
            tar.add(bundle_dir / name, arcname=name, recursive=False)
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
    try:
        proc = subprocess.run(target.argv(command), stdin=stdin, capture_output=True,
                              text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise BenchError(f"{target.label}: no result within {timeout_s:.0f} s") from None
    if proc.returncode == 255:
        raise BenchError(ssh_problem(target, proc.stderr))
    if proc.returncode != 0:
        raise BenchError(remote_problem(target, proc.returncode, proc.stderr))
    return proc.stdout


def parse_output(target: SshTarget, stdout: str, kind: str = "gtn_deploy.bundle_timing",
                 script: str = f"bundle's {SCRIPT}") -> dict[str, Any]:
    """The script's JSON line of ``kind`` (a login banner or shell chatter may come before
    it)."""
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            try:
                doc = json.loads(line)
            except ValueError:
                break
            if isinstance(doc, dict) and doc.get("kind") == kind:
                return doc
            break
    raise BenchError(f"{target.label}: the remote run printed no result (is the {script} "
                     "from this gtn_deploy version?)")


def bench_remote(path: str | Path, target: SshTarget, remote_python: str = "python3",
                 precision: str | None = None, threads: int | None = None,
                 warmup: int = 10, iters: int | None = None, force: bool = False,
                 timeout_s: float = 600.0) -> dict[str, Any]:
    """Time a bundle on ``target`` with its own run_onnx.py; the results document."""
    from gtn_deploy.manifest import load_manifest, open_bundle, verify_files

    if warmup < 0 or (iters is not None and iters < 1) or (threads is not None and threads < 1):
        raise UsageError("--warmup must be >= 0, --iters and --threads >= 1")
    with open_bundle(path) as bundle_dir:
        manifest = load_manifest(bundle_dir)
        problems = verify_files(bundle_dir)
        if problems and not force:
            raise BundleError(f"bundle {bundle_dir}: {problems[0]}; --force runs anyway")
        precision, model = _model(manifest, precision)
        args = ["--json", "--model", model, "--warmup", str(warmup)]
        args += ["--runs", str(iters)] if iters else []
        args += ["--threads", str(threads)] if threads else []
        with pack(bundle_dir, needed_files(manifest, model)) as tar:
            doc = parse_output(target, run_over_ssh(
                target, remote_command(remote_python, SCRIPT, args), tar, timeout_s))
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

