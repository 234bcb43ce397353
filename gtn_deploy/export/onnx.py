"""PyTorch -> ONNX with a checker pass, optional simplification and an onnxruntime parity gate.

Takes a plain ``nn.Module`` and an ``InputSpec``; it never reaches into the supernet.
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from gtn_deploy.errors import ExportError, UsageError
from gtn_deploy.export.tensorrt import ENGINE_LOGIT_ATOL
from gtn_deploy.io_utils import atomic_write_bytes
from gtn_deploy.runtimes.onnxruntime import inference_session
from gtn_deploy.runtimes.tensorrt import engine_logits
from gtn_deploy.stats import percentile

MIN_OPSET = 13  # TensorRT 8.2 (Jetson Nano, last JetPack 4) parses up to opset 13
DEFAULT_OPSET = 17
MAX_OPSET = 21

# Parity tolerance on logits by precision. fp32 ONNX vs eager differs only by kernel order;
# fp16 engines keep ~3 significant digits; int8 is judged by top-1 agreement and accuracy.
LOGIT_ATOL = {"fp32": 1e-4, "fp16": 1e-1, "int8": None}
MIN_TOP1_AGREEMENT = {"fp32": 1.0, "fp16": 0.99, "int8": 0.95}


@dataclass(frozen=True)
class InputSpec:
    """Shape and naming of the single image input (NCHW, float32, already normalised)."""

    channels: int
    height: int
    width: int
    batch_size: int = 1
    dynamic_batch: bool = False
    name: str = "input"
    output_name: str = "logits"

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (self.batch_size, self.channels, self.height, self.width)


@dataclass(frozen=True)
class ParityResult:
    """How closely one runtime's logits follow a reference on real images."""

    max_abs_diff: float
    mean_abs_diff: float
    top1_agreement: float
    images: int
    atol: float | None
    min_top1_agreement: float
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_opset(opset: int) -> int:
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise UsageError(f"--opset {opset} is out of range; valid: {MIN_OPSET}..{MAX_OPSET} "
                         f"(default {DEFAULT_OPSET})")
    return opset


def export_onnx(model, spec: InputSpec, path: str | Path, opset: int = DEFAULT_OPSET,
                simplify: bool = True) -> dict[str, Any]:
    """Export ``model`` to ``path`` (written atomically); return export facts for the manifest."""
    import onnx
    import torch

    check_opset(opset)
    model = model.eval()
    dummy = torch.zeros(spec.shape, dtype=torch.float32)
    axes = {spec.name: {0: "batch"}, spec.output_name: {0: "batch"}} if spec.dynamic_batch else None
    buf = io.BytesIO()
    start = time.perf_counter()
    # The TorchScript exporter (dynamo=False) takes ~0.3 s for these nets against 7-11 s for
    # the dynamo exporter, and yields the same plain Conv/HardSwish/Gemm graph; its
    # deprecation warning is expected and silenced.
    with warnings.catch_warnings(), torch.no_grad(), torch_threads(1):
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (dummy,), buf, dynamo=False, opset_version=opset,
                          input_names=[spec.name], output_names=[spec.output_name],
                          dynamic_axes=axes, do_constant_folding=True)
    proto = onnx.load_from_string(buf.getvalue())
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"exported ONNX model fails onnx.checker: {exc}") from None
    simplified = False
    if simplify:
        proto, simplified = simplify_model(proto)
    atomic_write_bytes(path, proto.SerializeToString())
    return {"opset": opset, "exporter": "torch.onnx (TorchScript, dynamo=False)",
            "simplified": simplified, "export_s": round(time.perf_counter() - start, 3),
            "nodes": len(proto.graph.node)}


def simplify_model(proto):
    """Run onnxsim when it is installed; the exporter already folded constants otherwise."""
    try:
        import onnxsim  # optional, never installed by us
    except ImportError:
        return proto, False
    try:
        simplified, ok = onnxsim.simplify(proto)
    except Exception as exc:  # onnxsim failures must not block an export  # noqa: BLE001
        logging.getLogger(__name__).warning("onnxsim failed (%s); keeping the exported graph", exc)
        return proto, False
    return (simplified, True) if ok else (proto, False)


