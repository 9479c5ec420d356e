"""Head-and-tail truncation for text shown to the model (tool output, command logs)."""

from __future__ import annotations

__all__ = ["HEAD_SHARE", "split_limit", "truncate_text", "truncation_note"]

# The tail usually holds the error and the summary line, so it gets the larger share.
HEAD_SHARE = 0.4


def truncation_note(dropped: int, total: int) -> str:
    """The marker put where characters were left out."""
    return f"\n…[truncated {dropped} characters of {total}; showing head and tail]…\n"


def split_limit(limit: int) -> tuple[int, int]:
    """How many characters of head and of tail fit in ``limit``."""
    head = int(limit * HEAD_SHARE)
    return head, limit - head


def truncate_text(text: str, limit: int = 30_000) -> str:
    """Return ``text`` unchanged if it fits, else its head and tail around a truncation note.

    The kept head + tail is exactly ``limit`` characters; the note comes on top.
    """
    if not isinstance(text, str):
        raise TypeError("text must be a string")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ValueError("limit must be a non-negative integer")
    total = len(text)
    if total <= limit:
        return text
    head, tail = split_limit(limit)
    tail_part = text[total - tail :] if tail else ""
    return text[:head] + truncation_note(total - head - tail, total) + tail_part
