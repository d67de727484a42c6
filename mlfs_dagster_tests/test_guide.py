"""The "Bring your own data" guide, followed step by step through the command line as a new user would.

A third system (the scaffold, plus the guide's daily aggregate) is added in a folder of its own: no file of
the project changes, and it loads beside the reference system.
"""

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from mlfs_dagster.settings import PROJECT_ROOT

BIN = Path(sys.executable).parent
GUIDE = PROJECT_ROOT / "docs" / "bring-your-own-data.md"
DAYS = 40


def run(*command: str, cwd: Path, env: dict) -> str:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def the_guides_daily_aggregate() -> dict:
    """The YAML of the guide's "daily aggregate that never sees its own day", as the guide prints it."""
    text = GUIDE.read_text()
    block = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    return yaml.safe_load(block)[0]


def test_following_the_guide_adds_a_system_without_touching_the_project(tmp_path):
    project_files = subprocess.run(["git", "status", "--porcelain"], cwd=PROJECT_ROOT, capture_output=True,
                                   text=True).stdout
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFS_", "MLFLOW_", "DAGSTER_"))}
    env.update(MLFS_HOME=str(tmp_path / ".mlfs"), DAGSTER_HOME=str(tmp_path / ".mlfs" / "dagster"),
               PATH=f"{BIN}:{env['PATH']}")

    run("mlfs", "init", "shop", cwd=tmp_path, env=env)
    declaration = tmp_path / "shop" / "system.yaml"
    system = yaml.safe_load(declaration.read_text())
    system["feature_groups"].append(the_guides_daily_aggregate())
    declaration.write_text(yaml.safe_dump(system, sort_keys=False))

    run("python", "shop/sample_data.py", "--export", "exports/orders.csv", "--days", str(DAYS), cwd=tmp_path, env=env)
    landed = json.loads(run("mlfs", "land", "shop.orders", "exports/orders.csv", cwd=tmp_path, env=env))
    assert landed["periods"] == DAYS and landed["rows"] > 0

    first = system["start"] if isinstance(system["start"], dt.date) else dt.date.fromisoformat(system["start"])
    days = f"{first}...{first + dt.timedelta(days=DAYS - 1)}"
    run("dagster", "asset", "materialize", "-f", "shop/definitions.py",
        "--select", "group:shop_raw or group:shop_features", "--partition-range", days, cwd=tmp_path, env=env)
    run("dagster", "asset", "materialize", "-f", "shop/definitions.py",
        "--select", "group:shop_training or group:shop_models", cwd=tmp_path, env=env)

    catalog = {g["group"]: g for g in json.loads(run("mlfs", "features", "--json", cwd=tmp_path, env=env))}
    assert catalog["customer_activity"]["rows"] == landed["rows"]
    assert catalog["customer_daily"]["rows"] > 0 and catalog["customer_daily"]["system"] == "shop"
    assert "card_txn_windows" in catalog  # the reference system is listed beside it
    status = json.loads(run("mlfs", "status", "--json", cwd=tmp_path, env=env))
    shop_model = next(m for m in status["models"] if m["name"] == "shop.return_model")
    assert shop_model["aliases"] == {"champion": "1"}

    run("dagster", "definitions", "validate", "-w", "workspace.yaml", cwd=tmp_path, env=env)
    locations = [next(iter(e.values())) for e in yaml.safe_load((tmp_path / "workspace.yaml").read_text())["load_from"]]
    assert {loc["location_name"] for loc in locations} == {"card_fraud", "shop"}
    assert subprocess.run(["git", "status", "--porcelain"], cwd=PROJECT_ROOT, capture_output=True,
                          text=True).stdout == project_files
