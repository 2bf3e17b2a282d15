"""The end-to-end benchmark still runs (its figures are printed, never asserted)."""

from pathlib import Path

import pytest

from bench.run import main


def test_the_end_to_end_benchmark_runs_at_a_small_size(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--sizes", "100", "--repeats", "1", "--workdir", str(tmp_path)]) == 0
    out, progress = capsys.readouterr()
    lines = out.splitlines()
    assert lines[1].startswith("reports | first run (wall / CPU / peak) | steady run")
    assert lines[2].startswith("100 | ") and lines[2].count(" MB") == 3
    assert "steady run growth under 0.1 s per 1,000 reports: not measured" in out
    # Each measured run did the work its name says.
    assert "first run 1/1: " in progress and "-- nearmiss: 100 new, 0 edited;" in progress
    assert "-- nearmiss: 0 new, 0 edited; 100 reports" in progress
    assert "-- nearmiss: 10 new, 0 edited; 110 reports" in progress
    assert "new action on " in progress
