"""The session log: one file per `salus` command or console session, written through stdlib logging.

Every front end opens one with `open_session_log` before it starts work. Engine modules log to their
own `logging.getLogger(__name__)`; a bug's whole traceback goes there (`log.exception`), and the
user is shown one line naming the file.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

LOG_DIR = Path("logs")
"""Default folder of session logs, relative to the working directory."""
PROJECT_LOGGERS = ("salus_engine", "salus_tui", "salus")
"""Loggers recorded at INFO; every other library's at WARNING and above."""
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def default_log_path(kind: str) -> Path:
    """`logs/salus-<kind>-<local time>.log`, e.g. `logs/salus-collect-20261130-101500.log`."""
    return LOG_DIR / f"salus-{kind}-{dt.datetime.now():%Y%m%d-%H%M%S}.log"


_OPEN: dict[str, list] = {}
"""Absolute log path -> [handler, users]: the command line and the console it launches share one file."""


def open_session_log(path: str | Path) -> logging.Handler:
    """Sends the project's log records (INFO and above) and every library's warnings to `path`.

    The folder and the file are created now, so that a path that cannot be written (a folder, a
    read-only file) fails here, once, rather than as logging's own traceback at every record. Opening a
    path that is already open shares its handler. Returns the handler; pass it to `close_session_log`
    at the end of the session.

    Raises:
        OSError: the folder or the file cannot be created or opened for writing.
    """
    path = Path(path)
    key = str(path.resolve())
    if key in _OPEN:
        _OPEN[key][1] += 1
        return _OPEN[key][0]
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(_FORMAT, datefmt="%Y-%m-%dT%H:%M:%S"))
    handler.setLevel(logging.INFO)
    root = logging.getLogger()
    root.addHandler(handler)
    if root.level > logging.WARNING or root.level == logging.NOTSET:
        root.setLevel(logging.WARNING)
    for name in PROJECT_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO)
    _OPEN[key] = [handler, 1]
    return handler


def close_session_log(handler: logging.Handler) -> None:
    """Flushes the handler; its last user detaches and closes it."""
    handler.flush()
    for key, entry in list(_OPEN.items()):
        if entry[0] is handler:
            entry[1] -= 1
            if entry[1] > 0:
                return
            del _OPEN[key]
    logging.getLogger().removeHandler(handler)
    handler.close()
