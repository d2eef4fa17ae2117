// The simulated payer chose "still typing the password" (停在输入密码): as in the WeChat app, the
// payment goes through a moment later. Meanwhile WeChat Pay's queries of a Native or H5 order say
// NOTPAY (USERPAYING is for payment-code orders only).
(function () {
  'use strict';
  var note = document.querySelector('[data-payer-typing]');
  var pay = document.getElementById('pay');
  if (!note || !pay) return;
  var seconds = Number(note.getAttribute('data-payer-typing')) || 4;
  setTimeout(function () { pay.click(); }, seconds * 1000);
})();
