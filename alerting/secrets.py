"""Secrets (密钥) for the channels: from the environment, or from a secrets file, never from config.

The routing file names the variable (``password_env: ESUP_SMTP_PASSWORD``); the value comes from the
process environment or, when ``ESUP_SECRETS_FILE`` points at one, from a ``KEY=value`` file (the
shape Docker and systemd credentials use; ``#`` comments and blank lines allowed). The environment
wins so an operator can override a file. Values are wrapped in ``Secret`` whose ``repr`` and ``str``
hide them, so a stray log line or traceback shows ``Secret('***')`` rather than the key.
"""

from __future__ import annotations

import os
from pathlib import Path

SECRETS_FILE_ENV = "ESUP_SECRETS_FILE"


class SecretMissing(RuntimeError):
    """A channel needs a secret that neither the environment nor the secrets file has."""


class Secret:
    """A secret value that will not print itself; call ``reveal()`` at the one place it is used."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))


def _read_file(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        out[key.strip().removeprefix("export ").strip()] = value
    return out


def get_secret(name: str, *, required: bool = True, secrets_file: str | Path | None = None) -> Secret | None:
    """The secret called ``name`` (environment first, then the secrets file)."""
    value = os.environ.get(name)
    if value is None:
        path = secrets_file or os.environ.get(SECRETS_FILE_ENV)
        if path and Path(path).is_file():
            value = _read_file(Path(path)).get(name)
    if value is None or value == "":
        if required:
            raise SecretMissing(
                f"secret {name} is not set: export it or add it to the file named by {SECRETS_FILE_ENV}"
            )
        return None
    return Secret(value)
