"""rows.py: the CSV schema (golden header), incremental writes, resume bookkeeping."""

from __future__ import annotations

import csv

import pytest

from gdnbench.rows import COLUMNS, SCHEMA_VERSION, Row, RowWriter, read_rows

GOLDEN_HEADER = (
    "schema_version,run_id,case_id,phase,model,batch,hk,hv,head_dim_k,head_dim_v,layout,state_dtype,dtype,tokens,"
    "seq_lens,pool,n_padded,write_back,intermediate,tree,seed,backend,backend_version,kernel,padding,status,reason,"
    "check,max_abs_err,max_rel_err,rms_rel_err,state_rms_rel_err,check_margin,kernels,sanitizer,timing_mode,"
    "first_call_ms,median_us,iqr_us,p10_us,p90_us,min_us,mean_us,cv,rel_noise,n_samples,launches_per_sample,input_sets,converged,bytes,flops,gbps,pct_peak_bw,tflops,"
    "device,gpu,sm,sm_clock_mhz,temp_c,throttled,throttle_reasons,"
    "energy_uj,energy_uj_err,power_w,energy_window_s,host,gpu_uuid,tile,tile_source"
)


def test_golden_header():
    # Changing the columns means bumping SCHEMA_VERSION (plots, compare and notebooks read them);
    # version 2 added the gate's state error, margin and kernels, the energy columns, then where each
    # row ran (host, gpu_uuid) and gdnbench's own kernels' tile and its source, appended at the end:
    # version 1 runs and older version-2 files still load (missing columns read as empty).
    assert ",".join(COLUMNS) == GOLDEN_HEADER and SCHEMA_VERSION == 2


def test_write_read_roundtrip(tmp_path):
    w = RowWriter(tmp_path)
    w.write(Row(case_id="c1", backend="torch", status="ok", median_us=12.3456789, n_samples=10), [1.0, 2.5])
    w.write(Row(case_id="c2", backend="torch", status="skipped", reason="needs a GPU, this is cpu"))
    rows = read_rows(tmp_path / "rows.csv")
    assert [r["case_id"] for r in rows] == ["c1", "c2"]
    assert rows[0]["median_us"] == "12.3457" and rows[1]["median_us"] == ""
    assert rows[1]["reason"] == "needs a GPU, this is cpu"  # commas survive quoting
    with (tmp_path / "samples.csv").open() as f:
        assert list(csv.reader(f)) == [["case_id", "backend", "sample", "time_us", "gpu_uuid"],
                                       ["c1", "torch", "0", "1", ""], ["c1", "torch", "1", "2.5", ""]]
    assert RowWriter(tmp_path).done() == {("c1", "torch"), ("c2", "torch")}


def test_refuses_other_schema(tmp_path):
    (tmp_path / "rows.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="another schema"):
        RowWriter(tmp_path)


def test_prune_orphan_samples(tmp_path):
    w = RowWriter(tmp_path)
    w.write(Row(case_id="c1", backend="torch", status="ok"), [1.0])
    with (tmp_path / "samples.csv").open("a") as f:
        f.write("c9,torch,0,5,\n")  # samples whose row was never written (killed in between)
        f.write("c1,torch,0,7,GPU-other\n")  # the same pair's samples from another GPU whose row is missing
    w.prune_samples(w.done())
    text = (tmp_path / "samples.csv").read_text()
    assert "c9" not in text and "GPU-other" not in text and "c1,torch,0,1," in text


def test_done_on_keys_by_gpu_model(tmp_path):
    w = RowWriter(tmp_path)
    w.write(Row(case_id="c", backend="b", status="ok", gpu="H100", sm="sm90"))
    w.write(Row(case_id="c", backend="b", status="ok", gpu="A100", sm="sm80"))
    assert w.done() == {("c", "b")}
    assert w.done_on() == {("c", "b", "H100", "sm90"), ("c", "b", "A100", "sm80")}


def test_row_from_csv_restores_types(tmp_path):
    w = RowWriter(tmp_path)
    w.write(Row(case_id="c", backend="b", status="ok", batch=4, median_us=1.5, converged=True, write_back=False))
    from gdnbench.rows import row_from_csv

    r = row_from_csv(read_rows(tmp_path / "rows.csv")[0])
    assert (r.batch, r.median_us, r.converged, r.write_back, r.status, r.gbps) == (4, 1.5, True, False, "ok", None)
