"""A camera image drawn with half-block cells: each terminal cell shows two pixels, the upper one
as the foreground colour of `▀` and the lower one as its background.

The image is scaled (nearest pixel) to fit the widget, keeping its aspect ratio (a terminal cell is
about twice as tall as wide, so one cell = one pixel wide, two pixels tall). Terminals with only
16 or 256 colours get the nearest colours (Rich downgrades them); with NO_COLOR the console's
monochrome filter shows it in grey. Sixel and kitty graphics are not used.
"""

from __future__ import annotations

import numpy as np
from rich.color import Color
from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip

from salus_tui.widgets.drawn_widget import DrawnWidget


def fit_image(frame: np.ndarray, columns: int, rows: int) -> np.ndarray:
    """Scales an (H, W, 3) uint8 image to fit `columns` x `rows` half-block cells.

    Returns:
        (2 * r, c, 3) uint8 with c <= columns, r <= rows, aspect ratio kept (nearest pixel).
    """
    height, width = frame.shape[:2]
    scale = min(columns / width, 2 * rows / height)
    out_w = max(1, int(width * scale))
    out_h = max(2, int(height * scale) // 2 * 2)
    ys = np.minimum(((np.arange(out_h) + 0.5) * height / out_h).astype(int), height - 1)
    xs = np.minimum(((np.arange(out_w) + 0.5) * width / out_w).astype(int), width - 1)
    return frame[ys][:, xs]


class CameraView(DrawnWidget):
    """Shows one (H, W, 3) uint8 frame; `set_frame` replaces it."""

    DEFAULT_CSS = """
    CameraView { width: 1fr; height: 1fr; min-width: 16; min-height: 6; }
    """

    def __init__(self, *, name: str | None = None, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.frame: np.ndarray | None = None

    def set_frame(self, frame: np.ndarray | None) -> None:
        self.frame = frame
        self.redraw()

    def _draw(self, width: int, height: int) -> list[Strip]:
        if self.frame is None or width < 2 or height < 1:
            return [Strip([Segment("no image".center(width))])] if height else []
        image = fit_image(self.frame, width, height)
        pad = " " * ((width - image.shape[1]) // 2)
        lines = []
        for row in range(image.shape[0] // 2):
            top, bottom = image[2 * row], image[2 * row + 1]
            segments = [Segment(pad)]
            for (r1, g1, b1), (r2, g2, b2) in zip(top.tolist(), bottom.tolist()):
                segments.append(Segment("▀", Style(color=Color.from_rgb(r1, g1, b1), bgcolor=Color.from_rgb(r2, g2, b2))))
            lines.append(Strip(segments))
        return lines
