// Guided tour: the guide's own buttons. They do what the shop frame would make a learner hunt
// for (open the scan page, pay, drop or tamper with a callback): the simulator's test controls
// for the order's current attempt (read from the flow JSON), or a click inside the shop frame.
(function () {
  'use strict';

  var root = document.getElementById('tour');
  if (!root || !window.fetch) return;
  var flowJsonUrl = root.getAttribute('data-flow-json-url');
  var out = document.getElementById('fault-result');
  var shopFrame = document.getElementById('shop-frame');

  function say(text) { if (out) out.textContent = text; }
  function msg(name) { return root.getAttribute('data-msg-' + name) || ''; }

  function currentAttempt() {
    return fetch(flowJsonUrl, { credentials: 'same-origin', cache: 'no-store' })
      .then(function (r) { return r.json(); })
      .then(function (data) {
        var open = (data.attempts || []).filter(function (a) { return a.status === 'notpay'; });
        if (!open.length) throw new Error('no open attempt');
        return open[0].out_trade_no;
      });
  }

  function control(path, body) {
    return fetch(path, {
      method: 'POST', credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify(body)
    }).then(function (r) { return r.json().then(function (data) { return { status: r.status, data: data }; }); });
  }

  function inShop(selector) {
    try {
      var doc = shopFrame && shopFrame.contentDocument;
      return doc ? doc.querySelector(selector) : null;
    } catch (e) { return null; }
  }

  function pay(notify) {
    return currentAttempt().then(function (outTradeNo) {
      var body = { out_trade_no: outTradeNo, result: 'SUCCESS' };
      if (notify) body.notify = notify;
      return control('/sandbox/control/pay', body).then(function (answer) {
        say(answer.status === 200 ? msg(notify === 'drop' ? 'drop' : 'paid')
          : msg('refused') + (answer.data.message || answer.status));
      });
    });
  }

  root.querySelectorAll('[data-action]').forEach(function (button) {
    button.addEventListener('click', function () {
      var action = button.getAttribute('data-action');
      if (action === 'open-scan') {
        var link = inShop('#open-scan');
        if (!link) return say(msg('wait'));
        window.open(link.href, '_blank', 'noopener');
        return say('');
      }
      if (action === 'click') {
        var target = inShop(button.getAttribute('data-target'));
        if (!target || target.disabled) return say(msg('wait'));
        // WeChat's H5 cashier refuses to be framed: it opens in a tab of its own, as on a phone.
        if (button.getAttribute('data-new-tab') === 'yes' && target.form) target.form.target = '_blank';
        target.click();
        return say('');
      }
      if (action === 'pay') {
        say('…');
        pay(null).catch(function () { say(msg('none')); });
      }
    });
  });

  root.querySelectorAll('[data-fault]').forEach(function (button) {
    button.addEventListener('click', function () {
      say('…');
      if (button.getAttribute('data-fault') === 'drop') {
        pay('drop').catch(function () { say(msg('none')); });
        return;
      }
      currentAttempt().then(function (outTradeNo) {
        return control('/sandbox/control/tamper', { out_trade_no: outTradeNo, tamper: button.getAttribute('data-tamper') })
          .then(function (answer) {
            say(answer.status === 200 ? msg('tamper').replace('{status}', answer.data.http_status)
              : msg('refused') + (answer.data.message || answer.status));
          });
      }).catch(function () { say(msg('none')); });
    });
  });
})();
