#!/usr/bin/env python3
"""Load benchmark: Passerelle against nginx, on this machine, in one run.

    python3 benches/load.py                 # every scenario, results in benches/results/
    python3 benches/load.py --quick         # shorter runs (a smoke test of the harness)
    python3 benches/load.py --only request  # one scenario
    python3 benches/load.py --skip profile  # every scenario but these
    python3 benches/load.py --only batch    # deliveries/s, one record per POST and batched

Builds the release binary; starts fast local recipient systems (nginx answering 200); starts
Passerelle with mutual TLS and its default settings on the shipped configuration; starts nginx
from benches/load/nginx.conf with the same certificates and client verification; drives both
with oha at the same concurrency, alternating, and writes a Markdown table and SVG charts with
throughput, latency percentiles, CPU seconds and peak RSS of both, and the ratio
Passerelle / nginx. Only 127.0.0.1 is used; every run is bounded in time or count.
"""

import argparse
import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOAD = ROOT / "benches" / "load"
WORK = ROOT / "target" / "bench-load"
PARTNER_PORT, ADMIN_PORT, NGINX_PORT = 18443, 19090, 28443
RECIPIENT_PORTS = {"esdc-sin-registry": 18101, "cra-child-benefit": 18102, "on-health-plan": 18103, "ottawa-city": 18104}
# The recipients' ports as the shipped partners file and benches/load/nginx.conf name them.
SHIPPED_RECIPIENT_PORTS = dict(RECIPIENT_PORTS)
CLK_TCK = os.sysconf("SC_CLK_TCK")
CONCURRENCY = 64
# The NATS server with JetStream the NATS leg publishes to, and the stream's subjects.
NATS = "127.0.0.1:4222"
NATS_STREAM, NATS_SUBJECT = "PASSERELLE_BENCH", "passerelle.bench"
# How the shipped partners file makes a recipient take its records from its mailbox.
PULLED = '[partner.delivery]\nmode = "pull"'
# How a recipient asks for batches in the batch leg (`scenario_batch`).
BATCH = "batch = { max_records = 100, max_wait_ms = 5 }"


def shift_ports(offset):
    """Every port moved up by `offset`, so that two runs on one machine do not meet."""
    global PARTNER_PORT, ADMIN_PORT, NGINX_PORT
    PARTNER_PORT, ADMIN_PORT, NGINX_PORT = PARTNER_PORT + offset, ADMIN_PORT + offset, NGINX_PORT + offset
    for partner in RECIPIENT_PORTS:
        RECIPIENT_PORTS[partner] += offset


def with_recipient_ports(text):
    """`text` with the shipped recipients' ports replaced by this run's."""
    for partner, port in SHIPPED_RECIPIENT_PORTS.items():
        text = text.replace(f"127.0.0.1:{port}", f"127.0.0.1:{RECIPIENT_PORTS[partner]}")
    return text


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def wait_port(port, timeout=30):
    import socket

    deadline = time.time() + timeout
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def ensure_tools():
    if not shutil.which("nginx"):
        log("Installing nginx from Debian's packages...")
        run(["apt-get", "install", "-y", "-qq", "nginx"])
    if not shutil.which("oha"):
        log("Installing oha from crates.io...")
        run(["cargo", "install", "oha", "--locked"])
    if not shutil.which("strace"):
        run(["apt-get", "install", "-y", "-qq", "strace"])


# ---------------------------------------------------------------- processes and their costs


def children(pid):
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in out]


def cpu_seconds(pids):
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except FileNotFoundError:
            pass
    return total / CLK_TCK


def status_kib(pid, key):
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except FileNotFoundError:
        return 0
    return 0


class Nginx:
    def __init__(self, name, template, replacements):
        self.prefix = WORK / name
        for d in ["body", "proxy", "fastcgi", "uwsgi", "scgi"]:
            (self.prefix / d).mkdir(parents=True, exist_ok=True)
        text = (LOAD / template).read_text()
        for k, v in {"@PREFIX@": str(self.prefix), **replacements}.items():
            text = text.replace(k, v)
        text = with_recipient_ports(text)
        self.conf = self.prefix / "nginx.conf"
        self.conf.write_text(text)
        self.proc = None

    def start(self, port):
        self.proc = subprocess.Popen(
            ["nginx", "-c", str(self.conf), "-p", str(self.prefix), "-g", "daemon off;"], stderr=subprocess.DEVNULL
        )
        wait_port(port)
        return self

    def pids(self):
        return [self.proc.pid] + children(self.proc.pid)

    def stop(self):
        if self.proc:
            self.proc.send_signal(signal.SIGQUIT)
            self.proc.wait(timeout=30)
            self.proc = None


class Passerelle:
    def __init__(self, config):
        self.config = config
        self.proc = None

    def start(self, wrapper=()):
        self.proc = subprocess.Popen(
            [*wrapper, str(ROOT / "target/release/passerelle"), "serve", "--config", str(self.config)],
            stderr=open(WORK / "passerelle.log", "a"),
        )
        # Under valgrind the gateway starts some fifty times slower.
        wait_port(PARTNER_PORT, timeout=180 if wrapper else 30)
        wait_port(ADMIN_PORT)
        return self

    def pid(self):
        # Under strace, the gateway is strace's child.
        kids = children(self.proc.pid)
        return kids[0] if kids and Path(f"/proc/{self.proc.pid}/comm").read_text().strip() == "strace" else self.proc.pid

    def metric(self, name, labels=None):
        text = urllib.request.urlopen(f"http://127.0.0.1:{ADMIN_PORT}/metrics", timeout=10).read().decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith("#"):
                continue
            series, _, value = line.rpartition(" ")
            metric_name, _, rest = series.partition("{")
            if metric_name == name and all(f'{k}="{v}"' in rest for k, v in (labels or {}).items()):
                total += float(value)
        return total

    def stop(self):
        if self.proc:
            # The gateway itself (not strace, when traced) shuts down cleanly on SIGINT.
            os.kill(self.pid(), signal.SIGINT)
            self.proc.wait(timeout=60)
            self.proc = None


# ---------------------------------------------------------------- setup


def ports_free():
    """Refuses to start when one of the benchmark's ports is taken: `wait_port` would take
    whatever listens there (an nginx a killed run left behind) for the server it started."""
    import socket

    for port in [PARTNER_PORT, ADMIN_PORT, NGINX_PORT, *RECIPIENT_PORTS.values()]:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                sys.exit(f"load.py: port {port} is taken; a run killed midway leaves its nginx behind "
                         f"(pkill -f {WORK}), or use --port-offset")


