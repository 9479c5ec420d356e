r"""How file names that are not valid UTF-8 are shown to the model, and read back.

On Linux a file name is any bytes; Python hands such names over as ``str`` with lone surrogates
(``surrogateescape``), which cannot be encoded as UTF-8: JSON, the journal and the model API
would all choke on them. So every name the file tools show goes through :func:`show_name` and
every path they are given goes through :func:`parse_name`.

The convention (reversible, Python-like):

- a name is shown as its bytes decoded as UTF-8;
- each byte that is not part of valid UTF-8 is shown as ``\xHH`` (two lower-case hex digits;
  such bytes are always 80-ff), so ``b"caf\xe9.txt"`` is shown as ``caf\xe9.txt``;
- a backslash that really is in the name is shown doubled, ``\\``, so a name that literally
  holds the four characters ``\xe9`` is shown as ``\\xe9`` and never collides with the above.

Reading back, ``\\`` is one backslash and ``\xHH`` with HH in 80-ff is that raw byte; any other
backslash is taken as it is (``a\b.txt`` still reaches a file named ``a\b.txt``). ``\xHH`` below
80 is not an escape, so an escape can never spell ``/``, ``.`` or NUL: confinement is checked on
the real path the name decodes to, as for any other name.
"""

from __future__ import annotations

import os
import re

__all__ = ["NAME_ESCAPE_NOTE", "parse_name", "show_name"]

NAME_ESCAPE_NOTE = (
    "Some names are not valid UTF-8: each byte that is not is shown as \\xHH and a backslash "
    "that is part of a name as \\\\. Give such names back exactly as shown."
)

# A backslash, and the stand-ins Python uses for undecodable bytes (surrogateescape).
_SHOW_TABLE = {ord("\\"): "\\\\", **{0xDC00 + b: f"\\x{b:02x}" for b in range(0x80, 0x100)}}
_ESCAPE = re.compile(r"\\(\\|x[89a-fA-F][0-9a-fA-F])")


def show_name(name: str) -> str:
    """The printable, UTF-8-safe form of a file name or relative path the OS gave us."""
    if name.isascii() and "\\" not in name:
        return name
    try:
        raw = os.fsencode(name)
    except UnicodeEncodeError:  # not from the OS; show what we can
        return name.replace("\\", "\\\\").encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "surrogateescape").translate(_SHOW_TABLE)


def is_escaped(shown: str) -> bool:
    """True when a shown name needed the convention (holds an escape)."""
    return "\\" in shown


def parse_name(path: str) -> str:
    """The OS name for a path given in the shown form; ValueError when no file can have it."""
    try:
        if "\\" not in path:
            os.fsencode(path)  # lone surrogates other than surrogateescape ones cannot be names
            return path
        out = bytearray()
        pos = 0
        for match in _ESCAPE.finditer(path):
            out += path[pos : match.start()].encode("utf-8", "surrogateescape")
            token = match.group(1)
            out += b"\\" if token == "\\" else bytes([int(token[1:], 16)])
            pos = match.end()
        out += path[pos:].encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise ValueError("it holds characters no file name can have") from None
    try:
        return os.fsdecode(bytes(out))
    except UnicodeDecodeError:  # a platform whose names must be Unicode (Windows): take it as is
        return path
