"""The two minimal backends of docs/en/test-your-backend.md, run as written, pass the grader.

Each example is taken from the page itself (the fenced block after its ``<!-- example: … -->``
marker), started as a real server with a kit from ``sandbox-kit``, asked to create an order,
paid from ``control/pay``, and graded: exit 0, every error-level case passed.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from conftest import module_server, wait_for
from node_sdk import node_modules

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "en" / "test-your-backend.md"  # the same code blocks as docs/zh/


def example(name: str) -> str:
    text = DOC.read_text(encoding="utf-8")
    found = re.search(rf"<!-- example: {re.escape(name)} .*?-->\n```\w+\n(.*?)```", text, re.S)
    assert found, f"no example {name} in {DOC}"
    return found.group(1)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def shop(tmp_path_factory, instance_template):
    yield from module_server(tmp_path_factory, instance_template, SANDBOX_NOTIFIER=True)


@pytest.fixture
def kit(shop, tmp_path) -> Path:
    folder = tmp_path / "kit"
    result = shop.app.test_cli_runner().invoke(args=["sandbox-kit", "--out", str(folder)])
    assert result.exit_code == 0, result.output
    return folder


def run_backend(command: list[str], env: dict, port: int, cwd: Path):
    log = open(cwd / "backend.log", "w")
    process = subprocess.Popen(command, cwd=cwd, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT)

    def up() -> bool:
        assert process.poll() is None, (cwd / "backend.log").read_text()
        try:
            return requests.get(f"http://127.0.0.1:{port}/orders/none", timeout=1).status_code == 404
        except requests.ConnectionError:
            return False

    wait_for(up, timeout=20, interval=0.1)
    return process, log


def buy_pay_and_grade(shop, kit: Path, port: int) -> dict:
    base = f"http://127.0.0.1:{port}"
    created = requests.post(base + "/orders", json={"total": 8800}, timeout=15)
    assert created.status_code == 201, created.text
    out_trade_no = created.json()["out_trade_no"]
    mchid = json.loads((kit / "merchant.json").read_text())["mchid"]
    paid = requests.post(shop.url + "/sandbox/control/pay", json={"out_trade_no": out_trade_no, "mchid": mchid},
                         timeout=10)
    assert paid.status_code == 200, paid.text
    wait_for(lambda: requests.get(f"{base}/orders/{out_trade_no}", timeout=5).json()["status"] == "paid",
             timeout=15, interval=0.1)
    result = shop.app.test_cli_runner().invoke(args=["sandbox-grade", "--out-trade-no", out_trade_no, "--json"])
    data = json.loads(result.output)
    assert result.exit_code == 0, data
    return data


def stop(process: subprocess.Popen, log) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    log.close()


def test_the_python_example_passes_the_grader(shop, kit, tmp_path):
    (tmp_path / "backend.py").write_text(example("backend.py"), encoding="utf-8")
    port = free_port()
    process, log = run_backend(
        [sys.executable, "-m", "flask", "--app", "backend", "run", "--port", str(port), "--no-reload"],
        {"KIT": str(kit), "NOTIFY_URL": f"http://127.0.0.1:{port}/notify"}, port, tmp_path)
    try:
        data = buy_pay_and_grade(shop, kit, port)
    finally:
        stop(process, log)
    assert all(case["passed"] for case in data["cases"]), data


def test_the_node_example_passes_the_grader(shop, kit, tmp_path):
    modules = node_modules()
    (tmp_path / "backend.js").write_text(example("backend.js"), encoding="utf-8")
    port = free_port()
    process, log = run_backend(
        ["node", "backend.js"],
        {"KIT": str(kit), "NOTIFY_URL": f"http://127.0.0.1:{port}/notify", "PORT": str(port),
         "NODE_PATH": str(modules)}, port, tmp_path)
    try:
        data = buy_pay_and_grade(shop, kit, port)
    finally:
        stop(process, log)
    assert all(case["passed"] for case in data["cases"]), data
