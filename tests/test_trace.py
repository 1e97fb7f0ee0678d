"""trace.py: parsing stored `nsys stats` CSVs, kernels.csv, the join onto rows, the consistency
report; the CLI without nsys; the PyTorch-profiler fallback on the CPU."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from gdnbench.cli import app
from gdnbench.rows import Row, RowWriter
from gdnbench.trace import (analyse, consistency, join_rows, kernels_table, profile_command, range_key,
                            read_nvtx_gpu_proj_sum, read_nvtx_kern_sum, short_kernel)

FIX = Path(__file__).parent / "fixtures" / "nsys"
IDS = {"b32": "decode-b32-h16x32-d128x128-klast-bf16-bf16-scattered-s0-aaaa0001",
       "b1": "decode-b1-h16x32-d128x128-klast-f32-bf16-scattered-s0-aaaa0002",
       "b512": "decode-b512-h16x32-d128x128-klast-f32-bf16-scattered-s0-aaaa0003"}


def test_range_key_with_and_without_domain():
    assert range_key("gdnbench:decode|torch|c1") == ("decode", "torch", "c1")
    assert range_key(":decode|torch|c1") == ("decode", "torch", "c1")
    assert range_key("decode|torch|c1") == ("decode", "torch", "c1")
    assert range_key(":some other range") is None


def test_read_nvtx_kern_sum():
    k = read_nvtx_kern_sum(FIX / "decode_nvtx_kern_sum.csv")
    assert set(k.backend) == {"flashinfer", "torch", "fla"} and len(k) == 9  # foreign range dropped
    fi = k[(k.backend == "flashinfer") & (k.case_id == IDS["b32"])].iloc[0]
    assert fi.kern_inst == 900 and fi.total_ns == 26_550_000.0 and fi.med_ns == 29480.0


def rows_frame(tmp_path: Path) -> pd.DataFrame:
    from gdnbench.analysis import load_results

    w = RowWriter(tmp_path)
    # graph mode: 10 samples x 90 launches = 900 launches in each range
    for backend, med in (("flashinfer", 29.6), ("torch", 52.0), ("fla", 80.0)):
        w.write(Row(case_id=IDS["b32"], backend=backend, phase="decode", status="ok", check="pass", median_us=med,
                    n_samples=10, launches_per_sample=90, timing_mode="graph"))
    w.write(Row(case_id=IDS["b1"], backend="flashinfer", phase="decode", status="ok", check="pass", median_us=4.9,
                n_samples=100, launches_per_sample=101, timing_mode="graph"))
    w.write(Row(case_id=IDS["b512"], backend="flashinfer", phase="decode", status="ok", check="pass", median_us=741.0,
                n_samples=10, launches_per_sample=1, timing_mode="events"))
    w.write(Row(case_id="decode-untraced", backend="torch", phase="decode", status="ok", check="pass", median_us=5.0,
                n_samples=10, launches_per_sample=4, timing_mode="graph"))
    return load_results([tmp_path / "rows.csv"])


def test_kernels_table_and_join(tmp_path):
    rows = rows_frame(tmp_path)
    kernels = kernels_table(read_nvtx_kern_sum(FIX / "decode_nvtx_kern_sum.csv"), rows)
    torch_k = kernels[(kernels.backend == "torch")]
    assert sorted(torch_k.per_launch) == [1.0, 2.0]  # 1800 and 900 instances over 900 launches
    timer_k = kernels[kernels.timer_kernel]
    assert set(timer_k.case_id) == {IDS["b512"]} and len(timer_k) == 2  # flush fill + host-cover sleep
    proj = read_nvtx_gpu_proj_sum(FIX / "decode_nvtx_gpu_proj_sum.csv")
    j = join_rows(rows, kernels, proj).set_index(["case_id", "backend"])
    assert j.loc[(IDS["b32"], "flashinfer")].nsys_kernel_us == pytest.approx(29.5)
    assert j.loc[(IDS["b32"], "torch")].nsys_kernel_us == pytest.approx((10.8e6 + 9.6e6) / 900 / 1e3)
    assert j.loc[(IDS["b32"], "torch")].nsys_kernels_per_launch == pytest.approx(3.0)
    assert j.loc[(IDS["b512"], "flashinfer")].nsys_kernel_us == pytest.approx(740.0)  # timer kernels excluded
    assert j.loc[(IDS["b32"], "flashinfer")].nsys_gpu_span_us == pytest.approx(26.7e6 / 900 / 1e3)
    assert pd.isna(j.loc[("decode-untraced", "torch")].nsys_kernel_us)
    assert "index_select_kernel" in j.loc[(IDS["b32"], "torch")].nsys_kernels


def test_consistency_flags_with_reasons(tmp_path):
    rows = rows_frame(tmp_path)
    kernels = kernels_table(read_nvtx_kern_sum(FIX / "decode_nvtx_kern_sum.csv"), rows)
    findings, checked, unmatched = consistency(join_rows(rows, kernels), kernels)
    assert checked == 5 and unmatched == 1
    flagged = {(f.backend, f.case_id): f for f in findings}
    # flashinfer b32 (29.6 vs 29.5) and b512 (741 vs 740) agree; b1 differs by 0.9 µs (< 1 µs): not flagged
    assert set(flagged) == {("torch", IDS["b32"]), ("fla", IDS["b32"])}
    torch_reason = flagged[("torch", IDS["b32"])].reason
    assert "not kernel time" in torch_reason and "helper kernels" in torch_reason and "index_select_kernel" in torch_reason


def test_analyse_writes_outputs(tmp_path):
    rows_frame(tmp_path)
    prefix = tmp_path / "traces" / "decode"
    prefix.parent.mkdir()
    for report in ("nvtx_kern_sum", "nvtx_gpu_proj_sum"):
        (Path(f"{prefix}_{report}.csv")).write_text((FIX / f"decode_{report}.csv").read_text())
    out = analyse(tmp_path, prefix)
    assert pd.read_csv(out["kernels"]).shape[0] == 9
    assert "nsys_kernel_us" in pd.read_csv(out["rows"]).columns
    md = out["report"].read_text()
    assert "flagged: 2" in md and "| torch |" in md


def test_analyse_checks_the_untraced_timer_against_the_traced_kernels(tmp_path):
    """The timer's figure comes from the untraced run; launch counts and kernels from the traced one."""
    traced = tmp_path / "traced"
    rows_frame(traced)  # the traced run: FlashInfer b32 29.6 µs over 900 launches
    w = RowWriter(tmp_path)  # the untraced run: different sample counts, FlashInfer b32 at 31.5 µs
    for backend, med in (("flashinfer", 31.5), ("torch", 50.0), ("fla", 78.0)):
        w.write(Row(case_id=IDS["b32"], backend=backend, phase="decode", status="ok", check="pass", median_us=med,
                    n_samples=50, launches_per_sample=90, timing_mode="graph"))
    prefix = tmp_path / "traces" / "decode"
    prefix.parent.mkdir()
    for report in ("nvtx_kern_sum", "nvtx_gpu_proj_sum"):
        (Path(f"{prefix}_{report}.csv")).write_text((FIX / f"decode_{report}.csv").read_text())
    out = analyse(tmp_path, prefix, traced)
    j = pd.read_csv(out["rows"]).set_index(["case_id", "backend"])
    fi = j.loc[(IDS["b32"], "flashinfer")]
    assert fi.median_us == 31.5 and fi.traced_median_us == 29.6
    assert fi.nsys_kernel_us == pytest.approx(29.5)  # 900 traced launches, not 50 x 90
    assert fi.nsys_vs_timer == pytest.approx(29.5 / 31.5)
    md = out["report"].read_text()
    assert "| flashinfer | " + IDS["b32"] in md and "tracing overhead" in md
    assert "one kernel per launch" in md


