"""Runs the benchmark suite and writes docs/benchmarks.md.

Usage: python3 bench/harness/main.py quick|full

Every service runs alone on 127.0.0.1, one fresh process per case and store, driven by
wrk; Postgres runs use a database created fresh for the run. Raw results, generated
inputs and service logs go to $CARGO_TARGET_DIR/bench/<mode> (target/bench/<mode> when
the variable is unset).
"""

import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import cases
import data
import procs
import report
from cases import CASES, CEILING_PORT, DATABASE, DATABASE_URL, HOST, PG_CEILINGS, SERVICES
from procs import RunError

REPO = Path(__file__).resolve().parents[2]


def log(message):
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def cargo_packages():
    """Returns {package name: binary names} of the workspace, from cargo metadata."""
    output = subprocess.run(
        ["cargo", "metadata", "--no-deps", "--format-version", "1"],
        cwd=REPO, capture_output=True, text=True, check=True).stdout
    packages = {}
    for package in json.loads(output)["packages"]:
        binaries = [target["name"] for target in package["targets"] if "bin" in target["kind"]]
        packages[package["name"]] = binaries
    return packages


def build(packages):
    """Builds the release binaries; returns {package: reason} for those that failed."""
    command = ["cargo", "build", "--release", "--locked"]
    log("building: " + " ".join(command + [f"-p {name}" for name in packages]))
    together = subprocess.run(command + [arg for name in packages for arg in ("-p", name)],
                              cwd=REPO)
    if together.returncode == 0:
        return {}
    failed = {}
    for name in packages:
        alone = subprocess.run(command + ["-p", name], cwd=REPO, capture_output=True, text=True)
        if alone.returncode != 0:
            failed[name] = "the release build failed: " + alone.stderr.strip()[-300:]
    return failed


def target_dir():
    return Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target")


def machine_info():
    with open("/proc/cpuinfo") as file:
        models = [line.split(":", 1)[1].strip() for line in file if line.startswith("model name")]
    with open("/proc/meminfo") as file:
        memory_kib = next(int(line.split()[1]) for line in file if line.startswith("MemTotal"))

    def version(argv):
        try:
            output = subprocess.run(argv, capture_output=True, text=True).stdout
            return output.strip().splitlines()[0] if output.strip() else "unknown"
        except OSError:
            return "not installed"

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                            capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                           capture_output=True, text=True).stdout.strip()
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(memory_kib / 1024 / 1024, 1),
        "cpu_model": models[0] if models else "unknown",
        "kernel": platform.release(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "load_average_start": os.getloadavg(),
        "commit": commit + (" with uncommitted changes" if dirty else ""),
        "rustc": version(["rustc", "--version"]),
        "wrk": version(["wrk", "--version"]).split(" Copyright")[0],
        "pgbench": version(["pgbench", "--version"]),
        "postgres": procs.psql("SHOW server_version", f"{cases.SERVER_URL}/postgres"),
    }



