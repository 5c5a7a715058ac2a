"""The model card as HTML or Markdown, from :func:`autovision.cards.build.build_card`'s
record, through Jinja2 templates. Every value is escaped: HTML by autoescaping, Markdown by
escaping each printed value (HTML characters, table pipes, leading markup)."""

from __future__ import annotations

import html
import re
from functools import cache
from pathlib import Path
from typing import Any

from autovision.errors import AutovisionError

FORMATS = ("html", "md")
TEMPLATES = Path(__file__).with_name("templates")
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>|#!~])")


def num(x: Any, digits: int = 4) -> str:
    """A figure as the card prints it: 4 decimals, ``n/a`` for a missing one."""
    if x is None:
        return "n/a"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def ci(c: Any) -> str:
    return "" if not c else f"[{c[0]:.3f}, {c[1]:.3f}]"


def value_name(v: Any) -> str:
    return "(missing)" if v is None else str(v)


def md_escape(value: Any) -> str:
    """Text safe inside Markdown, tables included: no raw HTML, no markup, one line."""
    from markupsafe import Markup

    if isinstance(value, Markup):  # a macro's output, already escaped
        return str(value)
    if value is None:
        return ""
    text = re.sub(r"\s*\n\s*", " ", str(value))
    return _MD_SPECIAL.sub(r"\\\1", html.escape(text, quote=False))


@cache
def _env(fmt: str) -> Any:
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    kwargs: dict[str, Any] = (
        {"autoescape": True} if fmt == "html" else {"autoescape": False, "finalize": md_escape}
    )
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        **kwargs,
    )
    env.filters |= {"num": num, "ci": ci, "value_name": value_name}
    return env


def css() -> str:
    return (TEMPLATES / "card.css").read_text(encoding="utf-8")


def render_card(
    card: dict[str, Any],
    fmt: str = "html",
    *,
    stylesheet: str | None = None,
    back: str | None = None,
) -> str:
    """``fmt`` ``html`` (self-contained, or linking ``stylesheet``; ``back``: a link to the
    page it was opened from) or ``md``."""
    if fmt not in FORMATS:
        raise AutovisionError(f"unknown card format {fmt!r}; expected one of {', '.join(FORMATS)}")
    template = _env(fmt).get_template(f"card.{fmt}")
    css_text = css() if fmt == "html" and stylesheet is None else ""
    return template.render(c=card, css=css_text, stylesheet=stylesheet, back=back)
