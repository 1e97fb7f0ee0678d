"""A case's gate inputs and float64 reference are built once for all its pairs: in a plain sweep's
pass over a case, and across a scale-out worker's consecutive pairs of one case (runner.CaseInputs),
whose driver hands a worker the next pair of the case it ran last (distributed.pick)."""

from __future__ import annotations

from collections import deque
from types import SimpleNamespace

import pytest
from conftest import tiny_case

import gdnbench.runner as runner
from gdnbench.backends import get_backend
from gdnbench.backends.base import Target
from gdnbench.distributed import AFFINITY_WINDOW, pick

CPU = Target("cpu", None, "cpu")


@pytest.fixture
def builds(monkeypatch):
    """Count make_inputs calls (each one also runs the float64 reference)."""
    calls: list[str] = []
    real = runner.make_inputs

    def counted(case, device):
        calls.append(case.id)
        return real(case, device)

    monkeypatch.setattr(runner, "make_inputs", counted)
    return calls


def test_worker_pairs_of_one_case_share_inputs(builds):
    torch_b = get_backend("torch")
    a, b = tiny_case(batch=2), tiny_case(batch=3)
    keep = runner.CaseInputs("cpu")
    rows = [runner.run_pair(c, torch_b, "r", CPU, None, None, None, keep)[0] for c in (a, a, a, b, a)]
    assert [r.status for r in rows] == ["ok"] * 5 and all(r.check == "pass" for r in rows)
    assert builds == [a.id, b.id, a.id] and keep.builds == 3   # a once for its three pairs, then b, then a again
    keep.release()
    assert keep.template is None and keep.case_id is None


def test_without_a_keeper_each_pair_builds_its_own(builds):
    torch_b = get_backend("torch")
    a = tiny_case()
    for _ in range(2):
        runner.run_pair(a, torch_b, "r", CPU, None, None)
    assert builds == [a.id, a.id]


def test_plain_pass_builds_once_per_case_and_skips_build_for_unsupported(builds):
    a, b = tiny_case(batch=2), tiny_case(batch=3)
    backends = [get_backend("torch"), get_backend("torch")]
    rows = list(runner.gate_rows([a, b], backends, "r", CPU, set()))
    assert len(rows) == 4 and builds == [a.id, b.id]
    # a backend that does not run the case never builds its inputs
    builds.clear()
    rows = list(runner.gate_rows([a], [get_backend("flashinfer")], "r", CPU, set()))
    assert rows[0][0].status == "skipped" and builds == []


def test_build_error_is_every_pair_of_the_case(monkeypatch):
    def boom(case, device):
        raise MemoryError("float64 reference too large")

    monkeypatch.setattr(runner, "make_inputs", boom)
    keep = runner.CaseInputs("cpu")
    a = tiny_case()
    rows = [runner.run_pair(a, get_backend("torch"), "r", CPU, None, None, None, keep)[0] for _ in range(2)]
    assert [r.status for r in rows] == ["error", "error"]
    assert all("inputs/reference: MemoryError" in r.reason for r in rows) and keep.builds == 1


def task(case: str, avoid: int | None = None):
    return SimpleNamespace(case=SimpleNamespace(id=case), avoid=avoid)


def test_pick_prefers_the_workers_last_case():
    q = deque([task("c1"), task("c2"), task("c2"), task("c3")])
    assert pick(q, 0, None, True) == 0          # nothing run yet: the front
    assert pick(q, 0, "c2", True) == 1          # its last case is still queued
    assert pick(q, 0, "c9", True) == 0          # its last case is finished: the front
    assert pick(deque(), 0, "c1", True) is None


def test_pick_leaves_a_lost_pair_to_another_worker():
    q = deque([task("c1", avoid=0), task("c2")])
    assert pick(q, 0, "c1", True) == 1          # lost on worker 0: another worker takes it
    assert pick(q, 1, "c1", True) == 0
    assert pick(q, 0, "c1", False) == 0         # the only worker takes it anyway
    assert pick(deque([task("c1", avoid=0)]), 0, None, True) is None


def test_pick_searches_a_window_only():
    q = deque([task(f"c{i}") for i in range(AFFINITY_WINDOW + 5)] + [task("late")])
    assert pick(q, 0, "late", True) == 0        # beyond the window: the front, no full scan
    assert pick(q, 0, f"c{AFFINITY_WINDOW - 1}", True) == AFFINITY_WINDOW - 1
