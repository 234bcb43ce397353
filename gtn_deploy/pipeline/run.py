"""One teacher, many devices: plan -> GTN teacher -> distil -> export -> bench -> report.

Every stage is keyed by a hash of its inputs (``stages.StageStore``), so a rerun after a kill
continues from the last finished stage and a changed device re-runs only its own branch.

The teacher stage is keyed by its training settings, not by the pool of planned students:
the GTN teacher is conditioned on the whole supernet (sampler ``learned``, with the planned
students as a prior), so a device added later reuses it: that is the point of a generic
teacher. Its pool at training time is recorded, and the report says which devices' students
were in it. With sampler ``pool`` the pool is part of the key.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from gtn_deploy import __version__
from gtn_deploy.bench.run import bench_bundle, target_problem
from gtn_deploy.errors import UsageError
from gtn_deploy.export.bundle import ExportOptions, export_student
from gtn_deploy.fingerprint import current_fingerprint
from gtn_deploy.io_utils import atomic_write_json, check_output_file
from gtn_deploy.pipeline import estimate
from gtn_deploy.pipeline.config import PipelineConfig
from gtn_deploy.pipeline.lock import RunLock
from gtn_deploy.pipeline.report import write_report
from gtn_deploy.pipeline.stages import StageResult, StageStore, input_hash
from gtn_deploy.pipeline.state import DeviceBranch, PipelineRun
from gtn_deploy.plan_file import DevicePlan, parse_plan
from gtn_deploy.profiles import load_profile
from gtn_deploy.progress import StageList, quiet
from gtn_deploy.search.planner import PlanRequest, plan_device, plan_document
from gtn_deploy.spaces import family_free
from gtn_deploy.spaces.base import Space


def run_pipeline(cfg: PipelineConfig, out: Path, log: Callable[[str], None] = print
                 ) -> PipelineRun:
    """Run (or continue) the pipeline in ``out``; returns what every stage produced."""
    space, branches = prepare(cfg, out)
    run = PipelineRun(cfg, Path(out), branches, log=log)
    with RunLock(run.out), StageList(_stage_names(cfg, branches)) as run.stages:
        store = StageStore(run.out, log=run.log)
        store.sweep()
        atomic_write_json(run.out / "config.json", {"schema_version": 1,
                                                    "kind": "gtn_deploy.pipeline_config",
                                                    "tool_version": __version__,
                                                    "config": cfg.model_dump()})

        def do(name: str, inputs: dict, build: Callable[[Path], dict | None],
               resumable: bool = False) -> StageResult:
            if name == "teacher" and not cfg.quick and not store.is_done(name, inputs):
                run.log(_estimate(cfg, space, branches))
            return _stage(run, store, name, inputs, build, resumable)

        walk_stages(run, space, do)
        write_report(run)
    return run


def prepare(cfg: PipelineConfig, out: Path) -> tuple[Any, list[DeviceBranch]]:
    """Everything the run checks before its first stage, shared with the dry run so that it
    says "go" only for a run that can start: the run folder, every device (each once, by
    id: an alias names the same device), the teacher. Returns (space, branches)."""
    check_output_file(out, folder=True)
    space = cfg.search_space()
    branches = [DeviceBranch(t, load_profile(t.device)) for t in cfg.devices]
    seen: dict[str, str] = {}
    for b in branches:
        if b.id in seen:
            raise UsageError(f"devices '{seen[b.id]}' and '{b.target.device}' are the same "
                             f"device ({b.id}); name it once")
        seen[b.id] = b.target.device
    _check_teacher(cfg.teacher)
    return space, branches


def _check_teacher(name: str | None) -> None:
    from gtn_deploy.models.registry import TEACHERS  # lazy: keeps torch out of a light module

    if name is not None and name not in TEACHERS:
        raise UsageError(f"unknown teacher '{name}'; valid teachers: {', '.join(TEACHERS)}")


Step = Callable[..., StageResult]  # (name, inputs, build, resumable=False) -> StageResult


def walk_stages(run: PipelineRun, space: Space, do: Step) -> None:
    """Every stage in order, each through ``do``: the run builds it, a dry run looks it up.

    A stage's inputs name the stages it depends on by their folders (a hash of *their*
    inputs), so every key is known before anything runs."""
    cfg, branches = run.cfg, run.branches
    for b in branches:
        b.plan = do(f"plan-{b.id}", plan_inputs(cfg, b),
                    lambda d, b=b: _plan(cfg, space, b, d))
    run.teacher = do("teacher", _teacher_inputs(cfg, branches),
                     lambda d: _teacher(cfg, branches, d), resumable=True)
    if "vanilla" in cfg.baseline:
        run.vanilla_teacher = do("teacher-vanilla", _teacher_inputs(cfg, branches, "vanilla"),
                                 lambda d: _teacher(cfg, branches, d, "vanilla"),
                                 resumable=True)
    for b in branches:
        b.student = do(f"student-{b.id}", _student_inputs(cfg, run, b, run.teacher),
                       lambda d, b=b: _distill(cfg, run, b, d, run.teacher), resumable=True)
        if "ce" in cfg.baseline:
            b.baseline = do(f"baseline-{b.id}", _student_inputs(cfg, run, b, None),
                            lambda d, b=b: _distill(cfg, run, b, d, None), resumable=True)
        if run.vanilla_teacher is not None:
            b.vanilla = do(f"vanilla-{b.id}", _student_inputs(cfg, run, b, run.vanilla_teacher),
                           lambda d, b=b: _distill(cfg, run, b, d, run.vanilla_teacher),
                           resumable=True)
        b.bundle = do(f"bundle-{b.id}", _bundle_inputs(cfg, b), lambda d, b=b: _export(cfg, b, d))
        b.runs_here = _runs_here(b.profile)
        if b.runs_here:
            b.bench = do(f"bench-{b.id}", _bench_inputs(cfg, b), lambda d, b=b: _bench(cfg, b, d))


def _estimate(cfg: PipelineConfig, space: Space, branches: list[DeviceBranch]) -> str:
    """The full setting runs for hours: say how many before starting (a few-second probe)."""
    return estimate.describe(estimate_training(cfg, space, branches))


def estimate_training(cfg: PipelineConfig, space: Space, branches: list[DeviceBranch]) -> dict:
    """``estimate.probe`` for this run's images and planned students."""
    from gtn_deploy.data import load_space_data  # lazy: keeps torch out of a light module

    # the sizes the stages will use: the teacher's limit_train and the students'
    # distill_limit_train each cut the same full training split
    full = len(load_space_data(space, cfg.data_dir).train)
    teacher = min(full, cfg.limit_train or full)
    students = min(full, cfg.distill_limit_train or full)
    return estimate.probe(cfg, {b.id: b.arch() for b in branches}, teacher, students)


