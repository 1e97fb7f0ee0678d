"""capabilities.py: the matrix agrees with supports() and explains gaps."""

from __future__ import annotations

from rich.console import Console

from gdnbench.backends.base import Target
from gdnbench.backends.flashinfer import BACKEND as FI
from gdnbench.backends.torch_eager import BACKEND as TORCH
from gdnbench.capabilities import HEAD_DIMS, cell, print_matrix, probe_case

SM90, SM100 = Target("cuda", 90, "sm90"), Target("cuda", 100, "sm100")


def test_cells():
    c = cell(FI, "decode", "v_last", "float32", SM90)
    assert c.pools == ("contiguous",) and c.head_dims == ((128, 128),) and any("no pool API" in g for g in c.gaps)
    assert "K x V 128x128" in c.text()
    c = cell(FI, "decode", "v_last", "float32", SM100)
    assert not c.supported and "not sm100" in c.reason
    c = cell(FI, "mtp", "k_last", "float32", SM90)
    assert "intermediate" in c.features and "tree" in c.missing
    c = cell(TORCH, "prefill", "v_last", "bfloat16", SM100)
    assert c.supported and c.head_dims == HEAD_DIMS and not c.gaps


def test_matrix_claims_match_supports():
    """Every head-dim claim of a cell is exactly what supports() accepts: torch, which runs 16x32 and
    K = 7, is shown as taking any K x V; a backend taking only some probes lists exactly those."""
    c = cell(TORCH, "decode", "k_last", "float32", SM90)
    assert "any K x V" in c.text() and "16x32" in c.text() and "7x7" in c.text()
    for backend in (TORCH, FI):
        for phase in ("decode", "mtp", "prefill"):
            c = cell(backend, phase, "k_last", "bfloat16", SM90)
            for dims in HEAD_DIMS:
                accepted = any(backend.supports(probe_case(phase, "k_last", "bfloat16", pool, dims), SM90) is None
                               for pool in ("contiguous", "scattered", "padded"))
                assert (dims in c.head_dims) == accepted, (backend.name, phase, dims)


def test_print_matrix():
    console = Console(record=True, width=250)
    print_matrix(console)
    text = console.export_text()
    for name in ("torch", "flashinfer", "flashinfer_kernel", "fla", "fla_kernel"):
        assert f" {name} " in text
    assert "sm100 (documented)" in text
