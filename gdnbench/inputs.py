"""Inputs: seeded random tensors for one case on one device (never zeros).

The state pool is laid out so that a stray write anywhere is detectable:

* slot 0 is the null slot (some libraries send padded rows there; nothing else may touch it);
* the slots a case uses have guard slots around them, and for scattered / padded pools between
  every two used slots (used slots are the even slots 2, 4, ..., 2B in a random row order);
* the pool a backend sees (``Inputs.pool``) is a view into ``pool_storage`` that has one more hidden
  canary slot before slot 0 and after the last slot, so a write past either end of the pool (an
  index of -1, or one past the end) lands in memory the gate compares bit for bit.

Every tensor is random: guard and unused slots too, so an unintended write of any value shows up.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass

import torch

from gdnbench.cases import Case
from gdnbench.vocab import DTYPE_BYTES

TORCH_DTYPES = {name: getattr(torch, name) for name in DTYPE_BYTES}  # "bfloat16" -> torch.bfloat16


def state_shape(case: Case) -> tuple[int, int, int]:
    """Per-slot state shape in the case's layout: k_last [hv, V, K], v_last [hv, K, V]."""
    if case.layout == "k_last":
        return (case.hv, case.head_dim_v, case.head_dim_k)
    return (case.hv, case.head_dim_k, case.head_dim_v)


def slot_assignment(case: Case, gen: torch.Generator) -> tuple[list[int], int]:
    """Pool slot per row (-1 for padded rows) and the pool size P.

    contiguous: rows use slots 2..B+1 in order (pool of B+3: null, guard, rows, guard), so
    ``pool[2:B+2]`` is a contiguous ``[B, ...]`` state for kernels without a pool API.
    scattered / padded: rows use the even slots 2..2B in a random order (pool of 2B+2), so every used
    slot has a guard on both sides; padded / padded_mid: the rows of ``case.padded_rows`` get -1.
    """
    B = case.batch
    if case.pool == "contiguous":
        return [2 + i for i in range(B)], pool_slots(case)
    perm = torch.randperm(B, generator=gen).tolist()
    slots = [2 + 2 * p for p in perm]
    for i in case.padded_rows:
        slots[i] = -1
    return slots, pool_slots(case)


def pool_slots(case: Case) -> int:
    """Pool size P of a case's inputs (``slot_assignment``): B + 3 for a contiguous pool, 2B + 2 otherwise."""
    return case.batch + 3 if case.pool == "contiguous" else 2 * case.batch + 2


@dataclass
class Inputs:
    """One input set of a case. Shapes (B rows, T tokens, L prefill tokens, N sequences, P pool slots):

    q, k ``[B, T, hk, K]`` (prefill ``[1, L, hk, K]``); v ``[B, T, hv, V]`` (prefill ``[1, L, hv, V]``),
    all ``case.dtype``; a, b ``[B, T, hv]`` (prefill ``[1, L, hv]``) raw gate projections, ``case.dtype``;
    A_log, dt_bias ``[hv]`` float32; slots ``[B]`` int32, -1 for padded rows; pool ``[P, *state_shape]``
    in ``case.state_dtype`` (a view, see module doc); cu_seqlens ``[N+1]`` int32 (prefill);
    parents ``[B, T]`` int32 (tree verify; parent[:, 0] = -1); inter ``[B, T, *state_shape]``
    intermediate-state buffer in ``case.state_dtype`` (a view with one hidden guard row either side).
    """

    case: Case
    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    a: torch.Tensor
    b: torch.Tensor
    A_log: torch.Tensor
    dt_bias: torch.Tensor
    slots: torch.Tensor
    pool_storage: torch.Tensor
    cu_seqlens: torch.Tensor | None = None
    parents: torch.Tensor | None = None
    inter_storage: torch.Tensor | None = None
    slot_list: tuple[int, ...] = ()

    @property
    def scale(self) -> float:
        return self.case.head_dim_k ** -0.5

    @property
    def pool(self) -> torch.Tensor:
        return self.pool_storage[1:-1]

    @property
    def inter(self) -> torch.Tensor | None:
        return None if self.inter_storage is None else self.inter_storage[1:-1]

    @property
    def device(self) -> torch.device:
        return self.q.device

    @property
    def valid_rows(self) -> list[int]:
        return [i for i, s in enumerate(self.slot_list) if s >= 0]

    def contiguous_state(self) -> torch.Tensor:
        """The rows' states as one ``[B, hv, ...]`` view of the pool, for APIs without slot indices.
        Only a contiguous pool has one (its rows use consecutive slots); writes go to the pool."""
        first = self.slot_list[0]
        if list(self.slot_list) != list(range(first, first + len(self.slot_list))):
            raise ValueError(f"pool '{self.case.pool}' has no contiguous [B, ...] view (slots {self.slot_list[:4]}...)")
        return self.pool[first: first + len(self.slot_list)]

    def tensors(self) -> dict[str, torch.Tensor]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if isinstance(getattr(self, f.name), torch.Tensor)}

    def clone(self) -> Inputs:
        """A deep copy (the gate and each timing set get their own pool)."""
        return dataclasses.replace(self, **{n: t.clone() for n, t in self.tensors().items()})

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors().values())

    def redraw_activations(self, seed: int) -> None:
        """New q, k, v and gate projections (a, b) written into the same tensors, as a serving engine
        writes the next step's activations into the buffers a CUDA graph was captured on. The batch's
        layout (slot indices, cu_seqlens, parents) and the state stay as they are."""
        gen = torch.Generator(device=self.device).manual_seed(seed)
        for t in (self.q, self.k, self.v, self.a, self.b):
            t.copy_(torch.randn(t.shape, generator=gen, device=self.device, dtype=torch.float32))


