"""The parameters of the image stages: one section of the settings model and config file."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from processors.categorize import CategorizeSettings
from processors.compress import CompressSettings
from processors.enhance import EnhanceSettings
from processors.restore.settings import RestoreSettings
from processors.validate import ValidateSettings
from streams.stages.fetch.settings import FetchSettings


class StageSettings(BaseModel):
    """Every image stage's parameters, from the `stages` section of the config file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    fetch: FetchSettings = Field(default_factory=FetchSettings)
    validate_: ValidateSettings = Field(default_factory=ValidateSettings, alias="validate")
    categorize: CategorizeSettings = Field(default_factory=CategorizeSettings)
    enhance: EnhanceSettings = Field(default_factory=EnhanceSettings)
    restore: RestoreSettings = Field(default_factory=RestoreSettings)
    compress: CompressSettings = Field(default_factory=CompressSettings)
    # An image for the `match` enhancement profile, as a path readable by the workers.
    reference_image: str | None = None
    # An image classifier for categorize, as `module:function` taking a PIL image and
    # returning category scores; off by default (categorize then needs no pixels at all).
    classifier: str | None = None
