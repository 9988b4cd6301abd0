"""Patient data never leaves a parser as a value: only a flag, a field name or a salted hash.

The salt is per installation (set once from the store or config) so hashes can be compared within one
hospital's data without being reversible by a dictionary of common names elsewhere.
"""

from __future__ import annotations

import hashlib
import os

_salt: bytes = os.urandom(16)


def set_salt(salt: bytes) -> None:
    global _salt
    _salt = salt


def phi_hash(value: bytes | str) -> str:
    """A salted, truncated SHA-256 of a sensitive value: equal values give equal hashes within one salt."""
    if isinstance(value, str):
        value = value.encode("utf-8", "surrogateescape")
    return hashlib.sha256(_salt + value).hexdigest()[:16]
