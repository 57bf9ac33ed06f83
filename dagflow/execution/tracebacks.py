"""The part of a failed attempt's traceback that is the user's: the workflow's own frames.

A workflow's exception passes through dagflow's step code (and, in a worker, Celery's) on its
way to the handler; those frames say nothing about the bug. :func:`user_traceback` keeps the
other frames (the workflow's files, the libraries it called, dagflow's built-in workflows),
at most :data:`MAX_FRAMES` innermost ones and at most :data:`MAX_CHARS` characters of text,
so a traceback fits in an event line and in the run store. It is written to ``task_fail``
and ``task_retry`` events and kept with the task for ``dagflow status --verbose``.
"""

from __future__ import annotations

import importlib
import traceback
from functools import cache
from pathlib import Path

#: Frames kept, innermost last (the ones nearest the error).
MAX_FRAMES = 20
#: Characters kept at most; a longer text keeps its end (the error and the innermost frames).
MAX_CHARS = 4096
#: Packages whose frames are trimmed away...
HIDDEN_PACKAGES = ("dagflow", "celery", "kombu", "billiard")
#: ...except dagflow's built-in workflows, which are workflows like any other.
SHOWN_FOLDER = str(Path(__file__).resolve().parent / "workflows") + "/"


@cache
def _hidden_dirs() -> tuple[str, ...]:
    # The packages' own folders, where they are installed (kombu replaces its module object
    # with a lazy one, so ``find_spec`` cannot be trusted: use ``__file__``).
    dirs = []
    for name in HIDDEN_PACKAGES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        init = getattr(module, "__file__", None)
        if init:
            dirs.append(str(Path(init).resolve().parent) + "/")
    return tuple(dirs)


def _hidden(filename: str, hidden: tuple[str, ...]) -> bool:
    try:
        path = str(Path(filename).resolve())
    except (OSError, ValueError):
        return False
    return path.startswith(hidden) and not path.startswith(SHOWN_FOLDER)


def user_traceback(
    exc: BaseException, max_frames: int = MAX_FRAMES, max_chars: int = MAX_CHARS
) -> str | None:
    """The traceback of ``exc`` without dagflow's and Celery's frames, or None if none is left.

    Args:
        exc: The exception a workflow raised (with its ``__traceback__``).
        max_frames: Innermost frames kept.
        max_chars: Characters kept (the end of the text).

    Returns:
        ``Traceback (most recent call last):``, one ``File "...", line N, in func`` block per
        frame, and the ``ErrorName: message`` line; None when every frame was dagflow's or
        Celery's (an error that dagflow raised itself, such as a non-JSON output).
    """
    hidden = _hidden_dirs()
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not _hidden(f.filename, hidden)]
    if not frames:
        return None
    dropped = max(len(frames) - max_frames, 0)
    lines = ["Traceback (most recent call last):\n"]
    if dropped:
        lines.append(f"  ... {dropped} outer frames not shown\n")
    lines += traceback.format_list(frames[dropped:])
    lines += traceback.format_exception_only(type(exc), exc)
    text = "".join(lines).rstrip("\n")
    if len(text) > max_chars:
        marker = "... (trimmed)\n"
        text = marker + text[len(text) - max_chars + len(marker) :]
    return text