def prepare(args):
    if not args.no_build:
        log("Building the release binary...")
        run(["cargo", "build", "--release", "--quiet"], cwd=ROOT)
    if WORK.exists():
        shutil.rmtree(WORK)
    config = WORK / "config"
    shutil.copytree(ROOT / "config", config)
    shutil.copytree(ROOT / "schemas", WORK / "schemas")
    shutil.copytree(LOAD / "schemas" / "address-roll", WORK / "schemas" / "address-roll")
    shutil.copy(LOAD / "agreements" / "address-roll-ottawa.toml", config / "agreements")
    main = (config / "passerelle.toml").read_text()
    main = main.replace("127.0.0.1:8443", f"127.0.0.1:{PARTNER_PORT}").replace("127.0.0.1:9090", f"127.0.0.1:{ADMIN_PORT}")
    (config / "passerelle.toml").write_text(main)
    # The shipped city takes its records from its mailbox; the push scenarios push to all four.
    partners = with_recipient_ports((config / "partners.toml").read_text())
    partners = partners.replace(PULLED, f'[partner.delivery]\nendpoint = "http://127.0.0.1:{RECIPIENT_PORTS["ottawa-city"]}/inbox"\nconcurrency = 4')
    (config / "partners.toml").write_text(partners)
    # The same with every recipient taking its records from its mailbox (the request agreement,
    # whose responder must be pushed to, left out).
    pulled = WORK / "config-pull"
    shutil.copytree(config, pulled)
    (pulled / "agreements" / "sin-validation-ohip.toml").unlink()
    text = re.sub(r'\[partner\.delivery\]\nendpoint = "[^"]*"(\nconcurrency = \d+)?', PULLED, partners)
    (pulled / "partners.toml").write_text(text)
    # And with every recipient's records published to a JetStream stream (one subject each).
    nats = WORK / "config-nats"
    shutil.copytree(pulled, nats)
    text = re.sub(
        r'(id = "([a-z0-9-]+)"(?:(?!\[\[partner\]\]).)*?)\[partner\.delivery\]\nmode = "pull"',
        lambda m: m.group(1) + f'[partner.delivery]\nmode = "nats"\nurl = "nats://{NATS}"\nsubject = "{NATS_SUBJECT}.{m.group(2)}.{{type}}"\nconcurrency = 16',
        text,
        flags=re.S,
    )
    (nats / "partners.toml").write_text(text)
    # And with every push recipient taking its records in batches.
    batched = WORK / "config-batch"
    shutil.copytree(config, batched)
    text = re.sub(r'(\[partner\.delivery\]\nendpoint = "[^"]*")', lambda m: m.group(1) + "\n" + BATCH, partners)
    (batched / "partners.toml").write_text(text)
    # And with bodies stored in plaintext and deliveries unsigned (both on by default), to
    # measure what sealing and signing cost.
    plain = WORK / "config-plain"
    shutil.copytree(config, plain)
    text = (plain / "passerelle.toml").read_text()
    text = re.sub(r"^sign = true\b.*$", "", text, flags=re.M).replace("[delivery]\n", "[delivery]\n" + PLAIN_DELIVERY)
    (plain / "passerelle.toml").write_text(text + "\n[store.encryption]\nenabled = false\n")
    # And with the group commit's linger on (off by default), to measure what it changes.
    linger = WORK / "config-linger"
    shutil.copytree(config, linger)
    text = (linger / "passerelle.toml").read_text()
    assert "commit_linger_ms = 0" in text, "the shipped configuration names its linger"
    (linger / "passerelle.toml").write_text(text.replace("commit_linger_ms = 0", "commit_linger_ms = 1"))
    run([str(ROOT / "target/release/passerelle"), "dev-pki", "--config", str(config / "passerelle.toml")], stdout=subprocess.DEVNULL)
    pki = WORK / "data" / "pki"
    records = WORK / "records"
    records.mkdir()
    birth = json.loads((ROOT / "tests/data/records/birth-registration-1.1.json").read_text())
    (records / "birth.json").write_text(json.dumps(birth))
    (records / "invalid.json").write_text((ROOT / "tests/data/records/birth-registration-1.1-invalid.json").read_text())
    (records / "sin.json").write_text((ROOT / "tests/data/records/sin-validation-1.0.json").read_text())
    entry = {"address": {"street": "1200 Rue Saint-Laurent", "unit": "12", "municipality": "Ottawa", "province": "ON", "postal_code": "K1L 6X2", "country": "CA"}, "occupants": 3}
    roll = {"roll_id": "ROLL-2026-000001", "municipality": "Ottawa", "entries": [entry] * 1}
    per_entry = len(json.dumps(entry)) + 2
    roll["entries"] = [entry] * (256 * 1024 // per_entry)
    (records / "roll.json").write_text(json.dumps(roll))
    return config / "passerelle.toml", pki, records


# What turns signed deliveries off, for the cost measurement (`scenario_sealed`).
PLAIN_DELIVERY = "sign = false\n"


def client_tls(pki, partner):
    return ["--cacert", str(pki / "ca.pem"), "--cert", str(pki / "clients" / f"{partner}.pem"), "--key", str(pki / "clients" / f"{partner}-key.pem")]


def oha(url, tls, body=None, duration=None, count=None, rate=None, concurrency=CONCURRENCY):
    cmd = ["oha", "--no-tui", "--output-format", "json", "-c", str(concurrency), *tls]
    cmd += ["-z", f"{duration}s"] if duration else ["-n", str(count)]
    if rate:
        cmd += ["-q", str(rate), "--latency-correction"]
    if body:
        cmd += ["-m", "POST", "-H", "Content-Type: application/json", "-D", str(body)]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, check=True).stdout
    data = json.loads(out)
    p = data["latencyPercentiles"]
    codes = data.get("statusCodeDistribution", {})
    return {
        "rps": data["summary"]["requestsPerSec"],
        "p50": (p["p50"] or 0) * 1000,
        "p99": (p["p99"] or 0) * 1000,
        "p999": (p["p99.9"] or 0) * 1000,
        "codes": codes,
        "ok": sum(v for k, v in codes.items() if k.startswith("2")),
        "total": sum(codes.values()),
        "bytes": data["summary"].get("totalData", 0),
    }


