"""Renders docs/benchmarks.md from the results of a run; nothing in it is typed by hand."""

import json
import sys
from pathlib import Path

import cases

# Targets the suite checks, each in one place.
HTTP_CEILING_SHARE = 0.80
P99_LIMIT_US = 10_000
LOG_EVENTS_PER_S = 500_000
METRIC_SAMPLES_PER_S = 1_000_000
PG_INSERT_SHARE = 0.70
PG_BATCH_MESSAGES_PER_S = 50_000
PG_FLOW_MESSAGES_PER_S = 10_000


def rate(value):
    return "—" if value is None else f"{value:,.0f}".replace(",", " ")


def ms(microseconds):
    return "—" if microseconds is None else f"{microseconds / 1000:.2f}"


def mib(kib):
    return "—" if kib is None else f"{kib / 1024:.0f}"


def share(value):
    return "—" if value is None else f"{value * 100:.0f} %"


def cores(value):
    return "—" if value is None else f"{value:.2f}"


def find(runs, case, store):
    return next((run for run in runs if run["case"] == case and run["store"] == store), None)


def not_ok(run):
    """Returns why a run has no figure, or None when it has one."""
    if run is None:
        return "not run"
    if run["status"] != "ok":
        return f"{run['status']}: {run.get('reason', '')}"
    return None


def error_flag(run):
    return f" ⚠ {run['errors']} errors" if run.get("errors") else ""


def verdict(met, run):
    if run.get("errors"):
        return f"**not met** ({run['errors']} non-2xx or socket errors)"
    return "met" if met else "**not met**"


def target_rows(results):
    runs = results["runs"]
    rows = []

    for run in runs:
        if run["store"] != "memory" or run["kind"] != "single":
            continue
        target = (f"in memory: ≥ {share(HTTP_CEILING_SHARE)} of the HTTP ceiling, "
                  f"p99 < {P99_LIMIT_US // 1000} ms at {cases.CONNECTIONS} connections")
        reason = not_ok(run)
        if reason:
            rows.append((target, run["endpoint"], reason, "—", "not measured"))
            continue
        ratio = run.get("ratio")
        met = ratio is not None and ratio >= HTTP_CEILING_SHARE and run["p99_us"] < P99_LIMIT_US
        measured = f"{rate(run['rps'])} req/s, p99 {ms(run['p99_us'])} ms"
        rows.append((target, f"`{run['service']}` {run['endpoint']}", measured, share(ratio),
                     verdict(met, run)))

    absolute = [
        ("logs-batch", "memory", LOG_EVENTS_PER_S, "events/s",
         f"log ingest in memory: ≥ {rate(LOG_EVENTS_PER_S)} events/s"),
        ("metrics-batch", "memory", METRIC_SAMPLES_PER_S, "samples/s",
         f"metrics ingest in memory: ≥ {rate(METRIC_SAMPLES_PER_S)} samples/s"),
        ("publish-batch", "postgres", PG_BATCH_MESSAGES_PER_S, "messages/s",
         f"batched publish in Postgres: ≥ {rate(PG_BATCH_MESSAGES_PER_S)} messages/s"),
        ("publish-pull-ack", "postgres", PG_FLOW_MESSAGES_PER_S, "messages/s",
         f"publish → pull → ack in Postgres: ≥ {rate(PG_FLOW_MESSAGES_PER_S)} messages/s"),
    ]
    for case, store, threshold, unit, target in absolute:
        run = find(runs, case, store)
        reason = not_ok(run)
        if reason:
            rows.append((target, case, reason, "—", "not measured"))
            continue
        value = run["units_per_s"]
        rows.append((target, f"`{run['service']}` {run['endpoint']}",
                     f"{rate(value)} {unit}", f"{share(value / threshold)} of target",
                     verdict(value >= threshold, run)))

    run = find(runs, "publish", "postgres")
    target = f"single publish in Postgres: ≥ {share(PG_INSERT_SHARE)} of pgbench's insert rate"
    reason = not_ok(run) or (None if run.get("pg_ceiling") else "no pgbench result")
    if reason:
        rows.append((target, "publish", reason, "—", "not measured"))
    else:
        ratio = run.get("pg_ratio")
        rows.append((target, f"`{run['service']}` {run['endpoint']}",
                     f"{rate(run['rps'])} req/s vs {rate(run['pg_ceiling']['tps'])} tps",
                     share(ratio), verdict(ratio is not None and ratio >= PG_INSERT_SHARE, run)))

    for flat in results["flat"]:
        target = f"memory flat over {results['flat_seconds']} s at full rate"
        if flat["status"] != "ok" or flat.get("flat") is None:
            rows.append((target, flat["case"], flat.get("reason", "too few samples"), "—",
                         "not measured"))
            continue
        measured = (f"RSS start {mib(flat['start_kib'])}, middle {mib(flat['middle_kib'])}, "
                    f"end {mib(flat['end_kib'])}, max {mib(flat['max_kib'])} MiB")
        growth = (f"second-half peak {flat['growth_kib'] / flat['first_peak_kib'] * 100:+.1f} % "
                  "over the first half's")
        rows.append((target, f"`{flat['service']}` {flat['endpoint']}", measured, growth,
                     verdict(flat["flat"], flat)))
    return rows


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def memory_rows(runs):
    rows = []
    for run in runs:
        if run["store"] != "memory" or run["kind"] == "flow":
            continue
        reason = not_ok(run)
        if reason:
            rows.append((f"`{run['service']}`", run["endpoint"], reason) + ("",) * 10)
            continue
        units = rate(run["units_per_s"]) + f" {run['unit']}/s" if run["unit"] != "requests" else ""
        ceiling = run.get("ceiling", {})
        rows.append((
            f"`{run['service']}`", run["endpoint"], rate(run["rps"]), units,
            ms(run["p50_us"]), ms(run["p99_us"]), rate(run.get("response_bytes")),
            rate(ceiling.get("rps")), share(run.get("ratio")), mib(run["peak_rss_kib"]),
            cores(run["service_cores"]), cores(run["generator_cores"]),
            str(run["errors"]) + error_flag(run)[:2],
        ))
    return rows


