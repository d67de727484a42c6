"""Feature drift over Evidently: stable tests, Evidently's own verdicts, nulls, sampling, the HTML report."""

from __future__ import annotations

import re
import shutil
import threading
import urllib.request
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urljoin

import numpy as np
import pandas as pd
import pytest

from mlfs_dagster.core.drift import DriftResult, add_header, feature_drift, with_static_at

NUMERICAL = ["amount", "hour", "distance_km", "txn_count_7d"]
CATEGORICAL = ["channel", "card_present"]
WASSERSTEIN = "Wasserstein distance (normed)"
JENSEN_SHANNON = "Jensen-Shannon distance"


def transactions(seed: int, rows: int = 3_000) -> pd.DataFrame:
    """Draws from one fixed distribution; only the seed differs between samples."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "amount": rng.lognormal(3.5, 1.0, rows),
            "hour": rng.integers(0, 24, rows),
            "distance_km": rng.exponential(20.0, rows),
            "txn_count_7d": rng.poisson(12, rows),
            "channel": rng.choice(["online", "pos", "atm"], rows, p=[0.5, 0.4, 0.1]),
            "card_present": rng.random(rows) < 0.4,
        }
    )


def drift(reference: pd.DataFrame, current: pd.DataFrame, **options) -> DriftResult:
    return feature_drift(reference, current, NUMERICAL, CATEGORICAL, **options)


def by_column(result: DriftResult) -> dict:
    return {column.column: column for column in result.columns}


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return transactions(seed=1)


@pytest.fixture(scope="module")
def amount_shifted(reference) -> pd.DataFrame:
    current = transactions(seed=2)
    current["amount"] += reference["amount"].std()
    return current


@pytest.fixture(scope="module")
def shifted_result(reference, amount_shifted, tmp_path_factory) -> DriftResult:
    """One report shared by several tests: each Evidently run takes most of a second."""
    html_path = tmp_path_factory.mktemp("drift") / "reports" / "2026-11-01" / "feature_drift.html"
    return drift(reference, amount_shifted, html_path=html_path)


@pytest.fixture(scope="module")
def reports_root(reference, amount_shifted, tmp_path_factory) -> Path:
    """Two days of reports laid out as the monitoring asset does, sharing `<root>/_static`."""
    root = tmp_path_factory.mktemp("served") / "reports"
    for day in ("2026-11-01", "2026-11-02"):
        html_path = root / "card_fraud" / "fraud_model_feature_drift" / f"{day}.html"
        drift(reference, amount_shifted, html_path=html_path, static_dir=root / "_static")
    return root


def reports(root: Path) -> list[Path]:
    return sorted(root.glob("*/*/*.html"))


def asset_urls(html: str) -> list[str]:
    """Where a report loads Evidently's JS bundle and icon font from."""
    return re.findall(r'<script src="([^"]+)"', html) + re.findall(r"src: url\(([^)]+)\)", html)


def evidently_bundle() -> bytes:
    from evidently.legacy.utils.dashboard import STATIC_PATH

    return Path(STATIC_PATH, "index.js").read_bytes()


def test_identical_distributions_do_not_drift(reference):
    result = drift(reference, transactions(seed=2))

    assert result.drifted_columns == ()
    assert result.drift_share == 0.0
    assert not result.dataset_drift
    assert [column.column for column in result.columns] == NUMERICAL + CATEGORICAL
    assert (result.reference_rows, result.current_rows) == (3_000, 3_000)
    assert result.html_path is None  # none asked for


def test_mean_shift_of_one_std_drifts_that_column_only(shifted_result):
    assert shifted_result.drifted_columns == ("amount",)
    amount = by_column(shifted_result)["amount"]
    assert amount.method == WASSERSTEIN
    assert amount.threshold == 0.1
    assert amount.score > 0.5  # the normed distance of a 1-std shift is about 1


def test_new_category_taking_40_percent_drifts_the_category(reference):
    current = transactions(seed=2)
    current.loc[current.sample(frac=0.4, random_state=0).index, "channel"] = "crypto_atm"

    result = drift(reference, current)

    assert result.drifted_columns == ("channel",)
    channel = by_column(result)["channel"]
    assert channel.method == JENSEN_SHANNON
    assert channel.score > channel.threshold


def test_dataset_drift_when_drifted_share_reaches_threshold(reference, amount_shifted, shifted_result):
    assert shifted_result.drift_share == pytest.approx(1 / 6)
    assert not shifted_result.dataset_drift  # below the default share of 0.5

    at_threshold = drift(reference, amount_shifted, share_threshold=shifted_result.drift_share)

    assert at_threshold.dataset_drift


