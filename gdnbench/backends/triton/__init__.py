"""``triton`` / ``triton_pdl``: gdnbench's own Triton and Gluon kernels for GDN decode and MTP verify.

Decode is memory-bound: each (row, value head) reads its K x V state once and writes it once, with ~6
flops per element, so every kernel here is built to move the state at copy bandwidth and nothing else.
A program owns a tile of BV state rows of one (row, value head) in registers, in fp32; the slot index
and the first token's inputs are loaded together and the state load is the only one that waits for the
slot; gating, the q / k L2 norms and the delta-rule update are fused; a padded row (slot -1) writes a
zero output and never touches the pool.

The package is laid out as the data flows:

* ``tiles.py``: the ``Tile`` (a named kernel ``Variant`` and its shape), which cases it can run, and the
  tuned tables per GPU (``tables/``) with the heuristic fallback;
* ``plan.py``: one launch plan per (case, tile), read by the backend, the ``kernel`` column and the
  offline compile alike;
* ``kernels/``: one algorithm form per file: ``recurrent.py`` (per-token decode / MTP), ``chunk.py``
  (chunk-form MTP on tensor cores), ``gluon_decode.py`` (the Gluon decode and its TMA-staged form),
  ``common.py`` (what they share);
* ``backend.py``: the ``Backend`` objects; ``offline.py``: compiling for sm_90 without a GPU.

Design notes, measurements and the variants that were tried and dropped: ``docs/design/triton-decode.md``;
tuning: ``docs/tuning.md``.
"""

from gdnbench.backends.triton.backend import BACKEND, PDL, TritonGDN

__all__ = ["BACKEND", "PDL", "TritonGDN"]