def postgres_rows(runs):
    rows = []
    for run in runs:
        if run["store"] != "postgres" or run["kind"] == "flow":
            continue
        reason = not_ok(run)
        if reason:
            rows.append((f"`{run['service']}`", run["endpoint"], reason) + ("",) * 10)
            continue
        units = rate(run["units_per_s"]) + f" {run['unit']}/s" if run["unit"] != "requests" else ""
        if "probe" in run:
            units += f"; {rate(run['probe']['per_s'])} {run['probe']['label']}/s"
        pg = run.get("pg_ceiling")
        ceiling = "—"
        if pg:
            ceiling = f"{rate(pg['tps'])} tps"
            if pg["units"] > 1:
                ceiling += f" ({rate(pg['rows_per_s'])} rows/s)"
            ceiling += f", {pg['clients']} clients"
        rows.append((
            f"`{run['service']}`", run["endpoint"], rate(run["rps"]), units,
            ms(run["p50_us"]), ms(run["p99_us"]), ceiling, share(run.get("pg_ratio")),
            mib(run["peak_rss_kib"]), cores(run["service_cores"]),
            cores(run["postgres_cores"]), cores(run["generator_cores"]),
            str(run["errors"]) + error_flag(run)[:2],
        ))
    return rows


def flow_rows(runs):
    rows = []
    for run in runs:
        if run["kind"] != "flow":
            continue
        reason = not_ok(run)
        if reason:
            rows.append((f"`{run['service']}`", run["endpoint"], run["store"], reason)
                        + ("",) * 8)
            continue
        consumer = run["consumer"]
        counters = ", ".join(f"{name} {rate(value)}" for name, value in run["counters"].items())
        pg = run.get("pg_ceiling")
        ceiling = f"{rate(pg['tps'])} tps, {pg['clients']} clients" if pg else "—"
        rows.append((
            f"`{run['service']}`", run["endpoint"], run["store"],
            f"{rate(run['produced_per_s'])} {run['produced_unit']}/s",
            f"{rate(run['units_per_s'])} {run['unit']}/s",
            f"{ms(run['p99_us'])} / {ms(consumer['p99_us'])}", ceiling,
            share(run.get("pg_ratio")), mib(run["peak_rss_kib"]),
            cores(run["service_cores"]), str(run["errors"]) + error_flag(run)[:2], counters,
        ))
    return rows


