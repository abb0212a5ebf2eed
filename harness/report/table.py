"""The comparison table: rows (one per filter and scale, seeds pooled) and its renderings.

Columns are exactly the seed's table (the HYPE paper's comparison table: Method, DataComp Scale, Sample Size, Uniform, the four aggregates, Average).
Within each scale the best value of a metric column is bold and the second underlined, as in the
paper; several seeds show as "mean ± population std"; a dagger marks rows whose evaluation is
missing tasks; § marks rows evaluated with ``--compat corrected`` (unmarked user rows: DataComp's
pinned evaluator, ``--compat datacomp``), explained in a footnote.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness.expressions import ExpressionError, tokenize
from harness.plugins import filter_label, filter_names
from harness.report.runs import RunResult, run_from_summary
from harness.summary import AGGREGATES

COLUMNS: tuple[str, ...] = (
    "Method", "DataComp Scale", "Sample Size", "Uniform",
    "ImageNet", "ImageNet Dist. Shift", "VTAB", "Retrieval", "Average",
)
METRIC_COLUMNS: tuple[str, ...] = tuple(a.header for a in AGGREGATES)
SCALE_ORDER: tuple[str, ...] = ("tiny", "small", "medium", "large", "xlarge")
DAGGER = "†"
MISSING = "–"
# Evaluation modes (harness/compat.py) other than DataComp's own get a mark and a footnote.
MODE_MARKS: dict[str, str] = {"corrected": "§", "mixed": "¶"}

_OPERATORS = {"+": " + ", "&": " ∩ ", "-": " - "}
_PERCENT_ATOM = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*?)_?(\d+(?:\.\d+)?)$")
_THRESHOLD_ATOM = re.compile(r"^([A-Za-z_][A-Za-z0-9_.]*)\s*(>=|<=|>|<)\s*(.+)$")


def _atom_label(atom: str) -> str:
    # a filter's paper-style name is its `label` (harness.plugins); a name no loaded plugin has shows as written
    if atom.startswith("uids:"):
        return "uids:" + Path(atom[5:]).stem
    if m := _THRESHOLD_ATOM.match(atom):
        name, op, value = m.groups()
        op = {">=": "≥", "<=": "≤"}.get(op, op)
        return f"{filter_label(name)} {op} {value}"
    if atom in filter_names():
        return filter_label(atom)
    if m := _PERCENT_ATOM.match(atom):
        name, percent = m.groups()
        return f"{filter_label(name)} {percent}%"
    return atom


def method_label(expression: str) -> str:
    """The paper's way of naming a filter expression: hype10+dfn -> "HYPE 10% + DFN"."""
    try:
        toks = tokenize(expression)
    except ExpressionError:
        return expression  # not an expression we can read: show it as written
    parts, i = [], 0
    while toks[i].kind != "end":
        tok = toks[i]
        if tok.kind == "word" and toks[i + 1].kind == "cmp":  # name >= number: one term
            parts.append(_atom_label(tok.text + toks[i + 1].text + toks[i + 2].text))
            i += 3
            continue
        if tok.kind == "op":
            parts.append(_OPERATORS[tok.text])
        elif tok.kind in ("lpar", "rpar"):
            parts.append(tok.text)
        elif tok.kind == "uids":
            parts.append(_atom_label("uids:" + tok.value))
        elif tok.kind == "word":
            parts.append(_atom_label(tok.text))
        else:  # a comparison without a name before it
            return expression
        i += 1
    return "".join(parts).replace("( ", "(").replace(" )", ")")


def format_samples(n: float | None) -> str:
    """Sample counts the way the paper prints them: 1.2M, 38.0M, 128M, 1.28B; 12.8K; small counts plain."""
    if n is None:
        return MISSING
    if n >= 1e9:
        v = n / 1e9
        return f"{v:.2f}B" if v < 10 else f"{v:.1f}B"
    if n >= 1e6:
        v = n / 1e6
        return f"{v:.0f}M" if round(v, 1) >= 100 else f"{v:.1f}M"
    if n >= 1e4:
        v = n / 1e3
        return f"{v:.0f}K" if round(v, 1) >= 100 else f"{v:.1f}K"
    return str(int(round(n)))


@dataclass(frozen=True)
class Stat:
    """Mean, population standard deviation and count of one quantity over seeds."""

    mean: float
    std: float = 0.0
    n: int = 1

    @classmethod
    def of(cls, values: Iterable[float | None]) -> Stat | None:
        xs = [float(v) for v in values if v is not None]
        if not xs:
            return None
        mean = math.fsum(xs) / len(xs)
        var = math.fsum((x - mean) ** 2 for x in xs) / len(xs)
        return cls(mean, math.sqrt(var), len(xs))


