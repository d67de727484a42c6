"""Faults, for real: a run killed with SIGKILL in the middle of a write, as a crashed machine would leave it;
concurrent runs racing for the same tables' commits on the PostgreSQL catalog and S3; S3 or the catalog database
down for a while; bad credentials; a read-only, copied or moved MLFS_HOME; the sensor daemon killed mid-tick."""

from __future__ import annotations

import datetime as dt
import json
import os
import select
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pyarrow.fs as pafs
import pytest
import yaml
from dagster import (
    AssetSelection,
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
    RetryPolicy,
    materialize,
)
from sqlalchemy import make_url

from mlfs_dagster.builders import build_definitions
from mlfs_dagster.builders.common import asset_key
from mlfs_dagster.core.offline_store import OfflineStore
from mlfs_dagster.resources import LandingZoneResource, OfflineStoreResource
from mlfs_dagster.settings import PROJECT_ROOT
from mlfs_dagster_tests.meters import generator
from mlfs_dagster_tests.meters.system import SYSTEM as METERS
from mlfs_dagster_tests.servers import POSTGRES, endpoint, free_port

DEFINITIONS = """from mlfs_dagster.builders import build_definitions
from mlfs_dagster_tests.meters.system import SYSTEM

defs = build_definitions(SYSTEM)
"""
HOURS = 48
TABLE = METERS.sources[0].table


def _environment(home: Path) -> dict[str, str]:
    """An MLFS_HOME of its own, its instance production's (SQLite storage instead of PostgreSQL), with run
    monitoring made quick."""
    config = yaml.safe_load((PROJECT_ROOT / "docker" / "dagster.yaml").read_text())
    del config["storage"]
    config["run_monitoring"].update(max_runtime_seconds=5, poll_interval_seconds=1, free_slots_after_run_end_seconds=1)
    (home / "dagster").mkdir(parents=True)
    (home / "dagster" / "dagster.yaml").write_text(yaml.safe_dump(config))
    (home / "defs.py").write_text(DEFINITIONS)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFS_", "DAGSTER_"))}
    return {**env, "MLFS_HOME": str(home), "DAGSTER_HOME": str(home / "dagster"),
            "PYTHONPATH": str(PROJECT_ROOT), "DAGSTER_DISABLE_TELEMETRY": "1"}


def _materialize(home: Path, env: dict, first_hour: int, last_hour: int) -> subprocess.Popen:
    hours = [generator.hour_key(METERS.start, h) for h in (first_hour, last_hour)]
    log = (home / f"materialize-{first_hour}.log").open("a")  # a pipe nobody reads would fill up and block it
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster"), "asset", "materialize", "-f", "defs.py",
         "--select", f"meters/{TABLE.split('.')[1]}", "--partition-range", "...".join(hours)],
        cwd=home, env=env, stdout=log, stderr=log, start_new_session=True)  # its own process group: the kill takes the step processes too, like a crash


def _data_files(home: Path) -> set[Path]:
    return set((home / "iceberg" / "warehouse").rglob("*.parquet"))


