"""Any client can talk to the simulator: ``flask --app wsgi sandbox-serve`` (the API at the root) and the
shop's mounted ``/sandbox/``, driven by SDKs that are not the project's own.

``sandbox-serve``, ``sandbox-kit`` and ``sandbox-grade`` run as real processes over one temporary
instance. The ``wechatpayv3`` SDK (Python) and ``wechatpay-axios-plugin`` (Node) create, query and
close orders and verify every answer themselves; the Node backend also verifies and decrypts the
simulator's notification. The Node SDK signs the URL path as sent, mount included (``/sandbox/v3/…``).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from conftest import module_server, wait_for
from merchant_backends import Backend, read_kit, sdk_for
from node_sdk import NODE_DIR, node_modules

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Served:
    """``flask --app wsgi sandbox-serve --port N`` over its own instance folder, and CLI runs beside it."""

    def __init__(self, instance: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "STOREFRONT_INSTANCE_PATH": str(instance), "SANDBOX_SERVE_URL": self.url,
                    "SECRET_KEY": "test-secret", "SANDBOX_TIME_SCALE": "0.01"}
        self.env.pop("DATABASE_URL", None)
        self.log = open(instance / "serve.log", "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "wsgi", "sandbox-serve", "--port", str(self.port)],
            cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(self._up, timeout=30, interval=0.1)

    def _up(self) -> bool:
        assert self.process.poll() is None, (Path(self.log.name).read_text())
        try:
            return requests.get(self.url + "/control/merchants", timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", *args], cwd=ROOT, env=self.env,
                              capture_output=True, text=True, timeout=120)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory, instance_template):
    instance = tmp_path_factory.mktemp("serve") / "instance"
    shutil.copytree(instance_template, instance)
    server = Served(instance)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def served_kit(served, tmp_path_factory):
    folder = tmp_path_factory.mktemp("kit") / "kit"
    done = served.cli("sandbox-kit", "--out", str(folder))
    assert done.returncode == 0, done.stderr
    kit = read_kit(folder)
    assert kit["api_base"] == served.url + "/"
    return kit | {"folder": str(folder)}


@pytest.fixture(scope="module")
def shop(tmp_path_factory, instance_template):
    yield from module_server(tmp_path_factory, instance_template, SANDBOX_NOTIFIER=True)


@pytest.fixture(scope="module")
def shop_kit(shop, tmp_path_factory):
    folder = tmp_path_factory.mktemp("kit") / "kit"
    result = shop.app.test_cli_runner().invoke(args=["sandbox-kit", "--out", str(folder)])
    assert result.exit_code == 0, result.output
    kit = read_kit(folder)
    assert kit["api_base_mounted"] == shop.url + "/sandbox/"
    return kit | {"folder": str(folder)}


def create_query_close(sdk) -> None:
    """Create, query, close, query: the SDK verifies every 2xx answer itself (it raises otherwise)."""
    out_trade_no = "PY" + secrets.token_hex(8).upper()
    code, message = sdk.pay(description="景德镇青花瓷茶杯", out_trade_no=out_trade_no, amount={"total": 12900})
    assert code == 200, message
    assert "/sandbox/wxpay/bizpayurl?pr=" in json.loads(message)["code_url"]
    code, message = sdk.query(out_trade_no=out_trade_no)
    assert code == 200 and json.loads(message)["trade_state"] == "NOTPAY", message
    code, message = sdk.close(out_trade_no=out_trade_no)
    assert code == 204, message
    code, message = sdk.query(out_trade_no=out_trade_no)
    assert code == 200 and json.loads(message)["trade_state"] == "CLOSED", message


def test_python_sdk_at_the_root_of_sandbox_serve(served, served_kit):
    create_query_close(sdk_for(served_kit, served_kit["api_base"], "https://merchant.example/notify"))
    calls = requests.get(served.url + "/control/calls", params={"mchid": served_kit["mchid"]}, timeout=10).json()
    assert {c["path"].split("?")[0].split("/out-trade-no/")[0] for c in calls["calls"]} == {
        "/v3/pay/transactions/native", "/v3/pay/transactions"}
    assert all(c["auth_ok"] for c in calls["calls"])


def test_python_sdk_at_the_mounted_base(shop, shop_kit):
    create_query_close(sdk_for(shop_kit, shop_kit["api_base_mounted"], "https://merchant.example/notify"))


def test_sandbox_serve_console_and_payer_pages_at_the_root(served, served_kit):
    sdk = sdk_for(served_kit, served_kit["api_base"], "https://merchant.example/notify")
    out_trade_no = "PY" + secrets.token_hex(8).upper()
    code, message = sdk.pay(description="扫码页", out_trade_no=out_trade_no, amount={"total": 100})
    code_url = json.loads(message)["code_url"]
    assert code_url.startswith(served.url + "/sandbox/wxpay/bizpayurl")
    assert requests.get(code_url, timeout=10).status_code == 200
    console = requests.get(served.url + "/", timeout=10)
    assert console.status_code == 200 and out_trade_no in console.text
    assert requests.get(served.url + "/backends", timeout=10).status_code == 200


def test_correct_backend_through_sandbox_serve_and_the_grader_cli(served, served_kit, tmp_path):
    """Created via the SDK at the root, paid from control/pay, acknowledged; sandbox-grade exits 0."""
    backend = Backend(served_kit, served_kit["api_base"])
    try:
        out_trade_no = backend.order()
        answer = requests.post(served.url + "/control/pay", json={"out_trade_no": out_trade_no}, timeout=10)
        assert answer.status_code == 200, answer.text
        backend.wait_paid(out_trade_no, timeout=20)
        junit = tmp_path / "grader.xml"
        done = served.cli("sandbox-grade", "--out-trade-no", out_trade_no, "--json", "--junit", str(junit))
        assert done.returncode == 0, done.stdout + done.stderr
        data = json.loads(done.stdout)
        assert data["passed"] == data["total"] and data["merchant"] == served_kit["mchid"]
        assert 'failures="0"' in junit.read_text()
        text = served.cli("sandbox-grade", "--out-trade-no", out_trade_no)
        assert text.returncode == 0 and "✓ genuine_notification" in text.stdout
    finally:
        backend.stop()


def run_node(kit: dict, api_base: str, pay_url: str) -> tuple[dict, dict]:
    """Run tests/node/backend.js; pay its order when it is ready; return its two reports."""
    env = {**os.environ, "NODE_PATH": str(node_modules())}
    with subprocess.Popen(["node", str(NODE_DIR / "backend.js"), kit["folder"], api_base], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
        return _drive_node(process, kit, pay_url)


def _drive_node(process: subprocess.Popen, kit: dict, pay_url: str) -> tuple[dict, dict]:
    try:
        ready = json.loads(process.stdout.readline() or "{}")
        assert ready.get("event") == "ready", (ready, process.stderr.read() if process.poll() is not None else "")
        answer = requests.post(pay_url, json={"out_trade_no": ready["out_trade_no"], "mchid": kit["mchid"]},
                               timeout=10)
        assert answer.status_code == 200, answer.text
        notified = json.loads(process.stdout.readline() or "{}")  # the script gives up after 20 s itself
        assert process.wait(timeout=10) == 0, process.stderr.read()
        return ready, notified
    finally:
        if process.poll() is None:
            process.kill()


@pytest.mark.parametrize("where", ["sandbox-serve", "mounted"])
def test_node_sdk_creates_queries_closes_and_decrypts(where, request):
    if where == "sandbox-serve":
        served, kit = request.getfixturevalue("served"), request.getfixturevalue("served_kit")
        api_base, pay_url = kit["api_base"], served.url + "/control/pay"
    else:
        shop, kit = request.getfixturevalue("shop"), request.getfixturevalue("shop_kit")
        api_base, pay_url = kit["api_base_mounted"], shop.url + "/sandbox/control/pay"

    ready, notified = run_node(kit, api_base, pay_url)

    assert ready["created_status"] == 200 and "bizpayurl" in ready["code_url"]
    assert ready["query"]["trade_state"] == "NOTPAY" and ready["query"]["amount"]["total"] == 4200
    assert ready["close_status"] == 204 and ready["closed_query"]["trade_state"] == "CLOSED"
    assert notified["event"] == "notified" and notified["event_type"] == "TRANSACTION.SUCCESS"
    resource = notified["resource"]
    assert resource["out_trade_no"] == ready["out_trade_no"] and resource["mchid"] == kit["mchid"]
    assert resource["trade_state"] == "SUCCESS" and resource["amount"]["total"] == 4200
