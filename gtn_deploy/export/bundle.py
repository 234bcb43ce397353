"""Student + device profile -> bundle folder (and .tar.gz), built atomically.

Everything is written into a temporary folder beside the target and renamed into place only
when every gate has passed, so an export killed at any moment leaves no bundle or a complete
one. The tarball is written to a temporary name and renamed, too. What a killed export left
is swept by the next export into the same folder (``sweep_leftovers``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gtn_deploy.cost.latency import predict_latency
from gtn_deploy.errors import ExportError, GtnError, UsageError
from gtn_deploy.export import documents
from gtn_deploy.export.data import CLASS_LABELS, ExportData, load_export_data
from gtn_deploy.export.onnx import (DEFAULT_OPSET, InputSpec, check_opset, export_onnx, parity_gate,
                                    parity_check_engine)
from gtn_deploy.export.quantize import PRESETS, measure_fp32, quantize_and_gate
from gtn_deploy.export.tensorrt import build_script
from gtn_deploy.io_utils import atomic_dir, atomic_write_json, atomic_write_text, sha256_file
from gtn_deploy.manifest import BundleManifest, load_manifest, manifest_digest, verify_files
from gtn_deploy.progress import Steps
from gtn_deploy.runtimes.tensorrt import build_engine, plan_engine
from gtn_deploy.spaces.base import Space

# Scripts copied into bundles; they run on the device without gtn_deploy (Python 3.8, numpy
# and onnxruntime or tensorrt). run_trt.py goes only into bundles for a TensorRT device.
SCRIPTS_DIR = Path(__file__).parent
BUNDLE_SCRIPTS = ("run_onnx.py", "bundle_io.py")
TRT_SCRIPT = "run_trt.py"
STUDENT_FILES = ("weights.safetensors", "student.json")
# tempfile's names for atomic_dir's folder and write_tarball's file: ".<bundle>.<8>.tmp"
# and ".<bundle>.tar.gz.<8>.tmp"; nothing else in an output folder is ever swept.
_LEFTOVER = re.compile(r"^\.(?P<name>.+?)(?:\.tar\.gz)?\.[a-z0-9_]{8}\.tmp$")
STALE_AFTER_S = 3600.0


@dataclass(frozen=True)
class ExportOptions:
    """What ``gtnd export`` can change; defaults follow the issue's gates."""

    opset: int = DEFAULT_OPSET
    dynamic_batch: bool = False
    int8: bool | None = None  # None: make INT8 when the profile lists it
    max_drop_points: float = 1.0
    allow_accuracy_drop: bool = False
    presets: tuple[str, ...] = PRESETS
    calib_images: int = 300
    eval_images: int | None = None  # None: the whole test split
    parity_images: int = 256
    max_batch: int = 8
    workspace_mb: int = 256
    name: str | None = None
    overwrite: bool = False
    tarball: bool = True
    build_engine: bool = False
    # The latency budget the student was planned under (the pipeline passes its plan's,
    # scaled to the task); None: the profile's own. Recorded so that bench gives a verdict.
    budget_ms: float | None = None
    threads: int = 1
    data_dir: str | None = None


@dataclass(frozen=True)
class ExportJob:
    """What one export is about: the student, the device, its input and the options."""

    model: Any  # the student, a plain nn.Module
    arch: Any
    space: Any
    student_dir: Path
    student_doc: dict[str, Any]
    profile: Any
    options: ExportOptions
    spec: InputSpec
    name: str
    make_int8: bool


@dataclass(frozen=True)
class BundleResult:
    path: Path
    tarball: Path | None
    manifest: BundleManifest
    seconds: float


def export_student(student_dir: str | Path, profile, out_dir: str | Path,
                   options: ExportOptions = ExportOptions(),
                   data: ExportData | None = None, progress: bool = True) -> BundleResult:
    """Load a student folder (weights.safetensors + student.json) and export its bundle.

    ``progress``: a line per gate on stderr (and bars on a terminal; none under ``gtnd -q``).
    """
    from gtn_deploy.supernet import load_student  # lazy: keeps torch out of a light module

    bundle_target(student_dir, profile, out_dir, options)  # a bad --name fails before loading
    # the loader resolved the space (its classes too) and checked the arch: the student
    # network, of any family, carries both
    model, doc = load_student(student_dir)
    return export_bundle(model, model.arch, model.space, Path(student_dir), doc, profile,
                         out_dir, options, data, progress)


