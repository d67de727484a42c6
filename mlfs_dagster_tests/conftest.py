"""A small simulated world, built once per test session through real Dagster runs on embedded stores."""

import datetime as dt
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

# The reference system reads its start from the landing zone under MLFS_HOME: tests start from an empty home,
# whatever a demo left in the project's own.
os.environ["MLFS_HOME"] = tempfile.mkdtemp(prefix="mlfs_tests_")
os.environ.pop("MLFS_LANDING", None)

from card_fraud.demo import QUIET  # noqa: E402
from card_fraud.simulator import SimulationConfig, simulate  # noqa: E402
from card_fraud.system import SYSTEM  # noqa: E402
from mlfs_dagster.settings import Settings, use_home  # noqa: E402

pytest_plugins = ["mlfs_dagster_tests.servers"]  # PostgreSQL databases and S3 servers for the tests that need them

START = SYSTEM.start
DAYS = 75  # labels are final after 30 days and merchant rates need 29: 16 days of training examples


def groups(*layers: str):
    """The reference system's asset groups of these layers."""
    from card_fraud.demo import groups as system_groups

    return system_groups(*layers)


def day(number: int) -> dt.date:
    """Day `number` of the simulation, 1-based."""
    return START + dt.timedelta(days=number - 1)


@dataclass
class World:
    home: Path
    settings: Settings
    instance: object
    defs: object

    def materialize(self, selection, days: tuple[dt.date, dt.date] | None = None, resources=None, tags=None):
        return self.materialize_with(self.defs, selection, days, resources, tags)

    def materialize_with(self, defs, selection, days: tuple[dt.date, dt.date] | None = None, resources=None,
                         tags=None, run_config=None):
        """One in-process run of `selection` among `defs` (another system's, or a changed declaration)."""
        from dagster import materialize

        from mlfs_dagster.builders.common import range_tags

        return materialize(
            [*defs.assets, *(defs.asset_checks or [])],
            selection=selection,
            resources={**self.defs.resources, **(resources or {})},
            instance=self.instance,
            tags={**(range_tags(*(d.isoformat() for d in days)) if days else {}), **(tags or {})},
            run_config={**QUIET, **(run_config or {})},
            raise_on_error=False,
        )

    def store(self):
        return self.settings.offline_store()

    def online_store(self):
        from mlfs_dagster.core.online_store import open_online_store

        return open_online_store(self.settings.online_store)


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> World:
    """75 simulated days with a high fraud rate (so a tiny set still trains), raw to model, in real runs."""
    from dagster import DagsterInstance

    home = tmp_path_factory.mktemp("mlfs_home")
    settings = use_home(home)
    simulate(SimulationConfig(start_date=START, days=DAYS, cards=300, merchants=60, transactions_per_day=500,
                              fraud_rate=0.03, seed=11), Path(settings.landing))
    from card_fraud.definitions import defs

    instance = DagsterInstance.ephemeral()
    world = World(home, settings, instance, defs)
    assert world.materialize(groups("raw", "features"), (day(1), day(DAYS))).success
    assert world.materialize(groups("training", "models")).success
    return world
