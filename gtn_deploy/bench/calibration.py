"""``gtnd calibrate``: measure subnets here, fit tiers 1 and 2, write a calibrated profile.

The fit itself lives in ``gtn_deploy.cost.calibrate`` / ``cost.lut`` (no torch); this module
measures (torch to build and export the subnets, the profile's runtime to time them: see
``bench.calibration_runtime``; or on another machine over ssh: ``bench.remote_calibrate``),
validates on held-out subnets and writes a new profile file. The subnets are of one
family's space for the task (``--space``: ``gtn_deploy.spaces``); the calibration records
that space's name, and tier 2 (block keys are per family) applies to that space only.
A shipped profile is never overwritten. A fit with fewer than half of the held-out subnets
within +-10% is still written, marked ``trusted: false`` with its ``trust_reason``.
"""

from __future__ import annotations

import datetime as _dt
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

from gtn_deploy import machine as envinfo
from gtn_deploy.bench.calibration_runtime import CalibrationRunner, calibration_runner
from gtn_deploy.bench.subnets import SubnetTiming, measure_subnets, random_archs, spanning_archs
from gtn_deploy.checks import check_seed
from gtn_deploy.cost import calibrate as cal
from gtn_deploy.cost.analytic import network_layers
from gtn_deploy.cost.lut import fit_block_table
from gtn_deploy.cost.roofline import roofline, tier0_ms
from gtn_deploy.errors import BenchError, ProfileError, UsageError
from gtn_deploy.fingerprint import current_fingerprint, fingerprint_id
from gtn_deploy.io_utils import atomic_write_text, check_output_file
from gtn_deploy.profiles import load_profile, load_profile_file, profiles_dir
from gtn_deploy.progress import StepProgress
from gtn_deploy.rounds import RoundPlan, LOW_QUANTILE, round_spread
from gtn_deploy.spaces import DEFAULT_FAMILY, create_space
from gtn_deploy.spaces.base import Arch, Space

DEFAULT_DIR = Path("calibrated_profiles")
TRUST_SHARE = 0.5  # fewer held-out subnets within +-10% than this: written, marked untrusted


def load_device(ref: str):
    """A profile by id/alias/path, or ``local`` (this machine, generated)."""
    return load_profile(ref)


def check_here(profile, force: bool) -> str | None:
    """Calibrating a device means measuring on it: refuse elsewhere unless forced."""
    facts = envinfo.machine_facts()
    if profile.id == "local" or profile.matches_target(**facts):
        return None
    problem = (f"this machine ({', '.join(v for v in facts.values() if v)}) is not a "
               f"'{profile.id}' target; calibrate on the device itself")
    if not force:
        raise BenchError(f"{problem}, or pass --force")
    return problem


@dataclass
class Measurement:
    """What a calibration measured: the subnets' timings, how the measurement went (seconds,
    rounds, stop, plan), and the fingerprint and environment of the machine it ran on."""

    timings: list[SubnetTiming]
    info: dict[str, Any]
    fingerprint: dict[str, Any]
    environment: dict[str, Any]


class Site(Protocol):
    """Another machine to measure on (``bench.remote_calibrate.RemoteSite``: over ssh)."""

    def measure(self, space: Space, archs: Sequence[Arch], threads: int,
                plan: RoundPlan, profile_runs: int, profiled: int, seed: int,
                runner: CalibrationRunner) -> Measurement: ...

    def record(self) -> dict[str, Any]: ...


