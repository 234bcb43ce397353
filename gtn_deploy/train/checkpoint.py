"""Training checkpoints: one file, written atomically, loaded with ``weights_only=True``.

A checkpoint holds everything an interrupted run needs to continue bit-for-bit on CPU:
model, optimiser, scheduler and sampler states, the RNG states (python, numpy, torch), the
position in the data (epoch, step; the order itself is a function of seed and epoch), the
running meters and how much of metrics.jsonl had been written. Only tensors and plain
Python values go in, so loading never runs arbitrary unpickling.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gtn_deploy.errors import CheckpointError
from gtn_deploy.io_utils import atomic_write_bytes

CHECKPOINT_FORMAT = "gtn_deploy.train_checkpoint"
CHECKPOINT_VERSION = 2  # 2: a sha256 trailer after the torch bytes
CHECKPOINT_NAME = "checkpoint/last.pt"


def rng_state() -> dict[str, Any]:
    version, keys, gauss = random.getstate()
    kind, np_keys, pos, has_gauss, cached = np.random.get_state()
    return {"python": [version, list(keys), gauss],
            "numpy": {"kind": kind, "keys": torch.from_numpy(np_keys.astype(np.int64)),
                      "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)},
            "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    version, keys, gauss = state["python"]
    random.setstate((version, tuple(keys), gauss))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` (tensors and plain values) atomically to ``path``, followed by the
    sha256 of those bytes: flipped bytes inside a tensor load fine with torch alone, so the
    hash is what catches them on resume. A failed write leaves the previous file intact."""
    payload = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **state}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    body = buffer.getvalue()
    trailer = _TRAILER + hashlib.sha256(body).hexdigest().encode()
    return atomic_write_bytes(path, body + trailer)


_TRAILER = b"\ngtn_deploy-sha256:"
_TRAILER_LEN = len(_TRAILER) + 64


def _verified_body(path: Path) -> bytes:
    data = path.read_bytes()
    body, trailer = data[:-_TRAILER_LEN], data[-_TRAILER_LEN:]
    if not trailer.startswith(_TRAILER):
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated (no integrity "
                              "trailer); nothing was overwritten: delete it to start over")
    if hashlib.sha256(body).hexdigest().encode() != trailer[len(_TRAILER):]:
        raise CheckpointError(f"checkpoint {path} is corrupt (sha256 mismatch); nothing was "
                              "overwritten: delete it to start over")
    return body


def load_checkpoint(path: str | Path, expect_config: dict[str, Any] | None = None
                    ) -> dict[str, Any]:
    """Read a checkpoint; any damage or mismatch is a one-line CheckpointError."""
    path = Path(path)
    try:
        body = _verified_body(path)
        state = torch.load(io.BytesIO(body), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint at {path}") from None
    except CheckpointError:
        raise
    except Exception as exc:  # torch raises many types for damaged files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"checkpoint {path} is corrupt or unreadable ({first[:160]})") \
            from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a gtn_deploy training checkpoint")
    if state.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"{path}: checkpoint version {state.get('version')}, this "
                              f"gtn_deploy reads version {CHECKPOINT_VERSION}")
    if expect_config is not None:
        _check_config(path, json.loads(state["config"]), expect_config)
    return state


# Flags that may change between the interrupted run and its resumption.
_MAY_DIFFER = {"checkpoint_every", "log_every", "progress", "progress_every_s"}


def _check_config(path: Path, saved: dict[str, Any], current: dict[str, Any]) -> None:
    for key in sorted(set(saved) | set(current)):
        if key in _MAY_DIFFER:
            continue
        if saved.get(key) != current.get(key):
            raise CheckpointError(
                f"{path} was written with {key}={saved.get(key)!r}, this run has "
                f"{key}={current.get(key)!r}; resume with the same settings or use another --out")
