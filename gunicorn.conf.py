"""gunicorn settings for ``make serve-prod`` (``gunicorn -c gunicorn.conf.py wsgi:app``).

Each worker builds its own app: its own database pool, HTTP sessions and (in simulator mode)
notification deliverer. Jobs run from cron, not here.
"""

import os

bind = os.environ.get("BIND", f"127.0.0.1:{os.environ.get('PORT', '8000')}")
workers = int(os.environ.get("WEB_CONCURRENCY", "4"))
# Threads, not just processes: in simulator mode a request to the shop calls /sandbox on the
# same server, which a single-threaded sync worker could deadlock on.
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
timeout = 30
graceful_timeout = 10
accesslog = "-"
