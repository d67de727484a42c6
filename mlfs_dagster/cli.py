"""The `mlfs` command: scaffold a system, land history, read the catalog, show what the stores hold."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
from importlib.metadata import entry_points
from pathlib import Path

from mlfs_dagster.core.storage import StoreError
from mlfs_dagster.settings import PROJECT_ROOT, Settings


def init_dagster_home(settings: Settings) -> Path:
    """Point Dagster at MLFS_HOME and give it the project's dagster.yaml: the embedded defaults, or the production
    one (PostgreSQL storage from MLFS_DAGSTER_STORAGE) when that variable is set."""
    settings.dagster_home.mkdir(parents=True, exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(settings.dagster_home)
    target = settings.dagster_home / "dagster.yaml"
    source = PROJECT_ROOT / ("docker/dagster.yaml" if settings.dagster_storage else "dagster.yaml")
    if source.exists() and not target.exists():
        shutil.copyfile(source, target)
    return settings.dagster_home


def _workspace(args: argparse.Namespace) -> Path:
    return Path(args.workspace or ("workspace.yaml" if Path("workspace.yaml").exists() else PROJECT_ROOT / "workspace.yaml"))


def _systems(args: argparse.Namespace):
    from mlfs_dagster.workspace import load_systems

    return load_systems(_workspace(args))


def _status(args: argparse.Namespace) -> None:
    from mlfs_dagster.status import collect_status

    status = collect_status(Settings.from_env(), _systems(args))
    if args.json:
        print(json.dumps(status, indent=2, default=str))
        return
    for table in status["tables"]:
        print(f"{table['table']:<44} {table['rows']:>10} rows  snapshot {table['snapshot_id']}")
    for model in status["models"]:
        print(f"model {model['name']}: versions {[v['version'] for v in model['versions']]}, aliases {model['aliases']}")
    for model, periods in status["drift"].items():
        print(f"{model} drift reports: {len(periods)} periods, drifted on "
              f"{[p for p, d in periods.items() if d['drifted']]}")
    print(f"sensor requests: {status['unavailable'].get('sensor_requests', len(status['sensor_requests']))}")


def _features(args: argparse.Namespace) -> None:
    from mlfs_dagster.catalog import feature_catalog

    catalog = feature_catalog(Settings.from_env().offline_store(), _systems(args))
    if args.json:
        print(json.dumps(catalog, indent=2))
        return
    for group in catalog:
        print(f"{group['system']}/{group['group']} v{group['version']}  owner {group['owner']}  entity "
              f"({', '.join(group['entity'])})  {group['rows']} rows, latest {group['latest_event'] or 'never'}")
        print(f"    {group['description']}")
        for column in group["columns"]:
            tags = f" [{', '.join(column['tags'])}]" if column["tags"] else ""
            print(f"    {column['name']:<28} {column['type']:<24} {column['description']}{tags}")


def _land(args: argparse.Namespace) -> None:
    from mlfs_dagster.core.landing import land_history

    system_name, _, source_name = args.source.rpartition(".")
    systems = [s for s in _systems(args) if not system_name or s.name == system_name]
    matches = [(s, src) for s in systems for src in s.sources if src.name == source_name]
    if len(matches) != 1:
        sys.exit(f"mlfs land: {args.source!r} names {len(matches)} sources of {[s.name for s in systems]}; "
                 "write SYSTEM.SOURCE")
    system, source = matches[0]
    settings = Settings.from_env()
    written = land_history(args.landing or settings.landing, source.name, source.time_column, system.step,
                           args.file, settings.s3)
    first = dt.datetime.combine(system.start, dt.time(), tzinfo=dt.UTC)
    early = sum(rows for start, rows in written.items() if start < first)
    if early:
        print(f"warning: {early} rows fall before {system.name}'s first partition ({system.start}) and will never "
              "be ingested: move the system's `start` back to keep them", file=sys.stderr)
    print(json.dumps({"source": f"{system.name}.{source.name}", "periods": len(written),
                      "rows": sum(written.values()),
                      "first": min(written).isoformat() if written else None,
                      "last": max(written).isoformat() if written else None}, indent=2))


def _reports(args: argparse.Namespace) -> None:
    import functools
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:  # one line per request would bury the terminal
            pass

        def end_headers(self) -> None:
            # Reports viewed inside MLflow load Evidently's icon font from here, and fonts need CORS.
            self.send_header("Access-Control-Allow-Origin", "*")
            super().end_headers()

    settings = Settings.from_env()
    settings.reports.mkdir(parents=True, exist_ok=True)
    handler = functools.partial(Quiet, directory=str(settings.reports))
    with ThreadingHTTPServer((args.host, args.port), handler) as server:
        print(f"serving {settings.reports} at http://localhost:{args.port} (the UI's report links)", flush=True)
        server.serve_forever()


def _init(args: argparse.Namespace) -> None:
    from mlfs_dagster.scaffold import init_system

    # A new system joins the workspace of the folder it is created in, never the project's own file; a new
    # workspace starts with the project's code locations, so the UI shows the new system beside them.
    workspace = Path(args.workspace or "workspace.yaml")
    project_workspace = PROJECT_ROOT / "workspace.yaml"
    if not workspace.exists() and project_workspace.exists() and workspace.resolve() != project_workspace:
        shutil.copyfile(project_workspace, workspace)
    created = init_system(args.name, Path(args.directory or args.name), workspace)
    print("\n".join(str(path) for path in created))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="mlfs", description=__doc__)
    parser.add_argument("--workspace", help="Dagster workspace file listing the systems (default: ./workspace.yaml)")
    commands = parser.add_subparsers(dest="command", required=True)

    init = commands.add_parser("init", help="scaffold a new system and add it to the workspace")
    init.add_argument("name", help="system name: lower-case letters, digits and underscores")
    init.add_argument("--directory", help="folder to create (default: ./NAME)")
    init.set_defaults(run=_init)

    land = commands.add_parser("land", help="split a file of history into the landing zone's period folders")
    land.add_argument("source", help="SOURCE or SYSTEM.SOURCE")
    land.add_argument("file", help="Parquet, CSV or JSON Lines file with the source's time column")
    land.add_argument("--landing", help="landing zone (default: $MLFS_HOME/landing)")
    land.set_defaults(run=_land)

    features = commands.add_parser("features", help="the feature catalog of every system")
    features.add_argument("--json", action="store_true", help="machine-readable output")
    features.set_defaults(run=_features)

    status = commands.add_parser("status", help="what the stores hold now")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(run=_status)

    reports = commands.add_parser("reports", help="serve the monitoring reports, so the UI's links open them")
    reports.add_argument("--port", type=int, default=3001, help="must match MLFS_REPORTS_URL (default 3001)")
    reports.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 in a container)")
    reports.set_defaults(run=_reports)

    # Installed systems add their own commands (the reference system: `simulate` and `demo`).
    for plugin in entry_points(group="mlfs.commands"):
        plugin.load()(commands)

    home = commands.add_parser("home", help="prepare $MLFS_HOME/dagster for `dagster dev`")
    home.set_defaults(run=lambda _: print(init_dagster_home(Settings.from_env())))

    args = parser.parse_args(argv)
    init_dagster_home(Settings.from_env())
    try:
        args.run(args)
    except StoreError as error:  # it names the store and what to do: no traceback to dig through
        sys.exit(f"mlfs {args.command}: {error}")
