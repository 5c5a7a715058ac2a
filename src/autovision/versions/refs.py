"""Model version references: ``NAME``, ``NAME@3`` and ``NAME@ALIAS`` (parsing only).

A named model's version reference, not a dataset reference (``autovision.data.dataset``) and
not a backbone name (``autovision.models.registry``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from autovision.errors import ModelError

DEFAULT_ALIAS = "default"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_ALIAS = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")


@dataclass(frozen=True)
class Ref:
    """What a reference names: a version number, or an alias (``default`` for a bare name)."""

    name: str
    version: int | None = None
    alias: str | None = None

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}@{self.version}"
        return self.name if self.alias == DEFAULT_ALIAS else f"{self.name}@{self.alias}"


def check_model_name(name: str) -> str:
    """Model names follow the dataset-name rule: letters, digits, ``.``, ``_``, ``-``."""
    if not _NAME.match(name or ""):
        raise ModelError(
            f"invalid model name {name!r}: use letters, digits, '.', '_' or '-' "
            "(up to 100 characters, starting with a letter or digit)"
        )
    return name


def check_alias(alias: str) -> str:
    """Alias names: lower-case letter first, then ``a-z0-9_-`` (so never a version number)."""
    if not _ALIAS.match(alias or ""):
        raise ModelError(
            f"invalid alias {alias!r}: use a lower-case letter, then lower-case letters, "
            "digits, '_' or '-' (up to 63 characters)"
        )
    return alias


def parse_ref(text: str) -> Ref:
    """``NAME@3`` -> version 3; ``NAME@production`` -> alias; ``NAME`` -> alias ``default``."""
    name, sep, rest = (text or "").strip().partition("@")
    check_model_name(name)
    if not sep:
        return Ref(name, alias=DEFAULT_ALIAS)
    if rest[:1].isdigit() or rest[:1].isnumeric():  # a version: ASCII digits only
        if not re.fullmatch(r"[0-9]{1,18}", rest):
            raise ModelError(
                f"invalid model version in {text!r}: a version is a number written with the "
                "digits 0-9 (up to 18 of them)"
            )
        if int(rest) < 1:
            raise ModelError(f"invalid model version in {text!r}: versions start at 1")
        return Ref(name, version=int(rest))
    if not _ALIAS.match(rest):
        raise ModelError(
            f"invalid model reference {text!r}: expected NAME, NAME@VERSION or NAME@ALIAS"
        )
    return Ref(name, alias=rest)
