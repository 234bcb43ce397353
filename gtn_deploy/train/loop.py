"""One checkpointed, DDP-aware training run, driven by a step object.

Every kind of training here (a teacher under vanilla, SFTN or GTN; a student under KD or
plain CE) is the same run: seed everything, move the trained module to the device in
channels_last, SGD with Nesterov momentum, a linear warm-up then cosine schedule per step,
mixed precision by one policy, the epoch loop with progress, a metrics log and checkpoints
(DIR/checkpoint/last.pt at the end of every epoch and every ``checkpoint_every`` steps), and
an exact resume: the data order is a function of (seed, epoch) and the checkpoint holds the
optimiser, schedule, scaler, RNG states, the epoch's running sums and the log's length, so a
resumed run replays exactly what an uninterrupted one does.

What differs is one step: a ``Step`` runs the forward and backward of a batch and may do
something after the optimiser's update (GTN's sampler learns from it). ``RunLoop`` does all
the rest.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
import torch

from gtn_deploy.data import BatchPlan, TaskData, normalize, train_batches
from gtn_deploy.progress import StepProgress
from gtn_deploy.train import checkpoint as ckpt
from gtn_deploy.train.distributed import DistInfo
from gtn_deploy.train.metrics import Meters, MetricsLog


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def amp_policy(device: str) -> tuple[torch.dtype | None, Any]:
    """(autocast dtype, grad scaler): bf16 where the GPU has it, else fp16 with a scaler;
    full precision on CPU (autocast there is slower for these small convolutions)."""
    if not device.startswith("cuda"):
        return None, None
    if torch.cuda.is_bf16_supported():
        return torch.bfloat16, None
    return torch.float16, torch.amp.GradScaler("cuda")


def warmup_cosine(total_steps: int, warmup_frac: float) -> Callable[[int], float]:
    """LR factor per step: linear warm-up, then cosine decay to 0."""
    warm = max(0, int(warmup_frac * total_steps))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))

    return factor


@dataclass(frozen=True)
class LoopConfig:
    """The settings of the run around the step (all from the run's own config)."""

    epochs: int
    lr: float
    momentum: float
    weight_decay: float
    warmup_frac: float
    seed: int
    augment: bool
    checkpoint_every: int  # steps; 0: only at the end of each epoch
    log_every: int
    progress: bool
    progress_every_s: float | None = None


class Step(Protocol):
    """One batch of one kind of training."""

    name: str  # the progress label: "teacher", "student jetson-orin-nano", ...
    module: torch.nn.Module  # what the optimiser trains and the checkpoint holds
    clip_groups: dict[str, list[torch.nn.Parameter]]  # each clipped on its own; {}: none
    meters: Callable[[], Meters]  # a fresh epoch's running sums

    def forward_backward(self, loop: "RunLoop", x: torch.Tensor, y: torch.Tensor,
                         index: torch.Tensor) -> Any:
        """Gradients of one normalised channels_last batch, through ``loop.backward``;
        returns what ``after_update`` needs."""
        ...

    def after_update(self, loop: "RunLoop", out: Any) -> dict[str, float]:
        """After the optimiser and schedule stepped: the step's statistics for the meters."""
        ...

    def end_of_epoch(self, loop: "RunLoop", img_per_s: float | None) -> dict[str, float]:
        """Figures added to the epoch's log record (a teacher's validation accuracy and the
        epoch's throughput)."""
        ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class RunLoop:
    def __init__(self, step: Step, cfg: LoopConfig, out: Path, data: TaskData, task,
                 plan: BatchPlan, info: DistInfo, run_config: dict[str, Any]):
        self.step_obj, self.cfg, self.out = step, cfg, Path(out)
        self.data, self.task, self.plan, self.info = data, task, plan, info
        self.run_config = run_config  # checked against the checkpoint on resume
        self.total_steps = cfg.epochs * plan.steps
        self.log = MetricsLog(self.out / "metrics.jsonl", info.is_main)
        self.amp_dtype, self.scaler = amp_policy(info.device)
        self.optimizer = torch.optim.SGD(step.module.parameters(), lr=cfg.lr,
                                         momentum=cfg.momentum, nesterov=True,
                                         weight_decay=cfg.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, warmup_cosine(self.total_steps, cfg.warmup_frac))

    @property
    def steps_done(self) -> int:
        """Optimiser steps taken so far (restored on resume with the schedule)."""
        return self.scheduler.last_epoch

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler else loss).backward()

    # -- checkpoints -------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.out / ckpt.CHECKPOINT_NAME

    def load_checkpoint(self) -> dict[str, Any] | None:
        """The checkpoint to resume from, if there is one (its config must match)."""
        path = self.checkpoint_path
        return ckpt.load_checkpoint(path, self.run_config) if path.exists() else None

    def _state(self, epoch: int, step: int, global_step: int, meters: Meters,
               log: MetricsLog) -> dict[str, Any]:
        return {"config": json.dumps(self.run_config, sort_keys=True), "epoch": epoch,
                "step": step, "global_step": global_step,
                "model": self.step_obj.module.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler else None,
                "step_state": self.step_obj.state_dict(), "meters": meters.state_dict(),
                "metrics_bytes": log.size(), "rng": ckpt.rng_state()}

    def _save(self, *args) -> None:
        if self.info.is_main:
            ckpt.save_checkpoint(self.checkpoint_path, self._state(*args))

    def _restore(self, state: dict[str, Any], meters: Meters) -> tuple[int, int, int]:
        self.step_obj.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        # checkpoints written before this loop kept a teacher's sampler at the top level and
        # no global step for students: both are read, so older runs still resume
        self.step_obj.load_state_dict(state.get("step_state")
                                      or {"sampler": state.get("sampler")})
        meters.load_state_dict(state["meters"])
        ckpt.set_rng_state(state["rng"])
        global_step = state.get("global_step", state["epoch"] * self.plan.steps + state["step"])
        return state["epoch"], state["step"], global_step

    # -- the loop ----------------------------------------------------------------------------
    def run(self, resume_state: dict[str, Any] | None) -> float:
        """Train (or continue) to the last epoch; returns the seconds it took this time."""
        start, log = time.perf_counter(), self.log
        epoch, step, global_step, meters = 0, 0, 0, self.step_obj.meters()
        if resume_state is not None:
            epoch, step, global_step = self._restore(resume_state, meters)
            log.truncate(resume_state["metrics_bytes"])
        else:
            log.truncate(0)
        with StepProgress(self.total_steps, self.cfg.progress and self.info.is_main,
                          self.cfg.log_every, description=self.step_obj.name,
                          every_s=self.cfg.progress_every_s) as progress:
            while epoch < self.cfg.epochs:
                global_step = self._epoch(epoch, step, global_step, meters, log, progress)
                epoch, step, meters = epoch + 1, 0, self.step_obj.meters()
                self._save(epoch, 0, global_step, meters, log)
        return time.perf_counter() - start

    def _epoch(self, epoch: int, start_step: int, global_step: int, meters: Meters,
               log: MetricsLog, progress: StepProgress) -> int:
        cfg, t0, images_seen = self.cfg, time.perf_counter(), 0
        self.step_obj.module.train()
        for step, images, labels, index in train_batches(
                self.data.train, self.task, self.plan, cfg.seed, epoch, start_step,
                cfg.augment, with_index=True):
            stats = self._step(images, labels, index)
            meters.add(stats)
            global_step += 1
            images_seen += int(stats["n"])
            progress.update(global_step, epoch, int(stats["n"]), loss=meters.mean("loss"),
                            acc=meters.accuracy())
            if global_step % cfg.log_every == 0 or step + 1 == self.plan.steps:
                log.write({"event": "step", "epoch": epoch, "step": step + 1,
                           "global_step": global_step, "lr": self.scheduler.get_last_lr()[0],
                           **meters.summary()})
            if cfg.checkpoint_every and global_step % cfg.checkpoint_every == 0 \
                    and step + 1 < self.plan.steps:
                self._save(epoch, step + 1, global_step, meters, log)
        seconds = time.perf_counter() - t0  # training only, not the evaluation
        extra = self.step_obj.end_of_epoch(
            self, round(images_seen / seconds, 1) if seconds > 0 else None)
        record = {"event": "epoch", "epoch": epoch, "global_step": global_step,
                  **meters.summary(), **extra, "lr": self.scheduler.get_last_lr()[0],
                  "time_s": round(time.perf_counter() - t0, 3)}
        log.write(record)
        val = f" val top-1 {extra['val_top1']:.2f}%" if "val_top1" in extra else ""
        progress.message(f"{self.step_obj.name} epoch {epoch + 1}/{cfg.epochs}: loss "
                         f"{record['loss']:.4f} train acc {meters.accuracy():.2f}%{val}")
        return global_step

    def _step(self, images: torch.Tensor, labels: torch.Tensor,
              index: torch.Tensor) -> dict[str, float]:
        dev = self.info.device
        x = normalize(images.to(dev, non_blocking=True), self.task)
        x = x.contiguous(memory_format=torch.channels_last)
        y = labels.to(dev, non_blocking=True)
        self.optimizer.zero_grad(set_to_none=True)
        out = self.step_obj.forward_backward(self, x, y, index)
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        clipped = {}
        clip = getattr(self.step_obj, "clip_grad", 0.0)
        if clip > 0:
            # per group: one joint norm let the branches' large gradients shrink the
            # teacher's step (it bound on 20-28% of GTN steps, on no vanilla step)
            for name, params in self.step_obj.clip_groups.items():
                norm = torch.nn.utils.clip_grad_norm_(params, clip)
                clipped[f"clipped_{name}"] = float(norm > clip)
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        return {**self.step_obj.after_update(self, out), **clipped}
