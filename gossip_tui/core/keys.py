"""Secret keys as operators write them: 32 random bytes in base64 text."""

from __future__ import annotations

import base64
import binascii
import os

from .errors import GossipTuiError

KEY_LEN = 32


class SecretKeyError(GossipTuiError, ValueError):
    """A secret key that is not 32 bytes of base64."""


def generate_key() -> str:
    """A new random key, as ``--secret-key`` takes it."""
    return base64.urlsafe_b64encode(os.urandom(KEY_LEN)).decode()


def parse_key(text: str) -> bytes:
    """Decode a base64 (standard or URL-safe alphabet) 32-byte key."""
    cleaned = text.strip().replace("-", "+").replace("_", "/")
    try:
        raw = base64.b64decode(cleaned, validate=True)
    except (binascii.Error, ValueError):
        raise SecretKeyError("a secret key must be base64 text (see `gossip-tui keygen`)") from None
    if len(raw) != KEY_LEN:
        raise SecretKeyError(f"a secret key must decode to {KEY_LEN} bytes, not {len(raw)}")
    return raw


def parse_key_lines(text: str, source: str) -> list[bytes]:
    """Keys written one per line; blank lines and lines starting with # are skipped. The
    first key seals, the others are accepted (a rotation)."""
    lines = (line for line in text.splitlines() if line.strip())
    keys = [parse_key(line) for line in lines if not line.lstrip().startswith("#")]
    if not keys:
        raise SecretKeyError(f"no key in {source}")
    return keys
