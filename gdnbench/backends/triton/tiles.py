"""Tiles of the ``triton`` backend: which kernel form runs a case, and with what shape.

A :class:`Tile` names its kernel form (:class:`Variant`) and the parameters that form takes. It is
checked once, when it is made: a field the variant does not take must stay at its default, so a Tile
that exists is well formed. Whether it fits a given case (head dims, layout, tokens, dtypes, this GPU)
is ``tile_reason(case, tile)``.

Tiles come from tables tuned per GPU (``tables/device_name=<GPU>.json`` and the per-user ones,
written by ``gdnbench tune --backend triton``; precedence: ``gdnbench.backends.tables``): the entry
for the case's layout, state dtype, head dims and decode / MTP class with the largest ``pairs_min``
<= batch x value heads that can run the case. A GPU without its own table borrows another GPU's; a
case no entry fits gets ``heuristic_tile``, the per-token kernel with enough programs to hide DRAM
latency (one-warp programs for K-last MTP). ``tile_source`` says which of the three a case got.

Why four variants and no more: each is chosen by the H100 table for some case class or is the
fallback, except ``GLUON_TMA``, which the tuner keeps as a candidate (see ``Variant``). The forms that
lost everywhere are recorded in ``docs/design/triton-decode.md``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, fields
from enum import Enum
from pathlib import Path

import torch

from gdnbench.backends.base import current_target, triton_interpreted
from gdnbench.backends.tables import TileTable, choose, load_table, package_digest, user_tables
from gdnbench.cases import Case
from gdnbench.inputs import pool_slots

TABLES = Path(__file__).with_name("tables")


class Variant(str, Enum):
    """The kernel forms the backend ships (the jit function each launches is in ``plan.KERNELS``)."""

    PER_TOKEN = "per_token"    # gdn_recurrent_kernel: decode / MTP, one program per tile; the heuristic's
    CHUNK = "chunk"            # gdn_mtp_chunk_kernel: MTP on tensor cores (the table's bf16 MTP from 16 row-heads)
    GLUON_ROWS = "gluon_rows"  # gdn_decode_rows_kernel: K-last decode, warps own rows (the table's bf16 decode)
    # gdn_decode_tma_kernel: the state staged through shared memory by TMA on a persistent grid. No table
    # picks it: on the H100 the per-tile decode, not memory, bounds it. The tuner keeps it because it is
    # the form that keeps the most state bytes in flight per SM without registers, the candidate for a
    # GPU whose latency-bound classes are bound by memory rather than by the decode (not yet tuned: B200).
    GLUON_TMA = "gluon_tma"


CACHE_POLICIES = {0: "default", 1: "evict-first state stores", 2: "evict-first state loads and stores"}
SMEM_PER_SM = 232448  # bytes of shared memory one block may take on sm90 / sm100 (227 KiB; CUDA guide)
TMA_BOX = 256  # TMA copies boxes of at most 256 elements per dimension

# which fields each variant takes (besides bv, warps and maxnreg, which all take)
_TAKES = {
    Variant.PER_TOKEN: {"kc", "ahead"},
    Variant.CHUNK: {"blocks", "stages", "prefetch", "ahead"},
    Variant.GLUON_ROWS: {"kc", "ahead", "cache"},
    Variant.GLUON_TMA: {"kc", "progs_per_sm", "stages", "ahead"},
}


@dataclass(frozen=True)
class Tile:
    """One launch shape. ``bv`` state rows per tile (per row block for ``CHUNK``) and ``warps`` per
    program; ``maxnreg`` > 0 caps ptxas's registers (0: ``plan.register_cap``'s rule). The rest only
    where the variant takes it (``_TAKES``):

    * ``kc``: per-token, the K columns per register chunk of its ``[BV, K / KC, KC]`` tile (0: K);
      Gluon, the K columns one thread holds per row (0: one 16-byte vector, ``rows_layout``);
    * ``blocks``: chunk form, row blocks of one head per program (the head's algebra paid once);
    * ``stages``: chunk form, software-pipeline stages of its loop over blocks; TMA, buffers per program;
    * ``progs_per_sm``: TMA, programs per SM of its persistent grid;
    * ``prefetch``: chunk form, row blocks asked of L2 before the head's algebra (sm90 bulk prefetch);
    * ``ahead``: an L2 prefetch running ahead: per-token and Gluon, the tile of the program ``ahead`` x
      SMs further on; chunk form, the row block that many steps on; TMA, 1 loads the next tile's inputs
      a tile early;
    * ``cache``: Gluon, the state's L2 eviction policy (``CACHE_POLICIES``).
    """

    bv: int
    warps: int
    variant: Variant = Variant.PER_TOKEN
    kc: int = 0
    blocks: int = 1
    stages: int = 0
    progs_per_sm: int = 0
    maxnreg: int = 0
    prefetch: int = 0
    ahead: int = 0
    cache: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "variant", Variant(self.variant))
        for f in fields(self):
            if f.name != "variant" and (not isinstance(getattr(self, f.name), int) or getattr(self, f.name) < 0):
                raise ValueError(f"Tile.{f.name} is a non-negative integer, not {getattr(self, f.name)!r}")
        if self.bv < 1 or self.bv & (self.bv - 1) or self.warps not in (1, 2, 4, 8, 16):
            raise ValueError(f"a tile takes BV a power of two and 1-16 warps (BV={self.bv}, warps={self.warps})")
        default = Tile.__dataclass_fields__
        extra = [f for f in ("kc", "blocks", "stages", "progs_per_sm", "prefetch", "ahead", "cache")
                 if getattr(self, f) != default[f].default and f not in _TAKES[self.variant]]
        if extra:
            raise ValueError(f"the {self.variant.value} kernel takes no {', '.join(extra)} "
                             f"(it takes {', '.join(sorted(_TAKES[self.variant]))})")
        if self.blocks < 1 or self.cache not in CACHE_POLICIES:
            raise ValueError(f"blocks >= 1 and cache one of {CACHE_POLICIES} (got {self.blocks}, {self.cache})")
        if self.variant is Variant.GLUON_TMA and not (self.progs_per_sm and self.stages and self.ahead <= 1):
            raise ValueError("the TMA decode runs on a persistent grid with shared-memory buffers: programs per SM "
                             f">= 1, stages >= 1, ahead 0 or 1 (got {self.progs_per_sm}, {self.stages}, {self.ahead})")

    @classmethod
    def from_entry(cls, e: dict) -> Tile:
        """A table entry's tile (its case-class keys and measurement ignored)."""
        return cls(**{f.name: e[f.name] for f in fields(cls) if f.name in e})

    def entry(self) -> dict:
        """The tile as a table entry's fields (the defaults left out)."""
        return {"variant": self.variant.value, "bv": self.bv, "warps": self.warps,
                **{f.name: getattr(self, f.name) for f in fields(self)[3:] if getattr(self, f.name) != f.default}}

    @property
    def name(self) -> str:
        """The tile as one word per field set, e.g. ``gluon_rows bv=4 warps=1 cache=2`` (rows' ``tile``
        column, the tuner's candidate names)."""
        e = self.entry()
        return " ".join([e.pop("variant"), *(f"{k}={v}" for k, v in e.items())])

    def k_chunk(self, case: Case) -> int:
        """KC for this case (K when unset or larger than K; for the Gluon decode see ``rows_layout``)."""
        return min(self.kc or case.head_dim_k, case.head_dim_k)


def state_bits(case: Case) -> int:
    return torch.finfo(getattr(torch, case.state_dtype)).bits


def rows_layout(case: Case, t: Tile | None = None) -> tuple[int, int]:
    """(VEC, TK) of the Gluon decode's tile layout: state elements per 16-byte access, threads of a warp
    across K (the other 32 / TK lanes of a warp take further rows); ``kc`` > 0 widens a thread's share."""
    vec = 128 // state_bits(case)
    per = max(vec, case.head_dim_k // 32, t.kc if t else 0)
    return vec, max(1, case.head_dim_k // per)


def tile_reason(case: Case, t: Tile) -> str | None:
    """Why the kernels cannot run ``case`` with tile ``t`` (None: they can)."""
    kc = t.k_chunk(case)
    if case.head_dim_k % kc or kc & (kc - 1):
        return f"K chunk KC={kc} must be a power of two dividing K={case.head_dim_k}"
    if case.head_dim_v % (t.bv * t.blocks):
        return f"{t.blocks} block(s) of BV={t.bv} rows per program do not divide V={case.head_dim_v}"
    if t.variant is Variant.CHUNK:
        return chunk_reason(case, t.bv)
    if t.variant is Variant.GLUON_TMA:
        return tma_reason(case, t)
    if t.ahead and case.layout == "v_last" and t.bv * state_bits(case) < 128:
        return f"an L2 prefetch of a V-last tile takes K runs of BV elements of >= 16 bytes (BV={t.bv})"
    if t.variant is Variant.GLUON_ROWS:
        if case.tokens > 1 or case.intermediate:
            return "the Gluon decode is decode only (T = 1, no intermediate states)"
        return gluon_reason(case, t)
    return None


def chunk_reason(case: Case, bv: int) -> str | None:
    """Why the chunk-form MTP kernel cannot run this case (None: it can)."""
    if not 2 <= case.tokens <= 8:
        return f"the chunk-form kernel takes T = 2..8 (T={case.tokens})"
    if case.tree:
        return "the chunk-form kernel has no parent-token tree"
    if bv < 16 or case.head_dim_k < 32:
        return (f"tensor-core dots need 16 on every side: BV >= 16 and K >= 32 (two K halves; BV={bv}, "
                f"K={case.head_dim_k})")
    if case.dtype != "bfloat16":
        return f"the chunk-form kernel takes q and k as bf16 dot operands (inputs {case.dtype})"
    return None


def gluon_reason(case: Case, t: Tile, form: str = "Gluon decode") -> str | None:
    """Why the Gluon decode's layout cannot run ``case`` with tile ``t`` (None: it can)."""
    if triton_interpreted():
        return f"the {form} compiles for a GPU only: Gluon has no TRITON_INTERPRET=1 interpreter"
    if case.layout != "k_last":
        return f"the {form} takes a K-last pool (its tile is a contiguous BV x K block)"
    vec, tk = rows_layout(case, t)
    if t.kc and (t.kc % vec or case.head_dim_k % t.kc):
        return (f"the {form}'s KC (K columns per thread) must be a multiple of {vec} (16 bytes) dividing "
                f"K={case.head_dim_k}, not {t.kc}")
    rows = (32 // tk) * t.warps
    if t.bv % rows or case.head_dim_k < vec:
        return (f"the {form}'s layout covers {rows} rows per pass ({t.warps} warps x {32 // tk} rows of "
                f"{tk} x {vec} columns): BV={t.bv} must be a multiple, K >= {vec}")
    return None


def tma_reason(case: Case, t: Tile) -> str | None:
    """Why the TMA-staged Gluon decode cannot run ``case`` with tile ``t`` (None: it can): its grid holds
    ``progs_per_sm`` programs per SM, each with ``stages`` shared-memory buffers of one BV x K tile."""
    if triton_interpreted():
        return "the TMA decode compiles for a GPU only: Gluon has no TRITON_INTERPRET=1 interpreter"
    target = current_target()
    if target.device == "cuda" and target.sm is not None and target.sm < 90:
        return f"the TMA decode needs SM90 or newer (TMA, mbarrier transaction counts; sm{target.sm})"
    if case.tokens > 1 or case.intermediate:
        return "the TMA decode is decode only (T = 1, no intermediate states)"
    reason = gluon_reason(case, t, "TMA decode")
    if reason:
        return reason
    if t.bv > TMA_BOX or case.head_dim_k > TMA_BOX:
        return f"a TMA box has at most {TMA_BOX} elements a side (BV={t.bv}, K={case.head_dim_k})"
    size = state_bits(case) // 8
    smem = t.stages * t.bv * case.head_dim_k * size
    if smem * t.progs_per_sm > SMEM_PER_SM:
        return (f"{t.progs_per_sm} programs x {t.stages} buffers of {t.bv} x {case.head_dim_k} x {size} B = "
                f"{smem * t.progs_per_sm} B of shared memory per SM (at most {SMEM_PER_SM})")
    slots = pool_slots(case)
    if slots * case.hv * case.head_dim_v >= 2 ** 31:
        return f"the TMA decode addresses pool rows as int32: {slots} slots x {case.hv} x {case.head_dim_v} rows"
    return None


ELEMS_PER_THREAD = 64  # state elements a thread holds in the heuristic's tiles of V-last and fp32 state


def heuristic_tile(case: Case) -> Tile:
    """The per-token kernel with enough programs to hide DRAM latency (aim for >= ~2048 on a 132-SM
    GPU): BV halves from its largest until there are that many, or it reaches its floor.

    V-last state, and K-last fp32 state, keep at most ``ELEMS_PER_THREAD`` state elements per thread and
    at most 4 warps: an 8-warp program of 64 elements a thread needs ~174 registers, so only one fits
    per SM and its loads, math and stores cannot overlap another's; every V-last and K-last fp32 tile
    the H100 tuner chose holds 64 elements a thread on 1-4 warps (``docs/tuning.md``). V-last tiles
    span rows of >= 64 bytes of state (16 fp32, 32 bf16 rows). K-last bf16 state keeps its earlier rule
    (whole rows, up to 8 warps), which stays within 5% of the peers where it was measured.

    MTP on K-last state takes ``mtp_heuristic_tile``: the T-step loop keeps a row block in registers
    across tokens, and every per-token MTP tile the H100 tuner ranked first is a one-warp one."""
    if case.tokens > 1 and case.layout == "k_last":
        return mtp_heuristic_tile(case)
    V, K = case.head_dim_v, case.head_dim_k
    pairs = case.batch * case.hv
    v_last = case.layout == "v_last"
    capped = v_last or case.state_dtype == "float32"
    floor = max(1, 512 // state_bits(case)) if v_last else 8
    bv = min(V, max(floor, 4 * 32 * ELEMS_PER_THREAD // K)) if capped else V
    while bv > floor and pairs * (V // bv) < 2048:
        bv //= 2
    bv = max(min(bv, V), min(floor, V))
    elems = bv * K
    warps = 1 if elems <= 512 else 2 if elems <= 1024 else 4 if elems <= 4096 else 8
    if v_last:
        warps = max(1, min(4, elems // (32 * ELEMS_PER_THREAD)))
    elif capped:
        warps = min(warps, 4)
    return Tile(bv, warps)


MTP_ROWS = (4, 16)  # the fewest and most state rows of the MTP heuristic's one-warp tile
MTP_K_CHUNK = {"float32": 32, "bfloat16": 64}  # K columns per register chunk, by state dtype
MTP_KEEP_FP32 = (8, 64)  # most rows and K chunk for fp32 state with the buffer and write-back together


def mtp_heuristic_tile(case: Case) -> Tile:
    """The MTP (T > 1) tile for K-last state with no table entry: the per-token kernel on one warp,
    ``MTP_ROWS[1]`` state rows (64 elements a thread at K = 128) halved while there are fewer than ~2048
    programs, down to ``MTP_ROWS[0]``; K in register chunks of ``MTP_K_CHUNK`` columns. fp32 state
    with both the intermediate buffer and write-back takes at most ``MTP_KEEP_FP32[0]`` rows, with K
    chunks of ``MTP_KEEP_FP32[1]`` at that many (32 elements a thread).

    Why: a program walks T tokens over its rows, so more warps or rows per program only add registers
    and cut the programs in flight. For every MTP case the H100 tuner measured (2-4 tokens, 8-8192
    row-heads, both state dtypes, with and without the buffer and write-back) this rule is within 2% of
    the case's fastest per-token tile, where the decode rule's tiles are well behind. With fp32 state,
    the buffer and write-back, every 64-element tile spills under ``plan.register_cap``'s 128 registers,
    so that case keeps 32 elements a thread. The measurements: ``docs/tuning.md``, "The MTP heuristic"
    and "a spilling tile"; ``tests/test_heuristic_tiles.py`` replays them."""
    V, K = case.head_dim_v, case.head_dim_k
    lo, hi = MTP_ROWS
    keep_fp32 = case.state_dtype == "float32" and case.intermediate and case.write_back
    if keep_fp32:
        hi = MTP_KEEP_FP32[0]
    bv = min(hi, V)
    while bv > lo and case.batch * case.hv * (V // bv) < 2048:
        bv //= 2
    kc = MTP_KEEP_FP32[1] if keep_fp32 and bv == MTP_KEEP_FP32[0] else MTP_K_CHUNK[case.state_dtype]
    return Tile(bv, 1, kc=kc if kc < K and K % kc == 0 else 0)


@functools.lru_cache(maxsize=1)
def tuned_table() -> TileTable | None:
    """The table this GPU uses (per-user, else shipped, else another GPU's; None without any)."""
    return load_table(TABLES, current_target(), user_tables("triton"), kernel_sources_digest())


def kernel_sources_digest() -> str:
    """The digest of this backend's kernel sources, as ``gdnbench tune`` records it in its tables."""
    return package_digest(Path(__file__).parent)


# MTP fields an entry may also name (the tuner writes them for MTP classes): an entry that names them
# serves only cases with those values, and is preferred over one that does not (tables tuned before
# they existed, whose MTP entries serve every T and buffer)
MTP_FIELDS = ("tokens", "intermediate", "write_back")


def select(case: Case) -> tuple[Tile, str]:
    """The tile for ``case`` and where it came from (``tuned``, ``other-gpu`` or ``heuristic``)."""
    key = (case.layout, case.state_dtype, case.head_dim_k, case.head_dim_v, case.tokens > 1)

    def matches(e: dict) -> bool:
        return ((e["layout"], e["state_dtype"], e["head_dim_k"], e["head_dim_v"], e["mtp"]) == key
                and all(e[f] == getattr(case, f) for f in MTP_FIELDS if f in e))

    return choose(tuned_table(), case, matches, Tile.from_entry, tile_reason, heuristic_tile,
                  lambda e: sum(f in e for f in MTP_FIELDS))


def tile(case: Case) -> Tile:
    return select(case)[0]


def tile_source(case: Case) -> str:
    return select(case)[1]