def measured(pids_fn, fn):
    """Runs fn, returning its result with the CPU seconds spent by the processes."""
    pids = pids_fn()
    before = cpu_seconds(pids)
    result = fn()
    result["cpu"] = cpu_seconds(pids_fn()) - before
    return result


# ---------------------------------------------------------------- scenarios


def scenario_request(ctx):
    p_url = f"https://localhost:{PARTNER_PORT}/v1/requests/sin-validation"
    n_url = f"https://localhost:{NGINX_PORT}/v1/requests/sin-validation"
    tls = client_tls(ctx.pki, "on-health-plan")
    return ctx.alternate(lambda: oha(p_url, tls, ctx.records / "sin.json", duration=ctx.duration),
                         lambda: oha(n_url, tls, ctx.records / "sin.json", duration=ctx.duration))


def scenario_push_sustained(ctx):
    """The highest offered rate at which deliveries keep up (the backlog stays flat)."""
    tls = client_tls(ctx.pki, "on-vital-stats")
    url = f"https://localhost:{PARTNER_PORT}/v1/records/birth-registration"
    best = None
    for rate in ctx.rates:
        ctx.restart_passerelle()
        pending_before = ctx.passerelle.metric("passerelle_deliveries_pending")
        delivered_before = ctx.passerelle.metric("passerelle_deliveries_total", {"outcome": "delivered"})
        result = measured(ctx.passerelle_pids, lambda: oha(url, tls, ctx.records / "birth.json", duration=ctx.duration, rate=rate))
        time.sleep(2.5)  # the backlog gauge is refreshed every 2 s
        pending = ctx.passerelle.metric("passerelle_deliveries_pending") - pending_before
        delivered = ctx.passerelle.metric("passerelle_deliveries_total", {"outcome": "delivered"}) - delivered_before
        result["rate"] = rate
        # Records whose four deliveries all arrived, per second of the run.
        result["delivered_records_per_s"] = delivered / 4 / ctx.duration
        result["backlog"] = pending
        result["rss_mib"] = status_kib(ctx.passerelle.pid(), "VmHWM") / 1024
        flat = pending < rate * 0.5 and result["ok"] >= 0.97 * rate * ctx.duration
        log(f"  push at {rate}/s: accepted {result['rps']:.0f}/s, backlog {pending:.0f}, delivered {result['delivered_records_per_s']:.0f} records/s {'(keeps up)' if flat else '(falls behind)'}")
        if not flat:
            break
        best = result
    ctx.restart_passerelle()
    n_url = f"https://localhost:{NGINX_PORT}/v1/records/birth-registration"
    nginx = ctx.nginx_run(lambda: oha(n_url, tls, ctx.records / "birth.json", duration=ctx.duration))
    return {"passerelle": best or result, "nginx": nginx}


def scenario_burst(ctx):
    """Acceptance with every recipient down, against nginx's one-to-one forwarding."""
    tls = client_tls(ctx.pki, "on-vital-stats")
    ctx.recipients.stop()
    ctx.city.stop()
    ctx.restart_passerelle()
    url = f"https://localhost:{PARTNER_PORT}/v1/records/birth-registration"
    # The share of the run the store writer spent in transactions: near 1, the writer sets the pace.
    busy, started = ctx.passerelle.metric("passerelle_store_writer_busy_seconds_total"), time.monotonic()
    p = ctx.passerelle_run(lambda: oha(url, tls, ctx.records / "birth.json", duration=ctx.duration))
    p["writer_busy"] = (ctx.passerelle.metric("passerelle_store_writer_busy_seconds_total") - busy) / (time.monotonic() - started)
    ctx.recipients.start(RECIPIENT_PORTS["esdc-sin-registry"])
    ctx.city.start(RECIPIENT_PORTS["ottawa-city"])
    n = ctx.nginx_run(lambda: oha(f"https://localhost:{NGINX_PORT}/v1/forward/birth-registration", tls, ctx.records / "birth.json", duration=ctx.duration))
    # fsyncs per accepted record, counted from outside the process: the kernel's syscall
    # tracepoints (perf), which cost the gateway nothing; strace, which slows every traced
    # thread, only where perf cannot count them.
    ctx.recipients.stop()
    ctx.city.stop()
    ctx.restart_passerelle()
    calls, accepted = count_fsyncs(ctx, url, tls)
    p["fsyncs_per_record"] = calls / max(accepted, 1)
    log(f"  fsync: {calls} calls for {accepted} accepted records")
    ctx.recipients.start(RECIPIENT_PORTS["esdc-sin-registry"])
    ctx.city.start(RECIPIENT_PORTS["ottawa-city"])
    ctx.one_to_one = n
    return {"passerelle": p, "nginx": n}


