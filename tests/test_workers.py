"""Many processes: the simulator, a 4-worker gunicorn shop, cron jobs and a shop that dies mid-notification.

Every party is a real process started with ``subprocess.Popen`` over one temporary instance folder:
the simulator (the app in simulator mode, under gunicorn) reads ``instance/sandbox/*``; the shop
(production mode, ``WECHATPAY_SANDBOX=0``) reads ``instance/wechatpay/*`` and talks to the simulator
over loopback HTTP. The shop's tables are on PostgreSQL when ``TEST_DATABASE_URL`` is set, else in a
SQLite file. The test process reads the shop's tables directly to check the outcome.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, func, select, update

from conftest import TEST_DATABASE_URL, _reset_postgres, wait_for
from storefront import FROM_ENVIRON, create_app
from storefront.extensions import db
from storefront.models import NotificationRecord, Order, OrderEvent, Payment, utcnow
from storefront.sandbox.models import SandboxTransaction

pytestmark = pytest.mark.workers

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DYING_SHOP = Path(__file__).resolve().parent / "servers" / "dying_shop.py"
BUSY_ORDERS = 6  # orders the jobs work through while the notifications arrive
STORM = 50  # duplicate notifications of one payment, from the simulator and from the test each
BUSY_DUPLICATES = 5


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def clean_environ() -> dict[str, str]:
    """This process's environment without any storefront setting (the test decides them all)."""
    own = set(FROM_ENVIRON) | {"TEST_DATABASE_URL", "BIND", "WEB_CONCURRENCY", "GUNICORN_THREADS",
                               "STOREFRONT_INSTANCE_PATH", "FLASK_APP"}
    return {name: value for name, value in os.environ.items() if name not in own}


