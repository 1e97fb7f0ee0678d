"""One launch plan per (case, tile): which jit function, how many programs, which arguments and
compile-time constants. The backend's ``build``, its ``kernel`` column and the offline compile
(``offline.py``) all read the same :class:`Plan`, so they cannot disagree about what runs.

The plan is plain data: it imports no Triton, so the kernel column can be written on a machine
without it. Argument names are the kernels' own parameter names; ``build`` and the offline compile map
them to tensors and to type strings respectively.
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass

from gdnbench.backends.triton.tiles import CACHE_POLICIES, Tile, Variant, rows_layout, state_bits
from gdnbench.cases import Case

# variant -> (module under kernels/, jit function); the function names are what traces match on
KERNELS = {
    Variant.PER_TOKEN: ("recurrent", "gdn_recurrent_kernel"),
    Variant.CHUNK: ("chunk", "gdn_mtp_chunk_kernel"),
    Variant.GLUON_ROWS: ("gluon_decode", "gdn_decode_rows_kernel"),
    Variant.GLUON_TMA: ("gluon_decode", "gdn_decode_tma_kernel"),
}
INPUTS = ("q", "k", "v", "a", "b", "A_log", "dt_bias", "slots")


@dataclass(frozen=True)
class Plan:
    """A launch: ``kernel`` (jit function name) over ``programs`` programs (a 1-D grid), runtime
    arguments ``args`` by name in the kernel's order, ``constexprs`` and launch / compile ``options``
    (``num_warps``, ``launch_pdl``, ``maxnreg``)."""

    variant: Variant
    kernel: str
    programs: int
    args: tuple[str, ...]
    constexprs: dict
    options: dict


@functools.cache
def jit_kernel(variant: Variant):
    """The jit function of ``variant``, imported on first use (Triton is optional for the rest of gdnbench)."""
    module, name = KERNELS[variant]
    return getattr(importlib.import_module(f"gdnbench.backends.triton.kernels.{module}"), name)


def register_cap(case: Case, t: Tile) -> dict:
    """``maxnreg``: the tile's own cap when it sets one; else 128 for the per-token MTP kernel when its
    tile holds 64 state elements per thread: it fits without spilling (sm_90, T = 2..8, offline), which
    keeps 16 warps per SM resident; left alone, ptxas takes up to 168 (12). Not with fp32 state, the
    intermediate buffer and write-back together: that kernel spills under the cap (ncu,
    ``results/h100-sm90/ncu-mtp``), and the MTP heuristic gives it 32 elements a thread instead."""
    if t.maxnreg:
        return {"maxnreg": t.maxnreg}
    per_thread = t.bv * case.head_dim_k // (32 * t.warps)
    if case.tokens > 1 and t.variant is Variant.PER_TOKEN and per_thread == 64:
        return {"maxnreg": 128}
    return {}


def flat_rowdot(case: Case, t: Tile) -> bool:
    """Whether the per-token kernel reduces the tile as one [BV, K] sum (``rowdot``'s FLAT): yes unless
    the K chunks are split across lanes, i.e. BV rows x (KC / 16-byte vector) fill fewer than the 32 lanes
    of a warp (then Triton also puts lanes on the chunk axis; the flat sum compiled wrongly for bf16 BV=4
    KC=32 on the H100, so that layout keeps the two-step sum)."""
    kc = t.k_chunk(case)
    return kc == case.head_dim_k or t.bv * max(kc // (128 // state_bits(case)), 1) >= 32


def plan(case: Case, t: Tile, *, pdl: bool = False, sms: int = 1, interpreted: bool = False) -> Plan:
    """The launch of ``case`` with tile ``t`` on a GPU of ``sms`` SMs (``ahead`` counts programs per SM),
    with programmatic dependent launch or not. ``interpreted``: for TRITON_INTERPRET=1, where inline PTX
    (the L2 prefetches) does not run, bf16 dots are wrong and register caps mean nothing."""
    n_tiles = case.batch * case.hv * (case.head_dim_v // t.bv)
    shape = dict(HK=case.hk, HV=case.hv)
    options = {"num_warps": t.warps, **({"launch_pdl": True} if pdl else {}),
               **({} if interpreted else register_cap(case, t))}
    if t.variant in (Variant.GLUON_ROWS, Variant.GLUON_TMA):
        vec, tk = rows_layout(case, t)
        consts = dict(shape, K=case.head_dim_k, V=case.head_dim_v, BV=t.bv, VEC=vec, TK=tk, NW=t.warps,
                      WRITE_BACK=case.write_back, PDL=pdl)
        if t.variant is Variant.GLUON_ROWS:
            consts.update(AHEAD=t.ahead * sms, CACHE=t.cache)
            args, programs = (*INPUTS, "pool", "out", "scale", "n_tiles"), n_tiles
        else:
            consts.update(STAGES=t.stages, SP=1 << (t.stages - 1).bit_length(), CARRY=bool(t.ahead))
            args, programs = (*INPUTS, "desc", "pool", "out", "scale", "n_tiles"), min(n_tiles, t.progs_per_sm * sms)
        return Plan(t.variant, KERNELS[t.variant][1], programs, args, consts, options)
    consts = dict(shape, T=case.tokens, K=case.head_dim_k, V=case.head_dim_v, BV=t.bv,
                  K_LAST=case.layout == "k_last", WRITE_BACK=case.write_back, INTERMEDIATE=case.intermediate)
    if t.variant is Variant.CHUNK:
        consts.update(PDL=pdl, STEPS=t.blocks, STAGES=max(t.stages, 1), PREFETCH=0 if interpreted else t.prefetch,
                      AHEAD=0 if interpreted else t.ahead, HINTS=not interpreted, DOT_BF16=not interpreted)
        args = (*INPUTS, "pool", "inter", "out", "scale", "n_blocks")
        return Plan(t.variant, KERNELS[t.variant][1], n_tiles // t.blocks, args, consts, options)
    consts.update(KC=t.k_chunk(case), TREE=case.tree, FLAT=flat_rowdot(case, t),
                  TP=1 << (case.tokens - 1).bit_length(),  # the tokens' gates as one power-of-two vector
                  PDL=pdl, AHEAD=0 if interpreted else t.ahead * sms)
    args = (*INPUTS, "parents", "pool", "inter", "out", "scale")
    return Plan(t.variant, KERNELS[t.variant][1], n_tiles, args, consts, options)


def describe(case: Case, t: Tile, pdl: bool) -> str:
    """The ``kernel`` column: the jit function and, in brackets, what shapes its launch."""
    p = plan(case, t, pdl=pdl)
    mode = "decode" if case.tokens == 1 else f"mtp T={case.tokens}" + (" tree" if case.tree else "")
    parts = [mode, case.layout.replace("_", "-"), f"BV={t.bv}", f"warps={t.warps}"]
    if t.variant is Variant.GLUON_TMA:
        parts += [f"{t.progs_per_sm} programs/SM", f"{t.stages} TMA buffers"]
        parts += ["inputs a tile ahead"] if t.ahead else []
    kc = t.k_chunk(case)
    if t.variant is Variant.CHUNK:
        parts += [f"{t.blocks} blocks/program"] if t.blocks > 1 else []
        parts += [f"{t.stages} stages"] if t.stages > 1 else []
        parts += [f"L2 prefetch of {t.prefetch} block{'s' if t.prefetch > 1 else ''}"] if t.prefetch else []
        parts += [f"L2 prefetch {t.ahead} block{'s' if t.ahead > 1 else ''} ahead"] if t.ahead else []
    else:
        parts += [f"KC={kc}"] if kc < case.head_dim_k else []
        parts += [f"L2 prefetch {t.ahead} programs/SM ahead"] if t.ahead and t.variant is not Variant.GLUON_TMA else []
    parts += ["Gluon, warps own rows"] if t.variant in (Variant.GLUON_ROWS, Variant.GLUON_TMA) else []
    parts += [CACHE_POLICIES[t.cache]] if t.cache else []
    parts += [f"maxnreg={p.options['maxnreg']}"] if "maxnreg" in p.options else []
    parts += ["PDL"] if pdl else []
    return f"{p.kernel} [{', '.join(parts)}]"