class RoundProgress:
    """Progress of the interleaved rounds: a bar (plain lines off a terminal) over subnets x
    the rounds every subnet runs, then a line for each further round, which only the subnets
    whose figure does not yet reproduce take part in."""

    def __init__(self, n: int, plan: RoundPlan, profiled: int = 0):
        self.n, self.plan, self.profiled = n, plan, profiled
        self.done, self.steps = [0] * n, 0
        self.last_round = max(plan.min_rounds, 2)  # run_rounds runs these for every subnet
        self.bar = self._new_bar()

    def _new_bar(self):
        return StepProgress(self.n * self.last_round, every=self.n, description="calibrate",
                            cycle="round", item="call")

    def __enter__(self) -> "RoundProgress":
        then = f", then profiling {self.profiled} per block (tier 2)" if self.profiled else ""
        self.bar.message(f"calibrate: exporting {self.n} subnets, timing them in interleaved "
                         f"rounds of {self.plan.iters} calls{then}")
        return self

    def __exit__(self, *exc) -> None:
        self.bar.close()

    def round_done(self, i: int) -> None:
        """Subnet ``i`` finished a round."""
        self.done[i] += 1
        self.steps += 1
        if self.steps == 1:  # rate and ETA count from the rounds, not from the export
            self.bar = self._new_bar()
        if self.steps <= self.bar.total:  # the bar closes itself at its total
            self.bar.update(self.steps, self.done[i] - 1, self.plan.iters)
        elif self.done[i] > self.last_round:
            self.last_round = self.done[i]
            self.bar.message(f"calibrate: round {self.last_round}, for the subnets whose p10 "
                             f"does not yet reproduce within {self.plan.spread_bound:.0%} "
                             f"(until round {self.plan.max_rounds} or "
                             f"{self.plan.budget_s:g} s)")


def measure_here(space: Space, archs: Sequence[Arch], threads: int,
                 plan: RoundPlan, profile_runs: int, profiled: int, seed: int,
                 runner: CalibrationRunner) -> Measurement:
    """Export, time and profile ``archs`` on this machine with ``runner``."""
    threads_used = threads if runner.threaded else None
    with RoundProgress(len(archs), plan, profiled if profile_runs else 0) as progress:
        timings, info = measure_subnets(
            space, archs, threads, plan, profile_runs, profiled=profiled, seed=seed,
            make_runner=lambda path, shape: runner.make(path, shape, threads),
            on_round=progress.round_done)
    return Measurement(timings, info, runtime_fingerprint(runner, threads_used),
                       envinfo.environment(threads_used, runner.runtime))


def runtime_fingerprint(runner: CalibrationRunner, threads: int | None) -> dict[str, Any]:
    """This machine's fingerprint with ``runner``'s runtime, provider and precision."""
    return current_fingerprint(threads, runner.precision, runner.runtime, runner.provider)


def measurement_summary(timings, info: dict) -> dict[str, Any]:
    """How the measurement went: rounds, why it stopped, the achieved spread of the
    statistic and the raw spread between rounds (median and max over subnets)."""
    from statistics import median

    spreads = [t.spread for t in timings]
    raw = [round_spread(t.round_medians_ms) for t in timings]
    return {"statistic": f"p{LOW_QUANTILE:g} of the calls, pooled over interleaved rounds",
            "spread_bound": info["plan"]["spread_bound"], "stop": info["stop"],
            "rounds": [info["rounds_min"], info["rounds_max"]],
            "spread_median": round(median(spreads), 4), "spread_max": round(max(spreads), 4),
            "within_bound": round(sum(s <= info["plan"]["spread_bound"] for s in spreads)
                                  / len(spreads), 4),
            "spread_between_rounds_median": round(median(raw), 4),
            "spread_between_rounds_max": round(max(raw), 4)}


