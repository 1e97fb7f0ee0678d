"""Cases: one point of a sweep. ``expand(sweep)`` turns a validated config into a list of ``Case``.

A ``Case``'s fields are the key columns of rows.csv. Its ``id`` is stable (the same parameters give
the same id on any machine and in any sweep) and names NVTX ranges and trace files. The work a case
must do, bytes moved and flops, is declared here once; throughput columns are derived from it, never
by a backend.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

from gdnbench.config import ConfigError, Sweep, parse_where, where_variants
from gdnbench.where import WhereError, eval_where
from gdnbench.vocab import DTYPE_BYTES, DTYPE_SHORT, PADDED_POOLS



def format_seq_lens(lens: list[int] | tuple[int, ...]) -> str:
    """[2048, 2048, 2048, 512] -> "2048*3+512" (run-length, order kept)."""
    out = []
    for length, group in itertools.groupby(lens):
        n = len(list(group))
        out.append(f"{length}*{n}" if n > 1 else str(length))
    return "+".join(out)


def parse_seq_lens(text: str) -> tuple[int, ...]:
    """Inverse of format_seq_lens; "" -> ()."""
    lens: list[int] = []
    for part in filter(None, text.split("+")):
        length, _, n = part.partition("*")
        lens.extend([int(length)] * int(n or 1))
    return tuple(lens)


@dataclass(frozen=True)
class Case:
    """One benchmark point. Fields are the CSV key columns (``model`` is a label, not part of the id).

    Shapes it implies (B = batch, T = tokens, L = total prefill tokens, N = sequences):
    decode/mtp q, k ``[B, T, hk, K]``, v ``[B, T, hv, V]``; prefill q, k ``[1, L, hk, K]`` with
    ``cu_seqlens [N+1]``; state pool ``[P, hv, V, K]`` (k_last) or ``[P, hv, K, V]`` (v_last).
    """

    phase: str              # decode | mtp | prefill
    batch: int              # sequences (rows); prefill: len(seq_lens)
    hk: int                 # q/k heads
    hv: int                 # v heads (= state, gate and output heads); hv % hk == 0
    head_dim_k: int
    head_dim_v: int
    layout: str             # k_last: pool [P, hv, V, K]; v_last: pool [P, hv, K, V]
    state_dtype: str        # bfloat16 | float32
    dtype: str              # q/k/v/a/b/output dtype
    tokens: int             # T per row (decode 1, mtp T); prefill: total tokens L
    seq_lens: str           # prefill: run-length lengths, e.g. "2048*4"; otherwise ""
    pool: str               # contiguous | scattered | padded (trailing rows) | padded_mid (rows inside the batch)
    write_back: bool        # the final state is written back to the pool
    intermediate: bool      # mtp: the state after every step goes to an intermediate buffer
    tree: bool              # mtp: parent-token tree; step t starts from the state after step parent[t]
    seed: int
    model: str = ""         # heads preset label, e.g. "qwen3-next-80b/tp4" ("" for an explicit pair)

    @cached_property
    def id(self) -> str:
        """Stable, filename-safe id: readable prefix + hash of every key field."""
        key = json.dumps({f: getattr(self, f) for f in KEY_FIELDS}, sort_keys=True)
        digest = hashlib.sha1(key.encode()).hexdigest()[:8]
        parts = [self.phase, f"b{self.batch}", f"h{self.hk}x{self.hv}", f"d{self.head_dim_k}x{self.head_dim_v}",
                 self.layout.replace("_", ""), DTYPE_SHORT[self.state_dtype], DTYPE_SHORT[self.dtype]]
        if self.phase == "mtp":
            parts.append(f"t{self.tokens}")
            parts += [flag for flag, on in (("inter", self.intermediate), ("tree", self.tree)) if on]
            parts.append("wb" if self.write_back else "nowb")
        if self.phase == "prefill":
            parts.append(f"l{self.tokens}")
        parts += [self.pool, f"s{self.seed}", digest]
        return "-".join(parts)

    # ---- derived sizes -------------------------------------------------------------------------
    @property
    def lens(self) -> tuple[int, ...]:
        """Per-sequence lengths: prefill from seq_lens, otherwise ``(tokens,) * batch``."""
        return parse_seq_lens(self.seq_lens) if self.phase == "prefill" else (self.tokens,) * self.batch

    @property
    def padded(self) -> bool:
        """Some rows have slot index -1 (pools ``padded`` and ``padded_mid``)."""
        return self.pool in PADDED_POOLS

    @property
    def cu_seqlens(self) -> list[int]:
        """Start offset of every sequence (prefill) or row in the token stream, and the total:
        [0, l0, l0 + l1, ..., sum(lens)]."""
        out = [0]
        for n in self.lens:
            out.append(out[-1] + n)
        return out

    @property
    def n_padded(self) -> int:
        """Rows whose slot index is -1: 1/8 of the batch (at least one, never all)."""
        return len(self.padded_rows)

    @property
    def padded_rows(self) -> tuple[int, ...]:
        """Which rows are padded. ``padded``: the trailing ones, as a serving engine pads a CUDA-graph
        batch; ``padded_mid``: spread through the batch, never the first or last row (a finished or
        aborted request's row, or a kernel that indexes rows by position rather than by count)."""
        n = min(self.batch - 1, max(1, self.batch // 8))
        if self.pool == "padded":
            return tuple(range(self.batch - n, self.batch))
        if self.pool == "padded_mid":
            step = (self.batch - 1) / (n + 1)
            return tuple(sorted({min(self.batch - 2, max(1, round(step * (i + 1)))) for i in range(n)}))
        return ()

    @property
    def n_valid(self) -> int:
        """Rows with a real slot."""
        return self.batch - len(self.padded_rows)

    @property
    def valid_tokens(self) -> int:
        pad = set(self.padded_rows)
        return sum(n for i, n in enumerate(self.lens) if i not in pad)

    @property
    def state_elems(self) -> int:
        """Elements of one slot's state (one request, one layer): hv * K * V."""
        return self.hv * self.head_dim_k * self.head_dim_v

    def invalid_reason(self) -> str | None:
        """Why this combination of axis values is not a meaningful case (dropped at expansion)."""
        if self.pool == "padded" and self.batch < 2:
            return "pool 'padded' needs batch >= 2 (at least one row stays valid)"
        if self.pool == "padded_mid" and self.batch < 3:
            return "pool 'padded_mid' needs batch >= 3 (a padded row between two valid ones)"
        if self.tree and not self.intermediate:
            return "tree verify reads parent states from the intermediate buffer: needs intermediate"
        if self.tree and self.write_back:
            return "tree verify has no single final state to write back: needs write_back false"
        return None

    # ---- declared work (the only source of GB/s and TFLOP/s) ---------------------------------
    def bytes_moved(self) -> int:
        """Fewest bytes a kernel must move for this case (valid rows only).

        Inputs q, k, v, a, b read once, output written once (input dtype), A_log and dt_bias (fp32)
        and the slot indices, the state read once and written once when ``write_back``, and one state
        written per step into the intermediate buffer. Tree verify's parent-state reloads are not
        counted (a lower bound).
        """
        ib, sb = DTYPE_BYTES[self.dtype], DTYPE_BYTES[self.state_dtype]
        K, V = self.head_dim_k, self.head_dim_v
        rows, tok = self.n_valid, self.valid_tokens
        qk = 2 * tok * self.hk * K * ib
        vo = 2 * tok * self.hv * V * ib
        gates = 2 * tok * self.hv * ib + 2 * self.hv * 4
        index = self.batch * 4
        state = rows * self.state_elems * sb * (1 + int(self.write_back))
        inter = tok * self.state_elems * sb if self.intermediate else 0
        return qk + vo + gates + index + state + inter

    def state_bytes(self) -> int:
        """State bytes read + written (the dominant term for decode; the usual 'state GB/s')."""
        sb = DTYPE_BYTES[self.state_dtype]
        inter = self.n_valid * self.tokens * self.state_elems * sb if self.intermediate else 0
        return self.n_valid * self.state_elems * sb * (1 + int(self.write_back)) + inter

    def flops(self) -> int:
        """Recurrent-form flops: 6*K*V per token and value head (H@k, rank-1 update, H@q; FlashInfer's model)."""
        return 6 * self.valid_tokens * self.hv * self.head_dim_k * self.head_dim_v

    def where_env(self) -> dict[str, object]:
        env: dict[str, object] = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        env["n_seqs"] = self.batch
        env["total_tokens"] = sum(self.lens)
        return env

    def as_row(self) -> dict[str, object]:
        """Case columns of a CSV row."""
        row: dict[str, object] = {"case_id": self.id}
        row.update({f.name: getattr(self, f.name) for f in dataclasses.fields(self)})
        row["n_padded"] = self.n_padded
        return row

    @classmethod
    def from_row(cls, row: Mapping[str, object]) -> Case:
        """The case a results row describes: its case columns as ``rows.csv`` (strings) or pandas (numbers,
        numpy booleans, NaN for an empty label) give them. The inverse of ``as_row``."""
        def value(f: dataclasses.Field) -> object:
            v = row.get(f.name, "")
            if f.type == "int":
                return int(v)
            if f.type == "bool":
                return str(v) == "True"
            return "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)

        return cls(**{f.name: value(f) for f in dataclasses.fields(cls)})


# The fields that identify a case (its id hashes them): all but the heads preset's label.
KEY_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Case) if f.name != "model")


@dataclass(frozen=True)
class Expansion:
    """The cases of a sweep and what was left out (reason -> count)."""

    cases: list[Case]
    dropped: Counter
    filtered: int


def _case_from(phase: str, values: dict[str, object]) -> Case:
    heads = values["heads"]
    lens = list(values["seq_lens"])  # type: ignore[arg-type]
    prefill = phase == "prefill"
    return Case(
        phase=phase,
        batch=len(lens) if prefill else int(values["batch"]),  # type: ignore[arg-type]
        hk=heads.hk, hv=heads.hv,  # type: ignore[attr-defined]
        head_dim_k=int(values["head_dim_k"]), head_dim_v=int(values["head_dim_v"]),  # type: ignore[arg-type]
        layout=str(values["layout"]), state_dtype=str(values["state_dtype"]), dtype=str(values["dtype"]),
        tokens=sum(lens) if prefill else int(values["tokens"]),  # type: ignore[arg-type]
        seq_lens=format_seq_lens(lens) if prefill else "",
        pool=str(values["pool"]),
        write_back=bool(values["write_back"]),
        intermediate=bool(values["intermediate"]) and phase == "mtp",
        tree=bool(values["tree"]) and phase == "mtp",
        seed=int(values["seed"]),  # type: ignore[arg-type]
        model=heads.model,  # type: ignore[attr-defined]
    )


def expand(sweep: Sweep) -> Expansion:
    """Cartesian product of the sweep's axes (zip groups advance together), minus invalid
    combinations and cases rejected by ``where``. Order: axes in declaration order, last fastest."""
    axes = sweep.axes
    names = list(type(axes).model_fields)
    grouped = {axis: tuple(group) for group in sweep.zip for axis in group}
    dims: list[tuple[tuple[str, ...], list[tuple[object, ...]]]] = []
    done: set[str] = set()
    for name in names:
        if name in done:
            continue
        group = grouped.get(name, (name,))
        done.update(group)
        columns = [getattr(axes, g) for g in group]
        dims.append((group, list(zip(*columns))))
    filters = [parse_where(w) for w in sweep.where]
    cases: list[Case] = []
    seen: set[str] = set()
    dropped: Counter = Counter()
    filtered = 0
    for combo in itertools.product(*(values for _, values in dims)):
        values: dict[str, object] = {}
        for (group, _), vals in zip(dims, combo):
            values.update(zip(group, vals))
        case = _case_from(sweep.phase, values)
        reason = case.invalid_reason()
        if reason:
            dropped[reason] += 1
            continue
        if not _kept(case, sweep.where, filters):
            filtered += 1
            continue
        if case.id not in seen:
            seen.add(case.id)
            cases.append(case)
    return Expansion(cases=cases, dropped=dropped, filtered=filtered)


def _kept(case: Case, texts: list[str], filters: list) -> bool:
    """Whether every ``where`` filter keeps ``case`` (later filters are not evaluated once one drops
    it). A filter that parses but cannot be evaluated is a ConfigError naming the filter and the case,
    whichever entry point expands the sweep."""
    env = case.where_env()
    for i, (text, tree) in enumerate(zip(texts, filters)):
        try:
            if not eval_where(tree, env):
                return False
        except WhereError as e:
            raise ConfigError(f"where[{i}]: '{text}' cannot be evaluated on case {case.id} ({e})") from None
    return True


def check_where(sweep: Sweep, source: str) -> None:
    """Evaluate every ``where`` filter of the sweep (and of each ``per_sm`` merge) on its cases, so a
    filter that parses but cannot be evaluated (``batch / 0 > 1``) is a ConfigError at load time,
    naming the filter and the first case, not an error in the middle of a run."""
    for prefix, variant in where_variants(sweep, source):
        if not variant.where:
            continue
        try:
            expand(variant)
        except ConfigError as e:
            raise ConfigError(f"{prefix}{e}") from None
