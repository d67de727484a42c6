"""Feature-group assets: computed for the periods of the run from their inputs' lookback, proven equal to
single-period runs, then published into the group's versioned Iceberg table."""

import math

from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetDep,
    AssetExecutionContext,
    AssetsDefinition,
    BackfillPolicy,
    Failure,
    MaterializeResult,
    MetadataValue,
    TimeWindowPartitionMapping,
    asset,
)

from mlfs_dagster.builders.common import (
    add_partition_metadata,
    asset_key,
    chunks,
    follow_upstream,
    group_name,
    history_start,
    partition_range,
    partitions,
    period_ranges,
    retried_while_stores_are_unavailable,
    table_metadata,
    table_pool,
)
from mlfs_dagster.catalog import group_markdown
from mlfs_dagster.core import audit
from mlfs_dagster.core.features import compute_feature_group, leaks, load_inputs
from mlfs_dagster.core.offline_store import TimeRange
from mlfs_dagster.core.schema_evolution import evolve_table
from mlfs_dagster.core.specs import FeatureGroupSpec, FeatureInput, System
from mlfs_dagster.resources import OfflineStoreResource

LEAK_CHECK = "no_leakage"


def feature_group_asset(system: System, spec: FeatureGroupSpec) -> AssetsDefinition:
    key = asset_key(system, spec.asset_name)
    checks = [AssetCheckSpec(
        LEAK_CHECK, asset=key, blocking=True,
        description="Before anything is published, sampled periods of the run are recomputed alone (with only "
        "their own lookback: a daily run and a backfill give the same rows) and with their inputs cut in the "
        "middle of the period (a row may not use data from after its own time). Any difference fails and "
        "names the period, column and row.",
    )]
    if spec.entity_keys:
        checks.append(AssetCheckSpec("no_null_entity_keys", asset=key, blocking=True,
                                     description=f"Every row has its entity keys ({', '.join(spec.entity_keys)})."))
    computed_by = "DuckDB SQL" if spec.sql else "a Python function"

    @asset(
        key=key,
        group_name=group_name(system, "features"),
        description=f"{spec.description}\n\nFeature group `{spec.name}` version {spec.version} in `{spec.table}`: "
        f"entity ({', '.join(spec.entity_keys) or 'none: global features'}), time `{spec.time_column}`, "
        f"lookback {spec.lookback}, computed by {computed_by}.",
        partitions_def=partitions(system),
        backfill_policy=BackfillPolicy.single_run(),
        deps=[AssetDep(asset_key(system, i.source.asset_name), partition_mapping=_partition_mapping(system, i))
              for i in spec.inputs],
        kinds={"iceberg", "duckdb" if spec.sql else "python"},
        code_version=f"v{spec.version}",  # a bumped version marks every partition stale in the UI
        owners=[spec.owner],
        metadata={**table_metadata(spec.table, spec.columns), "feature_group_version": spec.version,
                  "catalog": MetadataValue.md(group_markdown(system, spec))},
        check_specs=checks,
        pool=table_pool(spec.table),
        **follow_upstream(system),
    )
    @retried_while_stores_are_unavailable
    def compute(context: AssetExecutionContext, offline_store: OfflineStoreResource):
        store, time_range = offline_store.open(), partition_range(context)
        first = history_start(system)
        periods, pieces = period_ranges(time_range, system.step), chunks(time_range, system.step)
        sample = _sample(periods)

        def computed(chunk: TimeRange):
            return compute_feature_group(spec, load_inputs(store, spec, chunk, first), chunk)

        # The chunks holding sampled periods are computed first and kept until published: a leak publishes nothing.
        held = {chunk: computed(chunk) for chunk in pieces if _inside(sample, chunk)}
        found = [leak for chunk, features in held.items()
                 for leak in leaks(store, spec, features, _inside(sample, chunk), first,
                                   in_range=chunk.end - chunk.start > system.step)]
        leak_check = AssetCheckResult(
            check_name=LEAK_CHECK, passed=not found,
            metadata={"periods_recomputed": MetadataValue.json([p.start.isoformat() for p in sample]),
                      "leaks": MetadataValue.json([str(leak) for leak in found])},
        )
        if found:
            yield leak_check
            raise Failure(f"nothing published: {found[0]}", metadata={"leaks": len(found)})
        evolve_table(store, spec.table, spec.schema, spec.time_column, spec.entity_keys)
        null_keys = 0
        for chunk in pieces:  # one commit of whole periods each: memory follows a chunk, not the range
            features = held.pop(chunk) if chunk in held else computed(chunk)
            snapshot_id = store.replace_range(spec.table, features, spec.time_column, chunk)
            add_partition_metadata(context, system, {
                p.start: {"dagster/row_count": n}
                for p, n in _rows_per_period(features, spec, period_ranges(chunk, system.step)).items()
            })
            null_keys += audit.null_keys(features, spec.entity_keys) if spec.entity_keys else 0
        checks = [leak_check]
        if spec.entity_keys:
            checks.append(AssetCheckResult(check_name="no_null_entity_keys", passed=null_keys == 0,
                                           metadata={"null_key_rows": null_keys}))
        yield MaterializeResult(metadata={"iceberg/snapshot_id": str(snapshot_id),
                                          "commit_retries": store.commit_retries}, check_results=checks)

    return compute


def _sample(periods: list[TimeRange]) -> list[TimeRange]:
    """The second, middle and last periods (a leak from an earlier period shows from the second on); the
    only one of a single-period run."""
    return [periods[i] for i in sorted({min(1, len(periods) - 1), len(periods) // 2, len(periods) - 1})]


def _inside(periods: list[TimeRange], chunk: TimeRange) -> list[TimeRange]:
    return [p for p in periods if chunk.start <= p.start < chunk.end]


def _rows_per_period(features, spec: FeatureGroupSpec, periods: list[TimeRange]) -> dict[TimeRange, int]:
    import pyarrow.compute as pc

    times = features[spec.time_column]
    return {p: pc.sum(pc.and_(pc.greater_equal(times, p.start), pc.less(times, p.end))).as_py() or 0
            for p in periods}


def _partition_mapping(system: System, feature_input: FeatureInput) -> TimeWindowPartitionMapping | None:
    if feature_input.lookback is None:  # reference data: all history, tracked per period
        return None
    return TimeWindowPartitionMapping(
        start_offset=-math.ceil(feature_input.lookback / system.step),
        end_offset=-math.ceil(feature_input.lag / system.step),
        allow_nonexistent_upstream_partitions=True,
    )
