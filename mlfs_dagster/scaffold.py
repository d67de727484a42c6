"""`mlfs init`: a new system's folder, declared in YAML, runnable at once, and registered in the workspace.

The folder is made from the templates in `mlfs_dagster/templates/system/` (`<file>.tmpl` becomes `<file>`,
with `{{system}}`, `{{package}}`, `{{start}}`, `{{folder}}` and `{{workspace}}` filled in). The folder's name
is the Python package its functions are imported from (`<folder>.functions:build_pipeline`), so it must be an
identifier that no installed module already uses.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import keyword
import os
from pathlib import Path

import yaml

from mlfs_dagster.core.specs import NAME

TEMPLATES = Path(__file__).parent / "templates" / "system"
TEMPLATE_SUFFIX = ".tmpl"
# The sample data starts this long before today, enough history to warm up, train and validate.
SAMPLE_HISTORY = dt.timedelta(days=60)


class ScaffoldError(ValueError):
    """The system cannot be created as asked; nothing was written."""


def init_system(name: str, directory: Path, workspace: Path) -> list[Path]:
    """Create the system `name` in the new folder `directory` and add it to the `workspace` file.

    Returns the files written, the workspace file last. Refuses, before writing anything, an invalid name,
    an existing folder, or a workspace that already has a location of that name.
    """
    directory, workspace = directory.resolve(), workspace.resolve()
    _check_name_and_folder(name, directory)
    entries = _workspace_entries(workspace)
    if name in {_location_name(entry) for entry in entries}:
        raise ScaffoldError(f"{workspace} already has a code location named {name!r}")
    created = _write_templates(directory, _placeholders(name, directory, workspace))
    _add_location(workspace, entries, _location_entry(name, directory, workspace))
    return [*created, workspace]


def _check_name_and_folder(name: str, directory: Path) -> None:
    if not NAME.match(name):
        raise ScaffoldError(f"system name {name!r} must be lower-case letters, digits and underscores, "
                            "starting with a letter")
    package = directory.name
    if not package.isidentifier() or keyword.iskeyword(package):
        raise ScaffoldError(f"folder name {package!r} must be a Python identifier: its functions are imported "
                            f"as '{package}.functions'")
    if directory.exists():
        raise ScaffoldError(f"{directory} already exists; choose a new folder")
    if importlib.util.find_spec(package) is not None:
        raise ScaffoldError(f"a module named {package!r} is already importable, so '{package}.functions' would "
                            "not be this system's; choose another folder name")


def _placeholders(name: str, directory: Path, workspace: Path) -> dict[str, str]:
    return {
        "{{system}}": name,
        "{{package}}": directory.name,
        "{{start}}": (dt.date.today() - SAMPLE_HISTORY).isoformat(),
        "{{folder}}": _relative(directory, workspace.parent),
        "{{workspace}}": workspace.name,
    }


def _write_templates(directory: Path, placeholders: dict[str, str]) -> list[Path]:
    directory.mkdir(parents=True)
    created = []
    for template in sorted(TEMPLATES.glob(f"*{TEMPLATE_SUFFIX}")):
        text = template.read_text()
        for placeholder, value in placeholders.items():
            text = text.replace(placeholder, value)
        target = directory / template.name.removesuffix(TEMPLATE_SUFFIX)
        target.write_text(text)
        created.append(target)
    return created


def _workspace_entries(workspace: Path) -> list:
    if not workspace.exists():
        return []
    content = yaml.safe_load(workspace.read_text()) or {}
    if not isinstance(content, dict):
        raise ScaffoldError(f"{workspace}: a workspace file is a mapping with a `load_from` list")
    entries = content.get("load_from")
    if not isinstance(entries, list | None):
        raise ScaffoldError(f"{workspace}: `load_from` must be a list of code locations")
    return entries or []


def _location_name(entry) -> str | None:
    target = next(iter(entry.values()), None) if isinstance(entry, dict) else None
    return target.get("location_name") if isinstance(target, dict) else None


def _location_entry(name: str, directory: Path, workspace: Path) -> dict:
    """A `python_file` location run from the folder's parent, where the folder is an importable package."""
    return {"python_file": {
        "relative_path": _relative(directory / "definitions.py", workspace.parent),
        "working_directory": _relative(directory.parent, workspace.parent),
        "location_name": name,
    }}


def _relative(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path, start)).as_posix()


def _add_location(workspace: Path, entries: list, entry: dict) -> None:
    """Append the entry's text, so existing entries and comments stay as written; rewrite only if the file's
    layout leaves no place to append (`load_from` not last, or in flow style)."""
    old = workspace.read_text() if workspace.exists() else ""
    wanted = [*entries, entry]
    for text in _appended_texts(old, entry):
        if _load_from(text) == wanted:
            workspace.write_text(text)
            return
    workspace.write_text(yaml.safe_dump({**(yaml.safe_load(old) or {}), "load_from": wanted}, sort_keys=False))


def _load_from(text: str) -> list | None:
    try:
        return (yaml.safe_load(text) or {}).get("load_from")
    except yaml.YAMLError:  # this way of appending broke the file's layout
        return None


def _appended_texts(old: str, entry: dict) -> list[str]:
    """The file with the entry appended under its `load_from`, at the indentations a list item may have."""
    old = old if not old or old.endswith("\n") else old + "\n"
    if "load_from" not in (yaml.safe_load(old) or {}):
        old += "load_from:\n"
    item = yaml.safe_dump([entry], sort_keys=False)
    return [old + "".join(indent + line for line in item.splitlines(keepends=True)) for indent in ("  ", "")]
