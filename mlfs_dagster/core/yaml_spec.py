"""Systems declared in YAML, loaded into the same spec objects as systems declared in Python.

Layout: a system is a folder holding `system.yaml`. `load_system(folder)` and `load_system(folder /
"system.yaml")` are the same. `system.yaml` holds the system's own fields and any of the four spec lists
(`sources`, `feature_groups`, `feature_views`, `models`); `include` names further YAML files (relative to
`system.yaml`) holding more of those lists, appended in the order listed. Nothing else in the folder is read
unless a spec names it, so a stray YAML file never joins the system by accident.

    shop/
      system.yaml      the system, and any specs
      sources.yaml     optional, listed under `include`
      features.sql     a feature group's query (`sql_file`, relative to the YAML file naming it)
      functions.py     on-demand, feature and pipeline functions: `shop.functions:<name>`

Functions are referenced as `package.module:function` strings, and stay strings in the specs
(`specs.resolve_callable` imports them when they are called). The loader puts the system folder's parent on
`sys.path` (at the end: installed packages win), so the folder is a package named after itself and
`functions.py` next to `system.yaml` is `<folder>.functions`; give the folder a name no installed package
has. Any installed module works too (`my_team.models:build_pipeline`). Every reference is imported while
loading, so a typo fails here and not in the middle of a run.

Every field of the specs is declared by its name in `specs.py` (the loader follows that module's fields and
types), with these spellings:

- Column types: string, int64, int32, float64, float32, bool, date, timestamp (microseconds, UTC),
  decimal(precision,scale) (quoted inside `{...}`, where a comma ends the value).
- Durations: a number and a unit, combined largest first: "30d", "24h", "90m", "45s", "1d12h". A bare number
  is refused: its unit would be a guess. `lookback: none` (or `ttl: none`) means no limit: all history.
- Dates: 2026-01-01. Booleans: true and false only (yes, no, on and off are text, as in YAML 1.2).
- Feature groups give exactly one of `sql` (inline), `sql_file` or `function`.
- null means "not given", so it is only accepted where the field's default is null.

An unknown field (a typo), a missing one, a key given twice, an unknown type, a malformed duration, a
missing file or an unimportable function raises `SpecError` naming the YAML file and the spec and field,
e.g. `shop/system.yaml: sources > source 'orders' > column 'amount' > type: unknown type 'flaot' ...`.

A complete example, `shop/system.yaml`:

    name: shop
    description: Returns prediction for the web shop.
    start: 2026-01-01
    cadence: daily                      # or hourly
    end: 2026-12-31                     # optional: last partition's day
    owners: [team:shop]
    include: []                         # e.g. [sources.yaml]: files holding more spec lists

    sources:
      - name: orders
        description: Orders from the shop's database, one row per order.
        owner: team:shop
        keys: [order_id]
        time_column: event_time
        delivery: event                 # or reference
        must_arrive: true
        time_from_landing: false
        required: [customer_id]
        max_drop: 0.5
        columns:
          - {name: order_id, type: string, description: Unique order id.}
          - {name: customer_id, type: string, description: Who ordered., tags: [pii]}
          - {name: event_time, type: timestamp, description: When the order was placed.}
          - {name: amount, type: 'decimal(18,2)', description: Order total.}
          - {name: returned, type: bool, description: Whether the order came back.}

    feature_groups:
      - name: customer_activity
        description: Per order, the customer's orders in the 7 days before it.
        owner: team:shop
        entity_keys: [customer_id]      # [] for global features
        identifiers: [order_id]
        time_column: event_time
        created_column: null
        version: 1
        online: true                    # each customer's latest row served by `mlfs serve`
        inputs:
          - {source: orders, lookback: 7d, lag: 0d}
        sql_file: features.sql          # or `sql: SELECT ...`, or `function: shop.functions:activity`
        columns:
          - {name: customer_id, type: string, tags: [pii]}
          - {name: event_time, type: timestamp}
          - {name: order_id, type: string}
          - {name: orders_7d, type: int64, description: Orders in the 7 days before.}

    feature_views:
      - name: returns
        description: Orders with the customer's recent activity.
        owner: team:shop
        spine: orders
        spine_keys: [order_id]
        spine_columns: [order_id, customer_id, event_time, amount]
        label: {column: returned, kind: binary, maturity: 30d}
        # a label from another source: {column: x, source: returns, on: [order_id], value: 'true',
        #                               missing: 'false', maturity: 30d}
        selections:
          - {group: customer_activity, features: [orders_7d], prefix: '', ttl: 7d}
        on_demand: shop.functions:on_demand_features
        on_demand_columns: [amount_to_mean_7d]
        split: {validation_fraction: 0.2, gap: 1d}
        warm_up: 7d

    models:
      - name: return_model
        description: Logistic regression on order and customer features.
        owner: team:shop
        feature_view: returns
        features: [amount, orders_7d, amount_to_mean_7d]
        pipeline: shop.functions:build_pipeline
        gates:
          - {metric: roc_auc, minimum: 0.6, champion_tolerance: 0.02}
          - {metric: pr_auc, minimum: 0.1, maximum: null}
        alert_threshold: 0.5
        seed: 7
        drift_share_to_retrain: 0.5
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import re
import sys
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import yaml

from mlfs_dagster.core.specs import (
    Column,
    FeatureGroupSpec,
    FeatureInput,
    FeatureSelection,
    FeatureViewSpec,
    Gate,
    Label,
    ModelSpec,
    SourceSpec,
    SpecError,
    Split,
    System,
    resolve_callable,
)

SYSTEM_FILE = "system.yaml"
INCLUDE = "include"
SECTIONS = {"sources": SourceSpec, "feature_groups": FeatureGroupSpec, "feature_views": FeatureViewSpec,
            "models": ModelSpec}
# How an error names a spec: its kind, and the field that identifies it.
SPEC_NAMES = {SourceSpec: ("source", "name"), FeatureGroupSpec: ("feature group", "name"),
              FeatureViewSpec: ("feature view", "name"), ModelSpec: ("model", "name"), Column: ("column", "name"),
              FeatureInput: ("input", "source"), FeatureSelection: ("selection", "group"),
              Gate: ("gate", "metric"), Label: ("label", "column"), Split: ("split", None)}
NOT_DECLARED = {"system"}  # set when the system binds its specs

ARROW_TYPES = {
    "string": pa.string(), "int64": pa.int64(), "int32": pa.int32(), "float64": pa.float64(),
    "float32": pa.float32(), "bool": pa.bool_(), "date": pa.date32(), "timestamp": pa.timestamp("us", tz="UTC"),
}
DECIMAL = re.compile(r"^decimal\(\s*(\d+)\s*,\s*(\d+)\s*\)$")
DURATION = re.compile(r"^(?:(?P<days>\d+)d)?(?:(?P<hours>\d+)h)?(?:(?P<minutes>\d+)m)?(?:(?P<seconds>\d+)s)?$")
FUNCTION_REFERENCE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def load_system(path: str | Path) -> System:
    """The system declared by `path`: a folder holding `system.yaml`, or that file itself."""
    root = _system_file(Path(path))
    document = _read_mapping(root)
    included = _included_files(document, root)
    _make_folder_importable(root.parent)
    fields = _fields(System, {k: v for k, v in document.items() if k != INCLUDE}, _Where(root, ("system",)),
                     skip=set(SECTIONS))
    specs = {section: () for section in SECTIONS}
    for file, content in [(root, document), *included]:
        for section, spec_type in SECTIONS.items():
            specs[section] += _value(content.get(section, []), tuple[spec_type, ...], _Where(file, (section,)))
    try:
        return System(**fields, **specs)
    except SpecError as error:  # from binding: a reference to a spec that is not declared, and the like
        files = ", ".join(str(file) for file, _ in included)
        raise SpecError(f"{root}{f' (with {files})' if files else ''}: {error}") from None


def parse_duration(text: str) -> dt.timedelta:
    """A duration such as "30d", "24h", "15m", "45s" or "1d12h"; bare numbers are refused."""
    if isinstance(text, int | float):  # booleans too: they are ints
        raise SpecError(f"duration {text!r} has no unit: write it like '7d', '24h' or '90m'")
    match = DURATION.match(text) if isinstance(text, str) else None
    if not text or not match:
        raise SpecError(f"{text!r} is not a duration: write it like '30d', '24h', '90m', '45s' or '1d12h'")
    return dt.timedelta(**{unit: int(n) for unit, n in match.groupdict().items() if n is not None})


def parse_arrow_type(text: str) -> pa.DataType:
    """A column type's YAML spelling as its Arrow type."""
    if not isinstance(text, str):
        raise SpecError(f"a type is a name such as 'string' or 'decimal(18,2)', found {text!r}")
    if text in ARROW_TYPES:
        return ARROW_TYPES[text]
    decimal = DECIMAL.match(text)
    if not decimal:
        raise SpecError(f"unknown type {text!r}; known types: {', '.join(ARROW_TYPES)}, decimal(precision,scale)")
    precision, scale = map(int, decimal.groups())
    try:
        return (pa.decimal128 if precision <= 38 else pa.decimal256)(precision, scale)
    except (ValueError, pa.ArrowInvalid) as error:
        raise SpecError(f"type {text!r}: {error}") from None


