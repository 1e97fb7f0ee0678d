#!/usr/bin/env python3
"""Let a new venv see the site-packages of the Python that created it, when that Python is a venv.

``python -m venv --system-site-packages`` shows the new venv the *base* interpreter's site-packages.
When the machine's ``python3`` is itself a venv (a GPU image that installs CUDA torch into
``/opt/torch/.venv``, say), its packages are not in the base's, so the new venv would not find the CUDA
torch. Run with that ``python3``, this writes ``gdnbench-parent-site.pth`` into the new venv: a line
that adds this interpreter's site-packages with ``site.addsitedir`` (which also runs their ``.pth``
files, e.g. one that adds a staged bundle of GPU libraries). The venv's own packages stay first on
``sys.path``. Does nothing when this Python is not a venv (``--system-site-packages`` covers it).

Usage: python3 scripts/parent_site_pth.py VENV_DIR
"""

from __future__ import annotations

import site
import subprocess
import sys
from pathlib import Path

NAME = "gdnbench-parent-site.pth"


def pth_line(dirs: list[str]) -> str:
    # one line, no nested scope: site.py execs it inside a function
    return f"import site; list(map(site.addsitedir, {dirs!r}))\n"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    if sys.prefix == sys.base_prefix:
        return 0
    venv_python = Path(argv[0]) / "bin" / "python"
    purelib = subprocess.run([str(venv_python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    dirs = [d for d in site.getsitepackages() if Path(d).is_dir()]
    (Path(purelib) / NAME).write_text(pth_line(dirs))
    print(f"{argv[0]}: sees the site-packages of {sys.executable} ({', '.join(dirs)})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
