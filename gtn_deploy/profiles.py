"""Device profiles: what a target can do, what it may spend, and where each number comes from.

A profile is one YAML file under ``device_profiles/`` (data only, ``yaml.safe_load``). Every
number is written ``{value: X, source: S}`` where ``S`` is a key of the file's ``sources:``
map or a free text starting with ``derived:``, ``policy:`` or ``measured:``. The file is
validated by the pydantic models in ``gtn_deploy.profile_schema`` (unknown keys and wrong types
are errors); :class:`DeviceProfile` wraps the validated file and hands plain floats to the
cost model. No torch here: ``gtnd plan`` must start fast.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gtn_deploy.constants import OP_CLASSES
from gtn_deploy.errors import ProfileError, UsageError
from gtn_deploy.io_utils import read_regular_file
from gtn_deploy.local_profile import local_profile
from gtn_deploy.profile_schema import ProfileSpec, Sourced, check_spec, validation_message
from gtn_deploy.yaml_data import load_yaml, yaml_error_line

__all__ = ["DeviceProfile", "Budgets", "LatencyModel", "RuntimeInfo", "ProfileError",
           "Sourced", "load_profile", "list_profiles", "resolve_alias", "profiles_dir",
           "OP_CLASSES"]

def profiles_dir() -> Path:
    """``$GTND_PROFILES_DIR`` if set, else the repository's ``device_profiles/`` (a source
    checkout or editable install), else the copy shipped inside the installed package."""
    env = os.environ.get("GTND_PROFILES_DIR")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent
    checkout = here.parent / "device_profiles"
    return checkout if checkout.is_dir() else here / "device_profiles"


# -- the plain-float view the cost model uses ---------------------------------------------------

@dataclass(frozen=True)
class Budgets:
    latency_ms: float
    percentile: str
    batch_size: int
    memory_mb: float


@dataclass(frozen=True)
class RuntimeInfo:
    name: str
    version: str
    provider: str | None


@dataclass(frozen=True)
class LatencyModel:
    """Tier-0 parameters: per-op-class compute efficiency, memory efficiency, overheads."""

    tier: int
    efficiencies: dict[str, float]
    precision_factors: dict[str, float]
    memory_efficiency: float
    kernel_overhead_us: float
    invoke_overhead_us: float
    expected_error: float

    def efficiency(self, op_class: str, precision: str | None = None) -> float:
        """Fraction of peak one op class reaches; ``precision`` applies its factor (default 1)."""
        try:
            eta = self.efficiencies[op_class]
        except KeyError:
            raise UsageError(f"unknown op class '{op_class}'; valid: "
                             f"{', '.join(OP_CLASSES)}") from None
        return eta * self.precision_factors.get(precision, 1.0) if precision else eta


@dataclass(frozen=True)
class DeviceProfile:
    """A validated device profile: ``spec`` keeps the sourced values, accessors give floats."""

    spec: ProfileSpec
    source_path: Path
    content_hash: str
    budgets: Budgets = field(init=False)
    runtime: RuntimeInfo = field(init=False)
    latency_model: LatencyModel = field(init=False)

    def __post_init__(self) -> None:
        s = self.spec
        b = s.budgets
        object.__setattr__(self, "budgets", Budgets(
            float(b.latency_ms.value), b.percentile, int(b.batch_size.value),
            float(b.memory_mb.value)))
        object.__setattr__(self, "runtime", RuntimeInfo(
            s.runtime.name, s.runtime.version, s.runtime.provider))
        lm = s.latency_model
        object.__setattr__(self, "latency_model", LatencyModel(
            tier=lm.tier,
            efficiencies={k: float(getattr(lm.efficiency, k).value) for k in OP_CLASSES},
            precision_factors={k: float(v.value) for k, v in lm.precision_factors.items()},
            memory_efficiency=float(lm.memory_efficiency.value),
            kernel_overhead_us=float(lm.kernel_overhead_us.value),
            invoke_overhead_us=float(lm.invoke_overhead_us.value),
            expected_error=float(lm.expected_error.value)))

    # -- identity ---------------------------------------------------------------------------
    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def aliases(self) -> tuple[str, ...]:
        return tuple(self.spec.aliases)

    @property
    def precisions(self) -> tuple[str, ...]:
        return tuple(self.spec.precisions)

    @property
    def preferred_precision(self) -> str:
        return self.spec.preferred_precision

    @property
    def calibration(self) -> dict[str, Any] | None:
        return self.spec.calibration

    @property
    def default_power_mode(self) -> str:
        return self.spec.compute.default_power_mode

    @property
    def power_modes(self) -> tuple[str, ...]:
        return tuple(self.spec.compute.power_modes)

    # -- rooflines --------------------------------------------------------------------------
    def _mode(self, power_mode: str | None):
        name = power_mode or self.default_power_mode
        modes = self.spec.compute.power_modes
        if name not in modes:
            raise UsageError(f"device '{self.id}' has no power mode '{name}'; "
                             f"valid: {', '.join(modes)}")
        return name, modes[name]

    def peak_flops(self, precision: str, power_mode: str | None = None,
                   sparse: bool = False) -> float:
        """Datasheet peak in FLOP/s (OP/s for int8) for a precision and power mode."""
        name, mode = self._mode(power_mode)
        table = mode.sparse_tops if sparse else mode.dense_tops
        if precision not in table:
            kind = "sparse" if sparse else "dense"
            have = ", ".join(table) or "none"
            raise UsageError(f"device '{self.id}' ({name}) has no {kind} {precision} peak; "
                             f"supported precisions: {have}")
        return float(table[precision].value) * 1e12

    def memory_bandwidth(self, power_mode: str | None = None) -> float:
        """Memory bandwidth in bytes/s (a power mode may lower it)."""
        _, mode = self._mode(power_mode)
        gbs = mode.memory_bandwidth_gbs or self.spec.memory.bandwidth_gbs
        return float(gbs.value) * 1e9

    def matches_target(self, machine: str, cpu_model: str = "", gpu_name: str = "",
                       device_model: str = "") -> bool:
        """Whether a machine's ``uname -m``, CPU, GPU and board names fit this profile."""
        t = self.spec.target
        if machine not in t.machine:
            return False
        for wanted, have in ((t.cpu_model, cpu_model), (t.gpu_name, gpu_name),
                             (t.device_model, device_model)):
            if wanted and not any(w.lower() in have.lower() for w in wanted):
                return False
        return True

    def to_dict(self) -> dict[str, Any]:
        """The whole profile with its sources, plus where it came from (for ``show --json``)."""
        data = self.spec.model_dump(mode="json")
        data["source_path"] = str(self.source_path)
        data["content_hash"] = self.content_hash
        return data


