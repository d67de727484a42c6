"""Online serving benchmark: `mlfs serve` over HTTP on loopback, against the same work called in process,
against FastAPI on the same handlers, and (features alone) against Feast 0.67's feature server (`feast serve`,
tuned: no access log, no worker recycling) on the same features of the same entities, materialized from
this project's offline tables into Feast's SQLite online store. Feast runs from its own venv,
`benchmarks/.venv-feast` (created on first use by `pit_join.feast_python`; `--no-feast` skips it).

The server runs in its own process(es); the client is one asyncio process of closed-loop connections (each
sends a request, waits for the whole answer, sends the next) speaking raw HTTP/1.1 keep-alive, requests
encoded once: a few microseconds per request, so the server is what is measured. Each figure is at least
10,000 requests (--quick: 500) after a warm-up; p50/p95/p99 are per request, requests/s over the whole run.

The data: 75 simulated days of the reference system (2,000 cards, 200 merchants), trained and written to the
online store (SQLite, the embedded default), built once under the temp folder. Request
rows are real recent transactions, scored as of the end of the last day.

    .venv/bin/python benchmarks/serving.py            # about 30 minutes
    .venv/bin/python benchmarks/serving.py --quick    # smoke run, about 4 minutes
"""

import argparse
import asyncio
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HOME = Path(tempfile.gettempdir()) / "mlfs-benchmark-serving"
START, DAYS = dt.date(2026, 1, 1), 75
END = dt.datetime.combine(START + dt.timedelta(days=DAYS), dt.time(), dt.UTC)
MODEL = "card_fraud.fraud_model"
os.environ.setdefault("OMP_NUM_THREADS", "1")  # as `mlfs serve` does, for the in-process figures too


def build_home() -> None:
    """Simulate, backfill, train and fill the online store, once (about 3 minutes)."""
    from mlfs_dagster.settings import use_home

    settings = use_home(HOME)
    if (HOME / "ready").exists():
        return
    from card_fraud.simulator import SimulationConfig, simulate
    from mlfs_dagster.cli import init_dagster_home

    init_dagster_home(settings)
    simulate(SimulationConfig(start_date=START, days=DAYS, cards=2_000, merchants=200, transactions_per_day=2_000,
                              fraud_rate=0.03, seed=11), Path(settings.landing))
    from dagster import DagsterInstance, materialize

    from card_fraud.definitions import defs
    from card_fraud.demo import QUIET, groups
    from mlfs_dagster.builders.common import range_tags

    instance, days = DagsterInstance.get(), range_tags(START.isoformat(), (END.date() - dt.timedelta(days=1)).isoformat())
    for selection, tags in ((groups("raw", "features"), days), (groups("training", "models"), {}),
                            (groups("serving"), days)):
        materialize([*defs.assets, *(defs.asset_checks or [])], selection=selection, resources=defs.resources,
                    instance=instance, tags=tags, run_config=QUIET)
    (HOME / "ready").touch()


def request_rows(count: int) -> list[dict]:
    """The last day's transactions as request rows, timed at the day's end."""
    from card_fraud.system import FRAUD_VIEW
    from mlfs_dagster.core import feature_view
    from mlfs_dagster.core.offline_store import TimeRange
    from mlfs_dagster.settings import Settings

    spine = feature_view.read_spine(FRAUD_VIEW, Settings.from_env().offline_store(),
                                    TimeRange(END - dt.timedelta(days=1), END))
    rows = spine.slice(0, count).to_pylist()
    return [{**row, FRAUD_VIEW.spine_time: END.isoformat()} for row in rows]


# --- the servers ---


def fastapi_app():
    """The same `Service` behind FastAPI routes (raw bodies, no pydantic models, as fast as FastAPI goes)."""
    from fastapi import FastAPI

    from mlfs_dagster.server import Batches, _handler, _running, app_from_env

    service = app_from_env().state.service
    app = FastAPI(lifespan=lambda _: _running(service))
    for path, method in (("/features", service.features), ("/predict", Batches(service).predict)):
        app.post(path)(_fastapi_endpoint(_handler(method)))
    app.get("/health")(lambda: service.health())
    return app


def _fastapi_endpoint(handler):
    from fastapi import Request

    async def endpoint(request: Request):  # the request alone: FastAPI reads other parameters as query fields
        return await handler(request)

    return endpoint


