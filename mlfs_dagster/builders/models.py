"""Model assets: a candidate trained on the latest training-set version and gated, then promoted to champion.

A new version is registered in MLflow with the alias `challenger`; its gates (floors, and no worse than
the champion scored on the same validation rows) are a blocking check, and the champion asset moves the
`champion` alias only when every gate passed. The same training-set version and seed as the latest
version is not a new candidate: nothing is trained or registered.
"""

import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetsDefinition,
    AutomationCondition,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from mlfs_dagster.builders.common import asset_key, group_name
from mlfs_dagster.core.drift import drifted_periods
from mlfs_dagster.core.specs import ModelSpec, System
from mlfs_dagster.core.training import (
    SPLIT,
    as_frame,
    evaluate,
    fit_and_evaluate,
    gate_failures,
    monitoring_reference,
)
from mlfs_dagster.resources import ModelRegistryResource, OfflineStoreResource

CHAMPION, CHALLENGER = "champion", "challenger"
FEATURES_TAG = "features"  # on each version: the columns it was trained on, to score it fairly later
EXAMPLES_UNTIL_TAG = "examples_until"  # its newest training-set example: later days are out of sample
GATES = "gates"


class ModelConfig(Config):
    seed: int | None = Field(default=None, description="Random seed of the learner (default: the model's own).")


def model_assets(system: System, model: ModelSpec) -> list[AssetsDefinition]:
    return [_candidate_asset(system, model), _champion_asset(system, model)]


def _gates_text(model: ModelSpec) -> str:
    parts = []
    for gate in model.gates:
        bounds = [f">= {gate.minimum}" if gate.minimum is not None else "",
                  f"<= {gate.maximum}" if gate.maximum is not None else "",
                  f"within {gate.champion_tolerance} of the champion" if gate.champion_tolerance is not None else ""]
        parts.append(f"{gate.metric} {', '.join(b for b in bounds if b)}")
    return "; ".join(parts) or "none declared"


def _candidate_asset(system: System, model: ModelSpec) -> AssetsDefinition:
    view, key, name = model.feature_view, asset_key(system, model.name), model.registered_name

    @asset(
        key=key,
        group_name=group_name(system, "models"),
        description=f"{model.description}\n\nTrained on the latest version of `{view.asset_name}` (train split), "
        f"evaluated on its later validation split, logged to MLflow with its training-set version and its "
        "monitoring reference (its latest training rows, its validation outputs), and registered as a new version "
        f"of `{name}` with the alias `{CHALLENGER}`. Gates: {_gates_text(model)}.",
        deps=[asset_key(system, view.asset_name)],
        kinds={"mlflow", "scikit-learn"},
        owners=[model.owner],
        check_specs=[AssetCheckSpec(GATES, asset=key, blocking=True,
                                    description=f"The candidate passes every gate: {_gates_text(model)}.")],
        automation_condition=AutomationCondition.eager(),  # trained when its training set has a new version
    )
    def candidate(context: AssetExecutionContext, config: ModelConfig, offline_store: OfflineStoreResource,
                  model_registry: ModelRegistryResource):
        store, registry = offline_store.open(), model_registry.open()
        seed = model.seed if config.seed is None else config.seed
        snapshot_id = store.snapshot_id(view.table)
        version = next((tag for tag, sid in store.tags(view.table).items() if sid == snapshot_id), "untagged")
        champion = registry.version_by_alias(name, CHAMPION)
        same = _trained_on(snapshot_id, seed, champion, registry.latest_version(name))
        if same:
            reason = f"v{same.version} was already trained on {version} with seed {seed}: nothing new to learn"
            decided = {"result": reason, "model_version": same.version,
                       "failures": MetadataValue.json(_failures(same.tags.get("gate_failures", "")))}
            return MaterializeResult(
                metadata={"new_candidate": False, "reason": reason, "model_version": same.version},
                check_results=[AssetCheckResult(check_name=GATES, passed=same.tags.get("gates_passed") == "true",
                                                metadata=decided)],
            )
        frame = as_frame(store.read(view.table, _columns_used(store, model, champion), snapshot_id=snapshot_id))
        fitted, metrics, validation_outputs = fit_and_evaluate(model, frame, seed)
        champion_metrics = _champion_on(registry, model, champion, frame) if champion else None
        failures = gate_failures(model.gates, metrics, champion_metrics)
        registered = registry.log_and_register(
            fitted, name,
            metrics={**metrics, **{f"champion_{k}": v for k, v in (champion_metrics or {}).items()}},
            params={"seed": seed, "features": ",".join(model.features)},
            tags={"training_set": view.table, "training_set_snapshot": str(snapshot_id),
                  "training_set_version": version, "seed": str(seed), "gates_passed": str(not failures).lower(),
                  "gate_failures": "; ".join(failures)[:4000], FEATURES_TAG: ",".join(model.features),
                  EXAMPLES_UNTIL_TAG: frame[view.spine_time].max().isoformat(),
                  "champion_at_training": champion.version if champion else "none"},
            input_example=_input_example(frame, model),
            datasets=[{"table": view.table, "snapshot_id": str(snapshot_id), "rows": len(frame), "role": "training"}],
            frames=monitoring_reference(model, frame, validation_outputs,
                                        drifted_periods(store, model.drift_table, system.step)),
        )
        registry.set_alias(name, CHALLENGER, registered.version)
        figures = {k: MetadataValue.float(v) for k, v in metrics.items()}
        return MaterializeResult(
            metadata={"new_candidate": True, "model_version": registered.version, "model_uri": registered.model_uri,
                      "mlflow_run_id": registered.run_id, "training_set_version": version,
                      "training_set_snapshot": str(snapshot_id), **figures},
            check_results=[AssetCheckResult(
                check_name=GATES, passed=not failures,
                metadata={"model_version": registered.version, "failures": MetadataValue.json(failures),
                          "champion_version": champion.version if champion else "none",
                          "champion_on_same_validation": MetadataValue.json(champion_metrics), **figures},
            )],
        )

    return candidate