@dataclass(frozen=True)
class _Where:
    """Where a value was declared: the file, and the trail of specs and fields down to it."""

    file: Path
    trail: tuple[str, ...] = ()

    def then(self, step: str) -> _Where:
        return _Where(self.file, (*self.trail, step))

    def error(self, message: str) -> SpecError:
        trail = f": {' > '.join(self.trail)}" if self.trail else ""
        return SpecError(f"{self.file}{trail}: {message}")


def _system_file(path: Path) -> Path:
    file = path / SYSTEM_FILE if path.is_dir() else path
    if not file.is_file():
        raise SpecError(f"{file}: no such file; a system is a folder holding {SYSTEM_FILE}, or that file")
    return file.resolve()


def _read_mapping(file: Path) -> dict:
    try:
        content = yaml.load(file.read_text(), Loader=_StrictLoader)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as error:
        raise SpecError(f"{file}: not valid YAML: {error}") from None
    if not isinstance(content, dict):
        raise SpecError(f"{file}: expected a mapping of fields at the top, found {type(content).__name__}")
    return content


def _included_files(document: dict, root: Path) -> list[tuple[Path, dict]]:
    where = _Where(root, (INCLUDE,))
    included = []
    for name in _value(document.get(INCLUDE, []), tuple[str, ...], where):
        file = (root.parent / name).resolve()
        if not file.is_file():
            raise where.error(f"included file {name!r} does not exist (looked for {file})")
        content = _read_mapping(file)
        unknown = set(content) - set(SECTIONS)
        if unknown:
            raise SpecError(f"{file}: an included file holds only {', '.join(SECTIONS)}; found {sorted(unknown)}")
        included.append((file, content))
    return included


