"""SALUS operator console (Textual). Presentation only: every computation lives in `salus_engine`."""