def flat_rows(flats):
    rows = []
    for flat in flats:
        if flat["status"] != "ok":
            rows.append((flat["case"], flat.get("reason", ""), "", "", "", "", "", ""))
            continue
        rows.append((
            f"`{flat['service']}` {flat['endpoint']}", rate(flat.get("rps")),
            mib(flat.get("start_kib")), mib(flat.get("middle_kib")), mib(flat.get("end_kib")),
            mib(flat.get("max_kib")), "yes" if flat.get("flat") else "**no**",
            flat.get("errors", "—"),
        ))
    return rows


def ceiling_rows(runs):
    http_rows, pg_rows, seen = [], [], set()
    for run in runs:
        ceiling = run.get("ceiling")
        if ceiling and ceiling["first_case"] not in seen:
            seen.add(ceiling["first_case"])
            http_rows.append((ceiling["first_case"], rate(ceiling["rps"]), ms(ceiling["p50_us"]),
                              ms(ceiling["p99_us"]), cores(ceiling["cores"]),
                              cores(ceiling["generator_cores"]), ceiling["errors"]))
        pg = run.get("pg_ceiling")
        if pg:
            pg_rows.append((pg["key"], pg["description"], pg["clients"], rate(pg["tps"]),
                            rate(pg["rows_per_s"]), ms(pg["p50_us"]), ms(pg["p99_us"]),
                            cores(pg["postgres_cores"]), pg["failed"]))
    return http_rows, pg_rows


def commands(runs):
    lines = []
    for run in runs:
        if run["status"] != "ok":
            continue
        lines.append(f"- `{run['case']}` [{run['store']}]")
        for command in run["commands"]:
            lines.append(f"  - `{command}`")
        if run.get("ceiling"):
            lines.append(f"  - ceiling: `{run['ceiling']['command']}`")
        if run.get("pg_ceiling"):
            lines.append(f"  - pgbench: `{run['pg_ceiling']['command']}`")
    return "\n".join(lines)


def problems(results):
    found = []
    for run in results["runs"]:
        name = f"`{run['case']}` [{run['store']}]"
        if run["status"] != "ok":
            found.append(f"{name}: {run['status']}: {run.get('reason', '')}")
            continue
        if run.get("errors"):
            found.append(f"{name}: {run['errors']} errors in {run['requests']} requests. "
                         f"wrk counted per process: `{json.dumps(run['error_detail'])}`")
        if run.get("exit_code") not in (0, None):
            found.append(f"{name}: the service exited with {run['exit_code']} after SIGTERM")
        if run.get("log_problems"):
            # The first line without its timestamp; repeats of one failure differ only there.
            first = run["log_sample"][0].split(" ", 1)[-1].strip()[:240]
            found.append(f"{name}: {run['log_problems']} WARN or ERROR log lines. The first: "
                         f"`{first}`")
        if run.get("ceiling", {}).get("errors"):
            found.append(f"{name}: the HTTP ceiling run had {run['ceiling']['errors']} errors")
        if run.get("pg_ceiling", {}).get("failed"):
            found.append(f"{name}: pgbench had {run['pg_ceiling']['failed']} failed transactions")
    for flat in results["flat"]:
        if flat["status"] != "ok":
            found.append(f"memory flatness `{flat['case']}`: {flat.get('reason', '')}")
        elif flat.get("flat") is False:
            found.append(f"memory flatness `{flat['case']}`: the second half's RSS peak was "
                         f"{mib(flat['growth_kib'])} MiB above the first half's")
    return "\n".join(f"- {line}" for line in found) or "- none"


def settings_lines(results):
    lines = []
    for binary, settings in results["settings"].items():
        for name, (value, reason) in settings.items():
            lines.append(f"  - `{binary}`: `{name}={value}` ({reason})")
    return "\n".join(lines)


