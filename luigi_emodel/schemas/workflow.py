"""The state of an e-model's workflow (configurations used and models produced).

Locally, as in the reference, the workflow is not persisted: the files themselves are the
state. The class exists so that code written against the access-point API runs unchanged.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from luigi_emodel.schemas._base import StrictModel

__all__ = ["EModelWorkflow"]


class EModelWorkflow(StrictModel):
    """Ids of the configurations of a workflow run and of the models it produced."""

    targets_configuration_id: str | None = None
    pipeline_settings_id: str | None = None
    emodel_configuration_id: str | None = None
    fitness_configuration_id: str | None = None
    emodels: list[str] = Field(default_factory=list)
    emodel_scripts_id: list[str] = Field(default_factory=list)
    state: Literal["not launched", "running", "done"] = "not launched"

    def get_configuration_ids(self) -> tuple[str | None, ...]:
        """The ids of the configurations this workflow uses."""
        ids = (self.targets_configuration_id, self.pipeline_settings_id,
               self.emodel_configuration_id)
        if self.fitness_configuration_id:
            ids += (self.fitness_configuration_id,)
        return ids
