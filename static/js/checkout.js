// Checkout page: counts the QR code down and polls the order until WeChat Pay settles it.
// The server stays the source of truth: this only reads the status endpoint and swaps sections.
(function () {
  'use strict';

  var POLL_MS = 1000;      // normal polling interval: a paid order shows within ~1 s (the issue asks for 2 s)
  var BACKOFF_MS = 5000;   // after a failed request, and once the QR code has expired
  var LOW_SECONDS = 60;    // the countdown turns red below this
  var MAX_AUTO_RENEWALS = 3;  // then the shopper is probably away: wait for a click

  var root = document.querySelector('[data-status-url]');
  if (!root) return;

  var statusUrl = root.getAttribute('data-status-url');
  var renewUrl = root.getAttribute('data-renew-url');
  var renewals = 0;
  var qrBlock = document.getElementById('qr-block');
  var countdown = document.getElementById('countdown');
  var sections = {
    paid: document.getElementById('paid'),
    expired: document.getElementById('expired'),
    closed: document.getElementById('closed')
  };

  var expiresAt = countdown ? Date.parse(countdown.getAttribute('data-expires-at') || '') : NaN;
  var tickTimer = null;
  var pollTimer = null;
  var expired = false;
  var finished = false;

  // Show one result section (or none) and hide the QR block when a result is shown.
  function show(name) {
    Object.keys(sections).forEach(function (key) {
      if (sections[key]) sections[key].hidden = key !== name;
    });
    if (qrBlock) qrBlock.hidden = Boolean(name);
  }

  function pad(n) {
    return n < 10 ? '0' + n : String(n);
  }

  function stopCountdown() {
    if (tickTimer !== null) {
      clearInterval(tickTimer);
      tickTimer = null;
    }
  }

  // Remaining time comes from the server's expiry and the browser clock, each second afresh,
  // so a sleeping tab or a throttled timer never drifts.
  function tick() {
    var left = Math.max(0, Math.ceil((expiresAt - Date.now()) / 1000));
    countdown.textContent = pad(Math.floor(left / 60)) + ':' + pad(left % 60);
    countdown.classList.toggle('countdown--low', left <= LOW_SECONDS);
    if (left === 0) {
      stopCountdown();
      expired = true;
      if (!finished) {
        show('expired');
        renew();
      }
    }
  }

  // An expired QR code renews itself: the server closes the old attempt at WeChat Pay first
  // (a payer who was faster makes it answer ORDERPAID), then issues a new code_url.
  function renew() {
    if (!renewUrl || !window.fetch || renewals >= MAX_AUTO_RENEWALS) return;
    renewals += 1;
    var note = document.getElementById('renewing');
    if (note) note.hidden = false;
    fetch(renewUrl, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify({ method: 'native' })
    })
      .then(function (response) {
        return response.json().then(function (data) { return { ok: response.ok, data: data }; });
      })
      .then(function (answer) {
        if (note) note.hidden = true;
        if (answer.ok) {
          useAttempt(answer.data);
        } else {
          // ORDERPAID or closed: the status endpoint says which, at once.
          if (pollTimer !== null) clearTimeout(pollTimer);
          poll();
        }
      })
      .catch(function () {
        if (note) note.hidden = true;  // the 刷新二维码 button stays as the way out
      });
  }

  function useAttempt(data) {
    var qr = document.getElementById('qr');
    var number = document.getElementById('out-trade-no');
    var scanLink = document.getElementById('open-scan');
    if (qr) qr.src = data.qr_image_url;
    if (number) number.textContent = data.out_trade_no;
    if (scanLink) scanLink.href = data.code_url;
    expiresAt = Date.parse(data.expires_at);
    countdown.setAttribute('data-expires-at', data.expires_at);
    expired = false;
    show(null);
    tick();
    if (!expired && tickTimer === null) tickTimer = setInterval(tick, 1000);
  }

  // A final state: stop everything and show its section.
  function finish(name) {
    finished = true;
    stopCountdown();
    if (pollTimer !== null) clearTimeout(pollTimer);
    show(name);
  }

  function apply(data) {
    if (!data || typeof data.status !== 'string') return;
    if (data.status === 'paid') {
      finish('paid');
      var heading = sections.paid && sections.paid.querySelector('h2');
      if (heading) document.title = heading.textContent.trim() + ' · ' + document.title;
    } else if (data.status === 'closed') {
      finish('closed');
    } else if (data.status === 'refunded') {
      // Nothing to pay any more: the order page tells the whole story.
      finish(null);
      var link = sections.paid && sections.paid.querySelector('a');
      if (link) window.location.href = link.href;
    }
  }

  function schedule(ms) {
    if (!finished) pollTimer = setTimeout(poll, ms);
  }

  function poll() {
    pollTimer = null;
    fetch(statusUrl, {
      credentials: 'same-origin',
      cache: 'no-store',
      headers: { Accept: 'application/json' }
    })
      .then(function (response) {
        if (!response.ok) throw new Error('HTTP ' + response.status);
        return response.json();
      })
      .then(function (data) {
        apply(data);
        // A payment made just before expiry can still arrive: keep asking, but slower.
        schedule(expired ? BACKOFF_MS : POLL_MS);
      })
      .catch(function () {
        schedule(BACKOFF_MS);
      });
  }

  if (countdown && !isNaN(expiresAt)) {
    tick();
    if (!expired) tickTimer = setInterval(tick, 1000);
  }
  if (statusUrl && window.fetch) schedule(POLL_MS);
})();