def run_calibration(profile, space: Space, samples: int = 30, holdout: int = 20,
                    threads: int = 1, rounds: int = 5, iters: int = 40,
                    profile_runs: int = 30, seed: int = 0, budget_s: float = 60.0,
                    runner: CalibrationRunner | None = None,
                    site: Site | None = None) -> dict[str, Any]:
    """Measure ``samples`` spanning subnets (fit) and ``holdout`` random ones (validate),
    all in one interleaved rotation (``gtn_deploy.rounds``: at least ``rounds`` rounds of
    ``iters`` calls, more until the spread is under its bound or ``budget_s`` ran out),
    with ``runner`` (default: the profile's runtime, ``calibration_runner``), here or at
    ``site`` (another machine: its fingerprint is recorded, with ``remote``)."""
    if samples < 4 or holdout < 2:
        raise UsageError(f"--samples must be >= 4 and --holdout >= 2 (got {samples}, {holdout})")
    runner = runner or calibration_runner(profile)
    tier2 = runner.tier2_unavailable is None and profile_runs > 0
    rng = random.Random(seed)
    train = spanning_archs(space, samples, rng)
    held = random_archs(space, holdout, rng, exclude=train)
    plan = RoundPlan(min_rounds=rounds, max_rounds=max(rounds, RoundPlan.max_rounds),
                     iters=iters, budget_s=budget_s)
    measure = measure_here if site is None else site.measure
    m = measure(space, train + held, threads, plan, profile_runs if tier2 else 0, len(train),
                seed, runner)
    tier1, table, val = fit_and_validate(space, profile, runner.precision, train, held,
                                         m.timings, tier2)
    r0 = roofline(profile, runner.precision, 1)
    held_mape = {k: v["mape"] for k, v in val["held_out"].items()}
    tier = 2 if table is not None and held_mape["2"] <= held_mape["1"] else 1
    calibration = {  # tier: the better of 1 and 2 on the held-out subnets
        "schema_version": cal.CALIBRATION_SCHEMA_VERSION, "tier": tier,
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "fingerprint": m.fingerprint, "fingerprint_id": fingerprint_id(m.fingerprint),
        "spaces": [space.name],
        "runtime": {**runner.to_dict(), "tier2_unavailable": runner.tier2_unavailable},
        **trust(val["held_out"], tier),
        "tier1": tier1.to_dict(r0.peak_flops, r0.bandwidth),
        "tier2": table.to_dict() if table is not None else None,
        "expected_error": {k: max(cal.MIN_BAND, v["p90_abs_error"])
                           for k, v in val["held_out"].items()},
        "validation": val,
        "measurement": {"train_subnets": len(train), "held_out_subnets": len(held),
                        "min_rounds": rounds, "iters_per_round": iters, "budget_s": budget_s,
                        "profile_runs": profile_runs if tier2 else 0,
                        "device_seconds": round(m.info["seconds"], 2),
                        "timing_seconds": round(m.info["timing_s"], 2),
                        **measurement_summary(m.timings, m.info)},
        "environment": m.environment,
    }
    if site is not None:
        calibration["remote"] = site.record()
    return calibration


def fit_and_validate(space: Space, profile, precision: str, train, held, timings,
                     tier2: bool = True):
    """Tier 1 (and the tier-2 table where ``tier2``) fitted on the first ``len(train)``
    timings; the accuracy of every tier on the fit and on the held-out subnets."""
    t_train = timings[:len(train)]
    y_train = [t.latency_ms for t in t_train]
    y_held = [t.latency_ms for t in timings[len(train):]]
    tier1 = cal.fit_tier1(space, train, y_train, cal.tier1_from_profile(profile, precision))
    table = (fit_block_table(space, train, [t.block_us for t in t_train], y_train, tier1)
             if tier2 else None)
    model0 = roofline(profile, precision, 1)

    def predictions(archs):
        t1 = [tier1.seconds(network_layers(space, a)) * 1e3 for a in archs]
        out = {"0": [tier0_ms(space, a, model0) for a in archs], "1": t1}
        if table is not None:
            p2 = [table.predict_ms(space, a, tier1) for a in archs]
            out["2"] = [b if b is not None else a for a, b in zip(t1, p2)]
        return out

    val = {"held_out": {k: cal.accuracy(v, y_held) for k, v in predictions(held).items()},
           "train": {k: cal.accuracy(v, y_train) for k, v in predictions(train).items()}}
    return tier1, table, val


