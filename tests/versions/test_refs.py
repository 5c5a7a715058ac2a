"""Model version references: ``NAME``, ``NAME@3``, ``NAME@ALIAS``."""

from __future__ import annotations

import pytest

from autovision.errors import ModelError
from autovision.versions.refs import Ref, check_alias, parse_ref


@pytest.mark.parametrize(
    ("text", "ref"),
    [
        ("pets", Ref("pets", alias="default")),
        ("pets@3", Ref("pets", version=3)),
        ("pets@production", Ref("pets", alias="production")),
        ("my.model_v2-x@champion-2", Ref("my.model_v2-x", alias="champion-2")),
    ],
)
def test_parse_ref(text: str, ref: Ref) -> None:
    assert parse_ref(text) == ref


@pytest.mark.parametrize("text", ["", "@3", "pets@", "pets@0", "pets@Prod", "pets@a b", "-x"])
def test_parse_ref_refuses(text: str) -> None:
    with pytest.raises(ModelError):
        parse_ref(text)


def test_ref_prints_back() -> None:
    for text in ("pets", "pets@3", "pets@production"):
        assert str(parse_ref(text)) == text


@pytest.mark.parametrize("alias", ["3", "Production", "_x", "a" * 64, "x y"])
def test_alias_names_are_never_numbers_or_odd(alias: str) -> None:
    with pytest.raises(ModelError, match="invalid alias"):
        check_alias(alias)


@pytest.mark.parametrize("text", ["pets@\u00b2", "pets@\u0663", "pets@1\u0663", "pets@3x"])
def test_versions_are_ascii_digits(text: str) -> None:
    with pytest.raises(ModelError, match="invalid model"):
        parse_ref(text)
