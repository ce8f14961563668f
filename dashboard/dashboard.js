// prepcast operations dashboard: replaces the live part of the page with
// the server's rendering, sent as server-sent events. Without this script
// the page reloads itself every 15 s (see <noscript>).
(function () {
  "use strict";
  var live = document.getElementById("live");
  var conn = document.getElementById("conn");
  if (!live || !window.EventSource) {
    return;
  }
  var es = new EventSource("/events" + window.location.search);
  function state(on) {
    conn.textContent = on ? conn.getAttribute("data-live") : conn.getAttribute("data-offline");
    conn.className = on ? "on" : "off";
  }
  es.addEventListener("update", function (e) {
    live.innerHTML = e.data; // HTML rendered and escaped by the server
    state(true);
  });
  es.addEventListener("open", function () { state(true); });
  es.addEventListener("error", function () { state(false); });
  // The publisher answered but could not read its status: keep the last
  // rows and say that they are not current.
  es.addEventListener("failure", function () { state(false); });
})();
