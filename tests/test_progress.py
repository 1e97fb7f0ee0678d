"""progress.py: one line per row, with or without the bar."""

from __future__ import annotations

from gdnbench.progress import describe, progress_bar
from gdnbench.rows import Row


def test_describe():
    assert "12.50 µs" in describe(Row(status="ok", backend="torch", case_id="c", median_us=12.5))
    assert "91.0% BW" in describe(Row(status="ok", backend="t", case_id="c", median_us=1.0, pct_peak_bw=91.0))
    assert "needs a GPU" in describe(Row(status="skipped", backend="t", case_id="c", reason="needs a GPU"))


def test_lines_printed_without_bar(capsys):
    with progress_bar(1, enabled=False) as advance:
        advance(Row(status="failed", backend="fla", case_id="decode-x", reason="state: rms_rel 0.3"))
    assert "decode-x" in capsys.readouterr().err


def test_skipped_rows_summarised_in_one_line(capsys):
    with progress_bar(3, enabled=False) as advance:
        for i in range(2):
            advance(Row(status="skipped", backend="flashinfer", case_id=f"c{i}", reason="needs a CUDA GPU [B, ...]"))
        advance(Row(status="ok", backend="torch", case_id="c0", median_us=3.0, converged=False))
    err = capsys.readouterr().err
    assert sum("needs a CUDA GPU" in line for line in err.splitlines()) == 1
    assert "flashinfer x2: needs a CUDA GPU [B, ...]" in err and "(not converged)" in err
