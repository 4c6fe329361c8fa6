"""Every metric pixelfleet exports. Names start with `pixelfleet_`; `stage` is the stage id."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

MESSAGES = Counter(
    "pixelfleet_messages_total",
    "Messages a stage finished, by outcome: ok, skipped, deferred (sent to itself to try "
    "later), rejected (bad input), failed (a crash or a bug).",
    ["stage", "outcome"],
)
DEAD_LETTERS = Counter(
    "pixelfleet_dead_letters_total",
    "Messages sent to the dead-letter topic, by reason class.",
    ["stage", "reason"],
)
RETRIES = Counter(
    "pixelfleet_batch_retries_total",
    "Batches aborted and retried after a transient failure, by kind.",
    ["stage", "kind"],
)
PROCESSING_SECONDS = Histogram(
    "pixelfleet_processing_seconds",
    "Time a stage function spent on one message.",
    ["stage"],
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
BATCH_SIZE = Histogram(
    "pixelfleet_batch_size",
    "Messages per committed batch.",
    ["stage"],
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500),
)
BATCH_SECONDS = Histogram(
    "pixelfleet_batch_seconds",
    "Wall time of one batch, from the first message in hand to the commit.",
    ["stage"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80),
)
TRANSACTION_SECONDS = Histogram(
    "pixelfleet_transaction_seconds",
    "Time from begin_transaction to a successful commit.",
    ["stage"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
CONSUMER_LAG = Gauge(
    "pixelfleet_consumer_lag",
    "End offset minus committed offset (minus the start, never committed on), per assigned "
    "partition of the stage's inbox.",
    ["stage", "topic", "partition"],
)
IN_FLIGHT = Gauge("pixelfleet_in_flight", "Messages in the batch being processed.", ["stage"])
BYTES = Counter(
    "pixelfleet_bytes_total",
    "Blob bytes read from and written to S3, by direction (in, out).",
    ["stage", "direction"],
)
ASSIGNED_PARTITIONS = Gauge(
    "pixelfleet_assigned_partitions", "Partitions this worker holds.", ["stage"]
)
REBALANCES = Counter(
    "pixelfleet_rebalances_total",
    "Partition assignment changes seen by this worker, by kind (assign, revoke, lost).",
    ["stage", "kind"],
)
RESTORE_MODEL = Gauge(
    "pixelfleet_restore_model_info",
    "1 for each model a restore worker has loaded, with its device, precision and loader.",
    ["stage", "model", "device", "precision", "source"],
)
RESTORE_BATCH_TILES = Histogram(
    "pixelfleet_restore_batch_tiles",
    "Tiles per model call; above 1 when tiles of several images or a large one batch.",
    ["stage", "model", "device"],
    buckets=(1, 2, 4, 8, 16, 32, 64),
)
RESTORE_SECONDS_PER_MEGAPIXEL = Histogram(
    "pixelfleet_restore_seconds_per_megapixel",
    "Restore time of one image over its input megapixels.",
    ["stage", "model", "device"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
RESTORE_TILES = Histogram(
    "pixelfleet_restore_tiles_per_image",
    "Tiles one image was cut into.",
    ["stage", "model"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
RESTORE_OUTCOMES = Counter(
    "pixelfleet_restore_outcomes_total",
    "Restore outcomes: denoised, upscaled, good_quality, kept_input, couldnt_denoise, "
    "couldnt_upscale.",
    ["stage", "outcome"],
)
FETCHES = Counter(
    "pixelfleet_fetch_total",
    "URL fetches by outcome (ok, refused, rejected, failed, deferred) and reason class "
    "(ssrf, http_404, timeout, too_large, not_an_image, rate_limited, ...).",
    ["stage", "outcome", "reason"],
)
FETCH_BYTES = Counter(
    "pixelfleet_fetch_bytes_total", "Body bytes downloaded by the fetch stage.", ["stage"]
)
FETCH_SECONDS = Histogram(
    "pixelfleet_fetch_seconds",
    "Time from the first connection to the last body byte of one fetch (redirects included).",
    ["stage"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
FETCH_IN_FLIGHT = Gauge(
    "pixelfleet_fetch_in_flight", "Downloads under way in this fetch process.", ["stage"]
)
FETCH_THROTTLED = Counter(
    "pixelfleet_fetch_throttled_total",
    "Fetches held back or deferred by politeness, by host rule (the configured host pattern, "
    "or `default`: never the host itself, whose number is unbounded) and cause (rate, "
    "concurrency, retry_after; process: the worker's own download slots, connections or "
    "name lookups were all in use, so the host was never asked).",
    ["stage", "host_rule", "cause"],
)

# The catalog service (`pixelfleet catalog`).
CATALOG_RECORDS_BEHIND = Gauge(
    "pixelfleet_catalog_records_behind",
    "Records the catalog replica has not applied yet, by view (table: its own partitions "
    "of the metadata topic; index: that whole topic's secondary indexes; submissions: the "
    "ingest topic's titles and keywords).",
    ["view"],
)
CATALOG_RECORDS_APPLIED = Counter(
    "pixelfleet_catalog_records_applied_total",
    "Metadata records applied, by view (table, index).",
    ["view"],
)
CATALOG_IMAGES = Gauge(
    "pixelfleet_catalog_images", "Images this replica's secondary indexes know of."
)
CATALOG_READY = Gauge(
    "pixelfleet_catalog_ready", "1 once the replica has caught up with the metadata topic."
)
CATALOG_REQUESTS = Counter(
    "pixelfleet_catalog_requests_total",
    "HTTP requests the catalog answered, by route (its template) and status code.",
    ["route", "code"],
)
CATALOG_REQUEST_SECONDS = Histogram(
    "pixelfleet_catalog_request_seconds",
    "Time to answer one HTTP request, by route template.",
    ["route"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)

# The notify worker (`pixelfleet notify`): webhooks, labelled by the subscription's name
# (`endpoint`), which the config file bounds; never by URL.
NOTIFY_DELIVERED = Counter(
    "pixelfleet_notify_delivered_total",
    "Webhook events a receiver accepted (2xx), by endpoint and event type.",
    ["endpoint", "event"],
)
NOTIFY_FAILED = Counter(
    "pixelfleet_notify_failed_total",
    "Failed delivery attempts, by endpoint and reason (http_500, timeout, connect, ssrf, "
    "breaker_open, ...); most are retried.",
    ["endpoint", "reason"],
)
NOTIFY_DEAD_LETTERS = Counter(
    "pixelfleet_notify_dead_letters_total",
    "Webhook events given up on and written to <prefix>.webhooks.dlq, by endpoint and reason "
    "(retries_exhausted, budget_exhausted, rejected, refused, backlog_full).",
    ["endpoint", "reason"],
)
NOTIFY_DROPPED = Counter(
    "pixelfleet_notify_dropped_total",
    "Events not sent because the receiver ended the subscription with HTTP 410.",
    ["endpoint"],
)
NOTIFY_BREAKER_STATE = Gauge(
    "pixelfleet_notify_breaker_state",
    "The endpoint's circuit breaker: 0 closed, 1 half-open (probing), 2 open (skipped).",
    ["endpoint"],
)
NOTIFY_DISABLED = Gauge(
    "pixelfleet_notify_subscription_disabled",
    "1 once the endpoint answered 410 Gone: no more events go there until a restart.",
    ["endpoint"],
)
NOTIFY_PENDING = Gauge(
    "pixelfleet_notify_pending", "Events waiting for or in delivery, per endpoint.", ["endpoint"]
)
NOTIFY_SECONDS = Histogram(
    "pixelfleet_notify_request_seconds",
    "Time of one delivery attempt that got an answer, by endpoint.",
    ["endpoint"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
