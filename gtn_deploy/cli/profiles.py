"""``gtnd profiles``: list the shipped device profiles, or show one with every source."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from gtn_deploy.cli.common import user_errors
from gtn_deploy.profiles import list_profiles, load_profile, profiles_dir

app = typer.Typer(help="Device profiles: list them, or show one with the source of every number.",
                  no_args_is_help=True, add_completion=False)

_COLUMNS = ("id", "name", "kind", "runtime", "precision", "latency budget", "memory budget",
            "aliases")


def _row(p) -> tuple[str, ...]:
    b = p.budgets
    return (p.id, p.name, p.kind, f"{p.runtime.name} {p.runtime.version}",
            p.preferred_precision, f"{b.latency_ms:g} ms {b.percentile}",
            f"{b.memory_mb:g} MB", ", ".join(p.aliases))


def _json_row(p) -> dict[str, Any]:
    """One profile for ``--json``: snake_case keys, units in the key, numbers as numbers."""
    b = p.budgets
    return {"id": p.id, "name": p.name, "kind": p.kind, "runtime_name": p.runtime.name,
            "runtime_version": p.runtime.version, "preferred_precision": p.preferred_precision,
            "latency_budget_ms": b.latency_ms, "latency_percentile": b.percentile,
            "memory_budget_mb": b.memory_mb, "batch_size": b.batch_size,
            "aliases": list(p.aliases)}


def format_table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> str:
    """Plain aligned columns (no terminal tricks: the output is pasted into issues)."""
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in (header, *rows)]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


@app.command("list")
@user_errors
def list_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Print the rows as a JSON list (keys such as latency_budget_ms, memory_budget_mb).")] = False,
) -> None:
    """Every shipped profile: runtime, preferred precision, budgets and aliases."""
    profiles = list_profiles()
    if as_json:
        typer.echo(json.dumps([_json_row(p) for p in profiles], indent=2))
        return
    typer.echo(format_table([_row(p) for p in profiles], _COLUMNS))
    typer.echo(f"\n{len(profiles)} profiles in {profiles_dir()}; "
               f"'gtnd profiles show ID' shows one with its sources.")


def _flatten(obj: Any, path: str = "") -> list[tuple[str, Any, str | None]]:
    """(field path, value, source) for every leaf; a {value, source} pair is one leaf."""
    if isinstance(obj, dict):
        if set(obj) == {"value", "source"}:
            return [(path, obj["value"], obj["source"])]
        out = []
        for key, value in obj.items():
            out += _flatten(value, f"{path}.{key}" if path else str(key))
        return out
    if isinstance(obj, list):
        return [(path, ", ".join(map(str, obj)), None)]
    return [(path, obj, None)]


def _render(data: dict[str, Any]) -> str:
    sources = data.pop("sources")
    head = [f"{data['id']}: {data['name']}", f"  file    {data.pop('source_path')}",
            f"  sha256  {data.pop('content_hash')}", ""]
    runtime = data.get("runtime", {})
    body = []
    for path, value, source in _flatten(data):
        if path == "runtime.source" or path.startswith("calibration.") or value in (None, ""):
            continue
        if path == "runtime.version":
            source = runtime.get("source")
        line = f"{path} = {value}"
        body.append(f"{line}  [{source}]" if source else line)
    if data.get("calibration"):
        body.append(f"calibration = {json.dumps(data['calibration'], sort_keys=True)}")
    tail = ["", "sources:"] + [f"  {k}: {v}" for k, v in sources.items()]
    return "\n".join(head + body + tail)


@app.command("show")
@user_errors
def show_cmd(
    device: Annotated[str, typer.Argument(help="Profile id, alias or path to a YAML file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole profile as JSON.")] = False,
) -> None:
    """One profile, every field with its source (or derivation)."""
    data = load_profile(device).to_dict()
    typer.echo(json.dumps(data, indent=2) if as_json else _render(data))
