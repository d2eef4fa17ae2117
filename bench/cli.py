"""Command line of the benchmark: run everything, print the ratio table, exit 0.

Exit status is 0 whatever the ratios (this is a report); non-zero only if the benchmark itself
crashed or was invalid (a request failed, a row was not updated).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback

from . import DEFAULTS


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--requests", type=int, default=DEFAULTS["notify_requests"],
                        help="notifications (and bare requests) measured, each side (default %(default)s)")
    parser.add_argument("--threads", type=int, default=DEFAULTS["threads"], help="client threads (default %(default)s)")
    parser.add_argument("--orders-per-thread", type=int, default=DEFAULTS["shop_per_thread"],
                        help="orders, then payments, per client thread (default %(default)s)")
    parser.add_argument("--rounds", type=int, default=DEFAULTS["rounds"],
                        help="alternating rounds of each crypto loop (default %(default)s)")
    parser.add_argument("--quick", action="store_true", help="a tenth of every count: a smoke run, not a measurement")
    parser.add_argument("--client-mode", choices=("process", "inline"), default="process",
                        help="load generator in a spawned process (default) or in-process threads")
    parser.add_argument("--only", choices=("notify", "payments", "storage", "crypto", "lifecycle"), action="append",
                        help="run only these parts (repeatable)")
    parser.add_argument("--json", metavar="FILE", help="also write the lines as JSON to FILE")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    scale = 0.1 if args.quick else 1.0

    def n(value: int, floor: int = 1) -> int:
        return max(floor, int(value * scale))

    # Imported here, not at the top: the load generator's child process imports this package.
    from . import lifecycle, scenarios
    from .env import Environment
    from .report import table

    parts = args.only or ["notify", "payments", "storage", "crypto", "lifecycle"]
    database_url = os.environ.get("DATABASE_URL") or None
    began = time.perf_counter()
    print(f"storefront bench: python {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"database {_shown(database_url) if database_url else 'SQLite (temporary instance)'}, "
          f"{args.threads} client threads ({args.client_mode} clients)", flush=True)
    _print_load("before")
    lines = []
    try:
        with Environment(database_url=database_url, client_mode=args.client_mode) as env:
            print(f"  shop + simulator on {env.shop.url}, SDK handler on {env.sdk.url}, bare baseline on "
                  f"{env.bare.url}", flush=True)
            if "crypto" in parts:
                lines += _timed("crypto", lambda: scenarios.crypto_vs_sdk(
                    env, rounds=max(2, args.rounds), sign_loops=n(DEFAULTS["sign_loops"], 10),
                    verify_loops=n(DEFAULTS["verify_loops"], 10), decrypt_loops=n(DEFAULTS["decrypt_loops"], 10),
                    parse_loops=n(DEFAULTS["parse_loops"], 10)))
            if "notify" in parts:
                lines += _timed("notify", lambda: scenarios.notify_vs_peers(
                    env, requests=n(args.requests, 2), threads=args.threads,
                    warmup=n(DEFAULTS["notify_warmup"], 1), segments=DEFAULTS["notify_segments"]))
            if "payments" in parts:
                lines += _timed("payments", lambda: scenarios.payments_vs_orders(
                    env, per_thread=n(args.orders_per_thread, 2), threads=args.threads,
                    warmup_per_thread=DEFAULTS["shop_warmup_per_thread"]))
            if "storage" in parts:
                lines += _timed("storage", lambda: scenarios.storage_per_paid_order(
                    env, orders=n(DEFAULTS["storage_orders"], 20), threads=args.threads,
                    warmup=n(DEFAULTS["storage_warmup"], 10)))
        if "lifecycle" in parts:
            # A fresh instance: the page-latency line starts from an (almost) empty orders table.
            with Environment(database_url=database_url, client_mode="inline") as env:
                lines += _timed("checkout latency", lambda: lifecycle.checkout_latency(
                    env, large=n(DEFAULTS["latency_orders"], 1000), requests_each=n(DEFAULTS["latency_requests"], 20)))
                lines += _timed("close-expired", lambda: lifecycle.close_expired_rate(
                    env, attempts=n(DEFAULTS["expired_attempts"], 20),
                    baseline_calls=n(DEFAULTS["close_baseline_calls"], 20)))
    except Exception:
        traceback.print_exc()
        if lines:
            print(table(lines))
        return 1
    _print_load("after")
    print()
    print(table(lines))
    print(f"\ntotal {time.perf_counter() - began:.1f} s (ratios are what to compare across machines; "
          f"absolute rates are this machine's)")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump([line.as_dict() for line in lines], handle, indent=2, ensure_ascii=False)
    return 0


def _shown(url: str) -> str:
    from sqlalchemy.engine import make_url

    return "DATABASE_URL " + make_url(url).render_as_string(hide_password=True)


def _print_load(when: str) -> None:
    """A busy machine makes rates noisy: say so (ratios and CPU per request hold up better)."""
    try:
        load1, _load5, _load15 = os.getloadavg()
    except OSError:
        return
    cpus = os.cpu_count() or 1
    warning = f" (more than {cpus} CPUs: other work competes; expect noisy rates)" if load1 > cpus else ""
    print(f"  load average {when}: {load1:.1f}{warning}", flush=True)


def _timed(name: str, run):
    started = time.perf_counter()
    print(f"  {name} ...", end="", flush=True)
    result = run()
    print(f" {time.perf_counter() - started:.1f} s", flush=True)
    return result


if __name__ == "__main__":
    sys.exit(main())
