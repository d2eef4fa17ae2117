""""测试你自己的后端": register merchants, download kits, watch their orders, run the grader.

The console page (``/sandbox/backends``), its control API (``/sandbox/control/merchants``,
``/sandbox/control/grade``) and the CLI (``sandbox-kit``, ``sandbox-grade``, ``sandbox-serve``).
docs/test-your-backend.md walks a developer through it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from flask import Flask, Response, abort, current_app, flash, redirect, render_template, request, url_for
from sqlalchemy import select

from ..extensions import db
from ..web import check_csrf
from . import grader, kit, merchants
from .blueprints import console, control
from .diagnosis import mark_difference
from .http import control_error
from .merchant_models import SandboxGraderRun, SandboxMerchant
from .models import SandboxApiCall, SandboxTransaction
from .serve import serve
from .simulator import ApiFailure
from .state import sandbox


def _register_merchant(name: str | None, notify_url: str | None) -> tuple[merchants.NewMerchant, dict[str, bytes]]:
    platform = sandbox().platform
    merchant = merchants.register(name, notify_url)
    api_base, api_base_mounted = kit.api_bases(current_app)
    files = kit.kit_files(merchant, platform.merchant.public_key_id, kit.platform_public_pem(platform),
                          api_base, api_base_mounted)
    return merchant, files


def _valid_notify_url(value: object) -> bool:
    return value is None or (isinstance(value, str) and value.startswith(("https://", "http://"))
                             and "?" not in value and len(value) <= 255)


# -- control API ----------------------------------------------------------------------------------


@control.post("/control/merchants")
def control_register_merchant():
    """Register a merchant: ``{"name"?, "notify_url"?}`` → the kit's fields and PEM files (once)."""
    data = request.get_json(silent=True) or {}
    if not isinstance(data, dict) or not _valid_notify_url(data.get("notify_url")):
        return control_error(400, "PARAM_ERROR", "notify_url 须为不带参数的 http(s) 地址")
    merchant, files = _register_merchant(data.get("name") if isinstance(data.get("name"), str) else None,
                                         data.get("notify_url"))
    return {**json.loads(files["merchant.json"]), "name": merchant.name,
            "apiclient_key_pem": files["apiclient_key.pem"].decode(),
            "apiclient_cert_pem": files["apiclient_cert.pem"].decode(),
            "pub_key_pem": files["pub_key.pem"].decode()}, 201


@control.get("/control/merchants")
def control_merchants():
    platform = sandbox().platform
    demo = platform.merchant
    return {"merchants": [
        {"mchid": demo.mchid, "name": demo.name, "appid": demo.appids[0], "merchant_serial": demo.merchant_serial,
         "notify_url": None, "created_at": None, "demo": True},
        *({**merchants.describe(row), "demo": False} for row in merchants.registered()),
    ]}


@control.post("/control/grade")
def control_grade():
    """Run the grader: ``{"out_trade_no", "mchid"?, "notify_url"?, "wait_seconds"?}`` → the --json document."""
    data = request.get_json(silent=True)
    if not isinstance(data, dict) or not isinstance(data.get("out_trade_no"), str):
        return control_error(400, "PARAM_ERROR", "需要 JSON 对象 {\"out_trade_no\"}")
    if not _valid_notify_url(data.get("notify_url")):
        return control_error(400, "PARAM_ERROR", "notify_url 须为 http(s) 地址")
    wait = data.get("wait_seconds", 0)
    if isinstance(wait, bool) or not isinstance(wait, (int, float)) or not 0 <= wait <= 120:
        return control_error(400, "PARAM_ERROR", "wait_seconds 须为 0 到 120 的数")
    try:
        result = grader.grade(sandbox().platform, data["out_trade_no"], data.get("notify_url"),
                              data.get("mchid"), wait_seconds=float(wait))
    except grader.GradeError as exc:
        return control_error(409, "CANNOT_GRADE", str(exc))
    except ApiFailure as exc:
        return control_error(exc.status, exc.code, exc.message)
    run_id = grader.store(result, grader.render_html(result))
    return {**result.summary(), "ok": result.ok, "report_url": url_for("sandbox.console.grader_report", run_id=run_id)}


# -- the console page ------------------------------------------------------------------------------


@console.get("/backends")
def test_backend():
    """The page: merchants, the chosen one's orders and calls, its grader runs."""
    platform = sandbox().platform
    rows = merchants.registered()
    chosen = request.args.get("mchid") or (rows[-1].mchid if rows else None)
    merchant = db.session.get(SandboxMerchant, chosen) if chosen else None
    orders = calls = runs = []
    if merchant is not None:
        orders = list(db.session.scalars(select(SandboxTransaction).where(SandboxTransaction.mchid == merchant.mchid)
                                         .order_by(SandboxTransaction.id.desc()).limit(50)))
        calls = list(db.session.scalars(select(SandboxApiCall).where(SandboxApiCall.mchid == merchant.mchid)
                                        .order_by(SandboxApiCall.id.desc()).limit(50)))
        runs = list(db.session.scalars(select(SandboxGraderRun).where(SandboxGraderRun.mchid == merchant.mchid)
                                       .order_by(SandboxGraderRun.id.desc()).limit(20)))
    api_base, api_base_mounted = kit.api_bases(current_app)
    return render_template("sandbox/test_backend.html", merchants=rows, merchant=merchant, orders=orders,
                           calls=calls, runs=runs, now=platform.now(), api_base=api_base,
                           api_base_mounted=api_base_mounted, public_key_id=platform.merchant.public_key_id,
                           summaries={run.id: json.loads(run.summary) for run in runs})


