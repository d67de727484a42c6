"""Feature drift between a reference sample (the training data) and a current window, with Evidently.

Every column gets an explicit test chosen by its type and the current sample's size. From 1,000 current
rows on, numbers use the normed Wasserstein distance and categories (booleans included) the Jensen-Shannon
distance, drifted at a score of 0.1 or more: at that size a distance measures the change itself, not its
significance, which any tiny shift reaches in a large sample. Below 1,000 rows a distance mostly measures
sampling noise, so a test of significance decides: Kolmogorov-Smirnov for numbers, chi-square for
categories, drifted at p < 0.05 (there a *low* score means drift). Each column's result names its test.
Whether a column drifted is Evidently's own stat test's verdict, never a comparison made here.

The HTML report opens with a table of every column's test, then Evidently's own charts of the drifted
columns, the MAX_CHARTS most drifted when more drift. Charting is what costs (about 60 ms a column, in
plotly), so a quiet day's report is the table and a few charts. The page loads Evidently's 3.5 MB JS bundle
and icon font from a shared folder by a relative URL instead of inlining them.

Evidently takes seconds to import, so it is imported inside `feature_drift`, not when this module loads.
"""

from __future__ import annotations

import functools
import os
import shutil
import statistics
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pandas as pd

from mlfs_dagster.core.offline_store import OfflineStore, TimeRange

NUMERICAL_METHOD = "wasserstein"
CATEGORICAL_METHOD = "jensenshannon"
DRIFT_THRESHOLD = 0.1
# Below this many current rows a distance mostly measures sampling noise (it is biased upward on small
# samples): tests of significance, which account for the sample size, decide instead.
SMALL_SAMPLE = 1_000
SMALL_NUMERICAL_METHOD = "ks"
SMALL_CATEGORICAL_METHOD = "chisquare"
P_VALUE_THRESHOLD = 0.05  # drifted when p < 0.05
SAMPLE_SEED = 0
ALL_NULL_METHOD = "all values null on one side"
STATIC_FOLDER = "_static"
MAX_CHARTS = 5  # Evidently charts of the most drifted columns in a report; the table lists every column


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    method: str  # the stat test Evidently used, e.g. "Wasserstein distance (normed)"
    score: float  # the value Evidently reports
    threshold: float
    drifted: bool  # Evidently's own test outcome for the column

    @property
    def severity(self) -> float:
        return severity(self.method, self.score)


def severity(method: str, score: float) -> float:
    """Higher means more drift, whatever the test: a distance as it is, a p-value negated."""
    return -score if method.endswith("p_value") else score


def risen_columns(columns: Sequence[ColumnDrift], earlier: Sequence[dict[str, float]], rise: float) -> tuple[str, ...]:
    """The columns that drifted and whose severity rose at least `rise` above its median over `earlier` periods
    (each a column -> severity map): a change, where a column drifting for days is a trend the reference
    lags behind. A slow trend moves a column's score a little a day; a new cause moves it at once.
    """
    return tuple(
        c.column for c in columns
        if c.drifted and (past := [e[c.column] for e in earlier if c.column in e])
        and c.severity - statistics.median(past) >= rise)


@dataclass(frozen=True)
class DriftResult:
    drift_share: float  # drifted columns / columns checked
    drifted_columns: tuple[str, ...]
    dataset_drift: bool  # drift_share >= share_threshold
    columns: tuple[ColumnDrift, ...]
    reference_rows: int  # rows compared, after sampling
    current_rows: int
    html_path: Path | None  # None when no report was asked for or no column needed Evidently


def feature_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    numerical: Sequence[str],
    categorical: Sequence[str],
    share_threshold: float = 0.5,
    html_path: Path | None = None,
    max_reference_rows: int = 20_000,
    max_current_rows: int = 20_000,
    static_dir: Path | None = None,
) -> DriftResult:
    """Compare `current` with `reference` column by column; save Evidently's HTML report to `html_path`.

    Frames larger than their `max_*_rows` are sampled with a fixed seed, so the same inputs always give
    the same result. Boolean columns are tested as categories wherever they are listed.

    The report loads Evidently's JS bundle and icon font from `static_dir` (default: `_static` beside the
    report) by a relative URL; they are copied there once per Evidently version. Keep `static_dir` inside
    the folder that is served or moved along with the reports, e.g. `<reports root>/_static` for reports
    in `<reports root>/<system>/<asset>/`.
    """
    if current.empty:
        raise ValueError("no current rows to compare")
    if reference.empty:
        raise ValueError("no reference rows to compare")
    numerical, categorical = _booleans_as_categorical(reference, current, numerical, categorical)
    columns = [*numerical, *categorical]
    _check_columns(reference, current, numerical, categorical)

    reference = _comparable(_sample(reference[columns], max_reference_rows), numerical, categorical)
    current = _comparable(_sample(current[columns], max_current_rows), numerical, categorical)

    by_column = _drift_by_column(reference, current, numerical, categorical)
    column_drifts = tuple(by_column[column] for column in columns)
    drifted_columns = tuple(drift.column for drift in column_drifts if drift.drifted)
    drift_share = len(drifted_columns) / len(column_drifts)
    if html_path is not None:
        charted = _most_drifted(column_drifts)
        _save_report(reference, current, [c for c in numerical if c in charted], [c for c in categorical if c in charted],
                     column_drifts, charted, html_path, static_dir or html_path.parent / STATIC_FOLDER)
    return DriftResult(
        drift_share=drift_share,
        drifted_columns=drifted_columns,
        dataset_drift=drift_share >= share_threshold,
        columns=column_drifts,
        reference_rows=len(reference),
        current_rows=len(current),
        html_path=html_path,
    )


