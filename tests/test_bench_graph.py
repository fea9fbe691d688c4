"""`sefm bench graph` runs both sides on a real graph and writes its table (speed itself is not asserted)."""
import re


def test_bench_graph_measures_both_sides_for_each_station_count(tmp_path):
    from sefm_experiments.bench_graph import main

    table = tmp_path / "graph.md"
    assert main(["--stations", "1,2", "--steps", "3", "--warmup", "1", "--repeats", "2", "--image-size", "64x36",
                 "--markdown", str(table)]) == 0
    rows = [line for line in table.read_text().splitlines() if re.match(r"\| \d+ \|", line)]
    assert [row.split("|")[1].strip() for row in rows] == ["1", "2"]
    for row in rows:
        bare, graph = (float(row.split("|")[k]) for k in (2, 3))
        assert bare > 0 and graph > 0
        assert re.search(r"\d\.\d\d \(\d\.\d\d-\d\.\d\d\)", row.split("|")[4]), row  # median ratio and its range
        for k in (5, 6, 7):   # bare policy, graph policy, graph reward latency: p50 / p99 in ms
            assert re.fullmatch(r"\d+\.\d / \d+\.\d", row.split("|")[k].strip()), row
    assert "batch wait 50 ms" in table.read_text()  # the lockstep default of `sefm improve`
