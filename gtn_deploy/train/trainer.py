"""Teacher training (``gtn``, ``sftn`` and ``vanilla``): its step, run by ``train.loop``.

One step: draw m paths from the sampler, one forward of ``TeacherObjective`` (teacher and
every path's branches) per micro-batch, one backward, then (after the loop's SGD and LR
step) the sampler's update with each path's KL_a, averaged over processes, so every rank
keeps the same theta. Seeding, precision, schedule, checkpoints and the exact resume are
``train.loop.RunLoop``'s.
"""

from __future__ import annotations

import contextlib
import gc
import random
from pathlib import Path
from typing import Any

import torch

from gtn_deploy.checkpoint_files import read_sidecar
from gtn_deploy.data import BatchPlan, TaskData, load_space_data
from gtn_deploy.errors import UsageError
from gtn_deploy.io_utils import ensure_writable_dir
from gtn_deploy.models import create_teacher
from gtn_deploy.spaces import create_space
from gtn_deploy.supernet import create_supernet, load_supernet
from gtn_deploy.supernet.checkpoint import SUPERNET_JSON, SUPERNET_KIND
from gtn_deploy.train import checkpoint as ckpt
from gtn_deploy.train.config import TrainConfig, validate
from gtn_deploy.train.distributed import (DistInfo, all_reduce_sum, barrier, init_distributed,
                                          shutdown)
from gtn_deploy.train.evaluate import autocast_for, evaluate
from gtn_deploy.train.gtn import LossWeights, TeacherObjective
from gtn_deploy.train.kd_teacher import open_teacher
from gtn_deploy.train.loop import LoopConfig, RunLoop, seed_everything
from gtn_deploy.train.metrics import Meters
from gtn_deploy.train.outputs import finish_run, write_config
from gtn_deploy.train.sampler import ArchSampler

RUN_FILES = ("config.json", "metrics.jsonl", ckpt.CHECKPOINT_NAME, "summary.json")


