"""Console themes from `themes/*.tcss`: each file holds Textual theme variables only.

A file `themes/NAME.tcss` becomes the Textual `Theme` `salus-NAME`. Lines of the form
`$variable: value;` set the theme: `$dark` and `$ansi` (true/false) and the colour fields of
`textual.theme.Theme` (`$primary`, `$secondary`, `$accent`, `$warning`, `$error`, `$success`,
`$foreground`, `$background`, `$surface`, `$panel`, `$boost`); any other variable (e.g.
`$border-blurred`) goes into the theme's extra variables. Comments (`/* ... */`) are ignored.
"""

from __future__ import annotations

import os
import re
from dataclasses import fields
from pathlib import Path

from textual.theme import Theme

THEMES_DIR = Path(__file__).resolve().parent / "themes"
"""The installed themes: `salus_tui/themes/` (the repository's top-level `themes/` links here)."""

DEFAULT_THEME = "salus-dark"
ANSI_THEME = "salus-ansi"
"""The 16-colour theme: used with NO_COLOR and on terminals without 256 colours or true colour."""

_DECLARATION = re.compile(r"^\s*\$([a-z][a-z0-9-]*)\s*:\s*([^;]+?)\s*;", re.MULTILINE)
_COMMENT = re.compile(r"/\*.*?\*/", re.DOTALL)
_COLOUR_FIELDS = {f.name for f in fields(Theme)} - {"name", "dark", "ansi", "variables", "luminosity_spread",
                                                   "text_alpha"}


class ThemeFileError(ValueError):
    """A theme file is unreadable or lacks `$primary`; the message names the file."""


def parse_theme_file(path: Path) -> Theme:
    """Reads one `themes/NAME.tcss` file into the Theme `salus-NAME`.

    Raises:
        ThemeFileError: unreadable file, or no `$primary` declaration.
    """
    try:
        text = _COMMENT.sub("", path.read_text())
    except OSError as err:
        raise ThemeFileError(f"theme file {path} is unreadable ({err}); fix or remove it") from None
    values = {name: value for name, value in _DECLARATION.findall(text)}
    if "primary" not in values:
        raise ThemeFileError(f"theme file {path} has no $primary declaration; add one")
    flags = {name: values.pop(name).lower() in ("true", "yes", "1") for name in ("dark", "ansi") if name in values}
    colours = {name: values.pop(name) for name in list(values) if name in _COLOUR_FIELDS}
    return Theme(name=f"salus-{path.stem}", dark=flags.get("dark", True), ansi=flags.get("ansi", False),
                 variables=values, **colours)


def load_themes(folder: Path = THEMES_DIR) -> list[Theme]:
    """Every theme of `folder` (sorted by file name); an empty list when the folder is missing."""
    if not folder.is_dir():
        return []
    return [parse_theme_file(path) for path in sorted(folder.glob("*.tcss"))]


def theme_name(requested: str | None, available: list[str], environ: dict[str, str] | None = None) -> str:
    """The theme to start with.

    `requested` may be a full name (`salus-light`), a short one (`light`) or None. Without a request:
    the 16-colour theme when NO_COLOR is set or the terminal announces neither true colour
    (`COLORTERM`) nor 256 colours (`TERM`), otherwise `salus-dark`.

    Raises:
        ValueError: an unknown theme name (the message lists the known ones).
    """
    env = os.environ if environ is None else environ
    if requested:
        for candidate in (requested, f"salus-{requested}"):
            if candidate in available:
                return candidate
        raise ValueError(f"unknown theme {requested!r}; choose one of {', '.join(available)}")
    if "NO_COLOR" in env:
        return ANSI_THEME if ANSI_THEME in available else available[0]
    truecolor = env.get("COLORTERM", "").lower() in ("truecolor", "24bit")
    many_colours = "256" in env.get("TERM", "") or truecolor
    if not many_colours and env.get("TERM") and ANSI_THEME in available:
        return ANSI_THEME
    return DEFAULT_THEME if DEFAULT_THEME in available else available[0]
