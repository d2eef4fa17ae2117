"""Benchmarks of the storefront: ``python -m bench`` (``make bench``) prints a ratio report.

Each line is a rate of ours measured against a baseline in the same run, so the ratio holds
across machines while absolute rates do not:

1. ``/notify/wechatpay`` (verify + decrypt + apply + record) against the ``wechatpayv3`` SDK's README
   handler (``bench.peer``), against a bare Flask endpoint doing only the single-row conditional
   UPDATE, and against itself with the flow record off; same server setup and client load;
2. Native payments created (a signed round trip to the embedded simulator) against orders created,
   and the database bytes a paid Native order leaves behind;
3. our ``storefront.wechatpay`` sign / verify / decrypt against the ``wechatpayv3`` SDK's.
4. ``close-expired`` over 10,000 expired attempts against bare close calls, and the checkout page's
   latency with 100,000 orders in the database against 100 (``bench.lifecycle``).

Kept light on purpose: the load generator runs in a spawned child process that imports this
package, so nothing heavy (Flask, the app) is imported here. Use the submodules:
``bench.env.Environment``, ``bench.scenarios``, ``bench.report``.
"""

DEFAULTS = {
    # Notifications measured each side, in ``notify_segments`` rotated rounds: long enough that
    # one busy moment of a shared machine does not decide the ratio (about 5 s a side).
    "notify_requests": 3000,
    "notify_segments": 10,
    "notify_warmup": 40,
    "threads": 8,
    "shop_per_thread": 25,
    "shop_warmup_per_thread": 2,
    "storage_orders": 800,  # paid Native orders whose database growth is measured
    # after this many through the same path: past PostgreSQL's start-up pages of every table
    # (bench/README.md, "Database bytes"), where a running shop is
    "storage_warmup": 600,
    # Many short alternating rounds, best of each side: robust against a busy neighbour.
    "rounds": 8,
    "sign_loops": 150,
    "verify_loops": 1500,
    "decrypt_loops": 15000,
    "parse_loops": 1000,
    "latency_orders": 100_000,  # checkout page latency with this many orders, against 100
    "latency_requests": 200,
    "expired_attempts": 10_000,  # backlog close-expired drains in one run
    "close_baseline_calls": 1_000,
}
