"""Benchmark cases: the services, the load each endpoint gets, and its ceilings."""

from dataclasses import dataclass, field

HOST = "127.0.0.1"
CEILING_PORT = 19099
DATABASE = "peripherals_bench"
SERVER_URL = "postgres://postgres@127.0.0.1:5432"
DATABASE_URL = f"{SERVER_URL}/{DATABASE}"

# Default load: wrk shares the two cores of the reference machine with the service, so
# two threads, and 32 connections (the concurrency the latency target is stated for).
THREADS = 2
CONNECTIONS = 32

# Per-run durations in seconds, and the length of the memory-flatness runs.
DURATIONS = {"quick": 2, "full": 12}
FLAT_SECONDS = {"quick": 10, "full": 60}

# Messages in one batched publish, events in one NDJSON request, samples in one metrics
# batch: the maximum the messaging service takes, and the size the targets are stated for.
BATCH = 1000
# The publish -> pull -> ack flow publishes and pulls in batches of this size.
FLOW_BATCH = 100
# Moderation workers per process (the UGC_WORKERS default), the concurrency of the
# job claim that the moderation flow is compared with.
MODERATION_WORKERS = 4
# The log pipeline's Postgres sink loads a delivery of up to 16 384 events as binary
# COPY, split over this many connections, so each loads up to this many events at once.
# pgbench cannot send COPY data, so its ceiling is a batched INSERT of the same size on
# as many clients.
LOG_SINK_WRITERS = 2
LOG_SINK_BATCH = 8192


@dataclass(frozen=True)
class Service:
    """One service binary and the settings it runs with during the benchmark."""

    key: str
    package: str
    binary: str
    prefix: str
    port: int
    # Tables emptied before every Postgres run of this service.
    tables: tuple
    # Settings beyond the defaults, each with the reason it is raised.
    settings: dict = field(default_factory=dict)
    # Whether the binary writes records to stdout (sent to /dev/null during runs).
    stdout_sink: bool = False


SERVICES = {
    "metrics": Service(
        "metrics", "metrics-collector", "metrics-collector", "METRICS_", 19081,
        ("metrics.buckets",),
    ),
    "logs": Service(
        "logs", "log-pipeline", "log-pipeline", "LOG_PIPELINE_", 19082,
        ("logs.events",),
        settings={
            "LOG_PIPELINE_QUEUE_SIZE": (
                "100000",
                "the default of 256 events is smaller than one 1000-event batch. 100 000 "
                "events are about 70 ms of ingest at full rate. That absorbs the moments "
                "when the busy cores leave a sink thread unscheduled but not a whole run, "
                "so the accepted rate is what the sinks sustain",
            ),
        },
        stdout_sink=True,
    ),
    "moderation": Service(
        "moderation", "ugc-worker", "ugc-worker", "UGC_", 19083,
        # The job counts go with the jobs: their difference is the queue's length.
        ("moderation.jobs", "moderation.decisions", "moderation.job_counts"),
        settings={
            "UGC_QUEUE_SIZE": (
                "1000000",
                "the default of 256 waiting jobs fills within milliseconds at full rate",
            ),
            "UGC_MAX_DECISIONS": (
                "1000000",
                "the default of 10 000 undelivered decisions fills when no consumer runs",
            ),
        },
    ),
    "notification": Service(
        "notification", "notification-bin", "notification", "NOTIFY_", 19084,
        ("notification.deliveries",),
    ),
    "orchestration": Service(
        "orchestration", "orchestrator", "orchestrator", "ORCHESTRATION_", 19090,
        ("orchestration.assignments",),
        settings={
            "ORCHESTRATION_MAX_ASSIGNMENTS": (
                "10000000",
                "the default of 100 000 assignments is reached within seconds of creates",
            ),
        },
    ),
    "content": Service(
        "content", "ugc-service", "ugc-service", "UGC_SERVICE_", 19091,
        ("content.items", "content.reviews"),
        settings={
            "UGC_SERVICE_MAX_ITEMS": (
                "10000000",
                "the default of 100 000 items is reached within seconds of creates",
            ),
        },
    ),
    "messaging": Service(
        "messaging", "messaging-service", "messaging-service", "MESSAGING_", 19092,
        ("messaging.messages", "messaging.publish_keys"),
        settings={
            "MESSAGING_MAX_MESSAGES": (
                "8000000",
                "the default of 100 000 stored messages is reached within one second of "
                "batched publishing. A full run on an idle two-core machine stored 333 000 "
                "messages/s at about 800 bytes of RSS each, so a 12 s run stores about 4 "
                "million. 8 million leaves room for a faster machine while staying within "
                "about 7 GiB",
            ),
            "MESSAGING_MAX_DELIVERIES": (
                "1000000",
                "the pull run leases for 1 s and pulls the same messages again; with the "
                "default of 5 they would move to the dead-letter topic",
            ),
        },
    ),
}


