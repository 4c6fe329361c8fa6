"""The whole settings model: what every process needs, plus the stages and the dev stack.

Only the application layer (CLI, registry, demo, dev stack) builds this; the runner takes
the `FleetSettings` it extends, so a worker reads its config without importing stage code.
"""

from __future__ import annotations

from pydantic import Field

from streams.devstack.settings import LocalSettings
from streams.stages.settings import StageSettings


class Settings(LocalSettings):
    # Thresholds, taxonomy, profiles and variants; best set in the config file.
    stages: StageSettings = Field(default_factory=StageSettings)
