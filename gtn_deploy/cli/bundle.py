"""``gtnd bundle verify|info``: check and describe a bundle (no torch on this path)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from gtn_deploy.cli.common import user_errors
from gtn_deploy.cli.output import print_json, stdout_to_stderr
from gtn_deploy.errors import BundleError
from gtn_deploy.manifest import BundleManifest, load_manifest, open_bundle, verify_files

app = typer.Typer(help="Check and describe model bundles.", no_args_is_help=True)


def run_random_input(bundle_dir: Path, manifest: BundleManifest) -> list[dict]:
    """Load every ONNX model of the bundle in onnxruntime and run one random input."""
    import numpy as np
    import onnxruntime as ort

    lines = []
    for precision, file in manifest.models.items():
        if file is None:
            continue
        try:
            sess = ort.InferenceSession(str(bundle_dir / file), providers=["CPUExecutionProvider"])
            inp = sess.get_inputs()[0]
            batch = inp.shape[0] if isinstance(inp.shape[0], int) else 1
            shape = [batch, *manifest.input["shape"][1:]]
            x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
            out = sess.run(None, {inp.name: x})[0]
        except Exception as exc:  # onnxruntime raises its own types  # noqa: BLE001
            raise BundleError(f"{file}: onnxruntime cannot run it ({exc})") from None
        expected = manifest.output["shape"][-1]
        if out.shape != (shape[0], expected) or not np.isfinite(out).all():
            raise BundleError(f"{file}: output {out.shape} is not ({shape[0]}, {expected}) finite logits")
        lines.append({"file": file, "precision": precision, "output_shape": list(out.shape)})
    return lines


@app.command("verify")
@user_errors
def verify(path: Annotated[Path, typer.Argument(help="Bundle folder or .tar.gz.")],
           as_json: Annotated[bool, typer.Option("--json", help="Print the result as one JSON document ({ok, problems, files_checked, models}); exit 1 when not ok.")] = False) -> None:
    """Check the schema, every file's sha256, and that the models run in onnxruntime."""
    with open_bundle(path) as folder:
        problems = verify_files(folder)
        if problems and as_json:
            print_json({"bundle": str(path), "ok": False, "problems": problems})
            raise typer.Exit(1)
        if problems:
            raise BundleError(f"{path}: {len(problems)} problem(s): " + "; ".join(problems))
        manifest = load_manifest(folder)
        with stdout_to_stderr(as_json):
            models = run_random_input(folder, manifest)
    if as_json:
        print_json({"bundle": str(path), "ok": True, "problems": [],
                    "files_checked": len(manifest.files), "models": models})
        return
    for m in models:
        typer.echo(f"{m['file']} ({m['precision']}): runs in onnxruntime, "
                   f"output {m['output_shape']}")
    typer.echo(f"OK {path}: {len(manifest.files)} files match their sha256")


@app.command("info")
@user_errors
def info(path: Annotated[Path, typer.Argument(help="Bundle folder or .tar.gz.")],
         as_json: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON.")] = False) -> None:
    """Describe a bundle: device, student, precision, accuracy, parity, predicted latency."""
    m = load_manifest(path)
    if as_json:
        typer.echo(json.dumps(m.doc, indent=2))
        return
    try:  # every line is built before any is shown, so a bad field prints one error line
        lines = _info_lines(m.doc, path)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BundleError(f"{path}: manifest.json has a missing or mistyped field "
                          f"({type(exc).__name__}: {exc})") from None
    typer.echo("\n".join(lines))


def _field(m: dict, dotted: str, path: Path):
    value = m
    for key in dotted.split("."):
        if not isinstance(value, dict) or key not in value:
            raise BundleError(f"{path}: manifest.json has no '{dotted}'")
        value = value[key]
    return value


def _info_lines(m: dict, path: Path) -> list[str]:
    met, lat = m["metrics"], m.get("latency_prediction") or {}
    rt = _field(m, "device.runtime", path)
    inp = m["input"]
    lines = [
        f"bundle     {m['name']} (schema {m['schema_version']}, {m['created_at']})",
        f"device     {_field(m, 'device.id', path)} ({_field(m, 'device.runtime.name', path)} "
        f"{rt.get('version', '?')})",
        f"student    {m.get('arch_summary', m['arch'])} [{m['space']}]",
        f"input      {inp['name']} {inp['shape']} {inp['dtype']} {inp['layout']}",
        f"recommend  {m['recommended_precision']} -> {m['recommended_model']}",
        f"accuracy   fp32 {met.get('fp32_top1', float('nan')):.2f}%" +
        (f", int8 {met['int8_top1']:.2f}% (drop {met['int8_drop_points']:.2f})"
         if met.get("int8_top1") is not None else "") + f" on {met.get('eval_images')} images"]
    for key, p in met.get("parity", {}).items():
        lines.append(f"parity     {key}: max|diff| {p['max_abs_diff']:.3g}, top-1 agreement "
                     f"{p['top1_agreement']:.4f} ({p['images']} images, "
                     f"{'passed' if p['passed'] else 'FAILED'})")
    if lat:
        lines.append(f"predicted  {lat['latency_ms']:.3f} ms [{lat['low_ms']:.3f}, "
                     f"{lat['high_ms']:.3f}] tier {lat['tier']} ({lat['precision']}, batch "
                     f"{lat['batch_size']})")
    lines.append(f"files      {', '.join(sorted(m['files']))}")
    return lines
