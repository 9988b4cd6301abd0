"""The error every capture reader raises when a capture cannot be read further."""

from __future__ import annotations


class CaptureError(Exception):
    """A capture that cannot be read further: names the file and the byte offset (of the uncompressed
    stream for gzip files) where reading stopped. Everything before it has been delivered. A live
    interface ("live:eth1") has no offset (None)."""

    def __init__(self, path: str, offset: int | None, reason: str) -> None:
        super().__init__(f"{path}: {reason}" if offset is None else f"{path}: offset {offset}: {reason}")
        self.path, self.offset, self.reason = path, offset, reason
