"""The load generator: N client threads, each with its own keep-alive ``requests.Session``.

Imports only ``requests`` and the standard library: it runs in a spawned child process (so the
clients do not compete for the servers' GIL) or, with ``client_mode="inline"``, in-process.
Every function returns plain data (picklable) and never raises for a failed request: failures
are counted and returned, and the caller decides whether the run is valid.

The sessions would keep connections alive, but werkzeug 3's development server answers every
response with ``Connection: close``: each request then pays a TCP connect (and the server a new
thread). Both sides of every comparison pay it alike; ``closed`` counts those answers.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable

import requests

TIMEOUT_SECONDS = 30.0


class _Tally:
    """Statuses, errors and ``Connection: close`` answers, shared by the threads of one run."""

    def __init__(self, expected: int) -> None:
        self.lock = threading.Lock()
        self.statuses: Counter[int] = Counter()
        self.errors: list[str] = []
        self.closed = 0
        self.expected = expected

    def post(self, http: requests.Session, url: str, **kwargs) -> requests.Response | None:
        try:
            answer = http.post(url, timeout=TIMEOUT_SECONDS, **kwargs)
            answer.content  # read it all: the answer is part of the request's cost
        except requests.RequestException as exc:
            with self.lock:
                self.errors.append(f"{url}: {exc.__class__.__name__}: {exc}"[:300])
            return None
        with self.lock:
            self.statuses[answer.status_code] += 1
            self.closed += answer.headers.get("Connection", "").lower() == "close"
            if answer.status_code >= 300 and len(self.errors) < 10:
                self.errors.append(f"{answer.status_code}: {answer.text[:200]}")
        return answer

    def result(self, elapsed: float, **extra) -> dict:
        return {"count": self.expected, "elapsed": elapsed, "statuses": dict(self.statuses),
                "errors": self.errors[:10], "closed": self.closed, **extra}


def _run(workers: list[Callable[[requests.Session], None]], warm_url: str, sessions=None) -> float:
    """Run one callable per thread, each with its own session, all released at once.

    Each session first GETs ``warm_url`` (outside the clock). Returns the seconds from the
    release to the last thread's end.
    """
    start = threading.Barrier(len(workers) + 1, timeout=120)
    sessions = sessions or [requests.Session() for _ in workers]

    def body(work, http: requests.Session) -> None:
        try:
            try:
                http.get(warm_url, timeout=TIMEOUT_SECONDS).content
            except requests.RequestException:
                pass  # a real failure shows up in the measured requests
            start.wait()
            work(http)
        finally:
            http.close()

    threads = [threading.Thread(target=body, args=(work, http), name=f"bench-client-{i}")
               for i, (work, http) in enumerate(zip(workers, sessions))]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    return time.perf_counter() - began


def fire(jobs: list[tuple[str, dict[str, str], bytes]], threads: int, warm_url: str) -> dict:
    """POST every job once, ``(url, headers, body)``, taken from one shared queue by ``threads`` sessions."""
    tally = _Tally(len(jobs))
    cursor = iter(jobs)
    lock = threading.Lock()

    def work(http: requests.Session) -> None:
        while True:
            with lock:
                job = next(cursor, None)
            if job is None:
                return
            url, headers, body = job
            tally.post(http, url, data=body, headers=headers)

    elapsed = _run([work] * max(1, min(threads, len(jobs))), warm_url)
    return tally.result(elapsed)


def shop_orders(base_url: str, threads: int, per_thread: int) -> dict:
    """Each thread is one shopper (its own cookie): ``per_thread`` × ``POST /api/orders``.

    Returns, besides the tally, each shopper's cookies and order numbers for ``shop_payments``.
    """
    tally = _Tally(threads * per_thread)
    shoppers = [{"cookies": {}, "order_nos": []} for _ in range(threads)]
    sessions = [requests.Session() for _ in range(threads)]

    def worker(shopper: dict):
        def work(http: requests.Session) -> None:
            for _ in range(per_thread):
                answer = tally.post(http, f"{base_url}/api/orders", json={"product_id": 1, "quantity": 1})
                if answer is not None and answer.status_code == 201:
                    shopper["order_nos"].append(answer.json()["order_no"])
            shopper["cookies"] = http.cookies.get_dict()
        return work

    elapsed = _run([worker(s) for s in shoppers], f"{base_url}/api/products", sessions)
    return tally.result(elapsed, shoppers=shoppers)


def shop_payments(base_url: str, shoppers: list[dict]) -> dict:
    """Each shopper (thread) starts a Native payment for each of its orders."""
    tally = _Tally(sum(len(s["order_nos"]) for s in shoppers))
    sessions = []
    for shopper in shoppers:
        http = requests.Session()
        http.cookies.update(shopper["cookies"])
        sessions.append(http)

    def worker(shopper: dict):
        def work(http: requests.Session) -> None:
            for order_no in shopper["order_nos"]:
                tally.post(http, f"{base_url}/api/orders/{order_no}/payments", json={"method": "native"})
        return work

    elapsed = _run([worker(s) for s in shoppers], f"{base_url}/api/products", sessions)
    return tally.result(elapsed)
