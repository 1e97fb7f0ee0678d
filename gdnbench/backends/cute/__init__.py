"""``cute``: gdnbench's own CuTe DSL decode kernel (K-last, bf16 / fp32 state, pooled with padding).

``tiles.py``: the tile (BV rows x NVEC vectors per lane x threads per CTA), tuned tables per GPU
(``tables/``) and the heuristic; ``backend.py``: the ``Backend`` object, compile and disk cache;
``kernels/decode_klast.py``: the kernel. Design notes: ``docs/design/cute-decode.md``.
"""

from gdnbench.backends.cute.backend import BACKEND, CuteGDN

__all__ = ["BACKEND", "CuteGDN"]
