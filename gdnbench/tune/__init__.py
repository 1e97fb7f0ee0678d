"""Tile tuners: measure a backend's kernel over candidate tiles on this GPU and write its table.

``common.py`` holds what every tuner shares (the tuning cases, the gated timing loop, the choice per
case class, writing the table and the CSV of every measured candidate); ``triton.py`` and ``cute.py``
hold each backend's candidates and case plan. Each module has a ``tune(...)`` function and a ``main``
(``python -m gdnbench.tune.triton --help``). Background and the current tables' provenance:
``docs/tuning.md``.
"""
