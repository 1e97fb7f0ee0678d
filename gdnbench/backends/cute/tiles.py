"""Tiles of the ``cute`` backend: BV state rows per CTA, NVEC 16-byte vectors per lane per row, threads
per CTA. A :class:`CuteTile` is checked once when it is made (positive sizes, whole warps); whether it fits a case is ``tile_reason``. Tiles come from the tuned table of this GPU (or
another GPU's) in ``tables/`` or the per-user tables, written by ``gdnbench tune --backend cute``, else from ``heuristic_tile``;
``tile_source`` says which.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from gdnbench.backends.base import current_target
from gdnbench.backends.tables import TileTable, choose, load_table, package_digest, user_tables
from gdnbench.cases import Case

NUM_THREADS = 128  # heuristic tile: 4 warps per CTA
_ELEM = {"bfloat16": 2, "float16": 2, "float32": 4}


def vec(case: Case) -> int:
    """State elements per 16-byte access."""
    return 16 // _ELEM[case.state_dtype]


MAX_ROWS_PER_GROUP = 8  # heuristic tile: 8 rows x 16 B per thread: ~70-100 registers, 4+ CTAs per SM
MAX_ELEMS_PER_THREAD = 64  # any tile: R rows x NVEC x VEC state elements per thread (fp32 registers)


@dataclass(frozen=True)
class CuteTile:
    """BV state rows per CTA, NVEC 16-byte vectors per lane per row, threads per CTA (32, 64 or 128:
    small CTAs give small batches more, shorter CTAs)."""
    bv: int
    nvec: int = 1
    threads: int = NUM_THREADS

    def __post_init__(self) -> None:
        if self.bv < 1 or self.nvec < 1 or self.threads < 32 or self.threads % 32:
            raise ValueError(f"a cute tile takes BV >= 1, NVEC >= 1 and whole warps per CTA "
                             f"(got {self.bv}, {self.nvec}, {self.threads})")

    @classmethod
    def from_entry(cls, e: dict) -> CuteTile:
        return cls(int(e["bv"]), int(e["nvec"]), int(e.get("threads", NUM_THREADS)))

    def entry(self) -> dict:
        """The tile as a table entry's fields."""
        return {"bv": self.bv, "nvec": self.nvec, "threads": self.threads}

    @property
    def name(self) -> str:
        """``bv=16 nvec=1 threads=128`` (rows' ``tile`` column, the tuner's candidate names)."""
        return f"bv={self.bv} nvec={self.nvec} threads={self.threads}"


def lanes(case: Case, nvec: int = 1) -> int:
    """Lanes sharing one state row."""
    return case.head_dim_k // (vec(case) * nvec)


def tile_reason(case: Case, t: CuteTile) -> str | None:
    """Why the kernel cannot run ``case`` with tile ``t`` (None: it can)."""
    n = lanes(case, t.nvec)
    if case.head_dim_k % (vec(case) * t.nvec) or n & (n - 1) or not 2 <= n <= 32:
        return (f"K={case.head_dim_k} with {case.state_dtype} state and {t.nvec} x 16 B per lane needs 2..32 "
                f"lanes per row (NVEC = 1: bf16 K = 16..256, fp32 K = 8..128, powers of two)")
    if t.threads not in (32, 64, 128):
        return f"{t.threads} threads per CTA: the kernel takes 32, 64 or 128"
    groups = t.threads // n
    if t.bv % groups or case.head_dim_v % t.bv:
        return f"V={case.head_dim_v} is not a multiple of the {t.bv}-row tile ({groups} row groups per CTA)"
    if t.bv // groups * vec(case) * t.nvec > MAX_ELEMS_PER_THREAD:
        return f"BV={t.bv}, NVEC={t.nvec}: over {MAX_ELEMS_PER_THREAD} state elements per thread"
    return None


SMALL_LAUNCH = 256  # row-heads (batch x value heads) up to which the heuristic takes one-warp CTAs


def heuristic_tile(case: Case) -> CuteTile:
    """Rows read by 16 lanes where K allows (NVEC = K / (16 x VEC)): up to ``SMALL_LAUNCH`` row-heads,
    one-warp CTAs of 2 rows per lane group, so a small batch still spreads over many SMs; beyond, 4-warp
    CTAs of 64 rows with 2 vectors per lane. Why: on the H100 these stay close to the best tile the
    tuner found at every measured size and in both state dtypes, where one vector per lane at 4 warps
    falls well behind at small sizes (``docs/tuning.md``, "The heuristic with tables disabled").

    Elsewhere, and for a case the kernel's one-vector rows cannot read (so the heuristic never widens
    which cases cute runs), the earlier rule: one vector per lane, at most 8 rows per lane group,
    halved until ~2048 CTAs."""
    groups = NUM_THREADS // lanes(case)
    bv = min(case.head_dim_v, groups * MAX_ROWS_PER_GROUP)
    while bv > groups and case.batch * case.hv * (case.head_dim_v // bv) < 2048:
        bv //= 2
    plain = CuteTile(max(bv, groups))
    if tile_reason(case, plain) is not None:
        return plain
    small = case.batch * case.hv <= SMALL_LAUNCH
    nvec = max(1, case.head_dim_k // (16 * vec(case))) if small else 2
    shaped = CuteTile(2 * max(1, 32 // lanes(case, nvec)), nvec, 32) if small else CuteTile(64, 2)
    return shaped if tile_reason(case, shaped) is None else plain


TABLES = Path(__file__).with_name("tables")


@functools.lru_cache(maxsize=1)
def tuned_table() -> TileTable | None:
    """The table this GPU uses (per-user, else shipped, else another GPU's; None without any)."""
    return load_table(TABLES, current_target(), user_tables("cute"), kernel_sources_digest())


def kernel_sources_digest() -> str:
    """The digest of this backend's kernel sources, as ``gdnbench tune`` records it in its tables."""
    return package_digest(Path(__file__).parent)


def select(case: Case) -> tuple[CuteTile, str]:
    """The tuned table's entry for this state dtype and head dims with the largest ``pairs_min`` <=
    batch * hv, if it can run the case; else the heuristic tile. Returns the tile and its source."""
    key = (case.state_dtype, case.head_dim_k, case.head_dim_v)
    return choose(tuned_table(), case, lambda e: (e["state_dtype"], e["head_dim_k"], e["head_dim_v"]) == key,
                  CuteTile.from_entry, tile_reason, heuristic_tile)


def tile(case: Case) -> CuteTile:
    return select(case)[0]


def tile_source(case: Case) -> str:
    return select(case)[1]