class Process:
    """One child process with its output in a log file; stopped by its own pid only."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], logs: Path) -> None:
        self.name = name
        self.log = logs / f"{name}.log"
        self._out = open(self.log, "ab")
        self.popen = subprocess.Popen(command, cwd=ROOT, env=env, stdout=self._out, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.popen.poll() is None:
            # SIGINT: gunicorn's quick shutdown (SIGTERM waits for keep-alive clients); werkzeug exits too.
            self.popen.send_signal(signal.SIGINT)
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=5)
        self._out.close()

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


def wait_until_serving(process: Process, url: str, timeout: float = 30.0) -> None:
    def up() -> bool:
        if process.popen.poll() is not None:
            raise AssertionError(f"{process.name} exited {process.popen.returncode}:\n{process.tail()}")
        try:
            return requests.get(url, timeout=2).status_code < 500
        except requests.RequestException:
            return False

    wait_for(up, timeout=timeout, interval=0.1)


class Cluster:
    """The instance folder, the simulator process and the shop's database, for one module."""

    def __init__(self, folder: Path, template: Path) -> None:
        self.folder = folder
        self.instance = folder / "instance"
        self.logs = folder / "logs"
        self.logs.mkdir()
        shutil.copytree(template, self.instance)
        # Job settings for the cron runs: no grace, reconcile at once (not environment variables).
        (self.instance / "config.py").write_text("CLOSE_GRACE_SECONDS = 0\nRECONCILE_AFTER_SECONDS = 0\n")
        if TEST_DATABASE_URL:
            _reset_postgres(TEST_DATABASE_URL)
            self.database_url = TEST_DATABASE_URL
        else:
            self.database_url = f"sqlite:///{self.instance / 'storefront.sqlite'}"
        self.engine = create_engine(self.database_url)
        self.processes: list[Process] = []
        self.sim_port = free_port()
        self.sim_url = f"http://127.0.0.1:{self.sim_port}"

    def start_simulator(self) -> None:
        env = clean_environ() | {
            "STOREFRONT_INSTANCE_PATH": str(self.instance),
            "WECHATPAY_SANDBOX": "1",
            # Its own (unused) shop tables, apart from the real shop's.
            "DATABASE_URL": f"sqlite:///{self.folder / 'simulator-shop.sqlite'}",
            "SANDBOX_DATABASE_URL": f"sqlite:///{self.instance / 'sandbox' / 'simulator.sqlite'}",
            "SANDBOX_TIME_SCALE": "0.01",  # retries after 0.15 s, 0.15 s, 0.3 s, 1.8 s, ...
            "BIND": f"127.0.0.1:{self.sim_port}",
            "WEB_CONCURRENCY": "1",
            "GUNICORN_THREADS": "16",
        }
        process = self.spawn("simulator", [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "wsgi:app"], env)
        wait_until_serving(process, f"{self.sim_url}/sandbox/control/clock")

    def shop_env(self, port: int) -> dict[str, str]:
        return clean_environ() | {
            "STOREFRONT_INSTANCE_PATH": str(self.instance),
            "WECHATPAY_SANDBOX": "0",
            "WECHATPAY_API_BASE": f"{self.sim_url}/sandbox",
            "SHOP_BASE_URL": f"http://127.0.0.1:{port}",
            "DATABASE_URL": self.database_url,
            "RATELIMIT_ENABLED": "0",  # a load test: one client far past any per-client limit
        }

    def init_shop(self) -> None:
        """``flask init`` once, as a deployment does before starting workers."""
        env = self.shop_env(free_port())
        done = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "init"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr

    def spawn(self, name: str, command: list[str], env: dict[str, str]) -> Process:
        process = Process(name, command, env, self.logs)
        self.processes.append(process)
        return process

    def job(self, name: str, port: int) -> subprocess.Popen:
        """``flask --app wsgi <name>`` with the shop's environment, started now."""
        return subprocess.Popen([sys.executable, "-m", "flask", "--app", "wsgi", name], cwd=ROOT,
                                env=self.shop_env(port), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.engine.dispose()

    # -- the shop's tables, read and (for expiry) written by the test ----------------------------

    def expire(self, out_trade_nos: list[str]) -> None:
        with self.engine.begin() as connection:
            connection.execute(update(Payment.__table__).where(Payment.__table__.c.out_trade_no.in_(out_trade_nos))
                               .values(expires_at=utcnow().replace(microsecond=0) - timedelta(minutes=5)))

    def order(self, order_no: str) -> dict:
        with self.engine.connect() as connection:
            return connection.execute(select(Order.__table__).where(Order.__table__.c.order_no == order_no)
                                      ).mappings().one()

    def payment_status(self, out_trade_no: str) -> str:
        table = Payment.__table__
        with self.engine.connect() as connection:
            return connection.execute(select(table.c.status).where(table.c.out_trade_no == out_trade_no)).scalar_one()

    def paid_events(self, order_no: str) -> list[tuple[str, str, str]]:
        """(from, to, cause) of every event that ends in ``paid`` (a double payment would be paid→paid)."""
        events = OrderEvent.__table__
        with self.engine.connect() as connection:
            order_id = connection.execute(select(Order.__table__.c.id).where(Order.__table__.c.order_no == order_no)
                                          ).scalar_one()
            rows = connection.execute(select(events.c.from_status, events.c.to_status, events.c.cause)
                                      .where(events.c.order_id == order_id, events.c.to_status == "paid")
                                      .order_by(events.c.id)).all()
        return [tuple(row) for row in rows]

    def outcomes(self, out_trade_no: str) -> dict[str, int]:
        table = NotificationRecord.__table__
        with self.engine.connect() as connection:
            rows = connection.execute(select(table.c.outcome, func.count()).where(table.c.out_trade_no == out_trade_no)
                                      .group_by(table.c.outcome)).all()
        return {outcome: count for outcome, count in rows}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, instance_template):
    cluster = Cluster(tmp_path_factory.mktemp("workers"), instance_template)
    try:
        cluster.start_simulator()
        cluster.init_shop()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def gunicorn_shop(cluster):
    """The shop as ``make serve-prod`` runs it: 4 gthread workers of ``wsgi:app``."""
    port = free_port()
    env = cluster.shop_env(port) | {"BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": "4"}
    process = cluster.spawn("shop-gunicorn", [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "wsgi:app"], env)
    wait_until_serving(process, f"http://127.0.0.1:{port}/api/products")
    return port