# -- loading --------------------------------------------------------------------------------

MAX_PROFILE_BYTES = 1 << 20  # a profile is a few KB; a calibrated one some tens


def _read_yaml(path: Path) -> tuple[Any, bytes]:
    # only a regular file of bounded size: /dev/zero or a FIFO must fail at once
    raw = read_regular_file(path, MAX_PROFILE_BYTES, "profile file", ProfileError)
    try:
        return load_yaml(raw), raw
    except yaml.YAMLError as exc:  # syntax, a duplicate key, bytes that are not text
        raise ProfileError(yaml_error_line(exc, str(path))) from None


def load_profile_file(path: str | os.PathLike) -> DeviceProfile:
    """Read and validate one profile file."""
    from pydantic import ValidationError

    path = Path(path)
    data, raw = _read_yaml(path)
    if not isinstance(data, dict):
        raise ProfileError(f"{path}: expected a mapping of profile fields at the top level, "
                           f"got {type(data).__name__}")
    try:
        spec = ProfileSpec.model_validate(data)
    except ValidationError as exc:
        raise ProfileError(f"{path}: {validation_message(exc)}") from None
    problem = check_spec(spec)
    if problem:
        raise ProfileError(f"{path}: {problem}")
    return DeviceProfile(spec, path, hashlib.sha256(raw).hexdigest())


def _is_path(ref: str) -> bool:
    return ref.endswith((".yaml", ".yml")) or "/" in ref or os.sep in ref


def _shipped_files() -> list[Path]:
    folder = profiles_dir()
    if not folder.is_dir():
        raise ProfileError(f"profiles directory not found: {folder} (set GTND_PROFILES_DIR)")
    return sorted(folder.glob("*.yaml"))


def _alias_table() -> dict[str, str]:
    """name (id or alias, lower case) -> id, reading only each file's id and aliases."""
    table: dict[str, str] = {}
    for path in _shipped_files():
        data, _ = _read_yaml(path)
        data = data if isinstance(data, dict) else {}
        pid = str(data.get("id", path.stem))
        names = [pid] + [str(a) for a in (data.get("aliases") or []) if isinstance(a, str)]
        for name in names:
            key = name.lower()
            if key in table and table[key] != pid:
                raise ProfileError(f"{path}: alias '{name}' is also used by '{table[key]}'")
            table[key] = pid
    return table


def resolve_alias(ref: str) -> str:
    """The profile id an id or alias (case-insensitive) names; ProfileError with hints if none."""
    key = ref.strip().lower()
    if (profiles_dir() / f"{key}.yaml").is_file():
        return key
    table = _alias_table()
    if key in table:
        return table[key]
    close = difflib.get_close_matches(key, sorted(table), n=5, cutoff=0.5)
    if not close:
        close = sorted(set(table.values()))
        hint = f"known: {', '.join(close)}"
    else:
        hint = f"closest: {', '.join(close)}"
    raise ProfileError(f"unknown device '{ref}'; {hint}; see 'gtnd profiles list'")


def load_profile(ref: str) -> DeviceProfile:
    """Load a profile by id, alias (case-insensitive) or path to a YAML file."""
    if not isinstance(ref, str) or not ref.strip():
        raise ProfileError("empty device name; see 'gtnd profiles list'")
    if _is_path(ref):
        return load_profile_file(Path(ref).expanduser())
    if ref.strip().lower() == "local":  # this machine, described on the fly
        return local_device_profile()
    pid = resolve_alias(ref)
    profile = load_profile_file(profiles_dir() / f"{pid}.yaml")
    if profile.id != pid:
        raise ProfileError(f"{profile.source_path}: id '{profile.id}' does not match the "
                           f"file name '{pid}.yaml'")
    return profile


def local_device_profile() -> DeviceProfile:
    """This machine's profile, described on the fly (``local_profile``) and validated."""
    data = local_profile()
    raw = json.dumps(data, sort_keys=True).encode()
    return DeviceProfile(ProfileSpec.model_validate(data), Path("<local>"),
                         hashlib.sha256(raw).hexdigest())


def list_profiles() -> list[DeviceProfile]:
    """Every shipped profile, validated, sorted by id."""
    profiles = [load_profile_file(p) for p in _shipped_files()]
    seen: dict[str, str] = {}
    for p in profiles:
        if p.id != p.source_path.stem:
            raise ProfileError(f"{p.source_path}: id '{p.id}' does not match the file name")
        for name in (p.id, *p.aliases):
            owner = seen.setdefault(name.lower(), p.id)
            if owner != p.id:
                raise ProfileError(f"{p.source_path}: alias '{name}' is also used by '{owner}'")
    return sorted(profiles, key=lambda p: p.id)