def _drift_by_column(reference: pd.DataFrame, current: pd.DataFrame, numerical: Sequence[str],
                     categorical: Sequence[str]) -> dict[str, ColumnDrift]:
    """Each column's drift, by Evidently's stat test for its type and the current sample's size."""
    from evidently.legacy.core import ColumnType

    number_test, category_test, threshold = _tests_for(len(current))
    kinds = [*((c, ColumnType.Numerical, number_test) for c in numerical),
             *((c, ColumnType.Categorical, category_test) for c in categorical)]
    with _thread_pools().limit(limits=1, user_api="blas"):  # arrays too small for BLAS threads to pay
        return {column: _column_drift(column, reference[column], current[column], kind, test, threshold)
                for column, kind, test in kinds}


def _tests_for(current_rows: int) -> tuple[str, str, float]:
    """The stat tests for numbers and for categories, and their threshold, at this current sample size."""
    if current_rows < SMALL_SAMPLE:
        return SMALL_NUMERICAL_METHOD, SMALL_CATEGORICAL_METHOD, P_VALUE_THRESHOLD
    return NUMERICAL_METHOD, CATEGORICAL_METHOD, DRIFT_THRESHOLD


def _column_drift(column: str, reference: pd.Series, current: pd.Series, kind, test: str,
                  threshold: float) -> ColumnDrift:
    """Evidently's verdict on one column, on its non-null values (as Evidently's own drift metrics test it)."""
    from evidently.legacy.calculations.stattests import get_stattest

    reference, current = reference.dropna(), current.dropna()
    if reference.empty or current.empty:  # values vanishing, or appearing, is drift in itself
        drifted = reference.empty != current.empty
        return ColumnDrift(column, ALL_NULL_METHOD, score=float(drifted), threshold=1.0, drifted=drifted)
    stat_test = get_stattest(reference, current, kind, test)
    result = stat_test(reference, current, kind, threshold)
    return ColumnDrift(column, stat_test.display_name, float(result.drift_score), float(result.actual_threshold),
                       bool(result.drifted))


def _booleans_as_categorical(
    reference: pd.DataFrame, current: pd.DataFrame, numerical: Sequence[str], categorical: Sequence[str]
) -> tuple[list[str], list[str]]:
    # A boolean is two categories: what drifts is their shares.
    def is_boolean(column: str) -> bool:
        return any(
            column in frame and pd.api.types.is_bool_dtype(frame[column]) for frame in (reference, current)
        )

    booleans = [column for column in numerical if is_boolean(column)]
    return [column for column in numerical if column not in booleans], [*categorical, *booleans]


def _check_columns(
    reference: pd.DataFrame, current: pd.DataFrame, numerical: Sequence[str], categorical: Sequence[str]
) -> None:
    if not numerical and not categorical:
        raise ValueError("no columns to compare")
    both = set(numerical) & set(categorical)
    if both:
        raise ValueError(f"columns listed as both numerical and categorical: {sorted(both)}")
    for name, frame in (("reference", reference), ("current", current)):
        missing = [column for column in [*numerical, *categorical] if column not in frame]
        if missing:
            raise ValueError(f"{name} data lacks columns {missing}")


def _sample(frame: pd.DataFrame, max_rows: int) -> pd.DataFrame:
    if len(frame) <= max_rows:
        return frame
    rows = np.random.default_rng(SAMPLE_SEED).choice(len(frame), size=max_rows, replace=False)
    return frame.iloc[np.sort(rows)]  # original order, for Evidently's chart of values over rows


