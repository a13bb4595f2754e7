"""`DrawnWidget`: a widget that draws all its lines at once and keeps them until its size or content
changes (the camera view and the line chart), so a refresh that changes nothing costs no drawing."""

from __future__ import annotations

from textual.geometry import Size
from textual.strip import Strip
from textual.widget import Widget


class DrawnWidget(Widget):
    """Subclasses implement `_draw(width, height) -> list[Strip]` and call `redraw()` when their
    content changes."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._lines: list[Strip] | None = None
        self._drawn_size: Size | None = None

    def redraw(self) -> None:
        """Drops the drawn lines and schedules a repaint."""
        self._lines = None
        self.refresh()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._lines = None

    def _draw(self, width: int, height: int) -> list[Strip]:
        raise NotImplementedError

    def render_line(self, y: int) -> Strip:
        width, height = self.size
        if self._lines is None or self._drawn_size != self.size:
            self._lines = self._draw(width, height)
            self._drawn_size = self.size
        line = self._lines[y] if y < len(self._lines) else Strip.blank(width)
        return line.crop_extend(0, width, self.rich_style).apply_style(self.rich_style)