def count_fsyncs(ctx, url, tls):
    """fsync and fdatasync calls of the gateway while it accepts `ctx.fsync_count` records."""
    out = WORK / "fsyncs.txt"
    pid = ctx.passerelle.pid()
    events = "syscalls:sys_enter_fsync,syscalls:sys_enter_fdatasync"
    probe = subprocess.run(["perf", "stat", "-e", events, "-p", str(pid), "--", "true"], capture_output=True, text=True)
    if probe.returncode == 0 and "not supported" not in probe.stderr:
        counter = subprocess.Popen(["perf", "stat", "-e", events, "-p", str(pid), "-o", str(out)])
        time.sleep(0.3)
        accepted = oha(url, tls, ctx.records / "birth.json", count=ctx.fsync_count)["ok"]
        time.sleep(0.5)
        counter.send_signal(signal.SIGINT)
        counter.wait(timeout=30)
        calls = sum(int(m.group(1).replace(",", "")) for m in re.finditer(r"^\s*([\d,]+)\s+syscalls:sys_enter_f", out.read_text(), re.M))
        return calls, accepted
    ctx.passerelle.stop()
    ctx.passerelle.start(wrapper=("strace", "-f", "--seccomp-bpf", "-c", "-o", str(out), "-e", "trace=fsync,fdatasync"))
    accepted = oha(url, tls, ctx.records / "birth.json", count=ctx.fsync_count)["ok"]
    ctx.passerelle.stop()
    calls = sum(int(m.group(1)) for m in re.finditer(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+\d*\s*f(?:data)?sync", out.read_text(), re.M))
    ctx.restart_passerelle()
    return calls, accepted


def scenario_invalid(ctx):
    tls = client_tls(ctx.pki, "on-vital-stats")
    ctx.restart_passerelle()
    p = ctx.passerelle_run(lambda: oha(f"https://localhost:{PARTNER_PORT}/v1/records/birth-registration", tls, ctx.records / "invalid.json", duration=ctx.duration))
    n = ctx.nginx_run(lambda: oha(f"https://localhost:{NGINX_PORT}/v1/forward/birth-registration", tls, ctx.records / "invalid.json", duration=ctx.duration))
    return {"passerelle": p, "nginx": n}


def scenario_large(ctx):
    tls = client_tls(ctx.pki, "ottawa-city")
    size = (ctx.records / "roll.json").stat().st_size
    ctx.restart_passerelle()
    p = ctx.passerelle_run(lambda: oha(f"https://localhost:{PARTNER_PORT}/v1/records/address-roll", tls, ctx.records / "roll.json", duration=ctx.duration, concurrency=16))
    n = ctx.nginx_run(lambda: oha(f"https://localhost:{NGINX_PORT}/v1/forward/address-roll", tls, ctx.records / "roll.json", duration=ctx.duration, concurrency=16))
    for r in (p, n):
        r["mb_per_s"] = r["ok"] / ctx.duration * size / 1e6
    return {"passerelle": p, "nginx": n}


def scenario_backlog(ctx):
    """One recipient down while records are accepted; memory before and after; drain time."""
    tls = client_tls(ctx.pki, "on-vital-stats")
    ctx.city.stop()
    ctx.restart_passerelle()
    pid = ctx.passerelle.pid()
    rss_before = status_kib(pid, "VmRSS") / 1024
    started = time.time()
    accepted = oha(f"https://localhost:{PARTNER_PORT}/v1/records/birth-registration", tls, ctx.records / "birth.json", count=ctx.backlog)
    accept_s = time.time() - started
    time.sleep(3)
    rss_after = status_kib(pid, "VmRSS") / 1024
    pending = ctx.passerelle.metric("passerelle_deliveries_pending", {"recipient": "ottawa-city"})
    ctx.city.start(RECIPIENT_PORTS["ottawa-city"])
    back = time.time()
    while ctx.passerelle.metric("passerelle_deliveries_pending", {"recipient": "ottawa-city"}) > 0 and time.time() - back < 900:
        time.sleep(0.5)
    drain = time.time() - back
    result = {"accepted": accepted["ok"], "accept_s": accept_s, "rss_before": rss_before, "rss_after": rss_after, "pending": pending, "drain_s": drain}
    log(f"  backlog: {accepted['ok']} accepted in {accept_s:.1f} s, RSS {rss_before:.0f} -> {rss_after:.0f} MiB, {pending:.0f} pending drained in {drain:.1f} s")
    return {"passerelle": result, "nginx": None}


def drain(ctx, expected, before, clients=(), poll=0.05):
    """Waits until `expected` more deliveries are delivered than `before`, reading the metrics
    every `poll` seconds; returns the seconds it took and the CPU seconds of the gateway and of
    `clients` meanwhile."""
    gateway = [ctx.passerelle.pid()]
    cpu_before = (cpu_seconds(gateway), cpu_seconds([c.pid for c in clients]))
    started = time.time()
    while ctx.passerelle.metric("passerelle_deliveries_total", {"outcome": "delivered"}) - before < expected:
        if time.time() - started > 900:
            raise RuntimeError(f"the backlog of {expected} deliveries did not drain in 15 minutes")
        time.sleep(poll)
    seconds = time.time() - started
    return seconds, cpu_seconds(gateway) - cpu_before[0], cpu_seconds([c.pid for c in clients]) - cpu_before[1]


def load_jetstream():
    """The example's JetStream helper (standard library only), as a module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("jetstream", ROOT / "config/examples/nats/jetstream.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def backlog(ctx):
    """A fresh store holding the deliveries of `modes_records` records, made with every
    recipient pulling and nobody taking anything; how many."""
    tls = client_tls(ctx.pki, "on-vital-stats")
    url = f"https://localhost:{PARTNER_PORT}/v1/records/birth-registration"
    ctx.use_config(WORK / "config-pull" / "passerelle.toml")
    accepted = oha(url, tls, ctx.records / "birth.json", count=ctx.modes_records)
    return accepted["ok"] * 4


def scenario_modes(ctx):
    """Deliveries per second by each delivery mode, draining the same backlog. The backlog is
    made with every recipient pulling and nobody taking anything; then the gateway restarts on
    the same store with the recipients pushed to (four nginx recipients) or published to (NATS
    JetStream, one subject each on one stream of the local server), or four `passerelle inbox`
    clients take batches of 100."""
    results = {}

    def record(mode, expected, seconds, cpu, client_cpu=0.0, **extra):
        results[mode] = {"deliveries": expected, "seconds": seconds, "per_s": expected / seconds, "cpu": cpu, "client_cpu": client_cpu, **extra}
        log(f"  {mode}: {expected} deliveries in {seconds:.1f} s, {expected / seconds:.0f}/s, gateway CPU {cpu:.1f} s, clients {client_cpu:.1f} s")

    # Push: the same store, the recipients now pushed to.
    expected = backlog(ctx)
    ctx.switch_config(ctx.config)
    record("push", expected, *drain(ctx, expected, 0.0)[:2])

    # Pull: every recipient takes its deliveries with the reference client.
    expected = backlog(ctx)
    binary = str(ROOT / "target/release/passerelle")
    clients = []
    for partner in RECIPIENT_PORTS:
        cmd = [binary, "inbox", "--url", f"https://localhost:{PARTNER_PORT}", "--ca", str(ctx.pki / "ca.pem"),
               "--cert", str(ctx.pki / "clients" / f"{partner}.pem"), "--key", str(ctx.pki / "clients" / f"{partner}-key.pem"),
               "--limit", "100", "--wait", "1"]
        clients.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    before = ctx.passerelle.metric("passerelle_deliveries_total", {"outcome": "delivered"})
    try:
        seconds, cpu, client_cpu = drain(ctx, expected, before, clients)
    finally:
        for c in clients:
            c.terminate()
            c.wait(timeout=30)
    record("pull", expected, seconds, cpu, client_cpu)

    # NATS JetStream: each delivery counts once JetStream has stored it. The stream is made
    # before and deleted after.
    jetstream = load_jetstream()
    stream = {"name": NATS_STREAM, "subjects": [f"{NATS_SUBJECT}.>"], "storage": "file", "duplicate_window": 120 * 10**9}
    jetstream.request(f"$JS.API.STREAM.DELETE.{NATS_STREAM}", {})
    answer = jetstream.request(f"$JS.API.STREAM.CREATE.{NATS_STREAM}", stream)
    if "error" in answer:
        raise RuntimeError(f"JetStream: {answer['error']}")
    try:
        expected = backlog(ctx)
        ctx.switch_config(WORK / "config-nats" / "passerelle.toml")
        seconds, cpu, _ = drain(ctx, expected, 0.0)
        stored = jetstream.request(f"$JS.API.STREAM.INFO.{NATS_STREAM}", {})["state"]["messages"]
    finally:
        jetstream.request(f"$JS.API.STREAM.DELETE.{NATS_STREAM}", {})
    record("nats", expected, seconds, cpu, stored=stored)
    ctx.use_config(ctx.config)
    return {"passerelle": results, "nginx": None}


def scenario_batch(ctx):
    """Deliveries per second, one record per POST and batched (`BATCH`), each draining the same
    backlog, next to nginx's one-to-one forwarding (requests/s, each one record to one
    upstream). One record per POST is measured twice: to the nginx recipients, and to the
    per-record recipient the batched leg needs (nginx cannot answer per record), so that
    batching is compared on the same recipient."""
    results = {}

    def leg(name, config, recipient=None):
        expected = backlog(ctx)
        ctx.switch_config(config)
        seconds, cpu, recipient_cpu = drain(ctx, expected, 0.0, [recipient] if recipient else [])
        results[name] = {"deliveries": expected, "seconds": seconds, "per_s": expected / seconds, "cpu": cpu, "recipient_cpu": recipient_cpu}
        log(f"  {name}: {expected} deliveries in {seconds:.1f} s, {expected / seconds:.0f}/s, gateway CPU {cpu:.1f} s, recipient {recipient_cpu:.1f} s")

    leg("single, nginx recipients", ctx.config)
    ctx.recipients.stop()
    ctx.city.stop()
    ports = [str(p) for p in RECIPIENT_PORTS.values()]
    recipient = subprocess.Popen([sys.executable, str(LOAD / "batch_recipient.py"), *ports])
    try:
        for port in RECIPIENT_PORTS.values():
            wait_port(port)
        leg("single, per-record recipient", ctx.config, recipient)
        leg(f"batched ({BATCH}), per-record recipient", WORK / "config-batch" / "passerelle.toml", recipient)
    finally:
        recipient.terminate()
        recipient.wait(timeout=30)
        ctx.recipients.start(RECIPIENT_PORTS["esdc-sin-registry"])
        ctx.city.start(RECIPIENT_PORTS["ottawa-city"])
    ctx.use_config(ctx.config)
    tls = client_tls(ctx.pki, "on-vital-stats")
    forward = f"https://localhost:{NGINX_PORT}/v1/forward/birth-registration"
    nginx = ctx.nginx_run(lambda: oha(forward, tls, ctx.records / "birth.json", duration=ctx.duration))
    log(f"  nginx one-to-one forwarding: {nginx['rps']:.0f} req/s")
    return {"passerelle": results, "nginx": nginx}


def scenario_sealed(ctx):
    """What sealing bodies at rest and signing deliveries cost: the same two runs with both on
    (the default) and both off, alternated twice in one run. The burst accepts with every
    recipient down (sealing only); the sustained run offers a rate both keep up with and drains
    every delivery (sealing, opening and one signature per delivery). The cost is the gateway's
    CPU per record, in µs."""
    tls = client_tls(ctx.pki, "on-vital-stats")
    url = f"https://localhost:{PARTNER_PORT}/v1/records/birth-registration"
    body = ctx.records / "birth.json"
    plain = WORK / "config-plain" / "passerelle.toml"
    runs = {"on": [], "off": []}
    for _ in range(2):
        for label, config in (("on", ctx.config), ("off", plain)):
            ctx.use_config(config)
            ctx.recipients.stop()
            ctx.city.stop()
            ctx.restart_passerelle()
            burst = ctx.passerelle_run(lambda: oha(url, tls, body, duration=ctx.duration))
            ctx.recipients.start(RECIPIENT_PORTS["esdc-sin-registry"])
            ctx.city.start(RECIPIENT_PORTS["ottawa-city"])
            ctx.restart_passerelle()
            cpu_before = cpu_seconds(ctx.passerelle_pids())
            sustained = oha(url, tls, body, duration=ctx.duration, rate=ctx.sealed_rate)
            seconds, _, _ = drain(ctx, sustained["ok"] * 4, 0.0)
            cpu = cpu_seconds(ctx.passerelle_pids()) - cpu_before
            run = {
                "burst_rps": burst["rps"],
                "burst_us": burst["cpu"] / max(burst["ok"], 1) * 1e6,
                "burst_p50": burst["p50"],
                "burst_p99": burst["p99"],
                "sustained_rps": sustained["rps"],
                "sustained_us": cpu / max(sustained["ok"], 1) * 1e6,
                "sustained_p50": sustained["p50"],
                "sustained_p99": sustained["p99"],
                "drain_s": seconds,
            }
            log(f"  {label}: burst {run['burst_rps']:.0f}/s at {run['burst_us']:.0f} µs CPU/record; sustained {run['sustained_rps']:.0f}/s, "
                f"{run['sustained_us']:.0f} µs CPU/record with its four deliveries")
            runs[label].append(run)
    ctx.use_config(ctx.config)
    return {"passerelle": runs, "nginx": None}


def scenario_linger(ctx):
    """What the group commit's linger changes at the acceptance burst (recipients down): the
    same burst with `store.commit_linger_ms` at 1 and 0 (the default), alternated twice in one
    run, with the fsyncs per accepted record counted from outside."""
    tls = client_tls(ctx.pki, "on-vital-stats")
    url = f"https://localhost:{PARTNER_PORT}/v1/records/birth-registration"
    lingering = WORK / "config-linger" / "passerelle.toml"
    runs = {"1 ms": [], "0": []}
    ctx.recipients.stop()
    ctx.city.stop()
    for _ in range(2):
        for label, config in (("1 ms", lingering), ("0", ctx.config)):
            ctx.use_config(config)
            burst = ctx.passerelle_run(lambda: oha(url, tls, ctx.records / "birth.json", duration=ctx.duration))
            ctx.restart_passerelle()
            calls, accepted = count_fsyncs(ctx, url, tls)
            burst["fsyncs_per_record"] = calls / max(accepted, 1)
            log(f"  linger {label}: {burst['rps']:.0f} req/s, p50 {burst['p50']:.2f} ms, p99 {burst['p99']:.2f} ms, "
                f"{burst['fsyncs_per_record']:.3f} fsync/record")
            runs[label].append(burst)
    ctx.recipients.start(RECIPIENT_PORTS["esdc-sin-registry"])
    ctx.city.start(RECIPIENT_PORTS["ottawa-city"])
    ctx.use_config(ctx.config)
    return {"passerelle": runs, "nginx": None}


# Functions whose exclusive instructions are the async tasks inlined into them (see scenario_profile).
RUNTIME_FRAMES = re.compile(
    r"tokio::runtime::|tokio::task::spawn|std::sys::|thread_start|call_once|clone\.S|start_thread|__rust_begin_short_backtrace"
)


def scenario_profile(ctx):
    """Where a record's instructions go: the gateway under callgrind (instruction counts, the
    same for the same binary and inputs however busy the machine is), counters zeroed once it
    has started, then `profile_records` records accepted with the recipients down, and then
    their deliveries drained with the recipients up. Writes each phase's top functions
    (exclusive instructions) beside the results."""
    tls = client_tls(ctx.pki, "on-vital-stats")
    url = f"https://localhost:{PARTNER_PORT}/v1/records/birth-registration"
    out = WORK / "callgrind"
    out.mkdir(exist_ok=True)
    ctx.recipients.stop()
    ctx.city.stop()
    ctx.passerelle.stop()
    for f in (WORK / "data").glob("passerelle.sqlite*"):
        f.unlink()
    ctx.passerelle.start(wrapper=("valgrind", "--tool=callgrind", f"--callgrind-out-file={out}/callgrind.%p.out", "--dump-instr=no"))
    pid = str(ctx.passerelle.pid())
    phases = {}

    def phase(name, fn):
        run(["callgrind_control", "--zero", pid], stdout=subprocess.DEVNULL)
        units = fn()
        run(["callgrind_control", "--dump=" + name, pid], stdout=subprocess.DEVNULL)
        time.sleep(1)
        dump = max(out.glob(f"callgrind.{pid}.out.*"), key=lambda f: f.stat().st_mtime)
        text = subprocess.run(["callgrind_annotate", "--inclusive=no", "--threshold=100", str(dump)], capture_output=True, text=True, check=True).stdout
        total = int(re.search(r"^([\d,]+)\s+\(100\.0%\)\s+PROGRAM TOTALS", text, re.M).group(1).replace(",", ""))
        top = []
        for m in re.finditer(r"^\s*([\d,]+)\s+\(\s*([\d.]+)%\)\s+(\S.*)$", text, re.M):
            # Frames of the runtime and of thread start-up hold the async code inlined into them:
            # their share is what no named function below accounts for.
            if "PROGRAM TOTALS" in m.group(3) or RUNTIME_FRAMES.search(m.group(3)):
                continue
            top.append((float(m.group(2)), m.group(3).strip()))
            if len(top) == 25:
                break
        phases[name] = {"units": units, "instructions": total, "per_unit": total / max(units, 1), "top": top}
        log(f"  {name}: {total / max(units, 1) / 1e6:.2f} M instructions per unit over {units}")

    phase("accept", lambda: oha(url, tls, ctx.records / "birth.json", count=ctx.profile_records, concurrency=8)["ok"])
    before = ctx.passerelle.metric("passerelle_deliveries_total", {"outcome": "delivered"})
    ctx.recipients.start(RECIPIENT_PORTS["esdc-sin-registry"])
    ctx.city.start(RECIPIENT_PORTS["ottawa-city"])
    # The metrics are read every 2 s, as a scraper would: their encoding is not a delivery's cost.
    phase("deliver", lambda: (drain(ctx, ctx.profile_records * 4, before, poll=2.0), ctx.profile_records * 4)[1])
    ctx.restart_passerelle()
    return {"passerelle": phases, "nginx": None}


class Context:
    def __init__(self, args, config, pki, records):
        self.duration = 3 if args.quick else args.duration
        # Steps of 250 up to 2,000: sustained push sits between 1,000 and 1,500 on these machines,
        # where steps of 500 read 0.16 or 0.25 of nginx's mirror with nothing in between.
        self.rates = [1000, 2000] if args.quick else [1000, 1250, 1500, 1750, 2000, 2500, 3000, 4000, 5000, 6000, 8000]
        self.fsync_count = 2000 if args.quick else 20000
        self.backlog = 5000 if args.quick else 100000
        self.records, self.pki = records, pki
        self.modes_records = 2000 if args.quick else 20000
        self.sealed_rate = 500 if args.quick else 1000
        self.profile_records = 200 if args.quick else 2000
        self.config = config
        self.passerelle = Passerelle(config)
        ports = "\n".join(f"        listen 127.0.0.1:{p};" for k, p in RECIPIENT_PORTS.items() if k != "ottawa-city")
        self.recipients = Nginx("recipients", "recipients.conf", {"@PORTS@": ports}).start(RECIPIENT_PORTS["esdc-sin-registry"])
        city = f"        listen 127.0.0.1:{RECIPIENT_PORTS['ottawa-city']};"
        self.city = Nginx("city", "recipients.conf", {"@PORTS@": city}).start(RECIPIENT_PORTS["ottawa-city"])
        workers = str(os.cpu_count())
        self.nginx = Nginx("nginx", "nginx.conf", {"@WORKERS@": workers, "@PKI@": str(pki), "@PORT@": str(NGINX_PORT)}).start(NGINX_PORT)
        self.passerelle.start()

    def passerelle_pids(self):
        return [self.passerelle.pid()]

    def restart_passerelle(self):
        """A fresh gateway on an empty store: no scenario inherits another's backlog."""
        self.passerelle.stop()
        for f in (WORK / "data").glob("passerelle.sqlite*"):
            f.unlink()
        self.passerelle.start()

    def use_config(self, config):
        """A fresh gateway on an empty store, on another configuration."""
        self.passerelle.stop()
        self.passerelle = Passerelle(config)
        self.restart_passerelle()

    def switch_config(self, config):
        """The gateway restarted on another configuration, keeping its store."""
        self.passerelle.stop()
        self.passerelle = Passerelle(config)
        self.passerelle.start()

    def restart_nginx(self):
        self.nginx.stop()
        self.nginx.start(NGINX_PORT)

    def passerelle_run(self, fn):
        r = measured(self.passerelle_pids, fn)
        r["rss_mib"] = status_kib(self.passerelle.pid(), "VmHWM") / 1024
        return r

    def nginx_run(self, fn):
        self.restart_nginx()
        r = measured(self.nginx.pids, fn)
        r["rss_mib"] = sum(status_kib(p, "VmHWM") for p in self.nginx.pids()) / 1024
        return r

    def alternate(self, p_fn, n_fn):
        self.restart_passerelle()
        p = self.passerelle_run(p_fn)
        n = self.nginx_run(n_fn)
        return {"passerelle": p, "nginx": n}

    def stop(self):
        for x in (self.passerelle, self.nginx, self.recipients, self.city):
            x.stop()