def trust(held_out: dict[str, dict], tier: int) -> dict[str, Any]:
    """``trusted``: at least ``TRUST_SHARE`` of the held-out subnets within +-10% at the tier
    the profile will predict with; ``trust_reason`` says how many were."""
    a = held_out[str(tier)]
    ok = a["within_10pct"] >= TRUST_SHARE
    reason = (f"{a['within_10pct']:.0%} of {a['n']} held-out subnets within +-10% at tier "
              f"{tier}")
    if not ok:
        reason += (f", fewer than {TRUST_SHARE:.0%}: the fit does not describe this machine "
                   f"well (noise during the measurement, too few rounds or subnets)")
    return {"trusted": ok, "trust_reason": reason}


def calibrated_profile_dict(profile, calibration: dict[str, Any]) -> dict[str, Any]:
    """The base profile with its calibration and tier set (everything else unchanged)."""
    data = profile.spec.model_dump(mode="json")
    data["latency_model"]["tier"] = int(calibration["tier"])
    data["calibration"] = calibration
    return data


def default_output(profile, calibration: dict[str, Any]) -> Path:
    return DEFAULT_DIR / f"{profile.id}-{calibration['fingerprint_id']}.yaml"


def _refuse_shipped(out: Path) -> None:
    import yaml

    shipped = profiles_dir().resolve()
    if out.resolve().parent == shipped:
        raise ProfileError(f"{out} is in the shipped profiles folder {shipped}; calibrated "
                           f"profiles go elsewhere (default {DEFAULT_DIR}/)")
    if out.exists():
        try:
            existing = yaml.safe_load(out.read_text())
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            existing = None
        if not (isinstance(existing, dict) and existing.get("calibration")):
            raise ProfileError(f"{out} exists and is not a calibrated profile; refusing to "
                               f"overwrite it (choose another --out)")


def check_profile_output(out: Path) -> None:
    """Refuse an --out that cannot take the profile, before minutes of measuring."""
    if out.suffix not in (".yaml", ".yml"):
        raise UsageError(f"--out {out}: a profile file ends in .yaml")
    check_output_file(out)
    _refuse_shipped(out)


def write_calibrated_profile(profile, calibration: dict[str, Any],
                             out: str | Path | None = None) -> Path:
    """Write a NEW profile YAML carrying ``calibration``; load it back to validate it."""
    import yaml

    out = Path(out) if out else default_output(profile, calibration)
    check_profile_output(out)
    header = (f"# Calibrated by gtnd calibrate on {calibration['created_at']} "
              f"(fingerprint {calibration['fingerprint_id']}); valid only for that fingerprint.\n")
    text = header + yaml.safe_dump(calibrated_profile_dict(profile, calibration),
                                   sort_keys=False, width=100)
    atomic_write_text(out, text)
    load_profile_file(out)
    return out


def format_report(calibration: dict[str, Any], profile_id: str) -> str:
    v = calibration["validation"]["held_out"]
    m = calibration["measurement"]
    fp = calibration["fingerprint"]
    provider = f" {fp['provider']}" if fp.get("provider") else ""
    threads = f", {fp['threads']} thread(s)" if fp.get("threads") else ""
    lines = [f"{profile_id}: calibrated, fingerprint {calibration['fingerprint_id']} "
             f"({fp['runtime']} {fp['runtime_version']}{provider}, {fp['precision']}"
             f"{threads}, {fp['cpu_model']})", *_remote_lines(calibration),
             f"  measured {m['train_subnets']} + {m['held_out_subnets']} held-out subnets in "
             f"{m['device_seconds']:.1f} s",
             f"  noise: p10 spread median {m['spread_median']:.1%} (bound "
             f"{m['spread_bound']:.0%}, {m['within_bound']:.0%} of subnets within), between "
             f"rounds median {m['spread_between_rounds_median']:.1%}; rounds "
             f"{m['rounds'][0]}-{m['rounds'][1]}, stopped: {m['stop']}",
             f"  held-out   {'within 10%':>10} {'MAPE':>7} {'tau':>6}"]
    for tier in ("0", "1", "2"):
        a = v.get(tier)
        if a is not None:
            lines.append(f"  {'tier ' + tier:<10} {a['within_10pct']:>10.0%} {a['mape']:>7.1%} "
                         f"{a['kendall_tau']:>6.3f}")
    runtime = calibration.get("runtime") or {}
    if runtime.get("tier2_unavailable"):
        lines.append(f"  tier 2 not fitted: {runtime['tier2_unavailable']}")
    if "trusted" in calibration:
        lines.append(f"  trusted: {'yes' if calibration['trusted'] else 'NO'} "
                     f"({calibration['trust_reason']})")
    return "\n".join(lines)


