"""The parameters of the image stages: one section of the settings model and config file."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

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

    @model_validator(mode="after")
    def _sections_agree(self) -> StageSettings:
        # What one section names in another is checked when the worker starts: a category
        # misspelt in enhance would be ignored, and a match profile without its reference
        # image would reject every image it applies to.
        enhance = self.enhance
        categories = self.categorize.taxonomy.names()
        unknown = sorted(set(enhance.category_profiles) - set(categories))
        # Only a mapping the config wrote: the default one names the default taxonomy's
        # categories, and a config that replaces the taxonomy need not empty it too.
        if unknown and "category_profiles" in enhance.model_fields_set:
            raise ValueError(
                f"enhance.category_profiles names unknown categories {unknown} "
                f"(known: {', '.join(categories)})"
            )
        uses_match = "match" in (enhance.default_profile, *enhance.category_profiles.values())
        if uses_match and not self.reference_image:
            raise ValueError("the enhance profile `match` is configured but reference_image is not")
        return self