def _comparable(frame: pd.DataFrame, numerical: Sequence[str], categorical: Sequence[str]) -> pd.DataFrame:
    """Numbers as float64 with infinities as nulls, categories as strings with nulls kept."""
    converted = {
        column: pd.to_numeric(frame[column]).astype("float64").replace([np.inf, -np.inf], np.nan)
        for column in numerical
    }
    for column in categorical:
        values = frame[column]
        converted[column] = values.astype(str).where(values.notna())
    # A plain row index: Evidently would read a datetime index as a time axis.
    return pd.DataFrame(converted).reset_index(drop=True)


def _most_drifted(columns: Sequence[ColumnDrift]) -> list[str]:
    """The drifted columns to chart, most drifted first, at most MAX_CHARTS: charts are what a report costs, and
    a day when everything drifts needs the worst few to be understood, not fifteen."""
    drifted = sorted((c for c in columns if c.drifted and c.method != ALL_NULL_METHOD),
                     key=lambda c: c.severity, reverse=True)
    return [c.column for c in drifted[:MAX_CHARTS]]


def _save_report(reference: pd.DataFrame, current: pd.DataFrame, numerical: Sequence[str],
                 categorical: Sequence[str], columns: Sequence[ColumnDrift], charted: Sequence[str], html_path: Path,
                 static_dir: Path) -> None:
    """Evidently's report of the `charted` columns' distributions (its charts are what costs: about 60 ms a
    column), after a table of every column's test."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift

    widgets = []
    if numerical or categorical:
        number_test, category_test, threshold = _tests_for(len(current))
        metrics = [ValueDrift(column=c, method=number_test, threshold=threshold) for c in numerical] + [
            ValueDrift(column=c, method=category_test, threshold=threshold) for c in categorical]
        definition = DataDefinition(numerical_columns=list(numerical), categorical_columns=list(categorical))
        with _thread_pools().limit(limits=1, user_api="blas"):
            snapshot = Report(metrics).run(Dataset.from_pandas(current[[*numerical, *categorical]], data_definition=definition),
                                           Dataset.from_pandas(reference[[*numerical, *categorical]], data_definition=definition))
        widgets = snapshot._widgets
    _write_page(widgets, _columns_table(columns, charted), html_path, static_dir)


@functools.cache
def _thread_pools():
    # Finding the loaded BLAS libraries takes tens of milliseconds: once per process is enough.
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def _write_page(widgets: list, table: str, html_path: Path, static_dir: Path) -> None:
    """The page `Snapshot.save_html` writes, with Evidently's bundle and font referenced, not inlined, and
    `table` before the charts.

    Evidently's template can reference them (its legacy folder mode does), but `Snapshot` renders only
    inline, so this repeats its `get_html_str` and `render_widgets` with the template's file options.
    """
    from evidently.legacy.model.dashboard import DashboardInfo
    from evidently.legacy.model.widget import AdditionalGraphInfo, BaseWidgetInfo
    from evidently.legacy.renderers.html_widgets import group_widget
    from evidently.legacy.utils.dashboard import TemplateParams, file_html_template

    widgets = [group_widget(title="", widgets=widgets)] if widgets else []
    graphs = {}
    for widget in widgets:
        for graph in widget.get_additional_graphs():
            info = graph.params if isinstance(graph, AdditionalGraphInfo) else graph
            graphs[graph.id] = info.dict() if isinstance(info, BaseWidgetInfo) else info
    lib_file, font_file = _static_files(static_dir)
    page = file_html_template(
        TemplateParams(
            dashboard_id=f"metric_{uuid.uuid4().hex}",
            dashboard_info=DashboardInfo(name="Report", widgets=widgets),
            additional_graphs=graphs,
            embed_lib=False,
            embed_font=False,
            font_file=_relative_url(font_file, html_path),
            include_js_files=[_relative_url(lib_file, html_path)],
        )
    )
    html_path.parent.mkdir(parents=True, exist_ok=True)
    html_path.write_text(_after_body(page, table), encoding="utf-8")


def _columns_table(columns: Sequence[ColumnDrift], charted: Sequence[str]) -> str:
    """Every column's test, score, threshold and verdict; Evidently's charts below show the `charted` ones."""
    import html

    drifted = [c.column for c in columns if c.drifted]
    marked = " style='color:#b00020;font-weight:bold'"
    rows = "".join(
        f"<tr{marked if c.drifted else ''}><td>{html.escape(c.column)}</td>"
        f"<td>{html.escape(c.method)}</td><td>{c.score:.4g}</td><td>{c.threshold:g}</td>"
        f"<td>{'drifted' if c.drifted else 'no'}</td></tr>" for c in columns)
    charts = ("No column drifted: no chart below." if not drifted else
              f"Distributions of the drifted columns below: {html.escape(', '.join(charted))}." if len(charted) == len(drifted)
              else f"Distributions of the {len(charted)} most drifted of {len(drifted)} drifted columns below: "
                   f"{html.escape(', '.join(charted))}.")
    return (f"<div style='font-family:sans-serif;margin:1em 2em'><h3 style='margin:0.3em 0'>Columns</h3>"
            f"<table style='border-collapse:collapse' cellpadding='3'><tr><th align='left'>column</th>"
            f"<th align='left'>test</th><th align='left'>score</th><th align='left'>threshold</th>"
            f"<th align='left'>drift</th></tr>{rows}</table><p>{charts}</p></div>")


def _after_body(page: str, fragment: str) -> str:
    at = page.find(">", page.find("<body")) + 1
    return page[:at] + fragment + page[at:]


def _static_files(static_dir: Path) -> tuple[Path, Path]:
    """Evidently's JS bundle and icon font in `static_dir`, copied there if missing.

    Named by version, so reports drawn before an Evidently upgrade keep the bundle they were drawn with.
    """
    import evidently
    from evidently.legacy.utils.dashboard import STATIC_PATH

    lib_file = static_dir / f"evidently-{evidently.__version__}.js"
    font_file = static_dir / f"evidently-{evidently.__version__}-icons.woff2"
    for source, target in (("index.js", lib_file), ("material-ui-icons.woff2", font_file)):
        if not target.exists():
            static_dir.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(f".{target.name}.{os.getpid()}")
            shutil.copyfile(Path(STATIC_PATH, source), partial)
            partial.replace(target)  # atomic: a concurrent report never loads a half-copied file
    return lib_file, font_file


def with_static_at(html_path: Path, static_dir: Path, static_url: str) -> str:
    """The report's page loading Evidently's bundle and font from `static_url`, where `static_dir` is served,
    instead of relative to the report: for a copy viewed elsewhere, such as MLflow's artifact viewer."""
    page = html_path.read_text(encoding="utf-8")
    for static_file in _static_files(static_dir):
        page = page.replace(_relative_url(static_file, html_path), f"{static_url.rstrip('/')}/{quote(static_file.name)}")
    return page


