// The simulator's stand-in for the WeChat app's WeixinJSBridge (simulator mode only).
// getBrandWCPayRequest asks the simulator to verify paySign with the merchant's public key, shows a
// WeChat-like pay sheet, and calls back with WeChat's exact strings: get_brand_wcpay_request:ok|cancel|fail.
(function () {
  'use strict';

  if (window.WeixinJSBridge) return; // the real bridge is here: never shadow it

  // Words shown before the simulator's labels arrive (a refusal): the page's language, from
  // <meta name="sf-i18n" content="{JSON}"> (storefront/i18n.py, JS_MESSAGES); Chinese by default.
  var pageWords = {};
  var carried = document.querySelector('meta[name="sf-i18n"]');
  try { pageWords = JSON.parse(carried ? carried.getAttribute('content') : '{}'); } catch (e) { /* Chinese */ }
  function tr(text) { return pageWords[text] || text; }

  var script = document.currentScript;
  var base = script ? script.src.replace(/\/jsapi\/bridge\.js(\?.*)?$/, '') : '/sandbox';
  var OK = 'get_brand_wcpay_request:ok';
  var PASSWORD_DELAY_MS = 4000;  // how long the simulated payer types the password
  var CANCEL = 'get_brand_wcpay_request:cancel';
  var FAIL = 'get_brand_wcpay_request:fail';

  var CSS = [
    '.wxsim-mask{position:fixed;inset:0;z-index:1000;background:rgba(0,0,0,.5);display:flex;align-items:flex-end;',
    'justify-content:center;font-family:-apple-system,"PingFang SC","Noto Sans CJK SC","Microsoft YaHei",sans-serif}',
    '.wxsim-sheet{width:100%;max-width:480px;background:#f7f7f7;border-radius:12px 12px 0 0;padding:0 0 20px;',
    'color:#191919;box-shadow:0 -4px 24px rgba(0,0,0,.15)}',
    '.wxsim-head{display:flex;align-items:center;justify-content:space-between;padding:14px 16px;font-size:15px}',
    '.wxsim-close{border:0;background:none;font-size:22px;line-height:1;color:#7f7f7f;cursor:pointer}',
    '.wxsim-merchant{margin:8px 0 0;text-align:center;font-size:15px}',
    '.wxsim-desc{margin:4px 16px 0;text-align:center;font-size:13px;color:#595959}',
    '.wxsim-amount{margin:10px 0 18px;text-align:center;font-size:36px;font-weight:600}',
    '.wxsim-row{margin:0 16px;padding:12px 0;border-top:1px solid #e5e5e5;display:flex;justify-content:space-between;',
    'font-size:14px;color:#595959}','.wxsim-row[hidden],.wxsim-btn[hidden],.wxsim-password[hidden]{display:none}',
    '.wxsim-btn{display:block;width:calc(100% - 32px);margin:12px 16px 0;padding:12px;border:0;border-radius:8px;',
    'font-size:17px;cursor:pointer}',
    '.wxsim-pay{background:#057a3c;color:#fff}.wxsim-title{font-weight:600}',
    '.wxsim-password{margin:0 16px;text-align:center}.wxsim-password label{display:block;margin-top:6px}',
    '.wxsim-pin{width:100%;max-width:300px;padding:10px;',
    'font-size:28px;letter-spacing:.9em;text-align:center;border:1px solid #c8c8c8;border-radius:8px;',
    'background:#fff;font-family:monospace}',
    '.wxsim-other{margin:14px 16px 0;font-size:14px;color:#4c4c4c}.wxsim-other summary{cursor:pointer;',
    'text-align:center;padding:6px}.wxsim-choice{display:block;width:100%;margin:6px 0 0;padding:10px;',
    'border:0;border-radius:8px;background:#fff;color:#191919;font-size:14px;cursor:pointer}',
    '.wxsim-msg{margin:16px;text-align:center;font-size:15px}.wxsim-tag{text-align:center;font-size:12px;color:#595959;',
    'margin-top:10px}'
  ].join('');

  function post(path, body) {
    return fetch(base + path, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify(body)
    }).then(function (response) {
      return response.json().catch(function () { return { err_msg: FAIL, message: 'HTTP ' + response.status }; });
    });
  }

  function yuan(fen) {
    return '¥' + Math.floor(fen / 100) + '.' + String(fen % 100).padStart(2, '0');
  }

  function element(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function sheet(labels) {
    if (!document.getElementById('wxsim-style')) {
      var style = element('style');
      style.id = 'wxsim-style';
      style.textContent = CSS;
      document.head.appendChild(style);
    }
    var mask = element('div', 'wxsim-mask');
    mask.id = 'wxsim-sheet';
    mask.setAttribute('role', 'dialog');
    mask.setAttribute('aria-label', (labels && labels.title) || tr('微信支付'));
    var box = element('div', 'wxsim-sheet');
    mask.appendChild(box);
    document.body.appendChild(mask);
    return { mask: mask, box: box };
  }

  // A refusal the app shows before any sheet (bad paySign, stale prepay_id...): then :fail.
  function refuse(message, callback, labels) {
    var t = labels || {};
    var ui = sheet(t);
    ui.box.appendChild(element('p', 'wxsim-msg', message));
    var ok = element('button', 'wxsim-btn wxsim-pay', t.ok || tr('确定'));
    ok.id = 'wxsim-refusal-ok';
    ok.type = 'button';
    ok.addEventListener('click', function () {
      ui.mask.remove();
      callback({ err_msg: FAIL, err_desc: message });
    });
    ui.box.appendChild(ok);
    ui.box.appendChild(element('p', 'wxsim-tag', t.tag || tr('模拟器 · 非真实微信')));
  }

  // The sheet as WeChat shows it: amount and 支付 first; 支付 asks for the 6-digit password;
  // the simulator's other outcomes sit in a secondary "模拟其他结果" menu, never beside 支付.
  function getBrandWCPayRequest(params, callback) {
    post('/jsapi/verify', { params: params }).then(function (info) {
      var t = info.labels || {};
      if (info.err_msg) return refuse(info.message || t.failed || tr('支付失败'), callback, t);
      var ui = sheet(t);
      var head = element('div', 'wxsim-head');
      var close = element('button', 'wxsim-close', '×');
      close.id = 'wxsim-cancel';
      close.type = 'button';
      close.setAttribute('aria-label', t.cancel || '取消支付');
      var title = element('span', 'wxsim-title', t.title || '微信支付');
      title.id = 'wxsim-title';
      head.appendChild(close);
      head.appendChild(title);
      head.appendChild(element('span', null, ''));
      ui.box.appendChild(head);
      ui.mask.setAttribute('aria-labelledby', 'wxsim-title');
      ui.box.appendChild(element('p', 'wxsim-merchant', info.merchant_name));
      ui.box.appendChild(element('p', 'wxsim-desc', info.description));
      ui.box.appendChild(element('p', 'wxsim-amount', yuan(info.amount_total)));
      var row = element('div', 'wxsim-row');
      row.appendChild(element('span', null, t.method || '付款方式'));
      row.appendChild(element('span', null, t.balance || '零钱（模拟）'));
      ui.box.appendChild(row);
      var pay = element('button', 'wxsim-btn wxsim-pay', t.pay || '支付');
      pay.id = 'wxsim-pay';
      pay.type = 'button';
      // The password step (hidden until 支付): six boxes, any six digits in the simulator.
      var step = element('div', 'wxsim-password');
      step.hidden = true;
      var label = element('label', 'wxsim-desc', t.password_hint || '');
      label.setAttribute('for', 'wxsim-password');
      var input = element('input', 'wxsim-pin');
      input.id = 'wxsim-password';
      input.type = 'password';
      input.inputMode = 'numeric';
      input.autocomplete = 'off';
      input.maxLength = 6;
      input.pattern = '[0-9]*';
      input.setAttribute('aria-label', t.password || '请输入支付密码');
      step.appendChild(input);
      step.appendChild(label);
      var other = element('details', 'wxsim-other');
      other.id = 'wxsim-other';
      other.appendChild(element('summary', null, t.other || '模拟其他结果'));
      function choice(id, text) {
        var button = element('button', 'wxsim-choice', text);
        button.id = id;
        button.type = 'button';
        other.appendChild(button);
        return button;
      }
      var fail = choice('wxsim-fail', t.NOTENOUGH || '零钱余额不足');
      var bank = choice('wxsim-bank-error', t.PAYERROR || '银行系统异常');
      var paying = choice('wxsim-userpaying', t.USERPAYING || '停在输入密码（支付中）');
      var note = element('p', 'wxsim-desc', '');
      note.id = 'wxsim-note';
      note.setAttribute('role', 'status');
      ui.box.appendChild(pay);
      ui.box.appendChild(step);
      ui.box.appendChild(note);
      ui.box.appendChild(other);
      ui.box.appendChild(element('p', 'wxsim-tag', t.tag || '模拟器 · 非真实微信'));

      var done = false;
      function finish(result) {
        if (done) return;
        done = true;
        ui.mask.remove();
        callback(result);
      }
      close.addEventListener('click', function () { finish({ err_msg: CANCEL }); });
      function setBusy(busy) { pay.disabled = fail.disabled = bank.disabled = paying.disabled = input.disabled = busy; }
      function act(result) {
        if (done) return;
        setBusy(true);
        post('/jsapi/pay', { params: params, result: result }).then(function (answer) {
          if (answer.err_msg === OK) finish({ err_msg: OK });
          else if (answer.payer_typing) {
            // The payer is still typing the password: no callback yet; WeChat Pay's queries say
            // NOTPAY meanwhile (USERPAYING is for payment-code orders only). Then it goes through.
            note.textContent = answer.message || '';
            setBusy(false);
            input.value = '';
            // ...and goes through by itself a moment later, as a payer finishing the password would.
            setTimeout(function () { act('SUCCESS'); }, PASSWORD_DELAY_MS);
          } else finish({ err_msg: FAIL, err_desc: answer.message || '' });
        }, function () { finish({ err_msg: FAIL, err_desc: t.network || '网络异常' }); });
      }
      pay.addEventListener('click', function () {
        title.textContent = t.password || '请输入支付密码';
        pay.hidden = true;
        row.hidden = true;
        step.hidden = false;
        input.focus();
      });
      input.addEventListener('input', function () {
        input.value = input.value.replace(/[^0-9]/g, '').slice(0, 6);
        if (input.value.length === 6) act('SUCCESS');
      });
      fail.addEventListener('click', function () { act('NOTENOUGH'); });
      bank.addEventListener('click', function () { act('PAYERROR'); });
      paying.addEventListener('click', function () { act('USERPAYING'); });
    }, function () {
      callback({ err_msg: FAIL, err_desc: tr('网络异常') });
    });
  }

  window.WeixinJSBridge = {
    _simulated: true,
    invoke: function (name, params, callback) {
      callback = typeof callback === 'function' ? callback : function () {};
      if (name === 'getBrandWCPayRequest') return getBrandWCPayRequest(params || {}, callback);
      callback({ err_msg: name + ':fail' });
    },
    on: function () {},
    call: function () {}
  };
  // Pages wait for this event when the bridge was not there yet, as in the real app.
  document.dispatchEvent(new Event('WeixinJSBridgeReady'));
})();
