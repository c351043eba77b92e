"""Measures how fast a publish on one messaging replica wakes a long poll on another.

Usage: python3 bench/wake.py [ROUNDS]   (default 50)

Starts two release `messaging-service` processes in Postgres mode on 127.0.0.1, both on
the database peripherals_wake (dropped and created first). Each round parks a pull with
`wait_ms=5000` on replica B, waits until it has surely started waiting, publishes one
message on replica A, and records the time from the publish response to the pull
response. Build first with `cargo build --release -p messaging-service`. Needs psql and
a Postgres server at postgres://postgres@127.0.0.1:5432.
"""

import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SERVER_URL = "postgres://postgres@127.0.0.1:5432"
DATABASE = "peripherals_wake"
PORTS = (19192, 19193)
# Long enough for the pull to reach its wait before the publish is sent.
SETTLE_SECONDS = 0.2


def psql(sql):
    subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", f"{SERVER_URL}/postgres", "-c", sql],
                   check=True, capture_output=True)


def start_replica(binary, port, log):
    env = os.environ | {
        "PERIPHERALS_STORE": "postgres",
        "DATABASE_URL": f"{SERVER_URL}/{DATABASE}",
        "MESSAGING_HTTP_ADDR": f"127.0.0.1:{port}",
        "RUST_LOG": "warn",
    }
    process = subprocess.Popen([str(binary)], env=env, stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1):
                return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"replica on port {port} did not become ready; see {log.name}")


def request(method, url, body=None):
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"} if data else {}
    call = urllib.request.Request(url, data=data, method=method, headers=headers)
    with urllib.request.urlopen(call, timeout=10) as response:
        return json.loads(response.read() or b"null")


def one_round(index):
    """Returns milliseconds from the publish response to the woken pull's response."""
    topic = f"wake-{os.getpid()}-{index}"
    woken = {}

    def pull():
        result = request("GET", f"http://127.0.0.1:{PORTS[1]}/topics/{topic}/messages"
                                "?tenant_id=wake&wait_ms=5000")
        woken["at"] = time.perf_counter()
        woken["count"] = len(result["messages"])

    waiter = threading.Thread(target=pull)
    waiter.start()
    time.sleep(SETTLE_SECONDS)
    request("POST", f"http://127.0.0.1:{PORTS[0]}/topics/{topic}/messages",
            {"tenant_id": "wake", "project_id": "bench", "payload_base64": "aGk="})
    published = time.perf_counter()
    waiter.join()
    if woken.get("count") != 1:
        raise SystemExit(f"round {index}: the pull returned {woken.get('count')} messages, expected 1")
    return (woken["at"] - published) * 1000


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    binary = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target") / "release/messaging-service"
    if not binary.exists():
        raise SystemExit(f"{binary} is missing; run cargo build --release -p messaging-service")

    psql(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
    psql(f"CREATE DATABASE {DATABASE}")
    logs = [open(f"/tmp/wake-replica-{port}.log", "w") for port in PORTS]
    replicas = []
    try:
        # One at a time, so that the second finds the migrations applied.
        for port, log in zip(PORTS, logs):
            replicas.append(start_replica(binary, port, log))
        samples = [one_round(index) for index in range(rounds)]
    finally:
        for replica in replicas:
            replica.terminate()
            replica.wait(timeout=15)

    samples.sort()
    print(f"{rounds} rounds, publish on :{PORTS[0]} waking a pull on :{PORTS[1]}, "
          "milliseconds from the publish response to the pull response")
    print(f"median {statistics.median(samples):.1f}  "
          f"p90 {samples[int(0.9 * (rounds - 1))]:.1f}  max {samples[-1]:.1f}  "
          f"min {samples[0]:.1f}")


if __name__ == "__main__":
    main()
