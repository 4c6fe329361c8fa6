"""The default taxonomy: the jewelry categories our first users sort their catalogues into.

Each category has weighted terms (phrases count more than single words) and URL path
patterns. Any of it can be replaced from the config file (`categorize.taxonomy`).
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Where a hint's words are found; a weight for any other source would never be used.
SOURCES = ("title", "keywords", "url", "file_name")


class CategoryDef(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    terms: dict[str, float]
    url_patterns: tuple[str, ...] = ()

    @field_validator("url_patterns")
    @classmethod
    def _patterns_compile(cls, patterns: tuple[str, ...]) -> tuple[str, ...]:
        # Compiled here once, so that a broken pattern stops the worker at start instead of
        # failing the first image whose hints reach it.
        for pattern in patterns:
            try:
                re.compile(pattern, re.IGNORECASE)
            except re.error as exc:
                raise ValueError(
                    f"URL pattern {pattern!r} is not a regular expression: {exc}"
                ) from exc
        return patterns


def _terms(
    single: str, phrases: str = "", single_weight: float = 1.0, phrase_weight: float = 2.0
) -> dict[str, float]:
    out = {t: single_weight for t in single.split()}
    out.update({p.strip(): phrase_weight for p in phrases.split(",") if p.strip()})
    return out


DEFAULT_CATEGORIES: tuple[CategoryDef, ...] = (
    CategoryDef(
        name="rings",
        terms=_terms(
            "ring solitaire signet band",
            "engagement ring, wedding band, eternity ring, cocktail ring, stacking ring,"
            " promise ring",
        ),
        url_patterns=(r"/rings?\b", r"/engagement\b", r"/wedding-bands?\b"),
    ),
    CategoryDef(
        name="necklaces",
        terms=_terms(
            "necklace choker lariat collar sautoir",
            "statement necklace, bib necklace, riviera necklace, tennis necklace",
        ),
        url_patterns=(r"/necklaces?\b", r"/chokers?\b"),
    ),
    CategoryDef(
        name="earrings",
        terms=_terms(
            "earring stud hoop huggie dangle",
            "drop earring, ear cuff, chandelier earring, ear climber, threader earring",
        ),
        url_patterns=(r"/earrings?\b", r"/studs?\b", r"/hoops?\b"),
    ),
    CategoryDef(
        name="bracelets",
        terms=_terms(
            "bracelet bangle cuff anklet",
            "tennis bracelet, charm bracelet, link bracelet, cuff bracelet",
        ),
        url_patterns=(r"/bracelets?\b", r"/bangles?\b"),
    ),
    CategoryDef(
        name="watches",
        terms=_terms(
            "watch wristwatch chronograph timepiece horology",
            "automatic watch, dive watch, dress watch, pocket watch, watch strap",
        ),
        url_patterns=(r"/watch(es)?\b", r"/timepieces?\b"),
    ),
    CategoryDef(
        name="pendants",
        terms=_terms(
            "pendant locket medallion amulet",
            "cross pendant, initial pendant, heart pendant, charm pendant",
        ),
        url_patterns=(r"/pendants?\b", r"/lockets?\b"),
    ),
    CategoryDef(
        name="chains",
        terms=_terms(
            "chain figaro",
            "curb chain, rope chain, box chain, snake chain, cable chain, franco chain, cuban link",
        ),
        url_patterns=(r"/chains?\b",),
    ),
    CategoryDef(
        name="brooches",
        terms=_terms("brooch cameo", "lapel pin, clip brooch, hat pin, stick pin"),
        url_patterns=(r"/brooch(es)?\b", r"/pins?\b"),
    ),
    CategoryDef(
        name="gemstones",
        terms=_terms(
            "gemstone gem diamond sapphire ruby emerald amethyst topaz opal tourmaline garnet"
            " aquamarine carat tanzanite",
            "loose stone, loose diamond, certified diamond",
        ),
        url_patterns=(r"/gem(stone)?s?\b", r"/diamonds?\b", r"/loose\b"),
    ),
    CategoryDef(
        name="pearls",
        terms=_terms(
            "pearl akoya tahitian",
            "freshwater pearl, south sea pearl, mother of pearl, baroque pearl, pearl strand",
        ),
        url_patterns=(r"/pearls?\b",),
    ),
    CategoryDef(
        name="vintage",
        terms=_terms(
            "vintage antique victorian edwardian georgian retro estate heirloom",
            "art deco, art nouveau, mid century",
        ),
        url_patterns=(r"/vintage\b", r"/antique\b", r"/estate\b"),
    ),
    CategoryDef(
        name="luxury",
        terms=_terms(
            "luxury platinum designer cartier tiffany bulgari chopard boucheron",
            "high jewelry, haute joaillerie, van cleef, fine jewelry, 18k gold",
        ),
        url_patterns=(r"/luxury\b", r"/high-jewel", r"/fine-jewel"),
    ),
)


class Taxonomy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    categories: tuple[CategoryDef, ...] = DEFAULT_CATEGORIES
    fallback: str = "other"
    min_score: float = Field(default=1.0, ge=0)
    # How much a match counts, by where it was found.
    source_weights: dict[str, float] = Field(
        default_factory=lambda: {"title": 3.0, "keywords": 2.0, "url": 2.0, "file_name": 1.0}
    )

    @field_validator("source_weights")
    @classmethod
    def _known_sources(cls, weights: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(weights) - set(SOURCES))
        if unknown:  # a misspelt source would leave the real one at weight 1, unsaid
            raise ValueError(f"unknown source(s) {unknown} (known: {', '.join(SOURCES)})")
        return weights

    @model_validator(mode="after")
    def _names_once(self) -> Taxonomy:
        names = [c.name for c in self.categories]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"categories named more than once: {twice}")
        return self

    def names(self) -> tuple[str, ...]:
        """Every category an image can end in: the taxonomy's and the fallback."""
        return (*(c.name for c in self.categories), self.fallback)

    def term_count(self) -> int:
        return sum(len(c.terms) for c in self.categories)
