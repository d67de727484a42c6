"""Runs launched from code as the UI launches them, for commands such as `mlfs demo`.

`dagster.materialize` records an ephemeral job that no code location serves: the UI cannot re-execute such a
run, leaves it off its timeline and never lists it under the sensor that asked for it. A run made here is
recorded against the workspace's code location (its name, repository and asset job), so the UI treats it
as one of its own, and executes in this process so that the caller sees its result at once.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

from dagster import AssetSelection, DagsterInstance, JobExecutionResult
from dagster._core.definitions.reconstruct import ReconstructableRepository
from dagster._core.execution.api import execute_run
from dagster._core.remote_origin import (
    ManagedGrpcPythonEnvCodeLocationOrigin,
    RemoteJobOrigin,
    RemoteRepositoryOrigin,
)
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

ASSET_JOB = "__ASSET_JOB"  # the job the UI's "Materialize" button runs
REPOSITORY = "__repository__"  # the repository name Dagster gives a module's `Definitions`


@dataclass(frozen=True)
class CodeLocation:
    """A code location of the workspace: its name in `workspace.yaml` and the module holding its `defs`."""

    name: str
    module: str

    @cached_property
    def _repository(self) -> ReconstructableRepository:
        return ReconstructableRepository.for_module(self.module, "defs", working_directory=os.getcwd())

    @cached_property
    def _definition(self):
        return self._repository.get_definition()

    def _origin(self) -> RemoteJobOrigin:
        target = LoadableTargetOrigin(executable_path=sys.executable, module_name=self.module,
                                      working_directory=os.getcwd())
        location = ManagedGrpcPythonEnvCodeLocationOrigin(loadable_target_origin=target, location_name=self.name)
        return RemoteJobOrigin(RemoteRepositoryOrigin(location, REPOSITORY), ASSET_JOB)

    def run(self, instance: DagsterInstance, selection: AssetSelection, tags: Mapping[str, str],
            run_config: Mapping | None = None) -> JobExecutionResult:
        """Materialize `selection` (with its checks) in one run of the location's asset job."""
        keys = selection.resolve(self._definition.asset_graph)
        job = self._definition.get_job(ASSET_JOB).get_subset(asset_selection=keys)
        recon_job = self._repository.get_reconstructable_job(ASSET_JOB)
        run = instance.create_run_for_job(
            job_def=job, run_config=run_config, tags=tags, asset_selection=frozenset(keys),
            job_code_origin=recon_job.get_python_origin(), remote_job_origin=self._origin(),
        )
        return execute_run(recon_job, run, instance)