# Headers the ceiling sends with a GET besides content-length's digits: the status line,
# content-type, content-length, date and the blank line.
CEILING_GET_HEADER_BYTES = len("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                               "content-length: \r\ndate: Fri, 04 Dec 2026 22:52:12 GMT\r\n\r\n")


def ceiling_get_bytes(case, record):
    """Body size for the ceiling's GETs so that its whole response matches the endpoint's
    mean response size; None for other methods or when the size is unknown."""
    size = record.get("response_bytes")
    if case.load.method != "GET" or not size:
        return None
    body = int(size) - CEILING_GET_HEADER_BYTES
    body -= len(str(max(body, 1)))
    return max(body, 26)


class Bench:
    """One run of the suite: its mode, directories and collected results."""

    def __init__(self, mode, binaries, missing, ceiling_binary):
        self.mode = mode
        self.missing = missing
        self.ceiling_binary = ceiling_binary
        self.duration = cases.DURATIONS[mode]
        self.binaries = binaries
        self.out = target_dir() / "bench" / mode
        self.data_dir = self.out / "data"
        self.log_dir = self.out / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.nonce = format(int(time.time()), "x")
        self.runs = []
        self.ceilings = {}
        self.flat = []

    def service_env(self, service, store, connections):
        env = procs.base_env() | {
            "RUST_LOG": "warn",
            "PERIPHERALS_STORE": store,
            "PERIPHERALS_SHUTDOWN_GRACE": "10s",
            f"{service.prefix}HTTP_ADDR": f"{HOST}:{service.port}",
        }
        env |= {name: value for name, (value, _) in service.settings.items()}
        if service.key == "moderation":
            env["UGC_BANNED_TERMS_FILE"] = str(self.data_dir / "banned_terms.txt")
        if store == "postgres":
            env["DATABASE_URL"] = DATABASE_URL
            # The pool gets as many connections as wrk opens, as pgbench gets clients.
            env["PERIPHERALS_DB_MAX_CONNECTIONS"] = str(connections)
        return env

    def start_service(self, service, store, connections, label):
        binary = self.binaries[service.package]
        env = self.service_env(service, store, connections)
        server = procs.Server([str(binary)], env, service.port,
                              self.log_dir / f"{label}.log")
        try:
            server.wait_ready("/readyz")
        except RunError:
            server.stop()
            raise
        return server

    def migrate(self):
        """Starts one service in Postgres mode so the migrations of every schema run."""
        service = next(s for s in SERVICES.values() if s.package in self.binaries)
        server = self.start_service(service, "postgres", 2, "migrate")
        server.stop()
        procs.psql_file(REPO / "bench/pgbench/setup.sql")

    def truncate(self, service):
        procs.psql(f"TRUNCATE {', '.join(service.tables)} CASCADE")

    def run_case(self, case, store):
        service = SERVICES[case.service]
        loads = [case.load] + ([case.consumer] if case.consumer else [])
        connections = sum(load.connections for load in loads)
        record = {
            "case": case.key, "service": service.binary, "endpoint": case.endpoint,
            "store": store, "kind": case.kind, "unit": case.unit,
            "units_per_request": case.load.units, "note": case.note,
            "produced_unit": case.produced_unit,
            "connections": connections, "status": "ok",
        }

        if service.package not in self.binaries:
            record |= {"status": "not run",
                       "reason": self.missing.get(service.package,
                                                  f"package {service.package} is not in the workspace")}
            return record

        if store == "postgres":
            self.truncate(service)
        server = self.start_service(service, store, connections, f"{case.key}-{store}")
        try:
            if case.prefill:
                data.run_prefill(case.prefill, service.port, self.data_dir, self.nonce, store)

            cpu_before = procs.cpu_seconds(server.pid)
            postgres_before = procs.postgres_cpu_seconds()
            results, wall, generator_cpu, commands = procs.run_wrk(
                loads, service.port, self.duration, self.data_dir, REPO, self.nonce)

            record["service_cores"] = (procs.cpu_seconds(server.pid) - cpu_before) / wall
            record["postgres_cores"] = (procs.postgres_cpu_seconds() - postgres_before) / wall
            record["generator_cores"] = generator_cpu / wall
            record["peak_rss_kib"] = procs.status_kib(server.pid, "VmHWM")
            if store == "postgres" and case.pg_probe:
                label_text, query = case.pg_probe
                value = int(procs.psql(query))
                record["probe"] = {"label": label_text, "value": value}
        finally:
            record["exit_code"] = server.stop()
            record["log_problems"], record["log_sample"] = server.log_problems()

        record["commands"] = commands
        record["wrk"] = results
        summarize(record, case, results)
        if "probe" in record:
            record["probe"]["per_s"] = record["probe"]["value"] / record["seconds"]
        return record

    def run_http_ceiling(self, case, record):
        """Runs the ceiling server with the case's own wrk settings and body. For a GET,
        the ceiling returns a body as large as the endpoint's, so both pay for writing
        the same bytes."""
        get_bytes = ceiling_get_bytes(case, record)
        key = (case.load.script, case.load.method, case.load.body, case.load.content_type,
               case.load.threads, case.load.connections, case.load.env, get_bytes)
        if key not in self.ceilings:
            env = procs.base_env()
            if get_bytes is not None:
                env["BENCH_CEILING_GET_BYTES"] = str(get_bytes)
            server = procs.Server([str(self.ceiling_binary), f"{HOST}:{CEILING_PORT}"],
                                  env, CEILING_PORT,
                                  self.log_dir / f"ceiling-{case.key}.log")
            try:
                server.wait_ready("/")
                cpu_before = procs.cpu_seconds(server.pid)
                results, wall, generator_cpu, commands = procs.run_wrk(
                    [case.load], CEILING_PORT, self.duration, self.data_dir, REPO,
                    self.nonce + "c")
                cores = (procs.cpu_seconds(server.pid) - cpu_before) / wall
            finally:
                server.stop()
            result = results[0]
            seconds = result["duration_us"] / 1e6
            self.ceilings[key] = {
                "first_case": case.key,
                "rps": (result["requests"] - result["errors"]["status"]) / seconds,
                "p50_us": result["latency_us"]["p50"],
                "p99_us": result["latency_us"]["p99"],
                "errors": error_count(result),
                "cores": cores,
                "generator_cores": generator_cpu / wall,
                "command": commands[0],
            }
        ceiling = self.ceilings[key]
        record["ceiling"] = ceiling
        record["ratio"] = record["rps"] / ceiling["rps"] if ceiling["rps"] else None

    def run_pg_ceiling(self, case, record):
        ceiling = PG_CEILINGS[case.pg_ceiling]
        clients = ceiling.clients or record["connections"]
        self.truncate(SERVICES[case.service])
        if ceiling.prefill_sql:
            procs.psql(ceiling.prefill_sql)
        result = procs.run_pgbench(ceiling, clients, self.duration, self.data_dir, REPO,
                                   self.log_dir, self.nonce)
        result |= {"key": ceiling.key, "description": ceiling.description,
                   "units": ceiling.units, "clients": clients,
                   "rows_per_s": result["tps"] * ceiling.units}
        record["pg_ceiling"] = result
        record["pg_ratio"] = pg_ratio(case, record, result)

    def run_flat(self, case_key):
        """Runs one endpoint on the memory store for the flatness period, sampling RSS."""
        case = next(c for c in CASES if c.key == case_key)
        service = SERVICES[case.service]
        seconds = cases.FLAT_SECONDS[self.mode]
        record = {"case": case.key, "service": service.binary, "endpoint": case.endpoint,
                  "seconds": seconds, "status": "ok"}
        if service.package not in self.binaries:
            return record | {"status": "not run", "reason": f"{service.package} not built"}
        server = self.start_service(service, "memory", case.load.connections,
                                    f"flat-{case.key}")
        samples = []
        try:
            if case.prefill:
                data.run_prefill(case.prefill, service.port, self.data_dir, self.nonce,
                                 "memory")
            argv, variables = procs.wrk_command(case.load, service.port, seconds,
                                                self.data_dir, self.nonce + "f")
            env = procs.base_env() | variables
            wrk = subprocess.Popen(argv, env=env, cwd=REPO, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
            started = time.monotonic()
            while wrk.poll() is None:
                time.sleep(1 - (time.monotonic() - started) % 1)
                if wrk.poll() is None:
                    samples.append((round(time.monotonic() - started, 1),
                                    procs.status_kib(server.pid, "VmRSS")))
            stdout, _ = wrk.communicate()
            line = next((t for t in stdout.splitlines() if t.startswith("BENCH_RESULT ")), None)
            if line:
                result = json.loads(line[len("BENCH_RESULT "):])
                record["rps"] = result["requests"] / (result["duration_us"] / 1e6)
                record["errors"] = error_count(result)
            record["peak_rss_kib"] = procs.status_kib(server.pid, "VmHWM")
        finally:
            server.stop()
        record["samples"] = samples
        return record | flatness(samples)

    def run_all(self):
        log(f"mode {self.mode}: {self.duration} s per run; results in {self.out}")
        data.generate(self.data_dir)
        postgres_problem = None
        try:
            procs.recreate_database(DATABASE)
            self.migrate()
        except RunError as error:
            log(f"Postgres cases skipped: {error}")
            postgres_problem = f"Postgres is unavailable: {error}"

        for case in CASES:
            for store in case.stores:
                log(f"{case.key} [{store}]")
                if store == "postgres" and postgres_problem:
                    self.runs.append({"case": case.key, "service": SERVICES[case.service].binary,
                                      "endpoint": case.endpoint, "store": store,
                                      "kind": case.kind, "status": "not run",
                                      "reason": postgres_problem})
                    continue
                try:
                    record = self.run_case(case, store)
                    if record["status"] == "ok":
                        if store == "memory" and case.kind != "flow":
                            self.run_http_ceiling(case, record)
                        if store == "postgres" and case.pg_ceiling:
                            self.run_pg_ceiling(case, record)
                except (RunError, RuntimeError, OSError) as error:
                    record = {"case": case.key, "service": SERVICES[case.service].binary,
                              "endpoint": case.endpoint, "store": store, "kind": case.kind,
                              "status": "failed", "reason": str(error)}
                    log(f"  failed: {error}")
                self.runs.append(record)
                log("  " + report.one_line(record))

        for case_key in cases.FLAT_CASES[self.mode]:
            log(f"memory flatness: {case_key} for {cases.FLAT_SECONDS[self.mode]} s")
            try:
                self.flat.append(self.run_flat(case_key))
            except (RunError, RuntimeError, OSError) as error:
                self.flat.append({"case": case_key, "status": "failed", "reason": str(error)})
                log(f"  failed: {error}")


def error_count(result):
    errors = result["errors"]
    return sum(errors.values())


def summarize(record, case, results):
    """Derives rates and latencies from the wrk results of one run."""
    main = results[0]
    seconds = main["duration_us"] / 1e6
    ok = main["requests"] - main["errors"]["status"]
    record["seconds"] = seconds
    record["requests"] = main["requests"]
    record["response_bytes"] = main["bytes"] / main["requests"] if main["requests"] else None
    record["rps"] = ok / seconds
    record["p50_us"] = main["latency_us"]["p50"]
    record["p99_us"] = main["latency_us"]["p99"]
    record["errors"] = sum(error_count(result) for result in results)
    record["error_detail"] = [result["errors"] for result in results]

    counters = main["counters"]
    if "delivered" in counters:
        record["units_per_s"] = counters["delivered"] / seconds
        record["counters"] = counters
    else:
        record["units_per_s"] = ok * case.load.units / seconds

    if case.kind == "flow":
        consumer = results[1]
        consumer_seconds = consumer["duration_us"] / 1e6
        done_count = consumer["counters"].get("acked", consumer["counters"].get("decisions", 0))
        record["counters"] = consumer["counters"]
        record["consumer"] = {
            "rps": consumer["requests"] / consumer_seconds,
            "p50_us": consumer["latency_us"]["p50"],
            "p99_us": consumer["latency_us"]["p99"],
            "units_per_s": done_count / consumer_seconds,
        }
        record["produced_per_s"] = record["units_per_s"]
        record["units_per_s"] = record["consumer"]["units_per_s"]


def pg_ratio(case, record, ceiling):
    """Returns the endpoint's rate over its pgbench ceiling, in the unit both count."""
    if case.key == "logs-batch":
        stored = record.get("probe", {}).get("per_s")
        return stored / ceiling["rows_per_s"] if stored and ceiling["rows_per_s"] else None
    if case.kind == "batch":
        return record["units_per_s"] / ceiling["rows_per_s"] if ceiling["rows_per_s"] else None
    if case.kind == "flow":
        return record["units_per_s"] / ceiling["tps"] if ceiling["tps"] else None
    return record["rps"] / ceiling["tps"] if ceiling["tps"] else None


def flatness(samples):
    """Compares the peak RSS of the run's second half with the peak of its first half.
    Allocations that warm up (pools, buffers, caches) happen early, and a filling and
    draining queue moves RSS up and down within its bound. Memory that grows without
    bound sets new peaks, so a second-half peak above the first by more than 5 % (or
    4 MiB, whichever is larger) counts as not flat."""
    if len(samples) < 4:
        return {"flat": None}
    half = len(samples) // 2
    first_peak = max(value for _, value in samples[:half])
    second_peak = max(value for _, value in samples[half:])
    growth = second_peak - first_peak
    return {
        "start_kib": samples[0][1], "middle_kib": samples[half][1],
        "end_kib": samples[-1][1],
        "max_kib": max(first_peak, second_peak),
        "first_peak_kib": first_peak, "second_peak_kib": second_peak,
        "growth_kib": growth,
        "flat": growth <= max(0.05 * first_peak, 4096),
    }


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in cases.DURATIONS:
        print("usage: main.py quick|full", file=sys.stderr)
        return 2
    mode = sys.argv[1]
    started = time.monotonic()

    packages = cargo_packages()
    service_packages = [service.package for service in SERVICES.values()
                        if service.package in packages]
    missing = {service.package: f"package {service.package} is not in the workspace yet"
               for service in SERVICES.values() if service.package not in packages}
    failed = build(service_packages + ["bench-ceiling"])
    build_seconds = time.monotonic() - started
    started = time.monotonic()
    if "bench-ceiling" in failed:
        print(f"error: {failed['bench-ceiling']}", file=sys.stderr)
        return 1
    missing |= failed
    release = target_dir() / "release"
    binaries = {}
    for package in service_packages:
        if package not in failed:
            binaries[package] = release / packages[package][0]

    bench = Bench(mode, binaries, missing, release / "bench-ceiling")
    machine = machine_info()
    bench.run_all()
    machine["load_average_end"] = os.getloadavg()

    results = {
        "mode": mode,
        "seconds_per_run": bench.duration,
        "flat_seconds": cases.FLAT_SECONDS[mode],
        "machine": machine,
        "settings": {service.binary: {name: list(value) for name, value in service.settings.items()}
                     for service in SERVICES.values()},
        "missing": missing,
        "runs": bench.runs,
        "flat": bench.flat,
        "data_dir": str(bench.data_dir),
        "build_s": build_seconds,
        "elapsed_s": time.monotonic() - started,
    }
    (bench.out / "results.json").write_text(json.dumps(results, indent=1))
    page = REPO / "docs" / "benchmarks.md"
    page.write_text(report.render(results))
    log(f"wrote {page.relative_to(REPO)} and {bench.out / 'results.json'} after "
        f"{results['elapsed_s']:.0f} s of runs and {build_seconds:.0f} s of building")
    return 0


if __name__ == "__main__":
    sys.exit(main())
