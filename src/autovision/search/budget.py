"""Training budgets: wall-clock (``90s``, ``10m``, ``2h``), node-hours, or a trial count."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from autovision.errors import TrainingError

DEFAULT_BUDGET_S = 30 * 60.0
NODE_HOUR_S = 3600.0  # one node-hour is one hour of this machine
_UNITS = {"": 1.0, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)\s*")


def parse_duration(text: str | float) -> float:
    """``90s``, ``10m``, ``1.5h``, ``1h30m`` or plain seconds -> seconds."""
    raw = str(text).strip().lower()
    pos, total = 0, 0.0
    while pos < len(raw):
        m = _PART.match(raw, pos)
        if m is None or m.group(2) not in _UNITS:
            pos = -1
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos <= 0 or total <= 0:
        raise TrainingError(f"invalid budget {text!r}: expected a duration like 90s, 10m or 2h")
    return total


@dataclass(frozen=True)
class Budget:
    """``seconds``: wall-clock limit for the whole run (export included), or ``None``;
    ``trials``: number of trials, or ``None``. At least one is set."""

    seconds: float | None = None
    trials: int | None = None

    @classmethod
    def from_args(
        cls,
        budget: str | float | None = None,
        node_hours: float | None = None,
        trials: int | None = None,
    ) -> Budget:
        """Resolve the CLI options; nothing given means the default of 30 minutes."""
        if budget is not None and node_hours is not None:
            raise TrainingError("give either --budget or --budget-node-hours, not both")
        seconds: float | None = None
        if budget is not None:
            seconds = float(budget) if isinstance(budget, int | float) else parse_duration(budget)
        elif node_hours is not None:
            if node_hours <= 0:
                raise TrainingError(f"--budget-node-hours must be positive, got {node_hours}")
            seconds = float(node_hours) * NODE_HOUR_S
        if seconds is not None and seconds <= 0:
            raise TrainingError(f"the budget must be positive, got {budget!r}")
        if trials is not None and trials < 1:
            raise TrainingError(f"--trials must be at least 1, got {trials}")
        if seconds is None and trials is None:
            seconds = DEFAULT_BUDGET_S
        return cls(seconds=seconds, trials=trials)

    @property
    def timed(self) -> bool:
        return self.seconds is not None

    def describe(self) -> str:
        parts = []
        if self.seconds is not None:
            parts.append(format_seconds(self.seconds))
        if self.trials is not None:
            parts.append(f"{self.trials} trial{'s' if self.trials != 1 else ''}")
        return " / ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Budget:
        return cls(seconds=d.get("seconds"), trials=d.get("trials"))


def format_seconds(seconds: float) -> str:
    """``75`` -> ``1m15s``; ``3600`` -> ``1h00m``."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"