def test_booleans_are_tested_as_categories_even_when_listed_as_numbers(reference):
    current = transactions(seed=2)

    result = feature_drift(reference, current, numerical=["amount", "card_present"], categorical=[])

    assert by_column(result)["card_present"].method == JENSEN_SHANNON


def test_html_report_tables_every_column_and_charts_the_drifted_ones(shifted_result):
    html = shifted_result.html_path.read_text(encoding="utf-8")

    body = html.index("<body")
    table = html[body:html.index("<script", body)]  # before Evidently's charts
    for column in shifted_result.columns:
        assert f"<td>{column.column}</td><td>{column.method}</td>" in table
    # Evidently's own chart widgets, for the drifted column only
    assert "Drift in column 'amount'" in html
    assert "Data drift detected. Drift detection method: Wasserstein distance (normed)" in html
    assert not [c for c in NUMERICAL + CATEGORICAL if c != "amount" and f"Drift in column '{c}'" in html]


def test_a_report_without_drift_is_the_table_alone(reference, tmp_path):
    result = drift(reference, transactions(seed=2), html_path=tmp_path / "quiet.html")

    html = result.html_path.read_text(encoding="utf-8")
    assert "No column drifted" in html and "Drift in column" not in html


def test_report_loads_evidently_from_a_static_folder_beside_it_by_default(shifted_result):
    html_path = shifted_result.html_path

    urls = asset_urls(html_path.read_text(encoding="utf-8"))

    assert [url.split("/")[0] for url in urls] == ["_static", "_static"]
    assert all((html_path.parent / url).is_file() for url in urls)


def test_report_is_small_because_evidentlys_bundle_and_font_are_not_inlined(reports_root):
    for html_path in reports(reports_root):
        html = html_path.read_text(encoding="utf-8")
        assert html_path.stat().st_size < 1_000_000  # the bundle alone is 3.5 MB
        assert "data:font" not in html


def test_shared_bundle_is_written_once_and_referenced_relatively(reports_root):
    first, second = reports(reports_root)
    static_files = list((reports_root / "_static").iterdir())

    assert len(static_files) == 2  # the bundle and the icon font, no half-copied leftovers
    assert all(path.stat().st_mtime_ns <= first.stat().st_mtime_ns for path in static_files)  # not rewritten
    urls = asset_urls(second.read_text(encoding="utf-8"))
    assert urls == asset_urls(first.read_text(encoding="utf-8"))
    assert all(url.startswith("../../_static/evidently-") for url in urls)
    assert (second.parent / urls[0]).read_bytes() == evidently_bundle()


def test_reports_still_find_the_bundle_after_the_folder_moves(reports_root, tmp_path):
    moved = Path(shutil.copytree(reports_root, tmp_path / "elsewhere"))

    for html_path in reports(moved):
        urls = asset_urls(html_path.read_text(encoding="utf-8"))
        assert all((html_path.parent / url).is_file() for url in urls)


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