def test_the_backends_own_kernel_is_not_called_a_helper(tmp_path):
    """A main kernel whose name happens to contain 'copy' (CuTe: ...TiledCopy...) is not a helper."""
    from gdnbench.trace import explain

    kernels = pd.DataFrame({"case_id": ["c", "c"], "backend": ["fi", "fi"], "timer_kernel": [False, False],
                            "kernel": ["kernel_cutlass_gdn_decode_TiledCopy_f32", "at::native::fill_kernel"],
                            "total_us": [900.0, 10.0]})
    row = pd.Series({"case_id": "c", "backend": "fi", "median_us": 33.0, "nsys_kernel_us": 30.0,
                     "nsys_kernels_per_launch": 2.0})
    reason = explain(row, kernels)
    assert "fill_kernel" in reason and "TiledCopy" not in reason


def test_short_kernel():
    assert short_kernel("void at::native::index_select_kernel<float, long>(...)") == "index_select_kernel"
    assert short_kernel("fused_recurrent_gated_delta_rule_fwd_kernel") == "fused_recurrent_gated_delta_rule_fwd_kernel"


def test_profile_command_records_only_the_measured_part():
    cmd = profile_command("nsys", Path("r/traces/x"), ["python", "-m", "gdnbench", "sweep", "c.yaml"])
    for flag in ("--trace=cuda,nvtx", "--cuda-graph-trace=node", "--capture-range=cudaProfilerApi",
                 "--capture-range-end=stop"):
        assert flag in cmd
    assert cmd[-5:] == ["python", "-m", "gdnbench", "sweep", "c.yaml"]


