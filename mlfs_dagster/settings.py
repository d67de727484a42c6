"""Where the system keeps its data: everything lives under one folder, MLFS_HOME.

Each location can be pointed elsewhere by its own environment variable (production: PostgreSQL for
Dagster's storage and the Iceberg catalog, S3 for the warehouse and landing zone, an MLflow server); unset,
all are embedded under MLFS_HOME. S3 credentials come from the environment or an instance role, as for any
AWS client; an S3-compatible server is named by AWS_ENDPOINT_URL_S3.
"""

import os
from dataclasses import dataclass
from pathlib import Path

from mlfs_dagster.core.storage import S3Options

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def mlfs_home() -> Path:
    return Path(os.environ.get("MLFS_HOME") or PROJECT_ROOT / ".mlfs").resolve()


@dataclass(frozen=True)
class Settings:
    home: Path
    dagster_home: Path
    catalog_uri: str
    warehouse: str
    landing: str
    mlflow_tracking_uri: str
    mlflow_artifacts: str
    reports: Path
    reports_url: str  # where `mlfs reports` serves the reports folder: report links in the UI point there
    dagster_storage: str | None  # PostgreSQL URL of Dagster's storage; None: SQLite under dagster_home
    s3: S3Options
    online_store: str  # redis://, postgresql:// or sqlite:/// (embedded, under MLFS_HOME)

    @classmethod
    def from_env(cls) -> "Settings":
        home = mlfs_home()
        tracking_uri = with_driver(os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{home}/mlflow/mlflow.db")
        return cls(
            home=home,
            dagster_home=Path(os.environ.get("DAGSTER_HOME") or home / "dagster"),
            catalog_uri=with_driver(os.environ.get("MLFS_CATALOG_URI") or f"sqlite:///{home}/iceberg/catalog.db"),
            warehouse=os.environ.get("MLFS_WAREHOUSE") or f"file://{home}/iceberg/warehouse",
            landing=os.environ.get("MLFS_LANDING") or str(home / "landing"),
            mlflow_tracking_uri=tracking_uri,
            mlflow_artifacts=os.environ.get("MLFS_MLFLOW_ARTIFACTS") or _mlflow_artifacts(home, tracking_uri),
            reports=Path(os.environ.get("MLFS_REPORTS") or home / "reports"),
            reports_url=(os.environ.get("MLFS_REPORTS_URL") or "http://localhost:3001").rstrip("/"),
            dagster_storage=with_driver(os.environ.get("MLFS_DAGSTER_STORAGE")),
            s3=S3Options(endpoint=os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL"),
                         region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")),
            online_store=with_driver(os.environ.get("MLFS_ONLINE_STORE")) or f"sqlite:///{home}/online/features.db",
        )

    def offline_store(self):
        # Imported here: pyiceberg takes seconds to import, and most commands read settings without a store.
        from mlfs_dagster.core.offline_store import OfflineStore

        return OfflineStore(self.catalog_uri, self.warehouse, s3=self.s3)


def _mlflow_artifacts(home: Path, tracking_uri: str) -> str:
    """Embedded: a folder under MLFS_HOME. With a tracking server: the server's own artifact store, through it
    (clients then need no credentials for where it keeps them)."""
    if tracking_uri.startswith(("http://", "https://")):
        return "mlflow-artifacts:/mlfs"
    return str(home / "mlflow" / "artifacts")


def with_driver(uri: str | None) -> str | None:
    """A PostgreSQL URL with the psycopg2 driver named: SQLAlchemy 2.1 takes a bare postgresql:// to mean
    psycopg 3, which the project does not install."""
    if uri and uri.split("://", 1)[0] in ("postgres", "postgresql"):
        return "postgresql+psycopg2://" + uri.split("://", 1)[1]
    return uri


# Every location that could send writes somewhere other than MLFS_HOME.
LOCATION_VARIABLES = ("MLFS_CATALOG_URI", "MLFS_WAREHOUSE", "MLFS_LANDING", "MLFLOW_TRACKING_URI",
                      "MLFS_MLFLOW_ARTIFACTS", "MLFS_REPORTS", "MLFS_DAGSTER_STORAGE", "MLFS_ONLINE_STORE")


def use_home(home: Path) -> Settings:
    """Point every store and Dagster at `home`, as a fresh MLFS_HOME would be (benchmarks and tests)."""
    for name in LOCATION_VARIABLES:
        os.environ.pop(name, None)
    os.environ["MLFS_HOME"] = str(home)
    os.environ["DAGSTER_HOME"] = str(home / "dagster")
    return Settings.from_env()
