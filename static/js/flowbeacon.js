// Reports what the shopper's page showed to the order's flow record (QR shown, expired,
// paid): the flow inspector draws these as browser steps. Fire and forget; never in the way.
// Other pages report their own events with window.storefrontFlow.report(event, detail).
(function () {
  'use strict';

  var match = window.location.pathname.match(/^\/orders\/([^/]+)\//);
  if (!match || !window.fetch) return;
  var url = '/orders/' + match[1] + '/flow/events';
  var sent = {};

  function outTradeNo() {
    var el = document.getElementById('out-trade-no');
    if (el) return el.textContent.trim();
    var qr = document.getElementById('qr');
    var found = qr && qr.getAttribute('src').match(/\/payments\/([^/]+)\/qr\.png/);
    return found ? decodeURIComponent(found[1]) : null;
  }

  function report(event, detail, once) {
    var no = outTradeNo();
    var key = event + ':' + no;
    if (once && sent[key]) return;
    sent[key] = true;
    // application/json: the endpoint refuses anything else (that is its CSRF defence).
    fetch(url, {
      method: 'POST', credentials: 'same-origin', keepalive: true,
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ event: event, out_trade_no: no, detail: detail || '' })
    }).catch(function () {});
  }
  window.storefrontFlow = { report: report };

  var qr = document.getElementById('qr');
  if (qr) {
    var shown = function () { report('qr_shown', 'code_url → QR', true); };
    if (qr.complete && qr.naturalWidth) shown(); else qr.addEventListener('load', shown);
    // A renewed QR code swaps the image: report the new attempt too.
    new MutationObserver(function () { qr.complete && qr.naturalWidth ? shown() : null; })
      .observe(qr, { attributes: true, attributeFilter: ['src'] });
  }
  // JSAPI: what getBrandWCPayRequest answered. The bridge (WeChat's, or the simulator's shim)
  // is wrapped before the page's own script calls it; the page's callback still runs.
  function wrapBridge() {
    var bridge = window.WeixinJSBridge;
    // The simulated mini program reports wx.requestPayment itself (miniprogram-sim.js).
    if (!bridge || bridge.__storefrontFlow || document.getElementById('mp-sim')) return;
    try {
      var invoke = bridge.invoke;
      bridge.invoke = function (name, params, callback) {
        if (name !== 'getBrandWCPayRequest') return invoke.apply(this, arguments);
        // What the page hands the app (paySign shortened: the full one is in the paySign step).
        var shown = {};
        Object.keys(params || {}).forEach(function (k) {
          shown[k] = k === 'paySign' ? String(params[k]).slice(0, 16) + '…' : params[k];
        });
        report('bridge_invoke', JSON.stringify(shown));
        return invoke.call(this, name, params, function (res) {
          report('bridge_result', (res && res.err_msg) || '');
          if (callback) return callback.apply(this, arguments);
        });
      };
      bridge.__storefrontFlow = true;
    } catch (e) { /* a frozen bridge: nothing to report */ }
  }
  wrapBridge();
  document.addEventListener('WeixinJSBridgeReady', wrapBridge);
  var jsapiButton = document.getElementById('jsapi-pay');
  if (jsapiButton) jsapiButton.addEventListener('click', wrapBridge, true);

  // H5: leaving for the cashier, and coming back to the result page.
  var h5Link = document.getElementById('h5-pay');
  if (h5Link) h5Link.addEventListener('click', function () { report('h5_redirect', 'h5_url + redirect_url'); });
  if (/\/pay\/result$/.test(window.location.pathname)) report('h5_returned', '', true);

  // Result sections are revealed by the checkout script: watch their hidden attribute.
  [['expired', 'qr_expired'], ['paid', 'paid_shown']].forEach(function (pair) {
    var section = document.getElementById(pair[0]);
    if (!section) return;
    var check = function () { if (!section.hidden) report(pair[1], '', true); };
    new MutationObserver(check).observe(section, { attributes: true, attributeFilter: ['hidden'] });
    check();
  });
})();
