// A page that shows something still settling (a refund 退款处理中) reloads itself until it
// settles: the server leaves #auto-refresh out of the page once nothing is pending.
(function () {
  'use strict';
  var note = document.getElementById('auto-refresh');
  if (!note) return;
  var seconds = parseInt(note.getAttribute('data-seconds'), 10) || 5;
  setTimeout(function () { window.location.reload(); }, seconds * 1000);
})();
