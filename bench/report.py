"""Results: rows of repeated measurements, printed as tables, saved as JSON and a PNG chart.

A :class:`Row` holds one figure per run; its ``baseline`` names another row of the same
section, measured in the same run, and the printed ratio is median over median. Rows may
carry latency percentiles (p50/p99 per run). A ``versus`` section puts two figures side by
side instead — a row's ``base_values`` on one store, its ``values`` on the other — with the
ratio of their medians. Nothing here judges a figure: targets are printed beside it, never
asserted.
"""

from __future__ import annotations

import json
import math
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Row:
    key: str
    label: str
    unit: str
    values: list[float]
    baseline: str | None = None  # key of the same-run baseline row in this section
    base_values: list[float] | None = None  # or a same-run baseline that is not a row of its own
    is_baseline: bool = False
    lower_is_better: bool = False
    p50: list[float] = field(default_factory=list)  # ms, one per run
    p99: list[float] = field(default_factory=list)
    note: str = ""
    short: str = ""  # how the chart names this row when it is another row's baseline
    chart: bool = True
    extra: dict[str, Any] = field(default_factory=dict)  # JSON only (CPU, errors, counts)


@dataclass
class Section:
    key: str
    title: str
    rows: list[Row]
    baselines: list[str] = field(default_factory=list)  # what each baseline means, one sentence each
    notes: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    versus: tuple[str, str] | None = None  # (base, other): the two columns of a side-by-side section

    def row(self, key: str) -> Row:
        return next(r for r in self.rows if r.key == key)

    def base_of(self, row: Row) -> float | None:
        """The median of ``row``'s same-run baseline (its own median for a baseline row)."""
        if row.is_baseline:
            return median(row.values)
        if row.baseline is not None:
            return median(self.row(row.baseline).values)
        if row.base_values is not None:
            return median(row.base_values)
        return None

    def ratio(self, row: Row) -> float | None:
        base = self.base_of(row)
        if not row.values or base is None or not base or math.isnan(base):
            return None
        return median(row.values) / base


def median(values: list[float]) -> float:
    clean = [v for v in values if not math.isnan(v)]
    return statistics.median(clean) if clean else float("nan")


def fmt(value: float) -> str:
    if math.isnan(value):
        return "–"
    mag = abs(value)
    if mag >= 100:
        return f"{value:,.0f}"
    if mag >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def spread(values: list[float]) -> str:
    clean = [v for v in values if not math.isnan(v)]
    if len(clean) < 2:
        return ""
    return f"{fmt(min(clean))}–{fmt(max(clean))}"


def _has_latency(section: Section) -> bool:
    return any(r.p50 for r in section.rows)


def _has_cpu(section: Section) -> bool:
    return any(r.extra.get("server_cpu") for r in section.rows)


def _cells(section: Section, row: Row) -> list[str]:
    ratio = section.ratio(row)
    ratio_s = "1.00 (base)" if row.is_baseline else ("" if ratio is None else f"{ratio:.2f}")
    if section.versus:
        base = row.base_values or []
        return [row.label, fmt(median(base)), spread(base), fmt(median(row.values)), spread(row.values), row.unit, ratio_s,
                row.note]
    cells = [row.label, fmt(median(row.values)), spread(row.values), row.unit, ratio_s]
    if _has_latency(section):
        cells += [fmt(median(row.p50)) if row.p50 else "", fmt(median(row.p99)) if row.p99 else ""]
    if _has_cpu(section):
        cpu = row.extra.get("server_cpu")
        cells.append(f"{median(cpu):.2f}" if cpu else "")
    return cells + [row.note]


def _header(section: Section) -> list[str]:
    if section.versus:
        base, other = section.versus
        return ["measure", base, "min–max", other, "min–max", "unit", f"{other} ÷ {base}", "note"]
    head = ["measure", "median", "min–max", "unit", "× baseline"]
    if _has_latency(section):
        head += ["p50 ms", "p99 ms"]
    if _has_cpu(section):
        head.append("server CPU")
    return head + ["note"]


def text_table(section: Section) -> str:
    head = _header(section)
    rows = [_cells(section, r) for r in section.rows]
    widths = [max(len(c[i]) for c in [head, *rows]) for i in range(len(head))]
    right = set(range(1, len(head) - 1)) - {head.index("unit")}

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    out = [f"== {section.title}", line(head), "  ".join("-" * w for w in widths)]
    out += [line(c) for c in rows]
    out += [f"  baseline: {b}" for b in section.baselines]
    out += [f"  note: {n}" for n in section.notes]
    return "\n".join(out)


