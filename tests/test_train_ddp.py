"""DDP: 2 CPU processes with gloo (started as torchrun starts them) against one process
with the same global batch.

BatchNorm normalises each process's half-batch, so the single-process reference runs the
same global batch in 2 micro-batches with gradient accumulation (``--micro-batches 2``):
that is the arithmetic of DDP over 2 ranks. Parameters and the logged training metrics must
agree; BN running statistics may not (DDP keeps rank 0's, accumulation sees both halves).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

ARGS = ["teacher", "train", "--method", "gtn", "--sampler", "learned", "--paths", "1",
        "--task", "digits", "--epochs", "1", "--batch-size", "32", "--limit-train", "64",
        "--limit-val", "32", "--no-progress", "--device", "cpu"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _train_metrics(run: Path) -> list[dict]:
    keep = ("loss", "teacher_ce", "train_acc", "branch_loss", "kl_a", "lr", "global_step")
    out = []
    for line in (run / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec["event"] in ("step", "epoch"):
            out.append({k: rec.get(k) for k in keep})
    return out


def test_two_gloo_processes_match_one_process(tmp_path):
    import torch
    from typer.testing import CliRunner

    from gtn_deploy.cli.main import app

    ddp, single = tmp_path / "ddp", tmp_path / "single"
    # torchrun's static rendezvous, without its launcher process (seconds of imports)
    rendezvous = {"WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
                  "MASTER_PORT": str(_free_port()), "LOCAL_WORLD_SIZE": "2"}
    code = "from gtn_deploy.cli.main import main; main()"
    ranks = [subprocess.Popen([sys.executable, "-c", code, *ARGS, "--out", str(ddp)],
                              env={**_env(), **rendezvous, "RANK": str(r), "LOCAL_RANK": str(r)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for r in (0, 1)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        reference = CliRunner().invoke(app, [*ARGS, "--micro-batches", "2", "--out",
                                             str(single)])
    finally:
        torch.set_num_threads(threads)
    for proc in ranks:
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err.decode()[-3000:]
    assert reference.exit_code == 0, reference.output
    assert json.loads((ddp / "config.json").read_text())["world_size"] == 2
    for sub, name in (("teacher", "teacher.safetensors"), ("supernet", "supernet.safetensors")):
        a, b = load_file(ddp / sub / name), load_file(single / sub / name)
        params = [k for k in a if "running_" not in k and "num_batches" not in k]
        assert params
        for key in params:
            assert (a[key] - b[key]).abs().max() <= 1e-5, f"{sub}/{key} differs"
    _assert_close(_train_metrics(ddp), _train_metrics(single))
    probs = [json.loads((run / "sampler.json").read_text())["probabilities"]
             for run in (ddp, single)]
    assert probs[0].keys() == probs[1].keys()
    for name in probs[0]:
        assert probs[0][name] == pytest.approx(probs[1][name], abs=1e-5), name


def _assert_close(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b) and a
    for ra, rb in zip(a, b):
        assert ra.keys() == rb.keys()
        for key in ra:
            assert ra[key] == pytest.approx(rb[key], rel=1e-5, abs=1e-6), (key, ra, rb)