@dataclass(frozen=True)
class Load:
    """One wrk process: its script, its request and how many units a request carries."""

    script: str
    path: str
    method: str = "GET"
    # A file of the data directory sent as the body, or used by the script.
    body: str | None = None
    content_type: str = "application/json"
    threads: int = THREADS
    connections: int = CONNECTIONS
    # Further BENCH_* variables the script reads; values naming data files start with
    # "data:".
    env: tuple = ()
    # Units of work in one successful request: events, samples or messages in a batch.
    units: int = 1


@dataclass(frozen=True)
class PgCeiling:
    """A pgbench run of the SQL an endpoint runs, to compare the endpoint with."""

    key: str
    script: str
    description: str
    # pgbench -D variables.
    variables: tuple = ()
    # Rows one transaction writes or claims, so rows/s compares with units/s.
    units: int = 1
    # Clients; None means the endpoint's wrk connections.
    clients: int | None = None
    # SQL run after the tables are emptied and before pgbench starts.
    prefill_sql: str | None = None


@dataclass(frozen=True)
class Case:
    """One endpoint (or flow) of one service, run once per store."""

    key: str
    service: str
    endpoint: str
    load: Load
    # "single": one operation a request; "batch": `load.units` a request; "flow": a
    # producer and a consumer at once.
    kind: str = "single"
    unit: str = "requests"
    consumer: Load | None = None
    # What a flow's producer requests carry.
    produced_unit: str = "requests"
    # A function of data.py that loads data through the service before the run.
    prefill: str | None = None
    stores: tuple = ("memory", "postgres")
    pg_ceiling: str | None = None
    # SQL whose single number is read after a Postgres run, as (label, query).
    pg_probe: tuple | None = None
    note: str = ""


def static(path, method="GET", body=None, content_type="application/json", units=1,
           script="static.lua", threads=THREADS, connections=CONNECTIONS, env=()):
    """Builds the Load of one repeated request."""
    return Load(script, path, method, body, content_type, threads, connections, env, units)


def by_id(template, ids, method="GET", body=None):
    """Builds the Load of requests that cycle through the ids of a prefill."""
    env = (("BENCH_PATH_TEMPLATE", template), ("BENCH_IDS", f"data:{ids}"))
    return Load("by_id.lua", template.replace("{id}", "0"), method, body, env=env)


TOPIC = "bench"
FLOW_TOPIC = "bench-flow"

