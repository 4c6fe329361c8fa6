"""The categorize stage's work: score each category from the event's hints (and, when one
is plugged in, from an image classifier), keep the evidence."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from urllib.parse import unquote, urlparse

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from processors.taxonomy import Taxonomy

# A classifier maps a decoded image to category scores; off unless configured.
ImageClassifier = Callable[[Image.Image], dict[str, float]]
_WORD = re.compile(r"[a-z0-9]+")


class CategorizeSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    taxonomy: Taxonomy = Field(default_factory=Taxonomy)
    classifier_weight: float = Field(default=3.0, ge=0)


@dataclass(frozen=True)
class Hints:
    title: str | None = None
    keywords: tuple[str, ...] = ()
    page_url: str | None = None
    file_name: str | None = None


@dataclass
class Categorized:
    category: str
    score: float
    evidence: list[str] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)


def normalize_words(text: str) -> str:
    """Lower-case words joined by single spaces, plurals reduced ('rings' -> 'ring')."""
    words = _WORD.findall(unquote(text).lower())
    return " " + " ".join(_singular(w) for w in words) + " "


def _singular(word: str) -> str:
    if len(word) > 4 and word.endswith("es") and word[-3] in "sxh":
        return word[:-2]  # watches, brooches
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


@cache
def _compiled(patterns: tuple[str, ...]) -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(p, re.IGNORECASE) for p in patterns)


def categorize(
    hints: Hints,
    settings: CategorizeSettings,
    image: Image.Image | None = None,
    classifier: ImageClassifier | None = None,
) -> Categorized:
    taxonomy = settings.taxonomy
    weights = taxonomy.source_weights
    texts = {
        "title": normalize_words(hints.title or ""),
        "keywords": normalize_words(" , ".join(hints.keywords)),
        "file_name": normalize_words(
            re.sub(r"\.[a-z0-9]{2,4}$", "", (hints.file_name or "").lower())
        ),
    }
    path = _url_path(hints.page_url or "")
    scores: dict[str, float] = {}
    evidence: dict[str, list[str]] = {}
    for category in taxonomy.categories:
        score, found = 0.0, []
        for term, weight in category.terms.items():
            needle = normalize_words(term)
            for source, text in texts.items():
                if needle in text:
                    score += weight * weights.get(source, 1.0)
                    found.append(f"{source}:{term}")
        for pattern in _compiled(category.url_patterns):
            match = pattern.search(path)
            if match:
                score += weights.get("url", 1.0)
                found.append(f"url:{match.group(0)}")
        scores[category.name] = round(score, 3)
        evidence[category.name] = found
    if classifier is not None and image is not None:
        for name, value in classifier(image).items():
            if name in scores:
                scores[name] = round(scores[name] + value * settings.classifier_weight, 3)
                evidence[name].append(f"image:{value:.2f}")
    best = max(taxonomy.categories, key=lambda c: scores[c.name], default=None)
    if best is None or scores[best.name] < taxonomy.min_score:
        return Categorized(taxonomy.fallback, 0.0, [], scores)
    return Categorized(best.name, scores[best.name], evidence[best.name], scores)


def _url_path(url: str) -> str:
    """The lower-cased path of a page URL; "" for one urllib cannot parse (an unbalanced
    "[" is a ValueError): a hint is upstream's free text, never a reason to fail."""
    try:
        return urlparse(url).path.lower()
    except ValueError:
        return ""