@console.post("/backends/register")
def console_register_merchant():
    """Register a merchant and download its kit as a zip (the private key exists only in it)."""
    check_csrf()
    notify_url = request.form.get("notify_url") or None
    if not _valid_notify_url(notify_url):
        flash("notify_url 须为不带参数的 http(s) 地址")
        return redirect(url_for("sandbox.console.test_backend"), code=303)
    merchant, files = _register_merchant(request.form.get("name") or None, notify_url)
    folder = f"wechatpay-sandbox-{merchant.mchid}"
    return Response(kit.zip_kit(files, folder), 200, {
        "Content-Type": "application/zip", "Content-Disposition": f'attachment; filename="{folder}.zip"',
        "Cache-Control": "no-store"})


@console.post("/backends/grade")
def console_grade():
    check_csrf()
    out_trade_no, mchid = request.form.get("out_trade_no", ""), request.form.get("mchid") or None
    try:
        result = grader.grade(sandbox().platform, out_trade_no, request.form.get("notify_url") or None, mchid,
                              wait_seconds=0)
    except (grader.GradeError, ApiFailure) as exc:
        flash(f"无法检查：{exc}")
        return redirect(url_for("sandbox.console.test_backend", mchid=mchid), code=303)
    run_id = grader.store(result, grader.render_html(result))
    return redirect(url_for("sandbox.console.grader_report", run_id=run_id), code=303)


@console.get("/backends/reports/<int:run_id>")
def grader_report(run_id: int):
    run = db.session.get(SandboxGraderRun, run_id) or abort(404)
    return Response(run.report_html, 200, {"Content-Type": "text/html; charset=utf-8"})


# -- CLI -------------------------------------------------------------------------------------------


def register_cli(app: Flask) -> None:
    app.jinja_env.filters["sign_string_diff"] = mark_difference
    app.jinja_env.filters.setdefault("fromjson", lambda text: json.loads(text) if text else {})

    @app.cli.command("sandbox-kit")
    @click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
                  help="Folder to write the kit into.")
    @click.option("--notify-url", default=None, help="The backend's notify_url (the grader's default).")
    @click.option("--name", default=None, help="Merchant name shown on the payer's pages.")
    def sandbox_kit(out: Path, notify_url: str | None, name: str | None) -> None:
        """Register a new merchant in the simulator and write its kit (keys, merchant.json)."""
        if not _valid_notify_url(notify_url):
            raise click.BadParameter("must be an http(s) URL without a query", param_hint="--notify-url")
        merchant, files = _register_merchant(name, notify_url)
        kit.write_kit(out, files)
        info = json.loads(files["merchant.json"])
        click.echo(f"registered merchant {merchant.mchid} (appid {merchant.appid}); kit written to {out}")
        click.echo(f"api_base {info['api_base']}  ·  api_base_mounted {info['api_base_mounted']}")

    @app.cli.command("sandbox-grade")
    @click.option("--out-trade-no", required=True, help="An order the backend created in the simulator.")
    @click.option("--notify-url", default=None, help="Where to send (default: the order's notify_url).")
    @click.option("--mchid", default=None, help="The merchant, when several have this out_trade_no.")
    @click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
    @click.option("--report", type=click.Path(dir_okay=False, path_type=Path), help="Write an HTML report.")
    @click.option("--junit", type=click.Path(dir_okay=False, path_type=Path), help="Write JUnit XML.")
    @click.option("--wait", default=30.0, show_default=True, type=float,
                  help="Seconds to wait for the backend to create the order.")
    def sandbox_grade(out_trade_no: str, notify_url: str | None, mchid: str | None, as_json: bool,
                      report: Path | None, junit: Path | None, wait: float) -> None:
        """Grade a merchant backend's notification handling and its requests; exit 0 when no error failed."""
        platform = sandbox().platform
        try:
            result = grader.grade(platform, out_trade_no, notify_url, mchid, wait_seconds=wait)
        except (grader.GradeError, ApiFailure) as exc:
            click.echo(f"cannot grade: {exc}", err=True)
            sys.exit(2)
        html = grader.render_html(result)
        run_id = grader.store(result, html)
        if report:
            report.write_text(html, encoding="utf-8")
        if junit:
            junit.write_bytes(grader.junit_xml(result))
        if as_json:
            click.echo(json.dumps(result.summary(), ensure_ascii=False, indent=2))
        else:
            click.echo(f"merchant {result.merchant} · out_trade_no {result.out_trade_no} · {result.notify_url}")
            for case in result.cases:
                click.echo(grader.line(case))
            click.echo(f"{result.summary()['passed']}/{len(result.cases)} passed; "
                       f"{'OK' if result.ok else 'FAILED'} (report #{run_id} on the console)")
        sys.exit(0 if result.ok else 1)

    @app.cli.command("sandbox-serve")
    @click.option("--port", default=kit.DEFAULT_SERVE_PORT, show_default=True, type=int)
    @click.option("--host", default="127.0.0.1", show_default=True)
    def sandbox_serve(port: int, host: str) -> None:
        """Serve the simulator alone, its API at the root (/v3/…), for backends that cannot add a prefix."""
        app_object = current_app._get_current_object()  # type: ignore[attr-defined]
        shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        # Kits registered from this server's console name it as their api_base.
        app_object.config["SANDBOX_SERVE_URL"] = f"http://{shown}:{port}"
        click.echo(f"WeChat Pay simulator at http://{shown}:{port}/ (API /v3/…, console /, control /control/…)")
        serve(app_object, host, port)
