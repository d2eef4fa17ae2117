"""The WeChat Pay side: merchant authentication, transactions, signed answers, notifications.

Follows the wire protocol of ``api.mch.weixin.qq.com`` (API v3) for the calls the shop uses;
the rules and error codes are those of WeChat Pay's "签名生成", the "…下单" APIs, "查询订单" and "关闭订单".
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import string
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import IntegrityError

from .. import rows
from ..extensions import db
from ..wechatpay import aead, keys
from ..wechatpay.client import json_body
from ..wechatpay.errors import SignatureError
from ..wechatpay.notify import build_notification
from ..wechatpay.signing import parse_authorization, request_message, sign_response
from ..wechatpay.times import format_time, parse_time
from ..wechatpay.verify import MAX_SKEW_SECONDS, verify_signature
from .merchant_models import SandboxMerchant
from .models import SandboxApiCall, SandboxNotification, SandboxTransaction
from .platform_certs import PlatformCertificates
from .settings import Settings

OUT_TRADE_NO = re.compile(r"^[0-9A-Za-z_*|-]{6,32}$")
CODE_URL_LIFETIME = timedelta(hours=2)
DEFAULT_EXPIRY = timedelta(days=7)
UNPAID_CLOSE_AFTER = timedelta(days=7)  # WeChat Pay closes an order left unpaid this long
# time_expire exactly as WeChat Pay documents it: yyyy-MM-DDTHH:mm:ss+08:00 (no fraction, no Z, no space).
TIME_EXPIRE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}[+-]\d{2}:\d{2}$")
MIN_EXPIRY = timedelta(minutes=1)
MAX_EXPIRY = timedelta(days=90)
# WeChat Pay's notification retry gaps (seconds): 15s 15s 30s 3m 10m 20m 30m 30m 30m 60m 3h 3h 3h 6h 6h.
RETRY_INTERVALS_SECONDS = (15, 15, 30, 180, 600, 1200, 1800, 1800, 1800, 3600, 10800, 10800, 10800, 21600, 21600)
# What the payer may choose instead of paying. USERPAYING: still entering the password; the
# order stays payable and, for every trade type here, queries answer NOTPAY until the payer
# finishes: WeChat Pay answers USERPAYING (and PAYERROR) for payment-code (付款码, MICROPAY)
# orders only.
FAILURE_RESULTS = {"PAYERROR", "NOTENOUGH", "CANCEL", "USERPAYING"}
PAYMENT_CODE_TYPES = ("MICROPAY",)  # the only orders whose queries may answer USERPAYING / PAYERROR
TOKEN_ALPHABET = string.ascii_letters + string.digits


# Built once (a statement built per call costs more than running it): is this out_trade_no known?
_EXISTING = select(SandboxTransaction.__table__.c.id).where(
    SandboxTransaction.__table__.c.mchid == bindparam("mchid"),
    SandboxTransaction.__table__.c.out_trade_no == bindparam("out_trade_no"))


class ApiFailure(Exception):
    """An answer WeChat Pay gives in ``{"code","message","detail"}`` form."""

    def __init__(self, status: int, code: str, message: str, detail: dict | None = None) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status, self.code, self.message, self.detail = status, code, message, detail

    def body(self) -> dict[str, Any]:
        data: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.detail:
            data["detail"] = self.detail
        return data


def param_error(field: str, issue: str, value: Any = None, location: str = "body") -> ApiFailure:
    detail: dict[str, Any] = {"field": field, "issue": issue, "location": location}
    if value is not None:
        detail["value"] = value
    return ApiFailure(400, "PARAM_ERROR", "参数错误", detail)


_FOUR_BYTE_CHAR = re.compile(r"[\U00010000-\U0010FFFF]")
# In raw JSON text, a 4-byte character is either itself or a \uD800-\uDBFF escape (its high surrogate).
_FOUR_BYTE_IN_JSON = re.compile(r"[\U00010000-\U0010FFFF]|\\u[dD][89abAB]")


def _has_four_byte_char(text: str) -> bool:
    return _FOUR_BYTE_CHAR.search(text) is not None


def four_byte_field(text: str) -> str | None:
    """JSON pointer of the first value holding a 4-byte UTF-8 character (an emoji); None if none.

    Checked on the parsed values: ``ensure_ascii`` JSON (the wechatpayv3 SDK's) spells an emoji
    as a ``\\ud83d\\ude00`` escape that a scan of the raw text misses. "" if only unparsable text has one.
    """
    if _FOUR_BYTE_IN_JSON.search(text) is None:
        return None  # neither such a character nor its escape: no value can hold one
    try:
        data = json.loads(text) if text else None
    except ValueError:
        return "" if _has_four_byte_char(text) else None

    def walk(value: Any, pointer: str) -> str | None:
        if isinstance(value, str):
            return pointer if _has_four_byte_char(value) else None
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        for key, item in items:
            found = walk(str(key), f"{pointer}/{key}") or walk(item, f"{pointer}/{key}")
            if found is not None:
                return found
        return None

    return walk(data, "")


@dataclass(frozen=True)
class Merchant:
    mchid: str
    appids: tuple[str, ...]
    merchant_serial: str
    public_key_id: str
    name: str
    # Registered merchants (merchants.py) carry their own keys; None: the demo merchant's (Platform's).
    public_key: Any = None
    aes: Any = None
    notify_url: str | None = None


class Platform:
    """The simulator's keys and merchant registry; built once per app (``app.extensions``)."""

    def __init__(
        self, instance: Path, merchant_name: str, time_scale: float = 1.0, config: dict | None = None
    ) -> None:
        folder = instance / "sandbox"
        app_config = config
        config = json.loads((folder / "merchant.json").read_text())
        self.merchant = Merchant(
            mchid=config["mchid"],
            appids=tuple(config["appids"]),
            merchant_serial=config["merchant_serial"],
            public_key_id=config["public_key_id"],
            name=merchant_name,
        )
        self.merchant_public_key = keys.load_public_key((folder / "merchant_apiclient_cert.pem").read_bytes())
        self.private_key = keys.load_private_key((folder / "wechatpay_private_key.pem").read_bytes())
        self.aes = aead.cipher(config["apiv3_key"])
        self.time_scale = time_scale
        # The legacy platform certificates (GET /v3/certificates), rotated from the console or CLI.
        self.certificates = PlatformCertificates(folder)
        self.settings = Settings(app_config or {})
        self._registered: dict[str, Merchant] = {}  # merchants from sandbox-kit, cached once read

    def merchant_for(self, mchid: str | None) -> Merchant | None:
        """The demo merchant or a registered one (``sandbox-kit``); None if the simulator has no such mchid."""
        if not mchid or mchid == self.merchant.mchid:
            return self.merchant
        found = self._registered.get(mchid)
        if found is None:
            row = db.session.get(SandboxMerchant, mchid)
            if row is None:
                return None
            found = self._registered[mchid] = Merchant(
                mchid=row.mchid, appids=(row.appid,), merchant_serial=row.merchant_serial,
                public_key_id=self.merchant.public_key_id, name=row.name,
                public_key=keys.load_public_key(row.merchant_cert.encode()), aes=aead.cipher(row.apiv3_key),
                notify_url=row.notify_url,
            )
        return found

    def merchant_key(self, merchant: Merchant) -> keys.PublicKey:
        """The public key of the merchant's ``apiclient_cert.pem``."""
        return merchant.public_key or self.merchant_public_key

    def merchant_aes(self, mchid: str | None) -> Any:
        """The AES-GCM cipher of the merchant's APIv3 key: its notifications and certificates are encrypted with it."""
        merchant = self.merchant_for(mchid)
        return merchant.aes if merchant is not None and merchant.aes is not None else self.aes

    def now(self) -> datetime:
        """Simulator time (naive UTC): real time plus the console's fast-forward offset.

        Drives time_expire, the code_url/h5_url lifetimes, retries and refunds; never signatures.
        """
        return self.settings.now()

    # -- the wire ----------------------------------------------------------------------------

    def authenticate(
        self, method: str, canonical_url: str, headers, body: bytes, sent_url: str | None = None
    ) -> Merchant:
        """Check the merchant's request as WeChat Pay does. :raise ApiFailure:

        ``sent_url``: the path as the client sent it, mount included (``/sandbox/v3/…``); SDKs
        configured with the mounted base sign that, so a signature over either is accepted.
        """
        if not headers.get("Accept") or not headers.get("User-Agent"):
            raise ApiFailure(400, "INVALID_REQUEST", "Http头缺少Accept或User-Agent")
        try:
            auth = parse_authorization(headers.get("Authorization"))
        except SignatureError as exc:
            raise ApiFailure(401, "SIGN_ERROR", "Http头Authorization值格式错误，请参考《微信支付商户REST API签名规则》",
                             {"field": "authorization", "location": "header", "issue": str(exc)}) from None
        merchant = self.merchant_for(auth["mchid"])
        if merchant is None:
            raise ApiFailure(400, "MCH_NOT_EXISTS", "商户号不存在")
        if not keys.same_serial(auth["serial_no"], merchant.merchant_serial):
            raise ApiFailure(401, "SIGN_ERROR", "商户证书序列号有误。请使用签名私钥匹配的证书序列号",
                             {"field": "serial_no", "location": "authorization", "issue": "serial_no not found"})
        try:
            skew = abs(time.time() - int(auth["timestamp"]))
        except ValueError:
            skew = MAX_SKEW_SECONDS + 1
        if skew > MAX_SKEW_SECONDS:
            raise ApiFailure(401, "SIGN_ERROR", "Http头Authorization中的timestamp与发起请求的时间不得超过5分钟")
        wanted_serial = headers.get("Wechatpay-Serial")
        if (wanted_serial and wanted_serial != self.merchant.public_key_id
                and self.certificates.find(wanted_serial, self.now()) is None):
            raise ApiFailure(400, "INVALID_REQUEST", "Wechatpay-Serial 无效，请使用微信支付公钥ID或有效的平台证书序列号")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise ApiFailure(400, "PARAM_ERROR", "请求体须为UTF-8编码") from None
        message = request_message(method, canonical_url, auth["timestamp"], auth["nonce_str"], text)
        try:
            try:
                verify_signature(self.merchant_key(merchant), message, auth["signature"])
            except SignatureError:
                if not sent_url or sent_url == canonical_url:
                    raise
                verify_signature(self.merchant_key(merchant), request_message(
                    method, sent_url, auth["timestamp"], auth["nonce_str"], text), auth["signature"])
        except SignatureError:
            raise ApiFailure(401, "SIGN_ERROR", "错误的签名，验签失败", {
                "field": "signature", "location": "authorization", "detail": {"issue": "sign not match"},
                "sign_information": {
                    "method": method, "url": canonical_url, "sign_message_length": len(message.encode()),
                    "truncated_sign_message": message[:100],
                },
            }) from None
        field = four_byte_field(text)
        if field is not None:
            detail = {"field": field, "location": "body", "issue": "包含4字节UTF-8字符"} if field else None
            raise ApiFailure(400, "PARAM_ERROR", "请求参数中包含4字节UTF-8字符（如emoji），请删除后重试", detail)
        return merchant

    def answer_key(self, requested_serial: str | None) -> tuple[keys.PrivateKey, str]:
        """(private key, Wechatpay-Serial) for an answer, by WeChat Pay's switch-over rule.

        A request naming the PUB_KEY_ID gets the public key; any other gets the newest platform
        certificate. The console can pin either instead (``answer_signing``).
        """
        mode = self.settings.get("answer_signing")
        # A request naming a PUB_KEY_ID (even a wrong one, answered 400) is in public-key mode.
        if mode == "public_key" or (mode == "rule" and (requested_serial or "").startswith("PUB_KEY_ID_")):
            return self.private_key, self.merchant.public_key_id
        newest = self.certificates.newest(self.now())
        return newest.private_key, newest.serial

    def signed(
        self, status: int, data: dict[str, Any] | None, requested_serial: str | None = None
    ) -> tuple[bytes, int, dict[str, str]]:
        """Body, status and headers of a signed answer (errors are signed too: harmless, faithful)."""
        body = json_body(data).encode("utf-8") if data is not None else b""
        private_key, serial = self.answer_key(requested_serial)
        headers = sign_response(private_key, serial, body)
        rate = float(self.settings.get("answer_probe_rate") or 0)
        if 200 <= status < 300 and rate > 0 and probe_roll() < rate:
            # A signature probe: the merchant must refuse this answer (WeChat Pay's 签名探测).
            headers["Wechatpay-Signature"] = "WECHATPAY/SIGNTEST/" + headers["Wechatpay-Signature"][19:]
        headers["Request-ID"] = request_id()
        # WeChat Pay names JSON even on a 204 without a body.
        headers["Content-Type"] = "application/json; charset=utf-8"
        return body, status, headers

    # -- transactions ------------------------------------------------------------------------

    def create_native(self, merchant: Merchant, data: Any, public_base: str) -> dict[str, str]:
        """``POST /v3/pay/transactions/native``: answer ``{"code_url"}``."""
        fields = self._validate_order(merchant, data)
        txn = self._create_or_resubmit(merchant, "NATIVE", fields)
        return {"code_url": f"{public_base}/sandbox/wxpay/bizpayurl?pr={txn.pay_token}"}

    def _validate_order(self, merchant: Merchant, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise ApiFailure(400, "PARAM_ERROR", "请求体不是合法的JSON对象")
        for name in ("appid", "mchid", "description", "out_trade_no", "notify_url"):
            value = data.get(name)
            if not isinstance(value, str) or not value:
                raise param_error(f"/{name}", "缺少必填参数或类型错误")
        if data["mchid"] != merchant.mchid:
            raise param_error("/mchid", "与Authorization中的商户号不一致", data["mchid"])
        if data["appid"] not in merchant.appids:
            raise ApiFailure(400, "APPID_MCHID_NOT_MATCH", "appid和mch_id不匹配")
        if len(data["description"]) > 127:
            raise param_error("/description", "长度不能超过127个字符")
        if not OUT_TRADE_NO.match(data["out_trade_no"]):
            raise param_error("/out_trade_no", "须为6-32位数字、大小写字母、_-|*", data["out_trade_no"])
        notify = data["notify_url"]
        if len(notify) > 255 or "?" in notify or not notify.startswith(("https://", "http://")):
            raise param_error("/notify_url", "须为不带参数的https地址（模拟器允许http）", notify)
        amount = data.get("amount")
        total = amount.get("total") if isinstance(amount, dict) else None
        if not isinstance(total, int) or isinstance(total, bool) or total <= 0:
            raise param_error("/amount/total", "须为大于0的整数（单位：分）", total)
        currency = amount.get("currency", "CNY")
        if currency != "CNY":
            raise param_error("/amount/currency", "Currency code is invalid", currency)
        attach = data.get("attach")
        if attach is not None and (not isinstance(attach, str) or len(attach) > 128):
            raise param_error("/attach", "须为不超过128个字符的字符串")
        now = self.now()
        time_expire_text = data.get("time_expire")
        if time_expire_text is None:
            expire = now + DEFAULT_EXPIRY
        else:
            try:
                if not isinstance(time_expire_text, str) or not TIME_EXPIRE.match(time_expire_text):
                    raise ValueError(time_expire_text)
                moment = parse_time(time_expire_text)
            except ValueError:
                raise param_error("/time_expire", "须为RFC3339格式，如2018-06-08T10:34:56+08:00", time_expire_text) from None
            expire = moment.astimezone(timezone.utc).replace(tzinfo=None)
            expire = min(max(expire, now + MIN_EXPIRY), now + MAX_EXPIRY)  # WeChat clamps, it does not refuse
        fingerprint = json.dumps({k: data.get(k) for k in sorted(data)}, sort_keys=True, ensure_ascii=False)
        return {
            "appid": data["appid"], "out_trade_no": data["out_trade_no"], "description": data["description"],
            "notify_url": notify, "amount_total": total, "attach": attach, "time_expire": expire,
            "fingerprint": fingerprint,
        }

    def _create_or_resubmit(self, merchant: Merchant, trade_type: str, fields: dict[str, Any]) -> SandboxTransaction:
        """A new transaction, written in the open transaction: it commits with the call's record
        (``http.signed_answer``), before the answer leaves. An ``out_trade_no`` seen before is a
        re-submission (``_resubmit``)."""
        existing_id = rows.connection(SandboxTransaction).execute(
            _EXISTING, {"mchid": merchant.mchid, "out_trade_no": fields["out_trade_no"]}).scalar()
        if existing_id is not None:  # read whole only now: most prepays are new
            return self._resubmit(db.session.get_one(SandboxTransaction, existing_id), trade_type, fields)
        now = self.now()
        try:
            # Core, not the ORM's unit of work: a prepay is the simulator's hottest write.
            return rows.insert_loaded(SandboxTransaction, {
                "mchid": merchant.mchid, "trade_type": trade_type, "created_at": now,
                "code_expires_at": now + CODE_URL_LIFETIME, "trade_state": "NOTPAY",
                "pay_token": "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(10)),
                "appid": fields["appid"], "out_trade_no": fields["out_trade_no"], "description": fields["description"],
                "notify_url": fields["notify_url"], "amount_total": fields["amount_total"], "attach": fields["attach"],
                "time_expire": fields["time_expire"], "fingerprint": fields["fingerprint"],
            })
        except IntegrityError:
            # The same out_trade_no created by a concurrent call: this one is its re-submission.
            db.session.rollback()
            existing = self.find(merchant.mchid, fields["out_trade_no"])
            if existing is None:
                raise
            return self._resubmit(existing, trade_type, fields)

    def _resubmit(self, txn: SandboxTransaction, trade_type: str, fields: dict[str, Any]) -> SandboxTransaction:
        # Same parameters again: the current URL; anything changed: "201 商户订单号重复".
        self.close_if_abandoned(txn)
        if txn.trade_state in ("SUCCESS", "REFUND"):
            raise ApiFailure(400, self.settings.get("paid_code"), "该订单已支付")
        now = self.now()
        if txn.trade_state == "CLOSED" or now >= txn.time_expire:
            raise ApiFailure(400, "ORDER_CLOSED", "订单已关闭")
        if txn.trade_type != trade_type or txn.fingerprint != fields["fingerprint"]:
            raise ApiFailure(400, "INVALID_REQUEST", "201 商户订单号重复")
        if now >= txn.code_expires_at:
            # The code_url / prepay_id lived its 2 hours, the order is still open: an identical
            # re-order before time_expire gets a fresh one (WeChat Pay's "prepay_id 有效期为2小时").
            db.session.execute(
                update(SandboxTransaction)
                .where(SandboxTransaction.id == txn.id, SandboxTransaction.trade_state == "NOTPAY")
                .values(code_expires_at=now + CODE_URL_LIFETIME,
                        pay_token="".join(secrets.choice(TOKEN_ALPHABET) for _ in range(10)))
            )
            db.session.commit()
            db.session.refresh(txn)
        return txn

    @staticmethod
    def _close_unpaid(txn: SandboxTransaction) -> None:
        """Close ``txn`` if it is still NOTPAY (a conditional UPDATE: a payment racing it wins), then reload it."""
        db.session.execute(
            update(SandboxTransaction)
            .where(SandboxTransaction.id == txn.id, SandboxTransaction.trade_state == "NOTPAY")
            .values(trade_state="CLOSED", last_payer_result=None)
        )
        db.session.commit()
        db.session.refresh(txn)

    def close_if_abandoned(self, txn: SandboxTransaction) -> None:
        """An order left unpaid for 7 days is closed by WeChat Pay itself (trade_state CLOSED)."""
        if txn.trade_state == "NOTPAY" and self.now() >= txn.created_at + UNPAID_CLOSE_AFTER:
            self._close_unpaid(txn)

    def find(self, mchid: str, out_trade_no: str) -> SandboxTransaction | None:
        return db.session.scalar(
            select(SandboxTransaction).where(
                SandboxTransaction.mchid == mchid, SandboxTransaction.out_trade_no == out_trade_no
            )
        )

    def expired(self, txn: SandboxTransaction, now: datetime | None = None) -> bool:
        """Past ``time_expire`` or the 2-hour code_url lifetime: no longer payable."""
        now = now or self.now()
        return now >= txn.time_expire or now >= txn.code_expires_at

    def query(self, merchant: Merchant, out_trade_no: str) -> dict[str, Any]:
        """The transaction object of ``GET …/out-trade-no/{no}``. :raise ApiFailure: 404."""
        txn = self.find(merchant.mchid, out_trade_no)
        if txn is None:
            raise ApiFailure(404, "ORDER_NOT_EXIST", "订单不存在")
        self.close_if_abandoned(txn)
        fault = self._take_query_fault(txn)
        if fault == "SYSTEM_ERROR":
            raise ApiFailure(500, "SYSTEM_ERROR", "系统错误")
        data = self.describe(txn)
        if ((fault == "USERPAYING" or txn.last_payer_result == "USERPAYING") and txn.trade_state == "NOTPAY"
                and txn.trade_type in PAYMENT_CODE_TYPES):
            data.update(trade_state="USERPAYING", trade_state_desc="用户支付中（输入密码）")
        return data

    QUERY_FAULTS = ("USERPAYING", "SYSTEM_ERROR")

    def set_query_fault(self, txn: SandboxTransaction, fault: str) -> None:
        """Test control: the next query of this transaction answers ``fault`` once.

        :raise ValueError: an unknown fault, or USERPAYING for an order that is not a payment-code one.
        """
        if fault not in self.QUERY_FAULTS:
            raise ValueError(fault)
        if fault == "USERPAYING" and txn.trade_type not in PAYMENT_CODE_TYPES:
            raise ValueError("USERPAYING 只出现在付款码支付（MICROPAY）的查询中")
        db.session.execute(update(SandboxTransaction).where(SandboxTransaction.id == txn.id)
                           .values(next_query_fault=fault))
        db.session.commit()

    def _take_query_fault(self, txn: SandboxTransaction) -> str | None:
        # Taken with a conditional update, so exactly one query sees it even when several race.
        fault = txn.next_query_fault
        if fault is None:
            return None
        taken = db.session.execute(
            update(SandboxTransaction)
            .where(SandboxTransaction.id == txn.id, SandboxTransaction.next_query_fault == fault)
            .values(next_query_fault=None)
        ).rowcount == 1
        db.session.commit()
        return fault if taken else None

    def describe(self, txn: SandboxTransaction) -> dict[str, Any]:
        states = {"NOTPAY": "订单未支付", "SUCCESS": "支付成功", "CLOSED": "订单已关闭", "REFUND": "订单发生过退款"}
        # As WeChat Pay answers an unpaid order: amount has total and payer_currency only, and an
        # empty promotion_detail and scene_info.device_id come along.
        data: dict[str, Any] = {
            "appid": txn.appid, "mchid": txn.mchid, "out_trade_no": txn.out_trade_no,
            "trade_state": txn.trade_state, "trade_state_desc": states.get(txn.trade_state, txn.trade_state),
            "amount": {"total": txn.amount_total, "payer_currency": "CNY"},
            "promotion_detail": [], "scene_info": {"device_id": ""},
        }
        if txn.trade_state in ("SUCCESS", "REFUND"):
            data["amount"]["currency"] = "CNY"
            data.update({
                "transaction_id": txn.transaction_id, "trade_type": txn.trade_type, "bank_type": txn.bank_type,
                "attach": txn.attach or "", "success_time": format_time(txn.success_time),
                "payer": {"openid": txn.payer_openid},
            })
            data["amount"]["payer_total"] = txn.amount_total - (txn.coupon_amount or 0)
            if txn.coupon_amount:
                data["promotion_detail"] = promotion_detail(txn)
        return data

    def close(self, merchant: Merchant, out_trade_no: str, data: Any) -> None:
        """``POST …/close``. :raise ApiFailure: ORDER_PAID (or ORDERPAID, a setting), ORDER_NOT_EXIST, PARAM_ERROR."""
        if not isinstance(data, dict) or data.get("mchid") != merchant.mchid:
            raise param_error("/mchid", "缺少mchid或与Authorization中的商户号不一致")
        txn = self.find(merchant.mchid, out_trade_no)
        if txn is None:
            raise ApiFailure(404, "ORDER_NOT_EXIST", "订单不存在")
        self._close_unpaid(txn)
        if txn.trade_state in ("SUCCESS", "REFUND"):
            raise ApiFailure(400, self.settings.get("paid_code"), "订单已支付")
        # Closing an already-closed order answers 204 again, as the real API does ("关闭订单");
        # ORDER_CLOSED is for ordering or paying a closed one.

    # -- the payer ---------------------------------------------------------------------------

    def find_any(self, out_trade_no: str, mchid: str | None = None) -> SandboxTransaction | None:
        """Test control's lookup: by ``mchid`` when given, else the one merchant's order with that number.

        :raise ApiFailure: 409 when several merchants have an order with that number and none is named.
        """
        if mchid:
            return self.find(mchid, out_trade_no)
        found = list(db.session.scalars(
            select(SandboxTransaction).where(SandboxTransaction.out_trade_no == out_trade_no).limit(2)))
        if len(found) > 1:
            raise ApiFailure(409, "AMBIGUOUS_OUT_TRADE_NO", "多个商户有此商户订单号，请同时给出 mchid")
        return found[0] if found else None

    def openid(self, appid: str) -> str:
        """The demo payer's openid under ``appid``: stable, different per appid, as WeChat's are."""
        digest = hashlib.sha256(f"{self.merchant.public_key_id}:{appid}".encode()).hexdigest()
        return "o" + digest[:27]

    def pay(self, txn: SandboxTransaction, result: str = "SUCCESS") -> tuple[bool, str]:
        """The payer confirms (or fails) in the WeChat app. Returns (paid, reason)."""
        if txn.trade_state in ("SUCCESS", "REFUND"):
            return False, "ORDERPAID"
        if txn.trade_state == "CLOSED":
            return False, "ORDER_CLOSED"
        now = self.now()
        if self.expired(txn, now):
            return False, "ORDER_EXPIRED"
        if result != "SUCCESS":
            # The payer's attempt failed (cancelled, balance, bank): the order stays payable.
            db.session.execute(
                update(SandboxTransaction).where(SandboxTransaction.id == txn.id).values(last_payer_result=result)
            )
            db.session.commit()
            return False, result
        transaction_id = new_transaction_id(now)
        # The console's coupon: WeChat Pay funds part of the payment; the payer pays at least 1 fen.
        coupon = max(0, min(int(self.settings.get("coupon_amount") or 0), txn.amount_total - 1))
        won = db.session.execute(
            update(SandboxTransaction)
            .where(SandboxTransaction.id == txn.id, SandboxTransaction.trade_state == "NOTPAY",
                   SandboxTransaction.time_expire > now, SandboxTransaction.code_expires_at > now)
            .values(trade_state="SUCCESS", transaction_id=transaction_id, success_time=now.replace(microsecond=0),
                    bank_type="OTHERS", payer_openid=self.openid(txn.appid), last_payer_result="SUCCESS",
                    coupon_amount=coupon)
        ).rowcount == 1
        db.session.commit()
        db.session.refresh(txn)
        return (True, "SUCCESS") if won else (False, "ORDERPAID" if txn.trade_state == "SUCCESS" else "ORDER_CLOSED")

    # -- notifications -----------------------------------------------------------------------

    def payment_notification_body(self, txn: SandboxTransaction) -> tuple[str, str]:
        """(event id, outer JSON) of a TRANSACTION.SUCCESS notification, resource encrypted."""
        resource = json_body({
            "mchid": txn.mchid, "appid": txn.appid, "out_trade_no": txn.out_trade_no,
            "transaction_id": txn.transaction_id, "trade_type": txn.trade_type, "trade_state": "SUCCESS",
            "trade_state_desc": "支付成功", "bank_type": txn.bank_type, "attach": txn.attach or "",
            "success_time": format_time(txn.success_time), "payer": {"openid": txn.payer_openid},
            "amount": {"total": txn.amount_total, "payer_total": txn.amount_total - (getattr(txn, "coupon_amount", 0) or 0),
                       "currency": "CNY", "payer_currency": "CNY"},
            **({"promotion_detail": promotion_detail(txn)} if getattr(txn, "coupon_amount", 0) else {}),
        })
        event_id = str(uuid.uuid4())
        body = build_notification(self.merchant_aes(txn.mchid), resource.encode("utf-8"), event_type="TRANSACTION.SUCCESS",
                                  summary="支付成功", create_time=format_time(self.now()), event_id=event_id)
        return event_id, body.decode("utf-8")

    def enqueue_payment_notification(self, txn: SandboxTransaction, shape: str = "normal") -> list[int]:
        """Store the notification(s) for a payment, shaped by test control. Returns their row ids.

        ``normal``; ``drop`` (stored, never sent); ``delay:SECONDS``; ``duplicate:N`` (N at once).
        """
        kind, _, argument = shape.partition(":")
        copies, delay, state = 1, 0.0, "pending"
        if kind == "drop":
            state = "dropped"
        elif kind == "delay":
            delay = float(argument)
        elif kind == "duplicate":
            copies = int(argument)
        elif kind != "normal":
            raise ValueError(shape)
        event_id, body = self.payment_notification_body(txn)
        due = self.now() + timedelta(seconds=delay)
        rows = [
            SandboxNotification(
                event_id=event_id, out_trade_no=txn.out_trade_no, event_type="TRANSACTION.SUCCESS",
                notify_url=txn.notify_url, body=body, state=state, mchid=txn.mchid,
                next_attempt_at=due if state == "pending" else None,
            )
            for _ in range(copies)
        ]
        db.session.add_all(rows)
        db.session.commit()
        return [row.id for row in rows]

    def retry_gap(self, attempts_done: int) -> timedelta | None:
        """Time to the next delivery after ``attempts_done`` failures; None once the schedule is over."""
        if attempts_done > len(RETRY_INTERVALS_SECONDS):
            return None
        return timedelta(seconds=RETRY_INTERVALS_SECONDS[attempts_done - 1] * self.time_scale)

    def notification_key(self, mchid: str | None = None) -> tuple[keys.PrivateKey, str]:
        """(private key, serial) that signs the next notification delivery.

        ``auto`` follows the key the merchant's latest request named (PUB_KEY_ID or not);
        ``switching`` alternates at random, as WeChat Pay ramps notifications over during migration.
        """
        mode = self.settings.get("notify_signing")
        if mode == "auto":
            # The call log says which key the merchant uses.
            latest = db.session.execute(
                select(SandboxApiCall.id, SandboxApiCall.wechatpay_serial)
                .where(SandboxApiCall.mchid == (mchid or self.merchant.mchid), SandboxApiCall.auth_ok.is_(True))
                .order_by(SandboxApiCall.id.desc()).limit(1)
            ).first()
            # No call yet, or one naming the PUB_KEY_ID: public-key mode; otherwise certificate mode.
            named = latest is None or latest.wechatpay_serial == self.merchant.public_key_id
            mode = "public_key" if named else "certificate"
        elif mode == "switching":
            mode = "public_key" if secrets.randbelow(2) else "certificate"
        if mode == "public_key":
            return self.private_key, self.merchant.public_key_id
        newest = self.certificates.newest(self.now())
        return newest.private_key, newest.serial

    def notification_headers(self, body: str, probe: bool = False, mchid: str | None = None) -> dict[str, str]:
        """Fresh timestamp, nonce and signature for each delivery, so the 5-minute window holds.

        ``probe``: a deliberately wrong ``WECHATPAY/SIGNTEST/…`` signature that a shop must refuse.
        """
        private_key, serial = self.notification_key(mchid)
        headers = sign_response(private_key, serial, body.encode("utf-8"))
        if probe:
            headers["Wechatpay-Signature"] = "WECHATPAY/SIGNTEST/" + headers["Wechatpay-Signature"][19:]
        headers["Content-Type"] = "application/json"
        headers["Request-ID"] = request_id()
        return headers


def promotion_detail(txn: SandboxTransaction) -> list[dict[str, Any]]:
    """The coupon a payment used, as WeChat Pay's transaction object lists it (免充值代金券 funded by WeChat Pay:
    it lowers payer_total and the settlement, and the bill shows it as 代金券金额)."""
    coupon = txn.coupon_amount or 0
    return [{
        "coupon_id": "1" + hashlib.sha256(f"coupon:{txn.out_trade_no}".encode()).hexdigest()[:9].translate(
            str.maketrans("abcdef", "123456")),
        "name": "模拟器立减券", "scope": "GLOBAL", "type": "NOCASH", "amount": coupon,
        "stock_id": "8000000001", "wechatpay_contribute": coupon, "merchant_contribute": 0,
        "other_contribute": 0, "currency": "CNY",
    }]


def request_id() -> str:
    """A ``Request-ID`` shaped like WeChat Pay's: upper-case hex, a dash, a number (``08F4…A702-0``)."""
    return "08" + secrets.token_hex(21).upper() + "-" + str(secrets.randbelow(1 << 32))


def new_transaction_id(now: datetime) -> str:
    """28 digits laid out as WeChat Pay's: ``42000`` + 5 digits + the Beijing date + 10 digits."""
    day = now.replace(tzinfo=timezone.utc).astimezone(timezone(timedelta(hours=8))).strftime("%Y%m%d")
    digits = "".join(secrets.choice(string.digits) for _ in range(15))
    return "42000" + digits[:5] + day + digits[5:]


def probe_roll() -> float:
    """A number in [0, 1) deciding whether one answer is a signature probe (tests replace it)."""
    return secrets.randbelow(1_000_000) / 1_000_000