def _remote_lines(calibration: dict[str, Any]) -> list[str]:
    """Where a --host calibration ran: the connection and the device's fingerprint."""
    remote, env = calibration.get("remote"), calibration.get("environment") or {}
    if not remote:
        return []
    checked = ("host key checked" if remote["host_key_checked"]
               else "host key NOT checked: --insecure-host-key")
    cores = envinfo.cores_text(env.get("cpu_count"))
    return [f"  measured on {remote['host']} over ssh ({checked}): {env.get('cpu_model')} "
            f"({env.get('machine')}, {cores}), {env.get('os')}, python "
            f"{env.get('python')}, numpy {env.get('numpy')}"
            + (f", power mode {env['power_mode']}" if env.get("power_mode") else "")]


def calibration_warnings(calibration: dict[str, Any]) -> list[str]:
    """What the user must know before using the profile: forced past the target check,
    measured with another runtime than the profile's, an untrusted fit; then notes."""
    runtime = calibration.get("runtime") or {}
    out = [f"forced past: {problem}" for problem in calibration.get("forced", [])]
    if runtime.get("deviation"):
        out.append(f"deviation: {runtime['deviation']}")
    if calibration.get("trusted") is False:
        out.append(f"calibration not trusted: {calibration['trust_reason']}; the profile is "
                   f"written with trusted: false and plan warns when it uses it")
    return out + [f"note: {n}" for n in runtime.get("notes", [])]


def calibrate(device: str, task: str = "fashion-mnist", samples: int = 30, holdout: int = 20,
              threads: int = 1, out: str | Path | None = None, force: bool = False,
              seed: int = 0, rounds: int = 5, iters: int = 40,
              precision: str | None = None, runtime: str | None = None,
              on_measured: Callable[[dict], None] | None = None,
              site: Site | None = None, family: str = DEFAULT_FAMILY) -> tuple[Path, dict]:
    """The whole command: load, check, measure, fit, write; return (path, calibration).

    ``family`` (``gtn_deploy.spaces``): whose space of ``task`` to measure; the calibration
    records that space's name (``spaces``), and tier 2 applies to it alone.
    ``precision`` None: the profile's preferred where calibration measures it; ``runtime``
    None: the profile's, or ``onnxruntime-cpu`` (recorded as a deviation).
    ``on_measured(calibration)`` runs before the profile is written (the CLI prints the
    report there, so a failing write loses no measurement). ``site``: measure there (over
    ssh), with onnxruntime; that machine is taken as the profile's target."""
    if threads < 1:
        raise UsageError(f"--threads must be >= 1, got {threads}")
    check_seed(seed)
    space = create_space(family, task)
    if out is not None:
        check_profile_output(Path(out))
    profile = load_device(device)
    # the device named with --host is the target, as in bench --host: nothing to check here
    forced = check_here(profile, force) if site is None else None
    runner = calibration_runner(profile, precision, runtime, here=site is None)
    t0 = time.perf_counter()
    calibration = run_calibration(profile, space, samples, holdout, threads, rounds, iters,
                                  seed=seed, runner=runner, site=site)
    calibration["measurement"]["wall_seconds"] = round(time.perf_counter() - t0, 2)
    if forced:
        calibration["forced"] = [forced]
    if on_measured is not None:
        on_measured(calibration)
    return write_calibrated_profile(profile, calibration, out), calibration
