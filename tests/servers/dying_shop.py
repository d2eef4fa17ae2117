"""A shop that dies while handling its first payment notification (test-only; tests/test_workers.py).

    python tests/servers/dying_shop.py PORT before|after MARK_FILE

Serves ``create_app()`` (configured from the environment, as ``wsgi:app``) on 127.0.0.1:PORT with
werkzeug's threaded server. The first ``POST /notify/wechatpay`` whose MARK_FILE does not exist yet
creates it, reads the body and then kills the whole process with ``os._exit(1)``:

- ``before``: before the app sees the notification (nothing applied, nothing answered);
- ``after``: after the app handled it (committed) but before a byte of the answer is sent.

Run again with the same MARK_FILE, the same script serves normally: that is the restart.
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from werkzeug.serving import make_server  # noqa: E402

from storefront import create_app  # noqa: E402


def dying(shop, variant: str, mark: Path):
    """Wrap the shop's WSGI app so that the first notification ends the process."""

    def app(environ, start_response):
        if environ["REQUEST_METHOD"] == "POST" and environ.get("PATH_INFO") == "/notify/wechatpay":
            try:
                os.close(os.open(mark, os.O_CREAT | os.O_EXCL | os.O_WRONLY))  # first one only, ever
            except FileExistsError:
                return shop(environ, start_response)
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            if variant == "before":
                os._exit(1)
            environ["wsgi.input"] = io.BytesIO(body)
            answer = shop(environ, lambda status, headers, exc_info=None: (lambda data: None))
            for _chunk in answer:  # let the app finish (and commit) completely
                pass
            if hasattr(answer, "close"):
                answer.close()
            os._exit(1)
        return shop(environ, start_response)

    return app


def main() -> None:
    port, variant, mark = int(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    if variant not in ("before", "after"):
        raise SystemExit(f"variant must be before or after, not {variant!r}")
    server = make_server("127.0.0.1", port, dying(create_app(), variant, mark), threaded=True)
    print(f"dying shop on {port} ({variant})", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
