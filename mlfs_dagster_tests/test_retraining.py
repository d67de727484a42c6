"""Retraining decisions on hand-made drift reports: sustained episodes, deferral until labels are final,
data-quality incidents, and keys that stay the same whatever is re-run."""

import datetime as dt

from mlfs_dagster.core.retraining import PartitionSignal, decide, episodes, seen_by_drift

DAY = dt.timedelta(days=1)
FIRST = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
MATURITY = dt.timedelta(days=30)


def day(n: int) -> dt.datetime:
    return FIRST + n * DAY


def reports(*shares: float, version: str = "1", start: int = 0, threshold: float = 0.5) -> list[PartitionSignal]:
    """A partition per share, flagged at `threshold` or more (a drift share, or a fall of realised performance)."""
    return [PartitionSignal(day(start + i), share >= threshold, version) for i, share in enumerate(shares)]


def test_an_episode_needs_consecutive_drifted_partitions_and_starts_at_the_first():
    found = episodes(reports(0.1, 0.6, 0.2, 0.7, 0.8, 0.9, 0.1), DAY, sustained=2)
    assert [(e.onset, len(e.partitions)) for e in found] == [(day(3), 3)]


def test_a_missing_report_or_a_new_serving_version_ends_an_episode():
    gap = reports(0.9, 0.9) + reports(0.9, start=3)
    assert [len(e.partitions) for e in episodes(gap, DAY, 2)] == [2]
    switched = reports(0.9, 0.9, version="1") + reports(0.9, 0.9, version="2", start=2)
    assert [e.key for e in episodes(switched, DAY, 2)] == ["v1-from-2026-02-01T0000", "v2-from-2026-02-03T0000"]


def test_a_run_soon_after_an_episode_of_the_same_version_is_its_after_effect_not_a_new_episode():
    flags = reports(0.9, 0.9, 0.9, 0.1, 0.1, 0.9, 0.9, 0.1, 0.1, 0.1, 0.1, 0.1, 0.9, 0.9)
    found = episodes(flags, DAY, 2, cooldown=3)
    assert [(e.key, len(e.partitions)) for e in found] == [("v1-from-2026-02-01T0000", 5), ("v1-from-2026-02-13T0000", 2)]
    assert [e.key for e in episodes(flags, DAY, 2)] == [
        "v1-from-2026-02-01T0000", "v1-from-2026-02-06T0000", "v1-from-2026-02-13T0000"]
    other_version = reports(0.9, 0.9) + reports(0.9, 0.9, version="2", start=3)
    assert len(episodes(other_version, DAY, 2, cooldown=3)) == 2


def test_the_same_reports_give_the_same_episode_key_as_they_grow():
    early = episodes(reports(0.1, 0.9, 0.9), DAY, 2)
    later = episodes(reports(0.1, 0.9, 0.9, 0.9, 0.8), DAY, 2)
    assert early[0].key == later[0].key == "v1-from-2026-02-02T0000"


def test_retraining_waits_until_labels_from_the_onset_are_final():
    episode = episodes(reports(0.1, 0.9, 0.9), DAY, 2)[0]
    # 7 partitions from the onset (day 1) need final labels: examples before day 8, final 30 days later.
    too_early = decide(episode, day(37), MATURITY, DAY, 7, {})
    assert too_early.action == "defer" and "labels up to 2026-02-09" in too_early.reason
    assert "2026-03-11" in too_early.reason  # when they will be final
    ready = decide(episode, day(38), MATURITY, DAY, 7, {})
    assert ready.action == "retrain"
    assert decide(episode, None, MATURITY, DAY, 7, {}).action == "defer"  # no label delivered at all


def test_drift_on_partitions_with_quarantined_rows_alerts_instead_of_retraining():
    episode = episodes(reports(0.9, 0.9), DAY, 2)[0]
    decision = decide(episode, day(90), MATURITY, DAY, 7, {day(0): 0.0, day(1): 0.2})
    assert decision.action == "alert" and "20.0% of rows quarantined on 2026-02-02" in decision.reason
    assert decide(episode, day(90), MATURITY, DAY, 7, {day(1): 0.005}).action == "retrain"  # a few bad rows


def test_a_sustained_drop_in_realised_performance_retrains_at_once_under_its_own_key():
    drops = reports(0.02, 0.2, 0.25, 0.3, 0.01, threshold=0.15)  # realised metric below validation by this much
    found = episodes(drops, DAY, sustained=3, cause="performance")
    assert [e.key for e in found] == ["v1-performance-from-2026-02-02T0000"]
    decision = decide(found[0], None, MATURITY, DAY, 7, {})  # measured on final labels: nothing to wait for
    assert decision.action == "retrain" and "below its validation for 3 partitions" in decision.reason
    assert decide(found[0], None, MATURITY, DAY, 7, {day(2): 0.3}).action == "alert"


def test_a_fall_of_performance_during_a_drift_episode_of_the_same_version_is_that_episode():
    drift = episodes(reports(0.9, 0.9, 0.9, start=10), DAY, 2)  # days 10..12
    during = episodes(reports(0.9, 0.9, start=12, threshold=0.15), DAY, 2, cause="performance")
    after_cooldown = episodes(reports(0.9, 0.9, start=17, threshold=0.15), DAY, 2, cause="performance")
    other_version = episodes(reports(0.9, 0.9, start=11, version="2"), DAY, 2, cause="performance")
    assert seen_by_drift(during + after_cooldown + other_version, drift, DAY, cooldown=3) == \
        after_cooldown + other_version
