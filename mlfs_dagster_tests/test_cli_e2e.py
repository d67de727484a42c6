"""End to end through the command line, as a user drives it: mlfs, then the dagster CLI on workspace.yaml."""

import json
import os
import subprocess
import sys
from pathlib import Path

from mlfs_dagster.settings import PROJECT_ROOT

BIN = Path(sys.executable).parent


def run(*command: str, env: dict) -> subprocess.CompletedProcess:
    done = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def test_simulate_validate_backfill_preview_sensor_and_status(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFS_", "MLFLOW_", "DAGSTER_"))}
    env.update(MLFS_HOME=str(tmp_path), DAGSTER_HOME=str(tmp_path / "dagster"))

    simulated = json.loads(run(str(BIN / "mlfs"), "simulate", "--days", "3", "--cards", "60",
                               "--transactions-per-day", "120", env=env).stdout)
    run(str(BIN / "dagster"), "definitions", "validate", "-w", "workspace.yaml", env=env)
    run(str(BIN / "dg"), "check", "defs", env=env)
    run(str(BIN / "dagster"), "asset", "materialize", "-m", "card_fraud.definitions",
        "--select", "group:card_fraud_raw", "--partition-range", "2026-01-01...2026-01-03", env=env)
    preview = run(str(BIN / "dagster"), "sensor", "preview", "-w", "workspace.yaml",
                  "card_fraud__fraud_model_drift_retraining", env=env)
    assert "no sustained drift" in preview.stdout + preview.stderr

    status = json.loads(run(str(BIN / "mlfs"), "status", "--json", env=env).stdout)
    rows = {table["table"]: table["rows"] for table in status["tables"]}
    assert rows["card_fraud.raw_transactions"] == simulated["rows"]["transactions"] > 0
    assert rows["card_fraud.raw_merchants"] == simulated["rows"]["merchants"]
    assert rows["card_fraud.quarantine_transactions"] == 0
    assert status["catalog"]["uri"] == f"sqlite:///{tmp_path}/iceberg/catalog.db"
    assert "__ASSET_JOB" in run(str(BIN / "dagster"), "run", "list", env=env).stdout


def test_mlfs_reports_serves_the_reports_folder_the_ui_links_to(tmp_path):
    import time
    import urllib.request

    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFS_", "MLFLOW_", "DAGSTER_"))}
    env.update(MLFS_HOME=str(tmp_path), DAGSTER_HOME=str(tmp_path / "dagster"))
    report = tmp_path / "reports" / "shop" / "model_feature_drift" / "2026-01-02.html"
    report.parent.mkdir(parents=True)
    report.write_text("<html><body>drift of 2026-01-02</body></html>")
    server = subprocess.Popen([str(BIN / "mlfs"), "reports", "--port", "3917"], env=env, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert "http://localhost:3917" in server.stdout.readline()
        for _ in range(50):
            try:
                response = urllib.request.urlopen("http://localhost:3917/shop/model_feature_drift/2026-01-02.html")
                break
            except OSError:
                time.sleep(0.1)
        assert b"drift of 2026-01-02" in response.read()
        assert response.headers["Access-Control-Allow-Origin"] == "*"  # MLflow's viewer loads the font from here
    finally:
        server.terminate()
        server.wait(timeout=10)