def _seed(case: Case, set_index: int) -> int:
    return int(hashlib.sha1(f"{case.id}/{set_index}".encode()).hexdigest()[:12], 16)


def make_inputs(case: Case, device: str | torch.device = "cpu", set_index: int = 0) -> Inputs:
    """Seeded inputs for ``case``; ``set_index`` gives the timer independent sets of the same case."""
    device = torch.device(device)
    gen = torch.Generator(device="cpu").manual_seed(_seed(case, set_index))
    dgen = torch.Generator(device=device).manual_seed(_seed(case, set_index) ^ 0x5EED)
    dt = TORCH_DTYPES[case.dtype]
    sdt = TORCH_DTYPES[case.state_dtype]
    K, V, hk, hv = case.head_dim_k, case.head_dim_v, case.hk, case.hv

    def randn(*shape: int, dtype: torch.dtype = dt, std: float = 1.0) -> torch.Tensor:
        x = torch.randn(*shape, generator=dgen, device=device, dtype=torch.float32)
        return (x * std).to(dtype)

    if case.phase == "prefill":
        lead = (1, case.tokens)
        cu_seqlens = torch.tensor(case.cu_seqlens, dtype=torch.int32, device=device)
    else:
        lead = (case.batch, case.tokens)
        cu_seqlens = None

    q = randn(*lead, hk, K)
    k = randn(*lead, hk, K)
    v = randn(*lead, hv, V)
    a = randn(*lead, hv)
    b = randn(*lead, hv)
    # Mamba-style initialisation: A = exp(A_log) in [1, 16]; dt_bias = softplus^-1(dt), dt in [1e-3, 1e-1].
    u = torch.rand(hv, generator=dgen, device=device)
    A_log = torch.log(1 + 15 * u).float()
    dt_ = torch.exp(math.log(1e-3) + torch.rand(hv, generator=dgen, device=device) * (math.log(1e-1) - math.log(1e-3)))
    dt_bias = (dt_ + torch.log(-torch.expm1(-dt_))).float()

    slot_list, P = slot_assignment(case, gen)
    slots = torch.tensor(slot_list, dtype=torch.int32, device=device)
    # 0.1 keeps state entries at the scale that the rank-1 updates (|k| = 1, |v| ~ 1) give them.
    pool_storage = randn(P + 2, *state_shape(case), dtype=sdt, std=0.1)

    parents = None
    inter_storage = None
    if case.phase == "mtp":
        if case.tree:
            T = case.tokens
            par = torch.full((case.batch, T), -1, dtype=torch.int32)
            for t in range(1, T):
                par[:, t] = torch.randint(0, t, (case.batch,), generator=gen, dtype=torch.int32)
            parents = par.to(device)
        if case.intermediate:
            inter_storage = randn(case.batch + 2, case.tokens, *state_shape(case), dtype=sdt, std=0.1)
    return Inputs(case=case, q=q, k=k, v=v, a=a, b=b, A_log=A_log, dt_bias=dt_bias, slots=slots,
                  pool_storage=pool_storage, cu_seqlens=cu_seqlens, parents=parents,
                  inter_storage=inter_storage, slot_list=tuple(slot_list))
