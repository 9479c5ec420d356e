"""What a sandboxed command must not see: Agentray's own dirs, the session's sockets, secret stores."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import platformdirs

__all__ = ["SECRET_STORES", "agentray_dirs", "default_hidden_paths", "is_within"]

# Relative to $HOME (PRODUCT.md, "The command sandbox"), plus the tokens of common CLIs.
SECRET_STORES = (
    ".ssh",
    ".gnupg",
    ".aws",
    ".azure",
    ".kube",
    ".docker",
    ".netrc",
    ".pypirc",
    ".npmrc",
    ".git-credentials",
    ".password-store",
    ".config/gcloud",
    ".config/gh",
    ".config/hub",
    ".local/share/keyrings",
    ".cargo/credentials",
    ".cargo/credentials.toml",
    # browser profiles (cookies, saved passwords)
    ".mozilla",
    ".thunderbird",
    ".config/google-chrome",
    ".config/chromium",
    ".config/BraveSoftware",
    ".config/microsoft-edge",
    ".config/vivaldi",
    ".config/opera",
    "snap/firefox",
    "snap/chromium",
    ".var/app",
    "Library/Keychains",
    "Library/Cookies",
    "Library/Application Support/Google/Chrome",
    "Library/Application Support/Firefox",
)

# Sockets on the file system reach across network namespaces: hide the ones that grant power.
SYSTEM_SOCKETS = (
    "/run/user",
    "/var/run/docker.sock",
    "/run/docker.sock",
    "/run/dbus",
    "/tmp/.X11-unix",
)
# Readable by root even without capabilities.
SYSTEM_SECRETS = ("/etc/shadow", "/etc/gshadow", "/etc/sudoers", "/etc/ssh")


def agentray_dirs() -> list[Path]:
    """Agentray's data (the journal, snapshots), config, state and cache dirs."""
    return [
        Path(platformdirs.user_data_dir("agentray")),
        Path(platformdirs.user_config_dir("agentray")),
        Path(platformdirs.user_state_dir("agentray")),
        Path(platformdirs.user_cache_dir("agentray")),
    ]


def is_within(path: Path, parent: Path) -> bool:
    return path == parent or parent in path.parents


def default_hidden_paths(home: Path | None = None, extra: Iterable[Path] = ()) -> list[Path]:
    """Every path to hide, resolved (a symlinked ~/.ssh hides its target); missing ones left out."""
    home = home or Path.home()
    candidates: list[Path] = [*agentray_dirs(), *(home / name for name in SECRET_STORES)]
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        candidates.append(Path(runtime))
    candidates += [Path(p) for p in SYSTEM_SOCKETS + SYSTEM_SECRETS]
    candidates += list(extra)
    seen: dict[Path, None] = {}
    for candidate in candidates:
        try:
            if not os.path.lexists(candidate):
                continue
            resolved = candidate.resolve()
        except (OSError, RuntimeError):
            continue
        if resolved.exists() and resolved != Path("/"):
            seen.setdefault(resolved, None)
    return list(seen)
