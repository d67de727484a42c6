"""The serving HTTP API in process (Starlette's TestClient) against the simulated world, and `mlfs serve` started
as a command: scores equal batch inference's on the same vectors, features equal `serving.online_vectors`,
unknown entities score, bad requests name their field, and a moved champion alias is followed without a
restart or a failed request."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import msgspec
import pyarrow as pa
import pytest
from starlette.testclient import TestClient

from card_fraud.system import FRAUD_MODEL, FRAUD_VIEW, SYSTEM
from mlfs_dagster.core import serving
from mlfs_dagster.core.online_store import RedisOnlineStore
from mlfs_dagster.core.registry import ModelRegistry
from mlfs_dagster.core.training import predict
from mlfs_dagster.server import Service, build_app, openapi_examples
from mlfs_dagster_tests.conftest import DAYS, day, groups
from mlfs_dagster_tests.servers import REDIS, free_port
from mlfs_dagster_tests.test_online_serving import END, recent_transactions

MODEL, VIEW = FRAUD_MODEL.registered_name, f"{SYSTEM.name}.{FRAUD_VIEW.name}"


def registry(world) -> ModelRegistry:
    return ModelRegistry(world.settings.mlflow_tracking_uri, world.settings.mlflow_artifacts)


@pytest.fixture(scope="module")
def online(world):
    assert world.materialize(groups("serving"), (day(1), day(DAYS))).success
    return world


@pytest.fixture(scope="module")
def client(online):
    service = Service.of([SYSTEM], online.online_store(), registry(online), poll_seconds=0.2)
    with TestClient(build_app(service, openapi_examples(service.views, online.store()))) as client:
        yield client


def request_rows(world, rows: int = 50) -> tuple[list[dict], pa.Table]:
    """Recent transactions as request rows at the end of the last day (every stored row is before it)."""
    recent = recent_transactions(world, rows)
    recent = recent.set_column(recent.column_names.index(FRAUD_VIEW.spine_time), FRAUD_VIEW.spine_time,
                               pa.array([END] * recent.num_rows, pa.timestamp("us", "UTC")))
    as_json = [{**row, FRAUD_VIEW.spine_time: END.isoformat()} for row in recent.to_pylist()]
    return as_json, recent


def as_json(value):
    return msgspec.json.decode(msgspec.json.encode(value))


def test_predictions_equal_batch_inference_on_the_same_vectors_single_and_batched(online, client):
    rows, table = request_rows(online)
    served = serving.online_vectors(FRAUD_VIEW, online.online_store(), table, END)
    expected = predict(registry(online).load_by_alias(MODEL, "champion"), FRAUD_MODEL, served.vectors).tolist()
    version = registry(online).version_by_alias(MODEL, "champion").version

    batch = client.post("/predict", json={"model": MODEL, "rows": rows}).json()
    assert batch["model"] == MODEL and batch["version"] == version
    assert [r["score"] for r in batch["rows"]] == expected
    assert [r["status"] for r in batch["rows"]] == served.statuses
    assert sum(all(s == "ok" for s in r["status"].values()) for r in batch["rows"]) > 40
    singles = [client.post("/predict", json={"model": MODEL, "row": row}).json() for row in rows[:10]]
    assert [s["rows"][0]["score"] for s in singles] == expected[:10]
    assert all(s["version"] == version for s in singles)


def test_concurrent_predictions_are_scored_together_and_equal_each_alone(online, client, monkeypatch):
    rows, _ = request_rows(online, 10)
    alone = [client.post("/predict", json={"model": MODEL, "row": row}).json() for row in rows]
    service, calls = client.app.state.service, []
    score = service.score
    monkeypatch.setattr(service, "score", lambda model, requests: calls.append(len(requests)) or score(model, requests))

    async def together():
        async with httpx2.AsyncClient(transport=httpx2.ASGITransport(client.app), base_url="http://serving") as http:
            return await asyncio.gather(*(http.post("/predict", json={"model": MODEL, "row": row}) for row in rows))

    assert [answer.json() for answer in asyncio.run(together())] == alone
    assert sum(calls) == len(rows) and len(calls) < len(rows)  # some requests shared a call


def test_features_equal_the_online_vectors_with_event_times_and_statuses(online, client):
    rows, table = request_rows(online, 20)
    served = serving.online_vectors(FRAUD_VIEW, online.online_store(), table, END)
    answer = client.post("/features", json={"feature_view": VIEW, "rows": rows})
    assert answer.status_code == 200
    got = answer.json()["rows"]
    vectors = served.vectors.to_pylist()
    times = {s.name: FRAUD_VIEW.matched_time_column(s) for s in FRAUD_VIEW.selections}
    assert [r["features"] for r in got] == as_json([{c: v[c] for c in v if c not in times.values()} for v in vectors])
    event_times = [{g: t and dt.datetime.fromisoformat(t) for g, t in r["event_times"].items()} for r in got]
    assert event_times == [{g: v[c] for g, c in times.items()} for v in vectors]
    assert [r["status"] for r in got] == served.statuses


def test_an_unknown_entity_scores_with_nulls_and_says_missing(online, client):
    rows, _ = request_rows(online, 1)
    unknown = {**rows[0], "card_id": "no-such-card", "merchant_id": "no-such-merchant"}
    answer = client.post("/predict", json={"model": MODEL, "row": unknown})
    assert answer.status_code == 200
    row = answer.json()["rows"][0]
    assert set(row["status"].values()) == {"missing"} and set(row["event_times"].values()) == {None}
    assert 0 <= row["score"] <= 1
    features = client.post("/features", json={"feature_view": VIEW, "row": unknown}).json()["rows"][0]["features"]
    assert features["txn_count_7d"] is None and features["merchant_fraud_rate_28d"] is None


@pytest.mark.parametrize(("body", "status", "named"), [
    ({"model": "card_fraud.nope", "row": {"card_id": "c1", "merchant_id": "m1"}}, 404, "model"),
    ({"feature_view": "nope", "row": {"card_id": "c1", "merchant_id": "m1"}}, 404, "feature_view"),
    ({"row": {"card_id": "c1", "merchant_id": "m1"}}, 400, "model"),
    ({"model": MODEL, "row": {"merchant_id": "m1"}}, 400, "card_id"),
    ({"model": MODEL, "row": {"card_id": "c1", "merchant_id": "m1", "amount": "ten"}}, 400, "amount"),
    ({"model": MODEL, "row": {"card_id": "c1", "merchant_id": "m1", "card_present": 1}}, 400, "card_present"),
    ({"model": MODEL, "row": {"card_id": "c1", "merchant_id": "m1", "event_time": "yesterday"}}, 400, "event_time"),
    ({"model": MODEL, "row": {"card_id": "c1", "merchant_id": "m1", "colour": "red"}}, 400, "colour"),
    ({"model": MODEL, "rows": []}, 400, "rows"),
    ({"model": MODEL, "rows": ["c1"]}, 400, "rows[0]"),
    ({"model": MODEL}, 400, "rows"),
    ({"model": MODEL, "row": {"card_id": "c1", "merchant_id": "m1"}, "extra": 1}, 400, "extra"),
])
def test_bad_requests_get_a_4xx_naming_the_field(client, body, status, named):
    path = "/features" if "feature_view" in body else "/predict"
    answer = client.post(path, json=body)
    assert answer.status_code == status, answer.text
    assert named in answer.json()["detail"]


def test_a_body_that_is_not_json_is_refused(client):
    answer = client.post("/predict", content=b"{not json", headers={"content-type": "application/json"})
    assert answer.status_code == 400 and answer.json()["detail"].startswith("body")


def test_the_openapi_examples_are_real_rows_that_score(client):
    document = client.get("/openapi.json").json()
    for path, name_field in (("/features", "feature_view"), ("/predict", "model")):
        examples = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]["examples"]
        assert len(examples) == 2, examples
        for example in examples.values():
            answer = client.post(path, json=example["value"])
            assert answer.status_code == 200, answer.text
            assert name_field in answer.json()
    assert client.get("/docs").status_code == 200


def test_a_moved_champion_alias_is_served_without_restart_or_failed_request(online, client):
    models = registry(online)
    before = models.version_by_alias(MODEL, "champion")
    pipeline = models.load_version(MODEL, before.version)
    moved = models.log_and_register(pipeline, MODEL, metrics={}, params={}, tags={"purpose": "test_server"})
    rows, _ = request_rows(online, 5)
    try:
        models.set_alias(MODEL, "champion", moved.version)
        versions, deadline = [], time.monotonic() + 60
        while time.monotonic() < deadline and (not versions or versions[-1] != moved.version):
            answer = client.post("/predict", json={"model": MODEL, "rows": rows})
            assert answer.status_code == 200, answer.text  # every request during the reload is answered
            versions.append(answer.json()["version"])
        assert versions[0] == before.version and versions[-1] == moved.version
        assert client.get("/health").json()["models"][MODEL] == moved.version
    finally:
        models.set_alias(MODEL, "champion", before.version)  # the session's other tests see the champion they built


def test_predictions_read_from_redis_equal_those_from_sqlite(online, client, redis_prefix):
    redis_store = RedisOnlineStore(REDIS, prefix=redis_prefix)
    for selection in FRAUD_VIEW.selections:
        group = selection.group
        redis_store.write(group.table, online.store().read(group.table), group.entity_keys, group.time_column,
                          group.created_column)
    service = Service.of([SYSTEM], redis_store, registry(online))
    rows, _ = request_rows(online, 30)
    with TestClient(build_app(service)) as on_redis:
        from_redis = on_redis.post("/predict", json={"model": MODEL, "rows": rows}).json()
    assert from_redis == client.post("/predict", json={"model": MODEL, "rows": rows}).json()


def test_mlfs_serve_answers_health_and_predict(online):
    port = free_port()
    server = subprocess.Popen([str(Path(sys.executable).parent / "mlfs"), "serve", "--port", str(port)],
                              env={**os.environ}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, server.stdout.read()
            try:
                health = httpx2.get(f"{url}/health", timeout=2)
                break
            except httpx2.TransportError:
                assert time.monotonic() < deadline, "mlfs serve did not answer within 120 s"
                time.sleep(0.5)
        assert health.json()["models"][MODEL] is not None
        rows, _ = request_rows(online, 3)
        scored = httpx2.post(f"{url}/predict", json={"model": MODEL, "rows": rows}, timeout=10).json()
        assert scored["version"] == health.json()["models"][MODEL] and len(scored["rows"]) == 3
    finally:
        server.terminate()
        server.wait(timeout=30)
