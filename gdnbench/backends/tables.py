"""Tuned tile tables, one file per GPU, shared by the backends that tune their own kernels.

``gdnbench tune`` (``gdnbench.tune``) measures a kernel's tiles on one GPU and writes the fastest per
case class to ``device_name=<GPU name, spaces as _>.json`` (the naming vLLM's fused_moe configs use), in
one of two places: the per-user folder ``$GDNBENCH_CACHE/tables/<backend>/`` (default), or the
tables gdnbench ships, ``gdnbench/backends/<backend>/tables/`` (``--ship``).

A lookup takes, per case, the first of these tables with an entry that fits the case (its class, a
``pairs_min`` <= batch x value heads, a tile that runs it): the per-user
table of this GPU, the shipped table of this GPU (both ``tuned``), a shipped table of another GPU, the
same SM generation first (``other-gpu``: its tiles run, but were not measured here); and for a case
no table entry fits, the backend's heuristic tile (``heuristic``). Going on per class matters where a
table of this GPU covers only some classes (a per-user tune of one config, on a GPU gdnbench ships no
table for): the other classes keep the borrowed tiles instead of dropping to the heuristic. The tile's
source is part of the answer, so a row can say how much to trust it.
``GDNBENCH_NO_TILE_TABLES=1`` disables every table (the heuristic everywhere).

A per-user table records the digest of the kernel sources it was tuned on. After an upgrade that
changed the kernels, its tiles describe kernels that no longer exist, while the shipped table came with
the new ones: a per-user table of another digest is passed over (``TileTable.stale`` names it, and the
sweep's note says to re-tune), and the next tune keeps none of its entries.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Callable

from gdnbench.backends.base import Target, cache_root
from gdnbench.cases import Case
from gdnbench.env import source_digest

# where a case's tile came from (the rows' ``tile_source``); OVERRIDE: a tile given to the backend
# directly (the tuner's candidates, tests), never in a sweep's rows
TUNED, OTHER_GPU, HEURISTIC, OVERRIDE = "tuned", "other-gpu", "heuristic", "override"
TABLE_VERSION = 1


def table_path(folder: Path, device: str) -> Path:
    """Where the table of GPU ``device`` (``torch.cuda.get_device_name()``) lives."""
    return folder / f"device_name={device.replace(' ', '_')}.json"


def user_tables(backend: str) -> Path:
    """The per-user tables of ``backend`` (``triton``, ``cute``): ``$GDNBENCH_CACHE/tables/<backend>``."""
    return cache_root() / "tables" / backend


def tables_disabled() -> bool:
    """``GDNBENCH_NO_TILE_TABLES=1``: no table is read (every case takes the heuristic tile)."""
    return os.environ.get("GDNBENCH_NO_TILE_TABLES") == "1"


@dataclass(frozen=True)
class TileTable:
    """A tuned table's entries, the GPU they were measured on, whether that is this GPU (``source``),
    the file they came from, and the table a lookup tries next for a class this one has no entry for."""

    device: str
    source: str  # TUNED or OTHER_GPU
    entries: list[dict] = field(default_factory=list)
    path: Path | None = None
    stale: Path | None = None  # this GPU's per-user table, passed over: tuned on other kernel sources
    fallback: TileTable | None = None


def package_digest(package: Path) -> str:
    """The digest of a backend's kernel sources as tables record it: its package's .py files but
    ``tiles.py``, whose lookup and heuristic code does not change what a tile measures (a table's
    entries are re-checked against ``tile_reason`` at every lookup)."""
    return source_digest(package, (".py",), exclude=("tiles.py",))


def kernel_digest(table: dict) -> str | None:
    """The digest of the kernel sources a table was tuned on (None: not recorded)."""
    prov = table.get("provenance")
    return prov.get("kernel_sources_sha256") if isinstance(prov, dict) else None


def tuned_on_other_sources(table: dict, digest: str | None) -> bool:
    """Whether ``table`` was tuned on kernel sources other than those of ``digest`` (a table that
    records no digest, or no ``digest`` to compare with, counts as current): the test that makes
    lookups pass over a per-user table, and the next tune drop its entries."""
    return bool(digest) and kernel_digest(table) not in (None, digest)


def read_table(path: Path) -> dict | None:
    """A table file's contents (None when absent, unreadable, or written in another ``version`` of the
    format, whose fields this gdnbench may read wrongly: the backend then uses its heuristic, and the
    next ``gdnbench tune`` rewrites the table in this version)."""
    try:
        table = json.loads(path.read_text())
        table["entries"]  # noqa: B018 -- a table without entries is no table
        return table if table.get("version") == TABLE_VERSION else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def borrowed_table(folder: Path, target: Target) -> tuple[Path, dict] | None:
    """The shipped table of another GPU that lookups on ``target`` fall back to for the classes this
    GPU's tables lack (``other-gpu``): the same SM generation first, then by name; None without one."""
    own = table_path(folder, target.name) if target.device == "cuda" else None
    found = [(p, read_table(p)) for p in sorted(folder.glob("device_name=*.json")) if p != own]
    others = [(p, t) for p, t in found if t is not None]
    others.sort(key=lambda pt: pt[1].get("sm") != target.sm)  # stable: same SM generation first
    return others[0] if others else None


