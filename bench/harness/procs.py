"""Processes of a run: services, wrk and pgbench, and their figures read from /proc."""

import json
import os
import re
import resource
import shlex
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from cases import DATABASE_URL, HOST, SERVER_URL

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
READY_TIMEOUT_S = 60
STOP_TIMEOUT_S = 20


class RunError(Exception):
    """A run that could not be measured; the message gives the reason."""


def cpu_seconds(pid):
    """Returns utime + stime of process `pid` in seconds (fields 14 and 15 of its stat)."""
    with open(f"/proc/{pid}/stat") as file:
        stat = file.read()
    # The command name may contain spaces; fields are counted after its closing bracket.
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def postgres_cpu_seconds():
    """Returns the CPU time of every process named postgres, reaped children included, so
    connections that ended during a run still count through the postmaster."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as file:
                stat = file.read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        if name != "postgres":
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        total += sum(int(value) for value in fields[11:15])
    return total / CLOCK_TICKS


def status_kib(pid, field):
    """Returns a size field of /proc/PID/status (VmHWM, VmRSS) in KiB."""
    with open(f"/proc/{pid}/status") as file:
        for line in file:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RunError(f"/proc/{pid}/status has no {field} line")


def port_in_use(port):
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex((HOST, port)) == 0


def base_env():
    """Returns a minimal environment, so settings of the caller's shell do not leak in."""
    return {key: os.environ[key] for key in ("PATH", "HOME", "LANG") if key in os.environ}


