#!/usr/bin/env python3
"""Push throughput by store engine, in one run: SQLite, PostgreSQL with one instance, and
PostgreSQL with two instances sharing one database.

    python3 benches/stores.py               # 10 s per setup, results in benches/results/<date>/stores.md
    python3 benches/stores.py --duration 3  # a quick look
    python3 benches/stores.py --pin         # PostgreSQL on core 0, everything else on the others

With `--pin` (Linux `taskset`), PostgreSQL's processes (the postmaster and every backend it
forks) run on core 0 and the gateways, oha and nginx on the other cores, so the database has
its own share of the machine and an instance cannot take its CPU; the affinity is restored at
the end. Each setup also reports the deliveries made during the run (as records fully delivered
per second: the gateway spends its CPU on both, so acceptance alone flatters a gateway that lets
deliveries fall behind), the CPU each side spent per accepted record (from
/proc/PID/stat), and for PostgreSQL each instance's group commits (records per commit and how
long a commit takes, from its /metrics): what a second machine would give follows from those.

Uses the load benchmark's harness (benches/load.py): the release binary, the shipped
configuration with mutual TLS, the development PKI, and nginx answering 200 as the four
recipients. Each setup starts on an empty store (a fresh SQLite file, a fresh PostgreSQL
schema on 127.0.0.1:5432, see the README's Tests section) and is driven by oha at 64
connections (32 to each instance when there are two) with a 2 KB birth registration from
`on-vital-stats`. Only 127.0.0.1 is used; every run is bounded in time.
"""

import argparse
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import load  # noqa: E402  (the shared harness)

SERVER = os.environ.get("PASSERELLE_TEST_POSTGRES", "host=127.0.0.1 port=5432 user=postgres dbname=test")


def psql(sql):
    env = {**os.environ, "PGOPTIONS": "-c client_min_messages=warning"}
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-qc", sql], check=True, env=env)


def postgres_pids():
    out = subprocess.run(["pgrep", "-x", "postgres"], capture_output=True, text=True).stdout.split()
    return [int(p) for p in out]


def postgres_cpu():
    """CPU seconds of every PostgreSQL process, by pid (backends come and go)."""
    return {pid: load.cpu_seconds([pid]) for pid in postgres_pids()}


def pin_postgres(cores):
    """Sets the affinity of the postmaster and every process it has forked (new backends inherit it)."""
    for pid in postgres_pids():
        subprocess.run(["taskset", "-a", "-p", "-c", cores, str(pid)], check=False, capture_output=True)


def histogram_mean(text, name):
    """The mean of a histogram on a /metrics page (summed over its series)."""
    total = count = 0.0
    for line in text.splitlines():
        series, _, value = line.rpartition(" ")
        if series.startswith(name + "_sum"):
            total += float(value)
        elif series.startswith(name + "_count"):
            count += float(value)
    return total / count if count else 0.0


def shared_kek():
    """The key-encryption key every PostgreSQL instance of the run is given (made once)."""
    path = load.WORK / "shared-store.key"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(os.urandom(32).hex())
    return path


