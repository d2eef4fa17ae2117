// Checkout inside WeChat (JSAPI) and the H5 return page. WeChat's front-end results are hints only:
// both pages ask the shop's status endpoint (which queries WeChat Pay) and show paid only when it says so.
(function () {
  'use strict';

  var root = document.getElementById('checkout');
  if (!root) return;

  // The page's language: translations of these strings arrive in <meta name="sf-i18n" content="{JSON}">.
  var strings = {};
  var carried = document.querySelector('meta[name="sf-i18n"]');
  try { strings = JSON.parse(carried ? carried.getAttribute('content') : '{}'); } catch (e) { /* Chinese */ }
  function t(text) { return strings[text] || text; }

  // Bounded: WeChat may send the browser back before the payment is decided (WeChat Pay "H5支付": the return page must confirm with the server).
  var CONFIRM_TRIES = parseInt(root.getAttribute('data-confirm-tries'), 10) || 6;
  var CONFIRM_GAP_MS = parseInt(root.getAttribute('data-confirm-gap-ms'), 10) || 1500;
  var statusUrl = root.getAttribute('data-status-url');
  var ids = ['pay-block', 'confirming', 'unconfirmed', 'paid', 'closed'];

  function show(name) {
    ids.forEach(function (id) {
      var node = document.getElementById(id);
      if (node) node.hidden = id !== name;
    });
  }

  function status() {
    return fetch(statusUrl, { credentials: 'same-origin', cache: 'no-store', headers: { Accept: 'application/json' } })
      .then(function (response) {
        if (!response.ok) throw new Error('HTTP ' + response.status);
        return response.json();
      })
      .then(function (data) { return data.status; });
  }

  // Ask a bounded number of times; then hand over to the shopper ("I have paid" / "pay again").
  function confirm(tries) {
    show('confirming');
    status().then(function (state) {
      if (state === 'paid' || state === 'refunded') return show('paid');
      if (state === 'closed') return show('closed');
      if (tries > 1) return setTimeout(function () { confirm(tries - 1); }, CONFIRM_GAP_MS);
      show('unconfirmed');
    }, function () {
      if (tries > 1) setTimeout(function () { confirm(tries - 1); }, CONFIRM_GAP_MS);
      else show('unconfirmed');
    });
  }

  var paidButton = document.getElementById('i-have-paid');
  if (paidButton) {
    paidButton.addEventListener('click', function () {
      var note = document.getElementById('still-pending');
      paidButton.disabled = true;
      status().then(function (state) {
        paidButton.disabled = false;
        if (state === 'paid' || state === 'refunded') return show('paid');
        if (state === 'closed') return show('closed');
        if (note) note.hidden = false;
      }, function () {
        paidButton.disabled = false;
        if (note) note.hidden = false;
      });
    });
  }

  if (root.getAttribute('data-scene') === 'return') {
    var initial = root.getAttribute('data-initial-status');
    if (initial === 'paid' || initial === 'refunded') show('paid');
    else confirm(CONFIRM_TRIES);
    return;
  }

  // -- JSAPI: WeixinJSBridge.invoke('getBrandWCPayRequest', ...) -------------------------------

  var params = JSON.parse(root.getAttribute('data-pay-params') || '{}');
  var payButton = document.getElementById('jsapi-pay');
  var message = document.getElementById('bridge-message');

  function say(text) {
    message.textContent = text;
    message.hidden = !text;
  }

  function onResult(res) {
    var result = (res && res.err_msg) || '';
    payButton.disabled = false;
    if (result === 'get_brand_wcpay_request:ok') {
      say('');
      confirm(CONFIRM_TRIES); // a hint, not proof: the server decides
    } else if (result === 'get_brand_wcpay_request:cancel') {
      say(t('您已取消支付，订单仍待支付，可以随时重新支付。'));
    } else {
      // WeChat's own reason already says what to do ("请更换支付方式"): say it once, not twice.
      say(res && res.err_desc ? t('支付未完成：') + res.err_desc : t('支付未完成。请重试，或换用其他支付方式。'));
    }
  }

  function invoke() {
    if (typeof window.WeixinJSBridge === 'undefined') {
      // Inside WeChat the bridge arrives a moment after the page: wait for it.
      document.addEventListener('WeixinJSBridgeReady', invoke, { once: true });
      return;
    }
    payButton.disabled = true;
    say('');
    window.WeixinJSBridge.invoke('getBrandWCPayRequest', params, onResult);
  }

  payButton.addEventListener('click', invoke);

  // Simulator mode only: without the WeChat app there is no bridge, so load the simulator's shim.
  var bridgeUrl = root.getAttribute('data-bridge-url');
  if (bridgeUrl && typeof window.WeixinJSBridge === 'undefined') {
    var script = document.createElement('script');
    script.src = bridgeUrl;
    script.async = true;
    document.head.appendChild(script);
  }
})();
