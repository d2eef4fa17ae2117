// Guided tour: the failure-path buttons. They call the simulator's test control for the
// order's current attempt (read from the flow JSON); the inspector frame shows the result.
(function () {
  'use strict';

  var root = document.getElementById('tour');
  if (!root || !window.fetch) return;
  var flowJsonUrl = root.getAttribute('data-flow-json-url');
  var out = document.getElementById('fault-result');

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

  root.querySelectorAll('[data-fault]').forEach(function (button) {
    button.addEventListener('click', function () {
      say('…');
      currentAttempt().then(function (outTradeNo) {
        if (button.getAttribute('data-fault') === 'drop') {
          return control('/sandbox/control/pay', { out_trade_no: outTradeNo, result: 'SUCCESS', notify: 'drop' })
            .then(function (answer) {
              say(answer.status === 200 ? msg('drop') : msg('refused') + (answer.data.message || answer.status));
            });
        }
        return control('/sandbox/control/tamper', { out_trade_no: outTradeNo, tamper: button.getAttribute('data-tamper') })
          .then(function (answer) {
            say(answer.status === 200 ? msg('tamper').replace('{status}', answer.data.http_status)
              : msg('refused') + (answer.data.message || answer.status));
          });
      }).catch(function () { say(msg('none')); });
    });
  });
})();