class Instance:
    """One gateway process on its own ports and data directory."""

    def __init__(self, name, base_config, partner_port, admin_port, store_url=None, wrapper=()):
        self.partner_port, self.admin_port = partner_port, admin_port
        text = base_config.read_text()
        text = text.replace(f"127.0.0.1:{load.PARTNER_PORT}", f"127.0.0.1:{partner_port}")
        text = text.replace(f"127.0.0.1:{load.ADMIN_PORT}", f"127.0.0.1:{admin_port}")
        # Each instance has its own data directory (its own signing key), the PKI and keys stay shared.
        text = text.replace('data_dir = "../data"', f'data_dir = "../{name}"')
        if store_url:
            text = text.replace("[store]\n", f'[store]\nurl = "{store_url}"\n')
            # Instances sharing a store share its key-encryption key: one's data keys are
            # unwrapped by the other (README, "Encryption at rest").
            text += f'\n[store.encryption]\nkey_file = "{shared_kek()}"\n'

        data = load.WORK / name
        if data.exists():
            shutil.rmtree(data)
        data.mkdir(mode=0o700)
        self.config = base_config.parent / f"{name}.toml"
        self.config.write_text(text)
        self.proc = subprocess.Popen(
            [*wrapper, str(load.ROOT / "target/release/passerelle"), "serve", "--config", str(self.config)],
            stderr=open(load.WORK / f"{name}.log", "a"),
        )
        load.wait_port(partner_port)
        load.wait_port(admin_port)

    def delivered(self):
        """Deliveries made so far (every recipient, outcome `delivered`), from /metrics."""
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/metrics", timeout=10).read().decode()
        return sum(
            float(line.rpartition(" ")[2])
            for line in text.splitlines()
            if line.startswith("passerelle_deliveries_total{") and 'outcome="delivered"' in line
        )

    def commits(self):
        """Records per group commit and ms per commit so far, from this instance's /metrics."""
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/metrics", timeout=10).read().decode()
        size = histogram_mean(text, "passerelle_store_commit_batch_size")
        ms = histogram_mean(text, "passerelle_store_commit_duration_seconds") * 1000
        return size, ms

    def stop(self):
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=60)


