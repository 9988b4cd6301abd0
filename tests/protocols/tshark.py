"""Wireshark as an oracle for dissector tests: the fields tshark reads from Ethernet frames."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest


def fields(frames: list[bytes], tmp_path: Path, *names: str) -> list[list[str]]:
    """One row per frame, one column per field name (skips the test when tshark is missing)."""
    if shutil.which("tshark") is None:
        pytest.skip("tshark not installed")
    pcap = tmp_path / "frames.pcap"
    pcap.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
                     + b"".join(struct.pack("<IIII", 0, 0, len(f), len(f)) + f for f in frames))  # fmt: skip
    args = ["tshark", "-r", str(pcap), "-T", "fields", *(a for n in names for a in ("-e", n))]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return [line.split("\t") for line in out.splitlines()]