def _stage_names(cfg: PipelineConfig, branches: list[DeviceBranch]) -> list[str]:
    """Every stage in the order it runs, for the stage list."""
    names = [f"plan-{b.id}" for b in branches] + ["teacher"]
    names += ["teacher-vanilla"] if "vanilla" in cfg.baseline else []
    for b in branches:
        names += [f"student-{b.id}"] + ([f"baseline-{b.id}"] if "ce" in cfg.baseline else [])
        names += [f"vanilla-{b.id}"] if "vanilla" in cfg.baseline else []
        names += [f"bundle-{b.id}"] + ([f"bench-{b.id}"] if _runs_here(b.profile) else [])
    return names


def _stage(run: PipelineRun, store: StageStore, name: str, inputs: dict,
           build: Callable[[Path], dict | None], resumable: bool = False) -> StageResult:
    done = store.is_done(name, inputs)
    say = (lambda line: None) if run.stages is not None and run.stages.live else run.log
    say(f"[{time.strftime('%H:%M:%S')}] {name}: " + ("cached" if done else "running"))
    if run.stages is not None and not done:
        run.stages.running(name)
    try:
        result = store.run(name, inputs, build, resumable=resumable)
    except BaseException:
        if run.stages is not None:
            run.stages.finished(name, "failed")
        raise
    if run.stages is not None:
        run.stages.finished(name, *(("done", result.seconds) if result.ran else ("cached",)))
    if result.ran:
        run.stages_run.append(name)
        say(f"[{time.strftime('%H:%M:%S')}] {name}: done in {result.seconds:.1f} s")
    return result


# off a terminal (a pipe, a log file) each training stage prints a plain progress line this
# often: a --full teacher is an hour, which must not be an hour of silence
PROGRESS_EVERY_S = 30.0


def _progress() -> bool:
    """Progress in every stage (not in any key): bars on a terminal, plain lines off one
    (``progress.StepProgress``); ``gtnd -q`` silences both."""
    return not quiet()


def _key(result: StageResult) -> str:
    return result.path.name  # "<name>-<hash of inputs>": changes when any input changes


