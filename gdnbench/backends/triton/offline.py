"""Compile the ``triton`` backend's kernels for an SM generation without a GPU.

Triton ships its own LLVM, ptxas and cuobjdump, so the exact machine code a tile runs on an H100 can be
produced on any machine. Tests use it to check vectorisation, registers, spills and where the PDL wait
sits; ``scripts/sass_digest.py`` uses it to show that a change leaves every shipped tile's SASS alone.
Run in a process without TRITON_INTERPRET (the interpreter replaces Triton's standard library).
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

from gdnbench.backends.triton.plan import jit_kernel, plan
from gdnbench.backends.triton.tiles import Tile, Variant, state_bits, tile
from gdnbench.cases import Case

AOT_SMS = 132  # the H100's SMs: what an offline compile assumes for ``ahead`` and persistent grids
_TT = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}


def tma_layout(case: Case):
    """Shared-memory layout of the TMA decode's buffers: unswizzled rows (each warp reads whole rows of
    16-byte vectors, so no bank conflicts to swizzle away)."""
    from triton.experimental.gluon import language as gl

    return gl.NVMMASharedLayout(swizzle_byte_width=0, element_bitwidth=state_bits(case), rank=2)


def _types(case: Case, t: Tile) -> dict[str, str]:
    dt, st = _TT[case.dtype], _TT[case.state_dtype]
    types = dict.fromkeys(("q", "k", "v", "a", "b", "out"), f"*{dt}")
    types.update(A_log="*fp32", dt_bias="*fp32", slots="*i32", parents="*i32", pool=f"*{st}", inter=f"*{st}",
                 scale="fp32", n_tiles="i32", n_blocks="i32")
    if t.variant is Variant.GLUON_TMA:
        types["desc"] = f"tensordesc<{st}[{t.bv},{case.head_dim_k}],{tma_layout(case)!r}>"
    return types


def aot_compile(case: Case, sm: int = 90, tile_: Tile | None = None, pdl: bool = False):
    """The CompiledKernel (``.asm["ptx"]``, ``.asm["cubin"]``, ``.metadata``) of ``case`` with its tile
    (or ``tile_``) for ``sm``, with the 16-byte pointer alignment Triton's JIT specialises on at launch."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    t = tile_ or tile(case)
    p = plan(case, t, pdl=pdl, sms=AOT_SMS)
    fn = jit_kernel(t.variant)
    types = _types(case, t)
    sig = {name: "constexpr" if name in p.constexprs else types[name] for name in fn.arg_names}
    attrs = {(i,): [["tt.divisibility", 16]] for i, ty in enumerate(sig.values()) if ty.startswith("*")}
    if t.variant in (Variant.GLUON_ROWS, Variant.GLUON_TMA):
        from triton.experimental.gluon._runtime import GluonASTSource as ASTSource  # noqa: F811
    src = ASTSource(fn=fn, signature=sig, constexprs=p.constexprs, attrs=attrs)
    return triton.compile(src, target=GPUTarget("cuda", sm, 32),
                          options={"num_warps": t.warps, "launch_pdl": pdl, **p.options})


def aot_report(case: Case, sm: int = 90, tile_: Tile | None = None, pdl: bool = False) -> dict:
    """Offline compile summary: 16-byte vector loads/stores, local-memory use, registers (via the
    cuobjdump Triton ships), and where the PDL wait sits (``pdl_wait``: "first" when it precedes every
    global load or asynchronous copy, "late" when one comes before it, "none")."""
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

