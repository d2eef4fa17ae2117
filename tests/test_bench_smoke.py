"""The benchmark (``make bench``) runs end to end with tiny counts: every line has a positive rate,
baseline and ratio. Timings are never asserted: this proves the harness works, not the speed."""

from __future__ import annotations

import math

import pytest

from bench.env import Environment
from bench.report import Measure, table
from bench.scenarios import crypto_vs_sdk, notify_vs_bare, notify_vs_peers, payments_vs_orders, storage_per_paid_order
from conftest import TEST_DATABASE_URL, _reset_postgres


@pytest.fixture
def bench_env(tmp_path, instance_template):
    if TEST_DATABASE_URL:
        _reset_postgres(TEST_DATABASE_URL)
    # The default client mode, as `make bench` runs it: the load generator in a spawned process.
    with Environment(workdir=tmp_path, instance_template=instance_template, database_url=TEST_DATABASE_URL,
                     client_mode="process") as env:
        yield env


def _assert_lines(lines, names):
    assert [line.name for line in lines] == names
    for line in lines:
        assert line.ours > 0 and line.baseline > 0
        assert math.isfinite(line.ratio) and line.ratio > 0
        assert line.verdict in {"PASS", "BELOW", "info"}


def test_bench_runs_every_part_with_tiny_counts(bench_env):
    lines = notify_vs_bare(bench_env, requests=4, threads=2, warmup=1)
    _assert_lines(lines, ["notifications handled"])
    lines += payments_vs_orders(bench_env, per_thread=2, threads=2, warmup_per_thread=1)
    _assert_lines(lines[1:], ["native payments created"])
    crypto = crypto_vs_sdk(bench_env, rounds=2, sign_loops=2, verify_loops=2, decrypt_loops=2, parse_loops=2)
    _assert_lines(crypto, ["sign (RSA-SHA256)", "verify (RSA-SHA256)", "decrypt (AES-256-GCM)",
                           "decrypt, cipher per call", "notification verify+decrypt"])
    lines += crypto
    assert [line.aim for line in lines if line.aim is not None] == [0.7, 0.4, 1.0, 1.0, 1.0]
    printed = table(lines)
    for line in lines:
        assert line.name in printed


def test_bench_compares_with_the_sdk_handler_and_measures_the_record(bench_env):
    """The SDK README's handler and the shop with FLOW_RECORD=off are measured beside the shop; the
    storage line counts a paid order's bytes; every target says met or NOT MET."""
    results = notify_vs_peers(bench_env, requests=4, threads=2, warmup=1, segments=2)
    _assert_lines([r for r in results if not isinstance(r, Measure)],
                  ["notify vs SDK handler", "notifications handled", "notify, flow record on vs off"])
    share = next(r for r in results if isinstance(r, Measure))
    assert share.name == "flow record share of a notification's CPU" and 0 <= share.value <= 1
    assert bench_env.app.config["FLOW_RECORD"] == "all"  # restored after the "off" side
    storage = storage_per_paid_order(bench_env, orders=4, threads=2)
    assert [m.name for m in storage] == ["database bytes per paid Native order"]
    assert 0 < storage[0].value < 100_000 and "flow record" in storage[0].notes[0]
    printed = table(results + storage)
    assert "notify vs SDK handler" in printed and "targets (each from this run):" in printed
    targets = printed.split("targets (each from this run):", 1)[1].split("notes:", 1)[0]
    for name in ("notify vs SDK handler", "flow record share", "database bytes per paid Native order"):
        line = next(row for row in targets.splitlines() if row.startswith(name))
        assert line.rstrip().endswith(("met", "NOT MET")), line
