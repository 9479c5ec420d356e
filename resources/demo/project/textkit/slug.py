"""Turn titles into URL slugs."""

import re


def slugify(text: str) -> str:
    """'Hello World!' -> 'hello-world'."""
    words = re.findall(r"[A-Za-z0-9]+", text)
    return "_".join(words)
