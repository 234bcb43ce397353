"""How long a pipeline will train, from a few timed steps on this machine (a probe).

The probe times real training steps (forward, backward, SGD) at the run's batch size: the
GTN teacher objective with one sampled path, and each device's student; per-image costs
times the images each stage trains on give the estimate. Evaluation, export and the
machine's load during the run are not in it: read it as the training time at today's speed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gtn_deploy.timing import time_calls

if TYPE_CHECKING:
    from gtn_deploy.pipeline.config import PipelineConfig

PROBE_STEPS = 3


def _seconds_per_image(step, batch_size: int) -> float:
    """Median of PROBE_STEPS timed steps after one warm-up (allocations, kernel choice)."""
    stats = time_calls(step, warmup=1, iters=PROBE_STEPS, time_first=False)
    return stats.p50_ms / 1e3 / batch_size


def probe(cfg: "PipelineConfig", archs: dict[str, object], train_images: int,
          student_images: int) -> dict:
    """Estimated training seconds: {'teacher_s', 'students_s': {device: s}, 'total_s'};
    'student_run_s': {device: s} is one of a device's student runs (KD or a baseline);
    with ``--baseline vanilla`` also 'vanilla_teacher_s', the control teacher's."""
    import torch

    from gtn_deploy.models import create_teacher  # lazy: keeps torch out of a light module
    # lazy: keeps torch out of a light module
    from gtn_deploy.supernet import build_student, create_supernet
    # lazy: keeps torch out of a light module
    from gtn_deploy.train.gtn import LossWeights, TeacherObjective
    from gtn_deploy.train.sampler import ArchSampler  # lazy: keeps torch out of a light module

    space, b = cfg.search_space(), cfg.batch_size
    side = max(space.resolutions)
    x = torch.randn(b, space.task.in_channels, side, side).contiguous(
        memory_format=torch.channels_last)
    y = torch.randint(0, space.task.num_classes, (b,))
    objective = TeacherObjective("gtn", create_teacher(cfg.teacher, space.task),
                                 create_supernet(space), side, LossWeights(branch_batch=0.5))
    objective.to(memory_format=torch.channels_last).train()
    sampler = ArchSampler(space, "uniform", seed=0)
    opt = torch.optim.SGD(objective.parameters(), lr=0.01)

    def teacher_step():
        loss, _ = objective(x, y, sampler.sample(1), which=[0])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    teacher_s = _seconds_per_image(teacher_step, b) * train_images * cfg.teacher_epochs
    vanilla_s = 0.0
    if "vanilla" in cfg.baseline:
        def vanilla_step():
            loss = torch.nn.functional.cross_entropy(objective.teacher(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        vanilla_s = _seconds_per_image(vanilla_step, b) * train_images * cfg.teacher_epochs
    runs = 1 + len(cfg.baseline)  # the KD student and each baseline's run
    per_run = {}
    for device, arch in archs.items():
        model = build_student(space, arch).to(memory_format=torch.channels_last).train()
        s_opt = torch.optim.SGD(model.parameters(), lr=0.01)

        def student_step(model=model, s_opt=s_opt):
            loss = torch.nn.functional.cross_entropy(model(x), y)
            s_opt.zero_grad(set_to_none=True)
            loss.backward()
            s_opt.step()

        per_run[device] = (_seconds_per_image(student_step, b) * student_images
                           * cfg.distill_epochs)
    students = {device: s * runs for device, s in per_run.items()}
    out = {"teacher_s": teacher_s, "students_s": students, "student_run_s": per_run,
           "total_s": teacher_s + vanilla_s + sum(students.values())}
    if "vanilla" in cfg.baseline:
        out["vanilla_teacher_s"] = vanilla_s
    return out


def clock(s: float) -> str:
    """``42 s``, ``7 min``, ``2 h 05 min``."""
    if s < 59.5:
        return f"{s:.0f} s"
    h, m = divmod(int(round(s / 60)), 60)
    return f"{h} h {m:02d} min" if h else f"{m} min"


def describe(estimate: dict) -> str:
    per = ", ".join(f"{d} {clock(s)}" for d, s in estimate["students_s"].items())
    vanilla = (f", vanilla teacher {clock(estimate['vanilla_teacher_s'])}"
               if "vanilla_teacher_s" in estimate else "")
    return (f"estimated training time here: teacher {clock(estimate['teacher_s'])}{vanilla}, "
            f"students "
            f"({per}), total {clock(estimate['total_s'])} (from a probe of timed steps; "
            "evaluation and export come on top)")
