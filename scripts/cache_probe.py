"""Cache hints on the Gluon decode's (``reread`` = 6) state traffic: the kernel's source with the state
load / store given a cache modifier or eviction policy, graph-timed against the unmodified kernel on the
same tile, two rounds, every variant gated first. Probe only: the variants are built from the source
text in a temporary module. Usage on the GPU host: ``PYTHONPATH=$PWD python3 scripts/cache_probe.py``."""
import importlib.util
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, __file__.rsplit('/', 1)[0])  # tune_triton's case and timing settings, the probes' loop
import gdnbench.backends.triton_gdn as tg
from gdnbench.backends.triton_gdn import TritonGDN
from probe_common import run_rounds

SRC = Path(tg.__file__).with_name("_gluon_kernels.py").read_text()
# the state load and store a tile with the default policy (cache = 0, as every tile here) runs
LOAD, STORE = "Hr = gl.load(state + offs)", "gl.store(state + offs, new)"
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
    assert SRC.count(LOAD) == 1 and SRC.count(STORE) == 1
    src = SRC.replace(LOAD, LOAD[:-1] + (", " + ld if ld else "") + ")")
    src = src.replace(STORE, STORE[:-1] + (", " + st if st else "") + ")")
    path = TMP / f"gvar_{name}.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location(f"gvar_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.gdn_decode_rows_kernel


def main() -> int:
    kernels = {name: variant(name) for name in VARIANTS}

    def use(kern, t):
        tg._gluon_decode = lambda: kern  # what TritonGDN's Gluon tiles launch
        return TritonGDN(tile_override=t)

    def variants(key):
        return [(name, lambda kern=kern: use(kern, TILES[key])) for name, kern in kernels.items()]

    run_rounds(TILES, variants)
    return 0


if __name__ == "__main__":
    sys.exit(main())