class TeacherTrainer:
    """Builds everything a run needs from a ``TrainConfig``; ``run()`` trains and saves."""

    def __init__(self, cfg: TrainConfig, out: str | Path, resume: bool = False,
                 device: str = "auto", info: DistInfo | None = None,
                 data: TaskData | None = None):
        self.cfg, self.out, self.resume = validate(cfg), Path(out), resume
        self.info = info or init_distributed(device)
        self.space = create_space(cfg.space, cfg.task)
        self.task = self.space.task
        # a wrong --supernet-init is refused before the data loads (an ImageNet tree is big)
        self.supernet_init = self._supernet_init_doc() if cfg.supernet_init else None
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
        seed_everything(cfg.seed)

        self.teacher = create_teacher(cfg.teacher, self.task)
        self.init_sha256: str | None = None  # the weights it started from (--init-from)
        if cfg.init_from:
            self._start_from(cfg.init_from)
        self.supernet = None
        if cfg.uses_branches:
            self.supernet = (load_supernet(cfg.supernet_init)[0].train() if cfg.supernet_init
                             else create_supernet(self.space))
        self.objective = TeacherObjective(
            cfg.method, self.teacher, self.supernet, max(self.space.resolutions),
            LossWeights(cfg.l_ce, cfg.l_kl, cfg.tau, cfg.kl_detach, cfg.branch_batch,
                        cfg.teacher_grad))
        # channels_last on CPU too: it saved 41-51% of a teacher step there (issue 11)
        self.objective.to(info.device, memory_format=torch.channels_last)
        self.sampler = self._make_sampler()
        if cfg.uses_branches and not cfg.branch0 and self.objective.branches.num_branches < 2:
            raise UsageError(f"teacher {cfg.teacher} has no branch point into the supernet, "
                             "so --no-branch0 leaves no branch to train")
        self.model = self.objective
        if info.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            cuda = info.device.startswith("cuda")
            self.model = DDP(self.objective, device_ids=[info.local_rank] if cuda else None,
                             find_unused_parameters=cfg.uses_branches)
        self.loop = RunLoop(
            TeacherStep(self), LoopConfig(cfg.epochs, cfg.lr, cfg.momentum, cfg.weight_decay,
                                          cfg.warmup_frac, cfg.seed, cfg.augment,
                                          cfg.checkpoint_every, cfg.log_every, cfg.progress,
                                          cfg.progress_every_s),
            self.out, self.data, self.task, self.plan, info, cfg.to_dict())

    def _start_from(self, run: str) -> None:
        """Load a finished teacher run's weights into this run's teacher (the two-phase
        GTN: the conditioning fine-tunes a teacher trained normally first)."""
        source = open_teacher(run)
        if source.name != self.cfg.teacher or source.task != self.cfg.task:
            raise UsageError(f"--init-from {run} holds a {source.name} teacher for task "
                             f"'{source.task}'; this run trains {self.cfg.teacher} for task "
                             f"'{self.cfg.task}'")
        self.teacher.load_state_dict(source.load().state_dict())
        for p in self.teacher.parameters():
            p.requires_grad_(True)
        self.init_sha256 = source.sha256

    def _supernet_init_doc(self) -> dict[str, Any]:
        """The sidecar of the --supernet-init folder, refused unless its space (and number
        of classes) is this run's; the weights load in ``_build``."""
        path = self.cfg.supernet_init
        doc = read_sidecar(Path(path), SUPERNET_JSON, SUPERNET_KIND)
        theirs = (doc.get("space"), doc.get("num_classes"))
        ours = (self.space.name, self.task.num_classes)
        if theirs != ours:
            raise UsageError(f"--supernet-init {path} holds a supernet of space '{theirs[0]}' "
                             f"({theirs[1]} classes); this run trains space '{ours[0]}' "
                             f"({ours[1]} classes: --space {self.cfg.space} --task "
                             f"{self.cfg.task})")
        return doc

    @property
    def amp_dtype(self) -> torch.dtype | None:
        return self.loop.amp_dtype

    def _make_sampler(self) -> ArchSampler | None:
        cfg = self.cfg
        if cfg.method == "vanilla":
            return None
        if cfg.method == "sftn":  # theta fixed on the one student
            return ArchSampler(self.space, "fixed", [cfg.student_arch()], seed=cfg.seed)
        return ArchSampler(self.space, cfg.sampler, cfg.pool_archs(), seed=cfg.seed,
                           lr=cfg.sampler_lr, beta=cfg.beta, gamma=cfg.gamma)

    def run(self) -> dict[str, Any]:
        """Train (or continue) to the last epoch, then evaluate and write the outputs."""
        if self.info.is_main:
            write_config(self)
        seconds = self.loop.run(self.resume_state)
        summary = finish_run(self, self.loop.log, seconds)
        barrier(self.info)  # rank 0 writes after the last collective: leave together
        return summary

    def close(self) -> None:
        """Leave the process group, with DDP released first (no-op when not distributed).

        DDP's reducer holds the process group, and the step object refers back to this
        trainer, so left alone DDP (and gloo's threads) would live until a garbage
        collection or interpreter exit. A rank once aborted at exit in CI ("terminate called
        without an active exception"); releasing DDP before the group, and leaving together
        (``run``'s barrier), makes the teardown order the same on every run.
        """
        if self.model is not self.objective:
            self.model = self.objective
            gc.collect()
        shutdown(self.info)