def export_bundle(model, arch, space: Space, student_dir: Path, student_doc: dict[str, Any],
                  profile, out_dir: str | Path, options: ExportOptions = ExportOptions(),
                  data: ExportData | None = None, progress: bool = True) -> BundleResult:
    """Export ``model`` (a plain nn.Module) for ``profile`` into ``out_dir/<name>``; each gate
    is a step of ``progress.Steps`` (see ``export_student``)."""
    start = time.perf_counter()
    check_opset(options.opset)
    for name in STUDENT_FILES:
        if not (Path(student_dir) / name).is_file():
            raise UsageError(f"{student_dir}: missing {name} (is it a student folder?)")
    final = bundle_target(student_dir, profile, out_dir, options)
    name = final.name
    make_int8 = ("int8" in profile.precisions) if options.int8 is None else options.int8
    spec = InputSpec(space.task.in_channels, arch.resolution, arch.resolution,
                     batch_size=max(1, int(profile.budgets.batch_size)),
                     dynamic_batch=options.dynamic_batch)
    job = ExportJob(model, arch, space, Path(student_dir), student_doc, profile, options, spec,
                    name, make_int8)
    names = _step_names(options, make_int8, load_data=data is None)
    with Steps(f"export {profile.id}", names, enabled=progress) as steps:
        if data is None:
            with steps.step("data") as step:
                data = load_export_data(space.task, options.data_dir, options.calib_images,
                                        options.eval_images, image_size=arch.resolution)
                step.note = (f"{len(data.calib_images)} calibration and "
                             f"{len(data.eval_images)} test images")
        with atomic_dir(final, overwrite=options.overwrite) as tmp:
            manifest = _assemble(tmp, job, data, steps)
        tarball = None
        if options.tarball:
            with steps.step("tarball") as step:
                tarball = write_tarball(final)
                step.note = f"{tarball.name}, {tarball.stat().st_size / 1e6:.1f} MB"
    return BundleResult(final, tarball, manifest, time.perf_counter() - start)


def bundle_target(student_dir: str | Path, profile, out_dir: str | Path,
                  options: ExportOptions) -> Path:
    """``out_dir/<name>`` once the name is checked, what a killed export left is swept, and
    what is there is known to be replaceable."""
    name = check_bundle_name(options.name or f"{Path(student_dir).resolve().name}-{profile.id}")
    final = Path(out_dir) / name
    sweep_leftovers(Path(out_dir), name)
    check_replaceable(final, options.overwrite)
    return final


# A bundle name is one plain path component: no separators, no "."/"..", no leading dot
# (that is the temporaries' namespace, which sweep_leftovers deletes), no control characters.
_BUNDLE_NAME = re.compile(r"^[^./\\\x00-\x1f\x7f][^/\\\x00-\x1f\x7f]{0,127}$")


def check_bundle_name(name: str) -> str:
    """``name`` if it names a folder directly inside ``--out``, else a UsageError: a name
    like ``../x`` or ``/abs`` would write, and with --overwrite delete, outside it."""
    if not _BUNDLE_NAME.match(name) or name.endswith(".tar.gz"):
        raise UsageError(f"--name {name!r} is not a plain folder name: one path component "
                         "of 1-128 characters, no '/' or '\\', not starting with '.' and "
                         "not ending in .tar.gz")
    return name


