"""Official-account web OAuth (``snsapi_base``): WeChat sends the browser back here with a code."""

from flask import Blueprint, redirect, request

from ..services import identity
from ..web import shopper_id

bp = Blueprint("oauth", __name__)


@bp.get("/wechat/callback")
def callback():
    """Check the CSRF ``state``, exchange the one-time code for the openid, go back to checkout."""
    next_url = identity.finish_authorization(request.args.get("code"), request.args.get("state"), shopper_id())
    if not next_url.startswith("/") or next_url.startswith("//"):
        next_url = "/"  # only ever back into this shop
    return redirect(next_url, code=303)
