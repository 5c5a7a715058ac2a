from __future__ import annotations

import pytest

from autovision.errors import TrainingError
from autovision.search.budget import DEFAULT_BUDGET_S, Budget, format_seconds, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("10m", 600), ("2h", 7200), ("1h30m", 5400), ("1.5h", 5400), ("45", 45)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "10x", "0s", "-5m", "m10"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(TrainingError, match="invalid budget"):
        parse_duration(text)


def test_budget_from_args() -> None:
    assert Budget.from_args("20s") == Budget(seconds=20.0)
    assert Budget.from_args(node_hours=0.5) == Budget(seconds=1800.0)
    assert Budget.from_args(trials=3) == Budget(seconds=None, trials=3)
    assert Budget.from_args("1m", trials=3) == Budget(seconds=60.0, trials=3)
    assert Budget.from_args() == Budget(seconds=DEFAULT_BUDGET_S)
    assert Budget.from_dict(Budget(10.0, 2).to_dict()) == Budget(10.0, 2)


def test_budget_errors() -> None:
    with pytest.raises(TrainingError, match="not both"):
        Budget.from_args("10m", node_hours=1)
    with pytest.raises(TrainingError, match="at least 1"):
        Budget.from_args(trials=0)
    with pytest.raises(TrainingError, match="positive"):
        Budget.from_args(node_hours=-1)


def test_format_seconds() -> None:
    assert [format_seconds(s) for s in (5, 75, 3600)] == ["5s", "1m15s", "1h00m"]
