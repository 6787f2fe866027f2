"""API keys at rest and in memory: Fernet encryption for the registry file, `Secret` for everything else.

The registry file holds Fernet tokens only. In memory, a key travels as a `Secret`, whose str() and repr() are
masked, so a key that reaches a log line, an exception or Dagster metadata by accident shows as `****-au3`.
"""

from __future__ import annotations

import hmac
import logging
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from pipeline.masking import mask
from pipeline.settings import Settings

log = logging.getLogger(__name__)

KEY_FILE_NAME = ".registry_secret_key"
_announced: set[Path] = set()


class Secret:
    """A secret string that shows itself only through `reveal()`."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The plaintext, for the one place that must send it (an HTTP header)."""
        return self._value

    @property
    def masked(self) -> str:
        return mask(self._value)

    def __str__(self) -> str:
        return self.masked

    def __repr__(self) -> str:
        return f"Secret({self.masked!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> tuple:
        # Pickles end up in run storage and IO-manager files: a Secret must not travel that way.
        raise TypeError("a Secret cannot be pickled; read it from the registry in the process that uses it")


class SecretKeyError(RuntimeError):
    """The registry's Fernet key is missing, malformed or not the one the stored values were written with."""


def _key_from_file(path: Path) -> bytes:
    """Read the key file, creating it first if absent.

    The key is written to a private temporary file and hard-linked into place, so a process that races us
    either finds no file or a complete one, never an empty one, and exactly one key wins.
    """
    if path.exists():
        return path.read_bytes().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(Fernet.generate_key() + b"\n")
    try:
        os.link(temporary, path)
    except FileExistsError:
        pass
    finally:
        temporary.unlink()
    return path.read_bytes().strip()


def load_fernet(settings: Settings) -> Fernet:
    """`REGISTRY_SECRET_KEY` if set, else `$DATA_DIR/.registry_secret_key` (created 0600 if absent).

    The file is the demo's convenience (data/ is git-ignored); production sets the variable. Which one is used
    is logged once per process, never the key itself.
    """
    if settings.registry_secret_key:
        key, origin = settings.registry_secret_key.encode(), "REGISTRY_SECRET_KEY"
    else:
        path = settings.data_dir / KEY_FILE_NAME
        key, origin = _key_from_file(path), str(path)
        if path not in _announced:
            log.info("REGISTRY_SECRET_KEY is not set; API keys in the registry are encrypted with %s", path)
            _announced.add(path)
    try:
        return Fernet(key)
    except ValueError:
        raise SecretKeyError(f"{origin} is not a Fernet key (32 url-safe base64-encoded bytes)") from None


class SecretBox:
    """Encrypts API keys for the registry file and decrypts them into `Secret`s."""

    def __init__(self, fernet: Fernet) -> None:
        self._fernet = fernet

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> Secret:
        try:
            return Secret(self._fernet.decrypt(token.encode()).decode())
        except InvalidToken:
            raise SecretKeyError(
                "a stored API key cannot be decrypted: REGISTRY_SECRET_KEY (or data/.registry_secret_key) "
                "is not the key it was written with (with DATABASE_URL, every host must set the same "
                "REGISTRY_SECRET_KEY)"
            ) from None
