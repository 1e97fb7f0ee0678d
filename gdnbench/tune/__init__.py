"""Tile tuning: measure a backend's kernel over candidate tiles on this GPU and write its table.

``session.py`` is ``gdnbench tune CONFIG --backend triton|cute``: a resumable, budgeted session over a
config's cases that writes the per-user or shipped table of this GPU. ``common.py`` holds what it
shares with the tuners (``TunerSpec``, one gated and timed candidate, the choice per case class);
``triton.py`` and ``cute.py`` hold each backend's named candidates, case classes and ``SPEC``, and a
``main`` that tunes a fixed roofline plan (``python -m gdnbench.tune.triton --help``). Background and
the current tables' provenance: ``docs/tuning.md``.
"""
