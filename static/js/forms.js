// Every form that changes something is sent once: a double click (or a slow network) would
// otherwise post it twice. Buttons are disabled just after the submit (so the clicked one's
// name and value still travel), and re-enabled if the page comes back from the history cache.
// The buy form also carries an idempotency key: the server makes one order per key.
(function () {
  'use strict';

  document.addEventListener('submit', function (event) {
    var form = event.target;
    if (!form || (form.method || '').toLowerCase() !== 'post' || event.defaultPrevented) return;
    if (form.getAttribute('data-sending') === 'yes') { event.preventDefault(); return; }
    form.setAttribute('data-sending', 'yes');
    form.setAttribute('aria-busy', 'true');
    setTimeout(function () {
      form.querySelectorAll('button, input[type=submit]').forEach(function (b) { b.disabled = true; });
    }, 0);
  });

  window.addEventListener('pageshow', function (event) {
    if (!event.persisted) return;
    document.querySelectorAll('form[data-sending]').forEach(function (form) {
      form.removeAttribute('data-sending');
      form.removeAttribute('aria-busy');
      form.querySelectorAll('button, input[type=submit]').forEach(function (b) { b.disabled = false; });
    });
  });

  // The checkout summary after payment: what was paid, not what is to be paid.
  var paid = document.getElementById('paid');
  if (paid) {
    var swap = function () {
      if (paid.hidden) return;
      ['summary-title', 'summary-total-label'].forEach(function (id) {
        var el = document.getElementById(id);
        if (el && el.getAttribute('data-paid')) el.textContent = el.getAttribute('data-paid');
      });
    };
    new MutationObserver(swap).observe(paid, { attributes: true, attributeFilter: ['hidden'] });
    swap();
  }
})();