class TeacherStep:
    """One teacher step: the objective over micro-batches, then the sampler's update."""

    name = "teacher"

    def __init__(self, trainer: TeacherTrainer):
        self.t, self.cfg = trainer, trainer.cfg
        self.module = trainer.objective
        self.clip_groups = clip_groups(trainer.objective)
        self.clip_grad = self.cfg.clip_grad
        self.paths = 1 if self.cfg.method == "sftn" else self.cfg.paths

    def meters(self) -> Meters:
        return Meters()

    def forward_backward(self, loop: RunLoop, x: torch.Tensor, y: torch.Tensor,
                         index: torch.Tensor) -> tuple[torch.Tensor, int, list, list | None]:
        info, k, sampler = loop.info, self.cfg.micro_batches, self.t.sampler
        archs = sampler.sample(self.paths) if sampler else []
        which = self._branches_this_step(loop.steps_done)
        scale, pull = self._branch_scale(loop), self._teacher_pull(loop)
        summed = None
        chunks = list(zip(x.chunk(k), y.chunk(k)))
        for i, (xc, yc) in enumerate(chunks):
            # gradient accumulation = the arithmetic of DDP over k ranks (BN per micro-batch)
            sync = not info.enabled or i == len(chunks) - 1
            with contextlib.nullcontext() if sync else self.t.model.no_sync():
                with autocast_for(info.device, loop.amp_dtype):
                    loss, stats = self.t.model(xc, yc, archs, scale, which, pull)
                loop.backward(loss * (len(yc) / len(y)))
            part = stats.detach().double() * len(yc)
            part[1] = stats[1].double()  # 'correct' is already a count
            summed = part if summed is None else summed + part
        return summed, len(y), archs, which

    def after_update(self, loop: RunLoop, out) -> dict[str, float]:
        """Sum the step's statistics over processes; feed the sampler the global KL_a."""
        summed, n, archs, which = out
        total = torch.cat([summed, summed.new_tensor([float(n)])])
        all_reduce_sum(total, loop.info)
        n_all = float(total[-1])
        rewards = (total[3:-1] / n_all).tolist()
        stats = {"n": n_all, "ce": float(total[0]) / n_all, "correct": float(total[1]),
                 "branch": float(total[2]) / n_all}
        stats["loss"] = stats["ce"] + stats["branch"]
        if self.t.sampler is not None and archs:
            # with one branch a step, the reward is that branch's KL: its own baseline
            group = which[0] if which is not None and len(which) == 1 else 0
            stats["reward"] = self.t.sampler.update(archs, rewards, group)["reward"]
        return stats

    def end_of_epoch(self, loop: RunLoop, img_per_s: float | None) -> dict[str, float]:
        val = evaluate(self.t.teacher, self.t.data.val, self.t.task, loop.info,
                       amp_dtype=loop.amp_dtype)
        return {"val_top1": val["top1"], "val_loss": val["loss"], "img_per_s": img_per_s}

    def state_dict(self) -> dict[str, Any]:
        return {"sampler": self.t.sampler.state_dict() if self.t.sampler else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.t.sampler:
            self.t.sampler.load_state_dict(state["sampler"])

    def _branches_this_step(self, steps_done: int) -> list[int] | None:
        """The branches to run: all, or one drawn uniformly from (seed, step), so that every
        rank and a resumed run draw the same one."""
        if not self.cfg.uses_branches:
            return None
        first = 0 if self.cfg.branch0 else 1
        available = list(range(first, self.module.branches.num_branches))
        if self.cfg.branches == "all":
            return available
        rng = random.Random(self.cfg.seed * 1_000_003 + steps_done)
        return [rng.choice(available)]

    def _branch_scale(self, loop: RunLoop) -> float:
        """Weight of the branch terms: ramps from 0 to 1 over ``cond_ramp_frac`` of training."""
        ramp = self.cfg.cond_ramp_frac * loop.total_steps
        return 1.0 if ramp < 1 else min(1.0, (loop.steps_done + 1) / ramp)

    def _teacher_pull(self, loop: RunLoop) -> float:
        """Weight of the branch gradients reaching the teacher: 1 throughout by default; with
        ``cond_start_frac`` 0 before that share of training, then a linear ramp over
        ``cond_ramp_frac``."""
        start = self.cfg.cond_start_frac * loop.total_steps
        if start <= 0:
            return 1.0
        if loop.steps_done < start:
            return 0.0
        ramp = self.cfg.cond_ramp_frac * loop.total_steps
        return 1.0 if ramp < 1 else min(1.0, (loop.steps_done - start + 1) / ramp)


def clip_groups(objective: TeacherObjective) -> dict[str, list[torch.nn.Parameter]]:
    """Parameters clipped together: the teacher, and the student side (supernet, adapters)."""
    groups = {"teacher": list(objective.teacher.parameters())}
    if objective.uses_branches:
        groups["student"] = list(objective.supernet.parameters()) + \
            list(objective.branches.parameters())
    return groups


def train_teacher(cfg: TrainConfig, out: str | Path, resume: bool = False,
                  device: str = "auto") -> dict[str, Any]:
    """Train a teacher as ``cfg`` says and write everything under ``out``; returns the summary."""
    return TeacherTrainer(cfg, out, resume, device).run()