def run_session(session, images: np.ndarray, batch_size: int = 64,
                on_images: Callable[[int], None] | None = None) -> np.ndarray:
    """Logits for ``images`` (N, C, H, W float32); respects a fixed batch dimension.
    ``on_images(n)`` is told of each batch of ``n`` images done (a progress bar)."""
    inp = session.get_inputs()[0]
    fixed = inp.shape[0] if isinstance(inp.shape[0], int) else None
    step = fixed or batch_size
    outs = []
    for i in range(0, len(images), step):
        chunk = np.ascontiguousarray(images[i:i + step], dtype=np.float32)
        pad = (fixed - len(chunk)) if fixed and len(chunk) < fixed else 0
        if pad:
            chunk = np.concatenate([chunk, np.zeros((pad, *chunk.shape[1:]), np.float32)])
        out = session.run(None, {inp.name: chunk})[0]
        outs.append(out[:len(out) - pad] if pad else out)
        if on_images is not None:
            on_images(len(chunk) - pad)
    return np.concatenate(outs)


@contextlib.contextmanager
def torch_threads(n: int = 1):
    """Run torch with ``n`` intra-op threads, then restore. On a busy 2-core host torch's
    second thread mostly waits: small-net inference and training ran 10-40x slower with 2."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def torch_logits(model, images: np.ndarray, batch_size: int = 256,
                 on_images: Callable[[int], None] | None = None) -> np.ndarray:
    """Eager PyTorch logits (the parity reference), one intra-op thread."""
    import torch

    model = model.eval()
    outs = []
    with torch.no_grad(), torch_threads(1):
        for i in range(0, len(images), batch_size):
            outs.append(model(torch.from_numpy(images[i:i + batch_size])).numpy())
            if on_images is not None:
                on_images(len(outs[-1]))
    return np.concatenate(outs)


def compare_logits(reference: np.ndarray, candidate: np.ndarray, precision: str,
                   atol: float | None = -1.0) -> ParityResult:
    """Parity of ``candidate`` against ``reference`` with the tolerances of ``precision``."""
    if precision not in LOGIT_ATOL:
        raise UsageError(f"unknown precision '{precision}'; valid: {', '.join(LOGIT_ATOL)}")
    if reference.shape != candidate.shape:
        raise ExportError(f"parity: logits shapes differ {reference.shape} vs {candidate.shape}")
    diff = np.abs(reference.astype(np.float64) - candidate.astype(np.float64))
    agree = float(np.mean(reference.argmax(1) == candidate.argmax(1)))
    atol = LOGIT_ATOL[precision] if atol == -1.0 else atol
    min_agree = MIN_TOP1_AGREEMENT[precision]
    max_diff = float(diff.max())
    passed = agree >= min_agree and (atol is None or max_diff <= atol)
    return ParityResult(max_diff, float(diff.mean()), agree, len(reference), atol, min_agree, passed)


def parity_gate(model, onnx_path: str | Path, images: np.ndarray, min_images: int = 256,
                threads: int = 1, on_images: Callable[[int], None] | None = None
                ) -> ParityResult:
    """Eager PyTorch vs onnxruntime fp32 on real images; raise ExportError if it fails.
    ``on_images`` hears of each batch through either runtime: 2 x len(images) in all."""
    if len(images) < min_images:
        raise ExportError(f"parity needs at least {min_images} validation images, got {len(images)}")
    ref = torch_logits(model, images, on_images=on_images)
    got = run_session(inference_session(onnx_path, threads), images, on_images=on_images)
    result = compare_logits(ref, got, "fp32")
    if not result.passed:
        raise ExportError(
            f"ONNX parity failed for {onnx_path}: max |logit diff| {result.max_abs_diff:.3g} "
            f"(atol {result.atol}), top-1 agreement {result.top1_agreement:.4f} on "
            f"{result.images} images")
    return result


def parity_check_engine(engine_path: str | Path, onnx_path: str | Path, images: np.ndarray,
                        precision: str, batch_size: int = 1) -> ParityResult:
    """TensorRT engine logits vs onnxruntime logits of the same ONNX model on real images.

    Here, not in export.tensorrt, so that the engine builder that ``gtnd bench`` uses does
    not import this module, whose export functions import torch."""
    reference = run_session(inference_session(onnx_path), images)
    got = engine_logits(engine_path, images, batch_size)
    return compare_logits(reference, got, precision, atol=ENGINE_LOGIT_ATOL[precision])


def measure_latency_ms(session, spec_shape: tuple[int, ...], iters: int = 200,
                       warmup: int = 20, seed: int = 0) -> dict[str, float]:
    """p50/p90 wall latency of one ``session.run`` on a random input (this host)."""
    inp = session.get_inputs()[0]
    x = np.random.default_rng(seed).standard_normal(spec_shape).astype(np.float32)
    for _ in range(warmup):
        session.run(None, {inp.name: x})
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        session.run(None, {inp.name: x})
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return {"p50_ms": percentile(times, 50), "p90_ms": percentile(times, 90),
            "mean_ms": float(np.mean(times)), "iters": iters}