def drive(instances, body, tls, duration, wrapper=()):
    """oha against every instance at once; returns the summed rate and the worst p99, with the
    CPU the gateways and PostgreSQL spent per accepted record."""
    per = load.CONCURRENCY // len(instances)
    procs = []
    for inst in instances:
        url = f"https://localhost:{inst.partner_port}/v1/records/birth-registration"
        cmd = [*wrapper, "oha", "--no-tui", "--output-format", "json", "-c", str(per), "-z", f"{duration}s", *tls]
        cmd += ["-m", "POST", "-H", "Content-Type: application/json", "-D", str(body), url]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True))
    gateways = [inst.proc.pid for inst in instances]
    gateway_before, postgres_before = load.cpu_seconds(gateways), postgres_cpu()
    delivered_before = sum(inst.delivered() for inst in instances)
    results = [json.loads(p.communicate()[0]) for p in procs]
    gateway_cpu = load.cpu_seconds(gateways) - gateway_before
    delivered = sum(inst.delivered() for inst in instances) - delivered_before
    postgres_after = postgres_cpu()
    postgres_spent = sum(cpu - postgres_before.get(pid, 0.0) for pid, cpu in postgres_after.items())
    commits = [inst.commits() for inst in instances]
    accepted = sum(r.get("statusCodeDistribution", {}).get("202", 0) for r in results)
    total = sum(sum(r.get("statusCodeDistribution", {}).values()) for r in results)
    # Rates of accepted records (202) only: an instance answering 503 fast is not throughput.
    return {
        "rps": accepted / duration,
        # Four deliveries per record: records fully delivered per second, had they gone in order.
        "delivered_rps": delivered / 4 / duration,
        "each": [r.get("statusCodeDistribution", {}).get("202", 0) / duration for r in results],
        "p99": max((r["latencyPercentiles"]["p99"] or 0) * 1000 for r in results),
        "accepted": accepted,
        "total": total,
        "gateway_us": gateway_cpu * 1e6 / max(accepted, 1),
        "postgres_us": postgres_spent * 1e6 / max(accepted, 1),
        "commits": commits,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--no-build", action="store_true")
    parser.add_argument("--pin", action="store_true", help="PostgreSQL on core 0, the rest on the other cores")
    parser.add_argument("--postgres-only", action="store_true", help="skip the SQLite setup")
    parser.add_argument("--only", choices=["sqlite", "one", "two"], help="run one setup only")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    if args.pin and cores < 2:
        parser.error("--pin needs at least two cores")
    others = f"1-{cores - 1}" if cores > 2 else "1"
    wrapper = ("taskset", "-c", others) if args.pin else ()
    load.ensure_tools()
    config, pki, records = load.prepare(argparse.Namespace(no_build=args.no_build))
    ports = "\n".join(f"        listen 127.0.0.1:{p};" for p in load.RECIPIENT_PORTS.values())
    recipients = load.Nginx("recipients", "recipients.conf", {"@PORTS@": ports})
    recipients.start(load.RECIPIENT_PORTS["esdc-sin-registry"])
    if args.pin:
        pin_postgres("0")
        for pid in recipients.pids():
            subprocess.run(["taskset", "-a", "-p", "-c", others, str(pid)], check=True, capture_output=True)
    tls = load.client_tls(pki, "on-vital-stats")
    body = records / "birth.json"
    rows = []
    try:
        setups = [("SQLite", None, 1), ("PostgreSQL, one instance", "pg", 1), ("PostgreSQL, two instances", "pg", 2)]
        if args.only:
            setups = [setups[["sqlite", "one", "two"].index(args.only)]]
        elif args.postgres_only:
            setups = setups[1:]
        for label, engine, count in setups:
            schema = None
            url = None
            if engine == "pg":
                schema = f"bench_{uuid.uuid4().hex[:12]}"
                psql(f"CREATE SCHEMA {schema}")
                url = f"{SERVER} options='-c search_path={schema}'"
            instances = []
            try:
                for i in range(count):
                    name = f"{'pg' if engine else 'sqlite'}-{count}-{i}"
                    instances.append(Instance(name, config, 18443 + i, 19090 + i, url, wrapper))
                    # The second instance starts once the first has migrated the schema.
                    time.sleep(0.5)
                load.log(f"{label}: {args.duration} s at {load.CONCURRENCY} connections...")
                result = drive(instances, body, tls, args.duration, wrapper)
                load.log(f"  {result['rps']:.0f} records/s, p99 {result['p99']:.1f} ms, {result['accepted']}/{result['total']} accepted")
                rows.append((label, result))
            finally:
                for inst in instances:
                    inst.stop()
                if schema:
                    psql(f"DROP SCHEMA {schema} CASCADE")
    finally:
        recipients.stop()
        if args.pin:
            pin_postgres(f"0-{cores - 1}")

    now = datetime.datetime.now(datetime.timezone.utc)
    out = load.ROOT / "benches" / "results" / now.strftime("%Y-%m-%d")
    out.mkdir(parents=True, exist_ok=True)
    command = "python3 benches/stores.py --duration " + str(args.duration)
    command += " --pin" * args.pin + " --postgres-only" * args.postgres_only
    command += f" --only {args.only}" if args.only else ""
    pinning = (
        f"PostgreSQL pinned to core 0, gateways, oha and nginx to cores {others} (`taskset`)."
        if args.pin
        else "No pinning: every process shares every core."
    )
    lines = [
        "# Push throughput by store engine",
        "",
        f"Measured {now:%Y-%m-%d %H:%M} UTC on {load.machine()}, load generator, recipients and PostgreSQL",
        f"included, with `{command}`: oha at {load.CONCURRENCY} connections",
        "(split between instances), mutual TLS, a 2 KB birth registration with four recipients taking deliveries.",
        pinning,
        "",
        "| store | records/s accepted | per instance | delivered (records/s) | p99 ms | non-202 answers | gateway CPU µs/record | PostgreSQL CPU µs/record | records per commit | ms per commit |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, r in rows:
        each = " + ".join(f"{x:.0f}" for x in r["each"])
        size = " / ".join(f"{c[0]:.1f}" for c in r["commits"])
        ms = " / ".join(f"{c[1]:.1f}" for c in r["commits"])
        pg = f"{r['postgres_us']:.0f}" if label.startswith("PostgreSQL") else "-"
        lines.append(
            f"| {label} | {r['rps']:.0f} | {each} | {r['delivered_rps']:.0f} | {r['p99']:.1f} | {r['total'] - r['accepted']} "
            f"| {r['gateway_us']:.0f} | {pg} | {size} | {ms} |"
        )
    by_label = dict(rows)
    one, two = by_label.get("PostgreSQL, one instance"), by_label.get("PostgreSQL, two instances")
    if one and two and one["rps"]:
        lines += ["", f"Two instances / one: {two['rps'] / one['rps']:.2f}."]
    (out / ("stores-pinned.md" if args.pin else "stores.md")).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
