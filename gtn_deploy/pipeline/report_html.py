"""report.html: one self-contained page (inline CSS, plots as base64 PNG), readable at 1280 px
and offline; each plot sits beside the table it explains."""

from __future__ import annotations

import base64
import html
from urllib.parse import quote

from gtn_deploy.pipeline.report_tables import (
    ACCURACY_NOTE, COST_NOTE, PLOT_NOTE, STEPS_NOTE, Cell, bundle_table, cost_rows, gtn_verdict, kd_verdict, next_steps,
    settings_line, stage_rows, teacher_line, verdict_table)

CSS = """
:root{--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--alt:#f6f8fa;--ok:#1a7f37;--over:#cf222e}
*{box-sizing:border-box}
body{font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
 color:var(--fg);max-width:1240px;margin:0 auto;padding:20px 20px 40px}
h1{font-size:24px;margin:0 0 6px}
h2{font-size:18px;margin:30px 0 10px;padding-bottom:4px;border-bottom:1px solid var(--line)}
h3{font-size:14px;margin:0 0 6px}
p{margin:6px 0}.note{color:var(--muted);font-size:12.5px}
code,pre,.mono{font-family:ui-monospace,"DejaVu Sans Mono",Menlo,Consolas,monospace}
ul.settings{display:flex;flex-wrap:wrap;gap:4px 6px;list-style:none;padding:0;margin:8px 0}
ul.settings li{background:var(--alt);border:1px solid var(--line);border-radius:10px;
 padding:0 8px;font-size:12px}
.pair{display:flex;flex-wrap:wrap;gap:16px 24px;align-items:flex-start}
.pair>.main{flex:1 1 600px;min-width:0}
.pair>.figs{flex:0 1 480px;min-width:0;display:flex;flex-direction:column;gap:14px}
.pair.stack>.main{flex-basis:100%}.pair.compact>.main{flex:0 1 auto;max-width:640px}
.pair.stack>.figs{flex:1 1 100%;flex-direction:row;flex-wrap:wrap;gap:14px 28px}
figure{margin:0}figure img{display:block;max-width:100%;height:auto}
figcaption{color:var(--muted);font-size:12px}
.tablebox{max-width:100%;overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{border-bottom:1px solid var(--line);padding:5px 7px;text-align:left;vertical-align:top;
 overflow-wrap:break-word}
th{background:var(--alt);font-size:12px;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}
td.arch,td.path{font:11.5px/1.35 ui-monospace,"DejaVu Sans Mono",Menlo,monospace;
 overflow-wrap:anywhere}
td.fits,td.over,td.unknown,td.unsettled{font-size:12px;min-width:8.5em}.basis{color:var(--muted)}
.badge{display:inline-block;font-weight:700;border-radius:9px;padding:0 7px;margin-right:4px}
td.fits .badge{background:#dafbe1;color:var(--ok)}td.over .badge{background:#ffebe9;color:var(--over)}
td.unknown .badge{background:var(--alt);color:var(--muted)}
td.unsettled .badge{background:#fff8c5;color:#7d4e00}
.kd{font-weight:600}
.steps{display:grid;grid-template-columns:repeat(auto-fill,minmax(420px,1fr));gap:12px;
 margin-top:12px}
.card{border:1px solid var(--line);border-radius:6px;padding:8px 10px;min-width:0}
pre{background:#f6f8fa;border:1px solid var(--line);border-radius:6px;padding:7px 9px;
 margin:0;font-size:12px;line-height:1.45;white-space:pre-wrap;overflow-wrap:anywhere}
pre .c{color:var(--muted)}
table.small{width:auto;min-width:360px}table.small td{padding:3px 7px}
"""


