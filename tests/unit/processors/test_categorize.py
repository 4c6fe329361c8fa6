from __future__ import annotations

import numpy as np
from PIL import Image

from processors.categorize import CategorizeSettings, Hints, categorize, normalize_words
from processors.taxonomy import CategoryDef, Taxonomy

S = CategorizeSettings()


def test_the_default_taxonomy_has_twelve_categories_and_enough_terms() -> None:
    names = [c.name for c in S.taxonomy.categories]
    assert names == [
        "rings",
        "necklaces",
        "earrings",
        "bracelets",
        "watches",
        "pendants",
        "chains",
        "brooches",
        "gemstones",
        "pearls",
        "vintage",
        "luxury",
    ]
    assert S.taxonomy.term_count() >= 80
    assert S.taxonomy.fallback == "other"


def test_title_keywords_and_url_all_count_with_evidence() -> None:
    result = categorize(
        Hints(
            title="18k Gold Solitaire Engagement Ring",
            page_url="https://shop.example/rings/solitaire-1",
        ),
        S,
    )
    assert result.category == "rings"
    assert {"title:ring", "title:engagement ring", "title:solitaire"} <= set(result.evidence)
    assert any(e.startswith("url:/rings") for e in result.evidence)
    assert result.score == result.scores["rings"] > result.scores["luxury"] > 0


def test_plurals_and_case_do_not_matter() -> None:
    assert normalize_words("Pearl EARRINGS, Watches & Brooches") == " pearl earring watch brooch "
    result = categorize(Hints(keywords=("Earrings", "studs")), S)
    assert result.category == "earrings"


def test_nothing_recognisable_falls_back_to_other() -> None:
    result = categorize(
        Hints(title="Blue ceramic mug", page_url="https://shop.example/kitchen/mugs"), S
    )
    assert result.category == "other" and result.score == 0 and result.evidence == []


def test_a_phrase_beats_a_loose_word() -> None:
    result = categorize(Hints(title="Silver charm bracelet with a heart charm"), S)
    assert result.category == "bracelets"


def test_a_custom_taxonomy_and_the_image_hook() -> None:
    taxonomy = Taxonomy(
        categories=(
            CategoryDef(name="mugs", terms={"mug": 1.0}),
            CategoryDef(name="plates", terms={"plate": 1.0}),
        ),
        min_score=2.0,
    )
    custom = CategorizeSettings(taxonomy=taxonomy, classifier_weight=3.0)
    assert categorize(Hints(file_name="mug.jpg"), custom).category == "other"  # 1.0 < min_score
    image = Image.fromarray(np.zeros((8, 8, 3), np.uint8))
    seen: list[tuple[int, int]] = []

    def classifier(img: Image.Image) -> dict[str, float]:
        seen.append(img.size)
        return {"plates": 0.9, "unknown": 5.0}

    result = categorize(Hints(file_name="mug.jpg"), custom, image=image, classifier=classifier)
    assert seen == [(8, 8)]
    assert result.category == "plates" and "image:0.90" in result.evidence


def test_a_page_url_urllib_cannot_parse_is_no_failure() -> None:
    for url in ("http://[::1", "http://[bad]/rings/x", "//["):
        result = categorize(Hints(title="gold ring", page_url=url), S)
        assert result.category == "rings"
        assert not any(e.startswith("url:") for e in result.evidence)
