"""The `mlfs` command: scaffold a system, land history, read the catalog, show what the stores hold, maintain
the offline store and recover a table from lost files."""

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


def _serve(args: argparse.Namespace) -> None:
    import uvicorn

    # Each worker process imports the app anew: the workspace travels in the environment.
    os.environ["MLFS_WORKSPACE"] = str(_workspace(args).resolve())
    # A request scores a few rows: OpenMP's threads (a tree model's predict) only contend with each other and
    # the other workers for microseconds of work, 5x slower on 2 busy cores. One thread, same scores.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a bar per model (re)load in the log
    print(f"serving on http://{args.host}:{args.port} (docs: /docs) with {args.workers} worker(s)", flush=True)
    # loop and http "auto": uvloop and httptools (uvicorn[standard]); no access log, a line per request costs
    # a tenth of a single prediction
    uvicorn.run("mlfs_dagster.server:app_from_env", factory=True, host=args.host, port=args.port,
                workers=args.workers, loop="auto", http="auto", access_log=False, log_level="warning")


def _snapshots(args: argparse.Namespace) -> None:
    from mlfs_dagster.core.maintenance import snapshot_history

    for entry in snapshot_history(Settings.from_env().offline_store().table(args.table)):
        records = "" if entry.records is None else f"{entry.records:>10} rows"
        refs = f"  [{', '.join(entry.refs)}]" if entry.refs else ""
        history = "" if entry.on_main else "  (not in main's history)"
        print(f"{entry.snapshot_id:<20} {entry.committed:%Y-%m-%d %H:%M:%S} {entry.operation:<10}{records}{refs}{history}")


def _rollback(args: argparse.Namespace) -> None:
    from mlfs_dagster.core.maintenance import rollback
    from mlfs_dagster.core.offline_store import missing_data_files

    table = Settings.from_env().offline_store().table(args.table)
    previous = table.current_snapshot()
    snapshot_id = rollback(table, args.to)
    print(f"{args.table}: main moved from snapshot {previous and previous.snapshot_id} to {snapshot_id} "
          f"(undo: mlfs rollback {args.table} --to {previous and previous.snapshot_id})")
    if missing := missing_data_files(table.refresh()):
        sys.exit(f"but this snapshot lacks files too: {missing}")


def _repair(args: argparse.Namespace) -> None:
    from mlfs_dagster.core.offline_store import missing_data_files
    from mlfs_dagster.repair import rematerialize_commands, system_of
    from mlfs_dagster.workspace import location_options

    missing = missing_data_files(Settings.from_env().offline_store().table(args.table))
    if missing is None:
        print(f"{args.table}: every data file of main's head is there")
        return
    system = system_of(_systems(args), args.table)
    print(missing, "\nRe-materialize the partitions with:", file=sys.stderr)
    print("\n".join(rematerialize_commands(system, args.table, missing.files.values(),
                                           location_options(_workspace(args), system.name))))


def _maintain(args: argparse.Namespace) -> None:
    from mlfs_dagster.core.maintenance import MaintenancePolicy, maintain_store

    default = MaintenancePolicy()
    policy = MaintenancePolicy(
        snapshot_max_age=dt.timedelta(days=args.max_age_days) if args.max_age_days is not None else default.snapshot_max_age,
        orphan_grace=dt.timedelta(hours=args.grace_hours) if args.grace_hours is not None else default.orphan_grace)
    store = Settings.from_env().offline_store()
    names = [args.system] if args.system else [s.name for s in _systems(args)]
    for name in names:
        for result in maintain_store(store, name, policy):
            print(f"{result.table:<44} {result.files_before:>6} -> {result.files_after:<6} files "
                  f"{result.bytes_before / 1e6:>9.2f} -> {result.bytes_after / 1e6:<9.2f} MB  "
                  f"compacted {result.files_compacted}, expired {result.snapshots_expired}, "
                  f"orphans {result.orphans_removed}")


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

    serve = commands.add_parser("serve", help="the online serving HTTP API: features and champion scores")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 in a container)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1, help="processes (about one per core)")
    serve.set_defaults(run=_serve)

    def table_command(name: str, run, help: str) -> argparse.ArgumentParser:
        command = commands.add_parser(name, help=help)
        command.add_argument("table", help="SYSTEM.TABLE, as `mlfs status` lists the tables")
        command.set_defaults(run=run)
        return command

    table_command("snapshots", _snapshots, "a table's snapshots, with its branches and tags")
    table_command("rollback", _rollback, "point a table's main branch at an earlier snapshot or tag").add_argument(
        "--to", required=True, help="snapshot id or tag (see `mlfs snapshots TABLE`)")
    table_command("repair", _repair, "name a table's lost data files and the command re-materializing them")

    maintain = commands.add_parser("maintain", help="compact, expire snapshots and remove orphan files now")
    maintain.add_argument("--system", help="one system (default: every system of the workspace)")
    maintain.add_argument("--max-age-days", type=float, help="expire untagged snapshots older than this (default 7)")
    maintain.add_argument("--grace-hours", type=float,
                          help="keep unreferenced files younger than this, for writes in flight (default 24)")
    maintain.set_defaults(run=_maintain)

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