def load_table(folder: Path, target: Target, user: Path | None = None,
               digest: str | None = None) -> TileTable | None:
    """The tables a lookup on ``target`` tries, as a ``fallback`` chain: the per-user table of this GPU
    (in ``user``; passed over when tuned on kernel sources other than ``digest``), the shipped one of
    this GPU (in ``folder``), then one other GPU's shipped table (same SM generation first, then by
    name); None without any (or an empty table that only names the stale per-user one). Per-user
    tables of other GPUs are never borrowed."""
    if tables_disabled():
        return None
    stale, chain = None, []
    if target.device == "cuda":
        for where in (user, folder):
            path = table_path(where, target.name) if where is not None else None
            table = read_table(path) if path is not None else None
            if table is not None and where is user and tuned_on_other_sources(table, digest):
                stale = path
            elif table is not None:
                chain.append((table.get("device", target.name), TUNED, table["entries"], path))
    borrowed = borrowed_table(folder, target)
    if borrowed:
        path, table = borrowed
        chain.append((table.get("device", "?"), OTHER_GPU, table["entries"], path))
    if not chain:
        return TileTable(target.name, OTHER_GPU, [], None, stale) if stale else None
    head = None
    for device, source, entries, path in reversed(chain):
        head = TileTable(device, source, entries, path, stale, head)
    return head


def pick_tuned(entries: list[dict], case: Case, fits: Callable[[dict], bool],
               specificity: Callable[[dict], int] = lambda e: 0) -> dict | None:
    """Of the entries ``fits`` accepts for ``case``, the most specific (an entry naming more of the
    case's fields: ``specificity``), then the one measured at the largest ``pairs_min`` <= batch * hv
    (None: no entry applies)."""
    pairs = case.batch * case.hv
    ok = [e for e in entries if e["pairs_min"] <= pairs and fits(e)]
    return max(ok, key=lambda e: (specificity(e), e["pairs_min"])) if ok else None


def choose(table: TileTable | None, case: Case, matches: Callable[[dict], bool], make: Callable[[dict], object],
           reason: Callable[[Case, object], str | None], fallback: Callable[[Case], object],
           specificity: Callable[[dict], int] = lambda e: 0) -> tuple[object, str]:
    """The tile for ``case`` and its source: the entry (``matches`` its class, its tile ``make(e)`` runs
    the case; the most specific, then the largest ``pairs_min`` <= batch * hv) of the first table along
    ``table``'s ``fallback`` chain that has one, else ``fallback(case)`` (``heuristic``)."""
    def runs(e: dict) -> bool:  # an entry this version cannot read (another version's table) is passed over
        try:
            return reason(case, make(e)) is None
        except (ValueError, KeyError, TypeError):
            return False

    while table is not None:
        best = pick_tuned(table.entries, case, lambda e: matches(e) and runs(e), specificity)
        if best:
            return make(best), table.source
        table = table.fallback
    return fallback(case), HEURISTIC


def write_table(folder: Path, device: str, sm: int | None, timing: dict, note: str, entries: list[dict],
                provenance: dict | None = None) -> Path:
    """Write a tuner's table for GPU ``device`` into ``folder`` (created if needed; replaced atomically,
    so a reader never sees half a table); ``provenance``: the driver, library versions and kernel source
    digest it was measured with. Returns its path."""
    path = table_path(folder, device)
    table = {"version": TABLE_VERSION, "device": device, "sm": sm, "timing": timing, "note": note,
             **({"provenance": provenance} if provenance else {}), "entries": entries}
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(table, indent=1) + "\n")
    os.replace(tmp, path)
    return path


class TunedTiles:
    """What the backends whose tiles come from per-GPU tables (gdnbench's own kernels) share: the tile
    a case runs with and where it came from (a ``tile_override`` given by the tuner or a test, else the
    table's or the heuristic's), and the stale per-user table a sweep warns about.

    A subclass sets ``tiles`` to its tiles module, which provides ``select(case) -> (tile, source)`` and
    ``tuned_table()``; both are looked up on the module at each call, so a test may patch them there.
    """

    tiles: ModuleType
    tile_override = None

    def tile_choice(self, case: Case) -> tuple[object, str]:
        return (self.tile_override, OVERRIDE) if self.tile_override else self.tiles.select(case)

    def tile(self, case: Case):
        return self.tile_choice(case)[0]

    def tile_info(self, case: Case) -> tuple[str, str]:
        t, source = self.tile_choice(case)
        return t.name, source

    def stale_table(self) -> Path | None:
        table = self.tiles.tuned_table()
        return table.stale if table else None
