"""capabilities.py: the matrix agrees with supports() and explains gaps."""

from __future__ import annotations

from rich.console import Console

from gdnbench.backends.base import Target
from gdnbench.backends.flashinfer import BACKEND as FI
from gdnbench.backends.torch_eager import BACKEND as TORCH
from gdnbench.capabilities import cell, print_matrix

SM90, SM100 = Target("cuda", 90, "sm90"), Target("cuda", 100, "sm100")


def test_cells():
    c = cell(FI, "decode", "v_last", "float32", SM90)
    assert c.pools == ("contiguous",) and c.head_dims == (128,) and any("no pool API" in g for g in c.gaps)
    c = cell(FI, "decode", "v_last", "float32", SM100)
    assert not c.supported and "not sm100" in c.reason
    c = cell(FI, "mtp", "k_last", "float32", SM90)
    assert "intermediate" in c.features and "tree" in c.missing
    c = cell(TORCH, "prefill", "v_last", "bfloat16", SM100)
    assert c.supported and c.head_dims == (64, 128, 256) and not c.gaps


def test_print_matrix():
    console = Console(record=True, width=250)
    print_matrix(console)
    text = console.export_text()
    for name in ("torch", "flashinfer", "flashinfer_kernel", "fla", "fla_kernel"):
        assert f" {name} " in text
    assert "sm100 (documented)" in text
