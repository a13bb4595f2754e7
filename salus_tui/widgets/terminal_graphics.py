"""Pixel graphics for the camera image where the terminal has them: the Kitty terminal graphics
protocol or sixel, through the textual-image library; everywhere else the console draws the image
with half-block cells (`CameraView`).

The terminal is asked once, before the app starts (textual-image's probe reads the answer from
stdin, which Textual owns once it runs). The probe is skipped, and half-block cells are used, when
stdout is not a terminal, under `NO_COLOR`, or with `SALUS_GRAPHICS=cells`.
"""

from __future__ import annotations

import os
import sys

PROTOCOLS = ("tgp", "sixel")
"""What `detect_protocol` can answer besides None: the Kitty graphics protocol or sixel."""


def detect_protocol() -> str | None:
    """Asks the terminal (at most about 2 s) which pixel protocol it draws.

    Returns:
        "tgp", "sixel", or None (half-block cells).
    """
    if os.environ.get("SALUS_GRAPHICS", "").lower() == "cells" or os.environ.get("NO_COLOR"):
        return None
    if not (sys.__stdout__ and sys.__stdout__.isatty() and sys.__stdin__ and sys.__stdin__.isatty()):
        return None
    try:
        from textual_image import renderable
    except Exception:  # a terminal that answers oddly must never keep the console from starting
        return None
    if renderable.Image is renderable.TGPImage:
        return "tgp"
    if renderable.Image is renderable.SixelImage:
        return "sixel"
    return None


def pixel_image_widget(widget_id: str):
    """textual-image's widget for the detected protocol (call only after `detect_protocol` returned
    a protocol); its `image` attribute takes a PIL image."""
    from textual_image.widget import Image

    return Image(id=widget_id)
