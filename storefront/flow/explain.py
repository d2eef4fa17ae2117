"""What each step of a payment flow is for, and what goes wrong there in practice.

Two lines per step (purpose, pitfall) and the docs page that explains it. The pitfalls are
the ones merchants actually hit: missing signature fields, parameter order or newlines in the
signing string, expired QR codes, lost callbacks, scene rules.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..i18n import _

LANES = ("browser", "shop", "wechatpay", "app")


def lane_names() -> dict[str, str]:
    return {"browser": _("顾客浏览器"), "shop": _("商户后台"), "wechatpay": _("微信支付"), "app": _("微信App")}


@dataclass(frozen=True)
class Explanation:
    title: str
    purpose: str
    pitfall: str
    doc: str  # docs page name
    anchor: str = ""
    source: str = "shop"  # the lane the step starts in
    target: str = "wechatpay"  # the lane it goes to (== source: a note in that lane)


def explanation(kind: str) -> Explanation:
    """The explanation of one step kind (an unknown kind gets a generic one)."""
    table = {
        "order_created": Explanation(
            _("顾客下单"),
            _("商户后台按数据库里的价格（单位：分）创建订单，金额绝不取自浏览器。"),
            _("常见错误：用浮点数表示金额，或信任前端传来的价格，导致金额被篡改或出现 0.01 的误差。"),
            "lifecycle", "order-created", "browser", "shop"),
        "prepay_native": Explanation(
            _("Native 下单：POST /v3/pay/transactions/native"),
            _("商户用自己的私钥对「方法、URL、时间戳、随机串、请求体」五行签名，微信支付返回 code_url，商户再验证应答签名。"),
            _("常见错误：签名串少了最后一个换行、URL 漏了 ?query、请求体签名后又被重新序列化，都会得到 401 SIGN_ERROR。"),
            "native", "1-prepay"),
        "prepay_h5": Explanation(
            _("H5 下单：POST /v3/pay/transactions/h5"),
            _("手机浏览器（非微信内）下单，须带上顾客真实 IP（scene_info.payer_client_ip）和 h5_info.type，返回 h5_url。"),
            _("常见错误：IP 填了服务器地址、h5_url 超过 5 分钟才打开、在微信内打开（提示「请在微信外打开订单」），或缺少 Referer。"),
            "h5", "1-prepay"),
        "prepay_jsapi": Explanation(
            _("JSAPI / 小程序下单：POST /v3/pay/transactions/jsapi"),
            _("公众号或小程序内下单，须带 payer.openid（属于下单所用的 appid），返回 prepay_id，再由后台计算 paySign。"),
            _("常见错误：openid 与 appid 不匹配、小程序用了公众号的 appid、paySign 四行签名串顺序或换行错误。"),
            "jsapi", "2-prepay"),
        "prepay_app": Explanation(
            _("App 下单"), _("App 内下单，返回 prepay_id。"), _("本店不使用 App 支付。"), "signatures"),
        "query": Explanation(
            _("主动查询订单：GET …/out-trade-no/{out_trade_no}?mchid="),
            _("回调可能丢失或迟到：页面轮询和定时对账会主动向微信支付查询，查到 SUCCESS 同样记为已支付。"),
            _("常见错误：签名时漏了 ?mchid= 查询串；只依赖回调、从不查询，导致顾客付了钱订单却一直待支付。"),
            "notifications", "lost-notifications"),
        "close": Explanation(
            _("关闭订单：POST …/out-trade-no/{out_trade_no}/close"),
            _("二维码过期或换新码前，先在微信支付关单（204），再在本地关闭，避免旧码仍可付款造成重复支付。"),
            _("常见错误：只在本地关单；关单时对方已付款（ORDERPAID）却没转为查询并入账。"),
            "lifecycle", "close"),
        "refund": Explanation(
            _("申请退款：POST /v3/refund/domestic/refunds"),
            _("按 out_refund_no 幂等地申请退款，受理后状态为 PROCESSING，结果以退款通知或查询为准。"),
            _("常见错误：重试时换了 out_refund_no 导致重复退款；以为接口 200 就是退款成功。"),
            "notifications", "refunds"),
        "refund_query": Explanation(
            _("查询退款"), _("退款通知可能丢失：按 out_refund_no 查询退款状态。"),
            _("常见错误：把退款接口的 status 与退款通知的 refund_status 混为一谈。"), "notifications", "refunds"),
        "certificates": Explanation(
            _("下载平台证书：GET /v3/certificates"), _("证书模式下获取微信支付平台证书，用于验签。"),
            _("常见错误：用自己的 apiclient_cert.pem 验签；公钥模式的商户调用此接口会失败。"), "signatures", "keys"),
        "api": Explanation(
            _("调用微信支付 API"), _("一次签名的 API v3 请求及其应答。"),
            _("常见错误：Authorization 缺少 mchid、nonce_str、timestamp、serial_no、signature 五项之一。"),
            "signatures"),
        "notify_payment": Explanation(
            _("支付成功通知：POST /notify/wechatpay"),
            _("微信支付把加密的交易结果推送给商户；商户按顺序校验签名头、证书序列号、时间窗口、签名，解密后核对商户号、AppID、金额，再幂等入账并应答 204。"),
            _("常见错误：用解析后重新序列化的 JSON 验签；不核对金额；重复通知被当成新付款；5 秒内未应答导致微信按 15s/15s/30s/3m… 重试。"),
            "notifications", "checks", "wechatpay", "shop"),
        "notify_refund": Explanation(
            _("退款结果通知"), _("退款完成（或异常、关闭）时微信支付推送的加密通知。"),
            _("常见错误：字段名是 refund_status 而不是 status；未幂等处理重复通知。"),
            "notifications", "refunds", "wechatpay", "shop"),
        "qr_shown": Explanation(
            _("页面展示二维码"),
            _("浏览器把 code_url 渲染成二维码并开始倒计时，然后每隔一两秒向商户后台（而不是微信支付）轮询订单状态。"),
            _("常见错误：二维码过期后仍展示旧码；code_url 有效期 2 小时，但本店的 time_expire 更短，以较短者为准。"),
            "native", "2-qr", "shop", "browser"),
        "qr_expired": Explanation(
            _("二维码过期"),
            _("倒计时结束：这一笔支付尝试不再可付，页面自动请求新的二维码（连续自动更新几次后，改为等顾客点「刷新二维码」）。"),
            _("常见错误：不关单就生成新码，顾客用旧码付款后订单被付两次。"),
            "lifecycle", "expired-qr", "browser", "browser"),
        "qr_renew": Explanation(
            _("二维码更新"), _("页面（或顾客）请求新的二维码：商户先关闭旧的支付尝试，再用新的 out_trade_no 下单。"),
            _("常见错误：沿用同一个 out_trade_no 但改了参数（如 time_expire），微信返回「商户订单号重复」。"),
            "lifecycle", "expired-qr", "browser", "shop"),
        "paid_shown": Explanation(
            _("页面显示支付成功"), _("轮询读到商户后台的 paid 状态后，页面才显示支付成功。"),
            _("常见错误：页面自己判定成功（例如根据跳转或前端回调），而后台并未确认收款。"),
            "native", "4-result", "shop", "browser"),
        "h5_redirect": Explanation(
            _("跳转 H5 收银台"), _("浏览器从商户页面跳转到 h5_url（带 redirect_url），微信 App 被拉起完成支付。"),
            _("常见错误：直接打开链接没有 Referer，提示「商家参数格式有误」；redirect_url 域名未登记。"),
            "h5", "2-redirect", "browser", "app"),
        "h5_returned": Explanation(
            _("从收银台返回"), _("支付结束（或约 5 秒后）浏览器回到 redirect_url，此时结果未必已知。"),
            _("常见错误：返回页自动判定成功；应显示「我已支付 / 查询结果」并由后台查询。"),
            "h5", "3-return", "app", "browser"),
        "bridge_result": Explanation(
            _("WeixinJSBridge 返回结果"),
            _("getBrandWCPayRequest 的回调告诉页面顾客点了什么（ok / cancel / fail）。"),
            _("常见错误：把 get_brand_wcpay_request:ok 当作已付款的证明；只有通知或查询才算数。"),
            "jsapi", "3-bridge", "app", "browser"),
        "requestpayment_result": Explanation(
            _("wx.requestPayment 返回结果"), _("小程序的支付接口回调：requestPayment:ok 或 fail cancel。"),
            _("常见错误：把 requestPayment:ok 当作已付款；在小程序里签名用了公众号 appid。"),
            "miniprogram", "3-request-payment", "app", "browser"),
        "payer_paid": Explanation(
            _("顾客在微信中确认支付"),
            _("顾客在微信 App 里输入密码完成付款。商户看不到这一步，时间取自微信支付返回的 success_time。"),
            _("常见错误：以为顾客付款后商户一定会收到通知；通知可能丢失，必须有主动查询兜底。"),
            "native", "3-pay", "app", "wechatpay"),
        "oauth_authorize": Explanation(
            _("网页授权：跳转 open.weixin.qq.com/connect/oauth2/authorize"),
            _("JSAPI 需要顾客在本公众号下的 openid：商户把浏览器重定向到微信授权页，scope=snsapi_base 静默授权，state 是一次性的防 CSRF 随机串。"),
            _("常见错误：redirect_uri 未 URL 编码或域名不在「网页授权域名」里（10003）；state 放在每次请求都会重写的会话 Cookie 里，被并发请求覆盖后报 state 无效。"),
            "jsapi", "1-oauth-for-the-openid", "shop", "app"),
        "oauth_callback": Explanation(
            _("微信带 code 回到 redirect_uri"),
            _("微信把浏览器送回商户，附带一次性的 code 和原样的 state；商户先核对 state 属于本顾客、未过期、未用过，再去换 openid。"),
            _("常见错误：不校验 state（CSRF 可把别人的微信身份绑到顾客会话上）；同一个 code 用两次（40163 code been used）。"),
            "jsapi", "1-oauth-for-the-openid", "app", "shop"),
        "oauth_token": Explanation(
            _("用 code 换 openid：GET api.weixin.qq.com/sns/oauth2/access_token"),
            _("商户后台带 appid、appsecret 和 code 换取 openid；appsecret 只在服务器之间传递，这里已脱敏。"),
            _("常见错误：在前端调用此接口而泄露 appsecret；把网页授权的 access_token 当成公众号的 access_token；忽略 HTTP 200 里的 errcode。"),
            "jsapi", "1-oauth-for-the-openid", "shop", "wechatpay"),
        "jscode2session": Explanation(
            _("小程序登录：GET api.weixin.qq.com/sns/jscode2session"),
            _("小程序 wx.login 拿到 code，商户后台带小程序的 appid 和 appsecret 换取 openid 和 session_key；session_key 绝不下发给前端，这里已脱敏。"),
            _("常见错误：用公众号的 appid 换小程序的 code（40029 invalid code）；把 session_key 返回给小程序。"),
            "miniprogram", "1-login", "shop", "wechatpay"),
        "pay_sign": Explanation(
            _("计算 paySign"),
            _("后台用商户私钥对「appId、timeStamp、nonceStr、package」四行（每行以 \\n 结尾）做 RSA-SHA256 签名，得到 paySign，连同其余参数交给页面或小程序。"),
            _("常见错误：package 写成 prepay_id 本身而不是「prepay_id=…」；少了最后一个换行；timeStamp 用毫秒或数字类型；appId 与下单时的 appid 不一致。"),
            "jsapi", "2-prepay", "shop", "shop"),
        "bridge_invoke": Explanation(
            _("页面调起支付：WeixinJSBridge.invoke('getBrandWCPayRequest')"),
            _("页面把后台给的六个参数原样交给微信客户端；客户端用商户公钥验证 paySign，再弹出支付窗口。"),
            _("常见错误：参数名大小写写错（timeStamp、nonceStr）；在 WeixinJSBridgeReady 之前调用；在微信外的浏览器调用。"),
            "jsapi", "3-bridge", "browser", "app"),
        "requestpayment_invoke": Explanation(
            _("小程序调起支付：wx.requestPayment"),
            _("小程序把 timeStamp、nonceStr、package、signType、paySign 交给微信；appId 不传，由当前小程序隐含。"),
            _("常见错误：签名时用了公众号的 appid；把 requestPayment:ok 当作已付款。"),
            "miniprogram", "3-request-payment", "browser", "app"),
        "state": Explanation(
            _("订单状态变化"),
            _("订单状态只在状态机里以条件更新（UPDATE … WHERE status=…）改变，重复的通知和查询只有一个能成功。"),
            _("常见错误：先读后写造成竞态，通知和查询同时到达时重复发货或重复记账。"),
            "lifecycle", "state-machine", "shop", "shop"),
    }
    return table.get(kind) or table["api"]
