"""Resumable training: SIGKILL a run after a step checkpoint, resume, compare with a clean run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from safetensors.torch import load_file

ARGS = ["teacher", "train", "--method", "gtn", "--sampler", "learned", "--paths", "1",
        "--task", "digits", "--epochs", "2", "--batch-size", "16", "--limit-train", "64",
        "--limit-val", "32", "--checkpoint-every", "2", "--no-progress", "--device", "cpu",
        "--seed", "3"]
# time fields differ between runs by nature; everything else must match
TIMING = {"time_s", "img_per_s"}


def _cmd(out: Path, *extra: str) -> list[str]:
    code = "from gtn_deploy.cli.main import main; main()"
    return [sys.executable, "-c", code, *ARGS, "--out", str(out), *extra]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _metrics(run: Path) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(ln).items() if k not in TIMING} for ln in lines]


def _kill_after_checkpoint(proc: subprocess.Popen, ckpt: Path, result: dict) -> None:
    deadline = time.monotonic() + 150
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    result["alive"] = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def test_killed_run_resumes_to_identical_weights(tmp_path):
    import torch

    from gtn_deploy.cli.main import app
    from typer.testing import CliRunner

    clean, killed = tmp_path / "clean", tmp_path / "killed"
    victim = subprocess.Popen(_cmd(killed), env=_env(), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    state: dict = {}
    killer = threading.Thread(target=_kill_after_checkpoint,
                              args=(victim, killed / "checkpoint" / "last.pt", state))
    killer.start()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same kernels as the OMP_NUM_THREADS=1 subprocesses
    try:  # the uninterrupted reference runs here while the victim runs in its process
        reference = CliRunner().invoke(app, [*ARGS, "--out", str(clean)])
    finally:
        torch.set_num_threads(threads)
        killer.join()
    assert reference.exit_code == 0, reference.output
    assert state["alive"], "the run finished before it could be killed"
    assert not (killed / "summary.json").exists()

    resumed = subprocess.run(_cmd(killed, "--resume"), env=_env(), capture_output=True,
                             timeout=240)
    assert resumed.returncode == 0, resumed.stderr.decode()[-2000:]
    for sub, name in (("teacher", "teacher.safetensors"), ("supernet", "supernet.safetensors")):
        a, b = load_file(clean / sub / name), load_file(killed / sub / name)
        assert a.keys() == b.keys()
        for key in a:
            assert (a[key] - b[key]).abs().max() <= 1e-6, f"{sub}/{key} differs"
    assert _metrics(killed) == _metrics(clean)
    sampler_a = json.loads((clean / "sampler.json").read_text())
    sampler_b = json.loads((killed / "sampler.json").read_text())
    assert sampler_a == sampler_b and sampler_a["updates"] == 8
