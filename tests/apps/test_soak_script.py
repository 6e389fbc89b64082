"""benchmarks/soak.py runs end to end with tiny parameters: exit 0, no errors, no loss."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "soak.py"


def test_soak_script_small_run(tmp_path: Path) -> None:
    figures = tmp_path / "soak.json"
    output = tmp_path / "soak.md"
    env = dict(os.environ)
    src = str(ROOT / "src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            *"--connections 200 --duration 8 --rate 400 --churn 0.2 --lifetime 2".split(),
            # 8 s say nothing about growth (closed connections wait for the cyclic GC): only a bound.
            *"--max-growth 25 --quiet --write".split(),
            *["--output", str(output), "--json", str(figures)],
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    report = json.loads(figures.read_text())
    totals = report["totals"]
    assert report["failures"] == []
    assert report["client_errors"] == 0 and report["server_errors"] == 0
    assert totals["lost"] == 0 and totals["lost_reported"] == 0 and totals["mismatched"] == 0
    assert totals["sent"] == totals["received"] > 1000
    assert report["steady_handshakes"] > 20  # 40 churning connections, 2 s lifetimes
    assert report["server_final"]["opened"] == totals["handshakes"]
    assert report["min_open"] >= 160
    text = output.read_text()
    assert "**Result: PASS**" in text and "**errors** (client / server) | **0 / 0**" in text
