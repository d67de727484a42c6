"""The online serving HTTP API (ASGI): every feature view and model of every declared system.

    POST /features  {"feature_view": "SYSTEM.VIEW", "rows": [{...}, ...]}   (or "row": {...})
    POST /predict   {"model": "SYSTEM.MODEL", "rows": [{...}, ...]}         (or "row": {...})
    GET  /health    the models served and their versions
    GET  /docs      OpenAPI (Swagger UI), /openapi.json the document

A request row holds what the view's spine holds: its entity keys (required) and request-time values such
as the amount being authorised, typed by the spine's schema; its time defaults to the request's arrival.
Every response row gives each feature group's event time and status (ok, missing, expired,
newer_than_request); a row whose entities are unknown gets nulls, which the model handles (its classifier
routes missing values).

Built on Starlette with a generated OpenAPI document: measured against FastAPI on the same handlers in
`benchmarks/serving.py`. Handlers run the CPU-bound work on the event loop itself (a thread would only
contend for the GIL); concurrent /predict requests are scored together (`Batches`), and more cores are used
by worker processes (`mlfs serve --workers`).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import decimal
import gc
import inspect
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.compute as pc
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from mlfs_dagster.core import serving
from mlfs_dagster.core.online_store import OnlineStore
from mlfs_dagster.core.specs import FeatureViewSpec, ModelSpec, System
from mlfs_dagster.core.training import predict

log = logging.getLogger(__name__)
_ENCODE = msgspec.json.Encoder(decimal_format="number").encode  # datetimes as RFC 3339, NaN as null
_NO_ROWS = msgspec.Raw()
RFC_3339 = "%Y-%m-%dT%H:%M:%SZ"  # %S of a µs timestamp has its six decimals


class BadRequest(Exception):
    """A request the service refuses, with the HTTP status and a message naming the field at fault."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class RequestBody(msgspec.Struct, forbid_unknown_fields=True):
    """row or rows, kept as JSON until the named view's decoder checks them."""

    row: msgspec.Raw = _NO_ROWS
    rows: msgspec.Raw = _NO_ROWS


class FeaturesBody(RequestBody):
    feature_view: str | None = None


class PredictBody(RequestBody):
    model: str | None = None


def _decoded(kind: type[RequestBody], body: bytes) -> RequestBody:
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as error:
        raise BadRequest(400, _located(error, "body")) from None
    except msgspec.DecodeError as error:
        raise BadRequest(400, f"body: not JSON ({error})") from None


@dataclass
class View:
    """What serving a feature view needs, computed once: its request fields, their types, decoders that check
    a request's rows against them, and the response's column split."""

    name: str
    spec: FeatureViewSpec
    fields: dict[str, pa.DataType]  # the spine's columns a request may give
    required: tuple[str, ...]  # every group's entity keys
    features: tuple[str, ...]  # vector columns returned as features (not the matched event times)
    decode_row: msgspec.json.Decoder
    decode_rows: msgspec.json.Decoder

    @classmethod
    def of(cls, name: str, spec: FeatureViewSpec) -> View:
        schema = spec.spine.schema
        fields = {c: schema.field(c).type for c in dict.fromkeys((*spec.spine_output_columns, spec.spine_time))}
        required = tuple(dict.fromkeys(k for s in spec.selections for k in s.group.entity_keys))
        times = {spec.matched_time_column(s) for s in spec.selections}
        # Rows are checked while the JSON is parsed (msgspec, in C): a check per value in Python was a third
        # of a 1,000-row batch's time.
        row = msgspec.defstruct("Row", [(c, _python_type(kind)) if c in required else
                                        (c, _python_type(kind) | None, None) for c, kind in fields.items()],
                                kw_only=True, forbid_unknown_fields=True)
        return cls(name, spec, fields, required, tuple(c for c in spec.output_columns if c not in times),
                   msgspec.json.Decoder(row), msgspec.json.Decoder(list[row]))

    def rows_of(self, body: RequestBody) -> list:
        """A body's row(s), each checked against the spine's types; BadRequest naming the first bad field."""
        if (len(body.row) > 0) == (len(body.rows) > 0):
            raise BadRequest(400, "rows: give either row (one object) or rows (a list of objects)")
        try:
            rows = [self.decode_row.decode(body.row)] if len(body.row) else self.decode_rows.decode(body.rows)
        except msgspec.ValidationError as error:
            raise BadRequest(400, _located(error, "row" if len(body.row) else "rows")) from None
        if not rows:
            raise BadRequest(400, "rows: give at least one row (an object of the spine's columns)")
        return rows

    def table(self, rows: list) -> pa.Table:
        """Checked rows as an Arrow table of the spine's types."""
        columns = zip(*(msgspec.structs.astuple(row) for row in rows))
        return pa.table([_array(values, kind) for values, kind in zip(columns, self.fields.values())],
                        names=list(self.fields))

    def rows(self, served: serving.Served) -> list[dict]:
        """Per row: each group's event time and status."""
        vectors = served.vectors
        # RFC 3339 text made by Arrow: Python datetimes with a zone cost several µs each.
        times = {s.name: pc.strftime(vectors[self.spec.matched_time_column(s)], RFC_3339).to_pylist()
                 for s in self.spec.selections}
        return [{"event_times": {name: time[i] for name, time in times.items()}, "status": status}
                for i, status in enumerate(served.statuses)]