def test_trace_without_nsys_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name: None)
    r = CliRunner().invoke(app, ["trace", "smoke-cpu", "--out", str(tmp_path / "t")])
    assert r.exit_code == 2 and "nsys (Nsight Systems) not found" in r.stderr and "--profiler torch" in r.stderr


def test_torch_profiler_fallback_on_cpu(tmp_path, write_yaml):
    cfg = write_yaml("phase: decode\nbackends: [torch]\naxes: {batch: [2], heads: [[1, 2]], head_dim_k: [8], "
                     "head_dim_v: [8]}\ntiming: {min_samples: 3, min_time_s: 0.0, max_time_s: 0.05}\n")
    r = CliRunner().invoke(app, ["trace", str(cfg), "--profiler", "torch", "--out", str(tmp_path / "t")])
    assert r.exit_code == 0, r.output
    trace = json.loads((tmp_path / "t" / "traces" / "cfg.torch-trace.json").read_text())
    names = {e.get("name", "") for e in trace["traceEvents"]}
    assert any(n.startswith("decode|torch|decode-b2-") for n in names)  # the measured range is in the trace


FAKE_NSYS = '''#!{python}
"""Stand-in for nsys: `profile ... -o REPORT CHILD...` runs the child and writes REPORT.nsys-rep;
`stats ... --output PREFIX REPORT` writes an NVTX->kernel summary with one 2 µs kernel per launch of
every timed row of the traced run (rows.csv in <out>/traced)."""
import csv, subprocess, sys
from pathlib import Path
args = sys.argv[1:]
import os
with open({log!r}, "a") as f:
    f.write(" ".join(args) + " record_kernels=" + os.environ.get("GDNBENCH_RECORD_KERNELS", "unset") + "\\n")
if args[0] == "profile":
    i = args.index("-o")
    rc = subprocess.run(args[i + 2:]).returncode
    Path(args[i + 1] + ".nsys-rep").write_text("fake")
    sys.exit(rc)
prefix, report = Path(args[args.index("--output") + 1]), Path(args[-1])
rows = list(csv.DictReader(open(report.parent.parent / "traced" / "rows.csv")))
with open(f"{{prefix}}_nvtx_kern_sum.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["NVTX Range", "Style", "PID", "TID", "NVTX Inst", "Kern Inst", "Total Time (ns)", "Avg (ns)",
                "Med (ns)", "Min (ns)", "Max (ns)", "StdDev (ns)", "Kernel Name"])
    for r in rows:
        if r["status"] == "ok":
            n = int(float(r["n_samples"]) * float(r["launches_per_sample"]))
            w.writerow([f"gdnbench:{{r['phase']}}|{{r['backend']}}|{{r['case_id']}}", "PushPop", 1, 1, 1, n,
                        2000.0 * n, 2000, 2000, 2000, 2000, 0, "fake_kernel"])
'''


