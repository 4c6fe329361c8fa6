"""Objects referenced by `submit s3://...` keep one id per key: two keys are two images,
and a key that is already a clean id keeps it."""

from __future__ import annotations

import hashlib
import re
from typing import Any, cast

import pytest
from confluent_kafka import Producer

from schemas.events import Hints, Request
from streams.app.submit import Submitter, object_image_id
from streams.config.settings import FleetSettings

_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


def _digits(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:16]


@pytest.mark.parametrize("key", ["cup.jpg", "shop-rings-a.jpg", "A_1.2-x", "k" * 128])
def test_a_clean_key_is_its_own_id(key: str) -> None:
    assert object_image_id(key) == key


def test_keys_that_clean_alike_are_distinct_images() -> None:
    keys = ["a b", "a-b", "a/b", "a//b", "-a-b", "a-b."]
    ids = [object_image_id(k) for k in keys]
    assert len(set(ids)) == len(keys), ids
    assert ids[1] == "a-b"  # already clean: unchanged
    assert ids[0] == f"a-b-{_digits('a b')}"
    assert ids[2] == f"a-b-{_digits('a/b')}"


def test_long_keys_that_differ_only_at_their_end_stay_apart() -> None:
    folder = "exports/2024-05-17/catalogue/high-resolution/product-photography/" * 2
    navy, olive = object_image_id(folder + "navy.jpg"), object_image_id(folder + "olive.jpg")
    assert navy != olive
    for made in (navy, olive, object_image_id("x" * 129)):
        assert _ID.fullmatch(made) and len(made) == 128, made
    # The prefix is cut where it leaves room, never ending in "-" before the digits.
    assert navy.endswith("-" + _digits(folder + "navy.jpg")) and "--" not in navy


def test_a_key_of_punctuation_alone_still_gets_an_id() -> None:
    assert object_image_id("..") == f"object-{_digits('..')}"
    assert object_image_id("///") != object_image_id("..")


class _Producer:
    def __init__(self) -> None:
        self.values: list[bytes] = []

    def produce(self, topic: str, key: bytes, value: bytes, **_: Any) -> None:
        self.values.append(value)

    def poll(self, _timeout: float) -> int:
        return 0


def test_an_object_takes_hints_and_keeps_the_key_s_name_as_its_file_name() -> None:
    producer = _Producer()
    submitter = Submitter(FleetSettings(), producer=cast(Producer, producer), s3=cast(Any, None))
    given = Hints(title="gold ring", keywords=["ring"])
    event = submitter.submit_object("shop", "rings/a b.jpg", hints=given, request=Request())
    assert event.hints == Hints(title="gold ring", keywords=["ring"], file_name="a b.jpg")
    assert event.image_id == f"rings-a-b.jpg-{_digits('rings/a b.jpg')}"
    named = submitter.submit_object("shop", "rings/c.jpg", hints=Hints(file_name="C.JPG"))
    assert named.hints.file_name == "C.JPG"  # a file name given is kept
    assert submitter.submit_object("shop", "d.jpg").hints == Hints(file_name="d.jpg")
    assert len(producer.values) == 3