def test_a_run_killed_mid_write_leaves_the_table_whole_is_failed_by_run_monitoring_and_reruns(tmp_path):
    home, env = tmp_path, _environment(tmp_path)
    generator.generate(home / "landing", METERS.start, HOURS)
    first = _materialize(home, env, 0, HOURS // 2 - 1)
    assert first.wait(timeout=300) == 0, (home / "materialize-0.log").read_text()[-3000:]
    store = OfflineStore(f"sqlite:///{home}/iceberg/catalog.db", f"file://{home}/iceberg/warehouse")
    before = store.read(TABLE)
    files_before = _data_files(home)

    second = _materialize(home, env, HOURS // 2, HOURS - 1)
    deadline = time.monotonic() + 300
    while not (_data_files(home) - files_before) and second.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)  # killed as soon as its first data file is on disk, before or while it commits
    os.killpg(second.pid, signal.SIGKILL)
    second.wait()

    after_kill = store.read(TABLE)

    with DagsterInstance.from_config(str(home / "dagster")) as instance:
        killed = instance.get_runs(limit=1)[0]
        assert killed.status == DagsterRunStatus.STARTED  # the process is gone; nothing told the instance
        daemon = subprocess.Popen([str(Path(sys.executable).parent / "dagster-daemon"), "run", "-f", "defs.py"],
                                  cwd=home, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  start_new_session=True)
        try:
            deadline = time.monotonic() + 180
            # past its maximum runtime the daemon asks the run to stop (CANCELING), finds nobody, fails it
            while instance.get_run_by_id(killed.run_id).status in (DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING):
                assert time.monotonic() < deadline, "run monitoring did not fail the dead run"
                time.sleep(1)
            assert instance.get_run_by_id(killed.run_id).status == DagsterRunStatus.FAILURE
            # the daemon also gives back the pool slot the dead run held: the re-run is not blocked behind it
            rerun = _materialize(home, env, HOURS // 2, HOURS - 1)
            assert rerun.wait(timeout=300) == 0, (home / f"materialize-{HOURS // 2}.log").read_text()[-3000:]
        finally:
            os.killpg(daemon.pid, signal.SIGKILL)
    final = store.read(TABLE)
    keys = [(k, "ascending") for k in METERS.sources[0].keys]
    assert final.group_by([k for k, _ in keys]).aggregate([]).num_rows == final.num_rows > before.num_rows
    # the killed run's commit is all or nothing: the table it left is the one before it, or the finished one
    assert after_kill.sort_by(keys).equals(before.sort_by(keys)) or after_kill.sort_by(keys).equals(final.sort_by(keys))


# --- concurrent writers -------------------------------------------------------------------------------------

READINGS_PER_HOUR = len(generator.SITES) * len(generator.METERS)
READINGS, HISTORY = asset_key(METERS, "raw_readings"), asset_key(METERS, "meter_history")


class _StagedTogether(OfflineStore):
    """Each run's first publish waits until every run has staged on the same main: the race is certain, not
    left to the scheduler."""

    barrier = None

    def publish(self, identifier: str, branch: str) -> int:
        if not getattr(self, "waited", False):
            self.waited = True
            self.barrier.wait(timeout=120)
        return super().publish(identifier, branch)


class _StagedTogetherResource(OfflineStoreResource):
    def open(self) -> OfflineStore:
        return _StagedTogether(self.catalog_uri, self.warehouse, s3=self.s3())


def _run_partition(instance_overrides: dict, resources: dict, hour: int) -> None:
    """One run of a partition, in a process of its own as a run launched by Dagster would be."""
    from dagster._core.test_utils import instance_for_test

    defs = build_definitions(METERS)
    with instance_for_test(overrides=instance_overrides) as instance:
        result = materialize([*defs.assets, *(defs.asset_checks or [])], selection=AssetSelection.assets(READINGS, HISTORY),
                             partition_key=generator.hour_key(METERS.start, hour), instance=instance,
                             resources={**defs.resources, **resources}, raise_on_error=False)
    sys.exit(0 if result.success else 1)


def test_concurrent_runs_of_the_same_tables_all_land_once_on_postgresql_and_s3_with_their_retries_reported(
        postgres_databases, s3_server, tmp_path):
    import multiprocessing

    from dagster._core.test_utils import instance_for_test

    hours = [0, 1, 2, 2]  # four runs at once: three partitions, and two runs of the same one
    generator.generate(tmp_path / "landing", METERS.start, max(hours) + 1)
    s3, _ = s3_server.filesystem("s3://mlfs")
    pafs.copy_files(str(tmp_path / "landing"), "mlfs/concurrent/landing", destination_filesystem=s3)
    s3_options = {"s3_endpoint": s3_server.endpoint, "s3_region": s3_server.region}
    store = _StagedTogetherResource(catalog_uri=postgres_databases("catalog"), warehouse="s3://mlfs/concurrent/wh",
                                    **s3_options)
    resources = {"offline_store": store,
                 "landing_zone": LandingZoneResource(root="s3://mlfs/concurrent/landing", **s3_options)}
    fork = multiprocessing.get_context("fork")  # the runs inherit the imports: no start-up cost
    _StagedTogether.barrier = fork.Barrier(len(hours))
    overrides = {"storage": {"postgres": {"postgres_url": postgres_databases("dagster")}}}
    with instance_for_test(overrides=overrides) as instance:  # creates the storage before the runs share it
        runs = [fork.Process(target=_run_partition, args=(overrides, resources, hour)) for hour in hours]
        for run in runs:
            run.start()
        for run in runs:
            run.join(timeout=300)
        assert [run.exitcode for run in runs] == [0] * len(hours)
        retries = [r.asset_materialization.metadata["commit_retries"].value
                   for r in instance.fetch_materializations(READINGS, limit=100).records]

    assert len(retries) == len(hours)
    assert sum(retries) >= len(hours) - 1  # all staged on one main: every run but the first had to re-stage
    tables = OfflineStore(store.catalog_uri, store.warehouse, s3=store.s3())
    for table in (METERS.sources[0].table, METERS.feature_groups[0].table):
        rows = tables.read(table).to_pandas()
        keys = rows[["site_id", "meter_id", "event_time"]]
        assert not keys.duplicated().any(), table  # the partition written twice was replaced, not appended
        per_hour = keys["event_time"].dt.floor("h").value_counts()
        assert len(per_hour) == len(set(hours)) and (per_hour == READINGS_PER_HOUR).all(), (table, per_hour)


# --- stores unavailable for a while ---------------------------------------------------------------------------


def _raw_readings_run(store: OfflineStoreResource, landing: Path, instance: DagsterInstance | None = None):
    """One hour of the meters' raw readings, in-process (on an instance of its own unless given)."""
    defs = build_definitions(METERS)
    return materialize([*defs.assets, *(defs.asset_checks or [])], selection=AssetSelection.assets(READINGS),
                       partition_key=generator.hour_key(METERS.start, 0),
                       instance=instance or DagsterInstance.ephemeral(),
                       resources={**defs.resources, "offline_store": store,
                                  "landing_zone": LandingZoneResource(root=str(landing))}, raise_on_error=False)


def _errors(result, event_type: DagsterEventType) -> list[str]:
    return [e.event_specific_data.error.to_string() for e in result.all_events if e.event_type == event_type]


def _root_cause(result, instance: DagsterInstance) -> str:
    """What the system's run-failure sensor writes on a failed run."""
    from dagster import build_run_status_sensor_context

    from mlfs_dagster.builders.alerts import root_cause

    run = instance.get_run_by_id(result.run_id)
    return root_cause(build_run_status_sensor_context("run_failures", result.get_run_failure_event(), instance, run)
                      .for_run_failure())


def _s3_warehouse(tmp_path: Path, endpoint: str, catalog_uri: str | None = None) -> OfflineStoreResource:
    return OfflineStoreResource(catalog_uri=catalog_uri or f"sqlite:///{tmp_path}/catalog.db",
                                warehouse="s3://mlfs/warehouse", s3_endpoint=endpoint, s3_region="us-east-1")


def _back_during_the_delay(restore) -> RetryPolicy:
    """A retry policy of one retry after 1 s, during which `restore` brings the store back."""

    class BackDuringTheDelay(RetryPolicy):
        def calculate_delay(self, attempt_num: int) -> float:
            restore()
            return super().calculate_delay(attempt_num)

    return BackDuringTheDelay(max_retries=1, delay=1)


def _down_then_back(store: OfflineStoreResource, landing: Path, named: str, restore, monkeypatch, instance=None):
    """A run while the store is down fails naming it, after one retry; the next run, during whose retry delay
    `restore` brings the store back, succeeds with every row. Returns the failed run."""
    from mlfs_dagster.builders import common

    monkeypatch.setattr(common, "STORE_OUTAGE_RETRIES", RetryPolicy(max_retries=1, delay=1))
    down = _raw_readings_run(store, landing, instance or DagsterInstance.ephemeral())
    assert not down.success
    assert named in _errors(down, DagsterEventType.STEP_FAILURE)[0]
    assert len(_errors(down, DagsterEventType.STEP_UP_FOR_RETRY)) == 1

    monkeypatch.setattr(common, "STORE_OUTAGE_RETRIES", _back_during_the_delay(restore))
    retried = _raw_readings_run(store, landing)
    assert retried.success
    assert named in _errors(retried, DagsterEventType.STEP_UP_FOR_RETRY)[0]
    assert store.open().status(METERS.sources[0].table).rows == READINGS_PER_HOUR
    return down


def test_an_unavailable_s3_fails_the_step_naming_it_and_the_retry_succeeds_once_it_is_back(moto_s3, tmp_path,
                                                                                            monkeypatch):
    from moto.server import ThreadedMotoServer

    generator.generate(tmp_path / "landing", METERS.start, 1)
    address, port = endpoint(moto_s3), moto_s3.get_host_and_port()[1]
    moto_s3.stop()  # moto keeps its buckets in this process: a restarted server serves them again
    named = f"the Iceberg warehouse s3://mlfs/warehouse on S3 at {address} is unavailable"
    restarted = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    instance = DagsterInstance.ephemeral()
    try:
        down = _down_then_back(_s3_warehouse(tmp_path, address), tmp_path / "landing", named, restarted.start,
                               monkeypatch, instance)
    finally:
        restarted.stop()
        moto_s3.start()  # for the fixture to stop
    assert _root_cause(down, instance).startswith(f"meters__raw_readings: {named}")  # the failure sensor's report


def test_bad_credentials_fail_at_once_naming_the_store_that_refused_and_no_secret_is_logged(
        moto_s3, postgres_databases, tmp_path, monkeypatch, capfd):
    from moto.core.authorization import enable_iam_authentication


    generator.generate(tmp_path / "landing", METERS.start, 1)
    s3_secret, pg_secret = "s3-secret-a1b2c3", "pg-secret-d4e5f6"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAUNKNOWNKEY")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_secret)
    with enable_iam_authentication():  # moto now checks every request's key, as S3 does
        s3_refused = _raw_readings_run(_s3_warehouse(tmp_path, endpoint(moto_s3)), tmp_path / "landing")
    database = postgres_databases("catalog").rsplit("/", 1)[1]
    wrong_role = POSTGRES.replace("://postgres@", f"://intruder:{pg_secret}@") + f"/{database}"
    pg_refused = _raw_readings_run(_s3_warehouse(tmp_path, endpoint(moto_s3), wrong_role), tmp_path / "landing")

    named = {s3_refused: f"the Iceberg warehouse s3://mlfs/warehouse on S3 at {endpoint(moto_s3)} refused access",
             pg_refused: f"the Iceberg catalog at {wrong_role.replace(pg_secret, '***')} refused access"}
    for run, store in named.items():
        assert not run.success
        assert store in _errors(run, DagsterEventType.STEP_FAILURE)[0]
        assert not _errors(run, DagsterEventType.STEP_UP_FOR_RETRY)  # a refusal is not retried: it would recur
        logged = "\n".join(str(event) for event in run.all_events)  # the run's whole event log, metadata included
        assert store in logged and s3_secret not in logged and pg_secret not in logged
    printed = capfd.readouterr()
    assert not any(secret in printed.out + printed.err for secret in (s3_secret, pg_secret))


# --- a read-only, a copied or a moved MLFS_HOME -----------------------------------------------------------------


@pytest.fixture
def small_home(monkeypatch):
    """An MLFS_HOME holding tables, a model registry and Dagster's storage."""
    from mlfs_dagster.core.registry import ModelRegistry

    home = Path(tempfile.mkdtemp(prefix="mlfs_home_"))
    generator.generate(home / "landing", METERS.start, 1)
    (home / "dagster").mkdir()
    shutil.copyfile(PROJECT_ROOT / "dagster.yaml", home / "dagster" / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
    store = OfflineStoreResource(catalog_uri=f"sqlite:///{home}/iceberg/catalog.db",
                                 warehouse=f"file://{home}/iceberg/warehouse")
    with DagsterInstance.from_config(str(home / "dagster")) as instance:
        assert _raw_readings_run(store, home / "landing", instance).success
    ModelRegistry(f"sqlite:///{home}/mlflow/mlflow.db", str(home / "mlflow" / "artifacts")).models()
    yield home
    subprocess.run(["chmod", "-R", "u+w", str(home.parent)], check=False)
    shutil.rmtree(home, ignore_errors=True)


def _run_on(home: Path, command: list[str], read_only: bool = False) -> subprocess.CompletedProcess:
    """`command` on `home`, made read-only if asked: root ignores file permissions, so as root the home is a
    read-only bind mount in a mount namespace of the command's own (as a read-only volume would be)."""
    if read_only:
        subprocess.run(["chmod", "-R", "a-w", str(home)], check=True)
    if read_only and os.geteuid() == 0:
        remount = 'mount --bind "$0" "$0" && mount -o remount,ro,bind "$0" && exec "$@"'
        command = ["unshare", "--mount", "sh", "-c", remount, str(home), *command]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFS_", "DAGSTER_"))}
    env.update(MLFS_HOME=str(home), DAGSTER_HOME=str(home / "dagster"), PYTHONPATH=str(PROJECT_ROOT))
    return subprocess.run(command, env=env, cwd=home, capture_output=True, text=True, timeout=300)


MLFS = str(Path(sys.executable).parent / "mlfs")
WRITE = """import datetime as dt
from mlfs_dagster.core.offline_store import TimeRange
from mlfs_dagster.settings import Settings
hour = TimeRange(dt.datetime(2025, 6, 1, tzinfo=dt.UTC), dt.datetime(2025, 6, 1, 1, tzinfo=dt.UTC))
store = Settings.from_env().offline_store()
store.replace_range("meters.raw_readings", store.read("meters.raw_readings"), "event_time", hour)  # the same rows
"""


def test_a_read_only_home_shows_its_status_and_refuses_writes_naming_the_path(small_home):
    status = _run_on(small_home, [MLFS, "status", "--json"], read_only=True)
    assert status.returncode == 0, status.stderr[-3000:]
    shown = json.loads(status.stdout)
    assert {t["table"]: t["rows"] for t in shown["tables"]}["meters.raw_readings"] == READINGS_PER_HOUR
    # Dagster opens its SQLite storage read-write only: the one part not shown, and said so
    assert shown["unavailable"]["sensor_requests"].startswith(f"Dagster's storage under {small_home}/dagster")

    write = _run_on(small_home, [sys.executable, "-c", WRITE], read_only=True)
    assert write.returncode != 0
    assert f"StoreAccessError: the Iceberg warehouse file://{small_home}/iceberg/warehouse refused access" in write.stderr
    assert "Read-only file system" in write.stderr or "Permission denied" in write.stderr


def test_a_copied_home_whose_original_moved_refuses_to_use_the_originals_tables_and_says_why(small_home):
    copy = small_home.with_name(small_home.name + "_copy")
    shutil.copytree(small_home, copy)
    moved = small_home.rename(small_home.with_name(small_home.name + "_moved"))
    try:
        status = _run_on(copy, [MLFS, "status"])
    finally:
        moved.rename(small_home)
        shutil.rmtree(copy)
    assert status.returncode == 1
    assert status.stderr.startswith(f"mlfs status: the Iceberg catalog at sqlite:///{copy}/iceberg/catalog.db lists 2 "
                                    f"table(s) outside its warehouse file://{copy}/iceberg/warehouse")
    assert f"at file://{small_home}/iceberg/warehouse/meters/" in status.stderr
    assert "copied or moved" in status.stderr and "Traceback" not in status.stderr


# --- the sensor daemon killed in the middle of a tick ----------------------------------------------------------


def _sensor_daemon_iteration(instance_ref, definitions: Path, at: float, crash_at: str | None) -> None:
    """One iteration of the sensor daemon's own loop (`execute_sensor_iteration`) at time `at`; with `crash_at`,
    the process is killed with SIGKILL at that point of the retraining sensor's tick (Dagster's crash points)."""
    from dagster._core.remote_origin import InProcessCodeLocationOrigin
    from dagster._core.test_utils import create_test_daemon_workspace_context, freeze_time
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
    from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
    from dagster._daemon import get_default_daemon_logger
    from dagster._daemon.sensor import execute_sensor_iteration

    from mlfs_dagster.builders.monitoring import sensor_name

    code = InProcessWorkspaceLoadTarget(InProcessCodeLocationOrigin(LoadableTargetOrigin(
        python_file=str(definitions), attribute="defs", working_directory=str(definitions.parent))))
    crash = {sensor_name(METERS, METERS.models[0]): {crash_at: signal.SIGKILL}} if crash_at else None
    with DagsterInstance.from_ref(instance_ref) as instance, freeze_time(at), \
            create_test_daemon_workspace_context(code, instance) as workspace:
        list(execute_sensor_iteration(workspace, get_default_daemon_logger("SensorDaemon"), None, None,
                                      debug_crash_flags=crash))


@pytest.mark.parametrize("crash_at", ["RUN_IDS_RESERVED", "RUN_CREATED", "RUN_LAUNCHED"])
def test_a_sensor_daemon_killed_mid_tick_and_restarted_requests_the_retraining_once(crash_at, tmp_path,
                                                                                     monkeypatch):
    """Sustained drift on the meters model: its retraining sensor requests one run (run key: the episode). The
    daemon is killed after reserving the run's id, after creating the run, or after submitting it; the restarted
    daemon resumes the tick: one run in every case, submitted, none skipped, and later ticks add none."""
    import multiprocessing

    from dagster import AssetMaterialization, RunsFilter
    from dagster._core.storage.tags import RUN_KEY_TAG, SENSOR_NAME_TAG

    from mlfs_dagster.builders.monitoring import drift_asset_name, retraining_run_key, sensor_name
    from mlfs_dagster.core.retraining import Episode

    model = METERS.models[0]
    shutil.copyfile(PROJECT_ROOT / "dagster.yaml", tmp_path / "dagster.yaml")  # the embedded instance: run queue
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    (tmp_path / "defs.py").write_text(DEFINITIONS)
    onset = dt.datetime.combine(METERS.start, dt.time(), tzinfo=dt.UTC)
    run_key = retraining_run_key(model, Episode("1", (onset,)))
    fork = multiprocessing.get_context("fork")  # the daemon's iterations inherit the imports

    with DagsterInstance.from_config(str(tmp_path)) as instance:
        for hour in range(model.drifted_partitions_to_retrain):  # sustained drift from the first hour
            instance.report_runless_asset_event(AssetMaterialization(
                asset_key(METERS, drift_asset_name(model)), partition=generator.hour_key(METERS.start, hour),
                metadata={"drifted": True, "model_version": "1"}))
        for hour in range(model.new_labelled_partitions_to_retrain + 1):  # labels final past the onset's need
            instance.report_runless_asset_event(AssetMaterialization(
                asset_key(METERS, model.feature_view.label_source.asset_name),
                partition=generator.hour_key(METERS.start, hour)))

        def iteration(at: float, crash: str | None = None) -> int:
            daemon = fork.Process(target=_sensor_daemon_iteration, args=(instance.get_ref(), tmp_path / "defs.py",
                                                                          at, crash))
            daemon.start()
            daemon.join(timeout=120)
            return daemon.exitcode

        def runs():  # every run the sensor requested
            return instance.get_runs(filters=RunsFilter(tags={SENSOR_NAME_TAG: sensor_name(METERS, model)}))

        now = time.time()
        assert iteration(now, crash_at) == -signal.SIGKILL
        assert len(runs()) == (0 if crash_at == "RUN_IDS_RESERVED" else 1)
        assert iteration(now + 61) == 0  # restarted past the sensor's minimum interval: the tick resumes
        assert iteration(now + 122) == 0  # a later tick finds the same episode, the same run key
        assert [(run.tags[RUN_KEY_TAG], run.status) for run in runs()] == [(run_key, DagsterRunStatus.QUEUED)]


class _ToPostgres(socketserver.BaseRequestHandler):
    """Pipes a connection to the PostgreSQL server under test, both ways, until either side closes."""

    def handle(self) -> None:

        postgres = make_url(POSTGRES)
        with socket.create_connection((postgres.host, postgres.port or 5432)) as server:
            ends = {self.request: server, server: self.request}
            while True:
                for end in select.select(list(ends), [], [])[0]:
                    data = end.recv(1 << 16)
                    if not data:
                        return
                    ends[end].sendall(data)


def test_an_unavailable_catalog_database_fails_the_step_naming_it_and_the_retry_succeeds_once_it_is_back(
        postgres_databases, tmp_path, monkeypatch):
    generator.generate(tmp_path / "landing", METERS.start, 1)
    port = free_port()  # PostgreSQL behind a port of its own, where nothing listens yet: the database is down
    catalog = make_url(postgres_databases("catalog")).set(host="127.0.0.1", port=port)
    store = OfflineStoreResource(catalog_uri=catalog.render_as_string(), warehouse=f"file://{tmp_path}/warehouse")
    proxy = socketserver.ThreadingTCPServer(("127.0.0.1", port), _ToPostgres, bind_and_activate=False)
    proxy.daemon_threads = proxy.allow_reuse_address = True
    serving = threading.Thread(target=proxy.serve_forever, daemon=True)

    def back() -> None:
        proxy.server_bind()
        proxy.server_activate()
        serving.start()

    try:
        _down_then_back(store, tmp_path / "landing", f"the Iceberg catalog at {catalog!r} is unavailable", back,
                        monkeypatch)
    finally:
        if serving.is_alive():
            proxy.shutdown()
        proxy.server_close()
