// Flow inspector: polls the flow's JSON every second and redraws the record when it grows,
// so a payment made in another tab appears step by step. Open steps stay open.
(function () {
  'use strict';

  var POLL_MS = 1000;
  var BACKOFF_MS = 5000;

  var root = document.getElementById('flow');
  if (!root || !window.fetch) return;
  var jsonUrl = root.getAttribute('data-json-url');
  var fragmentUrl = root.getAttribute('data-fragment-url');
  var body = document.getElementById('flow-body');
  var version = root.getAttribute('data-version');

  function openSteps() {
    var open = {};
    body.querySelectorAll('details[open]').forEach(function (d) { open[d.getAttribute('data-step')] = true; });
    return open;
  }

  function stepIds() {
    var ids = {};
    body.querySelectorAll('#flow-steps > li').forEach(function (li) { ids[li.id] = true; });
    return ids;
  }

  // The reader's own scrolling or clicking wins: no jump for a while after it.
  var touched = 0;
  ['wheel', 'touchstart', 'keydown', 'mousedown'].forEach(function (name) {
    window.addEventListener(name, function () { touched = Date.now(); }, { passive: true });
  });

  // New steps: scroll this page (not the tour around it) to the first one and highlight them.
  function highlight(before) {
    var fresh = [];
    body.querySelectorAll('#flow-steps > li').forEach(function (li) { if (!before[li.id]) fresh.push(li); });
    if (!fresh.length) return;
    fresh.forEach(function (li) {
      li.classList.add('flow-step--new');
      var row = body.querySelectorAll('.seq [data-step="' + li.id.replace(/^step-/, '') + '"]');
      row.forEach(function (a) { a.classList.add('seq__row--new'); });
    });
    if (Date.now() - touched < 8000) return fadeLater(fresh);
    var top = fresh[0].getBoundingClientRect().top + window.pageYOffset - 60;
    var reduce = window.matchMedia && window.matchMedia('(prefers-reduced-motion: reduce)').matches;
    window.scrollTo({ top: Math.max(top, 0), behavior: reduce ? 'auto' : 'smooth' });
    fadeLater(fresh);
  }

  function fadeLater(fresh) {
    setTimeout(function () {
      fresh.forEach(function (li) { li.classList.remove('flow-step--new'); });
      body.querySelectorAll('.seq__row--new').forEach(function (a) { a.classList.remove('seq__row--new'); });
    }, 4000);
  }

  function redraw() {
    return fetch(fragmentUrl, { credentials: 'same-origin', cache: 'no-store' })
      .then(function (r) { if (!r.ok) throw new Error('HTTP ' + r.status); return r.text(); })
      .then(function (html) {
        var open = openSteps();
        var before = stepIds();
        body.innerHTML = html;
        highlight(before);
        body.querySelectorAll('details').forEach(function (d) {
          if (open[d.getAttribute('data-step')]) d.open = true;
        });
        var status = body.querySelector('[data-version]');
        if (status) version = status.getAttribute('data-version');
        root.setAttribute('data-version', version);
      });
  }

  function poll() {
    fetch(jsonUrl, { credentials: 'same-origin', cache: 'no-store', headers: { Accept: 'application/json' } })
      .then(function (r) { if (!r.ok) throw new Error('HTTP ' + r.status); return r.json(); })
      .then(function (data) { return data.version !== version ? redraw() : null; })
      .then(function () { setTimeout(poll, POLL_MS); })
      .catch(function () { setTimeout(poll, BACKOFF_MS); });
  }

  // A click on an arrow of the diagram opens its step in the timeline.
  body.addEventListener('click', function (event) {
    var link = event.target.closest && event.target.closest('a[data-step]');
    if (!link) return;
    var step = document.querySelector('details[data-step="' + link.getAttribute('data-step') + '"]');
    if (step) step.open = true;
  });

  setTimeout(poll, POLL_MS);
})();