SCENARIOS = {
    "request": ("request/response", scenario_request),
    "push": ("push, sustained", scenario_push_sustained),
    "burst": ("push, acceptance burst", scenario_burst),
    "invalid": ("invalid flood", scenario_invalid),
    "large": ("large record (256 KB)", scenario_large),
    "backlog": ("backlog", scenario_backlog),
    "modes": ("delivery modes", scenario_modes),
    "batch": ("deliveries, single and batched", scenario_batch),
    "sealed": ("sealed at rest and signed", scenario_sealed),
    "linger": ("group commit linger", scenario_linger),
    "profile": ("instructions per record (callgrind)", scenario_profile),
}


# ---------------------------------------------------------------- report


def machine():
    cores = os.cpu_count()
    mem = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1)) // 1024 // 1024
    model = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text())
    return f"{cores} cores ({model.group(1).strip() if model else 'unknown CPU'}), {mem} GiB"


def ratio(a, b):
    return f"{a / b:.2f}" if b else "n/a"


def report(results, args):
    stamp = datetime.datetime.now(datetime.timezone.utc)
    # A partial run (--only) goes beside the full runs and leaves latest.md to the last full one.
    name = stamp.strftime("%Y-%m-%d") + "".join(f"-{o}" for o in args.only or [])
    out = ROOT / "benches" / "results" / name
    # A second run the same day goes beside the first rather than over it (committed results).
    if out.exists():
        out = out.with_name(f"{name}-{stamp:%H%M}")
    out.mkdir(parents=True, exist_ok=True)
    lines = [
        f"Measured {stamp:%Y-%m-%d %H:%M} UTC on {machine()}, load generator included, with "
        f"`python3 benches/load.py{' --quick' if args.quick else ''}{''.join(f' --only {o}' for o in args.only or [])}{''.join(f' --skip {o}' for o in args.skip)}`; oha at {CONCURRENCY} connections "
        f"(16 for 256 KB records), mutual TLS on both sides, {args.duration if not args.quick else 3} s per run.",
        "",
        "| scenario | Passerelle | nginx | ratio | p50 ms (P / n) | p99 ms (P / n) | p99.9 ms (P / n) | CPU s (P / n) | peak RSS MiB (P / n) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    bars = []
    for key, (title, _) in SCENARIOS.items():
        r = results.get(key)
        if not r:
            continue
        p, n = r["passerelle"], r["nginx"]
        if key == "modes":
            push = p["push"]
            for mode, m in p.items():
                per_cpu = m["deliveries"] / max(m["cpu"], 1e-9)
                lines.append(
                    f"| {title}: {mode} | {m['deliveries']} deliveries drained in {m['seconds']:.1f} s: {m['per_s']:.0f}/s "
                    f"({per_cpu:.0f} per gateway CPU second; clients {m['client_cpu']:.1f} CPU s) | | "
                    f"{ratio(m['per_s'], push['per_s'])} × push | | | | {m['cpu']:.1f} / | |"
                )
            continue
        if key == "batch":
            for leg, m in p.items():
                lines.append(
                    f"| {title}: {leg} | {m['deliveries']} deliveries drained in {m['seconds']:.1f} s: {m['per_s']:.0f}/s "
                    f"(recipient {m['recipient_cpu']:.1f} CPU s) | {n['rps']:.0f} req/s (one-to-one forwarding) | "
                    f"{ratio(m['per_s'], n['rps'])} | | | | {m['cpu']:.1f} / {n['cpu']:.1f} | |"
                )
            continue
        if key == "sealed":
            def mean(label, field):
                return sum(r[field] for r in p[label]) / len(p[label])
            for field, what in (("burst", "acceptance burst, recipients down"), ("sustained", f"sustained at {p['on'][0]['sustained_rps']:.0f}/s, four deliveries each")):
                on, off = mean("on", f"{field}_us"), mean("off", f"{field}_us")
                lines.append(
                    f"| {title}: {what} | on: {mean('on', f'{field}_rps'):.0f} req/s, {on:.0f} µs CPU/record; off: {mean('off', f'{field}_rps'):.0f} req/s, "
                    f"{off:.0f} µs CPU/record; cost {on - off:+.0f} µs/record | | {ratio(mean('on', f'{field}_rps'), mean('off', f'{field}_rps'))} × off | "
                    f"{mean('on', f'{field}_p50'):.2f} / {mean('off', f'{field}_p50'):.2f} (on / off) | {mean('on', f'{field}_p99'):.2f} / {mean('off', f'{field}_p99'):.2f} | | | |"
                )
            continue
        if key == "profile":
            for name, ph in p.items():
                unit, units = ("accepted record", "accepted records") if name == "accept" else ("delivery", "deliveries")
                lines.append(f"| {title}: {name} | {ph['per_unit'] / 1e6:.2f} M per {unit} ({ph['units']} {units}) | | | | | | | |")
                (out / f"profile-{name}.txt").write_text(
                    f"{ph['per_unit'] / 1e6:.2f} M instructions per {unit}; the named functions with the most exclusive "
                    "instructions (the async tasks' own code is inlined into the runtime's frames, left out):\n"
                    + "".join(f"{pct:6.2f} %  {fn}\n" for pct, fn in ph["top"])
                )
            continue
        if key == "linger":
            def mean(label, field):
                return sum(r[field] for r in p[label]) / len(p[label])
            for label in p:
                lines.append(
                    f"| {title} {label} | {mean(label, 'rps'):.0f} req/s, {mean(label, 'fsyncs_per_record'):.3f} fsync/record | | "
                    f"{ratio(mean(label, 'rps'), mean('0', 'rps'))} × no linger | {mean(label, 'p50'):.2f} / | {mean(label, 'p99'):.2f} / | "
                    f"{mean(label, 'p999'):.2f} / | {mean(label, 'cpu'):.1f} / | |"
                )
            continue
        if key == "backlog":
            lines.append(
                f"| {title} | {p['accepted']} accepted in {p['accept_s']:.1f} s; RSS {p['rss_before']:.0f} → {p['rss_after']:.0f} MiB; "
                f"{p['pending']:.0f} pending drained in {p['drain_s']:.1f} s | | | | | | | |"
            )
            continue
        if key == "push":
            value = f"{p['rps']:.0f} accepted/s at {p.get('rate', '?')}/s offered, {p['delivered_records_per_s']:.0f} records fully delivered/s, backlog +{p['backlog']:.0f}"
            nv = f"{n['rps']:.0f} req/s (four-way mirror)"
            rr = ratio(p["delivered_records_per_s"], n["rps"])
        elif key == "large":
            value, nv, rr = f"{p['rps']:.0f} req/s ({p['mb_per_s']:.1f} MB/s validated)", f"{n['rps']:.0f} req/s ({n['mb_per_s']:.1f} MB/s)", ratio(p["rps"], n["rps"])
        else:
            value, nv, rr = f"{p['rps']:.0f} req/s", f"{n['rps']:.0f} req/s", ratio(p["rps"], n["rps"])
        if key == "burst":
            value += f", {p['fsyncs_per_record']:.3f} fsync/record"
            if "writer_busy" in p:
                value += f", store writer busy {p['writer_busy'] * 100:.0f} %"
        lines.append(
            f"| {title} | {value} | {nv} | {rr} | {p['p50']:.2f} / {n['p50']:.2f} | {p['p99']:.2f} / {n['p99']:.2f} | "
            f"{p['p999']:.2f} / {n['p999']:.2f} | {p['cpu']:.1f} / {n['cpu']:.1f} | {p['rss_mib']:.0f} / {n['rss_mib']:.0f} |"
        )
        bars.append((title, p["rps"] if key != "push" else p["delivered_records_per_s"], n["rps"], p, n))
    table = "\n".join(lines) + "\n"
    (out / "results.md").write_text(table)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "throughput.svg").write_text(svg_bars(bars))
    (out / "latency.svg").write_text(svg_latency(bars))
    if not args.only:
        (ROOT / "benches" / "results" / "latest.md").write_text(f"Results: [{out.name}]({out.name}/results.md)\n\n" + table)
    print(table)
    log(f"Written to {out}")


