"""scripts/profile_kernel.py (the ``make gpu-ncu`` launcher): bad arguments end in one argparse line and
exit 2 before anything touches a GPU."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "profile_kernel.py"


@pytest.mark.parametrize("args,needle", [
    (["--tokens", "1", "--intermediate"], "are MTP options"),
    (["--no-write-back"], "are MTP options"),
    (["--state-dtype", "fp33"], "invalid choice: 'fp33'"),
    (["--pool", "nowhere"], "invalid choice: 'nowhere'"),
    (["--backend", "nope"], "invalid choice: 'nope'"),
])
def test_bad_arguments_give_one_line(args, needle):
    r = subprocess.run([sys.executable, str(SCRIPT), *args], check=False, capture_output=True, text=True,
                       cwd=SCRIPT.parent.parent, env={"PYTHONPATH": str(SCRIPT.parent.parent), "PATH": ""})
    assert r.returncode == 2, r.stderr
    assert needle in r.stderr.strip().splitlines()[-1]
    assert "Traceback" not in r.stderr