def _make_folder_importable(folder: Path) -> None:
    """So `<folder>.functions:f` resolves now and whenever a run resolves it again in this process."""
    parent = str(folder.parent)
    if parent not in sys.path:
        sys.path.append(parent)


def _spec(spec_type: type, mapping, where: _Where):
    kind, name_field = SPEC_NAMES[spec_type]
    if not isinstance(mapping, dict):
        raise where.error(f"a {kind} is a mapping of fields, found {mapping!r}")
    name = mapping.get(name_field) if name_field else None
    where = where.then(f"{kind} {name!r}" if isinstance(name, str) else kind)
    if spec_type is FeatureGroupSpec:
        mapping = _with_sql_file_read(mapping, where)
    return spec_type(**_fields(spec_type, mapping, where))


def _fields(spec_type: type, mapping: dict, where: _Where, skip: set[str] = frozenset()) -> dict:
    """The declared fields as the spec's types, after refusing unknown, missing and null ones."""
    declared = {f.name: f for f in dataclasses.fields(spec_type) if f.name not in NOT_DECLARED | skip}
    unknown = set(mapping) - set(declared) - skip
    if unknown:
        raise where.error("; ".join(_unknown_field(name, declared) for name in sorted(unknown)))
    missing = [name for name, f in declared.items() if name not in mapping and _is_required(f)]
    if missing:
        raise where.error(f"missing field(s) {missing}")
    hints = typing.get_type_hints(spec_type)
    values = {}
    for name, value in mapping.items():
        if name in skip:
            continue
        field_where = where if _holds_specs(hints[name]) else where.then(name)
        if value is None:
            if declared[name].default is not None:
                raise field_where.error("is null; give a value, or leave the field out for its default")
            continue
        values[name] = _value(value, hints[name], field_where)
    return values