# -- plan -----------------------------------------------------------------------------------
def plan_inputs(cfg: PipelineConfig, b: DeviceBranch) -> dict:
    return family_free({"profile": b.profile.id, "profile_sha256": b.profile.content_hash,
                        "task": cfg.task, "space": cfg.space, "target": b.target.model_dump(),
                        "scale_budget": cfg.scale_budget, "margin": cfg.margin,
                        "seed": cfg.seed, "tool": __version__})


def plan_entry(cfg: PipelineConfig, space: Space, b: DeviceBranch) -> dict:
    """The device's plan (a search of a second or less; no torch)."""
    p, t = b.profile, b.target
    req = PlanRequest.for_device(p, space, precision=t.precision, latency_ms=t.latency_ms,
                                 memory_mb=t.memory_mb, scale_budget=cfg.scale_budget,
                                 margin=cfg.margin, seed=cfg.seed)
    entry = plan_device(req)[1]
    entry["budget"]["scaled_from_ms"] = (p.budgets.latency_ms
                                         if req.latency_ms != p.budgets.latency_ms else None)
    return entry


def computed_plan(cfg: PipelineConfig, space: Space, b: DeviceBranch) -> DevicePlan:
    """The device's plan without writing it (the dry run's, for a plan not yet cached)."""
    return parse_plan(plan_document(space, [plan_entry(cfg, space, b)])).devices[0]


def _plan(cfg: PipelineConfig, space: Space, b: DeviceBranch, folder: Path) -> dict:
    entry = plan_entry(cfg, space, b)
    atomic_write_json(folder / "plan.json", plan_document(space, [entry]))
    best = entry["candidates"][0]
    return {"latency_ms": best["latency_ms"], "mflops": best["mflops"],
            "budget_ms": round(entry["budget"]["latency_ms"], 4)}


# -- teacher --------------------------------------------------------------------------------
def _pool(branches: list[DeviceBranch]) -> list[dict]:
    seen, pool = set(), []
    for b in branches:
        arch = b.arch()
        if arch not in seen:
            seen.add(arch)
            pool.append(arch.to_dict())
    return pool


def _teacher_config(cfg: PipelineConfig, branches: list[DeviceBranch], method: str = "gtn"):
    """The GTN teacher's config, or (``vanilla``) its control: the same network, epochs,
    data and seed, trained with CE alone."""
    from gtn_deploy.train.config import TrainConfig  # lazy: keeps torch out of a light module

    pool = tuple(_pool(branches)) if method == "gtn" else ()
    return TrainConfig(
        method=method, task=cfg.task, space=cfg.space, teacher=cfg.teacher,
        epochs=cfg.teacher_epochs, sampler=cfg.sampler, pool=pool,
        batch_size=cfg.batch_size,
        seed=cfg.seed, limit_train=cfg.limit_train, limit_val=cfg.limit_val,
        data_dir=cfg.data_dir, augment=cfg.augment, progress=_progress(),
        progress_every_s=PROGRESS_EVERY_S,
        sources={"pool": "pipeline plan", "devices": [b.id for b in branches]})


def _teacher_inputs(cfg: PipelineConfig, branches: list[DeviceBranch], method: str = "gtn"
                    ) -> dict:
    """The key is the config actually trained, less the pool unless the sampler draws only
    from it (a generic teacher is reused when a device is added) and the display fields."""
    inputs = _teacher_config(cfg, branches, method).to_dict()
    for display in ("sources", "progress", "log_every", "progress_every_s"):
        inputs.pop(display)
    if cfg.sampler != "pool":
        inputs.pop("pool")
    return {**inputs, "tool": __version__}


def _teacher(cfg: PipelineConfig, branches: list[DeviceBranch], folder: Path,
             method: str = "gtn") -> dict:
    from gtn_deploy.train.trainer import train_teacher  # lazy: keeps torch out of a light module

    summary = train_teacher(_teacher_config(cfg, branches, method), folder, resume=True)
    atomic_write_json(folder / "pool.json", {"devices": [b.id for b in branches],
                                             "pool": _pool(branches)})
    return {**summary["teacher_metrics"], "train_time_s": summary["train_time_s"]}