@pytest.fixture(scope="module")
def platform(cluster, tmp_path_factory):
    """The simulator's keys and database, in this process: to build notifications as WeChat Pay does."""
    app = create_app(
        {"TESTING": True, "SECRET_KEY": "test", "WECHATPAY_SANDBOX": True, "AUTO_INIT": False,
         "SANDBOX_NOTIFIER": False,
         "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path_factory.mktemp('builder') / 'unused.sqlite'}",
         "SANDBOX_DATABASE_URL": f"sqlite:///{cluster.instance / 'sandbox' / 'simulator.sqlite'}"},
        instance_path=str(cluster.instance),
    )
    yield app
    with app.app_context():
        db.session.remove()
        for engine in db.engines.values():
            engine.dispose()


def notification(platform_app, out_trade_no: str) -> tuple[dict[str, str], bytes]:
    """A signed TRANSACTION.SUCCESS for a transaction the simulator has marked paid."""
    with platform_app.app_context():
        simulator = platform_app.extensions["sandbox"].platform
        txn = db.session.scalar(select(SandboxTransaction).where(SandboxTransaction.out_trade_no == out_trade_no))
        assert txn is not None and txn.trade_state == "SUCCESS"
        _event_id, body = simulator.payment_notification_body(txn)
        headers = simulator.notification_headers(body)
    return headers, body.encode("utf-8")


def checkout(http: requests.Session, base: str) -> tuple[str, str]:
    order = http.post(f"{base}/api/orders", json={"product_id": 1, "quantity": 1}, timeout=30)
    assert order.status_code == 201, order.text
    order_no = order.json()["order_no"]
    payment = http.post(f"{base}/api/orders/{order_no}/payments", json={"method": "native"}, timeout=30)
    assert payment.status_code == 201, payment.text
    return order_no, payment.json()["out_trade_no"]


def pay(cluster: Cluster, out_trade_no: str, shape: str) -> None:
    answer = requests.post(f"{cluster.sim_url}/sandbox/control/pay",
                           json={"out_trade_no": out_trade_no, "result": "SUCCESS", "notify": shape}, timeout=30)
    assert answer.status_code == 200, answer.text


def notifications(cluster: Cluster, out_trade_no: str) -> list[dict]:
    answer = requests.get(f"{cluster.sim_url}/sandbox/control/notifications", params={"out_trade_no": out_trade_no},
                          timeout=30)
    return answer.json()["notifications"]


def job_calls_seen(cluster: Cluster, out_trade_nos: set[str]) -> bool:
    answer = requests.get(f"{cluster.sim_url}/sandbox/control/calls",
                          params={"path": "/v3/pay/transactions/out-trade-no/"}, timeout=30)
    # Paths: /v3/pay/transactions/out-trade-no/{no}?mchid=... (query) and .../{no}/close.
    return any(call["path"].split("/")[5].split("?")[0] in out_trade_nos for call in answer.json()["calls"])


def test_duplicate_storm_with_concurrent_jobs_pays_each_order_once(cluster, gunicorn_shop, platform):
    """50 + 50 duplicate notifications to 4 gunicorn workers while close-expired and reconcile run."""
    base = f"http://127.0.0.1:{gunicorn_shop}"
    http = requests.Session()
    # Orders the jobs work through: paid at WeChat Pay (notification lost), expired at the shop.
    busy = [checkout(http, base) for _ in range(BUSY_ORDERS)]
    main_no, main_trade = checkout(http, base)  # created last: reconcile reaches it last
    for _order_no, out_trade_no in busy:
        pay(cluster, out_trade_no, "drop")
    cluster.expire([out_trade_no for _order_no, out_trade_no in busy])
    busy_posts = [notification(platform, out_trade_no) for _order_no, out_trade_no in busy]

    jobs = [cluster.job("close-expired", gunicorn_shop), cluster.job("reconcile", gunicorn_shop)]
    try:
        # The storm starts once a job has reached WeChat Pay: jobs and notifications overlap.
        wait_for(lambda: job_calls_seen(cluster, {no for _order_no, no in busy}) or jobs[0].poll() is not None,
                 timeout=60, interval=0.02)
        pay(cluster, main_trade, f"duplicate:{STORM}")  # the simulator sends 50 at once
        main_post = notification(platform, main_trade)
        posts = [main_post] * STORM + [post for post in busy_posts for _ in range(BUSY_DUPLICATES)]

        def send(post: tuple[dict[str, str], bytes]) -> int:
            headers, body = post
            with requests.Session() as session:
                return session.post(f"{base}/notify/wechatpay", data=body, headers=headers, timeout=60).status_code

        with ThreadPoolExecutor(max_workers=32) as pool:
            statuses = list(pool.map(send, posts))
        outputs = [job.communicate(timeout=120)[0] for job in jobs]
    finally:
        for job in jobs:
            if job.poll() is None:
                job.kill()
                job.wait()
    assert [job.returncode for job in jobs] == [0, 0], outputs
    assert set(statuses) == {204}, sorted(set(statuses))
    sim_sent = wait_for(lambda: (lambda rows: rows if all(r["state"] == "delivered" for r in rows) else None)(
        notifications(cluster, main_trade)), timeout=60, interval=0.1)
    assert len(sim_sent) == STORM

    causes = []
    for order_no, out_trade_no in busy + [(main_no, main_trade)]:
        events = cluster.paid_events(order_no)
        assert len(events) == 1 and events[0][:2] == ("pending", "paid"), (order_no, events)
        causes.append(events[0][2])
        order = cluster.order(order_no)
        assert order["status"] == "paid" and order["needs_review"] in (False, 0), order
        assert cluster.payment_status(out_trade_no) == "paid"
        outcomes = cluster.outcomes(out_trade_no)
        assert set(outcomes) <= {"applied", "duplicate"} and outcomes.get("applied", 0) <= 1, outcomes
    # Every copy was recorded (a delivery the simulator timed out and retried may add one more).
    main = cluster.outcomes(main_trade)
    assert main.get("applied", 0) == (1 if causes[-1] == "notify" else 0), main
    assert sum(main.values()) >= 2 * STORM, main
    print(f"\npaid transitions by cause: {dict((c, causes.count(c)) for c in set(causes))}; jobs: {outputs}")


