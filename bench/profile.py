"""``python -m bench.profile``: where a notification's milliseconds go, in process.

Builds pending attempts and their signed notifications as ``make bench`` does, then calls the
shop's WSGI app directly (no HTTP server, no client: only the shop's own work), first timing
rounds with ``FLOW_RECORD=all`` and ``off`` alternately (CPU time, best round of each), then
one round under ``cProfile``, printed by stage and by function. The stages are functions of the
notification path; a stage's time includes the stages it calls.

For the threaded servers under load (the simulator and the checkout included), sample the whole
``make bench`` with py-spy instead: ``py-spy record --gil -f raw -o out.txt -- python -m bench``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import secrets
import time

from werkzeug.test import EnvironBuilder

from . import scenarios
from .env import Environment

# (label, function name as cProfile reports it: "file:line(name)" contains this)
STAGES = [
    ("whole request (the notification lane, NotificationLane)", "notify/views.py", "__call__"),
    ("the answer (notify.views.answer)", "notify/views.py", "answer"),
    ("verify + decrypt (parse_notification)", "wechatpay/notify.py", "parse_notification"),
    ("  RSA verify", "wechatpay/verify.py", "verify_signature"),
    ("checks, apply and record in one transaction (notifications._commit_common_case)", "services/notifications.py",
     "_commit_common_case"),
    ("  apply the payment (orders.apply_payment_common)", "services/orders.py", "apply_payment_common"),
    ("  flow record's insert (flowlog.add_notification)", "services/flowlog.py", "add_notification"),
    ("  COMMIT", "services/rawsql.py", "commit"),
    ("flow record's build, before the lock (NotificationTrace.prepare)", "services/flowlog.py", "prepare"),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--requests", type=int, default=300, help="notifications per round (default %(default)s)")
    parser.add_argument("--rounds", type=int, default=6, help="timed rounds, alternating all/off (default %(default)s)")
    parser.add_argument("--top", type=int, default=25, help="functions listed (default %(default)s)")
    parser.add_argument("--sort", default="cumulative", choices=("cumulative", "tottime", "ncalls"),
                        help="order of the function list (default %(default)s)")
    args = parser.parse_args(argv)
    n = args.requests
    with Environment(client_mode="inline") as env:
        app = env.app
        total = n * (args.rounds + 1) + 20
        notifications = scenarios._notifications(env, scenarios._pending_attempts(env, total, secrets.token_hex(4)))
        environs = iter([EnvironBuilder(path="/notify/wechatpay", method="POST", headers=headers, data=body,
                                        base_url=env.shop.url).get_environ() for headers, body in notifications])

        def start_response(status, _headers, _exc_info=None):
            if not status.startswith("204"):
                raise RuntimeError(f"notification answered {status}")

        def run(count: int) -> None:
            for _ in range(count):
                for _chunk in app.wsgi_app(next(environs), start_response):
                    pass

        run(20)  # warm up: first-call caches, compiled statements
        times: dict[str, list[float]] = {"all": [], "off": []}
        for i in range(args.rounds):
            level = ("all", "off")[i % 2]
            app.config["FLOW_RECORD"] = level
            started = time.process_time()
            run(n)
            times[level].append((time.process_time() - started) / n * 1000)
        app.config["FLOW_RECORD"] = "all"
        best = {level: min(values) for level, values in times.items()}
        print(f"CPU per notification, in process (best of {args.rounds // 2} rounds of {n}): "
              f"FLOW_RECORD=all {best['all']:.2f} ms, off {best['off']:.2f} ms; the flow record's share "
              f"{(best['all'] - best['off']) / best['all']:.0%}")
        print("  rounds (ms): " + "; ".join(f"{level} " + ", ".join(f"{v:.2f}" for v in values)
                                            for level, values in times.items()))

        profiler = cProfile.Profile()
        profiler.enable()
        run(n)
        profiler.disable()
    stats = pstats.Stats(profiler)
    whole = sum(v[3] for k, v in stats.stats.items() if k[0].endswith(STAGES[0][1]) and k[2] == STAGES[0][2])
    print(f"\nby stage (cProfile, FLOW_RECORD=all, {n} notifications; profiling inflates every time alike):")
    for label, path, name in STAGES:
        cumulative = sum(v[3] for k, v in stats.stats.items() if k[0].endswith(path) and k[2] == name)
        print(f"  {cumulative / max(whole, 1e-9):6.1%}  {label}")
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats(args.sort).print_stats(args.top)
    print("\n" + out.getvalue())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
