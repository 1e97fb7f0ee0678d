"""Offline sm_90 SASS digest of every shipped tile of the ``triton`` backend, one line per (case, PDL).

Performance cannot be measured without a GPU, but the machine code can: Triton compiles for sm_90
offline (its own LLVM and ptxas) and ships ``cuobjdump``. Two checkouts whose digests match generate
the same instructions for every tile they ship, so a refactor that keeps them equal keeps performance.

The cases cover every entry of the tuned tile table (a case at the entry's ``pairs_min``), the tuner's
case plan, and cases only the heuristic tile serves (V-last, other head dims, trees, fp16 inputs, other
token counts); each is compiled with the tile the checkout itself picks, without and with PDL.

    python scripts/sass_digest.py > digests.txt          # in each checkout; then diff the two files

Runs in a process without TRITON_INTERPRET. Works on the checkout before the package split (d89dd32,
``gdnbench.backends.triton_gdn``) as well as after it (``gdnbench.backends.triton.offline``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _api():
    """(aot_compile, table paths) of this checkout."""
    try:
        from gdnbench.backends.triton.offline import aot_compile
        tables = sorted((ROOT / "gdnbench/backends/triton/tables").glob("*.json"))
    except ImportError:
        from gdnbench.backends.triton_gdn import aot_compile
        tables = [ROOT / "gdnbench/backends/triton_tiles.json"]
    return aot_compile, tables


def _case(batch, hk=16, hv=32, layout="k_last", sd="bfloat16", tokens=1, k=128, v=128, dtype="bfloat16",
          write_back=True, intermediate=False, tree=False):
    from gdnbench.cases import Case

    return Case(phase="mtp" if tokens > 1 else "decode", batch=batch, hk=hk, hv=hv, head_dim_k=k, head_dim_v=v,
                layout=layout, state_dtype=sd, dtype=dtype, tokens=tokens, seq_lens="", pool="scattered",
                write_back=write_back, intermediate=intermediate, tree=tree, seed=7)


def cases(tables: list[Path]) -> list:
    out = []
    for path in tables:  # one case per table entry, at its pairs_min
        for e in json.loads(path.read_text())["entries"]:
            hk, hv = (16, 32) if e["pairs_min"] % 32 == 0 else (4, 8)
            out.append(_case(e["pairs_min"] // hv, hk, hv, e["layout"], e["state_dtype"], 4 if e["mtp"] else 1,
                             e["head_dim_k"], e["head_dim_v"]))
    bs = (1, 4, 16, 64, 128, 256, 512)  # the tuner's plan
    out += [_case(b, sd=sd) for sd in ("bfloat16", "float32") for b in bs]
    out += [_case(b, hk=4, hv=8) for b in bs]
    out += [_case(b, sd=sd, tokens=4) for sd in ("bfloat16", "float32") for b in bs[:-1]]
    # what only the heuristic tile (or a table entry under other case flags) serves
    out += [_case(b, layout="v_last", sd=sd, tokens=t) for sd in ("bfloat16", "float32") for b in (1, 64, 512)
            for t in (1, 4)]
    out += [_case(b, k=64, v=64) for b in (1, 64)] + [_case(8, k=128, v=256), _case(8, k=256, v=128)]
    out += [_case(b, tokens=t) for b in (16, 64) for t in (2, 8)]
    out += [_case(64, tokens=4, intermediate=True), _case(64, tokens=4, write_back=False),
            _case(64, tokens=4, tree=True, intermediate=True), _case(1, tokens=4, tree=True, intermediate=True),
            _case(64, tokens=4, dtype="float16"), _case(64, dtype="float16"),
            _case(16, layout="v_last", tokens=4, tree=True, intermediate=True, sd="float32")]
    seen, unique = set(), []
    for c in out:
        if c.id not in seen:
            seen.add(c.id)
            unique.append(c)
    return unique


def sass(cubin: bytes) -> tuple[str, str]:
    """The cubin's SASS text without addresses, encodings or line-info comments, and its resource usage
    (registers, stack, shared and local memory)."""
    tool = Path(__import__("triton").__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        text = subprocess.run([str(tool), "-sass", f.name], capture_output=True, text=True, check=True).stdout
        res = subprocess.run([str(tool), "-res-usage", f.name], capture_output=True, text=True, check=True).stdout
    m = re.search(r"REG:(\d+) STACK:(\d+) SHARED:(\d+) LOCAL:(\d+)", res)
    usage = "regs={} stack={} shared={} local={}".format(*m.groups()) if m else "usage=?"
    lines = []
    for line in text.splitlines():
        line = re.sub(r"/\*[0-9a-f]{4,}\*/", "", line)  # instruction addresses and encodings
        line = line.split("//")[0].strip()
        if line and not line.startswith(("Fatbin", "code for", "arch =", "host =", "compile_size", "Function")):
            lines.append(re.sub(r"\s+", " ", line))
    return "\n".join(lines), usage


def digest(job) -> str:
    case, pdl = job
    aot_compile, _ = _api()
    try:
        ck = aot_compile(case, 90, None, pdl)
    except Exception as err:  # noqa: BLE001 -- a case no shipped kernel compiles is a line too
        return f"{case.id} pdl={int(pdl)} ERROR {type(err).__name__}: {str(err).splitlines()[0][:80]}"
    text, usage = sass(ck.asm["cubin"])
    return (f"{case.id} pdl={int(pdl)} {ck.metadata.name} {usage} "
            f"n={text.count(chr(10)) + 1} sha256={hashlib.sha256(text.encode()).hexdigest()[:16]}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    if os.environ.get("TRITON_INTERPRET") == "1":
        sys.exit("run without TRITON_INTERPRET=1 (the interpreter replaces Triton's compiler)")
    _, tables = _api()
    jobs = [(c, pdl) for c in cases(tables) for pdl in (False, True)]
    with ProcessPoolExecutor(args.jobs) as pool:
        for line in pool.map(digest, jobs):
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
