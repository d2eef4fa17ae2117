"""Learning: the guided tour (the shop and its flow inspector side by side) and the docs pages."""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from pathlib import Path

from flask import Blueprint, abort, current_app, redirect, render_template, request, send_from_directory, url_for
from markupsafe import Markup
from sqlalchemy import select

from .. import i18n
from ..extensions import db
from ..i18n import _
from ..models import Product
from ..paths import ROOT
from ..services import orders
from ..web import check_csrf, shopper_id

bp = Blueprint("learn", __name__)
bp.before_request(check_csrf)

DOCS = ROOT / "docs"
DOC_NAME = re.compile(r"^[a-z0-9-]+$")


@dataclass(frozen=True)
class Scene:
    name: str
    title: str
    lead: str
    steps: tuple[str, ...]
    doc: str


def scenes() -> list[Scene]:
    """Every scene the tour knows, in the order a learner meets them."""
    return [
        Scene("native", _("Native 扫码支付（电脑）"),
              _("电脑浏览器里展示二维码，顾客用微信扫一扫付款。"),
              (_("左边是商店的收银台：二维码和倒计时。右边是这笔订单的支付流程，新的一步出现时会滚动到它并高亮。"),
               _("点「打开扫码页」（顾客扫码后在微信里看到的页面），在新标签页里点「立即支付」；或直接点「模拟顾客付款」。看右边依次出现：微信支付通知、验签、解密、核对金额、入账。"),
               _("展开任何一步，查看原始报文、签名串和验签结果。")),
              "native"),
        Scene("h5", _("H5 支付（手机浏览器）"),
              _("手机浏览器（微信外）下单，跳转到微信支付收银台，付款后回到商户页面。"),
              (_("商户后台带着顾客真实 IP 调用 H5 下单接口，拿到 h5_url。"),
               _("点「前往微信支付收银台」：收银台在新标签页打开（微信的收银台不允许被嵌入），页面跳转到 h5_url（带 redirect_url），付款后回到商户的结果页。"),
               _("返回页不能直接判定成功：以通知或查询为准。")),
              "h5"),
        Scene("jsapi", _("JSAPI 支付（微信内网页）"),
              _("在微信内置浏览器里，通过网页授权拿到 openid，再调起 WeixinJSBridge 付款。"),
              (_("JSAPI 只在微信内置浏览器里可用：点「模拟微信内打开」，模拟器让这个浏览器的请求带上微信的 User-Agent 标记，不用改任何浏览器设置。"),
               _("网页授权（snsapi_base 静默授权）：右边依次记录跳转授权页、带 code 回来并核对 state、用 code 换 openid（appsecret 已脱敏）。"),
               _("JSAPI 下单拿到 prepay_id，后台计算 paySign：右边可看到四行签名串。"),
               _("点「立即支付」：页面调用 getBrandWCPayRequest，在模拟的支付窗口里输入 6 位密码。:ok 只是前端结果，以通知或查询为准。")),
              "jsapi"),
        Scene("miniprogram", _("小程序支付"),
              _("小程序里 wx.login 换 openid，后台用小程序 appid 下单并签名，小程序调用 wx.requestPayment。"),
              (_("小程序没有网页收银台：左边是小程序 web-view 看到的页面。点「在模拟的小程序中支付」，它依次做小程序代码会做的事（真实的小程序见 README 的示例代码）。"),
               _("wx.login 的 code 由后台经 jscode2session 换成 openid：session_key 永远不离开后台，右边已脱敏。"),
               _("JSAPI 下单（小程序 appid），后台计算 paySign，小程序调用 wx.requestPayment。"),
               _("requestPayment:ok 之后，向后台确认真实状态。")),
              "miniprogram"),
    ]


# (module, function) each scene's checkout calls: a scene appears in the tour once it exists.
SCENE_FUNCTIONS = {
    "native": ("storefront.services.scenes", "pay_native"),
    "h5": ("storefront.services.scenes", "pay_h5"),
    "jsapi": ("storefront.services.scenes", "pay_jsapi"),
    "miniprogram": ("storefront.services.scenes", "pay_jsapi"),  # the same endpoint, the mini program's appid
}


def available(scene: str) -> bool:
    """Is this scene built yet? ``TOUR_SCENES`` (a list) overrides the detection."""
    configured = current_app.config.get("TOUR_SCENES")
    if configured is not None:
        return scene in configured
    module_name, function = SCENE_FUNCTIONS[scene]
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return False
    if scene == "miniprogram" and "miniprogram" not in current_app.blueprints:
        return False
    return hasattr(module, function)