CASES = [
    # Metrics Collector.
    Case("metrics-ingest", "metrics", "POST /metrics/ingest (1 sample)",
         static("/metrics/ingest", "POST", "metrics_one.json")),
    Case("metrics-batch", "metrics", f"POST /metrics/ingest ({BATCH} samples)",
         static("/metrics/ingest", "POST", "metrics_batch.json", units=BATCH),
         kind="batch", unit="samples",
         note="300 series over 5 names and 3 labels; Postgres mode aggregates in memory "
              "and flushes once a second, so no statement runs per request"),
    Case("metrics-summary", "metrics", "GET /metrics/summary?namespace&name",
         static("/metrics/summary?namespace=game&name=latency_ms"),
         prefill="prefill_metrics",
         note="60 series match the filter"),
    # Log Pipeline.
    Case("logs-ingest", "logs", "POST /logs (1 event)",
         static("/logs", "POST", "logs_one.json")),
    Case("logs-batch", "logs", f"POST /logs (NDJSON, {BATCH} events)",
         static("/logs", "POST", "logs_batch.ndjson", "application/x-ndjson", units=BATCH),
         kind="batch", unit="events", pg_ceiling="logs-sink",
         pg_probe=("events stored", "SELECT count(*) FROM logs.events"),
         note="every event is INFO or above, so none is filtered"),
    Case("logs-recent", "logs", "GET /logs/recent?limit=100",
         static("/logs/recent?limit=100"), prefill="prefill_logs"),
    # UGC Worker.
    Case("jobs-submit", "moderation", "POST /jobs (1 KiB body)",
         Load("unique_id.lua", "/jobs", "POST",
              env=(("BENCH_BODY_TEMPLATE", "data:job_template.json"),
                   ("BENCH_TEXTS", "data:job_texts.txt"))),
         pg_ceiling="moderation-submit",
         note="10 000 banned terms; no consumer runs, so decisions accumulate"),
    Case("jobs-flow", "moderation", "POST /jobs -> GET /jobs/next",
         Load("unique_id.lua", "/jobs", "POST", threads=1, connections=16,
              env=(("BENCH_BODY_TEMPLATE", "data:job_template.json"),
                   ("BENCH_TEXTS", "data:job_texts.txt"))),
         kind="flow", unit="decisions", produced_unit="jobs",
         # The consumers wait up to 1 s for a decision, as a client of the long poll
         # would, instead of polling an empty queue in a loop.
         consumer=Load("jobs_consume.lua", "/jobs/next", threads=1, connections=16,
                       env=(("BENCH_WAIT_MS", "1000"),)),
         pg_ceiling="moderation-claim",
         note="producers: 16 connections; consumers: 16 connections fetching "
              "GET /jobs/next?wait_ms=1000"),
    # Notification Service.
    Case("notify", "notification", "POST /notify (in_app)",
         static("/notify", "POST", "notify.json"), pg_ceiling="notification-notify"),
    Case("notify-recent", "notification", "GET /notifications/recent?limit=50",
         static("/notifications/recent?limit=50"), prefill="prefill_notifications"),
    # Orchestrator.
    Case("assignments-create", "orchestration", "POST /assignments",
         static("/assignments", "POST", "assignment.json"),
         pg_ceiling="orchestration-insert"),
    Case("assignments-get", "orchestration", "GET /assignments/{id}",
         by_id("/assignments/{id}", "assignment_ids.txt"),
         prefill="prefill_assignments", pg_ceiling="orchestration-get"),
    Case("assignments-patch", "orchestration", "PATCH /assignments/{id}",
         by_id("/assignments/{id}", "assignment_ids.txt", "PATCH", "assignment_patch.json"),
         prefill="prefill_assigned",
         note="assigned -> assigned with a new message, which is always legal"),
    Case("assignments-list", "orchestration", "GET /assignments?agent_id&page_size=20",
         static("/assignments?agent_id=agent-3&page_size=20"),
         prefill="prefill_assignments", note="100 of the 1000 assignments match"),
    # UGC Service.
    Case("content-create", "content", "POST /content",
         Load("unique_id.lua", "/content", "POST",
              env=(("BENCH_BODY_TEMPLATE", "data:content_template.json"),)),
         pg_ceiling="content-insert"),
    Case("content-get", "content", "GET /content/{id}",
         by_id("/content/{id}", "content_ids.txt"),
         prefill="prefill_content", pg_ceiling="content-get"),
    Case("content-review", "content", "POST /content/{id}/review",
         by_id("/content/{id}/review", "content_ids.txt", "POST", "content_review.json"),
         prefill="prefill_approved",
         note="approved -> approved with a new reason, which is always legal"),
    Case("content-list", "content", "GET /content?tenant_id&page_size=20",
         static("/content?tenant_id=tenant-3&page_size=20"),
         prefill="prefill_content", note="100 of the 1000 items match"),
    # Messaging Service.
    Case("publish", "messaging", "POST /topics/{t}/messages",
         static(f"/topics/{TOPIC}/messages", "POST", "message_one.json"),
         pg_ceiling="messaging-insert-one", note="256-byte payload, 2 attributes"),
    Case("publish-batch", "messaging", f"POST /topics/{{t}}/messages:batch ({BATCH})",
         static(f"/topics/{TOPIC}/messages:batch", "POST", "message_batch.json", units=BATCH),
         kind="batch", unit="messages", pg_ceiling="messaging-insert-many"),
    Case("pull", "messaging", "GET /topics/{t}/messages?limit=10",
         static(f"/topics/{TOPIC}/messages?limit=10&visibility_timeout_s=1",
                script="pull_count.lua"),
         unit="messages", prefill="prefill_messages", pg_ceiling="messaging-claim",
         note="200 000 (memory) or 50 000 (Postgres) messages, leased for 1 s so they are "
              "pulled again once it ends"),
    Case("publish-pull-ack", "messaging", "publish -> pull -> ack",
         static(f"/topics/{FLOW_TOPIC}/messages:batch", "POST", "message_flow_batch.json",
                units=FLOW_BATCH, threads=1, connections=16),
         kind="flow", unit="messages", produced_unit="messages",
         consumer=Load("messages_consume.lua", "/", threads=1, connections=16,
                       env=(("BENCH_TOPIC", FLOW_TOPIC),
                            ("BENCH_PULL_LIMIT", str(FLOW_BATCH)),
                            ("BENCH_WAIT_MS", "100"))),
         note=f"producers: 16 connections publishing batches of {FLOW_BATCH}; consumers: "
              f"16 connections pulling up to {FLOW_BATCH} and acknowledging each pull "
              "with one batch ack"),
]

