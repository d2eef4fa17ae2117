// Simulator mode only: plays the mini program's own code on the web-view page, so a desktop
// browser can take the mini program path: wx.login → POST /api/miniprogram/login (the shop calls
// jscode2session) → POST /api/orders/<no>/payments {"method": "miniprogram"} → wx.requestPayment,
// played by the simulator's pay sheet. requestPayment:ok is a hint: the shop's status decides.
(function () {
  'use strict';

  var root = document.getElementById('mp-sim');
  if (!root || !window.fetch) return;
  var button = document.getElementById('mp-pay');
  var out = document.getElementById('mp-message');
  function msg(name) { return root.getAttribute('data-msg-' + name) || ''; }
  function say(text) { out.textContent = text; }
  function flow(event, detail) { if (window.storefrontFlow) window.storefrontFlow.report(event, detail); }

  function post(url, body) {
    return fetch(url, {
      method: 'POST', credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify(body)
    }).then(function (response) {
      return response.json().then(function (data) {
        if (!response.ok) throw new Error((data.error && data.error.message) || data.message || response.status);
        return data;
      });
    });
  }

  function bridge() {
    if (window.WeixinJSBridge) return Promise.resolve(window.WeixinJSBridge);
    return new Promise(function (resolve, reject) {
      var script = document.createElement('script');
      script.src = root.getAttribute('data-bridge-url');
      script.onload = function () { resolve(window.WeixinJSBridge); };
      script.onerror = reject;
      document.head.appendChild(script);
    });
  }

  function showPaid() {
    ['mp-sim', 'miniprogram-notice'].forEach(function (id) {
      var node = document.getElementById(id);
      if (node) node.hidden = true;
    });
    document.getElementById('paid').hidden = false;
  }

  function confirm(tries) {
    fetch(root.getAttribute('data-status-url'), { credentials: 'same-origin', cache: 'no-store' })
      .then(function (r) { return r.json(); })
      .then(function (data) {
        if (data.status === 'paid' || data.status === 'refunded') return showPaid();
        if (tries > 1) setTimeout(function () { confirm(tries - 1); }, 1000);
        else button.disabled = false;
      }, function () { if (tries > 1) setTimeout(function () { confirm(tries - 1); }, 1000); });
  }

  // wx.requestPayment's answers, from the sheet's getBrandWCPayRequest ones.
  function requestPayment(params) {
    var sent = { timeStamp: params.timeStamp, nonceStr: params.nonceStr, package: params['package'],
                 signType: params.signType, paySign: params.paySign.slice(0, 16) + '…' };
    flow('requestpayment_invoke', JSON.stringify(sent));
    return bridge().then(function (jsBridge) {
      return new Promise(function (resolve) {
        jsBridge.invoke('getBrandWCPayRequest', params, function (res) {
          var result = (res && res.err_msg) || '';
          var mapped = /:ok$/.test(result) ? 'requestPayment:ok'
            : /:cancel$/.test(result) ? 'requestPayment:fail cancel' : 'requestPayment:fail ' + (res.err_desc || '');
          flow('requestpayment_result', mapped);
          resolve({ mapped: mapped, desc: res && res.err_desc });
        });
      });
    });
  }

  button.addEventListener('click', function () {
    button.disabled = true;
    say(msg('login'));
    post(root.getAttribute('data-wx-login-url'), {})
      .then(function (login) { return post(root.getAttribute('data-login-url'), { code: login.code }); })
      .then(function () {
        say(msg('prepay'));
        return post(root.getAttribute('data-payments-url'), { method: 'miniprogram' });
      })
      .then(function (payment) {
        say(msg('pay'));
        return requestPayment(payment.pay_params);
      })
      .then(function (result) {
        if (result.mapped === 'requestPayment:ok') { say(msg('confirming')); confirm(10); return; }
        button.disabled = false;
        say(result.mapped === 'requestPayment:fail cancel' ? msg('cancel') : msg('failed') + (result.desc || ''));
      })
      .catch(function (error) { button.disabled = false; say(msg('error') + error.message); });
  });
})();
