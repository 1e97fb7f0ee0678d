"""``triton``: gdnbench's own Triton kernels for GDN decode (T = 1) and MTP verify (T = 2..8).

Design. Decode is memory-bound: each (row, value head) reads its K x V state once and writes it once,
with ~6 flops per element, so the kernel is built to move the state at copy bandwidth and nothing
else. One program owns a tile of BV state rows of one (row, value head): ``H[v0:v0+BV, 0:K]`` in the
K-last view (``H = S^T``, a contiguous BV*K block of a K-last pool; for a V-last pool the same tile is
read with V as the fast axis). The whole tile lives in registers in fp32 for the whole call:

* loads issued up front: the slot index together with the first token's q/k (the row's k-head:
  GQA ``h = hv // (HV / HK)``), v, a, b, which do not depend on it, then the state tile (the only
  large load, and the only one that waits for the slot; 64-bit offsets, since slot * HV * K * V
  overflows int32);
* gating in fp32 (``g = -exp(A_log) * softplus(a + dt_bias)``, threshold 20; ``beta = sigmoid(b)``),
  q/k L2 norm with eps inside the sqrt, scale folded into q: both norms are in-program reductions
  over K, recomputed by every V tile of a head (K bytes from L2, far cheaper than an extra pass);
* per token: ``H *= exp(g)``; ``u = beta * (v - H k)``; ``H += u k^T``; ``o = H q`` -- two reductions
  over K per tile, no shared state between programs, no atomics. For decode (T = 1) both products
  are taken from the state before the update (``o = e^g (H q) + u (k.q)``), so the two reductions
  overlap instead of queueing: 1-4% faster at B <= 64 on the H100; for MTP it kept more registers
  live across the unrolled tokens and was 4-9% slower, so MTP keeps the sequential form;
* MTP keeps H in registers across the T tokens, stores the per-step state to the intermediate
  buffer when asked, and writes the pool once at the end (or not: verify without write-back). Each
  token's q and k are loaded one token ahead, so their L2 round trip overlaps the previous token's
  work instead of stalling the start of every token (bf16 T = 4 on the H100: 4-6% faster). The
  parent-token tree reloads the state of step ``parent[t]`` from the intermediate buffer when the
  parent is not the previous token (a barrier first: other threads of the program wrote it).

Padding (slot -1): a scalar branch skips the state entirely (the pool is never touched) and writes a
zero output row; keeping masks out of the body keeps every load and store 16-byte vectorised.

Register tile. The tile is held as ``[BV, K / KC, KC]`` (``_triton_kernels.py``): Triton puts
threads on the KC axis and then on BV, so a reduction over K is an in-thread chain plus a shuffle tree
over the KC / 8 (bf16) or KC / 4 (fp32) threads of one chunk, instead of over up to 32 threads of a
whole row (the shuffle unit issues at a quarter of the FP32 rate; a [16, 128] bf16 tile at T = 4
compiled to 328 shuffles per thread with KC = K, 136 with KC = 64, at 128 registers). The row sums
reshape the tile to [BV, K] without moving data, so a thread's share of a row is one fused
multiply-add chain (``rowdot``; sm_90 offline, bf16 T = 4: 2784 -> 2568 instructions per program).
Smaller KC costs registers (each thread holds more of q and k), so KC is a tuned tile parameter.

Grid and issue order. Programs are numbered with the V blocks of one head consecutive, as FlashInfer
and the cute kernel order their CTAs: programs that run together read neighbouring state (a head's
K x V block is contiguous in a K-last pool). The earlier (row-head, V block) grid had the head index
fastest, so resident programs read 4-16 KB pieces of as many heads; reordering took bf16 B = 512 from
387 to 376 µs and fp32 from 745 to 733 on the H100. Head counts are compile-time constants (the tile
coordinates are shifts and multiplies ahead of the slot load), and the state load is issued as soon as
the slot arrives, before the first token's gate and norm arithmetic.

Three kernels share this math. ``gdn_recurrent_kernel`` launches one program per tile; the tile (BV
rows, warps) trades the number of programs (small batches split V finely so 132 SMs have work)
against per-program overhead. ``gdn_persistent_kernel`` launches a fixed grid (programs per SM x
SMs) whose programs walk the tiles, loading the next tile's state and first-token inputs (and the
slot one tile further ahead) before computing the current one, double-buffered in registers.
``gdn_pipelined_kernel`` is the same walk written as a plain loop that Triton software-pipelines
(``tl.range(num_stages=...)``: cp.async copies into shared memory issued stages - 1 tiles ahead), so
bytes stay in flight without registers. Padded rows in both persistent kernels use broadcast-scalar
masks (16-byte accesses stay vectors); neither has a parent-token tree. ``scripts/tune_triton.py``
times all three over their tiles on the GPU and writes the winner per case class to
``triton_tiles.json``; the choice is in the ``kernel`` column. On the H100 the per-tile kernel won
every decode class of the committed table and every MTP class (the pipelined kernel came within 0.5%
at B = 512 and lost by 2-6% at B = 16 - 64).

A fourth kernel, ``gdn_mtp_chunk_kernel``, is MTP in chunk form: the T steps rewritten around the
initial state H0, so the K-long work is tensor-core dots instead of 3T passes over a register tile. q, k
and a bf16 state enter the dots as stored (bf16 x bf16 products are exact in the fp32 accumulator); the
tokens' raw Gram matrix gives the L2 norms on its diagonal; the triangular solve over the tokens is a few
[16, 16] dots done once per program; per block of 16 state rows: ``P = H0 [k | q]^T``, ``[U | O] = Y Z``
(outputs), ``c_T H0 + W k^T`` (the new state, ``c_T H0`` itself a dot with ``c_T I``). A program loops over
1-8 row blocks of one head (the ``chunk`` tile field), so the head's algebra (~900 instructions) is paid
once per program; Triton software-pipelines the loop's loads (``stages``), and a tile may ask L2 for the
first n of the program's row blocks before the algebra (``prefetch`` = n, an sm90 bulk prefetch): on the
H100 two of four blocks beat all four by 3-5% at B = 64-256 (the later blocks come through the pipelined
loads; all of them, for every resident program, crowd the L2). sm_90 offline, bf16 T = 4: ~380
instructions per 16-row block against ~2000 for the per-token kernel. On the H100 it wins every bf16 class
from B = 16 (tuning, B = 64: 57.3 µs against 63.0; B = 256: 207.4 against 230.3) and loses at B <= 4 (too few
programs) and for fp32 (the state splits into bf16 hi + lo for the dots); there it is latency-bound on its
pipelined loads at ~10 warps per SM, not issue-bound (ncu: 23% SM throughput, long-scoreboard stalls).
Where its time went before the first block (SASS, sm_90): the token operand goes to shared memory on its way
to the dots, and ptxas issued the second K half's loads only once the first half had arrived there; the
gates' loads came after both, A_log / dt_bias after the Gram dot (loads are not hoisted into the slot
branch's algebra), and the first block's v after the algebra, each a DRAM round trip after the last. So the
gates and the head's parameters are loaded first, and L2 is asked for the second half and the program's v
lines (``prefetch.global.L2``) before the first half is loaded: on the H100 (same host, two rounds each)
B = 64 went from 57.2 to 55.4-55.7 µs, B = 128 from 108.0 to 105.5-105.9, B = 256 from 207.3-207.6 to
205.0-205.3, B = 16 from 17.4 to 17.1. In the loop, Triton issues the next block's copy after this block's
stores (2 stages: one buffer), so a block waits out its own load; ``ahead`` = 1 asks L2 for the next block
at the top of each step: 0.7-1% more from B = 64 (B = 64: 54.8-54.9 µs; 2 ahead lost), and at B = 16 two
stages with it beat the three-stage tile (16.7-16.8 µs against 17.1). The block's v, a plain load, Triton
pipelined into registers one step ahead, but issued it at the end of the step and copied it into its
loop-carried registers at once, so every step waited out its L2 round trip there (ncu at B = 64: 17% of the
stall samples on that copy); it is now loaded by hand at the top of the step before (174 registers, 11 warps
per SM, and still faster than capped at 168: B = 64 54.4 µs against 54.85, B = 256 201.7 against 203.9).
Through shared memory instead (v as a dot operand with diag(beta)) it was no faster: the block's wait moved to
the state copy's barrier.
A persistent grid (``progs_per_sm`` with ``chunk`` = 1) shares all row blocks out evenly so that no partial
last wave of these long programs is left; programs then split heads and redo their algebra, and it lost
every class by 2-4%: it stays a tuning candidate. The tile table picks per class (``results/*_triton-tune``,
sessions 7-9).

Launch. ``triton_pdl`` launches the same kernels with programmatic dependent launch (PDL, SM90+): a
launch may start while the previous kernel on the stream drains, and its programs wait for that kernel's
completion (``griddepcontrol.wait``) as their first statement, before the slot or any input is read. In
a serving graph the kernel before GDN decode writes q/k/v, so nothing may be read earlier; what PDL
overlaps is the grid's launch with the predecessor's completion. The kernels do not signal their own
dependents early, so a timed chain of launches overlaps no more than a chain after any other kernel
would. Separate backend rows keep both numbers; on the H100 PDL saves about 0.2 µs per launch at every
batch size (0.08-0.28 µs at B = 1: 2-9%; under 0.2% at B = 512). Reading the slot and state before the
wait would hide more, but is only correct when the kernel before does not write the pool; the
benchmark does not assume it.

A decode tile can also run in two passes (``reread``): the row sums from the state as loaded, then the
tile read again from L2 for the update, so nothing tile-sized is live across the reductions (sm_90,
bf16 BV = 16: 80 registers instead of 126, 25 programs per SM instead of 16). On the H100 it lost at
every batch it was tuned at (bf16 BV = 16: 15.96 µs vs 14.72 at B = 16, 52.8 vs 50.3 at B = 64; with
a 64-register cap, 17.2 at B = 16): the second read's latency costs more than the extra resident
programs win. Capping the one-pass tile's registers (126 -> 112 / 104 / 96: 18-21 warps per SM instead
of 16) lost too (B = 16: 14.92 µs at 112 vs 14.74). Both stay tuning candidates. What did help: a program
asking L2 for the state tile of the program ``ahead`` x SMs further on (its slot loaded with the program's
own), so that program's load on the critical path hits L2. A whole wave ahead (16 per SM for bf16 BV = 16)
or more lost up to 22%, but 2-4 programs per SM ahead won every bf16 class from 512 row-heads by 1.1-1.6%
(tuning, two runs: B = 16 14.70 -> 14.41-14.49 µs, B = 64 50.30 -> 49.48-49.56, B = 512 375.2 -> 369.0),
so those tiles take it. Prefetching the token's inputs before the slot arrives and the tile's lines once it
has (ptxas had sunk the input loads into the slot branch and spread the tile's loads among the norm
arithmetic) lost: B = 1 3.20 -> 4.78 µs, B = 16 14.66 -> 15.42, TP4 B = 16 5.16 -> 6.47; so did asking L2 for
the later program's q / k / v / gate lines along with its state (0.2-1% slower from 512 row-heads).

Small batches (``reread`` = 2-4). Once the state lands, the per-token decode waits on a chain: the q / k norms
(a shuffle tree over the whole K), q scaled and passed into the tile's layout, then the row sums. The small-batch
variants apply the L2 norms to the BV-long row sums instead, so the row sums take raw q and k and the reductions
over K are independent. The tile-layout decode (2, ``tile_layout_decode``) loads q and k in the tile's own
register layout (each thread the columns of its rows); the vector-norm decode (3, ``raw_vector_decode``) loads
them once per thread as vectors; 4 (``masked_vector_decode``) is 3 without the slot branch (a padded row's state
accesses masked by a broadcast scalar), because ptxas sinks loads used only inside the branch behind the slot's
arrival. On the H100 (session 11 roofline run) the vector-norm decode at BV = 4 takes the 32-row-head class (TP1
B = 1: 3.19 -> 3.12 µs, 2.96 with PDL) and the branchless form at BV = 2 the 8-row-head class (TP4 B = 1: 2.57 ->
2.46 µs). From 128 row-heads the per-token tiles stay ahead of all three: issuing every state load up front
(3 at BV = 16, offline) and a third fewer instructions (5, ``dot_decode``: ``[H k | H q]`` as one tensor-core dot
of the tile as stored, 664 SASS instructions against 992 at bf16 BV = 16) both left 512 row-heads at or above
14.3 µs against 14.4 for the per-token tile, so that launch is bound neither by issue nor by when its loads
leave. Measured on the same grids (``scripts/latency_floor.py``, session 10), the input loads cost 0.14 µs at
TP1 B = 1 and 0.4 µs at 512 row-heads over a copy of each tile at its slot, and the arithmetic 0.35 and 0.68 µs
more.

Several warps per program (``reread`` = 6, ``_gluon_kernels.py``). Triton picks register layouts itself: with
one warp per program the tile, q / k and the row results share compatible layouts, but with several warps it
spreads a K-long vector over all the program's threads, so each broadcast against the tile and each norm goes
through shared memory behind a barrier (sm_90 offline, bf16 BV = 64 x 4 warps: 14 barriers), and multi-warp
tiles lost every tuning. The Gluon decode states the layout instead: every warp owns whole rows, q / k are the
tile layout's column slice and the row results its row slice, so a 4- or 8-warp program is the one-warp program
repeated with no shared memory and no barrier, at a quarter or an eighth of the programs (an empty launch of
4096 one-warp programs takes 3.47 µs under the graph timer, of 128 programs 1.17). With the L2 prefetch a wave
ahead (``ahead`` = 4: four such programs fill an SM's 16 warps) bf16 BV = 64 x 4 warps took 512 row-heads from
14.40-14.46 to 14.24-14.34 µs (TP1 B = 16) and 14.52-14.54 to 14.26-14.31 (TP4 B = 64) on the H100 (probe,
two rounds, ``scripts/gluon_probe.py``); one-warp Gluon programs and the larger classes stayed behind the
Triton tiles. Gluon has no CPU interpreter: these tiles compile for a GPU only (a reason under
TRITON_INTERPRET=1, where the table's entry for the class is passed over for the next one down), are checked
offline for sm_90 in CI (no shared memory, 16-byte state traffic) and gated on the GPU.

The state's L2 eviction policy (``cache``, Gluon decode). A decode launch writes every state byte it reads, and
no later kernel of the step reads it again, so the tile can load and store the state evict-first
(``st.global.L1::evict_first.L2::cache_hint``; 1: stores, 2: loads and stores). That is what closed the
latency-bound classes on the H100 (session 13, same host, old table against new): TP1 bf16 B = 1 3.13 -> 2.67 µs,
TP4 B = 1 2.46 -> 2.17, B = 16 14.26 -> 14.00 (79.2 -> 80.6% of copy bandwidth), TP4 B = 64 14.28 -> 14.04 (79.0 ->
80.3%). Every byte still reaches DRAM (the gate checks the pool); evict-first decides when L2 gives the
written lines up, and we have not measured where the time goes (our guess: write-backs of earlier launches'
lines then stop landing on a later launch's load latency). Evict-first loads lost at 2048 row-heads with the
L2 prefetch (49.6 -> 53.9 µs; presumably the prefetched lines then go first), so those classes keep the default
(``scripts/cache_probe.py``, results/2026-11-21_h100-sm90_triton-tune/cache-probe-session13.log).

Staging the state through shared memory (``reread`` = 7, ``gdn_decode_tma_kernel``): a persistent grid whose
programs start TMA copies of their next ``stages`` tiles up front (one slot load per program, the whole 16 MB of
512 row-heads in flight at launch), then decode each tile from its buffer. It is gated (sm90+) but lost
everywhere on the H100 (session 13 probe, ``scripts/tma_probe.py``): at 512 row-heads 14.72-14.80 µs at best (16
one-warp programs per SM, 2 buffers) against 14.13-14.21 for the table's tile, and 21.1 µs with one 4-warp program
per SM holding all its 8 tiles; more warps per SM ran faster, so the per-tile decode, not memory, bounds it there.
It stays a tuning candidate.

MTP (T > 1, no parent tree) carries the decay as one scalar: the true state is ``exp(gc_t) * Hs`` with
``gc_t`` the cumulative log-decay, so ``pred = e^gc sk (Hs k)``, ``Hs += (u sk e^-gc) k^T``,
``o = e^gc sq (Hs q)`` and the store writes ``e^gc_T Hs``: three passes over the register tile per token
(two row sums, one rank-1 update) instead of four. The q/k L2 norms and the scale (``sq``, ``sk``) land on
the BV-long results instead of K-long vectors, and every token's gates are computed once per program
(``mtp_tokens``). ``e^-gc`` must stay finite in fp32, so a row whose T tokens decay by more than e^-60
in all takes the per-token multiply instead (a uniform branch; the benchmark's random gates never get
there). sm_90 offline, bf16 T = 4: 2568 -> 2144 instructions per program.

Measured on the H100 (graph timer, cold L2, copy bandwidth 3009 GB/s; decode:
results/2026-12-06_h100-sm90_roofline-decode-cache, MTP: results/2026-12-06_h100-sm90_roofline-mtp-cache, session
13): TP1 bf16 decode runs at 91.1-97.7% of the measured copy bandwidth from B = 64 on a scattered pool and 80.6% at
B = 16 (TP4 B = 64: 80.3%), 2.67 µs at B = 1, and takes 0.76-0.96x FlashInfer's time at every batch; fp32 reaches
96.4-98.2% from B = 128. Below B ~ 64 the time is a latency chain (launch, slot load, state load, compute, stores
draining), not bandwidth. Before the eviction policy (session 12, ``scripts/latency_floor.py``) a kernel that only
copied each tile at its slot took 2.71 µs at B = 1 against triton's 3.12, and at 512 row-heads, on the Gluon grid
(1024 programs of 4 warps), one that also loaded every input took as long as triton (14.24 against 14.20 µs): the
arithmetic is hidden there and the grid's memory chain (slot, then state, then the write) is what remains. MTP T =
4 bf16 (chunk form from B = 16) reaches 86.1-95.3% of copy bandwidth from B = 64 (scattered) and takes 0.65-0.84x
FlashInfer's time from B = 16.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import NamedTuple

import torch

from gdnbench.backends.base import (
    Backend,
    Padding,
    Target,
    current_target,
    pick_tuned,
    read_tile_table,
    triton_availability,
    triton_interpreted,
)
from gdnbench.cases import Case
from gdnbench.inputs import Inputs, pool_slots


@functools.cache
def _jit(name: str):
    """A Triton kernel of ``_triton_kernels``, imported on first use (Triton is optional for the rest of
    gdnbench)."""
    from gdnbench.backends import _triton_kernels

    return getattr(_triton_kernels, name)


@functools.cache
def _gluon_decode():
    """The Gluon decode kernel (``reread`` = 6), imported on first use."""
    from gdnbench.backends._gluon_kernels import gdn_decode_rows_kernel

    return gdn_decode_rows_kernel


@functools.cache
def _gluon_tma():
    """The Gluon decode with TMA-staged state (``reread`` = 7), imported on first use."""
    from gdnbench.backends._gluon_kernels import gdn_decode_tma_kernel

    return gdn_decode_tma_kernel


def rows_layout(case: Case, t: Tile | None = None) -> tuple[int, int]:
    """(VEC, TK) of the Gluon decode's tile layout: state elements per 16-byte access, threads of a warp
    across K (the other 32 / TK lanes of a warp take further rows). The tile's ``kc`` (reread = 6) is
    the K columns one thread holds per row: 0 for one 16-byte vector (or K / 32, if more)."""
    vec = 128 // torch.finfo(getattr(torch, case.state_dtype)).bits
    per = max(vec, case.head_dim_k // 32, t.kc if t else 0)
    return vec, max(1, case.head_dim_k // per)


class Tile(NamedTuple):
    """BV state rows per tile, warps per program, programs per SM for the persistent kernels (0: one
    program per tile), ``chunk`` >= 1 for the chunk-form MTP kernel (tensor-core dots, T <= 8; ``chunk`` blocks of BV rows per
    program, the loop over them software-pipelined over ``stages``; with programs per SM, chunk = 1 and
    a persistent grid shares all blocks out evenly), and KC,
    the K columns per register chunk of the per-token kernels' ``[K / KC, BV, KC]`` tile (0: KC = K), and
    ``stages`` > 0 with programs per SM: the persistent loop pipelined by Triton over that many stages
    (``gdn_pipelined_kernel``) instead of the register double buffer; ``reread`` = 1: decode in two
    passes over the tile, the second reading it again from L2 (``reread_decode``: half the registers),
    2: decode in one pass with q and k loaded in the tile's register layout and the norms applied to the
    row sums, so all five reductions over K overlap (``tile_layout_decode``: small batches), 3: the same
    with q and k loaded once per thread as vectors (``raw_vector_decode``), 4: 3 without the slot branch
    (``masked_vector_decode``), 5: the row sums as one tensor-core dot, no slot branch (``dot_decode``),
    6: 3 written in Gluon with every warp owning whole rows, so programs of several warps need no shared
    memory and no barrier (``_gluon_kernels.gdn_decode_rows_kernel``: K-last, GPU only; its ``kc`` is the
    K columns one thread holds per row, ``rows_layout``), 7: 6 on a persistent grid that stages the state through
    shared memory by TMA (``gdn_decode_tma_kernel``: ``progs_per_sm`` programs per SM with ``stages`` buffers each,
    ``ahead`` 1 loads the next tile's inputs a tile early; sm90+, ``tma_reason``);
    ``maxnreg`` > 0: that register cap for ptxas (0: ``register_cap``'s rule); ``prefetch`` = n > 0: the
    chunk-form kernel asks L2 for up to n of the row blocks it will take of a head before that head's
    algebra (TMA bulk prefetch, sm90+); ``ahead`` = m > 0: an L2 prefetch running ahead of the loads
    (sm90+), in the one-program-per-tile kernel for the tile of the program m x SMs further on (the next
    wave's: its program's state load then hits L2), in the chunk-form kernel for the row block m steps
    further on in each step of its loop; ``cache`` (the Gluon decode, ``reread`` = 6): the state's L2
    eviction policy, 0 the default, 1 evict-first stores, 2 evict-first loads and stores (``CACHE_POLICIES``)."""
    bv: int
    warps: int
    progs_per_sm: int = 0
    chunk: int = 0
    kc: int = 0
    stages: int = 0
    reread: int = 0
    maxnreg: int = 0
    prefetch: int = 0
    ahead: int = 0
    cache: int = 0

    def k_chunk(self, case: Case) -> int:
        """KC for this case (K when unset or larger than K; for the Gluon decode see ``rows_layout``)."""
        return min(self.kc or case.head_dim_k, case.head_dim_k)


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


TILES_FILE = Path(__file__).with_name("triton_tiles.json")


@functools.lru_cache(maxsize=1)
def tuned_tiles() -> list[dict]:
    """Tile choices measured by scripts/tune_triton.py (empty when none were committed)."""
    return read_tile_table(TILES_FILE)


def _entry_tile(e: dict) -> Tile:
    """A table entry's tile (fields it leaves out are 0)."""
    return Tile(*(int(e.get(f, 0)) for f in Tile._fields))


def tile(case: Case) -> Tile:
    """(BV, num_warps, programs per SM): V rows per tile, warps per program, persistent grid size.

    From the tuned table when it has an entry for this layout, state dtype, head dims and token
    class (decode / MTP): the entry with the largest ``pairs_min`` <= batch * hv. Otherwise a
    heuristic: enough programs to hide DRAM latency (aim for >= ~2048 on a 132-SM GPU) with tiles
    large enough to stream whole state rows; V-last tiles stay >= 32 rows (K-row segments >= 64 B).
    """
    best = pick_tuned(tuned_tiles(), case, lambda e: (e["layout"], e["state_dtype"], e["head_dim_k"],
                                                      e["head_dim_v"], e["mtp"])
                      == (case.layout, case.state_dtype, case.head_dim_k, case.head_dim_v, case.tokens > 1)
                      and not (e.get("chunk") and chunk_reason(case, int(e["bv"])))
                      and not (e.get("reread") == 6 and gluon_reason(case, _entry_tile(e)))
                      and not (e.get("reread") == 7 and tma_reason(case, _entry_tile(e))))
    if best:
        t = _entry_tile(best)
        return t._replace(progs_per_sm=0, stages=0) if case.tree else t  # the persistent kernels have no tree
    return heuristic_tile(case)


def tile_reason(case: Case, t: Tile) -> str | None:
    """Why the kernels cannot run ``case`` with tile ``t`` (None: they can)."""
    kc = t.k_chunk(case)
    if case.head_dim_k % kc or kc & (kc - 1):
        return f"K chunk KC={kc} must be a power of two dividing K={case.head_dim_k}"
    if case.head_dim_v % t.bv:
        return f"tile BV={t.bv} does not divide V={case.head_dim_v}"
    if t.chunk and case.head_dim_v % (t.bv * t.chunk):
        return f"{t.chunk} blocks of BV={t.bv} rows per program do not divide V={case.head_dim_v}"
    if t.progs_per_sm and case.tree:
        return "the persistent kernels have no parent-token tree"
    if t.cache and (t.reread != 6 or t.cache not in CACHE_POLICIES):
        return (f"cache (the state's L2 eviction policy) is for the Gluon decode (reread = 6): "
                f"{', '.join(f'{k} {v}' for k, v in CACHE_POLICIES.items())}; not {t.cache} with reread = {t.reread}")
    if t.reread == 7:
        return tma_reason(case, t)
    if t.stages and not (t.progs_per_sm or t.chunk):
        return f"stages={t.stages} pipeline a loop over tiles: the persistent or the chunk-form kernel's"
    if t.chunk and chunk_reason(case, t.bv):
        return chunk_reason(case, t.bv)
    if t.chunk > 1 and t.progs_per_sm:
        return (f"a persistent chunk-form grid splits the row blocks evenly over its programs: chunk = 1, not "
                f"{t.chunk} blocks per program")
    if t.prefetch and not t.chunk:
        return "prefetch is the chunk-form kernel's (an L2 prefetch of a head's row blocks)"
    if t.ahead and t.progs_per_sm and not t.chunk and t.reread != 6:
        return "ahead is an L2 prefetch for the one-program-per-tile, chunk-form and Gluon decode kernels"
    if t.ahead and case.layout == "v_last" and t.bv * torch.finfo(getattr(torch, case.state_dtype)).bits < 128:
        return f"an L2 prefetch of a V-last tile takes K runs of BV elements of >= 16 bytes (BV={t.bv})"
    if t.reread and (case.tokens > 1 or case.intermediate or (t.progs_per_sm and t.reread != 6) or t.chunk):
        return "the two-pass (reread) tile is for decode (T = 1) in the one-program-per-tile kernel"
    if t.reread == 5 and (t.bv < 16 or case.head_dim_k < 16 or case.dtype != "bfloat16"):
        return (f"the dot-form decode (reread = 5) needs BV >= 16, K >= 16 and bf16 q / k (tensor-core dots; BV={t.bv}, "
                f"K={case.head_dim_k}, inputs {case.dtype})")
    if t.reread == 6 and gluon_reason(case, t):
        return gluon_reason(case, t)
    if t.reread not in (0, 1, 2, 3, 4, 5, 6):
        return (f"reread is 0 (one pass), 1 (two passes), 2 (q/k in the tile's layout), 3 (q/k as vectors, the norms "
                f"on the row sums), 4 (3 without the slot branch), 5 (the row sums as a dot), 6 (3 in Gluon, warps "
                f"owning rows) or 7 (6 on a persistent grid, the state staged through shared memory by TMA), "
                f"not {t.reread}")
    return None


def gluon_reason(case: Case, t: Tile) -> str | None:
    """Why the Gluon decode (``reread`` = 6) cannot run ``case`` with tile ``t`` (None: it can)."""
    if triton_interpreted():
        return "the Gluon decode (reread = 6) compiles for a GPU only: Gluon has no TRITON_INTERPRET=1 interpreter"
    if t.stages:
        return "the Gluon decode (reread = 6) has no pipeline stages"
    if case.layout != "k_last":
        return "the Gluon decode (reread = 6) takes a K-last pool (its tile is a contiguous BV x K block)"
    vec, tk = rows_layout(case, t)
    if t.kc and (t.kc % vec or case.head_dim_k % t.kc):
        return (f"the Gluon decode's KC (K columns per thread) must be a multiple of {vec} (16 bytes) dividing "
                f"K={case.head_dim_k}, not {t.kc}")
    rows = (32 // tk) * t.warps
    if t.bv % rows or case.head_dim_k < vec:
        return (f"the Gluon decode's layout covers {rows} rows per pass ({t.warps} warps x {32 // tk} rows of "
                f"{tk} x {vec} columns): BV={t.bv} must be a multiple, K >= {vec}")
    return None


CACHE_POLICIES = {0: "default", 1: "evict-first state stores", 2: "evict-first state loads and stores"}
SMEM_PER_SM = 232448  # bytes of shared memory one block may take on sm90 / sm100 (227 KiB; CUDA guide)
TMA_BOX = 256  # TMA copies boxes of at most 256 elements per dimension


def tma_reason(case: Case, t: Tile) -> str | None:
    """Why the TMA-staged Gluon decode (``reread`` = 7) cannot run ``case`` with tile ``t`` (None: it can).
    Its grid is persistent (``progs_per_sm`` programs per SM), each program with ``stages`` shared-memory
    buffers of one BV x K tile; ``ahead`` 1 loads the next tile's inputs during this tile's decode."""
    if triton_interpreted():
        return "the TMA decode (reread = 7) compiles for a GPU only: Gluon has no TRITON_INTERPRET=1 interpreter"
    target = current_target()
    if target.device == "cuda" and target.sm is not None and target.sm < 90:
        return f"the TMA decode (reread = 7) needs SM90 or newer (TMA, mbarrier transaction counts; sm{target.sm})"
    if case.layout != "k_last":
        return "the TMA decode (reread = 7) takes a K-last pool (its tile is a contiguous BV x K block)"
    if case.tokens > 1 or case.intermediate:
        return "the TMA decode (reread = 7) is decode only (T = 1, no intermediate states)"
    if not (t.progs_per_sm and t.stages):
        return ("the TMA decode (reread = 7) runs on a persistent grid with shared-memory buffers: programs per SM "
                f">= 1 and stages >= 1 (got {t.progs_per_sm}, {t.stages})")
    if t.chunk or t.prefetch or t.ahead > 1:
        return "the TMA decode (reread = 7) takes no chunk or prefetch; ahead is 0 or 1 (the next tile's inputs)"
    reason = gluon_reason(case, t._replace(stages=0))
    if reason:
        return reason.replace("Gluon decode (reread = 6)", "TMA decode (reread = 7)")
    if t.bv > TMA_BOX or case.head_dim_k > TMA_BOX:
        return f"a TMA box has at most {TMA_BOX} elements a side (BV={t.bv}, K={case.head_dim_k})"
    size = torch.finfo(getattr(torch, case.state_dtype)).bits // 8
    smem = t.stages * t.bv * case.head_dim_k * size
    if smem * t.progs_per_sm > SMEM_PER_SM:
        return (f"{t.progs_per_sm} programs x {t.stages} buffers of {t.bv} x {case.head_dim_k} x {size} B = "
                f"{smem * t.progs_per_sm} B of shared memory per SM (at most {SMEM_PER_SM})")
    slots = pool_slots(case)
    if slots * case.hv * case.head_dim_v >= 2 ** 31:
        return f"the TMA decode addresses pool rows as int32: {slots} slots x {case.hv} x {case.head_dim_v} rows"
    return None


def chunk_consts(t: Tile, interpreted: bool) -> dict:
    """The chunk-form kernel's compile-time arguments for tile ``t``: row blocks per program (or a
    persistent grid sharing them out evenly), pipeline stages, the L2 prefetch and bf16 dots. Under the
    interpreter its bf16 tl.dot is wrong (fp32 operands there) and PTX (the prefetch's inline asm) does
    not run."""
    return dict(STEPS=t.chunk, STAGES=max(t.stages, 1), PREFETCH=0 if interpreted else t.prefetch,
                AHEAD=0 if interpreted else t.ahead, HINTS=not interpreted, PERSIST=bool(t.progs_per_sm),
                DOT_BF16=not interpreted)


def flat_rowdot(case: Case, t: Tile) -> bool:
    """Whether the per-token kernels reduce the tile as one [BV, K] sum (``rowdot``'s FLAT): yes
    unless the K chunks are split across lanes, i.e. BV rows x (KC / 16-byte vector) fill fewer than
    the 32 lanes of a warp (then Triton also puts lanes on the chunk axis; the flat sum compiled
    wrongly for bf16 BV=4 KC=32 on the H100, so that layout keeps the two-step sum), and except in
    the pipelined kernel at T > 1, where Triton 3.6 gave the flat sum a layout that spilled 6-10 KB
    per thread (offline sm_90; it ran 250x slower on the H100) and the two-step sum spills nothing."""
    if t.stages and t.progs_per_sm and case.tokens > 1:
        return False
    kc = t.k_chunk(case)
    vec = 128 // torch.finfo(getattr(torch, case.state_dtype)).bits  # elements per 16-byte vector
    return kc == case.head_dim_k or t.bv * max(kc // vec, 1) >= 32


def register_cap(case: Case, t: Tile) -> dict:
    """``maxnreg``: the tile's own cap when it sets one; else 128 for the per-token MTP kernel when its
    tile holds 64 state elements per thread (the tuned MTP tiles): it fits without spilling (sm_90,
    T = 2..8, offline), which keeps 16 warps per SM resident; left alone, ptxas takes up to 168 (12).
    The persistent chunk-form grid: 168, the registers ptxas gives the one-head-per-program grid (sm_90
    offline, bf16 T = 4: without a cap it takes 229-251 around the loop over heads, 8 warps per SM)."""
    if t.maxnreg:
        return {"maxnreg": t.maxnreg}
    if t.chunk and t.progs_per_sm:
        return {"maxnreg": 168}
    per_thread = t.bv * case.head_dim_k // (32 * t.warps)
    if case.tokens > 1 and not t.chunk and not t.progs_per_sm and per_thread == 64:
        return {"maxnreg": 128}
    return {}


def heuristic_tile(case: Case) -> Tile:
    V, K = case.head_dim_v, case.head_dim_k
    pairs = case.batch * case.hv
    bv = V
    floor = 32 if case.layout == "v_last" else 8
    while bv > floor and pairs * (V // bv) < 2048:
        bv //= 2
    bv = max(min(bv, V), min(floor, V))
    elems = bv * K
    warps = 1 if elems <= 512 else 2 if elems <= 1024 else 4 if elems <= 4096 else 8
    return Tile(bv, warps)


_TT = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}


AOT_SMS = 132  # the H100's SMs: what an offline compile assumes for ``ahead`` in the per-tile kernel


def aot_compile(case: Case, sm: int = 90, tile_: Tile | None = None, pdl: bool = False):
    """Compile the kernel for ``case`` for an SM generation without a GPU (Triton's own LLVM and
    ptxas), with the 16-byte pointer alignment Triton's JIT specialises on at launch. Returns the
    CompiledKernel (``.asm["ptx"]``, ``.asm["cubin"]``, ``.metadata``): lets tests and kernel work
    check vectorisation, registers and spills offline."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    t = Tile(*(tile_ or tile(case)))
    bv, warps, progs, chunk = t.bv, t.warps, t.progs_per_sm, t.chunk
    dt, st = _TT[case.dtype], _TT[case.state_dtype]
    sig = {"q": f"*{dt}", "k": f"*{dt}", "v": f"*{dt}", "a": f"*{dt}", "b": f"*{dt}", "A_log": "*fp32",
           "dt_bias": "*fp32", "slots": "*i32", "parents": "*i32", "pool": f"*{st}", "inter": f"*{st}",
           "out": f"*{dt}", "scale": "fp32", "HK": "constexpr", "HV": "constexpr"}
    consts = dict(HK=case.hk, HV=case.hv, T=case.tokens, K=case.head_dim_k, V=case.head_dim_v, BV=bv,
                  KC=t.k_chunk(case),
                  K_LAST=case.layout == "k_last", WRITE_BACK=case.write_back, INTERMEDIATE=case.intermediate, TREE=case.tree,
                  FLAT=flat_rowdot(case, t), TP=triton.next_power_of_2(case.tokens), PDL=pdl, REREAD=t.reread,
                  AHEAD=t.ahead * AOT_SMS, DOT_BF16=True)
    fn = _jit("gdn_recurrent_kernel")
    if t.reread in (6, 7):  # Gluon: q ... slots, [the pool's TMA descriptor,] pool, out, scale, n_tiles
        from triton.experimental.gluon._runtime import GluonASTSource

        names = ("q", "k", "v", "a", "b", "A_log", "dt_bias", "slots")
        sig = {name: sig[name] for name in names}
        if t.reread == 7:
            sig["desc"] = f"tensordesc<{st}[{bv},{case.head_dim_k}],{_tma_layout(case)!r}>"
        sig.update(pool=f"*{st}", out=f"*{dt}", scale="fp32", n_tiles="i32")
        consts = _gluon_consts(case, t, pdl, AOT_SMS)
        sig.update({name: "constexpr" for name in consts})
        ptrs = [i for i, ty in enumerate(sig.values()) if ty.startswith("*")]  # 16-byte aligned, as at launch
        src = GluonASTSource(fn=_gluon_tma() if t.reread == 7 else _gluon_decode(), signature=sig, constexprs=consts,
                             attrs={(i,): [["tt.divisibility", 16]] for i in ptrs})
        return triton.compile(src, target=GPUTarget("cuda", sm, 32), options={"num_warps": warps, "launch_pdl": pdl,
                                                                              **register_cap(case, t)})
    if progs or chunk:
        del consts["REREAD"], consts["AHEAD"], consts["DOT_BF16"]
    if progs and not chunk:
        del sig["parents"], consts["TREE"], consts["TP"]
        sig["n_tiles"] = "i32"
        fn = _jit("gdn_persistent_kernel")
        if t.stages:
            consts["STAGES"] = t.stages
            fn = _jit("gdn_pipelined_kernel")
    elif chunk:
        del sig["parents"], consts["TREE"], consts["KC"], consts["FLAT"], consts["TP"]
        sig["n_blocks"] = "i32"
        consts.update(chunk_consts(t, interpreted=False))
        fn = _jit("gdn_mtp_chunk_kernel")
    sig.update({name: "constexpr" for name in consts})
    n_ptr = sum(str(t).startswith("*") for t in sig.values())
    attrs = {(i,): [["tt.divisibility", 16]] for i in range(n_ptr)}  # the pointer arguments come first
    src = ASTSource(fn=fn, signature=sig, constexprs=consts, attrs=attrs)
    return triton.compile(src, target=GPUTarget("cuda", sm, 32),
                          options={"num_warps": warps, "launch_pdl": pdl, **register_cap(case, t)})


def aot_report(case: Case, sm: int = 90, tile_: Tile | None = None, pdl: bool = False) -> dict:
    """Offline compile summary: 16-byte vector loads/stores, local-memory use, registers (via the
    cuobjdump Triton ships), and where the PDL wait sits (``pdl_wait``: "first" when it precedes every
    global load or asynchronous copy, "late" when one comes before it, "none"). Run in a process
    without TRITON_INTERPRET (the interpreter replaces Triton's standard library at import)."""
    import re
    import subprocess
    import tempfile

    import triton

    ck = aot_compile(case, sm, tile_, pdl)
    ptx = ck.asm["ptx"]
    wait, first_load = ptx.find("griddepcontrol.wait"), re.search(r"ld\.global|cp\.async", ptx)
    rep = {"ld_v4": len(re.findall(r"ld\.global[^;\n]*\.v4", ptx)), "st_v4": len(re.findall(r"st\.global[^;\n]*\.v4", ptx)),
           "ld_evict_first": len(re.findall(r"ld\.global\.L1::evict_first[^;\n]*\.v4", ptx)),
           "st_evict_first": len(re.findall(r"st\.global\.L1::evict_first[^;\n]*\.v4", ptx)),
           "ptx_local": ".local" in ptx, "shared_bytes": ck.metadata.shared,
           "pdl_wait": ("none" if wait < 0 else "first" if not first_load or wait < first_load.start()
                        else "late")}
    tool = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    if tool.exists():
        with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
            f.write(ck.asm["cubin"])
            f.flush()
            out = subprocess.run([str(tool), "-res-usage", f.name], capture_output=True, text=True).stdout
        m = re.search(r"REG:(\d+).*?STACK:(\d+).*?LOCAL:(\d+)", out)
        if m:
            rep.update(registers=int(m.group(1)), stack=int(m.group(2)), local=int(m.group(3)))
    return rep


class TritonGDN(Backend):
    name = "triton"
    summary = "gdnbench's own Triton kernels: decode and MTP verify, pooled state, fused gating"
    dist = "triton"
    triton = True

    def __init__(self, tile_override: tuple[int, ...] | None = None, pdl: bool = False) -> None:
        self.tile_override = Tile(*tile_override) if tile_override else None  # scripts/tune_triton.py, tests
        self.pdl = pdl
        if pdl:
            self.name = "triton_pdl"
            self.summary = ("the triton kernels launched with programmatic dependent launch (SM90+): a "
                            "launch overlaps the previous kernel's drain, every read waits for it")

    def tile(self, case: Case) -> Tile:
        return self.tile_override or tile(case)

    @property
    def version(self) -> str:
        from gdnbench import __version__
        from gdnbench.backends.base import package_version

        return f"gdnbench {__version__} (triton {package_version('triton') or 'not installed'})"

    def availability(self, target: Target | None = None) -> str | None:
        return triton_availability(target, "triton", "triton")

    def supports(self, case: Case, target: Target | None = None) -> str | None:
        reason = self.availability(target) or (self.pdl and pdl_reason(target))
        if reason:
            return reason
        if case.phase == "prefill":
            return "gdnbench's Triton kernels cover decode and MTP; prefill runs on fla / FlashInfer"
        for name, d in (("K", case.head_dim_k), ("V", case.head_dim_v)):
            if d & (d - 1) or not 16 <= d <= 256:
                return f"head dim {name}={d}: the kernel tiles powers of two from 16 to 256"
        return None

    def kernel(self, case: Case) -> str:
        t = self.tile(case)
        mode = "decode" if case.tokens == 1 else f"mtp T={case.tokens}" + (" tree" if case.tree else "")
        name, grid = (("gdn_decode_rows_kernel", f", {t.progs_per_sm} programs/SM" if t.progs_per_sm else "")
                      if t.reread == 6 else ("gdn_decode_tma_kernel", f", {t.progs_per_sm} programs/SM, {t.stages} "
                                             f"TMA buffers" + (", inputs a tile ahead" if t.ahead else ""))
                      if t.reread == 7 else ("gdn_persistent_kernel", f", {t.progs_per_sm} programs/SM")
                      if t.progs_per_sm else ("gdn_recurrent_kernel", ""))
        if t.progs_per_sm and t.stages and t.reread != 7:
            name, grid = "gdn_pipelined_kernel", f"{grid}, {t.stages} stages"
        kc = t.k_chunk(case)
        chunks = f", KC={kc}" if kc < case.head_dim_k else ""
        if t.chunk:
            name, grid = "gdn_mtp_chunk_kernel", f", persistent, {t.progs_per_sm} programs/SM" if t.progs_per_sm else ""
            chunks = f", {t.chunk} blocks/program" if t.chunk > 1 else ""
            chunks += f", {t.stages} stages" if t.stages > 1 else ""
            chunks += f", L2 prefetch of {t.prefetch} block{'s' if t.prefetch > 1 else ''}" if t.prefetch else ""
            chunks += f", L2 prefetch {t.ahead} block{'s' if t.ahead > 1 else ''} ahead" if t.ahead else ""
        elif t.ahead and t.reread != 7:
            chunks += ", L2 prefetch of the next tile" if t.progs_per_sm else f", L2 prefetch {t.ahead} programs/SM ahead"
        if t.reread:
            chunks += {1: ", two-pass", 2: ", q/k in the tile layout", 3: ", norms on the row sums",
                       4: ", norms on the row sums, no slot branch", 5: ", row sums as a tensor-core dot",
                       6: ", Gluon, warps own rows", 7: ", Gluon, warps own rows"}[t.reread]
        if t.cache:
            chunks += f", {CACHE_POLICIES[t.cache]}"

        cap = register_cap(case, t)
        regs = f", maxnreg={cap['maxnreg']}" if cap else ""
        pdl = ", PDL" if self.pdl else ""
        layout = case.layout.replace("_", "-")
        return f"{name} [{mode}, {layout}, BV={t.bv}, warps={t.warps}{grid}{chunks}{regs}{pdl}]"

    def padding(self, case: Case) -> Padding:
        return Padding.ZERO

    def _build_gluon(self, case: Case, x: Inputs, t: Tile, n_tiles: int, out: torch.Tensor):
        """The Gluon decodes: ``reread`` = 6 one program per tile, as ``gdn_recurrent_kernel``, or a
        persistent grid of ``progs_per_sm`` x SMs programs; 7 that persistent grid with the pool also seen
        by TMA, as ``[slots * HV * V, K]`` rows in ``[BV, K]`` blocks (a descriptor before the pool)."""
        sms = sm_count(x.device)
        consts = _gluon_consts(case, t, self.pdl, sms)
        opts = dict(num_warps=t.warps, **({"launch_pdl": True} if self.pdl else {}),
                    **({"maxnreg": t.maxnreg} if t.maxnreg else {}))
        grid = (min(n_tiles, t.progs_per_sm * sms) if t.progs_per_sm else n_tiles,)
        kern, desc = _gluon_decode(), ()
        if t.reread == 7:
            from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

            kern = _gluon_tma()
            desc = (TensorDescriptor.from_tensor(x.pool.view(-1, case.head_dim_k), [t.bv, case.head_dim_k],
                                                 _tma_layout(case)),)

        def launch():
            kern[grid](x.q, x.k, x.v, x.a, x.b, x.A_log, x.dt_bias, x.slots, *desc, x.pool, out, x.scale, n_tiles,
                       **consts, **opts)
            return out

        return launch

    def build(self, case: Case, inputs: Inputs):
        import triton  # optional: supports() has checked it is importable

        x = inputs
        t = self.tile(case)
        bv, warps, progs, chunk = t.bv, t.warps, t.progs_per_sm, t.chunk
        kc = t.k_chunk(case)
        reason = tile_reason(case, t)
        if reason:
            raise ValueError(reason)
        out = torch.empty(case.batch, case.tokens, case.hv, case.head_dim_v, dtype=x.v.dtype, device=x.device)
        inter = x.inter if case.intermediate else x.pool  # placeholder pointer when unused (never touched)
        meta = dict(T=case.tokens, K=case.head_dim_k, V=case.head_dim_v, BV=bv,
                    K_LAST=case.layout == "k_last", WRITE_BACK=case.write_back, INTERMEDIATE=case.intermediate,
                    num_warps=warps)
        if self.pdl:  # the kernels wait for their predecessor first (wait_for_predecessor); launched early
            meta.update(PDL=True, launch_pdl=True)
        n_tiles = case.batch * case.hv * (case.head_dim_v // bv)
        if t.reread in (6, 7):
            return self._build_gluon(case, x, t, n_tiles, out)
        if not chunk:
            meta["KC"] = kc
            meta["FLAT"] = flat_rowdot(case, t)
        if progs and not chunk:
            kern = _jit("gdn_persistent_kernel")
            if t.stages:
                kern = _jit("gdn_pipelined_kernel")
                meta["STAGES"] = t.stages
            grid = (min(n_tiles, progs * sm_count(x.device)),)

            def launch():
                kern[grid](x.q, x.k, x.v, x.a, x.b, x.A_log, x.dt_bias, x.slots, x.pool, inter, out, x.scale,
                           case.hk, case.hv, n_tiles, **meta)
                return out

            return launch
        grid = (case.batch * case.hv * (case.head_dim_v // bv),)
        cap = {} if triton_interpreted() else register_cap(case, t)
        if chunk:
            kern = _jit("gdn_mtp_chunk_kernel")
            grid = (min(n_tiles, progs * sm_count(x.device)),) if progs else (n_tiles // chunk,)  # tile = BV-row block
            meta.update(chunk_consts(t, triton_interpreted()))

            def launch_chunk():
                kern[grid](x.q, x.k, x.v, x.a, x.b, x.A_log, x.dt_bias, x.slots, x.pool, inter, out, x.scale,
                           case.hk, case.hv, n_tiles, **meta, **cap)
                return out

            return launch_chunk
        kern = _jit("gdn_recurrent_kernel")
        parents = x.parents if case.tree else x.slots

        meta.update(TREE=case.tree, TP=triton.next_power_of_2(case.tokens),  # TP: the tokens' gates as one vector
                    REREAD=t.reread, AHEAD=0 if triton_interpreted() else t.ahead * sm_count(x.device),
                    DOT_BF16=not triton_interpreted())

        def launch():
            kern[grid](x.q, x.k, x.v, x.a, x.b, x.A_log, x.dt_bias, x.slots, parents, x.pool, inter, out, x.scale,
                       case.hk, case.hv, **meta, **cap)
            return out

        return launch


def _gluon_consts(case: Case, t: Tile, pdl: bool, sms: int) -> dict:
    """The Gluon decode's compile-time arguments. ``ahead``: m programs per SM ahead (m x SMs programs) for
    one program per tile; on a persistent grid (``progs_per_sm``) any m > 0 prefetches the program's next tile."""
    vec, tk = rows_layout(case, t)
    if t.reread == 7:
        return dict(HK=case.hk, HV=case.hv, K=case.head_dim_k, V=case.head_dim_v, BV=t.bv, VEC=vec, TK=tk, NW=t.warps,
                    WRITE_BACK=case.write_back, PDL=pdl, STAGES=t.stages, SP=1 << (t.stages - 1).bit_length(),
                    CARRY=bool(t.ahead))
    return dict(HK=case.hk, HV=case.hv, K=case.head_dim_k, V=case.head_dim_v, BV=t.bv, VEC=vec, TK=tk, NW=t.warps,
                WRITE_BACK=case.write_back, PDL=pdl, AHEAD=t.ahead * (1 if t.progs_per_sm else sms),
                PERSIST=bool(t.progs_per_sm), CACHE=t.cache)


def _tma_layout(case: Case):
    """Shared-memory layout of the TMA decode's buffers: unswizzled rows (each warp reads whole rows of
    16-byte vectors, so no bank conflicts to swizzle away)."""
    from triton.experimental.gluon import language as gl

    return gl.NVMMASharedLayout(swizzle_byte_width=0, element_bitwidth=torch.finfo(getattr(torch, case.state_dtype)).bits,
                                rank=2)


def pdl_reason(target: Target | None = None) -> str | None:
    """Why the kernels cannot be launched with programmatic dependent launch on ``target``: PDL
    (``griddepcontrol``) exists from SM90 on, and the interpreter has no launches to overlap."""
    target = target or current_target()
    if target.device != "cuda":
        return "programmatic dependent launch needs a CUDA GPU"
    if target == current_target() and triton_interpreted():
        return "programmatic dependent launch: not under TRITON_INTERPRET=1 (no launches to overlap)"
    if target.sm is not None and target.sm < 90:
        return f"programmatic dependent launch needs SM90 or newer (sm{target.sm})"
    return None


def sm_count(device: torch.device) -> int:
    """Streaming multiprocessors of the GPU (1 on the CPU interpreter, so persistent programs loop)."""
    if torch.device(device).type != "cuda":
        return 1
    return torch.cuda.get_device_properties(device).multi_processor_count


BACKEND = TritonGDN()
PDL = TritonGDN(pdl=True)
