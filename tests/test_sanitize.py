"""sanitize.py: memcheck log parsing and tool lookup (the run itself is a GPU-host feature)."""

from __future__ import annotations

import pytest

from gdnbench.runner import RunError
from pathlib import Path

from gdnbench.sanitize import find_sanitizer, memcheck_command, parse_log

CLEAN = "========= COMPUTE-SANITIZER\n========= ERROR SUMMARY: 0 errors\n"
DIRTY = """========= COMPUTE-SANITIZER
========= Invalid __global__ write of size 16 bytes
=========     at gdn_decode_kernel+0x1a0
=========     by thread (0,0,0) in block (3,0,0)
=========     Address 0x7f00 is out of bounds
========= ERROR SUMMARY: 4 errors
"""


def test_parse_log():
    assert parse_log(CLEAN) == (0, "")
    n, first = parse_log(DIRTY)
    assert n == 4 and first == "Invalid __global__ write of size 16 bytes"
    assert parse_log("") == (-1, "")


def test_missing_sanitizer(monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name: None)
    monkeypatch.setattr("pathlib.Path.glob", lambda self, pat: iter(()))
    with pytest.raises(RunError, match="compute-sanitizer not found"):
        find_sanitizer()


def test_memcheck_command_reports_memory_errors_only():
    cmd = memcheck_command("cs", Path("l.log"), Path("c.yaml"), "decode-b4", "flashinfer", Path("o"))
    assert cmd[:5] == ["cs", "--tool", "memcheck", "--report-api-errors", "no"]
    assert cmd[cmd.index("--case") + 1] == "decode-b4" and cmd[cmd.index("--backend") + 1] == "flashinfer"
