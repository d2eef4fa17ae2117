// Sends a form marked data-autosubmit once the page has loaded: the checkout's start form is a
// POST (it asks WeChat Pay for a prepay), so a plain link or a prefetch can never start a payment.
(function () {
  'use strict';
  var form = document.querySelector('form[data-autosubmit]');
  if (!form || form.getAttribute('data-submitted')) return;
  form.setAttribute('data-submitted', '1');
  var button = form.querySelector('button[type="submit"]');
  if (button) button.disabled = true;
  form.submit();
})();
