"""`init_system` writes a system that loads, builds and runs, and registers it in the workspace file."""

import datetime as dt
import importlib.util
import os
import sys

import pytest
import yaml

from mlfs_dagster.core.specs import resolve_callable
from mlfs_dagster.core.yaml_spec import load_system
from mlfs_dagster.scaffold import ScaffoldError, init_system

EXISTING = """\
# the reference system
load_from:
  - python_module:
      module_name: card_fraud.definitions
      location_name: card_fraud
"""


@pytest.fixture(autouse=True)
def restored_sys_path(monkeypatch):
    """Loading a system puts its folder's parent on sys.path; each test gets it back as it was."""
    monkeypatch.setattr(sys, "path", [*sys.path])


@pytest.fixture
def workspace(tmp_path):
    path = tmp_path / "workspace.yaml"
    path.write_text(EXISTING)
    return path


def import_file(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def builders_or_skip():
    try:
        from mlfs_dagster.builders import build_definitions  # noqa: F401
    except Exception as error:  # being written elsewhere: this test waits for it
        pytest.skip(f"mlfs_dagster.builders.build_definitions does not import yet: {error!r}")


def test_the_scaffold_declares_a_complete_system(tmp_path, workspace):
    folder = tmp_path / "scaffold_declared"
    created = init_system("shop", folder, workspace)

    expected = {"system.yaml", "features.sql", "functions.py", "definitions.py", "sample_data.py", "README.md",
                "__init__.py"}
    assert {p.name for p in created} == expected | {"workspace.yaml"}
    system = load_system(folder)
    assert system.name == "shop" and system.cadence == "daily" and system.start < dt.date.today()
    (orders,) = system.sources
    assert orders.name == "orders" and orders.delivery == "event" and orders.must_arrive
    (activity,) = system.feature_groups
    assert activity.sql == (folder / "features.sql").read_text() and activity.inputs[0].source == orders
    (view,) = system.feature_views
    assert view.spine == orders and view.selections[0].group == activity and view.on_demand_columns
    (model,) = system.models
    assert model.feature_view == view and {g.metric for g in model.gates} == {"roc_auc", "pr_auc"}
    assert resolve_callable(view.on_demand).__module__ == "scaffold_declared.functions"
    assert type(model.build_pipeline()).__name__ == "Pipeline"


def test_the_system_is_added_to_the_workspace_and_existing_entries_stay(tmp_path, workspace):
    init_system("shop", tmp_path / "systems" / "scaffold_listed", workspace)

    text = workspace.read_text()
    assert text.startswith(EXISTING), "the existing entries and comments are kept as written"
    entries = yaml.safe_load(text)["load_from"]
    assert entries[0] == {"python_module": {"module_name": "card_fraud.definitions", "location_name": "card_fraud"}}
    assert entries[1] == {"python_file": {"relative_path": "systems/scaffold_listed/definitions.py",
                                          "working_directory": "systems", "location_name": "shop"}}


def test_a_missing_workspace_file_is_created(tmp_path):
    workspace = tmp_path / "new" / "workspace.yaml"
    workspace.parent.mkdir()
    init_system("shop", tmp_path / "scaffold_fresh", workspace)

    assert yaml.safe_load(workspace.read_text()) == {"load_from": [{"python_file": {
        "relative_path": "../scaffold_fresh/definitions.py", "working_directory": "..", "location_name": "shop"}}]}


def test_a_workspace_without_room_to_append_is_rewritten_with_its_entries(tmp_path):
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text("load_from: [{python_module: {module_name: card_fraud.definitions}}]\nother: 1\n")
    init_system("shop", tmp_path / "scaffold_rewritten", workspace)

    content = yaml.safe_load(workspace.read_text())
    assert content["other"] == 1
    assert [next(iter(e)) for e in content["load_from"]] == ["python_module", "python_file"]


@pytest.mark.parametrize("name, folder, message", [
    ("Shop", "scaffold_refused_a", "lower-case"),
    ("2shop", "scaffold_refused_b", "lower-case"),
    ("shop", "not-a-package", "Python identifier"),
    ("shop", "json", "already importable"),
    ("card_fraud", "scaffold_refused_c", "already has a code location named 'card_fraud'"),
])
def test_refusals_write_nothing(tmp_path, workspace, name, folder, message):
    with pytest.raises(ScaffoldError, match=message):
        init_system(name, tmp_path / folder, workspace)
    assert not (tmp_path / folder).exists()
    assert workspace.read_text() == EXISTING


def test_an_existing_folder_is_never_overwritten(tmp_path, workspace):
    folder = tmp_path / "scaffold_existing"
    folder.mkdir()
    (folder / "mine.txt").write_text("keep")
    with pytest.raises(ScaffoldError, match="already exists"):
        init_system("shop", folder, workspace)
    assert [p.name for p in folder.iterdir()] == ["mine.txt"]
    assert workspace.read_text() == EXISTING


def test_the_generated_definitions_resolve(tmp_path, workspace, monkeypatch):
    builders_or_skip()
    monkeypatch.setenv("MLFS_HOME", str(tmp_path / "home"))
    folder = tmp_path / "scaffold_defs"
    init_system("shop", folder, workspace)

    defs = import_file(folder / "definitions.py", "scaffold_defs_definitions").defs
    assert defs.get_repository_def().name
    keys = {key.to_user_string() for key in defs.resolve_all_asset_keys()}
    assert {"shop/raw_orders", "shop/customer_activity", "shop/returns_training_set"} <= keys
    assert any(key.startswith("shop/return_model") for key in keys)


def test_the_scaffold_materializes_on_its_sample_data(tmp_path, workspace, monkeypatch):
    """Sample data to champion model in two in-process runs: the scaffold works before anything is edited."""
    builders_or_skip()
    from dagster import AssetSelection, DagsterInstance, materialize

    from mlfs_dagster.builders.common import range_tags

    for name in [n for n in os.environ if n.startswith("MLFS_") or n in ("MLFLOW_TRACKING_URI", "DAGSTER_HOME")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("MLFS_HOME", str(tmp_path / "home"))
    folder = tmp_path / "scaffold_runs"
    init_system("shop", folder, workspace)
    import_file(folder / "sample_data.py", "scaffold_runs_sample_data").write_sample_data(tmp_path / "home" / "landing")
    module = import_file(folder / "definitions.py", "scaffold_runs_definitions")
    defs, system = module.defs, module.SYSTEM
    instance = DagsterInstance.ephemeral()
    yesterday = dt.date.today() - dt.timedelta(days=1)

    def run(*names, tags=None):
        return materialize([*defs.assets, *defs.asset_checks], instance=instance, resources=defs.resources,
                           selection=AssetSelection.assets(*(["shop", n] for n in names)), tags=tags or {},
                           run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}})

    features = run("raw_orders", "customer_activity",
                   tags=range_tags(system.start.isoformat(), yesterday.isoformat()))
    assert all(check.passed for check in features.get_asset_check_evaluations())
    model = run("returns_training_set", "return_model", "return_model_champion")
    assert all(check.passed for check in model.get_asset_check_evaluations())