def markdown_table(section: Section) -> str:
    head = _header(section)
    align = ["---" if i in (0, head.index("unit"), len(head) - 1) else "---:" for i in range(len(head))]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in _cells(section, r)) + " |" for r in section.rows]
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    import os

    return {"host": platform.node(), "python": platform.python_version(), "cpus": os.cpu_count(),
            "kernel": platform.release(), "date": time.strftime("%Y-%m-%d %H:%M:%S %z")}


def to_json(sections: list[Section], command: str, wall_seconds: float) -> dict[str, Any]:
    out: dict[str, Any] = {"command": command, "wall_seconds": wall_seconds, "machine": machine(), "sections": []}
    for s in sections:
        rows = []
        for r in s.rows:
            d = asdict(r)
            d["median"] = median(r.values)
            if r.base_values is not None:
                d["base_median"] = median(r.base_values)
            d["ratio"] = s.ratio(r)
            rows.append(d)
        out["sections"].append({"key": s.key, "title": s.title, "baselines": s.baselines, "notes": s.notes,
                                "meta": s.meta, "versus": s.versus, "rows": rows})
    return out


def save(sections: list[Section], name: str, command: str, wall_seconds: float, out_dir: Path) -> tuple[Path, Path, Path]:
    """Write ``name.json``, ``name.md`` (tables for a README) and ``name.png``; return the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    js, md, png = out_dir / f"{name}.json", out_dir / f"{name}.md", out_dir / f"{name}.png"
    js.write_text(json.dumps(to_json(sections, command, wall_seconds), indent=2, default=str))
    md.write_text("\n\n".join(f"### {s.title}\n\n{markdown_table(s)}" for s in sections) + "\n")
    chart(sections, png, command)
    return js, md, png


def chart(sections: list[Section], path: Path, command: str) -> None:
    """One panel per section: each charted figure as a multiple of its same-run baseline
    (bar = median, whisker = min–max of the runs), its absolute median written beside it; in
    a ``versus`` section, the other store's figure as a multiple of the base store's median."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = []
    for s in sections:
        rows = [r for r in s.rows if r.chart and r.values and (r.is_baseline or s.ratio(r) is not None) and not r.lower_is_better]
        if rows:
            panels.append((s, rows))
    if not panels:
        return
    heights = [max(1.6, 0.32 * len(rows) + 0.9) for _, rows in panels]
    fig, axes = plt.subplots(len(panels), 1, figsize=(11, sum(heights)), gridspec_kw={"height_ratios": heights}, squeeze=False)
    for ax, (s, rows) in zip(axes[:, 0], panels, strict=True):
        labels, mids, lows, highs, texts, colours = [], [], [], [], [], []
        for r in rows:
            base = s.base_of(r) or float("nan")
            clean = [v for v in r.values if not math.isnan(v)]
            mid = median(r.values) / base if base else float("nan")
            labels.append(r.label)
            mids.append(mid)
            lows.append(max(0.0, mid - min(clean) / base) if base and clean else 0.0)
            highs.append(max(0.0, max(clean) / base - mid) if base and clean else 0.0)
            if s.versus:
                texts.append(f"{fmt(median(r.values))} vs {fmt(base)} {r.unit}  ({mid:.2f}× {s.versus[0]})")
            else:
                vs = "" if r.is_baseline or not r.baseline else f" {s.row(r.baseline).short or s.row(r.baseline).key}"
                texts.append(f"{fmt(median(r.values))} {r.unit}  ({mid:.2f}×{vs})")
            colours.append("#9e9e9e" if r.is_baseline else ("#2e7d32" if mid >= 1 else "#1565c0"))
        ys = list(range(len(rows)))[::-1]
        ax.barh(ys, mids, xerr=[lows, highs], color=colours, capsize=3, height=0.6)
        ax.set_yticks(ys, labels, fontsize=8)
        ax.axvline(1.0, color="black", linewidth=0.8, linestyle="--")
        top = max([m + h for m, h in zip(mids, highs, strict=True) if not math.isnan(m)] + [1.0])
        ax.set_xlim(0, top * 1.45)
        for y, m, h, t in zip(ys, mids, highs, texts, strict=True):
            ax.text((0 if math.isnan(m) else m + h) + top * 0.01, y, t, va="center", fontsize=7.5)
        ax.set_title(s.title, fontsize=10, loc="left")
        ax.set_xlabel(f"{s.versus[1]} ÷ {s.versus[0]} (dashed line = 1)" if s.versus else "× same-run baseline (dashed line = 1)",
                      fontsize=8)
        ax.tick_params(axis="x", labelsize=8)
    fig.suptitle(f"{command}  —  {machine()['date']}, {machine()['cpus']} cores", fontsize=9, x=0.01, ha="left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
