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

    @property
    def ratio(self) -> float:
        return self.ours / self.baseline if self.baseline > 0 else float("nan")

    @property
    def verdict(self) -> str:
        if self.aim is None:
            return "info"
        return "PASS" if self.ratio >= self.aim else "BELOW"

    def as_dict(self) -> dict:
        return {"name": self.name, "ours": self.ours, "baseline": self.baseline,
                "baseline_label": self.baseline_label, "ratio": self.ratio, "aim": self.aim,
                "verdict": self.verdict, "spread": self.spread, "notes": list(self.notes)}


def _rate(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def table(lines: list[Line]) -> str:
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
    widths = [max(len(headers[i]), *(len(row[i]) for row in rows)) for i in range(len(headers))]
    right = {1, 2, 4}

    def fmt(row) -> str:
        return "  ".join(cell.rjust(widths[i]) if i in right else cell.ljust(widths[i]) for i, cell in enumerate(row))

    out = [fmt(headers), "  ".join("-" * w for w in widths)]
    out.extend(fmt(row) for row in rows)
    if any(line.spread is not None for line in lines):
        out.append("±: half the spread of the per-round ratios (a BELOW within it is noise, not a result)")
    notes = [(line.name, note) for line in lines for note in line.notes]
    if notes:
        out.append("")
        out.append("notes:")
        out.extend(f"  - {name}: {note}" for name, note in notes)
    return "\n".join(out)
