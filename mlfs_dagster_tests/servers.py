"""Real servers for the production, fault and engine tests (a pytest plugin of the suite's conftest).

PostgreSQL and Redis are the machine's (a database per test, dropped after; for Redis a key prefix per test,
deleted after; the tests skip, naming the address and `MLFS_TEST_POSTGRES` or `MLFS_TEST_REDIS`, when no
server answers). S3 is a moto server the tests start on loopback.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid

import pytest

from mlfs_dagster.core.storage import S3Options

POSTGRES = os.environ.get("MLFS_TEST_POSTGRES", "postgresql+psycopg2://postgres@127.0.0.1:5432")
REDIS = os.environ.get("MLFS_TEST_REDIS", "redis://127.0.0.1:6379/0")
S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "mlfs-test", "AWS_SECRET_ACCESS_KEY": "mlfs-test-secret"}
S3_REGION = "us-east-1"


def admin_connection():
    import psycopg2

    try:
        connection = psycopg2.connect(POSTGRES.replace("+psycopg2", "") + "/postgres", connect_timeout=3)
    except psycopg2.OperationalError as error:
        pytest.skip(f"no PostgreSQL server at {POSTGRES} ({str(error).strip().splitlines()[0]}): "
                    "set MLFS_TEST_POSTGRES to run the production-storage tests")
    connection.autocommit = True
    return connection


@pytest.fixture
def postgres_databases():
    """A factory of fresh PostgreSQL databases, each dropped after the test."""
    connection, created = admin_connection(), []

    def create(purpose: str) -> str:
        name = f"mlfs_test_{purpose}_{uuid.uuid4().hex[:8]}"
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        created.append(name)
        return f"{POSTGRES}/{name}"

    yield create
    with connection.cursor() as cursor:
        for name in created:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    connection.close()


@pytest.fixture
def redis_prefix():
    """A key prefix of the machine's Redis for one test; its keys are deleted after."""
    import redis

    client = redis.Redis.from_url(REDIS, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.ConnectionError as error:
        pytest.skip(f"no Redis server at {REDIS} ({error}): set MLFS_TEST_REDIS to run the Redis tests")
    prefix = f"mlfs_test_{uuid.uuid4().hex[:8]}:"
    yield prefix
    stale = list(client.scan_iter(match=prefix + "*", count=10_000))
    if stale:
        client.delete(*stale)
    client.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def endpoint(server) -> str:
    return "http://{}:{}".format(*server.get_host_and_port())


def _started_moto_s3():
    """A moto S3 server on a loopback port of its own (a test may stop it and start another there), with the
    bucket `mlfs`; credentials must already be in the environment."""
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    boto3.client("s3", endpoint_url=endpoint(server), region_name=S3_REGION).create_bucket(Bucket="mlfs")
    return server


@pytest.fixture(scope="module")
def s3_server():
    """One S3 server for a module's tests, as the stores see it (S3Options); credentials through the environment."""
    with pytest.MonkeyPatch.context() as patch:
        for key, value in S3_CREDENTIALS.items():
            patch.setenv(key, value)
        server = _started_moto_s3()
        yield S3Options(endpoint=endpoint(server), region=S3_REGION)
        server.stop()


@pytest.fixture
def moto_s3(monkeypatch):
    """An S3 server of the test's own, which it may stop and restart; yields the moto server."""
    for key, value in S3_CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    server = _started_moto_s3()
    yield server
    server.stop()