PG_CEILINGS = {
    ceiling.key: ceiling
    for ceiling in [
        PgCeiling(
            "messaging-insert-one", "messaging_insert_one.sql", "messaging INSERT_ONE",
            variables=(("topic", TOPIC), ("tenant", "tenant-1"), ("project", "project-1"),
                       ("attributes", '{"kind":"event","source":"bench"}'),
                       ("payload", "data:payload_b64")),
        ),
        PgCeiling(
            "messaging-insert-many", "messaging_insert_many.sql",
            f"messaging batch insert of {BATCH} rows",
            variables=(("topic", TOPIC), ("tenant", "tenant-1"), ("project", "project-1"),
                       ("attributes", '{"kind":"event","source":"bench"}'),
                       ("payload", "data:payload_b64"), ("batch", str(BATCH))),
            units=BATCH,
        ),
        PgCeiling(
            "messaging-claim", "messaging_claim.sql", "messaging CLAIM of 10 for 1 s",
            variables=(("topic", TOPIC), ("limit", "10"), ("lease_s", "1"),
                       ("max_deliveries", "1000000")),
            units=10,
            prefill_sql=(
                "INSERT INTO messaging.messages (message_id, topic, tenant_id, project_id, "
                "message_key, priority, published_at, attributes, payload, visible_at, "
                "topic_key, tenant_key, project_key) "
                f"SELECT bench.uuid_v7(), '{TOPIC}', 'tenant-' || (i % 10), 'project-1', '', "
                "1, statement_timestamp(), '{\"kind\":\"event\"}', "
                "decode(repeat('ab', 256), 'hex'), statement_timestamp(), "
                f"bench.messaging_key('{TOPIC}'), bench.messaging_key('tenant-' || (i % 10)), "
                "bench.messaging_key('project-1') "
                "FROM generate_series(1, 50000) AS i; ANALYZE messaging.messages;"
            ),
        ),
        PgCeiling(
            "orchestration-insert", "orchestration_insert.sql", "orchestration insert",
            variables=(("agent", "agent-1"), ("workload", "workload-1"),
                       ("tenant", "tenant-1"), ("project", "project-1"),
                       ("metadata", '{"region":"eu-west","zone":"b"}')),
        ),
        PgCeiling(
            "orchestration-get", "orchestration_get.sql", "orchestration read by id",
            variables=(("id", "00000000-0000-7000-8000-000000000001"),),
            prefill_sql=(
                "INSERT INTO orchestration.assignments (assignment_id, agent_id, "
                "workload_id, tenant_id, project_id, status, status_message, metadata, "
                "created_at, updated_at) "
                "SELECT ('00000000-0000-7000-8000-' || lpad(to_hex(i), 12, '0'))::uuid, "
                "'agent-' || (i % 10), 'workload-' || i, 'tenant-1', 'project-1', "
                "'pending', 'queued', '{\"region\":\"eu-west\",\"zone\":\"b\"}', "
                "statement_timestamp(), statement_timestamp() "
                "FROM generate_series(1, 1000) AS i; ANALYZE orchestration.assignments;"
            ),
        ),
        PgCeiling(
            "content-insert", "content_insert.sql", "content insert",
            variables=(("nonce", "pg"), ("tenant", "tenant-1"), ("project", "project-1"),
                       ("filename", "avatar.png"), ("mime_type", "image/png"),
                       ("size_bytes", "52431"),
                       ("labels", '{"kind":"avatar","origin":"upload"}')),
        ),
        PgCeiling(
            "content-get", "content_get.sql", "content read by id",
            variables=(("id", "bench-get-1"),),
            prefill_sql=(
                "INSERT INTO content.items (content_id, tenant_id, project_id, filename, "
                "mime_type, size_bytes, state, reason, labels, attributes, submitted_at, "
                "updated_at) "
                "SELECT 'bench-get-' || i, 'tenant-' || (i % 10), 'project-1', 'avatar.png', "
                "'image/png', 52431, 'pending', '', '{\"kind\":\"avatar\"}', '{}', "
                "statement_timestamp(), statement_timestamp() "
                "FROM generate_series(1, 1000) AS i; ANALYZE content.items;"
            ),
        ),
        PgCeiling(
            "notification-notify", "notification_notify.sql",
            "notification reserve and mark sent",
            variables=(("recipient", "player-1"),
                       ("body", "Hello Ada, welcome to CassandraNet!")),
        ),
        PgCeiling(
            "moderation-submit", "moderation_submit.sql",
            "moderation submit (advisory lock, count, insert)",
            variables=(("nonce", "pg"), ("author", "author-1"),
                       ("body", "data:job_body.txt"), ("queue_size", "1000000")),
        ),
        PgCeiling(
            "moderation-claim", "moderation_claim.sql",
            f"moderation job claim, {MODERATION_WORKERS} clients",
            variables=(("lease_s", "1"),),
            clients=MODERATION_WORKERS,
            prefill_sql=(
                "INSERT INTO moderation.jobs (content_id, author_id, body, submitted) "
                "SELECT 'prefill-' || i, 'author-1', repeat('lorem ipsum ', 85), "
                "statement_timestamp() FROM generate_series(1, 20000) AS i; "
                "ANALYZE moderation.jobs;"
            ),
        ),
        PgCeiling(
            "logs-sink", "logs_insert_batch.sql",
            f"log sink insert of {LOG_SINK_BATCH} events, {LOG_SINK_WRITERS} clients",
            variables=(("origin", "00000000-0000-7000-8000-00000000000a"),
                       ("source", "api"),
                       ("message", "request served in 12 ms with status 200 for player 42"),
                       ("fields", '{"request_id":"r-1","region":"eu-west"}'),
                       ("batch", str(LOG_SINK_BATCH))),
            units=LOG_SINK_BATCH,
            clients=LOG_SINK_WRITERS,
        ),
    ]
}

# Endpoints run for a full-length stretch on the memory store while RSS is sampled every
# second. Each keeps bounded state by design (fixed series, rings, a drained queue), so
# growth would point at a leak.
FLAT_CASES = {
    "quick": ["metrics-ingest"],
    "full": ["metrics-ingest", "logs-batch", "notify", "assignments-get"],
}