@pytest.mark.parametrize(("variant", "completion"), [("before", "retry"), ("after", "retry"), ("before", "reconcile")])
def test_shop_killed_while_handling_a_notification_loses_nothing(cluster, variant, completion, tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    mark = tmp_path / "died"
    command = [sys.executable, str(DYING_SHOP), str(port), variant, str(mark)]
    first = cluster.spawn(f"dying-shop-{variant}-{completion}", command, cluster.shop_env(port))
    wait_until_serving(first, f"{base}/api/products")
    order_no, out_trade_no = checkout(requests.Session(), base)

    pay(cluster, out_trade_no, "normal")
    assert first.popen.wait(timeout=30) == 1, first.tail()  # died on the notification
    assert mark.exists()
    # Before: nothing was applied. After: applied and committed, but WeChat Pay never heard back.
    assert cluster.order(order_no)["status"] == ("paid" if variant == "after" else "pending")
    failed = wait_for(lambda: [n for n in notifications(cluster, out_trade_no) if n["attempts"]])
    assert len(failed) == 1 and failed[0]["state"] == "pending" and failed[0]["attempts"][0]["http_status"] is None

    if completion == "reconcile":
        # Cron does not need the web process: reconcile finds the attempt and applies it while the
        # shop is still down (so the simulator's retries cannot get there first).
        job = cluster.job("reconcile", port)
        output = job.communicate(timeout=120)[0]
        assert job.returncode == 0, output
        assert "1 found paid" in output and cluster.order(order_no)["status"] == "paid"
    restarted = cluster.spawn(f"restarted-shop-{variant}-{completion}", command, cluster.shop_env(port))
    wait_until_serving(restarted, f"{base}/api/products")
    # The simulator's next retry (brought forward on its clock) reaches the restarted shop.
    requests.post(f"{cluster.sim_url}/sandbox/control/clock", json={"to": "next_retry"}, timeout=30)
    delivered = wait_for(lambda: [n for n in notifications(cluster, out_trade_no) if n["state"] == "delivered"],
                         timeout=30, interval=0.1)
    requests.post(f"{cluster.sim_url}/sandbox/control/clock", json={"reset": True}, timeout=30)
    assert delivered[0]["attempts"][0]["http_status"] is None and delivered[0]["attempts"][-1]["http_status"] == 204

    order = cluster.order(order_no)
    assert order["status"] == "paid" and order["needs_review"] in (False, 0)
    expected_cause = "job" if completion == "reconcile" else "notify"
    assert cluster.paid_events(order_no) == [("pending", "paid", expected_cause)]
    assert cluster.payment_status(out_trade_no) == "paid"
    restarted.stop()
