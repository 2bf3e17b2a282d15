"""The benchmark still runs (its figures are printed, never asserted)."""

from bench.pipeline import main


def test_the_benchmark_runs_end_to_end_at_a_small_size(capsys):
    assert main(["--sizes", "300", "--repeats", "3000"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[1].startswith("reports | read export")
    assert out.splitlines()[2].startswith("300 | ")
    assert "repeats alone on 3,000 reports" in out