def test_trace_times_untraced_then_traced_and_joins(tmp_path, write_yaml):
    """`gdnbench trace` runs the selection plainly (the timer's rows), then under nsys into traced/,
    and joins the traced kernel times onto the untraced rows (a stand-in nsys, on the CPU)."""
    import stat
    import sys

    log = tmp_path / "nsys.log"
    nsys = tmp_path / "nsys"
    nsys.write_text(FAKE_NSYS.format(python=sys.executable, log=str(log)))
    nsys.chmod(nsys.stat().st_mode | stat.S_IEXEC)
    cfg = write_yaml("phase: decode\nbackends: [torch]\naxes: {batch: [2], heads: [[1, 2]], head_dim_k: [8], "
                     "head_dim_v: [8]}\ntiming: {min_samples: 3, min_time_s: 0.0, max_time_s: 0.05}\n")
    out = tmp_path / "t"
    r = CliRunner().invoke(app, ["trace", str(cfg), "--nsys", str(nsys), "--out", str(out)])
    assert r.exit_code == 0, r.output
    calls = log.read_text().splitlines()
    assert calls[0].startswith("profile --trace=cuda,nvtx --cuda-graph-trace=node --capture-range=cudaProfilerApi")
    assert f"--out {out / 'traced'}" in calls[0] and calls[1].startswith("stats")
    assert calls[0].endswith("record_kernels=0")  # nsys holds CUPTI: the traced gate does not profile
    assert (out / "rows.csv").exists() and (out / "traced" / "rows.csv").exists()
    j = pd.read_csv(out / "rows_nsys.csv")
    untraced = pd.read_csv(out / "rows.csv").median_us.iloc[0]
    traced = pd.read_csv(out / "traced" / "rows.csv").median_us.iloc[0]
    assert j.median_us.iloc[0] == pytest.approx(untraced) and j.traced_median_us.iloc[0] == pytest.approx(traced)
    assert j.nsys_kernel_us.iloc[0] == pytest.approx(2.0) and j.nsys_kernels.iloc[0] == "fake_kernel"
    assert "rows compared: 1" in (out / "consistency.md").read_text()
    # a second trace into the same directory is refused in one line, and the first one's files stay
    before = (out / "rows_nsys.csv").read_text()
    r = CliRunner().invoke(app, ["trace", str(cfg), "--nsys", str(nsys), "--out", str(out)])
    assert r.exit_code == 2 and "already holds rows.csv" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert (out / "rows_nsys.csv").read_text() == before


def test_timer_kernels_are_excluded_in_graph_mode_too(tmp_path):
    """Graph mode enqueues the host-cover sleep (spin_kernel) inside the measured range before every
    sample: it is the timer's, never the backend's kernel time or its main kernel."""
    from gdnbench.trace import explain

    rows = rows_frame(tmp_path)
    csv_text = (FIX / "decode_nvtx_kern_sum.csv").read_text()
    # 10 samples of the b32 flashinfer graph: 10 sleeps of 200 µs each, longer than all its launches
    csv_text += (f"gdnbench:decode|flashinfer|{IDS['b32']},PushPop,4242,4242,1,10,2000000000.0,200000000.0,"
                 "200000000.0,200000000.0,200000000.0,0.0,spin_kernel(long)\n")
    path = tmp_path / "k.csv"
    path.write_text(csv_text)
    kernels = kernels_table(read_nvtx_kern_sum(path), rows)
    assert kernels[kernels.kernel.str.startswith("spin_kernel")].timer_kernel.all()
    j = join_rows(rows, kernels).set_index(["case_id", "backend"])
    fi = j.loc[(IDS["b32"], "flashinfer")]
    assert fi.nsys_kernel_us == pytest.approx(29.5) and fi.nsys_kernels == "kernel_cutlass_gdn_wide_vec_kernel_t1_tensorptr_0"
    findings, _, _ = consistency(j.reset_index(), kernels)
    assert (IDS["b32"], "flashinfer") not in {(f.case_id, f.backend) for f in findings}
    # the main kernel is chosen among the backend's own: a helper next to it is still called a helper
    row = fi.copy()
    row["case_id"], row["backend"], row["median_us"], row["nsys_kernel_us"] = IDS["b32"], "flashinfer", 40.0, 29.5
    assert "spin_kernel" not in explain(row, kernels)


