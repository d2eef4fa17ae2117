"""Geometry of the sequence diagram: lanes across, one row per message, drawn as inline SVG."""

from __future__ import annotations

from dataclasses import dataclass

from .explain import LANES
from .steps import Step

LANE_WIDTH = 190
ROW_HEIGHT = 34
TOP = 44  # below the lane heads
MARGIN = 95  # half a lane: lane centres sit in the middle of their column


@dataclass(frozen=True)
class Row:
    step_id: str
    y: int
    x1: int
    x2: int
    label: str
    ok: bool | None
    answer: bool  # a dashed reply arrow
    note: bool  # a step inside one lane

    @property
    def label_x(self) -> int:
        return (self.x1 + self.x2) // 2 if not self.note else self.x1 + 12

    @property
    def css(self) -> str:
        state = {True: "ok", False: "fail", None: "info"}[self.ok]
        return f"seq__row seq__row--{state}" + (" seq__row--answer" if self.answer else "")


@dataclass(frozen=True)
class Diagram:
    width: int
    height: int
    lanes: list[tuple[str, int]]  # (lane, centre x)
    rows: list[Row]


def lane_x(lane: str) -> int:
    return MARGIN + LANES.index(lane if lane in LANES else "shop") * LANE_WIDTH


def diagram(steps: list[Step]) -> Diagram:
    """Rows for every step; a request/answer step gets a reply row under it."""
    rows: list[Row] = []
    y = TOP
    for step in steps:
        x1, x2 = lane_x(step.source), lane_x(step.target)
        label = step.label + (f" ×{step.repeat}" if step.repeat > 1 else "")
        rows.append(Row(step.id, y, x1, x2, label, step.ok, False, x1 == x2))
        y += ROW_HEIGHT
        if step.answer and x1 != x2:
            rows.append(Row(step.id, y, x2, x1, step.answer, step.ok, True, False))
            y += ROW_HEIGHT
    return Diagram(LANE_WIDTH * len(LANES), y + 10, [(lane, lane_x(lane)) for lane in LANES], rows)
