"""The stores, as Dagster resources: thin configurable handles onto the core's store classes.

Configuration comes from the environment (see `settings.Settings`): unset, everything is embedded under
MLFS_HOME; in production the same code points at PostgreSQL, S3 and an MLflow server.
"""

from __future__ import annotations

import os
from pathlib import Path

from dagster import ConfigurableResource, EnvVar
from pydantic import Field

from mlfs_dagster.core.landing import LandingZone
from mlfs_dagster.core.offline_store import OfflineStore
from mlfs_dagster.core.online_store import OnlineStore, open_online_store
from mlfs_dagster.core.registry import ModelRegistry
from mlfs_dagster.core.storage import S3Options
from mlfs_dagster.settings import Settings


class S3Configured(ConfigurableResource):
    """A store whose locations may be s3:// URIs. Credentials come from the environment, never from here."""

    s3_endpoint: str | None = Field(default=None, description="An S3-compatible server (MinIO, moto); None: AWS.")
    s3_region: str | None = Field(default=None, description="S3 region; None: the client's default.")

    def s3(self) -> S3Options:
        return S3Options(self.s3_endpoint, self.s3_region)


class OfflineStoreResource(S3Configured):
    """Iceberg tables (pyiceberg SQL catalog): raw data, feature groups, training sets, predictions."""

    catalog_uri: str = Field(description="SQLAlchemy URI of the Iceberg SQL catalog.")
    warehouse: str = Field(description="Where table data and metadata files live (file:// or s3://).")

    def open(self) -> OfflineStore:
        return OfflineStore(self.catalog_uri, self.warehouse, s3=self.s3())


class LandingZoneResource(S3Configured):
    """Daily files from upstream systems: a local folder or an s3:// prefix."""

    root: str = Field(description="Folder or s3:// URI holding <source>/date=YYYY-MM-DD/*.parquet.")

    def open(self) -> LandingZone:
        return LandingZone(self.root, self.s3())


class ModelRegistryResource(ConfigurableResource):
    """MLflow tracking and model registry."""

    tracking_uri: str = Field(description="MLflow tracking URI (sqlite:/// embedded, http:// for a server).")
    artifact_location: str = Field(description="Where model artifacts are stored.")

    def open(self) -> ModelRegistry:
        return ModelRegistry(self.tracking_uri, self.artifact_location)


class OnlineStoreResource(ConfigurableResource):
    """Each entity's latest features, for serving: SQLite under MLFS_HOME, or Redis or PostgreSQL by URL."""

    url: str = Field(description="redis://, postgresql:// or sqlite:/// URL (MLFS_ONLINE_STORE; a password only there).")

    def open(self) -> OnlineStore:
        return open_online_store(self.url)


class ReportStoreResource(ConfigurableResource):
    """Folder for monitoring reports (Evidently HTML)."""

    root: str = Field(description="Folder that receives report files.")
    base_url: str = Field(description="Where the folder is served over HTTP (`mlfs reports`), for one-click links.")

    def path(self, *parts: str) -> Path:
        return Path(self.root, *parts)

    def url(self, path: Path) -> str:
        return f"{self.base_url}/{path.relative_to(self.root).as_posix()}"


def resources_from_env(settings: Settings | None = None) -> dict[str, ConfigurableResource]:
    settings = settings or Settings.from_env()
    return {
        "offline_store": OfflineStoreResource(catalog_uri=settings.catalog_uri, warehouse=settings.warehouse,
                                              s3_endpoint=settings.s3.endpoint, s3_region=settings.s3.region),
        "landing_zone": LandingZoneResource(root=settings.landing, s3_endpoint=settings.s3.endpoint,
                                            s3_region=settings.s3.region),
        "model_registry": ModelRegistryResource(
            tracking_uri=settings.mlflow_tracking_uri, artifact_location=settings.mlflow_artifacts
        ),
        "report_store": ReportStoreResource(root=str(settings.reports), base_url=settings.reports_url),
        # From the variable itself when set: the UI then shows its name, never a password in the URL.
        "online_store": OnlineStoreResource(
            url=EnvVar("MLFS_ONLINE_STORE") if os.environ.get("MLFS_ONLINE_STORE") else settings.online_store),
    }
