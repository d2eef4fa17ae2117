"""An order's flow as steps: its recorded protocol messages merged with its state changes."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from ..i18n import _, translate_data
from ..i18n import lazy as _l
from ..models import Order, ProtocolMessage
from ..services import flowlog
from ..wechatpay.times import BEIJING
from .explain import Explanation, explanation

CHECK_LABELS = {
    "headers": _l("签名头齐全（Wechatpay-Timestamp/Nonce/Signature/Serial）"),
    "serial": _l("Wechatpay-Serial 是已知的微信支付公钥"),
    "timestamp": _l("时间戳在 5 分钟之内"),
    "signature": _l("RSA-SHA256 签名验证"),
    "decrypt": _l("AES-256-GCM 解密 resource"),
    "mchid": _l("商户号是本商户"),
    "appid": _l("AppID 属于本商户"),
    "trade_state": _l("交易状态（须为 SUCCESS）与微信支付订单号"),
    "amount": _l("金额与订单一致（通知 / 订单，单位：分）"),
    "outcome": _l("幂等入账并应答"),
}
# What a refusal is called, by the check that failed (never "验签失败" for an old timestamp).
REFUSAL_LABELS = {
    "headers": _l("签名头缺失"),
    "serial": _l("证书序列号未知"),
    "timestamp": _l("时间戳超出 5 分钟"),
    "signature": _l("验签失败"),
    "decrypt": _l("解密失败"),
    "mchid": _l("商户号不符"),
    "appid": _l("AppID 不符"),
    "trade_state": _l("交易状态不是 SUCCESS"),
    "amount": _l("金额不符"),
}
LOGIN_KINDS = ("oauth_token", "jscode2session")
STATUS_LABELS = {"pending": _l("待支付"), "paid": _l("已支付"), "closed": _l("已关闭"), "refunded": _l("已退款")}
CAUSE_LABELS = {"shopper": _l("顾客"), "notify": _l("支付通知"), "query": _l("主动查询"), "job": _l("定时任务"),
                "bill": _l("对账")}
ORIGIN_LABELS = {"poll": _l("页面轮询触发的主动查询"), "job": _l("定时任务"), "browser": _l("页面上报"),
                 "wechatpay": _l("微信支付推送")}


@dataclass
class Section:
    label: str
    text: str
    signed: bool = False  # a canonical string: show its line ends
    raw: str = ""  # the body byte for byte, shown beside ``text`` (its pretty form) when they differ


@dataclass
class Step:
    id: str
    at: datetime
    kind: str
    source: str
    target: str
    title: str
    label: str  # short text on the diagram arrow
    explain: Explanation
    ok: bool | None = None
    origin: str = ""
    out_trade_no: str | None = None
    answer: str = ""  # the answer arrow's label, for request/answer steps
    sections: list[Section] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)
    signed_message: str = ""
    verify_message: str = ""
    verification: str = "none"
    verify_serial: str | None = None
    repeat: int = 1
    refusal: str = ""  # the failed check's name, for a refused notification

    @property
    def at_text(self) -> str:
        moment = self.at.replace(tzinfo=timezone.utc).astimezone(BEIJING)
        return moment.strftime("%H:%M:%S.") + f"{moment.microsecond // 1000:03d}"

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "at": self.at.replace(tzinfo=timezone.utc).isoformat(), "kind": self.kind,
            "from": self.source, "to": self.target, "title": self.title, "label": self.label, "ok": self.ok,
            "origin": self.origin, "out_trade_no": self.out_trade_no, "answer": self.answer,
            "signed_message": self.signed_message, "verify_message": self.verify_message,
            "verification": self.verification, "verify_serial": self.verify_serial, "checks": self.checks,
            "repeat": self.repeat, "refusal": self.refusal,
            "explain": {"purpose": self.explain.purpose, "pitfall": self.explain.pitfall,
                        "doc": self.explain.doc, "anchor": self.explain.anchor},
            "sections": [{"label": s.label, "text": s.text, "raw": s.raw} for s in self.sections],
        }


def _headers_text(headers: dict[str, str]) -> str:
    return "\n".join(f"{name}: {value}" for name, value in headers.items())


def _pretty(body: str) -> str:
    try:
        return json.dumps(json.loads(body), ensure_ascii=False, indent=2)
    except ValueError:
        return body


def _trade_state(body: str, field: str = "trade_state") -> str | None:
    try:
        value = json.loads(body).get(field)
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def _body_section(label: str, head: str, body: str) -> Section:
    """A message with its body pretty-printed, and the exact bytes beside it when they differ."""
    pretty = _pretty(body) if body else ""
    return Section(label, head + (f"\n\n{pretty}" if body else ""), raw=body if body and pretty != body else "")


def _api_step(message: ProtocolMessage) -> Step:
    info = explanation(message.kind)
    ok = message.status is not None and message.status < 300 and message.verification != "failed"
    refund_kind = message.kind in ("refund", "refund_query")
    # A refund's answer names its state "status" (PROCESSING, SUCCESS...), a payment's "trade_state".
    state = _trade_state(message.response_body, "status" if refund_kind else "trade_state")
    status = str(message.status) if message.status is not None else _("无应答")
    answer = status + (f" {state}" if state else "")
    if message.verification == "passed":
        answer += " ✓"
    elif message.verification == "failed":
        answer += " ✗"
    verify = flowlog.verify_message(message)
    path = (message.title.split(" ", 1)[1] if " " in message.title else message.title).split("?", 1)[0]
    login = message.kind in LOGIN_KINDS
    request_line = f"{message.method} {message.url}" if login and message.url else message.title
    sections = [
        Section(_("请求"), request_line
                + (f"\n{_headers_text(flowlog.shown_request_headers(message))}" if not login else "")
                + (f"\n\n{message.request_body}" if message.request_body else "")),
    ]
    signed = "" if login else flowlog.signed_message(message)
    if signed:
        sections.append(Section(_("签名串（商户用私钥签名的原文）"), signed, signed=True))
    sections.append(_body_section(_("应答"), f"HTTP {status}\n{_headers_text(message.response_headers)}",
                                  message.response_body))
    if verify:
        sections.append(Section(_("验签串（微信支付签名的原文）"), verify, signed=True))
    if message.error:
        sections.append(Section(_("错误"), message.error))
    if message.kind == "refund_query":
        label = _("查询退款")
    elif message.kind == "refund":
        label = _("申请退款")
    else:
        label = f"{message.method} {path.rsplit('/', 1)[-1] if message.kind != 'query' else 'query'}"
    return Step(
        id=f"m{message.id}", at=message.at, kind=message.kind, source=info.source, target=info.target,
        title=info.title, label=label,
        explain=info, ok=ok, origin=message.origin, out_trade_no=message.out_trade_no, answer=answer,
        sections=sections, signed_message=signed, verify_message=verify,
        verification=message.verification, verify_serial=message.verified_serial,
    )


def _notify_step(message: ProtocolMessage) -> Step:
    info = explanation(message.kind)
    checks = message.checks
    verify = flowlog.verify_message(message)
    for check in checks:
        check["label"] = CHECK_LABELS.get(check.get("name"), check.get("name", ""))
    ok = message.status is not None and message.status < 300
    failed = next((c.get("name") for c in checks if c.get("ok") is False and c.get("name") != "outcome"), None)
    refusal = REFUSAL_LABELS.get(failed, "") if failed else ""
    sections = [
        _body_section(_("通知请求"), f"{message.title}\n{_headers_text(message.request_headers)}",
                      flowlog.shown_request_body(message)),
        Section(_("验签串（微信支付签名的原文）"), verify, signed=True),
    ]
    decrypted = flowlog.decrypted_resource(message)
    if decrypted:
        sections.append(Section(_("解密后的 resource"), decrypted))
    sections.append(Section(_("商户应答"), f"HTTP {message.status}" + (f"\n\n{message.response_body}"
                                                                      if message.response_body else "")))
    title = info.title if not refusal else _("%(title)s · 被拒绝：%(check)s", title=info.title, check=refusal)
    return Step(
        id=f"m{message.id}", at=message.at, kind=message.kind, source="wechatpay", target="shop",
        title=title, refusal=refusal,
        label="TRANSACTION.SUCCESS" if message.kind == "notify_payment" else message.kind,
        explain=info, ok=ok, origin=message.origin, out_trade_no=message.out_trade_no,
        answer=f"{message.status}" + (" ✓" if ok else f" ✗ {refusal}" if refusal else " FAIL"),
        sections=sections, checks=checks, verify_message=verify, verification=message.verification,
        verify_serial=message.verified_serial,
    )


def _browser_step(message: ProtocolMessage) -> Step:
    info = explanation(message.kind)
    sections = [Section(_("页面上报"), message.request_body or "—")]
    failed = message.kind in ("bridge_result", "requestpayment_result") and ":ok" not in (message.request_body or "")
    return Step(
        id=f"m{message.id}", at=message.at, kind=message.kind, source=info.source, target=info.target,
        title=flowlog.BROWSER_EVENTS.get(message.kind, message.title), label=info.title, explain=info,
        ok=False if failed else None, origin="browser", out_trade_no=message.out_trade_no, sections=sections,
    )


def _event_name(event, first_refund_events: set[int]) -> str:
    """What an event that leaves the status as it was is called: 退款申请, 二维码更新..."""
    if event.id in first_refund_events:
        return _("退款申请")
    note = event.note or ""
    for mark in ("：", ": ", "（", "("):
        note = note.split(mark, 1)[0]
    return note.strip() or _("记录")


def _note_step(message: ProtocolMessage) -> Step:
    """A step the shop took on its own: the OAuth redirect, the state check, paySign."""
    info = explanation(message.kind)
    sections = [Section(_("详情"), message.request_body or "—")]
    signed = message.fields.get("signed_note") or ""
    if signed:
        sections.append(Section(_("签名串（商户用私钥签名的原文）"), signed, signed=True))
    labels = {"oauth_authorize": "302 authorize", "oauth_callback": "code + state", "pay_sign": "paySign"}
    return Step(
        id=f"m{message.id}", at=message.at, kind=message.kind, source=info.source, target=info.target,
        title=flowlog.SHOP_NOTES.get(message.kind, message.title), label=labels.get(message.kind, message.kind),
        explain=info, ok=message.verification != "failed", origin=message.origin,
        out_trade_no=message.out_trade_no, sections=sections, signed_message=signed,
    )


def _state_step(event, first_refund_events: frozenset[int] | set[int] = frozenset()) -> Step:
    created = not event.from_status
    info = explanation("order_created" if created else "state")
    source_label = STATUS_LABELS.get(event.from_status, event.from_status)
    target_label = STATUS_LABELS.get(event.to_status, event.to_status)
    same = not created and event.from_status == event.to_status
    if created:
        move = target_label
    elif same:
        move = _event_name(event, first_refund_events)
    else:
        move = f"{source_label} → {target_label}"
    text = f"{move}\n"
    if same:
        text += _("订单状态不变：%(s)s", s=target_label) + "\n"
    text += _("原因：%(cause)s", cause=CAUSE_LABELS.get(event.cause, event.cause))
    if event.note:
        text += f"\n{translate_data(event.note)}"
    if event.wechat_ref:
        text += f"\n{event.wechat_ref}"
    return Step(
        id=f"e{event.id}", at=event.at, kind="order_created" if created else "state", source=info.source,
        target=info.target, title=info.title if created else (move if same else _("%(title)s：%(move)s", title=info.title, move=move)),
        label=_("下单") if created else move, explain=info, ok=True, origin=event.cause,
        sections=[Section(_("状态机记录"), text)],
    )


def _success_time(message: ProtocolMessage) -> str | None:
    """The success_time a message revealed (decrypted notification or query answer), if any."""
    if message.kind not in ("notify_payment", "query"):
        return None
    source = flowlog.decrypted_resource(message) if message.kind == "notify_payment" else message.response_body
    if message.kind not in ("notify_payment", "query") or not source:
        return None
    try:
        data = json.loads(source)
    except ValueError:
        return None
    if data.get("trade_state") in ("SUCCESS", "REFUND") and data.get("success_time"):
        return str(data["success_time"])
    return None


def build(order: Order, messages: list[ProtocolMessage]) -> list[Step]:
    """The order's steps in time order, repeated identical queries folded into one."""
    steps: list[Step] = []
    payer_shown = False
    for message in messages:
        if message.direction == "out":
            step = _api_step(message)
        elif message.direction == "in":
            step = _notify_step(message)
        elif message.direction == "shop":
            step = _note_step(message)
        else:
            step = _browser_step(message)
        success_time = None if payer_shown else _success_time(message)
        if success_time and step.ok is not False:
            payer_shown = True
            info = explanation("payer_paid")
            # Placed just before the message that revealed it: success_time has only whole
            # seconds (and another clock), so it cannot order the step among the shop's own.
            steps.append(Step(
                id=f"p{message.id}", at=message.at - timedelta(microseconds=1), kind="payer_paid", source="app",
                target="wechatpay", title=info.title, label=_("确认支付"), explain=info, ok=True,
                origin="app", out_trade_no=message.out_trade_no,
                sections=[Section(_("推断"), f"success_time: {success_time}\n"
                                  + _("商户看不到顾客在微信里的操作；这一步由微信支付返回的 success_time 推断。"))],
            ))
        steps.append(step)
    refund_numbers = {refund.out_refund_no for refund in order.refunds}
    first_refund_events: set[int] = set()
    seen: set[str] = set()
    for event in order.events:
        if event.wechat_ref in refund_numbers and event.wechat_ref not in seen:
            seen.add(event.wechat_ref)
            first_refund_events.add(event.id)
    for event in order.events:
        steps.append(_state_step(event, first_refund_events))
    order_of = {"order_created": 0}
    steps.sort(key=lambda s: (s.at, order_of.get(s.kind, 1)))
    return _fold(steps)


def _fold(steps: list[Step]) -> list[Step]:
    """Consecutive identical active queries (a page polling a NOTPAY attempt) show as one step."""
    folded: list[Step] = []
    for step in steps:
        last = folded[-1] if folded else None
        if (last is not None and step.kind == "query" and last.kind == "query"
                and step.answer == last.answer and step.out_trade_no == last.out_trade_no
                and step.origin == last.origin):
            last.repeat += 1
            continue
        folded.append(step)
    return folded


def version(order: Order, messages: list[ProtocolMessage]) -> str:
    """Changes whenever a message or a state change is added: the live page's cue to redraw."""
    last_message = max((m.id for m in messages), default=0)  # listed by time, not by id
    last_event = order.events[-1].id if order.events else 0
    return f"{order.status}:{len(messages)}:{last_message}:{last_event}"
