"""Checkpoint files: safetensors weights plus a JSON sidecar; loading never unpickles.

The pieces every checkpoint kind shares (students and supernets in
``gtn_deploy.supernet.checkpoint``, teachers in ``gtn_deploy.models.checkpoint``): each file
is written atomically and the sidecar last, so a crash leaves either the old checkpoint or a
sidecar whose sha256 does not match the weights, which loading reports. The network is
rebuilt by its owner, then the tensors are checked name by name and shape by shape.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gtn_deploy import __version__
from gtn_deploy.errors import CheckpointError
from gtn_deploy.io_utils import atomic_write_bytes, atomic_write_json, sha256_file

SCHEMA_VERSION = 1


def write_checkpoint(directory: str | Path, weights_name: str, sidecar_name: str,
                     model: nn.Module, doc: dict[str, Any]) -> Path:
    """Write ``model``'s state dict and ``doc`` (plus schema, weights hash, versions)."""
    from safetensors.torch import save

    directory = Path(directory)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    weights = atomic_write_bytes(directory / weights_name, save(tensors))
    full = {"schema_version": SCHEMA_VERSION, **doc,
            "weights": {"file": weights_name, "sha256": sha256_file(weights),
                        "num_params": sum(p.numel() for p in model.parameters())},
            "versions": {"gtn_deploy": __version__, "torch": torch.__version__},
            "created_unix": round(time.time(), 3)}
    atomic_write_json(directory / sidecar_name, full)
    return directory


def read_sidecar(directory: str | Path, sidecar_name: str, kind: str) -> dict[str, Any]:
    """The JSON sidecar, checked for kind and schema version."""
    path = Path(directory) / sidecar_name
    if not path.is_file():
        raise CheckpointError(f"{path}: not found (is {directory} a {kind} checkpoint?)")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("kind") != kind:
        got = doc.get("kind") if isinstance(doc, dict) else type(doc).__name__
        raise CheckpointError(f"{path}: kind is {got!r}, expected {kind!r}")
    version = doc.get("schema_version")
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise CheckpointError(f"{path}: schema_version {version!r} is not supported "
                              f"(this gtn_deploy reads up to {SCHEMA_VERSION})")
    if not isinstance(doc.get("weights"), dict) or "sha256" not in doc["weights"]:
        raise CheckpointError(f"{path}: missing the 'weights' entry with its sha256")
    return doc


def read_weights(directory: str | Path, sidecar_name: str, doc: dict[str, Any]
                 ) -> dict[str, torch.Tensor]:
    """The tensors the sidecar names, after checking their sha256."""
    from safetensors.torch import load

    path = Path(directory) / doc["weights"].get("file", "")
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file not found (named in {sidecar_name})")
    digest = sha256_file(path)
    if digest != doc["weights"]["sha256"]:
        raise CheckpointError(f"{path}: sha256 mismatch (file {digest[:12]}..., {sidecar_name} "
                              f"says {str(doc['weights']['sha256'])[:12]}...): corrupt or replaced")
    try:
        return load(path.read_bytes())
    except Exception as exc:  # safetensors raises its own error types for malformed headers
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None


def load_tensors(model: nn.Module, tensors: dict[str, torch.Tensor], path: str | Path,
                 what: str) -> None:
    """Load ``tensors`` into ``model`` strictly; a mismatch is one CheckpointError line."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in tensors]
    unexpected = [k for k in tensors if k not in expected]
    problems = []
    if missing:
        problems.append(f"missing tensors {_few(missing)}")
    if unexpected:
        problems.append(f"unexpected tensors {_few(unexpected)}")
    for key, ref in expected.items():
        if key in tensors and tensors[key].shape != ref.shape:
            problems.append(f"shape mismatch for {key}: file {tuple(tensors[key].shape)}, "
                            f"model {tuple(ref.shape)}")
            break
    if problems:
        raise CheckpointError(f"{path} does not fit {what}: {'; '.join(problems)}")
    model.load_state_dict(tensors, strict=True)


def _few(keys: list[str], n: int = 3) -> str:
    shown = ", ".join(keys[:n])
    return shown + (f" (+{len(keys) - n} more)" if len(keys) > n else "")
