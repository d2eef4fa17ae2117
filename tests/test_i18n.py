"""Two languages: Chinese (the source, default) and English, for every page, the docs and the catalogue.

The catalogue tests fail when a string in the code or templates has no English translation, or when
``storefront/translations/en/LC_MESSAGES/messages.po`` is out of date with the sources
(``make translations-update`` refreshes it).
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from babel.messages.pofile import read_po
from babel.support import Translations

from storefront import i18n

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
EN_PO = ROOT / "storefront" / "translations" / "en" / "LC_MESSAGES" / "messages.po"
CJK = re.compile(r"[\u3400-\u9fff\uff01-\uff5e\u3000-\u303f]")
PLACEHOLDER = re.compile(r"%\((\w+)\)s|%s")


def visible_text(html: str) -> str:
    """What a reader sees: no tags, no script blocks, no attribute values; protocol messages
    (``<pre>``, shown byte for byte: a Chinese ``description`` stays Chinese) left out."""
    html = re.sub(r"<script\b.*?</script>|<style\b.*?</style>|<pre\b.*?</pre>", " ", html, flags=re.S)
    return re.sub(r"<[^>]+>", " ", html)


def html_lang(html: str) -> str:
    return re.search(r'<html lang="([^"]+)"', html).group(1)


def assert_english(html: str, page: str) -> None:
    assert html_lang(html) == "en", page
    # The switch names the other language in its own script: the only Chinese an English page shows.
    leftover = CJK.findall(visible_text(html).replace("中文", ""))
    assert not leftover, f"{page} shows untranslated Chinese: {''.join(leftover)[:80]}"


# -- the catalogue -----------------------------------------------------------------------------


def catalogue() -> list:
    with EN_PO.open("rb") as source:
        return [m for m in read_po(source) if m.id]


def test_every_message_has_an_english_translation_with_the_same_placeholders():
    messages = catalogue()
    assert len(messages) > 400
    untranslated = [m.id for m in messages if not m.string or "fuzzy" in m.flags]
    assert not untranslated, f"translate these in {EN_PO.name}: {untranslated[:10]}"
    for message in messages:
        assert sorted(PLACEHOLDER.findall(message.id)) == sorted(PLACEHOLDER.findall(message.string)), message.id
        assert not CJK.search(message.string), f"{message.id!r} -> {message.string!r}"


def test_the_catalogue_is_up_to_date_with_the_sources(tmp_path):
    """Every string the code and templates mark is in the catalogue, and nothing else is."""
    pot = tmp_path / "messages.pot"
    subprocess.run([str(Path(sys.executable).parent / "pybabel"), "-q", "extract", "-F", "babel.cfg", "-k", "_l",
                    "--no-location", "-o", str(pot), "."], cwd=ROOT, check=True, capture_output=True)
    with pot.open("rb") as source:
        wanted = {m.id for m in read_po(source) if m.id}
    have = {m.id for m in catalogue()}
    assert not wanted - have, f"run make translations-update; missing: {sorted(wanted - have)[:10]}"
    assert not have - wanted, f"run make translations-update; obsolete: {sorted(have - wanted)[:10]}"
    # The strings static/js shows are in it too (they are handed over by the templates).
    assert set(i18n.JS_MESSAGES) <= have


def test_catalogues_compile_when_missing_or_stale(tmp_path):
    target = tmp_path / "en" / "LC_MESSAGES"
    target.mkdir(parents=True)
    shutil.copy(EN_PO, target / "messages.po")
    assert i18n.compile_catalogues(tmp_path) == [target / "messages.mo"]
    assert i18n.compile_catalogues(tmp_path) == []  # up to date: left alone
    english = Translations.load(str(tmp_path), ["en"])
    assert english.gettext("立即购买") == "Buy now"


def test_cjk_fonts_are_required_for_docs_screenshots(tmp_path):
    """Without a CJK font the screenshots would show boxes: make docs-screenshots refuses, saying why."""
    if not shutil.which("make"):
        pytest.skip("make is not installed")
    stub = tmp_path / "fc-list"
    stub.write_text("#!/bin/sh\nexit 0\n")  # fontconfig present, no font for :lang=zh
    stub.chmod(0o755)
    # Under make test the parent make's flags (-j, a jobserver) must not leak into this one.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    env["PATH"] = f"{tmp_path}:{os.environ['PATH']}"
    refused = subprocess.run(["make", "-s", "docs-screenshots"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert refused.returncode != 0
    assert "fonts-noto-cjk" in refused.stderr and "fc-list" in refused.stderr
    ci = (ROOT / ".ci" / "run").read_text()
    assert "fonts-noto-cjk" in ci and "fc-list :lang=zh" in ci
    assert "fonts-noto-cjk" in (ROOT / "README.md").read_text()


# -- choosing the language ----------------------------------------------------------------------


def test_chinese_by_default_english_on_request_and_the_choice_is_remembered(client):
    first = client.get("/")
    assert html_lang(first.get_data(as_text=True)) == "zh-CN"
    assert "立即购买" in client.get("/products/1").get_data(as_text=True)

    switched = client.get("/?lang=en")
    assert_english(switched.get_data(as_text=True), "/?lang=en")
    cookie = client.get_cookie("lang")
    assert cookie is not None and cookie.value == "en" and cookie.http_only
    # Remembered: the next pages, without ?lang=, are English.
    assert_english(client.get("/products/1").get_data(as_text=True), "/products/1")
    assert "Buy now" in client.get("/products/1").get_data(as_text=True)

    back = client.get("/products/1?lang=zh-CN")
    assert html_lang(back.get_data(as_text=True)) == "zh-CN"
    assert client.get_cookie("lang").value == "zh-CN"
    assert html_lang(client.get("/").get_data(as_text=True)) == "zh-CN"


@pytest.mark.parametrize(("header", "lang"), [
    ("en-US,en;q=0.9", "en"), ("en-GB", "en"), ("zh-CN,zh;q=0.9,en;q=0.5", "zh-CN"), ("zh-TW", "zh-CN"),
    ("fr-FR,de;q=0.8", "zh-CN"), ("fr-FR,en;q=0.5", "en"), ("", "zh-CN"),
])
def test_accept_language_is_the_fallback(client, header, lang):
    answer = client.get("/", headers={"Accept-Language": header} if header else {})
    assert html_lang(answer.get_data(as_text=True)) == lang
    assert "Accept-Language" in answer.headers.get("Vary", "")


def test_the_cookie_beats_accept_language_and_a_bad_lang_changes_nothing(client):
    client.get("/?lang=zh-CN")
    assert html_lang(client.get("/", headers={"Accept-Language": "en"}).get_data(as_text=True)) == "zh-CN"
    answer = client.get("/?lang=xx", headers={"Accept-Language": "en"})
    assert answer.status_code == 200 and html_lang(answer.get_data(as_text=True)) == "zh-CN"
    assert client.get_cookie("lang").value == "zh-CN"


def test_the_switch_links_to_the_same_page_in_the_other_language(client):
    page = client.get("/merchant/login?next=x").get_data(as_text=True)
    link = re.search(r'<a class="lang-switch__other" href="([^"]+)" lang="en"', page).group(1)
    assert link == "/merchant/login?next=x&amp;lang=en"  # no host: built from the request
    english = client.get("/merchant/login?next=x&lang=en").get_data(as_text=True)
    assert re.search(r'href="/merchant/login\?next=x&amp;lang=zh-CN" lang="zh-CN"', english)


def test_javascript_strings_come_as_json_in_a_meta_tag_in_english_only(client):
    chinese = client.get("/").get_data(as_text=True)
    assert 'name="sf-i18n"' not in chinese
    english = client.get("/?lang=en").get_data(as_text=True)
    block = re.search(r"<meta name=\"sf-i18n\" content='([^']*)'>", english).group(1)
    strings = json.loads(html.unescape(block))
    assert strings["支付未完成："] == "Payment not completed: " and set(strings) == set(i18n.JS_MESSAGES)
    # No inline script on the page (a Content-Security-Policy forbids them).
    for tag in re.findall(r"<script\b[^>]*>", english):
        assert "src=" in tag, tag


# -- every blueprint's key pages, in both languages ------------------------------------------------


def test_key_pages_of_every_blueprint_in_both_languages(live_server, shopper):
    order = shopper.buy()
    attempt = shopper.start_native(order["order_no"])
    no = order["order_no"]
    shop_pages = ["/", "/products/1", f"/orders/{no}", f"/orders/{no}/pay", f"/orders/{no}/flow",
                  f"/orders/{no}/flow?embed=1", "/tour", "/docs/", "/docs/notifications", "/merchant/login"]
    for path in shop_pages + ["/sandbox/"]:
        chinese = shopper.http.get(f"{live_server.url}{path}", params={"lang": "zh-CN"}, timeout=10)
        assert chinese.status_code == 200, path
        assert html_lang(chinese.text) == "zh-CN", path
        assert CJK.search(visible_text(chinese.text)), path
        english = shopper.http.get(f"{live_server.url}{path}", timeout=10)  # the cookie remembers
        assert english.status_code == 200, path
        assert html_lang(english.text) == "zh-CN", path
    shopper.http.get(f"{live_server.url}/?lang=en", timeout=10)
    for path in shop_pages:
        english = shopper.http.get(f"{live_server.url}{path}", timeout=10).text
        if path.startswith("/docs/"):  # English prose that names WeChat's own Chinese messages
            assert html_lang(english) == "en" and 'class="card doc" lang="en"' in english, path
        else:
            assert_english(english, path)
    console = shopper.http.get(f"{live_server.url}/sandbox/", timeout=10).text
    assert html_lang(console) == "en" and "Transactions" in console and "Notifications" in console

    # The inspector's explanations, in the reader's language.
    steps = shopper.http.get(f"{live_server.url}/orders/{no}/flow.json", timeout=10).json()["steps"]
    prepay = next(s for s in steps if s["kind"] == "prepay_native")
    assert prepay["explain"]["purpose"].startswith("The merchant signs five lines")
    assert prepay["label"] and not CJK.search(prepay["label"]), prepay["label"]
    assert not CJK.search(json.dumps(prepay["explain"], ensure_ascii=False))
    # The simulator's scan page (the payer's side) speaks English too: code_url leads to it.
    scan = shopper.http.get(attempt["code_url"], timeout=10)
    assert scan.status_code == 200 and html_lang(scan.text) == "en" and "Pay now" in scan.text


def test_the_merchant_area_in_english(client):
    client.get("/?lang=en")
    login = client.get("/merchant/login").get_data(as_text=True)
    assert_english(login, "/merchant/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', login).group(1)
    password = (Path(client.application.instance_path) / "merchant_password").read_text().strip()
    signed_in = client.post("/merchant/login", data={"csrf_token": token, "password": password})
    assert signed_in.status_code == 303
    page = client.get("/merchant/").get_data(as_text=True)
    assert_english(page, "/merchant/")
    assert "Orders" in page
    for path in ("/merchant/reconciliation",):
        answer = client.get(path)
        assert answer.status_code == 200, path
        assert_english(answer.get_data(as_text=True), path)


# -- the docs ---------------------------------------------------------------------------------------


def test_the_docs_exist_in_both_languages_and_link_to_each_other(client):
    chinese = {p.name for p in (DOCS / "zh").glob("*.md")}
    english = {p.name for p in (DOCS / "en").glob("*.md")}
    assert chinese == english and "index.md" in chinese and "interface.md" in chinese
    for name in sorted(chinese):
        zh = (DOCS / "zh" / name).read_text()
        en = (DOCS / "en" / name).read_text()
        assert f"(../en/{name})" in zh and f"(../zh/{name})" in en, name
        assert len(CJK.findall(zh)) > 50, f"docs/zh/{name} is not in Chinese"
        page = name.removesuffix(".md")
        url = "/docs/" if page == "index" else f"/docs/{page}"
        served_zh = client.get(f"{url}?lang=zh-CN").get_data(as_text=True)
        served_en = client.get(f"{url}?lang=en").get_data(as_text=True)
        assert html_lang(served_zh) == "zh-CN" and 'class="card doc" lang="zh-CN"' in served_zh, name
        assert html_lang(served_en) == "en" and 'class="card doc" lang="en"' in served_en, name
        twin = "/docs/" if page == "index" else f"/docs/{page}"
        assert f'href="{twin}?lang=en"' in served_zh and f'href="{twin}?lang=zh-CN"' in served_en, name
        for served in (served_zh, served_en):
            links = re.findall(r'(?:href|src)="([^"]+)"', served)
            assert not [u for u in links if "127.0.0.1" in u or "localhost" in u], name  # built from the request
            assert ".md" not in "".join(re.findall(r'href="([^"]+)"', served)), name


def test_docs_links_are_built_from_the_request(client):
    """Served under a prefix (a reverse proxy's SCRIPT_NAME), links keep it; no host is hard-coded."""
    page = client.get("/docs/?lang=en", base_url="http://shop.example/store").get_data(as_text=True)
    assert 'href="/store/tour"' in page
    assert 'href="/store/docs/native"' in page and 'src="/store/docs/img/en/flow-inspector.png"' in page
    chinese = client.get("/docs/?lang=zh-CN", base_url="http://shop.example/store").get_data(as_text=True)
    assert 'src="/store/docs/img/flow-inspector.png"' in chinese


def test_the_served_interface_page_is_written_for_users(client):
    for lang in ("zh-CN", "en"):
        page = client.get(f"/docs/interface?lang={lang}")
        assert page.status_code == 200
        text = visible_text(page.get_data(as_text=True))
        for internal in ("(added)", "(changed)", "contract", "../shared", "issue note", "reference §",
                         "yours to design", "Platform.now"):
            assert internal not in text, (lang, internal)
        assert "/api/orders" in text and "/notify/wechatpay" in text and "?lang=" in text
        assert "\\|" not in text and "GET|POST /sandbox/control/clock" in text  # table cells read as written


def test_docs_screenshots_exist_in_both_languages():
    chinese = {p.name for p in (DOCS / "img").glob("*.png")}
    english = {p.name for p in (DOCS / "img" / "en").glob("*.png")}
    assert chinese and chinese == english
    for name in chinese:
        assert (DOCS / "img" / name).read_bytes() != (DOCS / "img" / "en" / name).read_bytes(), name


def test_requests_still_work_with_the_cookie_of_an_unknown_language(live_server):
    session = requests.Session()
    session.cookies.set("lang", "klingon", domain="127.0.0.1")
    answer = session.get(f"{live_server.url}/", timeout=10)
    assert answer.status_code == 200 and html_lang(answer.text) == "zh-CN"


def test_order_events_are_stored_in_chinese_and_shown_in_the_readers_language(client):
    client.get("/?lang=en")
    bought = client.post("/api/orders", json={"product_id": 1, "quantity": 1})
    assert bought.status_code == 201
    no = bought.get_json()["order_no"]
    from storefront.extensions import db
    from storefront.models import Order

    with client.application.app_context():
        notes = [e.note for e in db.session.query(Order).one().events]
    assert notes == ["下单"]  # the source language, whoever wrote it
    english = client.get(f"/orders/{no}").get_data(as_text=True)
    assert "Order placed" in english and "下单" not in visible_text(english)
    chinese = client.get(f"/orders/{no}?lang=zh-CN").get_data(as_text=True)
    assert "下单" in visible_text(chinese)


def test_stored_texts_with_values_round_trip_through_the_catalogue(app):
    with app.test_request_context("/?lang=en"):
        english = i18n._("申请退款 %(amount)s（%(no)s）", amount="¥1.00", no="SF1P01R01")
        assert english == "Refund of ¥1.00 requested (SF1P01R01)"
        assert i18n.to_source(english) == "申请退款 ¥1.00（SF1P01R01）"
        assert i18n.translate_data("申请退款 ¥1.00（SF1P01R01）") == english
        assert i18n.translate_data("a merchant's own text") == "a merchant's own text"
    with app.test_request_context("/"):
        assert i18n.translate_data("申请退款 ¥1.00（SF1P01R01）") == "申请退款 ¥1.00（SF1P01R01）"


def test_no_text_is_translated_at_import_time():
    """``_()`` outside a function runs once, before any request, in no one's language: module-level
    tables use ``lazy`` (imported as ``_l``), translated when shown."""
    import ast

    def calls(node: ast.AST, in_function: bool = False):
        """Line numbers of the ``_()`` calls outside any function under ``node``."""
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            in_function = True
        if (not in_function and isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id == "_"):
            yield node.lineno
        for child in ast.iter_child_nodes(node):
            yield from calls(child, in_function)

    found = [f"{path.relative_to(ROOT)}:{line}" for path in sorted((ROOT / "storefront").rglob("*.py"))
             for line in calls(ast.parse(path.read_text(encoding="utf-8")))]
    assert found == []


def test_error_pages_and_json_errors_speak_the_readers_language(client):
    page = client.get("/no-such-page?lang=en")
    assert page.status_code == 404 and "Page not found" in page.get_data(as_text=True)
    assert "页面不存在" in client.get("/no-such-page?lang=zh-CN").get_data(as_text=True)
    client.get("/?lang=en")
    answer = client.post("/api/orders", json={"product_id": 999999, "quantity": 1})
    assert answer.status_code == 404 and answer.get_json()["error"]["message"] == "Product not found"
