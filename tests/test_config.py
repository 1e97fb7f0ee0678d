"""config.py: loading, presets, zip/where/per_sm, and one-line errors for every kind of bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from pydantic import ValidationError
from hypothesis import strategies as st
from typer.testing import CliRunner

from gdnbench.cli import app
from gdnbench.config import ConfigError, load_sweep, parse_sweep, resolve_preset

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))
VALID = {"phase": "decode", "backends": ["torch"],
         "axes": {"batch": [1, 2], "heads": [[2, 4]], "head_dim_k": [16], "head_dim_v": [16]}}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_shipped_configs_load(path):
    sweep = load_sweep(path)
    assert sweep.name == path.stem and sweep.baseline in sweep.backends


def test_required_configs_shipped():
    assert {p.stem for p in CONFIGS} >= {"decode", "mtp", "prefill", "smoke-cpu"}


@pytest.mark.parametrize("name,expected", [
    ("qwen3-next-80b", (16, 32)), ("qwen3-next-80b/tp4", (4, 8)), ("qwen3.5-397b/tp8", (2, 8)),
    ("qwen3.5-27b/tp2", (8, 24)), ("qwen3.5-27b", (16, 48)),
])
def test_presets(name, expected):
    assert resolve_preset(name) == expected


def test_heads_presets_and_pairs_resolve():
    s = parse_sweep({**VALID, "axes": {"heads": ["qwen3.5-397b/tp4", [8, 16]]}})
    assert [(h.hk, h.hv, h.model) for h in s.axes.heads] == [(4, 16, "qwen3.5-397b/tp4"), (8, 16, "")]


def test_frozen():
    s = parse_sweep(VALID)
    with pytest.raises(ValidationError):
        s.phase = "mtp"  # type: ignore[misc]


def test_per_sm_override_merges():
    s = parse_sweep({**VALID, "per_sm": {"sm100": {"axes": {"batch": [1024]}, "where": ["batch > 1"]}}})
    assert s.for_sm(90) is s
    m = s.for_sm(100)
    assert m.axes.batch == [1024] and m.where == ["batch > 1"] and m.axes.heads == s.axes.heads
    w = s.with_where(["batch < 2048"])  # the command line's filters, kept by the merge
    assert w.where == ["batch < 2048"] and w.for_sm(100).where == ["batch < 2048", "batch > 1"]
    assert s.where == [] and s.with_where(None) is s


BAD = [
    ("unknown key", {**VALID, "bogus": 1}, "bogus: unknown key 'bogus' (allowed: name, description, phase"),
    ("unknown axis", {**VALID, "axes": {"bach": [1]}}, "axes.bach: unknown key 'bach'"),
    ("wrong type", {**VALID, "axes": {"batch": [1, "x"]}}, "axes.batch[1]: Input should be a valid integer"),
    ("wrong type bool", {**VALID, "axes": {"write_back": ["yes"]}}, "axes.write_back[0]: Input should be a valid boolean"),
    ("unknown backend", {**VALID, "backends": ["torch", "nope"]}, "backends[1]: unknown backend 'nope' (allowed: torch"),
    ("unknown baseline", {**VALID, "baseline": "nope"}, "baseline: unknown backend 'nope'"),
    ("baseline not run", {**VALID, "backends": ["torch"], "baseline": "torch", "per_sm": {"sm90": {"backends": []}}},
     "per_sm.sm90.backends: must not be empty"),
    ("unknown preset", {**VALID, "axes": {"heads": ["qwen9"]}}, "axes.heads[0]: unknown heads preset 'qwen9' (allowed: qwen3-next-80b"),
    ("bad tp", {**VALID, "axes": {"heads": ["qwen3-next-80b/tp3"]}}, "unknown heads preset 'qwen3-next-80b/tp3'"),
    ("hv not multiple", {**VALID, "axes": {"heads": [[16, 30]]}}, "axes.heads[0]: hv=30 is not a multiple of hk=16"),
    ("empty axis", {**VALID, "axes": {"batch": []}}, "axes.batch: must not be empty"),
    ("bad literal", {**VALID, "axes": {"layout": ["k_first"]}}, "axes.layout[0]: Input should be 'k_last' or 'v_last'"),
    ("missing phase", {"backends": ["torch"]}, "phase: required key is missing"),
    ("zero batch", {**VALID, "axes": {"batch": [0]}}, "axes.batch[0]: must be a positive integer, got 0"),
    ("zip lengths", {**VALID, "zip": [["batch", "seed"]]}, "zip: axes of one group need equal lengths"),
    ("where syntax", {**VALID, "where": ["batch >"]}, "where[0]: 'batch >' is not a valid expression"),
    ("where name", {**VALID, "where": ["bogus > 1"]}, "unknown name 'bogus'"),
    ("where call", {**VALID, "where": ["__import__('os')"]}, "Call is not allowed"),
    ("per_sm key", {**VALID, "per_sm": {"hopper": {}}}, "per_sm: key 'hopper' is not an SM generation"),
    ("per_sm merged", {**VALID, "per_sm": {"sm90": {"axes": {"heads": [[3, 4]]}}}}, "per_sm.sm90 (merged): axes.heads[0]: hv=4 is not a multiple of hk=3"),
    ("seq_lens in decode", {**VALID, "axes": {"seq_lens": [[4]]}}, "seq_lens only applies to prefill"),
    ("prefill without seq_lens", {"phase": "prefill", "backends": ["torch"]}, "phase prefill needs axes.seq_lens"),
    ("mtp T=1", {"phase": "mtp", "backends": ["torch"], "axes": {"tokens": [1]}}, "mtp (verify) needs tokens >= 2"),
    ("timing order", {**VALID, "timing": {"min_samples": 5, "max_samples": 2}}, "max_samples (2) < min_samples (5)"),
]


@pytest.mark.parametrize("data,expected", [(d, e) for _, d, e in BAD], ids=[n for n, _, _ in BAD])
def test_bad_config_one_line(data, expected):
    with pytest.raises(ConfigError) as info:
        parse_sweep(data, source="cfg.yaml")
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("cfg.yaml: ")
    assert expected in msg


def run_cli(*args):
    return CliRunner().invoke(app, list(args))


def assert_one_line_exit_2(result, *needles):
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for n in needles:
        assert n in lines[0]


def test_malformed_yaml_cli(write_yaml):
    p = write_yaml("phase: decode\nbackends: [torch\n")
    assert_one_line_exit_2(run_cli("plan", str(p)), str(p), "malformed YAML")


def test_not_a_mapping_cli(write_yaml):
    assert_one_line_exit_2(run_cli("plan", str(write_yaml("- 1\n- 2\n"))), "expected a mapping")


def test_missing_file_cli(tmp_path):
    assert_one_line_exit_2(run_cli("plan", str(tmp_path / "nope.yaml")), "no such config file", "smoke-cpu")


@pytest.mark.parametrize("data,expected", [(d, e) for _, d, e in BAD], ids=[n for n, _, _ in BAD])
def test_bad_config_cli_exit_2(write_yaml, data, expected):
    p = write_yaml(yaml.safe_dump(data))
    for cmd in ("plan", "check", "sweep"):
        assert_one_line_exit_2(run_cli(cmd, str(p)), str(p), expected)


# ---- hypothesis: arbitrary corruptions of a valid config always give one line and exit 2 ----------
AXES = ["batch", "heads", "head_dim_k", "head_dim_v", "layout", "state_dtype", "pool", "seed"]
junk = st.one_of(st.text(max_size=8), st.integers(-5, 5), st.floats(allow_nan=False, width=16), st.booleans(),
                 st.none(), st.lists(st.integers(-3, 3), max_size=3))


@st.composite
def broken_configs(draw):
    data = yaml.safe_load(yaml.safe_dump(VALID))
    kind = draw(st.sampled_from(["unknown_key", "wrong_type", "backend", "preset", "hv", "empty", "junk_value"]))
    if kind == "unknown_key":
        where = draw(st.sampled_from(["top", "axes", "timing"]))
        key = "x_" + draw(st.text("abcdefgh", min_size=1, max_size=6))
        (data if where == "top" else data.setdefault(where, {}))[key] = draw(junk)
    elif kind == "wrong_type":
        axis = draw(st.sampled_from(["batch", "head_dim_k", "seed"]))
        data["axes"][axis] = [draw(st.sampled_from(["x", 1.5, None, [1]]))]
    elif kind == "backend":
        data["backends"] = ["torch", draw(st.text("xyzw", min_size=1, max_size=5))]
    elif kind == "preset":
        data["axes"]["heads"] = [draw(st.text("abcxyz-./", min_size=1, max_size=12))]
    elif kind == "hv":
        hk = draw(st.integers(2, 16))
        hv = draw(st.integers(1, 64).filter(lambda v: v % hk != 0))
        data["axes"]["heads"] = [[hk, hv]]
    elif kind == "empty":
        data["axes"][draw(st.sampled_from(AXES))] = []
    else:
        data[draw(st.sampled_from(["phase", "backends", "axes", "zip", "where", "timing"]))] = draw(
            st.one_of(st.integers(), st.text(max_size=5).filter(lambda t: t not in ("decode", "mtp", "prefill"))))
    return data


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=broken_configs())
def test_hypothesis_bad_configs(tmp_path, data):
    p = tmp_path / "h.yaml"
    p.write_text(yaml.safe_dump(data))
    assert_one_line_exit_2(run_cli("plan", str(p)), str(p))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet="[]{}:,-'\" \nabc1", max_size=40))
def test_hypothesis_garbage_yaml(tmp_path, text):
    p = tmp_path / "g.yaml"
    p.write_text(text)
    result = run_cli("plan", str(p))
    assert_one_line_exit_2(result, str(p))


# ---- a config's size is bounded, and refused at once ----------------------------------------------
HUGE = {**VALID, "axes": {**VALID["axes"], "batch": list(range(1, 1001)), "seed": list(range(10_000))}}


def test_huge_config_refused_fast(write_yaml, monkeypatch):
    import time

    monkeypatch.delenv("GDNBENCH_MAX_PAIRS", raising=False)
    p = write_yaml(yaml.safe_dump(HUGE))
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match="10,000,000"):
        load_sweep(p)  # counted from the axes' lengths, never expanded
    assert time.perf_counter() - t0 < 1.0
    for cmd in ("plan", "sweep", "check"):
        t0 = time.perf_counter()
        r = run_cli(cmd, str(p))
        assert time.perf_counter() - t0 < 5.0  # the CLI's imports on a loaded 2-core machine included
        assert_one_line_exit_2(r, str(p), "10,000,000 (case, backend) pairs", "limit of 100,000", "max_pairs")


def test_size_limit_counts_zip_and_backends_and_can_be_raised(monkeypatch):
    monkeypatch.delenv("GDNBENCH_MAX_PAIRS", raising=False)
    data = {**VALID, "backends": ["torch", "triton"], "axes": {**VALID["axes"], "batch": list(range(1, 301)),
                                                               "seed": list(range(300))}, "zip": [["batch", "seed"]]}
    assert parse_sweep(data).pair_count() == 600  # zipped: 300 combinations x 2 backends
    with pytest.raises(ConfigError, match="600 .case, backend. pairs"):
        parse_sweep({**data, "max_pairs": 599}, source="cfg.yaml")
    monkeypatch.setenv("GDNBENCH_MAX_PAIRS", "1000")
    parse_sweep({**data, "max_pairs": 599})  # the environment overrides the config
    monkeypatch.setenv("GDNBENCH_MAX_PAIRS", "many")
    with pytest.raises(ConfigError, match="GDNBENCH_MAX_PAIRS='many' is not a positive integer"):
        parse_sweep(data)


# ---- where filters that parse but cannot be evaluated -------------------------------------------
@pytest.mark.parametrize("expr,needle", [
    ("batch / 0 > 1", "ZeroDivisionError"),
    ("layout > 3", "TypeError"),
    ("'a' * 100000000000 == phase", "repeats a sequence into 100000000000 items"),
    ("phase == 100000000000 * ('a',)", "repeats a sequence"),
    ("'%099999999999d' % batch == phase", "string formatting"),
    ("-layout == 1", "TypeError"),
    ("batch in 3", "TypeError"),
])
def test_where_evaluation_errors(write_yaml, expr, needle):
    import tracemalloc

    p = write_yaml(yaml.safe_dump({**VALID, "where": [expr]}))
    tracemalloc.start()
    r = run_cli("plan", str(p))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 200 * 2**20  # nothing huge was built
    assert_one_line_exit_2(r, str(p), "where[0]", "cannot be evaluated on case", needle)
    for cmd in ("sweep", "check"):
        assert_one_line_exit_2(run_cli(cmd, str(p)), "where[0]", needle)


def test_where_error_from_any_entry_point():
    # the Python API (load_sweep + run_sweep, trace, sanitize) expands without cli.load's check
    from gdnbench.cases import expand

    with pytest.raises(ConfigError, match=r"^where\[0\]: 'batch / 0 > 1' cannot be evaluated on case .*ZeroDivision"):
        expand(parse_sweep({**VALID, "where": ["batch / 0 > 1"]}))


def test_where_evaluated_as_expand_does():
    # a later filter is not evaluated on a case an earlier one dropped (and/or short-circuit too)
    from gdnbench.cases import check_where

    check_where(parse_sweep({**VALID, "axes": {**VALID["axes"], "batch": [1, 2]},
                             "where": ["batch > 1", "4 / (batch - 1) > 1", "batch == 1 or 4 / (batch - 1) > 1"]}),
                "cfg.yaml")
    with pytest.raises(ConfigError, match=r"per_sm.sm90 \(merged\): where\[0\]"):
        check_where(parse_sweep({**VALID, "per_sm": {"sm90": {"where": ["batch // 0 > 1"]}}}, source="cfg.yaml"),
                    "cfg.yaml")