def _unknown_field(name: str, declared: dict) -> str:
    close = difflib.get_close_matches(name, declared, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else f" (known fields: {', '.join(declared)})"
    return f"unknown field {name!r}{hint}"


def _is_required(field: dataclasses.Field) -> bool:
    return field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING


def _holds_specs(hint) -> bool:
    """A field holding specs, which name themselves in errors (no need to name the field too)."""
    if typing.get_origin(hint) is tuple:
        hint = typing.get_args(hint)[0]
    return hint in SPEC_NAMES


def _with_sql_file_read(mapping: dict, where: _Where) -> dict:
    """`sql_file` is the YAML way to give `sql`: the query is read from the file, relative to the YAML."""
    if "sql_file" not in mapping:
        return mapping
    fields = dict(mapping)
    name = fields.pop("sql_file")
    if "sql" in fields:
        raise where.error("give `sql` or `sql_file`, not both")
    if not isinstance(name, str):
        raise where.then("sql_file").error(f"expected a file name, found {name!r}")
    file = where.file.parent / name
    if not file.is_file():
        raise where.then("sql_file").error(f"{name!r} does not exist (looked for {file})")
    fields["sql"] = file.read_text()
    return fields


def _value(value, hint, where: _Where):
    """`value` as read from YAML, converted to the type `hint` names, or an error saying where it is wrong."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return _union_value(value, args, where)
    if origin is typing.Literal:
        if value not in args:
            raise where.error(f"{value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if origin is tuple:
        if not isinstance(value, list):
            raise where.error(f"expected a list, found {value!r}")
        return tuple(_value(item, args[0], where) for item in value)
    if hint in SPEC_NAMES:
        return _spec(hint, value, where)
    if hint not in SCALARS:
        raise TypeError(f"yaml_spec cannot read fields of type {hint} yet: add it to SCALARS")
    try:
        return SCALARS[hint](value)
    except SpecError as error:
        raise where.error(str(error)) from None


def _union_value(value, options: tuple, where: _Where):
    options = tuple(o for o in options if o is not type(None))
    if Callable in options:
        return _function_reference(value, where)
    if str in options:  # a spec, or its name: YAML can only name it
        return _value(value, str, where)
    if dt.timedelta in options and value == "none":
        return None
    (only,) = options
    return _value(value, only, where)


def _function_reference(value, where: _Where) -> str:
    if not isinstance(value, str) or not FUNCTION_REFERENCE.match(value):
        raise where.error(f"expected a function reference like 'package.module:function', found {value!r}")
    try:
        function = resolve_callable(value)
    except (ImportError, AttributeError) as error:
        raise where.error(f"cannot import {value!r}: {error}") from None
    if not callable(function):
        raise where.error(f"{value!r} is not a function")
    return value


def _text(value) -> str:
    if not isinstance(value, str):
        raise SpecError(f"expected text, found {type(value).__name__} {value!r} (quote it to make it text)")
    return value


def _integer(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"expected a whole number, found {value!r}")
    return value


def _number(value) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SpecError(f"expected a number, found {value!r}")
    return float(value)


def _flag(value) -> bool:
    if not isinstance(value, bool):
        raise SpecError(f"expected true or false, found {value!r}")
    return value


def _date(value) -> dt.date:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    try:
        return dt.date.fromisoformat(value)
    except (TypeError, ValueError):
        raise SpecError(f"expected a date like 2026-01-01, found {value!r}") from None


SCALARS = {str: _text, int: _integer, float: _number, bool: _flag, dt.date: _date, dt.timedelta: parse_duration,
           pa.DataType: parse_arrow_type}


class _StrictLoader(yaml.SafeLoader):
    """`yaml.safe_load`, except that a key given twice in one mapping is an error, not a silent override, and
    only true and false are booleans (as in YAML 1.2): YAML 1.1 reads on, off, yes and no as booleans too, so
    a label's `on: [order_id]` would arrive as `True: [order_id]`."""

    yaml_implicit_resolvers = {
        first: [(tag, pattern) for tag, pattern in resolvers if tag != "tag:yaml.org,2002:bool"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key, _ in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key.value!r} given twice", key.start_mark)
            seen.add(key.value)
        return super().construct_mapping(node, deep)


_StrictLoader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                    list("tTfF"))