def _scene(name: str) -> Scene:
    found = next((s for s in scenes() if s.name == name), None)
    if found is None or not available(name):
        abort(404)
    return found


@bp.get("/tour")
def tour():
    return render_template("learn/tour.html", scenes=[(s, available(s.name)) for s in scenes()])


@bp.post("/tour/<scene>/start")
def start(scene: str):
    """A fresh order of the first product for this session, then the split view."""
    _scene(scene)
    product_id = db.session.scalar(select(Product.id).where(Product.active).order_by(Product.id).limit(1))
    order = orders.create_order(shopper_id(create=True), product_id, 1, request.form.get("idempotency_key"))
    return redirect(url_for("learn.tour_order", scene=scene, order_no=order.order_no), code=303)


@bp.get("/tour/<scene>/<order_no>")
def tour_order(scene: str, order_no: str):
    found = _scene(scene)
    order = orders.owned_order(order_no, shopper_id())
    # A mini program has no web checkout: the shop frame shows what its web-view would, with
    # (in simulator mode) a stand-in for the mini program's own code.
    shop_url = url_for("checkout.pay", order_no=order_no, method=scene)
    return render_template(
        "learn/tour_order.html", scene=found, order=order, shop_url=shop_url,
        flow_url=url_for("flow.inspector", order_no=order_no, embed=1),
        flow_json_url=url_for("flow.flow_json", order_no=order_no),
    )


# -- docs: docs/<language>/*.md served as pages, so the inspector can link to them -----------
# One source per language: docs/zh/ (Chinese, the default) and docs/en/, each page linking to its
# other-language twin. docs/interface.md is the project's own contract copy and is not served.

DOC_DIRS = {"zh_CN": "zh", "en": "en"}
_DOC_LINK = re.compile(r'href="(?:\.\./(zh|en)/)?([a-z0-9-]+)\.md(#[^"]*)?"')
_DOC_IMAGE = re.compile(r'src="(?:\.\./)?img/([^"]+)"')
_ROOT_LINK = re.compile(r'href="/(?!/)([^"]*)"')
_TABLE_CELL = re.compile(r"<td>.*?</td>", re.S)


def _doc_url(page: str, **params: str) -> str:
    return url_for("learn.docs_index", **params) if page == "index" else url_for("learn.doc", page=page, **params)


def _render_markdown(text: str) -> Markup:
    """Markdown as HTML; links written for GitHub become the served pages, built from the request."""
    import markdown

    html = markdown.markdown(text, extensions=["fenced_code", "tables", "toc"], output_format="html")
    # A "|" inside a table cell is written "\|" (GitHub's table syntax); the reader sees "|".
    html = _TABLE_CELL.sub(lambda m: m.group(0).replace("\\|", "|"), html)

    def doc_link(match: re.Match[str]) -> str:
        language, page, anchor = match.groups()
        params = {"lang": i18n.LANGUAGES[{"zh": "zh_CN", "en": "en"}[language]][0]} if language else {}
        return f'href="{_doc_url(page, **params)}{anchor or ""}"'

    # "/tour" in a doc is the shop this page is served from (a prefix mount included), never a fixed host.
    html = _ROOT_LINK.sub(lambda m: f'href="{request.script_root}/{m.group(1)}"', html)
    # "signatures.md#x" on GitHub is "signatures#x" here; "../en/x.md" is the English twin.
    html = _DOC_LINK.sub(doc_link, html)
    html = _DOC_IMAGE.sub(lambda m: f'src="{url_for("learn.doc_image", name=m.group(1))}"', html)
    return Markup(html)  # our own repository's Markdown, not user input


def doc_path(page: str, locale: str) -> Path | None:
    """The page's source in ``locale``, else in the other language; None if there is none."""
    if not DOC_NAME.match(page):
        return None
    for directory in (DOC_DIRS[locale], *(d for d in DOC_DIRS.values() if d != DOC_DIRS[locale])):
        path = DOCS / directory / f"{page}.md"
        if path.is_file():
            return path
    return None


@bp.get("/docs/")
def docs_index():
    return doc("index")


@bp.get("/docs/<page>")
def doc(page: str):
    path = doc_path(page, i18n.current_locale())
    if path is None:
        abort(404)
    text = path.read_text(encoding="utf-8")
    title = next((line[2:].strip() for line in text.splitlines() if line.startswith("# ")), page)
    doc_lang = "zh-CN" if path.parent.name == "zh" else "en"
    return render_template("learn/doc.html", title=title, html=_render_markdown(text), page=page,
                           doc_lang=doc_lang)


@bp.get("/docs/img/<path:name>")
def doc_image(name: str):
    return send_from_directory(Path(DOCS) / "img", name)