class Server:
    """A service (or the ceiling) started on 127.0.0.1, stopped with SIGTERM."""

    def __init__(self, argv, env, port, log_path, stdout_to_null=True):
        if port_in_use(port):
            raise RunError(f"port {port} on {HOST} is in use; stop what listens there")
        self.port = port
        self.log_path = log_path
        self.log = open(log_path, "wb")
        stdout = subprocess.DEVNULL if stdout_to_null else self.log
        self.process = subprocess.Popen(argv, env=env, stdout=stdout, stderr=self.log)
        self.pid = self.process.pid
        self.exit_code = None

    def wait_ready(self, path):
        deadline = time.monotonic() + READY_TIMEOUT_S
        url = f"http://{HOST}:{self.port}{path}"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RunError(f"exited with code {self.process.returncode} before it was "
                               f"ready; log: {self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        raise RunError(f"not ready after {READY_TIMEOUT_S} s; log: {self.log_tail()}")

    def stop(self):
        """Stops the process; returns its exit code, or "killed" after STOP_TIMEOUT_S."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                self.exit_code = "killed"
        if self.exit_code is None:
            self.exit_code = self.process.returncode
        self.log.close()
        return self.exit_code

    def log_tail(self, lines=5):
        if not self.log.closed:
            self.log.flush()
        text = Path(self.log_path).read_text(errors="replace").strip().splitlines()
        return " | ".join(text[-lines:]) or "(empty)"

    def log_problems(self):
        """Returns the number of WARN and ERROR lines in the log, and the first few."""
        if not self.log.closed:
            self.log.flush()
        found = [line for line in Path(self.log_path).read_text(errors="replace").splitlines()
                 if re.search(r"\b(WARN|ERROR)\b|\"level\":\"(WARN|ERROR)\"", line)]
        return len(found), found[:3]


def command_text(env, argv, data_dir):
    """Returns the command as a shell line, with the variables the script reads and data
    files shown under `$DATA` (the data directory the harness generates)."""
    def shown(text):
        quoted = shlex.quote(text)
        return quoted.replace(str(data_dir), '"$DATA"')

    assignments = [f"{key}={shown(value)}" for key, value in env.items()]
    return " ".join(assignments + [shown(part) for part in argv])


def wrk_command(load, port, duration, data_dir, nonce):
    """Returns (argv, script variables) of one wrk process for `load`."""
    variables = {"BENCH_NONCE": nonce} if load.script == "unique_id.lua" else {}
    if load.method != "GET":
        variables["BENCH_METHOD"] = load.method
    if load.body:
        variables["BENCH_BODY"] = str(data_dir / load.body)
        if load.content_type != "application/json":
            variables["BENCH_CONTENT_TYPE"] = load.content_type
    for key, value in load.env:
        variables[key] = str(data_dir / value[5:]) if value.startswith("data:") else value
    argv = ["wrk", f"-t{load.threads}", f"-c{load.connections}", f"-d{duration}s",
            "--timeout", "5s", "-s", f"bench/wrk/{load.script}",
            f"http://{HOST}:{port}{load.path}"]
    return argv, variables


def run_wrk(loads, port, duration, data_dir, repo, nonce):
    """Runs one wrk process per load at once; returns their parsed results, the wall
    time, the CPU time the load generators used, and the commands."""
    processes = []
    commands = []
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    for load in loads:
        argv, variables = wrk_command(load, port, duration, data_dir, nonce)
        env = base_env() | variables
        commands.append(command_text(variables, argv, data_dir))
        processes.append(subprocess.Popen(
            argv, env=env, cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True))
    outputs = [process.communicate(timeout=duration + 60) for process in processes]
    wall = time.monotonic() - started
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    generator_cpu = (children_after.ru_utime - children_before.ru_utime
                     + children_after.ru_stime - children_before.ru_stime)

    results = []
    for process, (stdout, stderr) in zip(processes, outputs):
        line = next((text for text in stdout.splitlines() if text.startswith("BENCH_RESULT ")),
                    None)
        if process.returncode != 0 or line is None:
            raise RunError(f"wrk exited with code {process.returncode} and no result: "
                           f"{(stderr or stdout).strip()[-400:]}")
        results.append(json.loads(line[len("BENCH_RESULT "):]))
    return results, wall, generator_cpu, commands


def psql(sql, database_url=DATABASE_URL):
    """Runs `sql` with psql, stopping at the first error; returns stdout."""
    completed = subprocess.run(
        ["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", database_url, "-c", sql],
        capture_output=True, text=True, env=base_env())
    if completed.returncode != 0:
        raise RunError(f"psql failed on {sql[:80]!r}: {completed.stderr.strip()}")
    return completed.stdout.strip()


def psql_file(path, database_url=DATABASE_URL):
    completed = subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", database_url, "-f", str(path)],
        capture_output=True, text=True, env=base_env())
    if completed.returncode != 0:
        raise RunError(f"psql failed on {path}: {completed.stderr.strip()}")


def recreate_database(name):
    maintenance = f"{SERVER_URL}/postgres"
    psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", maintenance)
    psql(f"CREATE DATABASE {name}", maintenance)


def percentile(sorted_values, fraction):
    if not sorted_values:
        return 0
    index = min(len(sorted_values) - 1, int(round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


def run_pgbench(ceiling, clients, duration, data_dir, repo, log_dir, nonce):
    """Runs one pgbench ceiling; returns tps, latency percentiles, CPU and the command."""
    variables = []
    shown_variables = []
    for key, value in ceiling.variables:
        shown = shlex.quote(f"{key}={value}")
        if value.startswith("data:"):
            shown = f'"{key}=$(cat "$DATA/{value[5:]}")"'
            value = (data_dir / value[5:]).read_text().strip()
        elif key == "nonce":
            # Ids this run inserts must not collide with rows of an earlier run.
            value = f"{value}-{nonce}"
            shown = shlex.quote(f"{key}={value}")
        variables += ["-D", f"{key}={value}"]
        shown_variables += ["-D", shown]
    prefix = log_dir / f"pgbench-{ceiling.key}"
    for old in log_dir.glob(f"pgbench-{ceiling.key}.*"):
        old.unlink()
    argv = ["pgbench", "-n", "-M", "prepared", "-c", str(clients), "-j", "2",
            "-T", str(duration), *variables, "-f", f"bench/pgbench/{ceiling.script}",
            "-l", f"--log-prefix={prefix}", DATABASE_URL]
    postgres_before = postgres_cpu_seconds()
    started = time.monotonic()
    completed = subprocess.run(argv, cwd=repo, capture_output=True, text=True, env=base_env())
    wall = time.monotonic() - started
    postgres_cpu = postgres_cpu_seconds() - postgres_before
    output = completed.stdout + completed.stderr
    tps = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", output)
    if completed.returncode != 0 or tps is None:
        raise RunError(f"pgbench exited with code {completed.returncode}: "
                       f"{output.strip()[-500:]}")
    failed = re.search(r"number of failed transactions: (\d+)", output)

    latencies = []
    for log_file in log_dir.glob(f"pgbench-{ceiling.key}.*"):
        with open(log_file) as file:
            latencies += [int(line.split()[2]) for line in file if line.strip()]
        log_file.unlink()
    latencies.sort()

    shown_argv = ["pgbench", "-n", "-M", "prepared", "-c", str(clients), "-j", "2",
                  "-T", str(duration), *shown_variables, "-f",
                  f"bench/pgbench/{ceiling.script}", "-l", DATABASE_URL]
    return {
        "tps": float(tps.group(1)),
        "failed": int(failed.group(1)) if failed else 0,
        "transactions": len(latencies),
        "p50_us": percentile(latencies, 0.50),
        "p99_us": percentile(latencies, 0.99),
        "postgres_cores": postgres_cpu / wall,
        "command": " ".join(shown_argv),
    }
