#!/usr/bin/env python3
"""Throughput of a saga stack as an outside client sees it, the kind of load test issue 17 cites.

Issue 17 quotes an outside load test: a Python client sends 1,000 orders from 32 clients
after 8,000 orders of warm-up, and counts sagas per second. This script does the same to
any stack that speaks the original's interface: `POST /order` on the frontend, and the
topics `payment-created` and `error` on a Pub/Sub emulator. It needs nothing but the
standard library, and knows nothing of either implementation, so that the Rust saga and the
original Python sample can be measured by the same client, one after the other.

How it counts: it makes two pull subscriptions of its own (on `payment-created` and
`error`), tags every order with a field `load` (the original and ours pass a client's extra
fields along), and takes a saga as ended when its tag first arrives on either topic. A
phase's sagas per second are its orders divided by the time from its first request to its
last ended saga. The warm-up phase runs (and must end) first; only the measured phase is
reported, with how busy the machine's CPUs were over that same span (`machine_busy_percent`,
from Linux's /proc/stat; null elsewhere): near 100 means the stack was bound by CPU, and
sagas per second then compare the CPU each saga costs. (Busy over the client's whole run
says nothing: it spends about as long again setting up and waiting, the machine idle.)
It stops by itself: a phase whose sagas have not all ended `--wait` seconds after the last
request is reported with what did end, and the exit code is 1.

Loopback only; it sends exactly the orders asked for.

    python3 tools/outside-load/outside_load.py --frontend http://127.0.0.1:8080 \\
        --pubsub 127.0.0.1:8085 --project saga-local
"""

import argparse
import base64
import http.client
import json
import os
import queue
import sys
import threading
import time
import urllib.parse

ITEMS = ("widget", "wotsit")
USERS = ("jack", "jill")


def request(conn_box, method, url, body):
    """One request on a kept-alive connection of this thread; a new one if it broke."""
    parts = urllib.parse.urlsplit(url)
    data = json.dumps(body).encode()
    for attempt in (1, 2):
        conn = conn_box.get("conn")
        if conn is None:
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
            conn_box["conn"] = conn
        try:
            path = parts.path + ("?" + parts.query if parts.query else "")
            conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            payload = response.read()
            return response.status, payload
        except (OSError, http.client.HTTPException):
            conn.close()
            conn_box["conn"] = None
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


class PubSub:
    """The emulator's REST API, as much of it as this needs."""

    def __init__(self, host, project):
        self.base = f"http://{host}/v1/projects/{project}"
        self.project = project
        self.local = threading.local()

    def call(self, method, path, body):
        box = self.local.__dict__
        status, payload = request(box, method, self.base + path, body)
        if status >= 300:
            raise RuntimeError(f"Pub/Sub {method} {path}: {status} {payload[:200]!r}")
        return json.loads(payload or b"{}")

    def subscribe(self, name, topic):
        self.call("PUT", f"/subscriptions/{name}", {
            "topic": f"projects/{self.project}/topics/{topic}",
            "ackDeadlineSeconds": 60,
        })

    def unsubscribe(self, name):
        try:
            self.call("DELETE", f"/subscriptions/{name}", {})
        except (RuntimeError, OSError):
            pass

    def pull(self, name):
        got = self.call("POST", f"/subscriptions/{name}:pull", {"maxMessages": 1000})
        messages = got.get("receivedMessages", [])
        if messages:
            self.call("POST", f"/subscriptions/{name}:acknowledge",
                      {"ackIds": [m["ackId"] for m in messages]})
        return [m["message"] for m in messages]


class Ends:
    """When each tagged saga first ended, and how: filled by one puller per subscription."""

    def __init__(self):
        self.lock = threading.Lock()
        self.ended = {}
        self.duplicates = 0
        self.stop = threading.Event()

    def puller(self, pubsub, name, outcome):
        while not self.stop.is_set():
            try:
                messages = pubsub.pull(name)
            except (RuntimeError, OSError) as e:
                print(f"outside-load | pull from {name} failed, trying again: {e}", file=sys.stderr)
                time.sleep(0.5)
                continue
            now = time.monotonic()
            with self.lock:
                for m in messages:
                    try:
                        tag = json.loads(base64.b64decode(m.get("data", ""))).get("load")
                    except (ValueError, AttributeError):
                        continue
                    if tag is None:
                        continue
                    if tag in self.ended:
                        self.duplicates += 1
                    else:
                        self.ended[tag] = (now, outcome)
            if not messages:
                time.sleep(0.02)

    def of(self, tags):
        with self.lock:
            return {t: self.ended[t] for t in tags if t in self.ended}


