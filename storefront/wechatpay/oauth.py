"""WeChat login for payments: official-account web OAuth and mini program ``jscode2session``.

WeChat "网页授权" and "小程序登录": ``GET /sns/oauth2/access_token`` and ``GET /sns/jscode2session`` on
``api.weixin.qq.com``. Both answer HTTP 200 with ``{"errcode", "errmsg"}`` on failure. The
access_token and session_key they return are secrets: never logged, never kept here.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote, urlencode

import requests

from .errors import TransportError, WeChatPayError

DEFAULT_AUTHORIZE_BASE = "https://open.weixin.qq.com"
DEFAULT_API_BASE = "https://api.weixin.qq.com"
DEFAULT_TIMEOUT_SECONDS = 10.0
SCOPE_BASE = "snsapi_base"  # silent: openid only, enough to pay

log = logging.getLogger(__name__)


# api.weixin.qq.com takes the appsecret in the query string: keep it out of every log line.
_SECRET_IN_QUERY = re.compile(r"(?<=[?&])(secret|access_token|refresh_token|session_key)=[^&\s\"]*")


class RedactQuerySecrets(logging.Filter):
    """Blank ``secret=`` (and tokens) in a record's message before any handler writes it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "secret=" in message or "token=" in message or "session_key=" in message:
            record.msg, record.args = _SECRET_IN_QUERY.sub(r"\1=***", message), None
        return True


def redact_query_secrets_in(logger_name: str) -> None:
    """Install the filter on one logger, once per process."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, RedactQuerySecrets) for f in logger.filters):
        logger.addFilter(RedactQuerySecrets())


class OAuthError(WeChatPayError):
    """WeChat answered ``errcode``/``errmsg`` (40029 invalid code, 40163 code been used, ...)."""

    def __init__(self, errcode: int, errmsg: str) -> None:
        super().__init__(f"errcode {errcode}: {errmsg}")
        self.errcode = errcode
        self.errmsg = errmsg


@dataclass(frozen=True)
class OAuthExchange:
    """One ``sns`` call as it crossed the wire, for an observer (the flow record redacts it)."""

    method: str
    url: str  # with the query string, appsecret included: the observer must redact it
    status: int | None
    response_headers: dict[str, str]
    response_body: str
    elapsed_ms: float
    error: str = ""


Observer = Callable[[OAuthExchange], None]


@dataclass(frozen=True)
class OAuthIdentity:
    """What the code exchange tells about the payer; the access_token itself is dropped."""

    openid: str
    scope: str
    unionid: str | None = None


@dataclass(frozen=True)
class MiniProgramSession:
    """``jscode2session``'s answer. ``session_key`` must never reach a client or a log."""

    openid: str
    session_key: str
    unionid: str | None = None

    def __repr__(self) -> str:  # keep session_key out of tracebacks and debug output
        return f"MiniProgramSession(openid={self.openid!r}, session_key=***)"


def authorize_url(
    appid: str, redirect_uri: str, state: str, *, scope: str = SCOPE_BASE, base: str = DEFAULT_AUTHORIZE_BASE
) -> str:
    """The authorize URL, parameters in WeChat's documented order, with ``#wechat_redirect``."""
    query = urlencode(
        [("appid", appid), ("redirect_uri", redirect_uri), ("response_type", "code"), ("scope", scope),
         ("state", state)],
        quote_via=quote,
    )
    return f"{base.rstrip('/')}/connect/oauth2/authorize?{query}#wechat_redirect"


class OAuthClient:
    """Calls ``api.weixin.qq.com``'s ``sns`` endpoints over one reused HTTP session."""

    def __init__(
        self,
        *,
        api_base: str = DEFAULT_API_BASE,
        session: requests.Session | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        self.api_base = api_base.rstrip("/")
        self.timeout = timeout
        self._session = session or requests.Session()
        redact_query_secrets_in("urllib3.connectionpool")  # it logs request URLs at DEBUG

    def _get(self, path: str, params: dict[str, str], observer: Observer | None = None) -> dict:
        started = time.monotonic()
        url = self.api_base + path + "?" + urlencode(params)
        try:
            answer = self._session.get(self.api_base + path, params=params, timeout=self.timeout,
                                       allow_redirects=False)
        except requests.RequestException as exc:
            if observer is not None:
                observer(OAuthExchange("GET", url, None, {}, "", (time.monotonic() - started) * 1000,
                                       exc.__class__.__name__))
            # The URL carries the secret: name only the path and the exception class.
            raise TransportError(f"GET {path}: {exc.__class__.__name__}") from None
        log.info("wechat GET %s -> %s", path, answer.status_code)
        if observer is not None:
            observer(OAuthExchange("GET", url, answer.status_code, dict(answer.headers), answer.text,
                                   (time.monotonic() - started) * 1000))
        try:
            data = answer.json()
        except ValueError:
            raise TransportError(f"GET {path}: HTTP {answer.status_code}, answer is not JSON") from None
        if not isinstance(data, dict):
            raise TransportError(f"GET {path}: answer is not a JSON object")
        errcode = data.get("errcode")
        if errcode not in (None, 0):
            raise OAuthError(int(errcode), str(data.get("errmsg", "")))
        if answer.status_code != 200 or not isinstance(data.get("openid"), str) or not data["openid"]:
            raise TransportError(f"GET {path}: HTTP {answer.status_code} without an openid")
        return data

    def exchange_code(self, appid: str, secret: str, code: str, observer: Observer | None = None) -> OAuthIdentity:
        """``sns/oauth2/access_token``: the payer's openid under ``appid``. :raise OAuthError:"""
        data = self._get("/sns/oauth2/access_token", {
            "appid": appid, "secret": secret, "code": code, "grant_type": "authorization_code",
        }, observer)
        return OAuthIdentity(openid=data["openid"], scope=str(data.get("scope", "")), unionid=data.get("unionid"))

    def jscode2session(self, appid: str, secret: str, js_code: str,
                       observer: Observer | None = None) -> MiniProgramSession:
        """``sns/jscode2session``: a ``wx.login`` code to openid (+ session_key). :raise OAuthError:"""
        data = self._get("/sns/jscode2session", {
            "appid": appid, "secret": secret, "js_code": js_code, "grant_type": "authorization_code",
        }, observer)
        return MiniProgramSession(openid=data["openid"], session_key=str(data.get("session_key", "")),
                                  unionid=data.get("unionid"))