def _python_type(kind: pa.DataType) -> type:
    """The JSON value a spine column takes: decimals as numbers, times as RFC 3339 text."""
    if pa.types.is_boolean(kind):
        return bool
    if pa.types.is_integer(kind):
        return int
    if pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return float
    if pa.types.is_timestamp(kind):
        return dt.datetime
    return str if pa.types.is_string(kind) or pa.types.is_large_string(kind) else Any


def _array(values: Sequence, kind: pa.DataType) -> pa.Array:
    """A column of decoded values; a time without a zone is UTC, as every stored time is (Arrow's reading)."""
    if pa.types.is_decimal(kind):  # exactly the number written, not its nearest binary float
        values = [None if v is None else decimal.Decimal(repr(v)) for v in values]
    return pa.array(values, kind)


def _located(error: msgspec.ValidationError, root: str) -> str:
    """msgspec's "Expected `int`, got `str` - at `$[0].amount`" as "rows[0].amount: expected `int`, got `str`"."""
    message, _, where = str(error).partition(" - at `")
    return f"{root}{where.rstrip('`').removeprefix('$')}: {message[:1].lower()}{message[1:]}"


@dataclass
class Service:
    """The declared systems' views and models, their champions and the online store they read."""

    store: OnlineStore
    views: dict[str, View]
    models: dict[str, ModelSpec]
    champions: dict[str, serving.Champion]

    @classmethod
    def of(cls, systems: Sequence[System], store: OnlineStore, registry, poll_seconds: float = 5.0) -> Service:
        views = {f"{s.name}.{v.name}": View.of(f"{s.name}.{v.name}", v) for s in systems for v in s.feature_views}
        models = {m.registered_name: m for s in systems for m in s.models}
        champions = {name: serving.Champion(registry, name, poll_seconds=poll_seconds) for name in models}
        return cls(store, views, models, champions)

    def start(self) -> None:
        for champion in self.champions.values():
            champion.start()

    def stop(self) -> None:
        for champion in self.champions.values():
            champion.stop()
        self.store.close()

    def features(self, body: bytes) -> dict:
        request = _decoded(FeaturesBody, body)
        view = self._named(self.views, request.feature_view, "feature_view", "feature view")
        requests = view.table(view.rows_of(request))
        served = serving.online_vectors(view.spec, self.store, requests, dt.datetime.now(dt.UTC))
        features = served.vectors.select(list(view.features)).to_pylist()
        return {"feature_view": view.name,
                "rows": [{"features": f, **row} for f, row in zip(features, view.rows(served))]}

    def predict(self, body: bytes) -> dict:
        model, requests = self.scoring(body)
        return self.score(model, [requests])[0]

    def scoring(self, body: bytes) -> tuple[ModelSpec, list]:
        """A /predict body checked: its model and its rows."""
        request = _decoded(PredictBody, body)
        model = self._named(self.models, request.model, "model", "model")
        return model, self._view(model).rows_of(request)

    def score(self, model: ModelSpec, requests: Sequence[list]) -> list[dict]:
        """The answers to several requests (their checked rows) for one model, scored together in one table:
        the costs are mostly per call, not per row, and each row's vector and score do not depend on the
        others."""
        loaded = self.champions[model.registered_name].loaded  # read once: a swap mid-request changes nothing
        if loaded is None:
            raise BadRequest(503, f"model: {model.registered_name} has no champion version yet")
        view = self._view(model)
        table = view.table([row for request in requests for row in request])
        served = serving.online_vectors(view.spec, self.store, table, dt.datetime.now(dt.UTC))
        rows = [{model.output_column: value, **row}
                for value, row in zip(predict(loaded.pipeline, model, served.vectors).tolist(), view.rows(served))]
        answers, start = [], 0
        for request in requests:
            answers.append({"model": model.registered_name, "version": loaded.version,
                            "rows": rows[start:start + len(request)]})
            start += len(request)
        return answers

    def health(self) -> dict:
        return {"status": "ok", "feature_views": sorted(self.views),
                "models": {name: c.loaded and c.loaded.version for name, c in self.champions.items()}}

    def _view(self, model: ModelSpec) -> View:
        return self.views[f"{model.system}.{model.feature_view.name}"]

    @staticmethod
    def _named(known: dict, name: str | None, key: str, what: str):
        if name is None:
            raise BadRequest(400, f"{key}: required, the {what}'s name, one of {sorted(known)}")
        if name not in known:
            raise BadRequest(404, f"{key}: no {what} {name!r}; known: {sorted(known)}")
        return known[name]


