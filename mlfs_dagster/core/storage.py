"""Where files live: a local folder or an s3:// URI, on AWS or on an S3-compatible server (MinIO, moto).

Credentials are never configuration here: PyArrow and pyiceberg take them from the environment
(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN) or the instance role, like every AWS client.
"""

from __future__ import annotations

from dataclasses import dataclass

# Words of driver and server errors (psycopg2, sqlite, pyarrow's S3 and local files) that say what failed.
REFUSED = ("authentication failed", "role ", "permission denied", "pg_hba.conf", "readonly database",
           "access_denied", "invalidaccesskeyid", "signaturedoesnotmatch", "forbidden", "read-only file system")
UNREACHABLE = ("network_connection", "connection refused", "could not connect", "timed out", "timeout",
               "could not resolve", "server closed the connection")


def says(reason: str, words: tuple[str, ...]) -> bool:
    return any(word in reason.lower() for word in words)


class StoreError(RuntimeError):
    """A store could not be used; the message names it (never a secret) and says what to do."""


class StoreUnavailableError(StoreError):
    """A store's server did not answer. Retry later."""


class StoreAccessError(StoreError):
    """A store refused access (credentials, permissions, a read-only folder). Retrying does not help: fix the access."""


class StoreLocationError(StoreError):
    """A store's records point outside its own location (a copied or moved MLFS_HOME): using it would read or write
    another home's files, so it is refused."""


@dataclass(frozen=True)
class S3Options:
    endpoint: str | None = None  # an S3-compatible server, e.g. http://127.0.0.1:9000; None: AWS itself
    region: str | None = None

    def filesystem(self, uri: str):
        """The filesystem holding `uri` (a pyarrow FileSystem), and the path of `uri` on it."""
        import pyarrow.fs as pafs  # not at import: settings, read by every command, hold these options

        if uri.startswith("s3://"):
            # PyArrow ignores AWS_ENDPOINT_URL_S3: the endpoint is passed explicitly.
            return pafs.S3FileSystem(endpoint_override=self.endpoint, region=self.region), uri.removeprefix("s3://")
        if "://" in uri:
            return pafs.FileSystem.from_uri(uri)
        return pafs.LocalFileSystem(), uri

    def iceberg_properties(self) -> dict[str, str]:
        """pyiceberg FileIO properties for tables under an s3:// warehouse."""
        return {key: value for key, value in (("s3.endpoint", self.endpoint), ("s3.region", self.region)) if value}

    def describe(self, uri: str) -> str:
        """`uri` with the server holding it, as errors name a store."""
        return f"{uri} on S3 at {self.endpoint or 'AWS'}" if uri.startswith("s3://") else uri

    def file_store_error(self, store: str, uri: str, error: OSError) -> StoreError | None:
        """A filesystem error of `store` at `uri` that refused access or got no answer, named; None otherwise
        (a missing or malformed file is the caller's to explain)."""
        reason = str(error).strip().splitlines()[0]
        if says(reason, REFUSED):
            return StoreAccessError(f"{store} {self.describe(uri)} refused access: {reason}")
        if says(reason, UNREACHABLE):
            return StoreUnavailableError(f"{store} {self.describe(uri)} is unavailable: {reason}")
        return None


DEFAULT_S3 = S3Options()  # AWS itself, with the client's own region resolution
