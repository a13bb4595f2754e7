"""The console's drawing helpers and theme files, without an app."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from salus_tui.themes import ANSI_THEME, DEFAULT_THEME, load_themes, parse_theme_file, theme_name
from salus_tui.widgets.camera_view import fit_image
from salus_tui.widgets.line_chart import line_dots
from salus_tui.widgets.signal_timeline import column_steps


def test_columns_cover_every_step_in_order():
    for steps, columns in ((24, 60), (200, 60), (60, 60), (1, 10), (7, 3)):
        lo, hi = column_steps(steps, columns)
        assert lo.shape == hi.shape == (columns,)
        assert lo[0] == 0 and hi[-1] == steps and np.all(hi > lo) and np.all(np.diff(lo) >= 0)
        covered = np.zeros(steps, bool)
        for a, b in zip(lo, hi):
            covered[a:b] = True
        assert covered.all()
    lo, hi = column_steps(200, 50)  # 4 steps per column when there are more steps than columns
    assert np.all(hi - lo == 4)


def test_fit_image_keeps_aspect_and_pixels():
    frame = np.zeros((64, 64, 3), np.uint8)
    frame[:32, :, 0] = 255  # top half red
    scaled = fit_image(frame, columns=40, rows=10)  # 10 rows of half blocks = 20 pixels
    assert scaled.shape == (20, 20, 3)
    assert scaled[:10, :, 0].min() == 255 and scaled[10:, :, 0].max() == 0
    wide = fit_image(frame, columns=8, rows=30)
    assert wide.shape == (8, 8, 3)


def test_braille_segment_is_connected():
    points = line_dots((0, 0), (7, 3))
    assert points[0] == (0, 0) and points[-1] == (7, 3)
    assert all(max(abs(a[0] - b[0]), abs(a[1] - b[1])) == 1 for a, b in zip(points, points[1:]))


def test_theme_files_give_dark_light_and_16_colour_themes():
    themes = {t.name: t for t in load_themes()}
    assert {"salus-dark", "salus-light", "salus-ansi"} <= set(themes)
    assert themes["salus-dark"].dark and not themes["salus-light"].dark
    ansi = themes["salus-ansi"]
    assert ansi.ansi and ansi.primary.startswith("ansi_") and ansi.variables["border-blurred"].startswith("ansi_")


def test_theme_choice_follows_no_color_and_the_terminal():
    names = [t.name for t in load_themes()]
    assert theme_name(None, names, {"TERM": "xterm-256color"}) == DEFAULT_THEME
    assert theme_name(None, names, {"TERM": "xterm-256color", "NO_COLOR": "1"}) == ANSI_THEME
    assert theme_name(None, names, {"TERM": "linux"}) == ANSI_THEME  # 16 colours, no true colour
    assert theme_name(None, names, {"TERM": "xterm", "COLORTERM": "truecolor"}) == DEFAULT_THEME
    assert theme_name("light", names, {}) == "salus-light"
    with pytest.raises(ValueError, match="unknown theme"):
        theme_name("sepia", names, {})


def test_no_color_makes_the_console_monochrome(monkeypatch):
    from salus_tui.app import SalusApp

    monkeypatch.setenv("NO_COLOR", "1")
    app = SalusApp(checkpoint="")
    assert app.no_color  # Textual then strips every colour (its NoColor / Monochrome filter)


def test_theme_file_without_primary_is_a_one_line_error(tmp_path):
    path = tmp_path / "broken.tcss"
    path.write_text("$background: #000000;\n")
    with pytest.raises(ValueError, match="no \\$primary"):
        parse_theme_file(path)


def test_pixel_graphics_only_where_a_terminal_was_asked(monkeypatch):
    """Under pytest stdout is no terminal: no probe is sent and the camera uses half-block cells;
    SALUS_GRAPHICS=cells and NO_COLOR skip the probe as well."""
    from salus_tui.widgets.terminal_graphics import detect_protocol, pixel_image_widget

    assert detect_protocol() is None
    monkeypatch.setenv("SALUS_GRAPHICS", "cells")
    assert detect_protocol() is None
    from textual_image.widget import Image

    widget = pixel_image_widget("camera")
    assert isinstance(widget, Image) and widget.id == "camera"


def test_sized_table_columns_fit_their_cells_before_the_table_is_idle():
    """A table drawn before its idle measurement showed cut cells ("collisi") that its render cache
    kept: fill_sized_table gives every column its width when it is added."""
    from rich.text import Text
    from textual.app import App
    from textual.widgets import DataTable

    from salus_tui.widgets.sized_table import fill_sized_table

    class TableApp(App):
        def compose(self):
            yield DataTable()

    async def scenario():
        app = TableApp()
        async with app.run_test(size=(80, 24)):
            table = app.query_one(DataTable)
            fill_sized_table(table, ("id", "outcome"), [("0", Text("success")), ("12", Text("collision", style="bold"))],
                             ["a", "b"])
            # no pause: nothing has measured the rows yet
            widths = {str(key.value): column.get_render_width(table) - 2 * table.cell_padding
                      for key, column in table.columns.items()}
            assert widths == {"id": 2, "outcome": 9}
            assert table.row_count == 2 and table.get_row("b")[0] == "12"
            with pytest.raises(ValueError, match="every row needs 2 cells"):
                fill_sized_table(table, ("id", "outcome"), [("0",)])

    asyncio.run(scenario())
