"""``python -m gdnbench`` = the ``gdnbench`` command. The guard keeps it from running again in the
worker processes ``gdnbench tune --jobs`` spawns, which import this module as ``__mp_main__``."""

from gdnbench.cli import app

if __name__ == "__main__":
    app()