def render(results):
    machine = results["machine"]
    mode = results["mode"]
    quick_note = (
        " Quick mode runs each case for only a few seconds, on a machine that may be busy."
        " Its figures show that the suite works and roughly where each endpoint stands."
        " Quote the figures of `just bench` (full mode) instead."
        if mode == "quick" else "")
    missing = "".join(f"\n- `{name}`: {reason}" for name, reason in results["missing"].items())
    missing_text = f"\n\nNot measured in this run:{missing}" if missing else ""
    http_ceilings, pg_ceilings = ceiling_rows(results["runs"])
    load = machine["load_average_start"]
    load_end = machine["load_average_end"]
    sections = [
        "# Benchmarks",
        f"Generated by `bench/run.sh {mode}` on {machine['date']} from commit "
        f"{machine['commit']}, {results['seconds_per_run']} s per run, "
        f"{results['elapsed_s'] / 60:.1f} minutes of runs after "
        f"{results.get('build_s', 0):.0f} s of building. The script writes this page "
        f"from its measurements, so do not edit it by hand.{quick_note}{missing_text}",
        "## Targets",
        table(["target", "endpoint", "measured", "ratio", "result"], target_rows(results)),
        "A run with any non-2xx response or socket error does not meet its target. The "
        "tables below give the counts, and *Problems seen* the details.",
        "## Machine",
        f"- {machine['cores']} cores, {machine['cpu_model']}, {machine['memory_gib']} GiB "
        f"memory, Linux {machine['kernel']}\n"
        f"- load average (1, 5, 15 min) {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the "
        f"start, {load_end[0]:.2f} {load_end[1]:.2f} {load_end[2]:.2f} at the end\n"
        f"- {machine['rustc']}; {machine['wrk']}; {machine['pgbench']}; Postgres "
        f"{machine['postgres']} on 127.0.0.1:5432",
        "## Method",
        METHOD,
        "## Settings",
        SETTINGS.format(connections=cases.CONNECTIONS, threads=cases.THREADS,
                        database=cases.DATABASE) + "\n" + settings_lines(results),
        "## How to rerun",
        RERUN,
        "## In-memory endpoints",
        MEMORY,
        table(["service", "endpoint", "req/s", "units/s", "p50 ms", "p99 ms",
               "response bytes", "ceiling req/s", "ratio", "peak RSS MiB", "service cores",
               "wrk cores", "errors"], memory_rows(results["runs"])),
        "## Postgres endpoints",
        table(["service", "endpoint", "req/s", "units/s", "p50 ms", "p99 ms",
               "pgbench ceiling", "ratio", "peak RSS MiB", "service cores", "Postgres cores",
               "wrk cores", "errors"], postgres_rows(results["runs"])),
        "## Flows",
        FLOWS,
        table(["service", "flow", "store", "produced", "consumed", "p99 ms (producer / "
               "consumer)", "pgbench ceiling", "ratio", "peak RSS MiB", "service cores",
               "errors", "consumer counts"], flow_rows(results["runs"])),
        "## Memory flatness",
        f"RSS (VmRSS) sampled every second of a {results['flat_seconds']} s run on the "
        "memory store at full rate. A peak in the second half above the first half's peak "
        "by more than 5 % (or 4 MiB) counts as not flat. Memory that grows without bound "
        "sets new peaks, and a queue that fills and drains within its bound does not.",
        table(["endpoint", "req/s", "start MiB", "middle MiB", "end MiB", "max MiB", "flat",
               "errors"], flat_rows(results["flat"])),
        "## Ceilings",
        "HTTP ceiling runs (`bench-ceiling`, named by the first case that used the same "
        "script, body and wrk settings):",
        table(["first case", "req/s", "p50 ms", "p99 ms", "server cores", "wrk cores",
               "errors"], http_ceilings),
        "pgbench ceiling runs (`-M prepared`, `-j 2`, run right after the endpoint on "
        "emptied tables):",
        table(["ceiling", "statement", "clients", "tps", "rows/s", "p50 ms", "p99 ms",
               "Postgres cores", "failed"], pg_ceilings),
        "## Problems seen",
        problems(results),
        "## Commands",
        f"`$DATA` is the directory of generated inputs (`{results['data_dir']}` in this "
        "run); `bench/harness/data.py` writes it the same way every time.\n\n"
        + commands(results["runs"]),
    ]
    return "\n\n".join(sections) + "\n"


