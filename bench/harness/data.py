"""Request bodies, banned terms and prefills: everything the runs send, made reproducibly."""

import base64
import http.client
import json
import random
from pathlib import Path

from cases import BATCH, FLOW_BATCH, HOST, TOPIC

# Seeded so every run sends the same bodies.
SEED = 20261204
TERM_COUNT = 10_000
JOB_TEXTS = 256
JOB_BODY_BYTES = 1024
# Jobs whose body contains one banned term: one in FLAGGED_EVERY.
FLAGGED_EVERY = 8
PREFILL_ITEMS = 1000
# Messages published before a pull run, per store. Pulls lease them for 1 s, so this caps
# the messages/s a pull run can reach; the memory store pulls fastest.
PREFILL_MESSAGES = {"memory": 200_000, "postgres": 50_000}

METRIC_NAMES = ["latency_ms", "bytes_sent", "queue_depth", "error_count", "cpu_percent"]
ROUTES = [f"/api/v1/resource{index}" for index in range(10)]
METHODS = ["GET", "POST"]
REGIONS = ["eu-west", "us-east", "ap-south"]


def write_json(path, value):
    path.write_text(json.dumps(value, separators=(",", ":")) + "\n")


def metric_sample(rng, index):
    """Returns sample `index` of a batch; 5 names x 10 routes x 2 methods x 3 regions."""
    return {
        "namespace": "game",
        "name": METRIC_NAMES[index % 5],
        "value": round(rng.uniform(0.5, 500.0), 3),
        "labels": {
            "route": ROUTES[(index // 5) % 10],
            "method": METHODS[(index // 50) % 2],
            "region": REGIONS[(index // 100) % 3],
        },
    }


def log_event(rng, index):
    return {
        "source": f"api-{index % 5}",
        "level": ["INFO", "INFO", "WARN", "ERROR"][index % 4],
        "message": f"request {index} served in {rng.randint(1, 900)} ms with status 200",
        "fields": {"request_id": f"r-{index}", "region": REGIONS[index % 3]},
    }


def message(payload):
    return {
        "tenant_id": "tenant-1",
        "project_id": "project-1",
        "payload_base64": payload,
        "attributes": {"kind": "event", "source": "bench"},
    }


def make_word(rng, low, high):
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(low, high)))


def job_texts(rng, terms):
    """Returns JOB_TEXTS bodies of about JOB_BODY_BYTES bytes; every FLAGGED_EVERY-th one
    contains one banned term."""
    vocabulary = [make_word(rng, 2, 9) for _ in range(2000)]
    texts = []
    for index in range(JOB_TEXTS):
        words = []
        while sum(len(word) + 1 for word in words) < JOB_BODY_BYTES:
            words.append(rng.choice(vocabulary))
        if index % FLAGGED_EVERY == 0:
            words[len(words) // 2] = rng.choice(terms)
        texts.append(" ".join(words)[:JOB_BODY_BYTES])
    return texts


def generate(data_dir: Path):
    """Writes every body and input file the cases name into `data_dir`."""
    data_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(SEED)

    write_json(data_dir / "metrics_one.json", {
        "namespace": "game", "name": "latency_ms", "value": 12.5,
        "labels": {"route": "/api/v1/resource1", "method": "GET", "region": "eu-west"},
    })
    write_json(data_dir / "metrics_batch.json", [metric_sample(rng, i) for i in range(BATCH)])

    write_json(data_dir / "logs_one.json", log_event(rng, 0))
    lines = [json.dumps(log_event(rng, i), separators=(",", ":")) for i in range(BATCH)]
    (data_dir / "logs_batch.ndjson").write_text("\n".join(lines) + "\n")

    # Terms of 8 to 14 letters, so a random body rarely contains one by chance.
    terms = sorted({make_word(rng, 8, 14) for _ in range(TERM_COUNT * 2)})[:TERM_COUNT]
    rng.shuffle(terms)
    (data_dir / "banned_terms.txt").write_text("\n".join(terms) + "\n")
    texts = job_texts(rng, terms)
    (data_dir / "job_texts.txt").write_text("\n".join(json.dumps(text) for text in texts) + "\n")
    (data_dir / "job_body.txt").write_text(texts[1])
    (data_dir / "job_template.json").write_text(
        '{"content_id":"{id}","author_id":"author-1","body":{text}}\n')

    write_json(data_dir / "notify.json", {
        "channel": "in_app", "recipient": "player-1", "template": "welcome_email",
        "data": {"Name": "Ada"},
    })

    write_json(data_dir / "assignment.json", {
        "agent_id": "agent-1", "workload_id": "workload-1", "tenant_id": "tenant-1",
        "project_id": "project-1", "metadata": {"region": "eu-west", "zone": "b"},
    })
    write_json(data_dir / "assignment_patch.json",
               {"status": "assigned", "status_message": "running on node 7"})

    (data_dir / "content_template.json").write_text(json.dumps({
        "content_id": "{id}", "tenant_id": "tenant-1", "project_id": "project-1",
        "filename": "avatar.png", "mime_type": "image/png", "size_bytes": 52431,
        "labels": {"kind": "avatar", "origin": "upload"},
    }, separators=(",", ":")) + "\n")
    write_json(data_dir / "content_review.json",
               {"state": "approved", "reason": "checked by a moderator", "reviewer": "mod-1"})

    payload = base64.b64encode(bytes(rng.getrandbits(8) for _ in range(256))).decode()
    (data_dir / "payload_b64").write_text(payload)
    write_json(data_dir / "message_one.json", message(payload))
    write_json(data_dir / "message_batch.json", {"messages": [message(payload)] * BATCH})
    write_json(data_dir / "message_flow_batch.json",
               {"messages": [message(payload)] * FLOW_BATCH})


class Client:
    """A keep-alive HTTP client for prefills; any status but the expected one stops the run."""

    def __init__(self, port):
        self.connection = http.client.HTTPConnection(HOST, port, timeout=30)

    def send(self, method, path, body=None, content_type="application/json", expect=(200,)):
        headers = {"Content-Type": content_type} if body is not None else {}
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        self.connection.request(method, path, body=body, headers=headers)
        response = self.connection.getresponse()
        text = response.read()
        if response.status not in expect:
            raise RuntimeError(
                f"prefill {method} {path} returned {response.status}, expected {expect}: "
                f"{text[:300]!r}")
        return json.loads(text) if text else None

    def close(self):
        self.connection.close()


def prefill_metrics(client, data_dir, nonce, store):
    body = (data_dir / "metrics_batch.json").read_bytes()
    for _ in range(3):
        client.send("POST", "/metrics/ingest", body, expect=(202,))


def prefill_logs(client, data_dir, nonce, store):
    body = (data_dir / "logs_batch.ndjson").read_bytes()
    client.send("POST", "/logs", body, "application/x-ndjson", expect=(202,))


def prefill_notifications(client, data_dir, nonce, store):
    body = (data_dir / "notify.json").read_bytes()
    for _ in range(200):
        client.send("POST", "/notify", body, expect=(202,))


def prefill_assignments(client, data_dir, nonce, store):
    """Creates PREFILL_ITEMS assignments over 10 agents and writes their ids."""
    ids = []
    for index in range(PREFILL_ITEMS):
        created = client.send("POST", "/assignments", {
            "agent_id": f"agent-{index % 10}", "workload_id": f"workload-{index}",
            "tenant_id": "tenant-1", "project_id": "project-1",
            "metadata": {"region": "eu-west", "zone": "b"},
        }, expect=(201,))
        ids.append(created["assignment_id"])
    (data_dir / "assignment_ids.txt").write_text("\n".join(ids) + "\n")
    return ids


def prefill_assigned(client, data_dir, nonce, store):
    """Creates the assignments and moves each to assigned, so PATCH assigned -> assigned
    never conflicts."""
    for assignment_id in prefill_assignments(client, data_dir, nonce, store):
        client.send("PATCH", f"/assignments/{assignment_id}", {"status": "assigned"})


def prefill_content(client, data_dir, nonce, store):
    """Creates PREFILL_ITEMS items over 10 tenants and writes their ids."""
    ids = []
    for index in range(PREFILL_ITEMS):
        content_id = f"prefill-{nonce}-{index}"
        client.send("POST", "/content", {
            "content_id": content_id, "tenant_id": f"tenant-{index % 10}",
            "project_id": "project-1", "filename": "avatar.png", "mime_type": "image/png",
            "size_bytes": 52431, "labels": {"kind": "avatar"},
        }, expect=(201,))
        ids.append(content_id)
    (data_dir / "content_ids.txt").write_text("\n".join(ids) + "\n")
    return ids


def prefill_approved(client, data_dir, nonce, store):
    """Creates the items and approves each, so reviews approved -> approved never
    conflict."""
    for content_id in prefill_content(client, data_dir, nonce, store):
        client.send("POST", f"/content/{content_id}/review", {"state": "approved"})


def prefill_messages(client, data_dir, nonce, store):
    body = (data_dir / "message_batch.json").read_bytes()
    for _ in range(PREFILL_MESSAGES[store] // BATCH):
        client.send("POST", f"/topics/{TOPIC}/messages:batch", body, expect=(201,))


PREFILLS = {
    "prefill_metrics": prefill_metrics,
    "prefill_logs": prefill_logs,
    "prefill_notifications": prefill_notifications,
    "prefill_assignments": prefill_assignments,
    "prefill_assigned": prefill_assigned,
    "prefill_content": prefill_content,
    "prefill_approved": prefill_approved,
    "prefill_messages": prefill_messages,
}


def run_prefill(name, port, data_dir, nonce, store):
    """Runs prefill `name` against the service on `port`, which uses `store`."""
    client = Client(port)
    try:
        PREFILLS[name](client, data_dir, nonce, store)
    finally:
        client.close()
