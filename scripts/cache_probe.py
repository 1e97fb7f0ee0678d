"""Cache hints on the Gluon decode's (``reread`` = 6) state traffic: the kernel's source with the state
load / store given a cache modifier or eviction policy, graph-timed against the unmodified kernel on the
same tile, two rounds, every variant gated first. Probe only: the variants are built from the source
text in a temporary module. Usage on the GPU host: ``PYTHONPATH=$PWD python3 scripts/cache_probe.py``."""
import importlib.util
import sys
import tempfile
from pathlib import Path

import torch
sys.path.insert(0, __file__.rsplit('/', 1)[0])  # tune_triton's case and timing settings
import gdnbench.backends.triton_gdn as tg
from gdnbench.backends.triton_gdn import TritonGDN
from gdnbench.check import run_gate
from gdnbench.inputs import make_inputs
from gdnbench.reference import reference
from gdnbench.timer import time_gpu
from tune_triton import CFG, case

SRC = Path(tg.__file__).with_name("_gluon_kernels.py").read_text()
LOAD, STORE = "Hr = gl.load(state + offs)", "gl.store(state + offs, (Hf * eg + (u * sk)[:, None] * kf[None, :]).to(pool.dtype.element_ty))"
VARIANTS = {
    "base": ("", ""),
    "ld_cg": ('cache_modifier=".cg"', ""),
    "ld_ef": ('eviction_policy="evict_first"', ""),
    "ld_cg_st_ef": ('cache_modifier=".cg"', 'eviction_policy="evict_first"'),
    "st_cs": ("", 'cache_modifier=".cs"'),
    "st_ef": ("", 'eviction_policy="evict_first"'),
    "st_wt": ("", 'cache_modifier=".wt"'),
    "ld_cg_st_cs": ('cache_modifier=".cg"', 'cache_modifier=".cs"'),
    "ld_ef_st_ef": ('eviction_policy="evict_first"', 'eviction_policy="evict_first"'),
}
TILES = {(16, 16, 32): (64, 4, 0, 0, 0, 0, 6, 0, 0, 4), (64, 4, 8): (64, 4, 0, 0, 0, 0, 6, 0, 0, 4),
         (1, 16, 32): (4, 1, 0, 0, 0, 0, 6), (1, 4, 8): (2, 1, 0, 0, 0, 0, 6), (64, 16, 32): (64, 4, 0, 0, 0, 0, 6, 0, 0, 2)}
TMP = Path(tempfile.mkdtemp())


def variant(name):
    ld, st = VARIANTS[name]
    assert SRC.count(LOAD) == 1 and SRC.index(STORE) < SRC.index("def gdn_decode_rows_kernel")
    src = SRC.replace(LOAD, LOAD[:-1] + (", " + ld if ld else "") + ")")
    src = src.replace(STORE, STORE[:-1] + (", " + st if st else "") + ")", 1)  # the first: _decode_tile's
    path = TMP / f"gvar_{name}.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location(f"gvar_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.gdn_decode_rows_kernel


def main() -> int:
    kernels = {name: variant(name) for name in VARIANTS}
    for rnd in (1, 2):
        for (B, HK, HV), t in TILES.items():
            c = case(B, HK, HV)
            x = make_inputs(c, "cuda")
            e = reference(x)
            res = []
            for name, kern in kernels.items():
                tg._gluon_decode = lambda kern=kern: kern
                b = TritonGDN(tile_override=t)
                g = run_gate(c, b, x, e)
                if not g.check.ok:
                    print(f"FAILED {name} {c.id}: {g.check.message}", flush=True)
                    continue
                res.append((time_gpu("graph", c, b, CFG).stats.median, name))
            tag = "x".join(map(str, t[:2]))
            print(f"round {rnd} B={B} HK={HK} HV={HV} g{tag}: " + "  ".join(f"{n}={u:.3f}" for u, n in res), flush=True)
            del x, e
            torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
