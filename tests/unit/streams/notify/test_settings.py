"""The `notify` section: subscriptions from the config file, secrets inline or by variable,
and the mistakes refused when the process starts."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from streams.config.notify import NotifySettings, WebhookSubscription
from streams.config.settings import FleetSettings

TOML = """
[notify]
allow_networks = ["10.20.0.0/16"]
breaker_failures = 3

[[notify.subscriptions]]
name = "crm"
url = "https://hooks.example.com/pixelfleet"
secret_env = "CRM_WEBHOOK_SECRET"
events = ["done", "duplicate"]
categories = ["rings"]

[[notify.subscriptions]]
name = "audit"
url = "https://audit.example.com/in"
secret = "inline-secret"
"""


def test_subscriptions_come_from_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "fleet.toml"
    path.write_text(TOML)
    monkeypatch.setenv("PIXELFLEET_CONFIG", str(path))
    monkeypatch.setenv("CRM_WEBHOOK_SECRET", "from-the-environment")
    notify = FleetSettings().notify
    crm, audit = notify.subscriptions
    assert (crm.name, crm.events, crm.categories) == ("crm", ("done", "duplicate"), ("rings",))
    assert crm.secret_bytes() == b"from-the-environment"
    assert audit.events == ("done", "rejected", "duplicate") and audit.categories == ()
    assert audit.secret_bytes() == b"inline-secret"
    assert notify.breaker_failures == 3 and notify.allow_networks == ("10.20.0.0/16",)
    assert "inline-secret" not in repr(notify)


def test_the_same_in_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text(
        "notify:\n"
        "  subscriptions:\n"
        "    - {name: ops, url: 'https://ops.example.com/h', secret: x, events: [rejected]}\n"
    )
    monkeypatch.setenv("PIXELFLEET_CONFIG", str(path))
    (ops,) = FleetSettings().notify.subscriptions
    assert ops.events == ("rejected",)


@pytest.mark.parametrize(
    "fields",
    [
        {"name": "a", "url": "https://x.example"},  # no secret at all
        {"name": "a", "url": "https://x.example", "secret": "s", "secret_env": "S"},
        {"name": "A b", "url": "https://x.example", "secret": "s"},
        {"name": "a", "url": "https://x.example", "secret": "s", "events": ["finished"]},
        {"name": "a", "url": "https://x.example", "secret": "s", "events": []},
        {"name": "a", "url": "https://x.example", "secret": "s", "secrett": "typo"},
    ],
)
def test_a_bad_subscription_is_refused(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        WebhookSubscription.model_validate(fields)


def test_names_are_unique_and_an_unset_secret_variable_is_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sub = {"name": "a", "url": "https://x.example", "secret": "s"}
    with pytest.raises(ValidationError, match="unique"):
        NotifySettings.model_validate({"subscriptions": [sub, sub]})
    monkeypatch.delenv("NO_SUCH_SECRET", raising=False)
    by_env = WebhookSubscription(name="b", url="https://x.example", secret_env="NO_SUCH_SECRET")
    with pytest.raises(ValueError, match="NO_SUCH_SECRET"):
        by_env.secret_bytes()


def test_an_empty_secret_says_which_setting_to_mend(monkeypatch: pytest.MonkeyPatch) -> None:
    inline = WebhookSubscription(name="c", url="https://x.example", secret="")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="subscription c: secret is empty") as said:
        inline.secret_bytes()
    assert "None" not in str(said.value) and "$" not in str(said.value)
    monkeypatch.setenv("EMPTY_SECRET", "")
    by_env = WebhookSubscription(name="d", url="https://x.example", secret_env="EMPTY_SECRET")
    with pytest.raises(ValueError, match="set EMPTY_SECRET to the signing key"):
        by_env.secret_bytes()