def test_sample_ranges_give_the_launch_span(tmp_path):
    """Per-sample ranges (``...|sample``) projected onto the GPU give the launch span per launch, gaps
    between a launch's kernels included; agreement then compares it with the traced run's timer, where
    the kernel sum of a multi-kernel launch reads low."""
    from gdnbench.ranges import sample_range_name
    from gdnbench.trace import agreement

    rows = rows_frame(tmp_path)
    kernels = kernels_table(read_nvtx_kern_sum(FIX / "decode_nvtx_kern_sum.csv"), rows)
    text = (FIX / "decode_nvtx_gpu_proj_sum.csv").read_text().rstrip("\n")
    extra = []
    # 10 sample ranges of 90 launches each: torch's span 52.5 µs per launch (timer 52.0), fla's 79.0 (timer 80)
    for backend, span_us in (("torch", 52.5), ("fla", 79.0), ("flashinfer", 29.4)):
        # 10 samples, plus the 3 replays host_cover probes in such a range, each twice as long (cold):
        # the median sample is the like-for-like figure, the mean is not
        med = span_us * 90 * 1e3
        total = 10 * med + 3 * 2 * med
        label = sample_range_name("|".join(("decode", backend, IDS["b32"])))
        extra.append(f"gdnbench:{label},PushPop,{total:.0f},{total:.0f},"
                     f"13,{total / 13:.0f},{med:.0f},0,0,0.0,900,90.0,1.0,0.0")
    csv = tmp_path / "proj.csv"
    csv.write_text(text + "\n" + "\n".join(extra) + "\n")
    proj = read_nvtx_gpu_proj_sum(csv)
    assert set(proj.kind) == {"row", "sample"} and (proj[proj.kind == "sample"].med_ns > 0).all()
    j = join_rows(rows, kernels, proj).set_index(["case_id", "backend"])
    assert j.loc[(IDS["b32"], "torch")].nsys_launch_us == pytest.approx(52.5)
    assert j.loc[(IDS["b32"], "torch")].nsys_launch_vs_timer == pytest.approx(52.5 / 52.0)
    assert j.loc[(IDS["b32"], "flashinfer")].nsys_gpu_span_us == pytest.approx(26.7e6 / 900 / 1e3)  # row range
    a = agreement(j.reset_index())
    assert a.measure == "launch span" and (a.within, a.rows) == (3, 3) and "launch span/timer" in str(a)
    k = agreement(j.reset_index(), measure="kernel sum")
    assert k.measure == "kernel sum" and k.within < k.rows   # torch's and fla's kernel sums read low
    # a trace without sample ranges: the kernel sum, as before
    plain = join_rows(rows, kernels, read_nvtx_gpu_proj_sum(FIX / "decode_nvtx_gpu_proj_sum.csv"))
    assert plain.nsys_launch_us.isna().all() and agreement(plain).measure == "kernel sum"


def test_sample_range_names():
    from gdnbench.ranges import parse_range_name, parse_sample_range, sample_range_name

    name = "decode|triton|c1"
    assert parse_sample_range(sample_range_name(name)) == ("decode", "triton", "c1")
    assert parse_range_name(sample_range_name(name)) is None and parse_sample_range(name) is None
    assert range_key("gdnbench:" + sample_range_name(name)) is None   # never taken for the row's range


def test_sample_ranges_only_in_a_traced_child(monkeypatch):
    """The timer's launch is left untouched unless the traced child asks for sample ranges."""
    from gdnbench.ranges import SAMPLES_ENV, in_sample_range

    def launch():
        return None

    monkeypatch.delenv(SAMPLES_ENV, raising=False)
    assert in_sample_range("decode|triton|c1", launch) is launch
    monkeypatch.setenv(SAMPLES_ENV, "1")
    assert in_sample_range("decode|triton|c1", launch) is not launch