def check_replaceable(final: Path, overwrite: bool) -> None:
    """Refuse to replace anything but a bundle: --overwrite deletes ``final`` and its
    tarball, so both must be what an earlier export wrote."""
    tarball = final.with_name(final.name + ".tar.gz")
    if final.is_symlink() or (final.exists() and not final.is_dir()):
        raise ExportError(f"{final} exists and is not a bundle folder; remove it or pick "
                          "another --name")
    if tarball.is_symlink() or (tarball.exists() and not tarball.is_file()):
        raise ExportError(f"{tarball} exists and is not a bundle archive; remove it or pick "
                          "another --name")
    if not final.exists():
        return
    if not overwrite:
        raise ExportError(f"{final} already exists; pass --overwrite or another --out")
    try:
        load_manifest(final)
    except GtnError:
        raise ExportError(f"{final} exists and is not a bundle (no valid manifest.json); "
                          "--overwrite replaces only bundles") from None


def _step_names(options: ExportOptions, make_int8: bool, load_data: bool = True) -> list[str]:
    """The export's steps (its gates among them) in the order they run."""
    return ((["data"] if load_data else []) + ["onnx", "parity", "fp32 accuracy"]
            + ([f"int8 {p}" for p in options.presets] + ["int8 gate"] if make_int8 else [])
            + (["tensorrt engine"] if options.build_engine else []) + ["bundle files"]
            + (["tarball"] if options.tarball else []))


def _assemble(tmp: Path, job: ExportJob, data: ExportData, steps: Steps) -> BundleManifest:
    export_start = time.perf_counter()
    options = job.options
    onnx_info, parity = _onnx_and_parity(tmp, job, data, steps)
    metrics, host_latency = _quantize_or_eval(tmp, job, data, parity, steps)
    models = {"fp32": "model.onnx", "int8": "model.int8.onnx" if metrics["int8_top1"] is not None
              else None}
    # An INT8 model kept with --allow-accuracy-drop is shipped but never recommended.
    int8_ok = models["int8"] is not None and metrics["int8_drop_points"] <= options.max_drop_points
    recommended = documents.recommend_precision(job.profile, int8_ok, host_latency)
    plan = _engine_plan(job, recommended[0], models)
    if options.build_engine:
        with steps.step("tensorrt engine"):
            parity.update(_build_and_check(tmp, plan, data, options))
    with steps.step("bundle files") as step:
        labels = _write_files(tmp, job, plan, data)
        parts = documents.ManifestParts(
            name=job.name, arch=job.arch, space=job.space, spec=job.spec, labels=labels,
            models=models, recommended=recommended, metrics=metrics,
            latency=_predict(job, recommended[0]), profile=job.profile,
            budget=documents.budget_entry(job.profile, options.budget_ms),
            versions=documents.tool_versions(job.make_int8),
            provenance=_provenance(job, data),
            export={**onnx_info, "dynamic_batch": job.spec.dynamic_batch, "export_wall_s": None,
                    "engine_plan": dataclasses.asdict(plan) if plan else None})
        atomic_write_text(tmp / "README.md", documents.readme(documents.build_manifest(parts, {})))
        parts = dataclasses.replace(parts, export={
            **parts.export, "export_wall_s": round(time.perf_counter() - export_start, 3)})
        # A JSON round trip makes what is returned equal to what load_manifest reads back.
        manifest = json.loads(json.dumps(documents.build_manifest(
            parts, documents.file_entries(tmp))))
        manifest["manifest_sha256"] = manifest_digest(manifest)
        atomic_write_json(tmp / "manifest.json", manifest)
        _make_readable(tmp)
        problems = verify_files(tmp)
        if problems:
            raise ExportError(f"bundle failed its own verification: {problems[0]}")
        step.note = f"{len(manifest['files']) + 1} files written and verified"
    return BundleManifest.parse(manifest)


def _onnx_and_parity(tmp: Path, job: ExportJob, data: ExportData, steps: Steps):
    """Steps "onnx" and "parity": the ONNX file, then eager PyTorch vs onnxruntime."""
    model, spec, options = job.model, job.spec, job.options
    with steps.step("onnx") as step:
        onnx_info = export_onnx(model, spec, tmp / "model.onnx", options.opset)
        step.note = f"opset {options.opset}, {onnx_info['nodes']} nodes"
    with steps.step("parity") as step:
        images = data.parity_images(options.parity_images)
        with steps.bar("parity: PyTorch, then onnxruntime", 2 * len(images)) as advance:
            result = parity_gate(model, tmp / "model.onnx", images, options.parity_images,
                                 options.threads, on_images=advance)
        step.status = "passed"
        step.note = (f"{result.images} images, max |logit diff| {result.max_abs_diff:.2g}, "
                     f"top-1 agreement {result.top1_agreement:.4f}")
    return onnx_info, {"onnxruntime_fp32": result.to_dict()}