def _trained_on(snapshot_id: int, seed: int, *versions):
    """The champion or latest version already trained on this training-set snapshot with this seed."""
    return next((v for v in versions if v and v.tags.get("training_set_snapshot") == str(snapshot_id)
                 and v.tags.get("seed") == str(seed)), None)


def _columns_used(store, model: ModelSpec, champion) -> tuple[str, ...]:
    """The training-set columns the candidate and the champion's scoring need: the identifiers and matched
    times left out are a good part of a large set's memory."""
    view = model.feature_view
    champion_features = champion.tags.get(FEATURES_TAG, "").split(",") if champion else []
    wanted = (*model.features, *champion_features, view.label.column, SPLIT, view.spine_time)
    stored = set(store.table(view.table).schema().column_names)
    return tuple(c for c in dict.fromkeys(wanted) if c in stored)


def _champion_on(registry, model: ModelSpec, champion, frame: pd.DataFrame) -> dict[str, float] | None:
    """The champion's metrics on the candidate's validation rows: the only fair comparison. None when the
    champion needs features this training set no longer has: then only the floors apply."""
    features = champion.tags.get(FEATURES_TAG, ",".join(model.features)).split(",")
    if set(features) - set(frame.columns):
        return None
    validation = frame[frame[SPLIT] == "validation"]
    label = model.feature_view.label
    return evaluate(registry.load_version(model.registered_name, champion.version), validation,
                    features, label.column, label.kind)


def _failures(joined: str) -> list[str]:
    return [failure for failure in joined.split("; ") if failure]


def _input_example(frame: pd.DataFrame, model: ModelSpec) -> pd.DataFrame:
    # Numbers as floats: any numeric feature can be missing at serving time (no feature row to join).
    example = frame[list(model.features)].head(5)
    numeric = [c for c in example if pd.api.types.is_numeric_dtype(example[c]) and not pd.api.types.is_bool_dtype(example[c])]
    return example.astype({c: "float64" for c in numeric})


def _champion_asset(system: System, model: ModelSpec) -> AssetsDefinition:
    name = model.registered_name

    @asset(
        key=asset_key(system, f"{model.name}_champion"),
        group_name=group_name(system, "models"),
        description=f"Moves the `{CHAMPION}` alias of `{name}`, which inference serves, to the `{CHALLENGER}` once "
        "every gate of the challenger passed; says why it did or did not.",
        deps=[asset_key(system, model.name)],
        kinds={"mlflow"},
        owners=[model.owner],
        automation_condition=AutomationCondition.eager() & AutomationCondition.all_deps_blocking_checks_passed(),
    )
    def promote(model_registry: ModelRegistryResource):
        registry = model_registry.open()
        challenger, previous = registry.version_by_alias(name, CHALLENGER), registry.version_by_alias(name, CHAMPION)
        current = previous.version if previous else "none"
        if challenger is None:
            return MaterializeResult(metadata={"promoted": False, "champion_version": current,
                                               "reason": "no challenger: the latest candidate was already decided"})
        # Re-checked here: this asset can be materialized on its own, outside the gated run.
        if challenger.tags.get("gates_passed") != "true":
            return MaterializeResult(metadata={
                "promoted": False, "champion_version": current,
                "reason": f"challenger v{challenger.version} failed its gates: {challenger.tags.get('gate_failures')}"})
        registry.set_alias(name, CHAMPION, challenger.version)
        registry.delete_alias(name, CHALLENGER)
        return MaterializeResult(metadata={
            "promoted": True, "champion_version": challenger.version, "previous_champion": current,
            "reason": f"every gate passed ({_gates_text(model)})", "model_uri": f"models:/{name}@{CHAMPION}",
        })

    return promote