@dataclass
class Row:
    """One line of the table: a user's filter at one scale (its seeds pooled), or a published result."""

    method: str                       # display name without marks, e.g. "HYPE 10% + DFN"
    scale: str                        # lower case: tiny, small, medium, ...
    samples: Stat | None
    uniform: bool | None
    values: dict[str, Stat | None]    # keyed by METRIC_COLUMNS
    published: bool = False
    source: str = ""
    filter: str = ""                  # the expression the runs used ("" for published rows)
    partial: bool = False
    missing_tasks: list[str] = field(default_factory=list)
    runs: list[RunResult] = field(default_factory=list)
    compat: str | None = None         # evaluation mode of its runs ("mixed" if seeds differ; None: unrecorded)

    @property
    def n(self) -> int:
        return len(self.runs) if self.runs else 1


def _scale_key(scale: str) -> tuple[int, str]:
    return (SCALE_ORDER.index(scale), "") if scale in SCALE_ORDER else (len(SCALE_ORDER), scale)


def rows_from_runs(runs: Sequence[RunResult]) -> list[Row]:
    """Pool the seeds of each (scale, filter, pool) into one row, in order of first appearance."""
    groups: dict[tuple[str, str, str], list[RunResult]] = {}
    for run in runs:
        groups.setdefault((run.scale, run.filter, run.pool), []).append(run)
    pools_per_filter: dict[tuple[str, str], set[str]] = {}
    for scale, filt, pool in groups:
        pools_per_filter.setdefault((scale, filt), set()).add(pool)
    rows = []
    for (scale, filt, pool), members in groups.items():
        name = method_label(filt)
        if len(pools_per_filter[(scale, filt)]) > 1:
            name += f" [{Path(pool).name or pool}]"  # same filter on two pools: keep the rows apart and say which is which
        uniforms = {r.uniform for r in members}
        modes = {r.compat for r in members}
        missing = sorted({t for r in members for t in r.missing_tasks})
        rows.append(Row(
            method=name,
            scale=scale,
            samples=Stat.of(r.samples for r in members),
            uniform=uniforms.pop() if len(uniforms) == 1 else None,
            values={a.header: Stat.of(r.aggregates.get(a.key) for r in members) for a in AGGREGATES},
            filter=filt,
            partial=any(r.partial for r in members) or bool(missing),
            missing_tasks=missing,
            runs=sorted(members, key=lambda r: (r.seed is None, r.seed or 0, str(r.path))),
            compat=modes.pop() if len(modes) == 1 else "mixed",
        ))
    return rows


def arrange(rows: Sequence[Row], published: Sequence[Row] = (), scale: str | None = None) -> list[Row]:
    """Order rows by scale; within a scale, published rows first (as the paper lists baselines
    before its own), then the user's rows in the order given. Published rows are kept only for
    scales the user's rows cover (or `scale`, when given)."""
    if scale is not None:
        rows = [r for r in rows if r.scale == scale]
        scales = {scale}
    elif rows:
        scales = {r.scale for r in rows}
    else:
        scales = {r.scale for r in published}  # nothing of the user's: show the published table
    pub = [r for r in published if r.scale in scales]
    ordered = sorted(scales, key=_scale_key)
    return [r for s in ordered for r in [*(p for p in pub if p.scale == s), *(u for u in rows if u.scale == s)]]


def summary_row(summary: dict) -> Row:
    """The table row of one finished run from its summary dict (what `harness run` prints)."""
    run_dir = Path((summary.get("provenance") or {}).get("run_dir") or ".")
    return rows_from_runs([run_from_summary(summary, run_dir)])[0]


def ranks(rows: Sequence[Row]) -> dict[tuple[int, str], int]:
    """(row index, column) -> 1 for the best, 2 for the second best, per scale and metric column.

    Values are compared as printed (3 decimals), so ties share a mark. Partial rows are not
    ranked: their aggregates cover fewer tasks. A column needs two ranked rows for a bold and
    three for an underline, so a lone run is never "best".
    """
    marks: dict[tuple[int, str], int] = {}
    for scale in {r.scale for r in rows}:
        idx = [i for i, r in enumerate(rows) if r.scale == scale and not r.partial]
        for col in METRIC_COLUMNS:
            vals = {i: round(rows[i].values[col].mean, 3) for i in idx if rows[i].values.get(col)}
            if len(vals) < 2:
                continue
            distinct = sorted(set(vals.values()), reverse=True)
            for i, v in vals.items():
                if v == distinct[0]:
                    marks[(i, col)] = 1
                elif len(vals) >= 3 and len(distinct) > 1 and v == distinct[1]:
                    marks[(i, col)] = 2
    return marks


