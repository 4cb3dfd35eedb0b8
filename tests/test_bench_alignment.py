"""benchmarks/bench_alignment.py end to end at tiny size on offline data: a table and a JSON of numbers."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_alignment_benchmark_runs_on_offline_data(tmp_path):
    out = tmp_path / "alignment.json"
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "benchmarks")])}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_alignment.py"), "--data", "shapes",
                           "--n", "120", "--n-test", "60", "--k", "6", "--ia-ks", "4", "--ia-seeds", "4",
                           "--runs", "3", "--epochs", "1", "--probe-epochs", "1", "--json", str(out)],
                          capture_output=True, text=True, check=True, env=env, cwd=tmp_path)
    assert "| seed | IA |" in done.stdout and "Pearson r(IA, accuracy)" in done.stdout
    saved = json.loads(out.read_text())
    assert len(saved["runs"]) == 3 and len(saved["ia"]) == 8  # 4 seeds at k = 4 and at k = 6
    assert {r["k"] for r in saved["ia"]} == {4, 6} and saved["correlation"]["n"] == 3
    assert all(0 <= r["accuracy"] <= 1 for r in saved["runs"])
