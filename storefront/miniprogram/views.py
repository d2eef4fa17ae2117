"""The mini program's login: a ``wx.login`` code becomes a shop session that knows the openid."""

from flask import Blueprint, request

from ..errors import ShopError
from ..i18n import _
from ..services import identity
from ..web import shopper_id

bp = Blueprint("miniprogram", __name__)


@bp.before_request
def require_json_body():
    # As in /api: JSON only, so a cross-site form cannot ride the session cookie.
    if request.method == "POST" and not request.is_json:
        raise ShopError("UNSUPPORTED_MEDIA_TYPE", _("请求须为 application/json"), 415)


@bp.post("/login")
def login():
    """``{"code"}`` from ``wx.login`` → ``{"openid"}`` and the session cookie; never session_key."""
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise ShopError("INVALID_JSON", _("请求体须为 JSON 对象"))
    openid = identity.mini_program_login(data.get("code"), shopper_id(create=True))
    return {"openid": openid}
