"""Small wording helpers shared by the tray, its notifications and its windows: plurals, "2 h ago",
folders shown short, and window titles that name the app once."""

from __future__ import annotations

import time
from pathlib import Path

__all__ = ["APP_NAME", "ago", "clip", "plural", "short_folder", "window_title"]

APP_NAME = "Agentray"


def plural(n: int, word: str, many: str | None = None) -> str:
    """ "1 run", "2 runs", "0 runs"; ``many`` for irregular words ("1 agent is", …)."""
    return f"{n} {word}" if n == 1 else f"{n} {many or word + 's'}"


def clip(text: str, limit: int) -> str:
    """One line of at most ``limit`` characters, an ellipsis where it was cut."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def ago(when: float, now: float | None = None) -> str:
    """How long ago, in the words a person would use: "just now", "5 min ago", "2 h ago",
    "yesterday", "3 days ago"."""
    seconds = max(0.0, (time.time() if now is None else now) - when)
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h ago"
    days = int(seconds // 86400)
    return "yesterday" if days == 1 else f"{days} days ago"


def short_folder(path: str | Path, limit: int = 36) -> str:
    """A folder as a person reads it: the home folder as ~, long paths cut at the front
    ("…/src/app"), always keeping the folder's own name."""
    full = Path(path).expanduser()
    try:
        text = "~/" + full.relative_to(Path.home()).as_posix()
    except ValueError:
        text = full.as_posix()
    if text in ("~/.", "~/"):
        text = "~"
    if len(text) <= limit:
        return text
    parts = full.parts
    tail = parts[-1]
    for part in reversed(parts[:-1]):
        candidate = f"{part}/{tail}"
        if len(candidate) + 2 > limit:
            break
        tail = candidate
    return "…/" + tail if len(tail) + 2 <= limit else "…" + tail[-(limit - 1) :]


def window_title(thing: str) -> str:
    """A window's title that names the app once: "New run — Agentray". Qt appends the
    application's display name itself unless the title already ends with it."""
    return thing if thing.endswith(APP_NAME) else f"{thing} — {APP_NAME}"