def _write_files(tmp: Path, job: ExportJob, plan, data: ExportData) -> list[str]:
    """The student, scripts and labels beside the models; returns the labels."""
    for file in STUDENT_FILES:
        shutil.copyfile(job.student_dir / file, tmp / file)
    _write_engine_script(tmp, plan, job.profile)
    (tmp / "build_engine.sh").chmod(0o755)
    _copy_scripts(tmp, plan is not None)
    labels = _class_labels(job.space, data)
    atomic_write_text(tmp / "labels.txt", "".join(f"{label}\n" for label in labels))
    return labels


def _provenance(job: ExportJob, data: ExportData) -> dict[str, Any]:
    return {"student_sha256": sha256_file(job.student_dir / STUDENT_FILES[0]),
            "student_json_sha256": sha256_file(job.student_dir / STUDENT_FILES[1]),
            "teacher_sha256": _teacher_hash(job.student_doc), "data": data.description}


def _quantize_or_eval(tmp: Path, job: ExportJob, data: ExportData, parity: dict[str, Any],
                      steps: Steps):
    """fp32 (and INT8, gated) accuracy in onnxruntime, plus this host's latency per model."""
    spec, options = job.spec, job.options
    metrics: dict[str, Any] = {"eval_images": len(data.eval_images), "int8_top1": None,
                               "int8_drop_points": None, "calib_images": None,
                               "int8_preset": None, "parity": parity}
    if job.make_int8:
        q = quantize_and_gate(tmp / "model.onnx", tmp / "model.int8.onnx", data, options.presets,
                              options.max_drop_points, options.allow_accuracy_drop,
                              spec.batch_size, options.threads, steps)
        metrics.update(fp32_top1=q.fp32_top1, int8_top1=q.int8_top1,
                       int8_drop_points=q.drop_points, calib_images=q.calib_images,
                       int8_preset=q.preset, int8_presets=q.presets_dict(),
                       max_drop_points=options.max_drop_points,
                       accuracy_drop_allowed=options.allow_accuracy_drop)
        parity["onnxruntime_int8"] = q.parity.to_dict()
        host = {"fp32": q.fp32_latency_ms, "int8": q.int8_latency_ms}
    else:
        fp32 = measure_fp32(tmp / "model.onnx", data, spec.batch_size, options.threads, steps)
        metrics["fp32_top1"] = fp32.top1
        host = {"fp32": fp32.latency_ms}
    metrics["host_latency_ms"] = {**host, "batch_size": spec.batch_size,
                                  "threads": options.threads, "note": "export host, not the device"}
    return metrics, host


def _engine_plan(job: ExportJob, precision: str, models: dict[str, str | None]):
    profile, spec, options = job.profile, job.spec, job.options
    if profile.runtime.name.lower() != "tensorrt":
        return None
    return plan_engine(profile.runtime.version, precision, spec.name, spec.shape,
                       dynamic_batch=spec.dynamic_batch, max_batch=options.max_batch,
                       int8_file=models["int8"], workspace_mb=options.workspace_mb,
                       opset=options.opset)


def _write_engine_script(tmp: Path, plan, profile) -> None:
    if plan is not None:
        atomic_write_text(tmp / "build_engine.sh", build_script(plan, profile.id))
        return
    atomic_write_text(tmp / "build_engine.sh", (
        "#!/usr/bin/env bash\n"
        f"# Device '{profile.id}' runs {profile.runtime.name} {profile.runtime.version}: "
        "no TensorRT engine is needed.\n"
        f"echo \"device '{profile.id}' uses {profile.runtime.name}; run: python3 run_onnx.py\"\n"))