def _value_text(stat: Stat | None) -> str:
    if stat is None:
        return MISSING
    if stat.n > 1:
        return f"{stat.mean:.3f} ± {stat.std:.3f}"
    return f"{stat.mean:.3f}"


def _uniform_text(u: bool | None) -> str:
    return MISSING if u is None else ("Yes" if u else "No")


def source_refs(rows: Sequence[Row]) -> dict[str, int]:
    """Published sources numbered in order of first appearance: the [k] in "(published [k])"."""
    refs: dict[str, int] = {}
    for r in rows:
        if r.published:
            refs.setdefault(r.source, len(refs) + 1)
    return refs


def method_cell(row: Row, refs: dict[str, int]) -> str:
    """The Method cell: name, partial mark, seed count, published label with its source number."""
    text = row.method + (DAGGER if row.partial else "") + MODE_MARKS.get(row.compat or "", "")
    if row.n > 1:
        text += f" (n={row.n})"
    if row.published:
        text += f" (published [{refs[row.source]}])"
    return text


def _cells(row: Row, refs: dict[str, int]) -> list[str]:
    return [
        method_cell(row, refs),
        row.scale.capitalize(),
        format_samples(row.samples.mean if row.samples else None),
        _uniform_text(row.uniform),
        *(_value_text(row.values.get(c)) for c in METRIC_COLUMNS),
    ]


def footnotes(rows: Sequence[Row], styled: bool = True) -> list[str]:
    """Plain-text notes under the table: what the marks mean and where published rows come from.
    `styled` tables (Markdown, LaTeX, HTML) explain bold and underline; the terminal has neither."""
    notes = []
    if styled and ranks(rows):
        notes.append("Bold: best in its column among the complete rows of the same scale; underlined: second best.")
    if any(r.n > 1 for r in rows):
        notes.append("a ± b: mean ± population standard deviation over the n seeds given after the method.")
    for r in rows:
        if r.partial:
            what = ", ".join(r.missing_tasks) if r.missing_tasks else "not recorded"
            notes.append(f"{DAGGER} {r.method} ({r.scale}): partial evaluation, aggregates cover only the "
                         f"tasks present; missing: {what}.")
    notes += _mode_notes(rows)
    for source, k in source_refs(rows).items():
        notes.append(f"[{k}] Published result quoted from {source}; not rerun here.")
    return notes


def _mode_notes(rows: Sequence[Row]) -> list[str]:
    """Which evaluation mode made the numbers, once any row records one (older runs do not)."""
    mine = [r for r in rows if not r.published]
    modes = {r.compat for r in mine}
    if modes <= {None}:
        return []
    notes = []
    if "datacomp" in modes:
        notes.append("Unmarked rows: evaluated as DataComp's pinned evaluator computes (--compat datacomp), "
                     "like DataComp's published numbers.")
    if "corrected" in modes:
        notes.append(f"{MODE_MARKS['corrected']} evaluated with --compat corrected (FMoW's worst region skips "
                     "'Other'; blank class-name lines kept): not directly comparable with DataComp's numbers.")
    if "mixed" in modes:
        notes.append(f"{MODE_MARKS['mixed']} seeds evaluated in different --compat modes.")
    unknown = [f"{r.method} ({r.scale})" for r in mine if r.compat is None]
    if unknown:
        notes.append("Evaluation mode not recorded (runs made before --compat existed): " + ", ".join(unknown) + ".")
    return notes


def render_cells(rows: Sequence[Row], cell: Callable[[str, int | None], str]) -> list[list[str]]:
    marks = ranks(rows)
    refs = source_refs(rows)
    out = []
    for i, row in enumerate(rows):
        texts = _cells(row, refs)
        out.append([cell(t, marks.get((i, COLUMNS[j]))) for j, t in enumerate(texts)])
    return out


def no_tags(text: str) -> str:
    """< and > as entities: no tag (a <script>, an <img onerror=...>) survives into the Markdown. A bare
    & is left alone (it starts no tag, and "D&B" stays readable in the source)."""
    return text.replace("<", "&lt;").replace(">", "&gt;")


def csv_safe(cell: object) -> object:
    """A text cell a spreadsheet would run as a formula (=, +, -, @, tab or CR first) gets a leading
    apostrophe; numbers (negative ones included) and every other cell are written unchanged."""
    if not isinstance(cell, str) or not cell.startswith(("=", "+", "-", "@", "\t", "\r")):
        return cell
    try:
        float(cell)
        return cell
    except ValueError:
        return "'" + cell