def start_server(framework: str, port: int, workers: int) -> subprocess.Popen:
    if framework == "starlette":
        command = [str(Path(sys.executable).parent / "mlfs"), "serve", "--port", str(port), "--workers", str(workers)]
    else:
        command = [sys.executable, __file__, "--serve-fastapi", str(port), str(workers)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while not asyncio.run(_ready(port)):
        if server.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{framework} server did not start")
        time.sleep(0.5)
    return server


async def _ready(port: int) -> bool:
    """The server answers and every model has a loaded version."""
    body = await _answers(port, b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
    return body is not None and b"null" not in body


async def _answers(port: int, request: bytes) -> bytes | None:
    """The body of a 200 answer to `request`; None while nothing listens or the answer is an error."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return None
    writer.write(request)
    try:
        return await _response(reader)
    except RuntimeError:  # starting: Feast answers 500 until its registry is read
        return None
    finally:
        writer.close()


# --- Feast's feature server on the same features, in its own venv (benchmarks/pit_join.py makes it) ---

FEAST_TYPES = {"int64": "Int64", "double": "Float64", "string": "String"}


def export_for_feast(folder: Path) -> list[dict]:
    """Each selected group's offline rows as parquet, and the feature views Feast declares over them."""
    import pyarrow.parquet as pq

    from card_fraud.system import FRAUD_VIEW
    from mlfs_dagster.settings import Settings

    store, views = Settings.from_env().offline_store(), []
    for selection in FRAUD_VIEW.selections:
        group = selection.group
        columns = (*group.entity_keys, group.time_column, *selection.columns)
        pq.write_table(store.read(group.table, columns), folder / f"{selection.name}.parquet")
        views.append({"name": selection.name, "key": group.entity_keys[0], "time": group.time_column,
                      "features": {c: FEAST_TYPES[str(group.schema.field(c).type)] for c in selection.columns}})
    return views


def feast_setup(folder: Path, views: list[dict]) -> None:
    """Inside the Feast venv: a feature repo over the parquet files, materialized into its SQLite online store.
    No TTL: the data ends months before today, and Feast judges age against the clock, not the request."""
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource, types

    (folder / "feature_store.yaml").write_text(
        "project: serving_benchmark\nprovider: local\nregistry: registry.db\n"
        "online_store: {type: sqlite, path: online.db}\noffline_store: {type: duckdb}\n"
        "entity_key_serialization_version: 3\n")
    store = FeatureStore(repo_path=str(folder))
    entities = {v["key"]: Entity(name=v["key"], join_keys=[v["key"]]) for v in views}
    feature_views = [
        FeatureView(name=v["name"], entities=[entities[v["key"]]], ttl=dt.timedelta(0),
                    source=FileSource(path=str(folder / f"{v['name']}.parquet"), timestamp_field=v["time"]),
                    schema=[Field(name=c, dtype=getattr(types, t)) for c, t in v["features"].items()])
        for v in views]
    store.apply([*entities.values(), *feature_views])
    store.materialize(dt.datetime.combine(START, dt.time(), dt.UTC), END)


def start_feast(folder: Path, port: int, workers: int) -> subprocess.Popen:
    """`feast serve`, tuned: no access log, no worker recycling, the registry refreshed hourly."""
    sys.path.insert(0, str(Path(__file__).parent))
    from pit_join import FEAST_VENV, feast_python

    python = feast_python()
    views = export_for_feast(folder)
    subprocess.run([str(python), __file__, "--feast-setup", str(folder), json.dumps(views)], check=True,
                   stdout=subprocess.DEVNULL)
    server = subprocess.Popen(
        [str(FEAST_VENV / "bin" / "feast"), "-c", str(folder), "serve", "-p", str(port), "-w", str(workers),
         "--no-access-log", "--max-requests", "0", "-r", "3600"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while asyncio.run(_answers(port, b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")) is None:
        if server.poll() is not None or time.monotonic() > deadline:
            server.terminate()
            raise RuntimeError("feast serve did not start")
        time.sleep(0.5)
    return server


def feast_body(rows: list[dict]) -> dict:
    """Feast's request for the same features of the same entities."""
    from card_fraud.system import FRAUD_VIEW

    features = [f"{s.name}:{c}" for s in FRAUD_VIEW.selections for c in s.columns]
    keys = dict.fromkeys(k for s in FRAUD_VIEW.selections for k in s.group.entity_keys)
    return {"features": features, "entities": {k: [row[k] for row in rows] for k in keys}}


# --- the client ---


def http_request(path: str, body: bytes) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n\r\n").encode() + body


async def _response(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"server answered {head[:60]!r}")
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    return await reader.readexactly(length)


async def _closed_loop(port: int, request: bytes, count: int, latencies: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for _ in range(count):
        started = time.perf_counter()
        writer.write(request)
        await _response(reader)
        latencies.append(time.perf_counter() - started)
    writer.close()


def over_http(port: int, request: bytes, total: int, clients: int) -> dict:
    async def run() -> tuple[list[float], float]:
        await asyncio.gather(*(_closed_loop(port, request, 50, []) for _ in range(clients)))  # warm-up
        latencies: list[float] = []
        started = time.perf_counter()
        await asyncio.gather(*(_closed_loop(port, request, total // clients, latencies) for _ in range(clients)))
        return latencies, time.perf_counter() - started

    latencies, elapsed = asyncio.run(run())
    return figures(latencies, elapsed)


def in_process(service, body: dict, total: int) -> dict:
    import msgspec

    body = msgspec.json.encode(body)  # the request as the server receives it
    for _ in range(50):
        service.predict(body)
    latencies, started = [], time.perf_counter()
    for _ in range(total):
        begun = time.perf_counter()
        service.predict(body)
        latencies.append(time.perf_counter() - begun)
    return figures(latencies, time.perf_counter() - started)


def figures(latencies: list[float], elapsed: float) -> dict:
    cuts = statistics.quantiles(latencies, n=100)
    return {"requests": len(latencies), "p50": cuts[49] * 1e3, "p95": cuts[94] * 1e3, "p99": cuts[98] * 1e3,
            "rps": len(latencies) / elapsed}


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="500 requests per figure")
    parser.add_argument("--workers", type=int, default=2, help="server processes for the concurrent figures")
    parser.add_argument("--clients", type=int, nargs="+", default=[8, 64],
                        help="concurrent closed-loop connections, one figure each")
    parser.add_argument("--no-feast", action="store_true", help="without Feast's feature server (no venv)")
    parser.add_argument("--serve-fastapi", nargs=2, type=int, metavar=("PORT", "WORKERS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_fastapi:
        import uvicorn

        port, workers = args.serve_fastapi
        sys.path.insert(0, str(Path(__file__).parent))
        uvicorn.run("serving:fastapi_app", factory=True, port=port, workers=workers, access_log=False,
                    log_level="warning")
        return

    import msgspec

    build_home()
    total = 500 if args.quick else 10_000
    rows = request_rows(1_000)
    single, batch = {"model": MODEL, "row": rows[0]}, {"model": MODEL, "rows": rows[:100]}
    thousand = {"model": MODEL, "rows": rows}

    def record(what: str, where: str, result: dict) -> None:
        print(f"{what:<34} {where:<32} p50 {result['p50']:7.2f} ms  p95 {result['p95']:7.2f} ms  "
              f"p99 {result['p99']:7.2f} ms  {result['rps']:8.0f} req/s  (n={result['requests']}, load {load()})",
              flush=True)

    from mlfs_dagster.server import app_from_env

    service = app_from_env().state.service
    service.start()
    record("1 prediction", "in process (no HTTP)", in_process(service, single, total))
    record("100-row batch", "in process (no HTTP)", in_process(service, batch, total))
    record("1,000-row batch", "in process (no HTTP)", in_process(service, thousand, 50 if args.quick else 200))
    service.stop()

    port = 18_000
    for framework in ("starlette", "fastapi"):
        server = start_server(framework, port, 1)
        try:
            record("1 prediction, 1 client", f"HTTP, {framework}, 1 worker",
                   over_http(port, http_request("/predict", msgspec.json.encode(single)), total, 1))
        finally:
            server.terminate()
            server.wait()
    server = start_server("starlette", port, args.workers)
    try:
        def http(body: dict, count: int, clients: int) -> dict:
            return over_http(port, http_request("/predict", msgspec.json.encode(body)), count, clients)

        where = f"HTTP, starlette, {args.workers} workers"
        record("1 prediction, 1 client", where, http(single, total, 1))
        for clients in args.clients:
            record(f"1 prediction, {clients} clients", where, http(single, total, clients))
        record("100-row batch, 1 client", where, http(batch, total, 1))
        record(f"100-row batch, {args.clients[0]} clients", where, http(batch, total, args.clients[0]))
        record("1,000-row batch, 1 client", where, http(thousand, 50 if args.quick else 200, 1))
    finally:
        server.terminate()
        server.wait()
    compare_features(args, rows, total, record)


def compare_features(args, rows: list[dict], total: int, record) -> None:
    """Features alone, one worker each: this server's /features (which also runs the on-demand function and
    judges each value's age) against Feast's /get-online-features for the same entities' stored features."""
    import msgspec

    port, view = 18_001, "card_fraud.fraud"
    server = start_server("starlette", port, 1)
    try:
        for size in (1, 100):
            body = http_request("/features", msgspec.json.encode({"feature_view": view, "rows": rows[:size]}))
            record(f"features of {size} row(s), 1 client", "HTTP, mlfs serve, 1 worker",
                   over_http(port, body, total, 1))
    finally:
        server.terminate()
        server.wait()
    if args.no_feast:
        return
    with tempfile.TemporaryDirectory() as folder:
        server = start_feast(Path(folder), port, 1)
        try:
            for size in (1, 100):
                body = http_request("/get-online-features", msgspec.json.encode(feast_body(rows[:size])))
                record(f"features of {size} row(s), 1 client", "HTTP, feast serve, 1 worker",
                       over_http(port, body, total, 1))
        finally:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--feast-setup":
        feast_setup(Path(sys.argv[2]), json.loads(sys.argv[3]))
    else:
        main()
