"""`pixelfleet webhooks list|redrive` against the real broker and real receivers on
127.0.0.1: each given-up event reaches its fixed receiver once, signed, with its own id."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
from click.testing import CliRunner, Result

from processors import webhooks
from streams.cli.webhooks import webhooks as webhooks_cli
from streams.config.settings import CONFIG_ENV, FleetSettings
from streams.config.topics import Topics
from streams.io import clients
from streams.notify.worker import NotifyWorker
from streams.ops import ledger
from streams.ops.webhook_redrive import WebhookMark
from tests.conftest import Stack
from tests.integration.streams.notify.kit import SECRET, done_record, publish
from tests.integration.streams.notify.receivers import Receiver, always, ok

GIVEN_UP = "2026-12-02T10:00:0{}.000Z"


def _letter(image_id: str, endpoint: str, second: int) -> bytes:
    """What the notify worker writes for an event `endpoint` never took."""
    event = webhooks.from_done(done_record(image_id))
    assert event is not None
    return webhooks.dead_letter(
        event,
        endpoint=endpoint,
        reason="retries_exhausted",
        last_status=503,
        last_error="the receiver answered 503",
        attempts=8,
        given_up_at=GIVEN_UP.format(second),
    )


def _config(
    tmp_path: Path,
    stack: Stack,
    prefix: str,
    receivers: dict[str, Receiver],
    secret_env: dict[str, str] | None = None,
) -> Path:
    """The fleet's config file; a subscription named in `secret_env` reads its secret from
    that variable, the others have it inline."""
    ports = ", ".join(str(r.port) for r in receivers.values())
    by_env = secret_env or {}

    def secret(name: str) -> str:
        if name in by_env:
            return f'secret_env = "{by_env[name]}"\n'
        return f'secret = "{SECRET.decode()}"\n'

    subs = "".join(
        f'\n[[notify.subscriptions]]\nname = "{name}"\nurl = "{r.url}"\n{secret(name)}'
        for name, r in receivers.items()
    )
    path = tmp_path / "fleet.toml"
    path.write_text(
        f'topic_prefix = "{prefix}"\n[kafka]\nbootstrap = "{stack.kafka.bootstrap}"\n'
        f'[notify]\nallow_networks = ["127.0.0.0/8"]\nallowed_ports = [{ports}]\n'
        f"connect_timeout_s = 0.5\nread_timeout_s = 1.0\nrequest_timeout_s = 1.0\n{subs}"
    )
    return path


def _run(config: Path, *args: str, env: dict[str, str | None] | None = None) -> Result:
    # The file alone says where the fleet is: variables of the test's own environment
    # (which outrank a config file) are cleared.
    env = {
        CONFIG_ENV: str(config),
        "PIXELFLEET_TOPIC_PREFIX": None,
        "PIXELFLEET_KAFKA_BOOTSTRAP": None,
        **(env or {}),
    }
    result = CliRunner().invoke(webhooks_cli, list(args), env=env)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def test_redrive_delivers_each_letter_once_to_its_fixed_receiver(
    stack: Stack, prefix: str, tmp_path: Path
) -> None:
    with Receiver(SECRET, ok) as crm, Receiver(SECRET, always(500)) as audit:
        config = _config(tmp_path, stack, prefix, {"crm": crm, "audit": audit})
        NotifyWorker(FleetSettings(kafka=stack.kafka, topic_prefix=prefix)).ensure_dlq_topic()
        dlq = Topics(prefix).webhooks_dlq
        letters = [
            *[(f"img-{i}", "crm", i) for i in range(3)],
            *[(f"img-{i}", "audit", i) for i in range(3, 8)],
            ("img-9", "retired", 9),
        ]
        publish(stack, [(dlq, img, _letter(img, name, s)) for img, name, s in letters])

        listed = _run(config, "list")
        assert listed.exit_code == 0, listed.output
        lines = listed.output.splitlines()
        assert lines[0] == "webhook dead letters: 9 (0 delivered by a redrive)"
        assert "      5  audit                retries_exhausted" in lines
        assert "      3  crm                  retries_exhausted" in lines

        dry = _run(config, "redrive", "--endpoint", "crm", "--dry-run")
        assert "webhooks redrive: 3 would deliver, 0 already delivered, 0 not delivered" in (
            dry.output
        )
        assert crm.snapshot() == []  # a dry run sends nothing

        first = _run(config, "redrive")
        assert first.exit_code == 2, first.output
        redrive_id = first.output.splitlines()[0].split()[1]
        # crm: each event once, signed, with the id and body the worker would have sent.
        expected = {
            e.event_id: json.loads(e.body)
            for e in (webhooks.from_done(done_record(f"img-{i}")) for i in range(3))
            if e is not None
        }
        got = crm.snapshot()
        assert {r.event_id: r.body for r in got} == expected and len(got) == 3
        assert all(r.signature_ok and r.event_type == "done" for r in got)
        # audit still fails: three tries, then its other two letters wait for the next run.
        assert len(audit.snapshot()) == 3
        assert first.output.count("the receiver answered 500") == 3
        assert first.output.count("left for the next run") == 2
        assert "-> retired: no subscription of that name" in first.output
        assert "webhooks redrive: 3 delivered, 0 already delivered, 6 not delivered" in (
            first.output
        )

        again = _run(config, "redrive", "--endpoint", "crm", "--redrive-id", redrive_id)
        assert "webhooks redrive: 0 delivered, 3 already delivered, 0 not delivered" in (
            again.output
        )
        assert len(crm.snapshot()) == 3
        typo = _run(config, "redrive", "--endpoint", "crn")
        assert typo.exit_code == 1 and "no webhook dead letter has the endpoint 'crn'" in (
            typo.output
        )
        reason = _run(config, "redrive", "--reason", "retries_exhasuted")
        assert reason.exit_code == 1 and "those on the DLQ: retries_exhausted" in reason.output
        after = _run(config, "list", "--endpoint", "crm").output
        assert after.splitlines()[0] == "webhook dead letters: 3 (3 delivered by a redrive)"
        assert after.count(f"(delivered by {redrive_id})") == 3


def test_a_secret_missing_here_stops_the_redrive_before_anything_is_sent(
    stack: Stack, prefix: str, tmp_path: Path
) -> None:
    with Receiver(SECRET, ok) as crm, Receiver(SECRET, ok) as audit:
        # crm's letters come first and its secret is inline; audit's is in a variable that
        # this shell lacks, as an operator's shell typically does.
        config = _config(
            tmp_path, stack, prefix, {"crm": crm, "audit": audit}, {"audit": "AUDIT_HOOK_SECRET"}
        )
        NotifyWorker(FleetSettings(kafka=stack.kafka, topic_prefix=prefix)).ensure_dlq_topic()
        dlq = Topics(prefix).webhooks_dlq
        letters = [("img-0", "crm", 0), ("img-1", "crm", 1), ("img-2", "audit", 2)]
        publish(stack, [(dlq, img, _letter(img, name, s)) for img, name, s in letters])
        unset: dict[str, str | None] = {"AUDIT_HOOK_SECRET": None}

        for args in (["--dry-run"], []):
            refused = _run(config, "redrive", *args, env=unset)
            assert refused.exit_code == 1, refused.output
            said = [line for line in refused.output.splitlines() if line.startswith("error:")]
            assert said == [
                "error: subscription audit: the variable AUDIT_HOOK_SECRET (its secret_env) "
                "is unset or empty; set AUDIT_HOOK_SECRET to the signing key; nothing delivered"
            ]
            assert "Traceback" not in refused.output
        assert crm.snapshot() == [] and audit.snapshot() == []  # not even crm's letters

        secret: dict[str, str | None] = {"AUDIT_HOOK_SECRET": SECRET.decode()}
        sent = _run(config, "redrive", env=secret)
        assert sent.exit_code == 0, sent.output
        assert "webhooks redrive: 3 delivered" in sent.output
        assert len(crm.delivered()) == 2 and len(audit.delivered()) == 1
        assert all(r.signature_ok for r in [*crm.snapshot(), *audit.snapshot()])


def test_a_mark_of_another_event_at_the_same_position_is_not_a_delivery(
    stack: Stack, prefix: str, tmp_path: Path
) -> None:
    """webhooks.dlq deleted and made again starts at offset 0: the marks of the old topic's
    letters must not hide the new ones that took their positions."""
    with Receiver(SECRET, ok) as crm:
        config = _config(tmp_path, stack, prefix, {"crm": crm})
        settings = FleetSettings(kafka=stack.kafka, topic_prefix=prefix)
        NotifyWorker(settings).ensure_dlq_topic()
        ledger.ensure_ledgers(settings)
        producer = clients.producer(stack.kafka)
        old = WebhookMark(
            redrive_id="r-old", event_id="evt_" + "0" * 32, endpoint="crm", status=204, at="x"
        )
        producer.produce(
            Topics(prefix).webhooks_redriven, key=b"0:0", value=msgspec.json.encode(old)
        )
        producer.produce(
            Topics(prefix).webhooks_dlq, value=_letter("img-new", "crm", 0), partition=0
        )
        assert producer.flush(30) == 0

        listed = _run(config, "list")
        assert listed.output.splitlines()[0] == "webhook dead letters: 1 (0 delivered by a redrive)"
        assert "r-old" not in listed.output
        sent = _run(config, "redrive")
        assert "webhooks redrive: 1 delivered, 0 already delivered, 0 not delivered" in (
            sent.output
        ), sent.output
        assert [r.body["image_id"] for r in crm.snapshot()] == ["img-new"]