METHOD = """\
`bench/run.sh` builds the release binaries and runs `bench/harness/main.py`. Each service
runs alone on 127.0.0.1, as a fresh process for every case and store, so its peak RSS
(VmHWM from `/proc/PID/status`) belongs to that case. CPU is the utime + stime delta from
`/proc/PID/stat` over the run, divided by the run's wall time, in cores. *Postgres cores*
sum every `postgres` process the same way. wrk drives each case for a fixed time. The Lua
scripts in `bench/wrk` build unique ids and play the flows, and each prints its totals in
`done()` for the harness to parse. Latencies are wrk's p50 and p99, measured from the
time a request is sent, and req/s counts 2xx responses only.

Each in-memory endpoint is compared with `bench-ceiling`, driven by the same wrk command.
It is a bare axum 0.8 server on the same multi-threaded tokio runtime (one worker per
core). It reads the same body and fully deserializes it into `serde::de::IgnoredAny`
(each NDJSON line on its own), then returns 202, or a small fixed JSON for a GET.
`IgnoredAny` validates the whole JSON syntax without building values, so one server fits
every body. What a service spends beyond parsing (building values, validation,
middleware, the store) therefore shows in its ratio. Each Postgres endpoint is compared
with pgbench running the SQL the endpoint runs, from the scripts in `bench/pgbench` that
copy the stores' statements. pgbench gets as many clients as wrk has connections unless
the row names another count."""

SETTINGS = """\
- Load: `wrk -t{threads} -c{connections}` by default. wrk shares the cores with the
  service and Postgres, and the *wrk cores* column shows what the load generator took.
  Flows split the connections between a producer wrk and a consumer wrk.
- Services run with `RUST_LOG=warn` (no per-request logging), `PERIPHERALS_STORE`
  `memory` or `postgres`, and `PERIPHERALS_SHUTDOWN_GRACE=10s`. Their stdout goes to
  /dev/null. The log pipeline's stdout sink stays on and writes every event there.
  stderr goes to a log file per run, and its WARN and ERROR lines are listed under
  *Problems seen*.
- Postgres mode uses the database `{database}` on the local server, dropped and created
  at the start of every run. The first service start applies the migrations, and each
  case starts from emptied tables. The pool (`PERIPHERALS_DB_MAX_CONNECTIONS`) has as
  many connections as wrk, the same concurrency pgbench gets.
- Capacities raised so no memory-mode cap is reached during a run:"""

RERUN = """\
```sh
apt-get install wrk postgresql-contrib   # wrk, then pgbench and psql
just bench                              # full: 12 s per case and 60 s flatness runs
bash bench/run.sh quick                 # a few seconds per case, under five minutes
```
Postgres must accept `postgres://postgres@127.0.0.1:5432`. Raw results, generated inputs
and service logs land in `$CARGO_TARGET_DIR/bench/<mode>` (`target/bench/<mode>` by
default). `python3 bench/harness/report.py RESULTS.json` renders this page again from
them. Run the suite on an otherwise idle machine, because other load moves every
figure."""

MEMORY = """\
*response bytes* is the mean size of a response, headers included. The ceiling returns
about 80 bytes for a POST (an empty 202). For a GET it returns a prebuilt body sized so
that the whole response matches the endpoint's mean size, so both write the same bytes
and the ratio measures building them, not sending them."""

FLOWS = """\
The moderation flow submits 1 KiB bodies, checked against 10 000 banned terms, from one
wrk (the producer) while another polls `GET /jobs/next` (the consumer). *produced* is
jobs accepted per second and *consumed* decisions handed out per second. The messaging
flow publishes batches from one wrk while consumers in another pull, then acknowledge
what each pull returned with one batch ack. *consumed* counts the ids that the ack
responses confirmed. A producer faster than its consumers leaves a backlog, so
*produced* can exceed *consumed*. The moderation flow is compared with the job claim at
the worker count (`UGC_WORKERS`, 4), because workers run the claim, not requests."""


def one_line(run):
    """Returns a one-line summary of a run for the console."""
    reason = not_ok(run)
    if reason:
        return reason
    parts = [f"{rate(run['rps'])} req/s", f"p99 {ms(run['p99_us'])} ms"]
    if run["unit"] != "requests":
        parts.append(f"{rate(run['units_per_s'])} {run['unit']}/s")
    if run.get("ratio") is not None:
        parts.append(f"ceiling {share(run['ratio'])}")
    if run.get("pg_ratio") is not None:
        parts.append(f"pgbench {share(run['pg_ratio'])}")
    parts.append(f"RSS {mib(run['peak_rss_kib'])} MiB")
    if run.get("errors"):
        parts.append(f"{run['errors']} errors")
    return ", ".join(parts)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: report.py RESULTS.json", file=sys.stderr)
        sys.exit(2)
    results = json.loads(Path(sys.argv[1]).read_text())
    page = Path(__file__).resolve().parents[2] / "docs" / "benchmarks.md"
    page.write_text(render(results))
    print(f"wrote {page}")
