// The simulator's stand-in for the WeChat app's WeixinJSBridge (simulator mode only).
// getBrandWCPayRequest asks the simulator to verify paySign with the merchant's public key, shows a
// WeChat-like pay sheet, and calls back with WeChat's exact strings: get_brand_wcpay_request:ok|cancel|fail.
(function () {
  'use strict';

  if (window.WeixinJSBridge) return; // the real bridge is here: never shadow it

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
    '.wxsim-desc{margin:4px 16px 0;text-align:center;font-size:13px;color:#7f7f7f}',
    '.wxsim-amount{margin:10px 0 18px;text-align:center;font-size:36px;font-weight:600}',
    '.wxsim-row{margin:0 16px;padding:12px 0;border-top:1px solid #e5e5e5;display:flex;justify-content:space-between;',
    'font-size:14px;color:#7f7f7f}',
    '.wxsim-btn{display:block;width:calc(100% - 32px);margin:12px 16px 0;padding:12px;border:0;border-radius:8px;',
    'font-size:17px;cursor:pointer}',
    '.wxsim-pay{background:#07c160;color:#fff}.wxsim-fail{background:#fff;color:#fa5151;font-size:14px}',
    '.wxsim-msg{margin:16px;text-align:center;font-size:15px}.wxsim-tag{text-align:center;font-size:11px;color:#aaa;',
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

  function sheet() {
    if (!document.getElementById('wxsim-style')) {
      var style = element('style');
      style.id = 'wxsim-style';
      style.textContent = CSS;
      document.head.appendChild(style);
    }
    var mask = element('div', 'wxsim-mask');
    mask.id = 'wxsim-sheet';
    mask.setAttribute('role', 'dialog');
    mask.setAttribute('aria-label', '微信支付');
    var box = element('div', 'wxsim-sheet');
    mask.appendChild(box);
    document.body.appendChild(mask);
    return { mask: mask, box: box };
  }

  // A refusal the app shows before any sheet (bad paySign, stale prepay_id...): then :fail.
  function refuse(message, callback) {
    var ui = sheet();
    ui.box.appendChild(element('p', 'wxsim-msg', message));
    var ok = element('button', 'wxsim-btn wxsim-pay', '确定');
    ok.id = 'wxsim-refusal-ok';
    ok.type = 'button';
    ok.addEventListener('click', function () {
      ui.mask.remove();
      callback({ err_msg: FAIL, err_desc: message });
    });
    ui.box.appendChild(ok);
    ui.box.appendChild(element('p', 'wxsim-tag', '模拟器 · 非真实微信'));
  }

  function getBrandWCPayRequest(params, callback) {
    post('/jsapi/verify', { params: params }).then(function (info) {
      if (info.err_msg) return refuse(info.message || '支付失败', callback);
      var ui = sheet();
      var head = element('div', 'wxsim-head');
      var close = element('button', 'wxsim-close', '×');
      close.id = 'wxsim-cancel';
      close.type = 'button';
      close.setAttribute('aria-label', '取消支付');
      head.appendChild(close);
      head.appendChild(element('span', null, '请输入支付密码'));
      head.appendChild(element('span', null, ''));
      ui.box.appendChild(head);
      ui.box.appendChild(element('p', 'wxsim-merchant', info.merchant_name));
      ui.box.appendChild(element('p', 'wxsim-desc', info.description));
      ui.box.appendChild(element('p', 'wxsim-amount', yuan(info.amount_total)));
      var row = element('div', 'wxsim-row');
      row.appendChild(element('span', null, '付款方式'));
      row.appendChild(element('span', null, '零钱（模拟）'));
      ui.box.appendChild(row);
      var pay = element('button', 'wxsim-btn wxsim-pay', '支付');
      pay.id = 'wxsim-pay';
      pay.type = 'button';
      var fail = element('button', 'wxsim-btn wxsim-fail', '模拟支付失败（余额不足）');
      fail.id = 'wxsim-fail';
      fail.type = 'button';
      var bank = element('button', 'wxsim-btn wxsim-fail', '模拟支付失败（银行系统错误）');
      bank.id = 'wxsim-bank-error';
      bank.type = 'button';
      var paying = element('button', 'wxsim-btn wxsim-fail', '模拟：正在输入密码（稍后完成支付）');
      paying.id = 'wxsim-userpaying';
      paying.type = 'button';
      var note = element('p', 'wxsim-desc', '');
      note.id = 'wxsim-note';
      ui.box.appendChild(pay);
      ui.box.appendChild(fail);
      ui.box.appendChild(bank);
      ui.box.appendChild(paying);
      ui.box.appendChild(note);
      ui.box.appendChild(element('p', 'wxsim-tag', '模拟器 · 非真实微信'));

      var done = false;
      function finish(result) {
        if (done) return;
        done = true;
        ui.mask.remove();
        callback(result);
      }
      close.addEventListener('click', function () { finish({ err_msg: CANCEL }); });
      function act(result) {
        if (done) return;
        pay.disabled = fail.disabled = bank.disabled = paying.disabled = true;
        post('/jsapi/pay', { params: params, result: result }).then(function (answer) {
          if (answer.err_msg === OK) finish({ err_msg: OK });
          else if (answer.payer_typing) {
            // The payer is still typing the password: no callback yet; WeChat Pay's queries say
            // NOTPAY meanwhile (USERPAYING is for payment-code orders only). Then it goes through.
            note.textContent = answer.message || '';
            pay.disabled = false;
            setTimeout(function () { act('SUCCESS'); }, PASSWORD_DELAY_MS);
          } else finish({ err_msg: FAIL, err_desc: answer.message || '' });
        }, function () { finish({ err_msg: FAIL, err_desc: '网络异常' }); });
      }
      pay.addEventListener('click', function () { act('SUCCESS'); });
      fail.addEventListener('click', function () { act('NOTENOUGH'); });
      bank.addEventListener('click', function () { act('PAYERROR'); });
      paying.addEventListener('click', function () { act('USERPAYING'); });
    }, function () {
      callback({ err_msg: FAIL, err_desc: '网络异常' });
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