def _relative_url(target: Path, html_path: Path) -> str:
    return quote(Path(os.path.relpath(target, html_path.parent)).as_posix())


def drift_rows(result: DriftResult, outputs: ColumnDrift, risen: Sequence[str], period_drifted: bool, period_start,
               model_version: str) -> list[dict]:
    """One row per column of a period's result, with the drift of the model's `outputs`, the columns that rose
    above their recent level and the period's verdict, for the monitoring table (`day` is the period's start)."""
    return [
        {"day": period_start, "column": c.column, "method": c.method, "score": float(c.score),
         "threshold": float(c.threshold), "drifted": bool(c.drifted), "risen": c.column in risen,
         "drift_share": result.drift_share, "dataset_drift": result.dataset_drift,
         "period_drifted": period_drifted, "prediction_drift": float(outputs.score),
         "prediction_drifted": bool(outputs.drifted), "model_version": model_version,
         "current_rows": result.current_rows, "report": str(result.html_path)}
        for c in result.columns
    ]


def drifted_periods(store: OfflineStore, table: str, step: timedelta) -> list[TimeRange]:
    """The periods of drift episodes in a drift table (rows of `drift_rows`), whichever version served them: the
    periods flagged as drifted, and after them those where a column that rose in the episode still drifts (a rise
    is flagged only until the column's recent level catches up with it; the drift lasts longer)."""
    if not store.exists(table):
        return []
    rows = store.read(table, ("day", "column", "drifted", "risen", "period_drifted")).to_pandas()
    periods, risen = [], set()  # the columns that rose in the current episode; empty outside one
    for day, period in rows.groupby("day", sort=True):
        if period["period_drifted"].iloc[0] or risen & set(period.loc[period["drifted"], "column"]):
            periods.append(TimeRange(day.to_pydatetime(), day.to_pydatetime() + step))
            risen |= set(period.loc[period["risen"], "column"])
        else:
            risen = set()
    return periods


def add_header(html_path: Path, fields: dict[str, str]) -> None:
    """Open the report with what it is about (period, model, reference, result), before Evidently's charts."""
    import html

    rows = "".join(f"<tr><th style='text-align:left;padding-right:1em'>{html.escape(k)}</th>"
                   f"<td>{html.escape(v)}</td></tr>" for k, v in fields.items())
    header = (f"<div style='font-family:sans-serif;margin:1em 2em;padding:0.5em 1em;border:1px solid #ccc'>"
              f"<h2 style='margin:0.3em 0'>Feature drift</h2><table>{rows}</table></div>")
    html_path.write_text(_after_body(html_path.read_text(), header))