def test_static_server_at_the_reports_root_serves_a_report_and_its_bundle(reports_root):
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(reports_root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        html_path = reports(reports_root)[0]
        page_url = f"http://127.0.0.1:{server.server_port}/{html_path.relative_to(reports_root).as_posix()}"
        with urllib.request.urlopen(page_url) as page:
            bundle_url = urljoin(page_url, asset_urls(page.read().decode("utf-8"))[0])
        with urllib.request.urlopen(bundle_url) as bundle:
            assert bundle.read() == evidently_bundle()
    finally:
        server.shutdown()
        server.server_close()


def test_header_goes_right_after_body_in_the_new_page(reports_root, tmp_path):
    html_path = Path(shutil.copy(reports(reports_root)[0], tmp_path / "report.html"))

    add_header(html_path, {"partition": "2026-11-01", "decision": "no drift"})

    html = html_path.read_text(encoding="utf-8")
    body = html.index("<body>") + len("<body>")
    assert html[body:].startswith("<div style='font-family:sans-serif")
    assert html.index(">partition</th>") < html.index('<div id="root_')  # above Evidently's dashboard


def test_reference_sampling_is_deterministic_and_keeps_the_chosen_methods():
    # 1,000 reference rows is where Evidently's defaults would switch to KS p-values: ours follow the current side.
    reference = transactions(seed=3, rows=5_000)
    current = transactions(seed=4, rows=1_500)

    first = drift(reference, current, max_reference_rows=1_000)
    second = drift(reference, current, max_reference_rows=1_000)

    assert first == second
    assert (first.reference_rows, first.current_rows) == (1_000, 1_500)
    assert {column.method for column in first.columns} == {WASSERSTEIN, JENSEN_SHANNON}


def test_small_samples_are_judged_by_tests_of_significance(reference):
    quiet = drift(reference, transactions(seed=5, rows=60))
    assert {column.method for column in quiet.columns} == {"K-S p_value", "chi-square p_value"}
    assert not quiet.drifted_columns  # 60 rows from the same distribution: distances would be noisy, p-values are not
    shifted = transactions(seed=6, rows=60)
    shifted["amount"] += 2 * reference["amount"].std()
    amount = by_column(drift(reference, shifted))["amount"]
    assert amount.drifted and amount.score < 0.05 and amount.threshold == 0.05


def test_all_null_columns_drift_only_when_one_side_has_values(reference):
    reference = reference.assign(always_null=np.nan, vanished=1.0, appeared=None)
    current = transactions(seed=2).assign(always_null=np.nan, vanished=np.inf, appeared="new")

    result = feature_drift(
        reference,
        current,
        numerical=["amount", "always_null", "vanished"],
        categorical=["channel", "appeared"],
    )

    assert set(result.drifted_columns) == {"vanished", "appeared"}
    assert result.drift_share == pytest.approx(2 / 5)
    assert not by_column(result)["always_null"].drifted


def test_empty_current_raises(reference):
    with pytest.raises(ValueError, match="no current rows to compare"):
        drift(reference, reference.iloc[:0])


def test_a_copy_for_mlflow_loads_the_bundle_from_the_report_server(reports_root):
    html_path = reports(reports_root)[0]
    page = with_static_at(html_path, reports_root / "_static", "http://reports:3001/_static/")
    urls = asset_urls(page)
    assert len(urls) == 2 and all(url.startswith("http://reports:3001/_static/evidently-") for url in urls)
    assert page.replace("http://reports:3001/_static/", "../../_static/") == html_path.read_text(encoding="utf-8")


def test_a_column_counts_as_risen_when_it_drifts_well_above_its_recent_level_not_when_it_always_drifts():
    from mlfs_dagster.core.drift import ColumnDrift, risen_columns

    wasserstein, ks = "Wasserstein distance (normed)", "K-S p_value"
    today = [ColumnDrift("channel", wasserstein, 0.15, 0.1, True),  # was 0.01: a new cause
             ColumnDrift("merchant_count", wasserstein, 0.26, 0.1, True),  # drifts every day: a trend
             ColumnDrift("amount", wasserstein, 0.09, 0.1, False),  # rose a lot, yet not drifted
             ColumnDrift("hour", ks, 0.001, 0.05, True)]  # p-value fell from about 0.5
    earlier = [{"channel": 0.01, "merchant_count": 0.24, "amount": -0.1, "hour": -0.5 - d / 100} for d in range(7)]

    assert risen_columns(today, earlier, rise=0.12) == ("channel", "hour")
    assert risen_columns(today, [], rise=0.12) == ()  # nothing to compare with
    assert risen_columns(today, earlier, rise=0.2) == ("hour",)


def test_drifted_periods_are_the_flagged_days_and_the_days_a_risen_column_still_drifts(tmp_path):
    import datetime as dt

    import pyarrow as pa

    from mlfs_dagster.core.drift import drifted_periods
    from mlfs_dagster.core.offline_store import OfflineStore, TimeRange

    store, step = OfflineStore(f"sqlite:///{tmp_path}/c.db", f"file://{tmp_path}/wh"), dt.timedelta(days=1)
    assert drifted_periods(store, "monitoring.drift", step) == []  # nothing monitored yet

    def day(d: int) -> dt.datetime:
        return dt.datetime(2026, 3, d, tzinfo=dt.UTC)

    # (amount drifted, amount risen, trend drifted, period flagged): amount rises on day 2 (flagged, version 1),
    # still drifts on days 3-4 under version 2 once its recent level caught up, then stops; the trend column
    # drifts every day and never rose, so it extends nothing; day 7 is flagged alone.
    days = {1: (False, False, True, False), 2: (True, True, True, True), 3: (True, False, True, False),
            4: (True, False, True, False), 5: (False, False, True, False), 6: (False, False, True, False),
            7: (False, False, True, True)}
    rows = pa.Table.from_pylist([
        {"day": day(d), "column": column, "drifted": drifted, "risen": risen, "period_drifted": flagged,
         "model_version": "1" if d < 3 else "2"}
        for d, (amount, rose, trend, flagged) in days.items()
        for column, drifted, risen in (("amount", amount, rose), ("trend", trend, False))])
    store.replace_range("monitoring.drift", rows, "day", TimeRange(day(1), day(8)))
    assert drifted_periods(store, "monitoring.drift", step) == [TimeRange(day(d), day(d) + step) for d in (2, 3, 4, 7)]