def svg_bars(bars):
    width, row = 760, 56
    height = 40 + row * len(bars)
    top = max([max(b[1], b[2]) for b in bars] + [1])
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
             '<text x="10" y="20" font-weight="bold">Throughput (requests or records per second): Passerelle (blue) and nginx (grey)</text>']
    for i, (title, p, n, _, _) in enumerate(bars):
        y = 34 + i * row
        parts.append(f'<text x="10" y="{y + 14}">{title}</text>')
        for j, (v, colour) in enumerate([(p, "#1f5fa8"), (n, "#9a9a9a")]):
            w = 400 * v / top
            parts.append(f'<rect x="230" y="{y + 2 + j * 20}" width="{w:.1f}" height="16" fill="{colour}"/>')
            parts.append(f'<text x="{235 + w:.1f}" y="{y + 15 + j * 20}">{v:,.0f}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def svg_latency(bars):
    width, row = 760, 56
    height = 40 + row * len(bars)
    top = max([max(b[3]["p999"], b[4]["p999"]) for b in bars] + [1])
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
             '<text x="10" y="20" font-weight="bold">Latency, ms: p50 | p99 | p99.9 marks; Passerelle (blue) over nginx (grey)</text>']
    for i, (title, _, _, p, n) in enumerate(bars):
        y = 34 + i * row
        parts.append(f'<text x="10" y="{y + 14}">{title}</text>')
        for j, (r, colour) in enumerate([(p, "#1f5fa8"), (n, "#9a9a9a")]):
            yy = y + 10 + j * 20
            x = lambda v: 230 + 400 * v / top
            parts.append(f'<line x1="{x(r["p50"]):.1f}" y1="{yy}" x2="{x(r["p999"]):.1f}" y2="{yy}" stroke="{colour}" stroke-width="4"/>')
            for k in ("p50", "p99", "p999"):
                parts.append(f'<line x1="{x(r[k]):.1f}" y1="{yy - 6}" x2="{x(r[k]):.1f}" y2="{yy + 6}" stroke="{colour}" stroke-width="2"/>')
            parts.append(f'<text x="{x(r["p999"]) + 6:.1f}" y="{yy + 4}">{r["p50"]:.1f} | {r["p99"]:.1f} | {r["p999"]:.1f}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short runs, to check the harness")
    parser.add_argument("--duration", type=int, default=10, help="seconds per run")
    parser.add_argument("--only", choices=list(SCENARIOS), action="append", help="run only these scenarios")
    parser.add_argument("--skip", choices=list(SCENARIOS), action="append", default=[], help="leave these scenarios out of a full run")
    parser.add_argument("--no-build", action="store_true", help="use the release binary as it is")
    parser.add_argument("--port-offset", type=int, default=0, help="move every port up by this much (another run on the machine)")
    args = parser.parse_args()
    shift_ports(args.port_offset)
    ports_free()
    ensure_tools()
    config, pki, records = prepare(args)
    ctx = Context(args, config, pki, records)
    results = {}
    try:
        for key, (title, fn) in SCENARIOS.items():
            if (args.only and key not in args.only) or key in args.skip:
                continue
            log(f"Scenario: {title}")
            results[key] = fn(ctx)
    finally:
        ctx.stop()
    report(results, args)


if __name__ == "__main__":
    main()