def _json(content: Any, status: int = 200) -> Response:
    return Response(_ENCODE(content), status, media_type="application/json")


class Batches:
    """/predict requests that arrive together, scored in one call per model.

    The first request of a batch schedules its scoring for the event loop's next turn; requests read
    meanwhile (from other connections, or while the previous batch was scoring) join it. A lone request waits
    for nothing; under load, a batch costs about what one request does.
    """

    def __init__(self, service: Service):
        self.service = service
        self.pending: dict[str, tuple[ModelSpec, list[tuple[list, asyncio.Future]]]] = {}

    async def predict(self, body: bytes) -> dict:
        model, requests = self.service.scoring(body)
        loop = asyncio.get_running_loop()
        if not self.pending:
            loop.call_soon(self._score)
        answer = loop.create_future()
        self.pending.setdefault(model.registered_name, (model, []))[1].append((requests, answer))
        return await answer

    def _score(self) -> None:
        pending, self.pending = self.pending, {}
        for model, waiting in pending.values():
            try:
                answers = self.service.score(model, [requests for requests, _ in waiting])
            except Exception as error:  # every request of the batch gets the error (a 503, a store down)
                for _, answer in waiting:
                    answer.set_exception(error)
                continue
            for (_, answer), result in zip(waiting, answers):
                answer.set_result(result)


def _handler(method):
    """An endpoint: JSON in, `method`'s JSON out (awaited if a coroutine); BadRequest as its status and
    {"detail": message}."""

    async def endpoint(request: Request) -> Response:
        try:
            answer = method(await request.body())
            return _json(await answer if inspect.isawaitable(answer) else answer)
        except BadRequest as error:
            return _json({"detail": str(error)}, error.status)

    return endpoint


@contextlib.asynccontextmanager
async def _running(service: Service):
    """The champions followed while the app runs."""
    service.start()
    # What start-up built (the libraries' modules, the pipelines) lives as long as the server: the collector
    # need not scan it again, which stalled a request now and then for tens of milliseconds.
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        service.stop()


def build_app(service: Service, examples: dict[str, dict] | None = None) -> Starlette:
    """The ASGI app of a service; `examples` (see `openapi_examples`) go into the OpenAPI document."""
    document = _ENCODE(openapi(service, examples or {}))

    async def health(_: Request) -> Response:
        return _json(service.health())

    async def openapi_json(_: Request) -> Response:
        return Response(document, media_type="application/json")

    async def docs(_: Request) -> HTMLResponse:
        return HTMLResponse(SWAGGER_UI)

    routes = [Route("/features", _handler(service.features), methods=["POST"]),
              Route("/predict", _handler(Batches(service).predict), methods=["POST"]),
              Route("/health", health), Route("/openapi.json", openapi_json), Route("/docs", docs)]
    app = Starlette(routes=routes, lifespan=lambda _: _running(service))
    app.state.service = service
    return app


SWAGGER_UI = """<!doctype html><html><head><title>mlfs serving</title>
<link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css"></head>
<body><div id="ui"></div><script src="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({url: "/openapi.json", dom_id: "#ui"})</script></body></html>"""


# --- the OpenAPI document, generated from the declarations ---


# The OpenAPI type of each JSON value a request row takes (`_python_type`); anything else is text.
_JSON_SCHEMAS = {bool: {"type": "boolean"}, int: {"type": "integer"}, float: {"type": "number"},
                 dt.datetime: {"type": "string", "format": "date-time"}}


def _json_schema(kind: pa.DataType) -> dict:
    return _JSON_SCHEMAS.get(_python_type(kind), {"type": "string"})


