"""The notify worker refuses to start on a destination the SSRF rules refuse: the same
rules, and the same code, as the fetch stage's. Proven on addresses; nothing connects."""

from __future__ import annotations

import pytest

from streams.config.notify import NotifySettings, WebhookSubscription
from streams.config.settings import FleetSettings
from streams.notify.worker import NotifySetupError, NotifyWorker


def _settings(url: str, **notify: object) -> FleetSettings:
    sub = WebhookSubscription(name="hook", url=url, secret="s")  # type: ignore[arg-type]
    section = NotifySettings.model_validate({"subscriptions": [sub], **notify})
    return FleetSettings(notify=section)


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        ("http://127.0.0.1/hook", "loopback"),
        ("http://localhost/hook", "loopback"),
        ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
        ("http://10.1.2.3/hook", "private"),
        ("http://[::ffff:192.168.0.1]/hook", "private"),
        ("http://0x7f.1/hook", "loopback"),
        ("https://hooks.example.com:8443/in", "port 8443 is not allowed"),
        ("ftp://hooks.example.com/in", "scheme ftp"),
        ("http://user:pw@hooks.example.com/in", "credentials"),
    ],
)
def test_a_refused_destination_stops_the_start(url: str, rule: str) -> None:
    with pytest.raises(NotifySetupError, match="subscription hook") as info:
        NotifyWorker(_settings(url))
    assert rule in str(info.value)


def test_loopback_is_reached_only_where_the_policy_admits_it_as_the_tests_do() -> None:
    settings = _settings("http://127.0.0.1:8080/hook", allowed_ports=[8080])
    with pytest.raises(NotifySetupError, match="loopback"):
        NotifyWorker(settings)
    admitted = _settings(
        "http://127.0.0.1:8080/hook", allowed_ports=[8080], allow_networks=["127.0.0.0/8"]
    )
    worker = NotifyWorker(admitted)
    assert [e.name for e in worker.endpoints] == ["hook"]
    worker.fetcher.close()


def test_a_bad_network_rule_or_a_missing_secret_stops_the_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(NotifySetupError, match="allow_networks"):
        NotifyWorker(_settings("https://hooks.example.com/", allow_networks=["10.1.2.3/16"]))
    monkeypatch.delenv("HOOK_SECRET", raising=False)
    sub = WebhookSubscription(
        name="hook", url="https://hooks.example.com/", secret_env="HOOK_SECRET"
    )
    settings = FleetSettings(notify=NotifySettings(subscriptions=(sub,)))
    with pytest.raises(NotifySetupError, match="HOOK_SECRET"):
        NotifyWorker(settings)


def test_subscriptions_on_one_host_each_get_a_connection() -> None:
    subs = [
        WebhookSubscription(name=f"hook{n}", url=f"https://hooks.example.com/{n}", secret="s")  # type: ignore[arg-type]
        for n in range(3)
    ]
    worker = NotifyWorker(FleetSettings(notify=NotifySettings(subscriptions=subs)))
    # One pool per host: three endpoints there must not queue for one connection.
    assert worker.fetcher._per_host == 3