# -- distil ---------------------------------------------------------------------------------
def _kd_config(cfg: PipelineConfig, with_teacher: bool):
    from gtn_deploy.train.distill import KDConfig  # lazy: keeps torch out of a light module

    return KDConfig(task=cfg.task, space=cfg.space, epochs=cfg.distill_epochs, init=cfg.init,
                    seed=cfg.seed,
                    alpha=cfg.alpha if with_teacher else 0.0, temperature=cfg.temperature,
                    kd_loss=cfg.kd_loss, dkd_beta=cfg.dkd_beta,
                    batch_size=cfg.distill_batch_size, lr=cfg.distill_lr,
                    limit_train=cfg.distill_limit_train,
                    limit_val=cfg.limit_val, data_dir=cfg.data_dir, augment=cfg.augment,
                    progress=_progress(), progress_every_s=PROGRESS_EVERY_S)


def _student_inputs(cfg: PipelineConfig, run: PipelineRun, b: DeviceBranch,
                    teacher: StageResult | None) -> dict:
    """A student's key; ``teacher`` None is the CE baseline. "teacher" names the GTN
    stage in every key: every student starts from its supernet (``--init supernet``)."""
    kd = _kd_config(cfg, teacher is not None).to_dict()
    for display in ("progress", "log_every", "progress_every_s"):
        kd.pop(display)
    inputs = {"kd": kd, "arch": b.arch().to_dict(), "teacher": _key(run.teacher),
              "method": "kd" if teacher is not None else "ce", "tool": __version__}
    if teacher is not None and teacher is not run.teacher:
        inputs["kd_teacher"] = _key(teacher)
    return inputs


def _distill(cfg: PipelineConfig, run: PipelineRun, b: DeviceBranch, folder: Path,
             teacher: StageResult | None) -> dict:
    """Distil ``b``'s student from ``teacher`` (None: plain CE), starting where every
    student of the run starts: the GTN run's supernet, or scratch."""
    from gtn_deploy.train.distill import distill_student  # lazy: keeps torch out of a light module
    from gtn_deploy.train.kd_teacher import open_teacher  # lazy: keeps torch out of a light module

    gtn = open_teacher(run.teacher.path)
    source = None if teacher is None else open_teacher(teacher.path)
    summary = distill_student(_kd_config(cfg, teacher is not None), b.arch(), folder,
                              teacher=source, resume=True, label={"device": b.id},
                              supernet_from=gtn)
    return {"val_top1": summary["metrics"]["val_top1"],
            "test_top1": summary["metrics"]["test_top1"],
            "train_time_s": summary["train_time_s"]}


# -- export and bench ------------------------------------------------------------------------
def _export_options(cfg: PipelineConfig, b: DeviceBranch):
    return ExportOptions(int8=cfg.int8, eval_images=cfg.eval_images, data_dir=cfg.data_dir,
                         name="bundle", allow_accuracy_drop=True,
                         budget_ms=b.planned().budget_ms)


def _bundle_inputs(cfg: PipelineConfig, b: DeviceBranch) -> dict:
    """The key is the export options actually used (the plan's budget among them), so a
    setting added to them cannot be left out of the key."""
    import dataclasses

    return {"options": dataclasses.asdict(_export_options(cfg, b)), "student": _key(b.student),
            "profile_sha256": b.profile.content_hash, "tool": __version__}


def _export(cfg: PipelineConfig, b: DeviceBranch, folder: Path) -> dict:
    result = export_student(b.student.path, b.profile, folder, _export_options(cfg, b),
                            progress=_progress())
    m = result.manifest
    return {"fp32_top1": m.metrics["fp32_top1"], "int8_top1": m.metrics.get("int8_top1"),
            "recommended_precision": m.recommended_precision,
            "predicted_ms": (m.latency_prediction or {}).get("latency_ms")}


def _runs_here(profile) -> bool:
    """Bench only where the bundle's target is this machine (``local`` always is)."""
    return profile.id == "local" or target_problem(profile.id) is None


def _bench_inputs(cfg: PipelineConfig, b: DeviceBranch) -> dict:
    return {"bundle": _key(b.bundle), "iters": cfg.bench_iters,
            "machine": input_hash(current_fingerprint(threads=1))}


def _bench(cfg: PipelineConfig, b: DeviceBranch, folder: Path) -> dict:
    result = bench_bundle(b.bundle.path / "bundle", iters=cfg.bench_iters, threads=1)
    atomic_write_json(folder / "results.json", result)
    timing = result["timing"]
    # the bench set its rounds against the bundle's budget (the plan's) already
    return {"p50_ms": timing["p50_ms"], "p90_ms": timing["p90_ms"],
            "round_p90_range_ms": (result["budget"] or {}).get("round_p90_range_ms"),
            "noisy": result["noise"]["warning"] is not None,
            "predicted_ms": (result.get("prediction") or {}).get("predicted_ms")}