def render_html(data: dict, plots: dict[str, bytes]) -> str:
    title = f"gtn_deploy pipeline report: {data['task']}"
    settings = "".join(f"<li><b>{_e(k)}</b> {_e(v)}</li>" for k, v in data["settings"].items())
    verdicts = (_table(*verdict_table(data)) + f'<p class="kd">{_e(kd_verdict(data))}</p>'
                + "".join(f'<p class="kd">{_e(line)}</p>' for line in gtn_verdict(data))
                + f'<p class="note">{_e(ACCURACY_NOTE)}</p>')
    figs = _figure(plots, "accuracy", PLOT_NOTE)
    figs += _figure(plots, "latency", "Predicted against measured latency on this machine "
                    "(dashed: prediction = measurement).")
    cost = (_table(["teachers", "training time", "total for the devices"],
                   [[Cell(c) for c in r] for r in cost_rows(data)], "small")
            + f'<p class="note">{_md(COST_NOTE)}</p>')
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title><style>{CSS}</style></head><body>
<h1>{_e(title)}</h1>
<p>{_e(teacher_line(data))}</p>
<ul class="settings" aria-label="{_e(settings_line(data))}">{settings}</ul>
<h2>Verdicts: does each student fit its device?</h2>
{_pair(verdicts, figs, "stack")}
<h2>Bundles and next steps</h2>
{_table(*bundle_table(data))}
<p class="note">{_md(STEPS_NOTE)}</p>
<div class="steps">{"".join(_steps_card(d) for d in data["devices"])}</div>
<h2>Teacher cost</h2>
{_pair(cost, _figure(plots, "cost", "Hatched: an estimate, not a measurement."), "compact")}
<h2>Wall time per stage</h2>
{_table(["stage", "seconds"], stage_rows(data), "small")}
</body></html>
"""


def _e(value) -> str:
    return html.escape(str(value))


def _md(text: str) -> str:
    """Escaped, with Markdown's `code` spans as <code>."""
    parts = _e(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def _pair(main: str, figs: str, cls: str = "") -> str:
    """A table with its plots: beside it (``compact``: right after a narrow table), or
    (``stack``: a table too wide to share the row) in a row right under it."""
    return (f'<div class="pair {cls}"><div class="main">{main}</div>'
            f'<div class="figs">{figs}</div></div>')


def _figure(plots: dict[str, bytes], name: str, caption: str) -> str:
    if name not in plots:
        return ""
    png = plots[name]
    src = "data:image/png;base64," + base64.b64encode(png).decode()
    width = int.from_bytes(png[16:20], "big")  # IHDR: the caption wraps to the plot's width
    return (f'<figure style="max-width:{width}px"><img alt="{_e(name)} plot" src="{src}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>")


def _table(header: list[str], rows: list[list[Cell]], cls: str = "") -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(map(_cell, r)) + "</tr>" for r in rows)
    return (f'<div class="tablebox"><table class="{cls}"><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>")


def _cell(c: Cell) -> str:
    text = _e(c.text)
    if c.kind in ("fits", "over", "unknown", "unsettled"):  # "fits (predicted, 10% headroom)"
        word, _, rest = c.text.partition(" ")
        basis, _, amount = rest.strip("()").partition(", ")
        text = (f'<span class="badge">{_e(word)}</span>{_e(amount)} '
                f'<span class="basis">{_e(basis)}</span>')
    elif c.kind == "arch":  # let the summary wrap between stages, not inside one
        text = text.replace("|", "|<wbr>")
    if c.href:
        text = f'<a href="{_e(quote(c.href))}">{text}</a>'
    return f'<td class="{c.kind}">{text}</td>' if c.kind else f"<td>{text}</td>"


def _steps_card(d: dict) -> str:
    lines = []
    for line in next_steps(d):
        cmd, sep, comment = line.partition("   #")
        lines.append(_e(cmd) + (f'<span class="c">   #{_e(comment)}</span>' if sep else ""))
    return (f'<div class="card"><h3>{_e(d["device"])}: {_e(d.get("name", ""))}</h3>'
            f'<pre><code>{chr(10).join(lines)}</code></pre></div>')
