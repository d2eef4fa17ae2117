"""Daily bills, as WeChat Pay serves them: ``/v3/bill/tradebill``, ``/v3/bill/fundflowbill`` and the download.

Follows WeChat Pay's "下载账单" API pages and the "交易账单文件格式说明": a day (Asia/Shanghai) is
billed from 10:00 the next day on the simulator clock; the apply call answers
``{"hash_type": "SHA1", "hash_value", "download_url"}``; the download is a signed GET whose answer
is *not* signed (the merchant checks the SHA1 of the original file instead, after un-gzipping),
and its URL lives 5 minutes. The file is CSV: a header line, one line per payment or refund with
every field prefixed by a backtick, then the summary header and the summary line.

The download token is stateless (an HMAC over what the file holds and until when): a bill of a
past day never changes, so the file hashed at apply time is the file downloaded.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from functools import wraps

from flask import Response, current_app, request
from sqlalchemy import select

from ..extensions import db
from ..wechatpay.times import BEIJING
from . import calllog
from .blueprints import api
from .http import authenticate_call, canonical_url, signed_answer, signed_api, start_call
from .models import SandboxRefund, SandboxTransaction
from .simulator import ApiFailure, Platform, request_id

AVAILABLE_FROM = timedelta(hours=10)  # a day's bill exists from 10:00 the next day (Beijing)
DOWNLOAD_LIFETIME = timedelta(minutes=5)
HISTORY = timedelta(days=90)  # bills of the last three months only
BILL_TYPES = ("ALL", "SUCCESS", "REFUND")
ACCOUNT_TYPES = ("BASIC", "OPERATION", "FEES")

TRADE_HEADERS = {
    "ALL": ("交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,"
            "货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,"
            "商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注"),
    "SUCCESS": ("交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,"
                "货币种类,应结订单金额,代金券金额,商品名称,商户数据包,手续费,费率,订单金额,费率备注"),
    "REFUND": ("交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,"
               "货币种类,应结订单金额,代金券金额,退款申请时间,退款成功时间,微信退款单号,商户退款单号,退款金额,"
               "充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注"),
}
SUMMARY_HEADERS = {
    "ALL": "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额",
    "SUCCESS": "总交易单数,应结订单总金额,手续费总金额,订单总金额",
    "REFUND": "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额",
}
FUNDFLOW_HEADER = "记账时间,微信支付业务单号,资金流水单号,业务名称,业务类型,收支类型,收支金额(元),账户结余(元),资金变更提交申请人,备注,业务凭证号"
FUNDFLOW_SUMMARY = "资金流水总笔数,收入笔数,收入金额,支出笔数,支出金额"


def yuan(fen: int) -> str:
    """Integer fen as yuan with two decimals: 1234 -> ``12.34`` (negative kept)."""
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100}.{abs(fen) % 100:02d}"


def fee_yuan(fen: int) -> str:
    """A fee as the bill writes it: yuan with five decimals (``0.36000``)."""
    return f"{Decimal(fen) / 100:.5f}"


def fee_of(settlement_fen: int, rate_bp: int) -> int:
    """手续费 in fen: the settlement amount at the merchant's rate (basis points), rounded half up."""
    return int((Decimal(settlement_fen) * rate_bp / 10000).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def rate_text(rate_bp: int) -> str:
    return f"{Decimal(rate_bp) / 100:.2f}%"


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """The Beijing day as naive UTC [start, end)."""
    start = datetime(day.year, day.month, day.day, tzinfo=BEIJING).astimezone(timezone.utc).replace(tzinfo=None)
    return start, start + timedelta(days=1)


def beijing_text(moment: datetime | None) -> str:
    if moment is None:
        return ""
    return moment.replace(tzinfo=timezone.utc).astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S")


def _line(fields: list[str]) -> str:
    # Every field gets a backtick in front (Excel would show long numbers in scientific notation).
    # A comma inside a field would break the columns: WeChat's files never have one there.
    return ",".join("`" + str(field).replace(",", "，") for field in fields)


@dataclass(frozen=True)
class BillRequest:
    kind: str  # trade, fundflow
    bill_date: date
    bill_type: str  # ALL/SUCCESS/REFUND, or the account type
    gzip: bool


def _coupon(txn: SandboxTransaction) -> int:
    return int(getattr(txn, "coupon_amount", 0) or 0)


def _discount_refund(refund: SandboxRefund, txn: SandboxTransaction) -> int:
    """The coupon's share of a refund, in proportion (WeChat Pay refunds discounts pro rata)."""
    coupon = _coupon(txn)
    if not coupon or not refund.amount_total:
        return 0
    return refund.amount_refund * coupon // refund.amount_total


def _refund_as_billed(refund: SandboxRefund, generated_at: datetime) -> tuple[str, datetime | None]:
    """A refund's status and success time as the bill shows them: as they stood when the day's
    bill was generated (10:00 the next day). A refund that settles later stays PROCESSING in that
    bill, so a bill never changes once it exists and its hash holds for every download."""
    if refund.status == "SUCCESS" and (refund.success_time is None or refund.success_time > generated_at):
        return "PROCESSING", None
    return refund.status, refund.success_time


def trade_rows(platform: Platform, day: date, bill_type: str) -> tuple[list[list[str]], dict[str, int]]:
    """The bill's detail lines (unprefixed fields) and its totals in fen."""
    start, end = day_bounds(day)
    mchid = platform.merchant.mchid
    rate_bp = int(current_app.config.get("SANDBOX_FEE_RATE_BP", 60))
    rows: list[tuple[datetime, list[str]]] = []
    totals = {"count": 0, "settlement": 0, "refund": 0, "fee": 0, "order": 0, "applied_refund": 0}
    if bill_type in ("ALL", "SUCCESS"):
        for txn in db.session.scalars(select(SandboxTransaction).where(
                SandboxTransaction.mchid == mchid, SandboxTransaction.success_time >= start,
                SandboxTransaction.success_time < end).order_by(SandboxTransaction.success_time,
                                                                 SandboxTransaction.id)):
            coupon = _coupon(txn)
            settlement = txn.amount_total - coupon
            fee = fee_of(settlement, rate_bp)
            head = [beijing_text(txn.success_time), txn.appid, txn.mchid, "0", "", txn.transaction_id,
                    txn.out_trade_no, txn.payer_openid or "", txn.trade_type, "SUCCESS", txn.bank_type or "OTHERS",
                    "CNY", yuan(settlement), yuan(coupon)]
            tail = [txn.description, txn.attach or "", fee_yuan(fee), rate_text(rate_bp), yuan(txn.amount_total)]
            if bill_type == "ALL":
                fields = head + ["0", "0", "0.00", "0.00", "", ""] + tail + ["0.00", ""]
            else:
                fields = head + tail + [""]
            rows.append((txn.success_time, fields))
            totals["settlement"] += settlement
            totals["fee"] += fee
            totals["order"] += txn.amount_total
    if bill_type in ("ALL", "REFUND"):
        for refund in db.session.scalars(select(SandboxRefund).where(
                SandboxRefund.mchid == mchid, SandboxRefund.created_at >= start,
                SandboxRefund.created_at < end).order_by(SandboxRefund.created_at, SandboxRefund.id)):
            txn = platform.find(mchid, refund.out_trade_no)
            if txn is None:
                continue
            status, settled_at = _refund_as_billed(refund, end + AVAILABLE_FROM)
            settlement_refund = refund.amount_refund - _discount_refund(refund, txn)
            fee = -fee_of(settlement_refund, rate_bp)  # the fee on the refunded part comes back
            head = [beijing_text(refund.created_at), txn.appid, txn.mchid, "0", "", txn.transaction_id,
                    txn.out_trade_no, txn.payer_openid or "", txn.trade_type, "REFUND", txn.bank_type or "OTHERS",
                    "CNY", "0.00", "0.00"]
            if bill_type == "REFUND":
                head += [beijing_text(refund.created_at), beijing_text(settled_at)]
            fields = head + [refund.refund_id, refund.out_refund_no, yuan(settlement_refund), "0.00", "ORIGINAL",
                             status, txn.description, txn.attach or "", fee_yuan(fee), rate_text(rate_bp),
                             "0.00", yuan(refund.amount_refund), ""]
            rows.append((refund.created_at, fields))
            totals["refund"] += settlement_refund
            totals["fee"] += fee
            totals["applied_refund"] += refund.amount_refund
    rows.sort(key=lambda item: item[0])
    totals["count"] = len(rows)
    return [fields for _, fields in rows], totals


def trade_bill(platform: Platform, day: date, bill_type: str) -> bytes | None:
    """The trade bill's bytes (UTF-8 CSV), or None when the day had no transactions."""
    rows, totals = trade_rows(platform, day, bill_type)
    if not rows:
        return None
    if bill_type == "SUCCESS":
        summary = [str(totals["count"]), yuan(totals["settlement"]), fee_yuan(totals["fee"]), yuan(totals["order"])]
    else:
        summary = [str(totals["count"]), yuan(totals["settlement"]), yuan(totals["refund"]), "0.00",
                   fee_yuan(totals["fee"]), yuan(totals["order"]), yuan(totals["applied_refund"])]
    lines = [TRADE_HEADERS[bill_type], *(_line(fields) for fields in rows), SUMMARY_HEADERS[bill_type], _line(summary)]
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def fundflow_bill(platform: Platform, day: date, account_type: str) -> bytes | None:
    """The fund flow bill of the basic account: income per payment, fee and refunds as expenses."""
    if account_type != "BASIC":
        return None  # the simulator's merchant has no operation or fee account movements
    rows, _totals = trade_rows(platform, day, "ALL")
    if not rows:
        return None
    balance = 0
    lines = [FUNDFLOW_HEADER]
    income = expense = income_count = expense_count = 0
    for number, fields in enumerate(rows, 1):
        moment, transaction_id, status = fields[0], fields[5], fields[9]
        fee = int((Decimal(fields[22]) * 100).to_integral_value())
        if status == "SUCCESS":
            amount = int((Decimal(fields[12]) * 100).to_integral_value())
            entries = [("交易", "收入", amount, "交易"), ("扣除交易手续费", "支出", fee, "手续费")]
        else:
            amount = int((Decimal(fields[16]) * 100).to_integral_value())
            entries = [("退款", "支出", amount, "退款"), ("退还交易手续费", "收入", -fee, "手续费")]
        for part, (name, direction, fen, note) in enumerate(entries):
            if fen == 0:
                continue
            balance += fen if direction == "收入" else -fen
            if direction == "收入":
                income, income_count = income + fen, income_count + 1
            else:
                expense, expense_count = expense + fen, expense_count + 1
            lines.append(_line([moment, transaction_id, f"{day:%Y%m%d}{number:08d}{part}", name, name, direction,
                                yuan(fen), yuan(balance), "system", note, fields[14] if status == "REFUND" else ""]))
    lines += [FUNDFLOW_SUMMARY, _line([str(income_count + expense_count), str(income_count), yuan(income),
                                       str(expense_count), yuan(expense)])]
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def build(platform: Platform, wanted: BillRequest) -> bytes | None:
    if wanted.kind == "trade":
        return trade_bill(platform, wanted.bill_date, wanted.bill_type)
    return fundflow_bill(platform, wanted.bill_date, wanted.bill_type)


# -- tokens -----------------------------------------------------------------------------------


def _token_key() -> bytes:
    return hashlib.sha256(b"sandbox-bill-download:" + str(current_app.config["SECRET_KEY"]).encode()).digest()


def make_token(wanted: BillRequest, expires: datetime) -> str:
    payload = json.dumps([wanted.kind, wanted.bill_date.isoformat(), wanted.bill_type, wanted.gzip,
                          int(expires.replace(tzinfo=timezone.utc).timestamp())], separators=(",", ":")).encode()
    mac = hmac.new(_token_key(), payload, hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(payload).decode().rstrip("=") + "." + base64.urlsafe_b64encode(mac).decode().rstrip("=")


def read_token(token: str, now: datetime) -> BillRequest:
    """:raise ApiFailure: a token that is not ours, or expired (the URL lives 5 minutes)."""
    try:
        encoded, mac_text = token.split(".", 1)
        payload = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        mac = base64.urlsafe_b64decode(mac_text + "=" * (-len(mac_text) % 4))
        good = hmac.compare_digest(mac, hmac.new(_token_key(), payload, hashlib.sha256).digest()[:16])
        kind, day, bill_type, zipped, expires = json.loads(payload)
    except (ValueError, TypeError, UnicodeDecodeError):
        good = False
    if not good:
        raise ApiFailure(400, "PARAM_ERROR", "参数错误", {"field": "token", "location": "query", "issue": "token无效"})
    if now.replace(tzinfo=timezone.utc).timestamp() > expires:
        raise ApiFailure(400, "INVALID_REQUEST", "下载链接已过期，请重新申请账单")
    return BillRequest(kind, date.fromisoformat(day), bill_type, bool(zipped))


# -- the API ------------------------------------------------------------------------------------


def _bill_date(platform: Platform) -> date:
    text = request.args.get("bill_date", "")
    try:
        if len(text) != 10:
            raise ValueError(text)
        day = date.fromisoformat(text)
    except ValueError:
        raise ApiFailure(400, "PARAM_ERROR", "参数错误", {"field": "bill_date", "value": text, "location": "query",
                                                          "issue": "须为yyyy-MM-DD格式的日期"}) from None
    now_beijing = platform.now().replace(tzinfo=timezone.utc).astimezone(BEIJING)
    today = now_beijing.date()
    if day > today:
        raise ApiFailure(400, "PARAM_ERROR", "参数错误", {"field": "bill_date", "value": text, "location": "query",
                                                          "issue": "账单日期不能晚于今天"})
    if today - day > HISTORY:
        raise ApiFailure(400, "NO_STATEMENT_EXIST", "请求的账单文件不存在")
    ready_at = datetime(day.year, day.month, day.day, tzinfo=BEIJING) + timedelta(days=1) + AVAILABLE_FROM
    if now_beijing < ready_at:
        raise ApiFailure(400, "STATEMENT_CREATING", "账单生成中")
    return day


def _tar_type() -> bool:
    tar = request.args.get("tar_type")
    if tar not in (None, "GZIP"):
        raise ApiFailure(400, "PARAM_ERROR", "参数错误", {"field": "tar_type", "value": tar, "location": "query",
                                                          "issue": "须为GZIP或不填"})
    return tar == "GZIP"


def _apply(platform: Platform, wanted: BillRequest) -> dict[str, str]:
    content = build(platform, wanted)
    if content is None:
        raise ApiFailure(400, "NO_STATEMENT_EXIST", "请求的账单文件不存在")
    token = make_token(wanted, platform.now() + DOWNLOAD_LIFETIME)
    # The download URL is on the host the merchant called, under the simulator's mount.
    full_path = request.script_root + request.path
    mount = full_path[: len(full_path) - len(canonical_url().split("?", 1)[0])]
    return {"hash_type": "SHA1", "hash_value": hashlib.sha1(content).hexdigest(),
            "download_url": f"{request.host_url.rstrip('/')}{mount}/v3/billdownload/file?token={token}"}


@api.get("/v3/bill/tradebill")
@signed_api
def tradebill(platform, merchant):
    bill_type = request.args.get("bill_type", "ALL")
    if bill_type not in BILL_TYPES:
        raise ApiFailure(400, "PARAM_ERROR", "参数错误", {"field": "bill_type", "value": bill_type,
                                                          "location": "query", "issue": "须为ALL、SUCCESS或REFUND"})
    zipped = _tar_type()
    return 200, _apply(platform, BillRequest("trade", _bill_date(platform), bill_type, zipped))


@api.get("/v3/bill/fundflowbill")
@signed_api
def fundflowbill(platform, merchant):
    account_type = request.args.get("account_type", "BASIC")
    if account_type not in ACCOUNT_TYPES:
        raise ApiFailure(400, "PARAM_ERROR", "参数错误", {"field": "account_type", "value": account_type,
                                                          "location": "query", "issue": "须为BASIC、OPERATION或FEES"})
    zipped = _tar_type()
    return 200, _apply(platform, BillRequest("fundflow", _bill_date(platform), account_type, zipped))


def unsigned_download(view):
    """Authenticate like every API call; answer the file's raw bytes, unsigned (the hash protects it)."""

    @wraps(view)
    def wrapper(**kwargs):
        platform, call, body = start_call()
        try:
            merchant = authenticate_call(platform, call, body)
            content, content_type = view(platform, merchant, **kwargs)
        except ApiFailure as exc:
            return signed_answer(platform, call, exc.status, exc.body())
        headers = {"Content-Type": content_type, "Request-ID": request_id()}
        calllog.record(call, 200, f"<{len(content)} bytes of bill, not signed>".encode(), headers)
        return Response(content, 200, headers)

    return wrapper


@api.get("/v3/billdownload/file")
@unsigned_download
def download(platform, merchant):
    wanted = read_token(request.args.get("token", ""), platform.now())
    content = build(platform, wanted)
    if content is None:  # cannot happen for a token we issued: a past day's bill never shrinks
        raise ApiFailure(400, "NO_STATEMENT_EXIST", "请求的账单文件不存在")
    if wanted.gzip:
        return gzip.compress(content, mtime=0), "application/octet-stream"
    return content, "text/plain; charset=utf-8"
