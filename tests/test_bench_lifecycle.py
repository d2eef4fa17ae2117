"""bench.lifecycle runs end to end with tiny counts (the harness works; speed is never asserted)."""

from __future__ import annotations

import math

import pytest

from bench.env import Environment
from bench.lifecycle import checkout_latency, close_expired_rate
from conftest import TEST_DATABASE_URL, _reset_postgres


@pytest.fixture
def bench_env(tmp_path, instance_template):
    if TEST_DATABASE_URL:
        _reset_postgres(TEST_DATABASE_URL)
    with Environment(workdir=tmp_path, instance_template=instance_template, database_url=TEST_DATABASE_URL,
                     client_mode="inline") as env:
        yield env


def test_lifecycle_bench_lines_with_tiny_counts(bench_env):
    lines = checkout_latency(bench_env, small=10, large=60, requests_each=3, warmup=1)
    lines += close_expired_rate(bench_env, attempts=6, baseline_calls=4)
    assert [line.name for line in lines] == ["checkout page, 60 vs 10 orders", "attempts closed by close-expired"]
    for line in lines:
        assert line.ours > 0 and line.baseline > 0 and math.isfinite(line.ratio)
        assert line.verdict in {"PASS", "BELOW"}
