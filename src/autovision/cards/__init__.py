"""Model cards (Mitchell et al., "Model Cards for Model Reporting", 2019), generated from
the workspace's records: :func:`build_card` gathers them, :func:`render_card` writes HTML
or Markdown, :func:`write_package_card` puts the card into the model package (after
training and after each evaluation), :func:`set_card_info` stores intended use,
limitations and ethical considerations."""

from autovision.cards.build import (
    CardError,
    build_card,
    check_card_info,
    read_card_file,
    refresh_package_card,
    set_card_info,
    write_package_card,
)
from autovision.cards.render import render_card

__all__ = [
    "CardError",
    "build_card",
    "check_card_info",
    "read_card_file",
    "refresh_package_card",
    "render_card",
    "set_card_info",
    "write_package_card",
]