def _build_and_check(tmp: Path, plan, data, options) -> dict[str, Any]:
    """``--build-engine``: build on this (device) machine and check parity vs onnxruntime."""
    if plan is None:
        raise UsageError("--build-engine needs a TensorRT device profile")
    build = tmp / "build"
    engine = build_engine(tmp / plan.onnx_file, plan, build / f"model.{plan.precision}.engine",
                          build / "timing.cache")
    result = parity_check_engine(engine, tmp / plan.onnx_file,
                                 data.parity_images(options.parity_images), plan.precision,
                                 plan.input_shape[0])
    if not result.passed:
        raise ExportError(f"TensorRT {plan.precision} engine parity failed: max |logit diff| "
                          f"{result.max_abs_diff:.3g}, top-1 agreement {result.top1_agreement:.4f}")
    return {f"tensorrt_{plan.precision}": result.to_dict()}


def _predict(job: ExportJob, precision: str) -> dict[str, Any] | None:
    batch_size = job.spec.batch_size
    try:
        est = predict_latency(job.space, job.arch, job.profile, precision=precision,
                              batch_size=batch_size)
    except (ImportError, GtnError):
        return None
    return {"device": job.profile.id, "precision": precision, "batch_size": batch_size,
            **est.to_dict()}


def _make_readable(root: Path) -> None:
    """Temporary files are created 0600/0700; a bundle is meant to be shared and copied."""
    root.chmod(0o755)
    for path in root.rglob("*"):
        if path.is_dir():
            path.chmod(0o755)
        elif path.suffix not in (".sh", ".py"):
            path.chmod(0o644)


def _copy_scripts(tmp: Path, tensorrt: bool) -> None:
    for script in BUNDLE_SCRIPTS + ((TRT_SCRIPT,) if tensorrt else ()):
        shutil.copyfile(SCRIPTS_DIR / script, tmp / script)
        (tmp / script).chmod(0o644 if script == "bundle_io.py" else 0o755)


def _class_labels(space: Space, data: ExportData) -> list[str]:
    """One name a class, on one line each (labels.txt has a class a line)."""
    n = space.task.num_classes
    for names in (CLASS_LABELS.get(space.task.name), data.classes):
        if names and len(names) == n:
            return [" ".join(str(name).split()) or str(i) for i, name in enumerate(names)]
    return [str(i) for i in range(n)]


def sweep_leftovers(out_dir: Path, name: str, now: float | None = None) -> list[Path]:
    """Remove the temporaries a killed export left in ``out_dir``: those of bundle ``name``
    always (an export of the same name running now would collide with this one anyway),
    others only when untouched for ``STALE_AFTER_S``, as another export may be writing them."""
    now = time.time() if now is None else now
    try:
        entries = sorted(out_dir.iterdir())
    except OSError:  # not there yet, or unreadable: the export itself will say so
        return []
    swept = []
    for path in entries:
        match = _LEFTOVER.match(path.name)
        if match is None or path.is_symlink():
            continue
        if match["name"] != name and now - _last_touched(path) < STALE_AFTER_S:
            continue
        with contextlib.suppress(OSError):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
            swept.append(path)
    return swept


def _last_touched(path: Path) -> float:
    """Newest mtime of ``path`` and, for a folder, of what is directly in it."""
    try:
        stamps = [path.stat().st_mtime] + ([p.lstat().st_mtime for p in path.iterdir()]
                                           if path.is_dir() else [])
    except OSError:
        return time.time()  # vanishing under us: someone is working on it
    return max(stamps)


def _teacher_hash(doc: dict[str, Any]) -> str | None:
    meta = doc.get("meta") or {}
    return meta.get("teacher_sha256") or doc.get("teacher_sha256")


def write_tarball(bundle_dir: Path) -> Path:
    """``<bundle>.tar.gz`` of the folder (build/ left out), written atomically."""
    bundle_dir = Path(bundle_dir)
    final = bundle_dir.with_name(bundle_dir.name + ".tar.gz")
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    try:
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
            tar.add(bundle_dir, arcname=bundle_dir.name, filter=_tar_filter)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, final)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return final


def _tar_filter(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    parts = info.name.split("/")
    if len(parts) > 1 and parts[1] == "build":
        return None
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info
