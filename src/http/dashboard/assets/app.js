// rollbridge dashboard: refreshes a page's live parts ([data-live] elements) by polling the
// same URL with live=1, which answers {"parts": {"<id>": "<html>"}}. Pages work without it.
(function () {
  "use strict";
  var seconds = parseInt(document.body.getAttribute("data-refresh") || "0", 10);
  if (!seconds || !window.fetch || !document.querySelector("[data-live]")) return;
  var busy = false;
  // The last HTML the server sent per region: compared instead of innerHTML, which the browser
  // re-serialises differently, so an unchanged region is never rebuilt.
  var last = {};
  function liveUrl() {
    var url = new URL(window.location.href);
    url.searchParams.set("live", "1");
    url.hash = "";
    return url.toString();
  }
  function refresh() {
    if (busy || document.hidden) return;
    // Do not swap content the user is interacting with.
    var active = document.activeElement;
    busy = true;
    fetch(liveUrl(), { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) {
        if (r.status === 401) { window.location.reload(); return null; }
        return r.ok ? r.json() : null;
      })
      .then(function (data) {
        if (!data || !data.parts) return;
        Object.keys(data.parts).forEach(function (id) {
          var el = document.getElementById(id);
          if (!el || (active && el.contains(active)) || last[id] === data.parts[id]) return;
          if (last[id] !== undefined || el.innerHTML !== data.parts[id]) el.innerHTML = data.parts[id];
          last[id] = data.parts[id];
        });
        document.body.setAttribute("data-refreshed", String(Date.now()));
      })
      .catch(function () { /* offline for a moment: try again next tick */ })
      .then(function () { busy = false; });
  }
  window.setInterval(refresh, seconds * 1000);
  document.addEventListener("visibilitychange", function () { if (!document.hidden) refresh(); });
})();
