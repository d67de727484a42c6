"""A tiny, deterministic world of electricity meters for the second test system.

Sites have two meters each; every hour each meter reports its consumption (kWh) and the outside
temperature. Consumption follows the hour of day, the site's size and the temperature, plus noise, so a
model can learn it. The site registry is delivered once, on the first day, without a time column.
Files are CSV (readings, hourly folders) and JSON Lines (sites), as a team's real exports would be.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np

SITES = {"north": ("cold", 120.0), "south": ("warm", 60.0), "harbour": ("warm", 200.0)}
METERS = ("m1", "m2")


def hour_key(start: dt.date, number: int) -> str:
    """The partition key of hour `number` (0-based) of a world generated from `start`."""
    return (dt.datetime.combine(start, dt.time(), tzinfo=dt.UTC) + dt.timedelta(hours=number)).strftime("%Y-%m-%d-%H:%M")


def generate(landing: Path, start: dt.date, hours: int, seed: int = 3, shift_from_hour: int | None = None) -> int:
    """Write `hours` hourly reading files from `start` and the site registry; returns readings written.

    From `shift_from_hour` on, temperatures run 15 degrees hotter: drift the monitoring must see.
    """
    rng = np.random.default_rng(seed)
    first = dt.datetime.combine(start, dt.time(), tzinfo=dt.UTC)
    _write_sites(landing, start)
    written = 0
    for hour in range(hours):
        at = first + dt.timedelta(hours=hour)
        folder = landing / "readings" / f"date={at:%Y-%m-%d}" / f"hour={at:%H}"
        folder.mkdir(parents=True, exist_ok=True)
        hotter = 15.0 if shift_from_hour is not None and hour >= shift_from_hour else 0.0
        lines = ["site_id,meter_id,event_time,kwh,temperature"]
        for site, (climate, size) in SITES.items():
            temperature = (2.0 if climate == "cold" else 14.0) + 6 * np.sin(2 * np.pi * at.hour / 24) + hotter
            for meter in METERS:
                minute = int(rng.integers(0, 60))
                load = size * (0.6 + 0.4 * np.sin(np.pi * at.hour / 24)) + 2.5 * abs(temperature - 18)
                kwh = max(0.0, load + rng.normal(0, 3))
                lines.append(f"{site},{meter},{(at + dt.timedelta(minutes=minute)).isoformat()},"
                             f"{kwh:.3f},{temperature + rng.normal(0, 0.5):.2f}")
                written += 1
        (folder / "readings.csv").write_text("\n".join(lines) + "\n")
    return written


def _write_sites(landing: Path, start: dt.date) -> None:
    folder = landing / "sites" / f"date={start:%Y-%m-%d}" / "hour=00"
    folder.mkdir(parents=True, exist_ok=True)
    rows = [{"site_id": site, "climate": climate, "capacity_kw": size} for site, (climate, size) in SITES.items()]
    (folder / "sites.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
