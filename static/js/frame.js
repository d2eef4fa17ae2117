// Inside the guided tour's split view the page is one pane of a page that already has the
// header and the demo banner: mark it, so shop.css hides them here (one header, not two).
(function () {
  'use strict';
  try {
    if (window.self !== window.top) document.documentElement.className += ' in-frame';
  } catch (e) {
    document.documentElement.className += ' in-frame'; // a cross-origin parent: framed all the same
  }
})();
