"""The fraud model: trained on the latest training-set version, gated, then promoted to champion."""

from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    Config,
    ConfigurableResource,
    Definitions,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
)
from pydantic import Field

from mlfs_dagster.core.training import fit_and_evaluate, gate_failures
from mlfs_dagster.fraud import training
from mlfs_dagster.fraud.model import FEATURES, LABEL, MODEL_NAME, NUMERICAL_FEATURES, build_pipeline
from mlfs_dagster.resources import ModelRegistryResource, OfflineStoreResource

ML_OWNER = "team:fraud-ml"
CHAMPION = "champion"


class ModelConfig(Config):
    seed: int = Field(default=7, description="Random seed of the learner.")


class ModelGateResource(ConfigurableResource):
    """The minimum validation metrics a model version needs before it may serve."""

    min_pr_auc: float = Field(default=0.3, description="Minimum precision-recall AUC on validation.")
    min_roc_auc: float = Field(default=0.85, description="Minimum ROC AUC on validation.")

    def failures(self, metrics: dict[str, float]) -> list[str]:
        return gate_failures(metrics, {"pr_auc": self.min_pr_auc, "roc_auc": self.min_roc_auc})


@asset(
    group_name="models",
    description=(
        "Gradient-boosted fraud classifier: imputers and encoders inside the scikit-learn pipeline, trained on "
        "the training set's train split, evaluated on the later validation split from probabilities "
        f"(PR-AUC, ROC-AUC), logged to MLflow with its training-set version and registered as a new "
        f"version of `{MODEL_NAME}`."
    ),
    deps=["fraud_training_set"],
    kinds={"mlflow", "scikit-learn"},
    owners=[ML_OWNER],
)
def fraud_model(
    context: AssetExecutionContext,
    config: ModelConfig,
    offline_store: OfflineStoreResource,
    model_registry: ModelRegistryResource,
):
    store = offline_store.open()
    snapshot_id = store.snapshot_id(training.TABLE)
    version = next((tag for tag, sid in store.tags(training.TABLE).items() if sid == snapshot_id), "untagged")
    frame = store.read(training.TABLE, snapshot_id=snapshot_id).to_pandas()
    model, metrics = fit_and_evaluate(build_pipeline(config.seed), frame, FEATURES, LABEL)
    registered = model_registry.open().log_and_register(
        model,
        MODEL_NAME,
        metrics=metrics,
        params={"seed": config.seed, "features": ",".join(FEATURES)},
        tags={"training_set": training.TABLE, "training_set_snapshot": str(snapshot_id),
              "training_set_version": version, "seed": str(config.seed)},
        # Floats: any numeric feature can be missing at serving time (no feature row to join).
        input_example=frame[FEATURES].head(5).astype({c: "float64" for c in NUMERICAL_FEATURES}),
        datasets=[{"table": training.TABLE, "snapshot_id": str(snapshot_id), "rows": len(frame),
                   "role": "training"}],
    )
    return MaterializeResult(
        metadata={
            "model_version": registered.version,
            "model_uri": registered.model_uri,
            "mlflow_run_id": registered.run_id,
            "training_set_version": version,
            "training_set_snapshot": str(snapshot_id),
            **{name: MetadataValue.float(value) for name, value in metrics.items()},
        }
    )


@asset_check(
    asset=fraud_model,
    blocking=True,
    description="The newest model version meets the minimum PR-AUC and ROC-AUC; otherwise it is not promoted.",
)
def performance_gate(model_registry: ModelRegistryResource, model_gate: ModelGateResource) -> AssetCheckResult:
    latest = model_registry.open().latest_version(MODEL_NAME)
    failures = model_gate.failures(latest.metrics)
    return AssetCheckResult(
        passed=not failures,
        metadata={"model_version": latest.version, "failures": MetadataValue.json(failures),
                  "pr_auc": latest.metrics.get("pr_auc"), "roc_auc": latest.metrics.get("roc_auc")},
    )


@asset(
    group_name="models",
    description=f"Gives the newest `{MODEL_NAME}` version the `{CHAMPION}` alias that batch inference serves, "
    "after its performance gate passes.",
    deps=[fraud_model],
    kinds={"mlflow"},
    owners=[ML_OWNER],
)
def fraud_model_champion(model_registry: ModelRegistryResource, model_gate: ModelGateResource):
    registry = model_registry.open()
    latest = registry.latest_version(MODEL_NAME)
    # Re-checked here too: this asset can be materialized on its own, outside the gated run.
    failures = model_gate.failures(latest.metrics)
    if failures:
        raise Failure(f"{MODEL_NAME} v{latest.version} fails its performance gate: {'; '.join(failures)}")
    previous = registry.version_by_alias(MODEL_NAME, CHAMPION)
    registry.set_alias(MODEL_NAME, CHAMPION, latest.version)
    return MaterializeResult(
        metadata={"champion_version": latest.version,
                  "previous_champion": previous.version if previous else "none",
                  "model_uri": f"models:/{MODEL_NAME}@{CHAMPION}"}
    )


defs = Definitions(assets=[fraud_model, fraud_model_champion], asset_checks=[performance_gate],
                   resources={"model_gate": ModelGateResource()})