def to_markdown(rows: Sequence[Row]) -> str:
    """GitHub Markdown table (bold **x**, underline <u>x</u>) with its notes; names are HTML-escaped,
    so a name holding markup shows as text."""
    def cell(text: str, mark: int | None) -> str:
        text = no_tags(text).replace("|", "\\|")
        return f"**{text}**" if mark == 1 else f"<u>{text}</u>" if mark == 2 else text

    lines = ["| " + " | ".join(COLUMNS) + " |",
             "|" + "|".join(["---"] * 4 + ["---:"] * len(METRIC_COLUMNS)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in render_cells(rows, cell)]
    notes = footnotes(rows)
    if notes:
        lines += [""] + [f"- {no_tags(n)}" for n in notes]
    return "\n".join(lines) + "\n"


def _num(value: float | None) -> str:
    if value is None:
        return ""
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"


def _std(stat: Stat | None) -> float | None:
    return stat.std if stat is not None and stat.n > 1 else None  # one value has no spread


CSV_EXTRA: tuple[str, ...] = (
    "Filter", "Published", "Seeds", "Partial", "Missing Tasks", "Samples",
    *(f"{c} Std" for c in METRIC_COLUMNS), "Source", "Compat",
)


def to_csv(rows: Sequence[Row]) -> str:
    """The seed's nine columns (metric cells hold the plain mean) followed by machine-readable extras:
    filter expression, published/partial flags, seed count, exact sample count, per-metric std, source,
    evaluation mode (datacomp / corrected / mixed; empty when not recorded or published)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([*COLUMNS, *CSV_EXTRA])
    for r in rows:
        writer.writerow(csv_safe(c) for c in [
            r.method,
            r.scale.capitalize(),
            format_samples(r.samples.mean if r.samples else None),
            "" if r.uniform is None else ("Yes" if r.uniform else "No"),
            *(_num(r.values[c].mean if r.values.get(c) else None) for c in METRIC_COLUMNS),
            r.filter,
            "yes" if r.published else "no",
            "" if r.published else r.n,
            "yes" if r.partial else "no",
            ";".join(r.missing_tasks),
            _num(r.samples.mean if r.samples else None),
            *(_num(_std(r.values.get(c))) for c in METRIC_COLUMNS),
            r.source,
            r.compat or "",
        ])
    return buf.getvalue()


_LATEX_ESCAPES = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "±": r"$\pm$", DAGGER: r"$^\dagger$", "§": r"\S{}", "¶": r"\P{}", "∩": r"$\cap$", "≥": r"$\geq$", "≤": r"$\leq$", MISSING: "--",
}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in text)


def to_latex(rows: Sequence[Row]) -> str:
    """A booktabs table (\\usepackage{booktabs}); a rule separates scales; notes below the tabular."""
    def cell(text: str, mark: int | None) -> str:
        text = latex_escape(text)
        return rf"\textbf{{{text}}}" if mark == 1 else rf"\underline{{{text}}}" if mark == 2 else text

    lines = [
        r"% Generated by `harness report`; needs \usepackage{booktabs}.",
        r"\begin{table}[t]",
        r"\centering",
        r"\small",
        r"\begin{tabular}{llrl" + "r" * len(METRIC_COLUMNS) + "}",
        r"\toprule",
        " & ".join(COLUMNS) + r" \\",
        r"\midrule",
    ]
    previous = None
    for row, cells in zip(rows, render_cells(rows, cell), strict=True):
        if previous is not None and row.scale != previous:
            lines.append(r"\midrule")
        previous = row.scale
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    notes = footnotes(rows)
    if notes:
        lines.append(r"\par\smallskip")
        lines += [r"{\footnotesize " + latex_escape(n) + r"\par}" for n in notes]
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def format_table(rows: Sequence[Row]) -> str:
    """Plain aligned text for the terminal (`harness run`, `make compare`), notes underneath."""
    refs = source_refs(rows)
    body = [list(COLUMNS), *(_cells(r, refs) for r in rows)]
    widths = [max(len(line[j]) for line in body) for j in range(len(COLUMNS))]
    numeric = set(range(4, len(COLUMNS)))

    def fmt(line: list[str]) -> str:
        return "  ".join(t.rjust(w) if j in numeric else t.ljust(w)
                         for j, (t, w) in enumerate(zip(line, widths, strict=True))).rstrip()

    out = [fmt(body[0]), "  ".join("-" * w for w in widths)] + [fmt(line) for line in body[1:]]
    notes = footnotes(rows, styled=False)
    if notes:
        out += [""] + notes
    return "\n".join(out) + "\n"
