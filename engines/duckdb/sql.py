"""SQL over the warehouse the pipelines wrote, with DuckDB's own Iceberg reader (not pyiceberg).

    mlfs status --json | uv run --no-project --with-requirements engines/duckdb/requirements.txt \
        python engines/duckdb/sql.py "SELECT count(*) FROM card_fraud.card_txn_windows"

Every table `mlfs status` lists becomes a view `<namespace>.<table>` over its current metadata file, so a query
sees exactly the snapshot the catalog points to. An `s3://` warehouse is read with the AWS_* variables the
pipelines use (AWS_ENDPOINT_URL_S3 for an S3-compatible server).
"""

import argparse
import json
import os
import sys
from importlib import import_module
from pathlib import Path
from urllib.parse import urlparse

import duckdb


def connect(tables: list[dict]) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for extension in ("avro", "iceberg", "httpfs"):  # iceberg needs avro for its manifests
        package = Path(import_module(f"duckdb_extension_{extension}").__path__[0])
        con.load_extension(str(next(package.rglob("*.duckdb_extension"))))
    if any(t["metadata_location"].startswith("s3://") for t in tables):
        con.execute(_s3_secret())
    for table in tables:
        namespace, name = table["table"].rsplit(".", 1)
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {_q(namespace)}")
        con.execute(f"CREATE VIEW {_q(namespace)}.{_q(name)} AS "
                    f"SELECT * FROM iceberg_scan('{table['metadata_location']}')")
    return con


def _s3_secret() -> str:
    """Credentials and endpoint from the environment, as the pipelines take them."""
    options = {"KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID"), "SECRET": os.environ.get("AWS_SECRET_ACCESS_KEY"),
               "SESSION_TOKEN": os.environ.get("AWS_SESSION_TOKEN"),
               "REGION": os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")}
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:  # an S3-compatible server: path-style URLs, TLS only if the endpoint says https
        url = urlparse(endpoint)
        options |= {"ENDPOINT": url.netloc, "URL_STYLE": "path", "USE_SSL": str(url.scheme == "https").lower()}
    settings = ", ".join(f"{key} '{value}'" for key, value in options.items() if value)
    return f"CREATE SECRET warehouse (TYPE s3{', ' if settings else ''}{settings})"


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sql", help="the query; tables are named <namespace>.<table>, as `mlfs status` lists them")
    parser.add_argument("--json", action="store_true", help="rows as JSON objects, one per line")
    args = parser.parse_args()
    result = connect(json.load(sys.stdin)["tables"]).sql(args.sql)
    if args.json:
        for row in result.fetchall():
            print(json.dumps(dict(zip(result.columns, row, strict=True)), default=str))
    else:
        result.show(max_rows=40)


if __name__ == "__main__":
    main()