def _row_schema(view: View) -> dict:
    properties = {name: {**_json_schema(kind), "nullable": name not in view.required}
                  for name, kind in view.fields.items()}
    properties[view.spec.spine_time]["description"] = "the row's time; default: the request's arrival"
    return {"type": "object", "properties": properties, "required": list(view.required),
            "additionalProperties": False, "description": f"a row of feature view {view.name}'s spine"}


def _body_schema(name_field: str, names: list[str], rows: list[dict]) -> dict:
    row = {"oneOf": rows} if len(rows) > 1 else rows[0]
    return {"type": "object", "required": [name_field], "additionalProperties": False,
            "properties": {name_field: {"type": "string", "enum": names}, "row": row,
                           "rows": {"type": "array", "items": row, "minItems": 1}},
            "description": "give row (one) or rows (a batch)"}


def _operation(summary: str, schema: dict, examples: dict, answer: str) -> dict:
    return {"summary": summary,
            "requestBody": {"required": True, "content": {"application/json": {"schema": schema, "examples": examples}}},
            "responses": {"200": {"description": answer},
                          "400": {"description": "a bad request: the message names the field"},
                          "404": {"description": "no such feature view or model"}}}


def openapi(service: Service, examples: dict[str, dict]) -> dict:
    """OpenAPI 3 for the service; each row schema from the view's spine, `examples` keyed by view name."""
    rows = {name: _row_schema(view) for name, view in service.views.items()}
    view_examples = {f"{name} ({size})": {"value": {"feature_view": name, **body}}
                     for name, view in service.views.items() for size, body in _bodies(examples.get(name)).items()}
    model_examples = {f"{name} ({size})": {"value": {"model": name, **body}}
                      for name, model in service.models.items()
                      for size, body in _bodies(examples.get(f"{model.system}.{model.feature_view.name}")).items()}
    model_rows = [rows[f"{m.system}.{m.feature_view.name}"] for m in service.models.values()]
    return {
        "openapi": "3.0.3",
        "info": {"title": "mlfs online serving", "version": "1",
                 "description": "Online feature vectors and champion scores of every declared system."},
        "paths": {
            "/features": {"post": _operation(
                "A feature view's vectors for request rows", _body_schema("feature_view", sorted(rows), list(rows.values())),
                view_examples, "per row: features, each group's event time and status")},
            "/predict": {"post": _operation(
                "A model's champion scores for request rows",
                _body_schema("model", sorted(service.models), model_rows or [{"type": "object"}]),
                model_examples, "the model, its version and per row: the output, each group's event time and status")},
            "/health": {"get": {"summary": "The models served and their versions",
                                "responses": {"200": {"description": "ok"}}}},
        },
    }


def _bodies(row: dict | None) -> dict[str, dict]:
    return {} if row is None else {"one row": {"row": row}, "a batch": {"rows": [row, row]}}


def openapi_examples(views: dict[str, View], offline) -> dict[str, dict]:
    """Per view, a real recent spine row (its keys known to the stores) without its time: requests then
    score as of now. Views whose spine table is not there yet have none."""
    examples = {}
    for name, view in views.items():
        spec = view.spec
        if not offline.exists(spec.spine.table):
            continue
        batches = offline.read_batches(spec.spine.table, tuple(n for n in view.fields if n != spec.spine_time))
        first = next((b for b in batches if b.num_rows), None)
        if first is not None:
            examples[name] = first.slice(first.num_rows - 1).to_pylist()[0]
    return examples


def app_from_env() -> Starlette:
    """The app `mlfs serve` runs: the workspace's systems, the stores of the environment (settings)."""
    from mlfs_dagster.core.online_store import open_online_store
    from mlfs_dagster.core.registry import ModelRegistry
    from mlfs_dagster.settings import PROJECT_ROOT, Settings
    from mlfs_dagster.workspace import load_systems

    settings = Settings.from_env()
    # `mlfs serve` names the workspace here: each worker process builds its own app
    systems = load_systems(Path(os.environ.get("MLFS_WORKSPACE") or PROJECT_ROOT / "workspace.yaml"))
    service = Service.of(systems, open_online_store(settings.online_store),
                         ModelRegistry(settings.mlflow_tracking_uri, settings.mlflow_artifacts))
    try:
        examples = openapi_examples(service.views, settings.offline_store())
    except Exception:  # the docs lose their examples, the service still serves
        log.exception("no OpenAPI examples: the offline store could not be read")
        examples = {}
    return build_app(service, examples)
