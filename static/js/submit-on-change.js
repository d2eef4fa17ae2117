// Submits a form when one of its <select data-submit-on-change> changes (the console's merchant
// filter). A file, not an onchange="" attribute: the Content-Security-Policy runs no inline script.
(function () {
  'use strict';
  document.querySelectorAll('select[data-submit-on-change]').forEach(function (select) {
    select.addEventListener('change', function () { select.form.submit(); });
  });
})();
