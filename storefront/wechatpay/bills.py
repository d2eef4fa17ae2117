"""Daily bills: apply for a trade or fund flow bill, download it, check its hash, parse the CSV.

WeChat Pay's "申请交易账单" / "申请资金账单" answer ``{"hash_type", "hash_value", "download_url"}``
(signed, verified like every answer); "下载账单" answers the file itself, unsigned and perhaps
gzipped: the SHA1 of the original (un-gzipped) file is what proves it came from WeChat Pay.
Format: "交易账单文件格式说明" (a header line, detail lines whose fields each start with a
backtick, then the summary header and summary line). No Flask here.
"""

from __future__ import annotations

import gzip
import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation

from .client import Client
from .errors import WeChatPayError

HASHES = {"SHA1": hashlib.sha1, "SHA256": hashlib.sha256, "SM3": None}


class BillError(WeChatPayError):
    """The downloaded file is not the bill WeChat Pay described (hash mismatch, not a bill)."""


@dataclass(frozen=True)
class BillLink:
    hash_type: str
    hash_value: str
    download_url: str


def apply_trade_bill(client: Client, bill_date: date, bill_type: str = "ALL", gzip_file: bool = True) -> BillLink:
    """``GET /v3/bill/tradebill``. :raise APIError: ``STATEMENT_CREATING``, ``NO_STATEMENT_EXIST``…"""
    query = {"bill_date": bill_date.isoformat(), "bill_type": bill_type}
    if gzip_file:
        query["tar_type"] = "GZIP"
    data = client.request("GET", "/v3/bill/tradebill", query=query).data
    return BillLink(str(data.get("hash_type", "")), str(data.get("hash_value", "")), str(data.get("download_url", "")))


def apply_fundflow_bill(client: Client, bill_date: date, account_type: str = "BASIC",
                        gzip_file: bool = True) -> BillLink:
    """``GET /v3/bill/fundflowbill``."""
    query = {"bill_date": bill_date.isoformat(), "account_type": account_type}
    if gzip_file:
        query["tar_type"] = "GZIP"
    data = client.request("GET", "/v3/bill/fundflowbill", query=query).data
    return BillLink(str(data.get("hash_type", "")), str(data.get("hash_value", "")), str(data.get("download_url", "")))


def check_file(raw: bytes, link: BillLink) -> bytes:
    """The original bill from downloaded bytes: un-gzip if gzipped, then compare the hash.

    :raise BillError: an unknown hash type, a broken gzip stream or a hash that does not match.
    """
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise BillError(f"the bill is not a valid gzip file: {exc}") from exc
    hasher = HASHES.get(link.hash_type.upper())
    if hasher is None:
        raise BillError(f"unsupported hash_type {link.hash_type!r}")
    digest = hasher(raw).hexdigest()
    if not hmac.compare_digest(digest, link.hash_value.lower()):
        raise BillError(f"{link.hash_type} of the downloaded bill is {digest}, WeChat Pay said {link.hash_value}")
    return raw


def download(client: Client, link: BillLink) -> bytes:
    """Download and check one bill: the original file's bytes. :raise BillError, APIError, TransportError:"""
    return check_file(client.download(link.download_url), link)


# -- parsing ------------------------------------------------------------------------------------


def to_fen(text: str) -> int:
    """``12.34`` (yuan) -> 1234; fees with more decimals are rounded to the fen. :raise BillError:"""
    try:
        return int((Decimal(text.strip() or "0") * 100).quantize(Decimal(1)))
    except InvalidOperation as exc:
        raise BillError(f"not an amount: {text!r}") from exc


@dataclass(frozen=True)
class TradeRow:
    """One detail line of a trade bill, amounts in fen."""

    trade_time: str
    appid: str
    mchid: str
    transaction_id: str
    out_trade_no: str
    trade_type: str
    trade_state: str  # SUCCESS (a payment) or REFUND (a refund)
    settlement_total: int  # 应结订单金额
    coupon_amount: int  # 代金券金额
    refund_id: str
    out_refund_no: str
    settlement_refund: int  # 退款金额
    refund_status: str
    fee: int  # 手续费, negative on a refund
    rate: str
    order_total: int  # 订单金额
    refund_requested: int  # 申请退款金额
    raw: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def is_refund(self) -> bool:
        return self.trade_state == "REFUND"


@dataclass(frozen=True)
class TradeBill:
    headers: list[str]
    rows: list[TradeRow]
    summary: dict[str, str]

    @property
    def fees_total(self) -> int:
        return to_fen(self.summary.get("手续费总金额", "0"))


def _fields(line: str) -> list[str]:
    return [part.removeprefix("`") for part in line.split(",")]


def parse_trade_bill(content: bytes) -> TradeBill:
    """Parse a trade bill (ALL, SUCCESS or REFUND). Columns are found by their header names,
    since WeChat Pay says the order may change. :raise BillError:"""
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BillError("the bill is not UTF-8 text") from exc
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) < 3 or not lines[0].startswith("交易时间"):
        raise BillError("not a trade bill: no 交易时间 header line")
    headers = lines[0].lstrip("\ufeff").split(",")
    summary_at = next((i for i, line in enumerate(lines) if line.startswith("总交易单数")), None)
    if summary_at is None or summary_at + 1 >= len(lines):
        raise BillError("not a trade bill: no summary lines")
    summary = dict(zip(lines[summary_at].split(","), _fields(lines[summary_at + 1])))
    rows = []
    for line in lines[1:summary_at]:
        values = _fields(line)
        if len(values) != len(headers):
            raise BillError(f"a bill line has {len(values)} fields, the header {len(headers)}")
        item = dict(zip(headers, values))
        rows.append(TradeRow(
            trade_time=item.get("交易时间", ""), appid=item.get("公众账号ID", ""), mchid=item.get("商户号", ""),
            transaction_id=item.get("微信订单号", ""), out_trade_no=item.get("商户订单号", ""),
            trade_type=item.get("交易类型", ""), trade_state=item.get("交易状态", ""),
            settlement_total=to_fen(item.get("应结订单金额", "0")), coupon_amount=to_fen(item.get("代金券金额", "0")),
            refund_id=item.get("微信退款单号", ""), out_refund_no=item.get("商户退款单号", ""),
            settlement_refund=to_fen(item.get("退款金额", "0")), refund_status=item.get("退款状态", ""),
            fee=to_fen(item.get("手续费", "0")), rate=item.get("费率", ""),
            order_total=to_fen(item.get("订单金额", "0")), refund_requested=to_fen(item.get("申请退款金额", "0")),
            raw=item,
        ))
    if "总交易单数" in summary and summary["总交易单数"].strip() != str(len(rows)):
        raise BillError(f"the summary counts {summary['总交易单数']} lines, the bill has {len(rows)}")
    return TradeBill(headers, rows, summary)
