"""A report as a file: JSON (the verifiable document), CSV (one row per value), or one
self-contained printable HTML page with charts.

The page fetches nothing (police networks are often air-gapped, and a page that loads a
script from elsewhere can be changed after it was printed): the charts are drawn on the
server by matplotlib as inline SVG, text kept as text; the styles are inline; every value
from the log goes through Jinja2's autoescaping.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any, Literal

from jinja2 import Environment

from gateway.reports.document import Report, ReportFigure

Format = Literal["json", "csv", "html"]
MEDIA_TYPES: dict[str, str] = {
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
    "html": "text/html; charset=utf-8",
}


def render(report: Report, fmt: Format) -> str:
    if fmt == "json":
        return json.dumps(report.document(), indent=2, ensure_ascii=False) + "\n"
    if fmt == "csv":
        return _csv(report)
    return _html(report)


def _group_text(group: dict[str, Any]) -> str:
    return ", ".join(f"{k}={'(none)' if v is None else v}" for k, v in group.items())


def _csv(report: Report) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["report", report.template, report.period.label, report.audience])
    writer.writerow(
        [
            "checkpoint",
            report.checkpoint.origin,
            report.checkpoint.tree_size,
            report.checkpoint.root_hash,
        ]
    )
    writer.writerow(["report digest (of the JSON format)", report.digest()])
    writer.writerow(["figure", "label", "source", "group", "value"])
    for figure in report.figures:
        field = figure.definition
        value = figure.value
        if isinstance(value, list):
            for item in value:
                if isinstance(item, dict) and "group" in item:
                    row = [_group_text(item["group"]), item["value"]]
                else:
                    row = ["", json.dumps(item, ensure_ascii=False)]
                writer.writerow([field.id, field.label, field.source, *row])
        else:
            writer.writerow([field.id, field.label, field.source, "", value])
    return out.getvalue()


def _chart(figure: ReportFigure) -> str | None:
    """A horizontal bar chart (inline SVG) of a figure grouped by one name; None when the
    figure is not that."""
    value = figure.value
    query = figure.definition.query
    if len(query.group_by) != 1 or not isinstance(value, list) or not value:
        return None
    labels = [_group_text(item["group"]).split("=", 1)[1] for item in value]
    numbers = [item["value"] if isinstance(item["value"], int | float) else 0 for item in value]
    hidden = [not isinstance(item["value"], int | float) for item in value]
    if len(value) > 40 or all(hidden):
        return None
    from matplotlib import rc_context  # only a page with charts pays for the import
    from matplotlib.figure import Figure

    with rc_context({"svg.fonttype": "none", "font.size": 9, "svg.hashsalt": "facegate"}):
        chart = Figure(figsize=(6.5, 0.3 * len(value) + 0.8))
        axes = chart.add_subplot()
        positions = list(range(len(value)))[::-1]
        bars = axes.barh(positions, numbers, color=["#bbb" if h else "#2b5c8a" for h in hidden])
        axes.set_yticks(positions, labels)
        axes.spines[["top", "right"]].set_visible(False)
        for bar, item, is_hidden in zip(bars, value, hidden, strict=True):
            text = str(item["value"])
            axes.annotate(
                text if not is_hidden else f"({text})",
                (bar.get_width(), bar.get_y() + bar.get_height() / 2),
                xytext=(3, 0),
                textcoords="offset points",
                va="center",
            )
        chart.tight_layout()
        buffer = io.StringIO()
        chart.savefig(buffer, format="svg", metadata={"Date": None})
    svg = buffer.getvalue()
    return svg[svg.index("<svg") :]


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{{ r.title }}, {{ r.period.label }}</title>
<style>
 body { font: 11pt/1.45 Georgia, serif; max-width: 52em; margin: 2em auto; color: #111; }
 h1 { font-size: 1.6em; margin-bottom: .2em; } h2 { font-size: 1.15em; margin-top: 1.8em;
 border-bottom: 1px solid #999; } table { border-collapse: collapse; margin: .5em 0; }
 td, th { border: 1px solid #bbb; padding: .15em .5em; text-align: left; font-size: .92em; }
 td.n { text-align: right; } .meta { color: #444; } .small { font-size: .85em; color: #444; }
 code, pre { font: .8em/1.3 monospace; white-space: pre-wrap; word-break: break-all; }
 section { page-break-inside: avoid; } @media print { details { display: block; } }
</style></head><body>
<h1>{{ r.title }}</h1>
<p class="meta">{{ r.law }} &middot; period {{ r.period.label }}
 ({{ r.period.start.date() }} to {{ r.period.end.date() }}, end excluded) &middot;
 {{ "public edition" if r.audience == "public" else "oversight edition (not for publication)" }}</p>
<p>{{ r.description }}</p>
<h2>How to read this report</h2>
<p>Every number below was counted by a computer from the agency's audit log: the record
facegate, the agency's face recognition gateway, writes of every request before anything is
sent to a face recognition company. The log cannot be changed without it showing: it is
sealed by a digital signature (the checkpoint below) over its first
{{ r.checkpoint.tree_size }} entries. Anyone holding a copy of the log and the agency's
public key can recount every figure with <code>facegate report verify</code>; beside each
figure is the exact question that was put to the log.</p>
{% if r.audience == "public" %}<p>To protect individual investigations, this edition names
no case, officer or person, and shows any count from 1 to {{ r.small_count_threshold - 1 }}
as &ldquo;fewer than {{ r.small_count_threshold }}&rdquo;. Where one hidden count could be
worked out from a total, a further count is hidden too (&ldquo;suppressed
(complementary)&rdquo;).</p>{% endif %}
{% for f in r.figures %}{% set d = f.definition %}
<section><h2>{{ d.label }}</h2>
<p class="small">Required by: {{ d.source }}</p>
{% if f.value is mapping or f.value is string or f.value is number or f.value is none %}
<p><strong style="font-size:1.5em">{{ "none" if f.value is none else f.value }}</strong></p>
{% elif f.value and f.value[0] is mapping and "group" in f.value[0] %}
{{ charts[d.id] | safe if charts[d.id] else "" }}
<table><tr>{% for k in f.value[0].group %}<th>{{ k }}</th>{% endfor %}<th>value</th></tr>
{% for item in f.value %}<tr>
{% for v in item.group.values() %}<td>{{ "(none)" if v is none else v }}</td>{% endfor %}
<td class="n">{{ item.value }}</td></tr>{% endfor %}
</table>
{% elif f.value %}
<table><tr>{% for k in f.value[0] %}<th>{{ k }}</th>{% endfor %}</tr>
{% for row in f.value %}<tr>{% for v in row.values() %}
<td>{{ v | join(", ") if v is iterable and v is not string else v }}</td>
{% endfor %}</tr>{% endfor %}
</table>
{% else %}<p>None in this period.</p>{% endif %}
<details><summary class="small">The question put to the log</summary>
<pre>{{ queries[d.id] }}</pre></details></section>
{% endfor %}
<h2>Where these numbers come from</h2>
<table>
<tr><th>log</th><td><code>{{ r.checkpoint.origin }}</code></td></tr>
<tr><th>entries counted</th><td>1 to {{ r.checkpoint.tree_size }}</td></tr>
<tr><th>root hash</th><td><code>{{ r.checkpoint.root_hash }}</code></td></tr>
<tr><th>signed checkpoint</th><td><pre>{{ r.checkpoint.note }}</pre></td></tr>
<tr><th>public key</th><td><code>{{ r.public_key }}</code></td></tr>
<tr><th>template</th><td><code>{{ r.template }}</code> ({{ r.template_digest }})</td></tr>
<tr><th>made</th><td>{{ r.generated_at }} by {{ r.generated_by }}</td></tr>
<tr><th>report digest</th><td><code>{{ digest }}</code> (of the JSON edition; the log
records it)</td></tr>
</table>
<p class="small">To check: export the log (<code>facegate audit export DIR</code>), obtain
the JSON edition of this report, and run <code>facegate report verify REPORT.json --export
DIR</code>. It recounts every figure and says which, if any, differ.</p>
</body></html>
"""

_ENVIRONMENT = Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)
_TEMPLATE = _ENVIRONMENT.from_string(_PAGE)


def _html(report: Report) -> str:
    charts = {f.definition.id: _chart(f) for f in report.figures}
    queries = {
        f.definition.id: json.dumps(f.definition.query.public_dump(), indent=1)
        for f in report.figures
    }
    return _TEMPLATE.render(r=report, charts=charts, queries=queries, digest=report.digest())
