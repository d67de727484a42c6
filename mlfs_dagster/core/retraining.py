"""When monitoring should retrain a model: sustained episodes and the decision for each, with its reason.

An episode is a run of consecutive flagged partitions served by one model version: drifted (features at or
above the model's drift share, or a column risen above its recent level), or realised performance (once
labels are final) fallen below the version's validation figure by more than the model's tolerance. It is keyed by what it is (its cause, the model version
and the first flagged partition), so handling the same reports again, after a daemon restart or a re-run of
the reports, decides the same thing and requests nothing new. A drift episode retrains only when the data can
teach a new model something: enough partitions from the onset must have final labels (labels mature after
the label's delay); a performance episode has them by construction. An episode that coincides with a
data-quality incident (rows quarantined from the same partitions) is an alert, not a reason to retrain on
broken data.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

QUARANTINE_SHARE_INCIDENT = 0.01  # a larger share of a partition's rows quarantined is an incident


@dataclass(frozen=True)
class PartitionSignal:
    """Whether monitoring flagged a partition: drift, or a realised metric fallen below validation."""

    start: dt.datetime
    flagged: bool
    model_version: str


@dataclass(frozen=True)
class Episode:
    model_version: str
    partitions: tuple[dt.datetime, ...]  # the consecutive flagged partitions, first is the onset
    cause: Literal["drift", "performance"] = "drift"

    @property
    def onset(self) -> dt.datetime:
        return self.partitions[0]

    @property
    def key(self) -> str:
        cause = "" if self.cause == "drift" else f"{self.cause}-"
        return f"v{self.model_version}-{cause}from-{self.onset:%Y-%m-%dT%H%M}"


@dataclass(frozen=True)
class Decision:
    episode: Episode
    action: Literal["retrain", "defer", "alert"]
    reason: str


def episodes(signals: list[PartitionSignal], step: dt.timedelta, sustained: int,
             cause: Literal["drift", "performance"] = "drift", cooldown: int = 0) -> list[Episode]:
    """Runs of at least `sustained` consecutive flagged partitions, per serving version.

    A gap (a partition without a report) or a change of serving model ends a run. A run that starts within
    `cooldown` partitions of the end of an episode of the same version belongs to that episode (keeping its
    onset and key): the after-effects of one cause, such as windowed features returning to normal when it
    stops, are not a second episode.
    """
    runs, run = [], []
    for report in sorted(signals, key=lambda r: r.start):
        drifted = report.flagged
        follows = bool(run) and report.start - run[-1].start == step and report.model_version == run[-1].model_version
        if drifted and follows:
            run.append(report)
        else:
            runs.append(run)
            run = [report] if drifted else []
    runs.append(run)
    found: list[Episode] = []
    for r in (r for r in runs if len(r) >= sustained):
        previous = found[-1] if found else None
        if previous and previous.model_version == r[0].model_version \
                and r[0].start - previous.partitions[-1] <= (cooldown + 1) * step:
            found[-1] = Episode(previous.model_version, previous.partitions + tuple(p.start for p in r), cause)
        else:
            found.append(Episode(r[0].model_version, tuple(p.start for p in r), cause))
    return found


def seen_by_drift(performance: list[Episode], drift: list[Episode], step: dt.timedelta,
                  cooldown: int = 0) -> list[Episode]:
    """The performance episodes that no drift episode of the same version already covers (from its onset to
    `cooldown` partitions after its end): one episode is retrained once, whichever signal saw it."""
    return [p for p in performance if not any(
        d.model_version == p.model_version and d.onset <= p.onset <= d.partitions[-1] + (cooldown + 1) * step
        for d in drift)]


def decide(episode: Episode, labels_known_until: dt.datetime | None, maturity: dt.timedelta, step: dt.timedelta,
           new_labelled_partitions: int, quarantine_shares: dict[dt.datetime, float]) -> Decision:
    """Retrain, defer until labels from the onset are final, or alert on a data-quality incident."""
    incidents = {p: share for p, share in quarantine_shares.items()
                 if p in episode.partitions and share > QUARANTINE_SHARE_INCIDENT}
    if incidents:
        worst = max(incidents, key=incidents.get)
        return Decision(episode, "alert", f"{episode.cause} from {episode.onset:%Y-%m-%d %H:%M} coincides with a "
                        f"data-quality incident ({incidents[worst]:.1%} of rows quarantined on "
                        f"{worst:%Y-%m-%d %H:%M}): alerting, not retraining on broken data")
    if episode.cause == "performance":  # realised performance is only measured on final labels
        return Decision(episode, "retrain", f"realised performance of model v{episode.model_version} below its "
                        f"validation for {len(episode.partitions)} partitions from {episode.onset:%Y-%m-%d %H:%M}, "
                        "whose labels are final: retraining")
    needed = episode.onset + new_labelled_partitions * step  # examples before this must have final labels
    final_until = labels_known_until - maturity if labels_known_until else None
    if final_until is None or final_until < needed:
        return Decision(episode, "defer", f"drift detected from {episode.onset:%Y-%m-%d %H:%M} on model "
                        f"v{episode.model_version}; retraining deferred until labels up to {needed:%Y-%m-%d %H:%M} "
                        f"are final ({needed + maturity:%Y-%m-%d %H:%M} at the earliest): a model trained now "
                        "would learn nothing the champion did not")
    return Decision(episode, "retrain", f"drift from {episode.onset:%Y-%m-%d %H:%M} on model v{episode.model_version} "
                    f"for {len(episode.partitions)} partitions, and labels are final up to "
                    f"{final_until:%Y-%m-%d %H:%M}: retraining")
