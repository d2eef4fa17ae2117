"""Result lines and the table ``python -m bench`` prints."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Line:
    """One comparison: our rate against a baseline's, measured in the same run."""

    name: str
    ours: float  # operations per second
    baseline: float
    baseline_label: str
    aim: float | None  # minimum ratio aimed for; None: informational line
    unit: str = "/s"
    notes: list[str] = field(default_factory=list)
    spread: float | None = None  # relative spread of the ratio across rounds (noise), if measured
    target: bool = False  # one of the targets the project set itself (listed again under "targets")

    @property
    def ratio(self) -> float:
        return self.ours / self.baseline if self.baseline > 0 else float("nan")

    @property
    def verdict(self) -> str:
        if self.aim is None:
            return "info"
        return "PASS" if self.ratio >= self.aim else "BELOW"

    @property
    def met(self) -> bool:
        return self.aim is not None and self.ratio >= self.aim

    def as_dict(self) -> dict:
        return {"name": self.name, "ours": self.ours, "baseline": self.baseline,
                "baseline_label": self.baseline_label, "ratio": self.ratio, "aim": self.aim,
                "verdict": self.verdict, "spread": self.spread, "target": self.target, "notes": list(self.notes)}


@dataclass
class Measure:
    """A target that is not a rate (bytes per order, a share of CPU): lower is better."""

    name: str
    value: float
    shown: str  # the value as printed ("2,812 B", "18%")
    aim: float  # at most this
    aim_shown: str
    notes: list[str] = field(default_factory=list)
    target: bool = True

    @property
    def met(self) -> bool:
        return self.value <= self.aim

    def as_dict(self) -> dict:
        return {"name": self.name, "value": self.value, "shown": self.shown, "aim": self.aim,
                "aim_shown": self.aim_shown, "met": self.met, "notes": list(self.notes)}


def _rate(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def _columns(headers: tuple[str, ...], rows: list[tuple[str, ...]], right: set[int]) -> list[str]:
    widths = [max(len(headers[i]), *(len(row[i]) for row in rows)) for i in range(len(headers))]

    def fmt(row) -> str:
        return "  ".join(cell.rjust(widths[i]) if i in right else cell.ljust(widths[i]) for i, cell in enumerate(row))

    return [fmt(headers), "  ".join("-" * w for w in widths)] + [fmt(row) for row in rows]


def targets(results: list) -> str:
    """The project's targets, each with its value in this run and whether it is met."""
    rows = []
    for result in results:
        if not result.target:
            continue
        if isinstance(result, Line):
            rows.append((result.name, f"{result.ratio:.2f}", f"≥ {result.aim:.2f}", "met" if result.met else "NOT MET"))
        else:
            rows.append((result.name, result.shown, result.aim_shown, "met" if result.met else "NOT MET"))
    if not rows:
        return ""
    return "\n".join(["targets (each from this run):"] + _columns(("target", "value", "aim", "result"), rows, {1}))


def table(results: list) -> str:
    lines = [r for r in results if isinstance(r, Line)]
    headers = ("benchmark", "ours /s", "baseline /s", "baseline", "ratio", "aim", "result")
    rows = []
    for line in lines:
        ratio = f"{line.ratio:.2f}"
        if line.spread is not None:
            ratio += f" ±{line.spread * line.ratio:.2f}"
        rows.append((
            line.name, _rate(line.ours), _rate(line.baseline), line.baseline_label, ratio,
            f"≥ {line.aim:.2f}" if line.aim is not None else "-", line.verdict,
        ))
    out = _columns(headers, rows, {1, 2, 4}) if rows else []
    if any(line.spread is not None for line in lines):
        out.append("±: half the spread of the per-round ratios (a BELOW within it is noise, not a result)")
    summary = targets(results)
    if summary:
        out += ["", summary]
    notes = [(result.name, note) for result in results for note in result.notes]
    if notes:
        out.append("")
        out.append("notes:")
        out.extend(f"  - {name}: {note}" for name, note in notes)
    return "\n".join(out)
