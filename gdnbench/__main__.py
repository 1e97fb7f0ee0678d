"""``python -m gdnbench`` = the ``gdnbench`` command."""

from gdnbench.cli import app

app()
