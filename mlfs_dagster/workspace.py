"""The systems a Dagster workspace file declares, for the `mlfs` commands that read every system.

Each code location of the workspace (`python_module` or `python_file`) is imported the way Dagster
imports it, and every `System` found among its module-level names is collected.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

import yaml

from mlfs_dagster.core.specs import System


def load_systems(workspace: Path) -> list[System]:
    entries = (yaml.safe_load(workspace.read_text()) or {}).get("load_from", [])
    systems: dict[str, System] = {}
    for entry in entries:
        for system in _systems_in(_import(entry, workspace.parent)):
            systems.setdefault(system.name, system)
    return list(systems.values())


def location_options(workspace: Path, system_name: str) -> str:
    """The `dagster` command-line options (`-m module` or `-f file`) of the code location holding a system."""
    base = workspace.parent
    for entry in (yaml.safe_load(workspace.read_text()) or {}).get("load_from", []):
        if any(s.name == system_name for s in _systems_in(_import(entry, base))):
            if "python_module" in entry:
                target = entry["python_module"]
                return f"-m {target if isinstance(target, str) else target['module_name']}"
            target = entry["python_file"]
            return f"-f {base / (target if isinstance(target, str) else target['relative_path'])}"
    raise ValueError(f"no code location of {workspace} holds the system {system_name!r}")


def _import(entry: dict, base: Path):
    if "python_module" in entry:
        target = entry["python_module"]
        module = target if isinstance(target, str) else target["module_name"]
        return importlib.import_module(module)
    target = entry["python_file"]
    relative = target if isinstance(target, str) else target["relative_path"]
    folder = base / (target.get("working_directory", ".") if isinstance(target, dict) else ".")
    if str(folder.resolve()) not in sys.path:
        sys.path.insert(0, str(folder.resolve()))
    path = (base / relative).resolve()
    spec = importlib.util.spec_from_file_location(f"mlfs_location_{path.parent.name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _systems_in(module) -> list[System]:
    return [value for value in vars(module).values() if isinstance(value, System)]
