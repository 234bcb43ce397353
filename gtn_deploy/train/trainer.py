"""The teacher-training loop shared by ``gtn``, ``sftn`` and ``vanilla``.

One step: draw m paths from the sampler, one forward of ``TeacherObjective`` (teacher and
every path's branches), one backward, SGD step, cosine LR step, then the sampler's update
with each path's KL_a (averaged over processes, so every rank keeps the same theta).
Checkpoints go to DIR/checkpoint/last.pt at the end of every epoch and every
``checkpoint_every`` steps; the data order is a function of (seed, epoch), so a resumed run
replays exactly the batches an uninterrupted one sees.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gtn_deploy.arch import get_space
from gtn_deploy.data import BatchPlan, TaskData, load_space_data, normalize, train_batches
from gtn_deploy.errors import UsageError
from gtn_deploy.io_utils import ensure_writable_dir
from gtn_deploy.train import checkpoint as ckpt
from gtn_deploy.train.config import TrainConfig, validate
from gtn_deploy.train.distributed import DistInfo, all_reduce_sum, init_distributed
from gtn_deploy.train.evaluate import autocast_for, evaluate
from gtn_deploy.train.gtn import LossWeights, TeacherObjective
from gtn_deploy.train.metrics import MetricsLog, Meters
from gtn_deploy.progress import StepProgress
from gtn_deploy.train.sampler import ArchSampler

RUN_FILES = ("config.json", "metrics.jsonl", ckpt.CHECKPOINT_NAME, "summary.json")


class TeacherTrainer:
    """Builds everything a run needs from a ``TrainConfig``; ``run()`` trains and saves."""

    def __init__(self, cfg: TrainConfig, out: str | Path, resume: bool = False,
                 device: str = "auto", info: DistInfo | None = None,
                 data: TaskData | None = None):
        self.cfg, self.out, self.resume = validate(cfg), Path(out), resume
        self.info = info or init_distributed(device)
        self.space = get_space(cfg.task)
        self.task = self.space.task
        self.resume_state = self._check_out_dir()
        self.data = data or load_space_data(
            self.space, cfg.data_dir, limit_train=cfg.limit_train, limit_val=cfg.limit_val,
            val_fraction=cfg.val_fraction, split_seed=cfg.split_seed)
        self.plan = BatchPlan(len(self.data.train), cfg.batch_size, True, self.info.rank,
                              self.info.world_size)
        if self.plan.steps < 1:
            raise UsageError(f"{len(self.data.train)} training images are fewer than one "
                             f"batch of {cfg.batch_size}; lower --batch-size")
        self.total_steps = cfg.epochs * self.plan.steps
        self._build()

    # -- set-up ------------------------------------------------------------------------------
    def _check_out_dir(self) -> dict[str, Any] | None:
        path = self.out / ckpt.CHECKPOINT_NAME
        if not self.resume and any((self.out / f).exists() for f in RUN_FILES):
            raise UsageError(f"{self.out} already holds a training run; pass --resume to "
                             "continue it or choose another --out")
        if self.info.is_main:  # now, not at the first checkpoint after an epoch of training
            ensure_writable_dir(path.parent)
        return ckpt.load_checkpoint(path, self.cfg.to_dict()) \
            if self.resume and path.exists() else None

    def _build(self) -> None:
        cfg, info = self.cfg, self.info
        random.seed(cfg.seed)
        np.random.seed(cfg.seed % 2**32)
        torch.manual_seed(cfg.seed)
        from gtn_deploy.models import create_teacher

        self.teacher = create_teacher(cfg.teacher, self.task)
        self.supernet = None
        if cfg.uses_branches:
            from gtn_deploy.supernet import Supernet

            self.supernet = Supernet(self.space)
        self.objective = TeacherObjective(
            cfg.method, self.teacher, self.supernet, max(self.space.resolutions),
            LossWeights(cfg.l_ce, cfg.l_kl, cfg.tau, cfg.kl_detach, cfg.branch_batch,
                        cfg.teacher_grad))
        cuda = info.device.startswith("cuda")
        # channels_last on CPU too: it saved 41-51% of a teacher step there (issue 11)
        self.objective.to(info.device, memory_format=torch.channels_last)
        self.amp_dtype = None
        if cuda:
            self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        self.optimizer = torch.optim.SGD(self.objective.parameters(), lr=cfg.lr,
                                         momentum=cfg.momentum, nesterov=True,
                                         weight_decay=cfg.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, warmup_cosine(self.total_steps, cfg.warmup_frac))
        self.sampler = self._make_sampler()
        self.clip_groups = clip_groups(self.objective)
        if cfg.uses_branches and not cfg.branch0 and self.objective.branches.num_branches < 2:
            raise UsageError(f"teacher {cfg.teacher} has no branch point into the supernet, "
                             "so --no-branch0 leaves no branch to train")
        self.model = self.objective
        if info.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            self.model = DDP(self.objective, device_ids=[info.local_rank] if cuda else None,
                             find_unused_parameters=cfg.uses_branches)

    def _make_sampler(self) -> ArchSampler | None:
        cfg = self.cfg
        if cfg.method == "vanilla":
            return None
        if cfg.method == "sftn":  # theta fixed on the one student
            return ArchSampler(self.space, "fixed", [cfg.student_arch()], seed=cfg.seed)
        return ArchSampler(self.space, cfg.sampler, cfg.pool_archs(), seed=cfg.seed,
                           lr=cfg.sampler_lr, beta=cfg.beta, gamma=cfg.gamma)

    @property
    def paths_per_step(self) -> int:
        return 1 if self.cfg.method == "sftn" else self.cfg.paths

    # -- state ------------------------------------------------------------------------------
    def state_dict(self, epoch: int, step: int, global_step: int, meters: Meters,
                   log: MetricsLog) -> dict[str, Any]:
        return {"config": _json(self.cfg.to_dict()), "epoch": epoch, "step": step,
                "global_step": global_step, "model": self.objective.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler else None,
                "sampler": self.sampler.state_dict() if self.sampler else None,
                "meters": meters.state_dict(), "metrics_bytes": log.size(),
                "rng": ckpt.rng_state()}

    def load_state(self, state: dict[str, Any]) -> None:
        self.objective.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        if self.sampler:
            self.sampler.load_state_dict(state["sampler"])
        ckpt.set_rng_state(state["rng"])

    def save(self, epoch: int, step: int, global_step: int, meters: Meters,
             log: MetricsLog) -> None:
        if self.info.is_main:
            ckpt.save_checkpoint(self.out / ckpt.CHECKPOINT_NAME,
                                 self.state_dict(epoch, step, global_step, meters, log))

    # -- the loop ----------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Train (or continue) to the last epoch, then evaluate and write the outputs."""
        from gtn_deploy.train.outputs import finish_run, write_config

        start = time.perf_counter()
        log = MetricsLog(self.out / "metrics.jsonl", self.info.is_main)
        epoch, step, global_step, meters = 0, 0, 0, Meters()
        if self.resume_state is not None:
            self.load_state(self.resume_state)
            epoch, step = self.resume_state["epoch"], self.resume_state["step"]
            global_step = self.resume_state["global_step"]
            meters.load_state_dict(self.resume_state["meters"])
            log.truncate(self.resume_state["metrics_bytes"])
        else:
            log.truncate(0)
        if self.info.is_main:
            write_config(self)
        with StepProgress(self.total_steps, self.cfg.progress and self.info.is_main,
                          self.cfg.log_every, description="teacher") as progress:
            while epoch < self.cfg.epochs:
                global_step = self._epoch(epoch, step, global_step, meters, log, progress)
                epoch, step = epoch + 1, 0
                meters = Meters()
                self.save(epoch, 0, global_step, meters, log)
        return finish_run(self, log, time.perf_counter() - start)

    def _epoch(self, epoch: int, start_step: int, global_step: int, meters: Meters,
               log: MetricsLog, progress: StepProgress) -> int:
        cfg, t0 = self.cfg, time.perf_counter()
        images_seen = 0
        self.objective.train()
        for step, images, labels in train_batches(self.data.train, self.task, self.plan,
                                                  cfg.seed, epoch, start_step, cfg.augment):
            stats = self._step(images, labels)
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
                self.save(epoch, step + 1, global_step, meters, log)
        val = evaluate(self.objective.teacher, self.data.val, self.task, self.info,
                       amp_dtype=self.amp_dtype)
        elapsed = time.perf_counter() - t0
        record = {"event": "epoch", "epoch": epoch, "global_step": global_step,
                  **meters.summary(), "val_top1": val["top1"], "val_loss": val["loss"],
                  "lr": self.scheduler.get_last_lr()[0], "time_s": round(elapsed, 3),
                  "img_per_s": round(images_seen / elapsed, 1) if elapsed > 0 else None}
        log.write(record)
        progress.message(f"epoch {epoch + 1}/{cfg.epochs}: loss {record['loss']:.4f} "
                         f"train acc {record['train_acc']:.2f}% val top-1 {val['top1']:.2f}%")
        return global_step

    def _step(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        info, k = self.info, self.cfg.micro_batches
        x = normalize(images.to(info.device, non_blocking=True), self.task)
        x = x.contiguous(memory_format=torch.channels_last)
        y = labels.to(info.device, non_blocking=True)
        archs = self.sampler.sample(self.paths_per_step) if self.sampler else []
        which = self._branches_this_step()
        self.optimizer.zero_grad(set_to_none=True)
        chunks = list(zip(x.chunk(k), y.chunk(k)))
        summed = None
        for i, (xc, yc) in enumerate(chunks):
            # gradient accumulation = the arithmetic of DDP over k ranks (BN per micro-batch)
            sync = not info.enabled or i == len(chunks) - 1
            with contextlib.nullcontext() if sync else self.model.no_sync():
                with autocast_for(info.device, self.amp_dtype):
                    loss, stats = self.model(xc, yc, archs, self._branch_scale(), which)
                loss = loss * (len(yc) / len(y))
                (self.scaler.scale(loss) if self.scaler else loss).backward()
            part = stats.detach().double() * len(yc)
            part[1] = stats[1].double()  # 'correct' is already a count
            summed = part if summed is None else summed + part
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        clipped = {}
        if self.cfg.clip_grad > 0:
            # per group: one joint norm let the branches' large gradients shrink the
            # teacher's step (it bound on 20-28% of GTN steps, on no vanilla step)
            for name, params in self.clip_groups.items():
                norm = torch.nn.utils.clip_grad_norm_(params, self.cfg.clip_grad)
                clipped[f"clipped_{name}"] = float(norm > self.cfg.clip_grad)
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        return {**self._reduce(summed, len(y), archs), **clipped}

    def _branches_this_step(self) -> list[int] | None:
        """The branches to run: all, or one drawn uniformly from (seed, step), so that every
        rank and a resumed run draw the same one."""
        if not self.cfg.uses_branches:
            return None
        first = 0 if self.cfg.branch0 else 1
        available = list(range(first, self.objective.branches.num_branches))
        if self.cfg.branches == "all":
            return available
        rng = random.Random(self.cfg.seed * 1_000_003 + self.scheduler.last_epoch)
        return [rng.choice(available)]

    def _branch_scale(self) -> float:
        """Weight of the branch terms: ramps from 0 to 1 over ``cond_ramp_frac`` of training."""
        ramp = self.cfg.cond_ramp_frac * self.total_steps
        return 1.0 if ramp < 1 else min(1.0, (self.scheduler.last_epoch + 1) / ramp)

    def _reduce(self, summed: torch.Tensor, n: int, archs: list) -> dict[str, float]:
        """Sum the step's statistics over processes; feed the sampler the global KL_a."""
        total = torch.cat([summed, summed.new_tensor([float(n)])])
        all_reduce_sum(total, self.info)
        n_all = float(total[-1])
        rewards = (total[3:-1] / n_all).tolist()
        out = {"n": n_all, "ce": float(total[0]) / n_all, "correct": float(total[1]),
               "branch": float(total[2]) / n_all}
        out["loss"] = out["ce"] + out["branch"]
        if self.sampler is not None and archs:
            out["reward"] = self.sampler.update(archs, rewards)["reward"]
        return out


def clip_groups(objective: TeacherObjective) -> dict[str, list[torch.nn.Parameter]]:
    """Parameters clipped together: the teacher, and the student side (supernet, adapters)."""
    groups = {"teacher": list(objective.teacher.parameters())}
    if objective.uses_branches:
        groups["student"] = list(objective.supernet.parameters()) + \
            list(objective.branches.parameters())
    return groups


def _json(obj: Any) -> str:
    import json

    return json.dumps(obj, sort_keys=True)


def warmup_cosine(total_steps: int, warmup_frac: float):
    """LR factor per step: linear warm-up, then cosine decay to 0."""
    warm = max(0, int(warmup_frac * total_steps))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))

    return factor


def train_teacher(cfg: TrainConfig, out: str | Path, resume: bool = False,
                  device: str = "auto") -> dict[str, Any]:
    """Train a teacher as ``cfg`` says and write everything under ``out``; returns the summary."""
    return TeacherTrainer(cfg, out, resume, device).run()