def cpu_times():
    """(all, idle) CPU time of the machine so far, in ticks, or None where /proc/stat is missing."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return sum(ticks), ticks[3] + ticks[4]  # idle and iowait


def busy_percent(before, after):
    """The share of CPU time not idle between two `cpu_times()`, in percent, or None."""
    if before is None or after is None or after[0] <= before[0]:
        return None
    spent, idle = after[0] - before[0], after[1] - before[1]
    return round(100 * (spent - idle) / spent, 1)


def send(frontend, tags, clients):
    """Sends one order per tag from `clients` threads; returns (first send, last answer, refused)."""
    work = queue.Queue()
    for i, tag in enumerate(tags):
        work.put((i, tag))
    refused = []
    lock = threading.Lock()

    def client():
        box = {}
        while True:
            try:
                i, tag = work.get_nowait()
            except queue.Empty:
                return
            order = {"item": ITEMS[i % 2], "quantity": 1, "user": USERS[i // 2 % 2], "load": tag}
            try:
                status, payload = request(box, "POST", frontend + "/order", order)
            except OSError as e:
                status, payload = None, str(e).encode()
            if status is None or status >= 300:
                with lock:
                    refused.append((tag, status, payload[:200]))

    started = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return started, time.monotonic(), refused


def phase(name, frontend, ends, count, clients, wait):
    tags = [f"{name}-{os.getpid()}-{i}" for i in range(count)]
    cpu_before = cpu_times()
    started, sent, refused = send(frontend, tags, clients)
    expected = set(tags) - {t for t, _, _ in refused}
    deadline = time.monotonic() + wait
    while True:
        ended = ends.of(expected)
        if len(ended) == len(expected) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    cpu_after = cpu_times()
    last = max((at for at, _ in ended.values()), default=sent)
    span = last - started
    paid = sum(1 for _, how in ended.values() if how == "payment-created")
    return {
        "phase": name,
        "orders": count,
        "refused_by_frontend": len(refused),
        "first_refusals": [(t, s, p.decode(errors="replace")) for t, s, p in refused[:3]],
        "ended": len(ended),
        "paid": paid,
        "errors": len(ended) - paid,
        "not_ended": len(expected) - len(ended),
        "send_seconds": round(sent - started, 3),
        "seconds": round(span, 3),
        "sagas_per_s": round(len(ended) / span, 1) if span > 0 else None,
        "machine_busy_percent": busy_percent(cpu_before, cpu_after),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frontend", default="http://127.0.0.1:8080")
    parser.add_argument("--pubsub", default=os.environ.get("PUBSUB_EMULATOR_HOST", "127.0.0.1:8085"))
    parser.add_argument("--project", default=os.environ.get("PROJECT_ID", "saga-local"))
    parser.add_argument("--warmup", type=int, default=8000)
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--wait", type=float, default=120.0,
                        help="seconds after a phase's last request for its sagas to end")
    parser.add_argument("--label", default="", help="a name for the run, printed with its figures")
    args = parser.parse_args()
    for host in (urllib.parse.urlsplit(args.frontend).hostname, args.pubsub.split(":")[0]):
        if host not in ("127.0.0.1", "localhost", "::1"):
            parser.error(f"{host}: this load generator targets loopback only")

    pubsub = PubSub(args.pubsub, args.project)
    subs = {f"outside-load-{os.getpid()}-{topic}": topic for topic in ("payment-created", "error")}
    for name, topic in subs.items():
        pubsub.subscribe(name, topic)
    ends = Ends()
    pullers = [threading.Thread(target=ends.puller, args=(PubSub(args.pubsub, args.project), n, t), daemon=True)
               for n, t in subs.items()]
    for t in pullers:
        t.start()
    results = []
    try:
        if args.warmup:
            print(f"outside-load | warm-up: {args.warmup} orders from {args.clients} clients", file=sys.stderr)
            results.append(phase("warmup", args.frontend, ends, args.warmup, args.clients, args.wait))
            print(f"outside-load | {json.dumps(results[-1])}", file=sys.stderr)
        print(f"outside-load | measured: {args.orders} orders from {args.clients} clients", file=sys.stderr)
        results.append(phase("measured", args.frontend, ends, args.orders, args.clients, args.wait))
    finally:
        ends.stop.set()
        for t in pullers:
            t.join(timeout=5)
        for name in subs:
            pubsub.unsubscribe(name)
    measured = results[-1]
    measured["label"] = args.label
    measured["duplicates_seen"] = ends.duplicates
    print(json.dumps(measured))
    complete = all(r["not_ended"] == 0 and r["refused_by_frontend"] == 0 for r in results)
    sys.exit(0 if complete else 1)


if __name__ == "__main__":
    main()
