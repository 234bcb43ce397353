"""Every figure in docs/results.md's tables (and in the README's sourced table) is true to
the JSON its table names.

A table is tied to its results file by an HTML comment on a line of its own before it:

    <!-- source: benchmarks/results/kd_pool.json -->

(several files: ``source: a.json, b.json``). Each number in the table's body (header row
and `code` spans excepted) must be one of that file's numbers, rounded to the figure's own
precision. A file's numbers are its numeric leaves, plus, where the JSON keeps one record per
seed, the aggregates a table shows: for records in a list that share the string fields every
record of the list has (e.g. one student and one method over seeds), the mean and standard deviation of each
numeric field; for a dict or list of plain numbers (e.g. a pool average per seed), their
mean and standard deviation. Suffixes scale: ``410k`` is 410,000 to the nearest thousand,
``7.28M`` to the nearest 10,000, and ``73%`` also matches a fraction 0.73. A number glued to
a letter (``d2``, ``random0``, ``pi-4``) is a name, not a figure.

Pure text and JSON: no training, no timing, so it runs in well under a second anywhere.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS_MD = ROOT / "docs" / "results.md"
SOURCE = re.compile(r"<!--\s*source:\s*(.+?)\s*-->")
NUMBER = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:e-?\d+)?")
SCALE = {"k": 1e3, "M": 1e6}


@dataclass(frozen=True)
class Figure:
    text: str
    value: float
    tolerance: float  # half a unit in the figure's last digit
    percent: bool


@dataclass(frozen=True)
class Table:
    line: int  # 1-based line of the table's first row in the document
    sources: tuple[str, ...]
    rows: tuple[str, ...]  # body rows, header and separator removed


def figures(cell: str) -> list[Figure]:
    """The numbers of one table cell (see the module docstring for what counts)."""
    text = re.sub(r"`[^`]*`", " ", cell).replace("**", "").replace("\\|", " ")
    text = text.replace("−", "-")
    found = []
    for m in NUMBER.finditer(text):
        s, start = m.group(), m.start()
        before = text[start - 1] if start else " "
        if s.startswith("-"):
            if before.isdigit():  # a range, 5.8-54: the second number is positive
                s, before = s[1:], "-"
            elif before.isalpha() or before in "_.":
                continue  # pi-4
        elif before.isalpha() or before in "_.-":
            continue  # d2, random0, x0.3, pi-4
        after = text[m.end():m.end() + 1]
        if after.isalpha() and after not in SCALE and after != "x":
            continue  # 4th, 2nd: not a figure
        mantissa, _, exp = s.replace(",", "").partition("e")
        decimals = len(mantissa.partition(".")[2])
        scale = SCALE.get(after, 1.0) * (10.0 ** int(exp) if exp else 1.0)
        found.append(Figure(s, float(mantissa) * scale, 0.5 * 10.0 ** -decimals * scale,
                            after == "%"))
    return found


def tables(markdown: str) -> list[Table]:
    """The tables of a document, each with the sources named before it (empty if none)."""
    lines = markdown.splitlines()
    out, i, pending = [], 0, ()
    while i < len(lines):
        line = lines[i].strip()
        m = SOURCE.fullmatch(line)
        if m:
            pending = tuple(p.strip() for p in m.group(1).split(","))
        elif line.startswith("|"):
            start = i
            while i < len(lines) and lines[i].strip().startswith("|"):
                i += 1
            body = tuple(row.strip() for row in lines[start + 2:i])
            out.append(Table(start + 1, pending, body))
            pending = ()
            continue
        elif line:
            pending = pending if line.startswith("<!--") else ()
        i += 1
    return out


def cells(row: str) -> list[str]:
    return [c for c in re.split(r"(?<!\\)\|", row.strip().strip("|"))]


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _spread(values: list[float]) -> list[float]:
    if len(values) < 2:
        return []
    return [statistics.fmean(values), statistics.stdev(values), statistics.pstdev(values)]


def json_numbers(doc) -> list[float]:
    """Every numeric leaf of ``doc`` and the per-seed aggregates described above."""
    out: list[float] = []

    def walk(x):
        if _is_number(x):
            out.append(float(x))
        elif isinstance(x, dict):
            plain = [float(v) for v in x.values() if _is_number(v)]
            if plain and len(plain) == len(x):
                out.extend(_spread(plain))
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            if x and all(_is_number(v) for v in x):
                out.extend(_spread([float(v) for v in x]))
            records = [r for r in x if isinstance(r, dict)]
            names = [k for k in (records[0] if records else {})
                     if all(isinstance(r.get(k), str) for r in records)]
            groups: dict[tuple, list[dict]] = {}
            for r in records:
                key = tuple(r[k] for k in names)
                groups.setdefault(key, []).append(r)
            for group in groups.values():
                for field in {k for r in group for k, v in r.items() if _is_number(v)}:
                    out.extend(_spread([float(r[field]) for r in group
                                        if _is_number(r.get(field))]))
            for v in x:
                walk(v)

    walk(doc)
    return sorted(out)


def matches(fig: Figure, numbers: list[float]) -> bool:
    targets = [fig.value] + ([fig.value / 100] if fig.percent else [])
    tolerances = [fig.tolerance] + ([fig.tolerance / 100] if fig.percent else [])
    return any(abs(v - t) <= tol * (1 + 1e-9) + 1e-12
               for t, tol in zip(targets, tolerances) for v in numbers)


def unmatched(table: Table, numbers: list[float]) -> list[str]:
    bad = []
    for row in table.rows:
        for cell in cells(row):
            bad += [f"{f.text!r} in row {row[:60]!r}" for f in figures(cell)
                    if not matches(f, numbers)]
    return bad


def _numbers_of(sources: tuple[str, ...]) -> list[float]:
    nums: list[float] = []
    for src in sources:
        nums += json_numbers(json.loads((ROOT / src).read_text()))
    return nums


DOC_TABLES = tables(RESULTS_MD.read_text()) if RESULTS_MD.exists() else []
# the README's own results table carries a source comment too and is held to the same rule
README_TABLES = [t for t in tables((ROOT / "README.md").read_text()) if t.sources]


def test_results_doc_has_sourced_tables():
    assert DOC_TABLES, "docs/results.md has no tables"
    for t in DOC_TABLES:
        assert t.sources, f"docs/results.md line {t.line}: a table without <!-- source: ... -->"
        for src in t.sources:
            assert src.endswith(".json") and (ROOT / src).is_file(), \
                f"docs/results.md line {t.line}: source {src} is not a JSON file in the repo"


@pytest.mark.parametrize("table", DOC_TABLES + README_TABLES, ids=lambda t: f"line{t.line}")
def test_every_figure_is_in_its_json(table):
    bad = unmatched(table, _numbers_of(table.sources))
    where = "README.md" if table in README_TABLES else "docs/results.md"
    assert not bad, (f"{where} line {table.line} ({', '.join(table.sources)}): "
                     f"figures not found in the JSON: " + "; ".join(bad))


def _edit(fig: Figure) -> str:
    """The figure with its last digit changed by one."""
    s = fig.text
    i = max(j for j, c in enumerate(s) if c.isdigit())
    return s[:i] + str((int(s[i]) + 1) % 10 if s[i] != "9" else 8) + s[i + 1:]


def test_an_edited_figure_is_caught():
    """Edit the last digit of each figure in turn: most edits must be caught. An edit passes
    when the edited value also occurs in the JSON (kd_pool.json holds hundreds of top-1 figures
    in a two-point range, so a neighbour often exists): about 80% are caught today, so the bar
    is a share, and a headline figure is checked on its own below."""
    caught = total = 0
    for t in DOC_TABLES:
        nums = _numbers_of(t.sources)
        for row in t.rows:
            for cell in cells(row):
                for f in figures(cell):
                    if len(f.text.lstrip("-").replace(",", "").replace(".", "")) < 3:
                        continue  # one or two digits: too many neighbours to count
                    total += 1
                    edited = figures(cell.replace(f.text, _edit(f), 1))
                    caught += any(not matches(e, nums) for e in edited)
    assert total > 100
    assert caught / total >= 0.75, f"only {caught} of {total} edited figures were caught"


def test_a_changed_headline_fails():
    table = next(t for t in DOC_TABLES if "benchmarks/results/kd_pool.json" in t.sources
                 and any("gtn" in r for r in t.rows))
    rows = tuple(r.replace("+0.25", "+0.35") for r in table.rows)
    assert rows != table.rows
    assert unmatched(Table(table.line, table.sources, rows), _numbers_of(table.sources))


def test_figures_parser():
    assert [f.value for f in figures("| 81.98 ± 0.88 |")] == [81.98, 0.88]
    assert [f.value for f in figures("410k")] == [410_000]
    assert [f.value for f in figures("18,436 archs/s")] == [18436]
    assert [f.value for f in figures("5.8-54 MFLOPs")] == [5.8, 54]
    assert [f.value for f in figures("-0.06")] == [-0.06]
    assert figures("random0 plan:raspberry-pi-4 `r28 d1-1-3-1` gtn x0.3") == []
    assert figures("73%")[0].percent
    assert matches(figures("73%")[0], [0.7333]) and not matches(figures("74%")[0], [0.7333])
    assert matches(figures("5.2e-6")[0], [5.245e-06])
