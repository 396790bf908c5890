// driftd's web page: keep <main> current. The page works without this script (server-rendered
// tables, a GET form, a <noscript> refresh); with it, the server's event stream (/events) says when
// a report or the audit trail changed and the script re-fetches <main> for the same query.
(function () {
  "use strict";
  var live = document.getElementById("live");
  var busy = false, again = false;

  function partialUrl() {
    var u = new URL(window.location.href);
    u.searchParams.set("partial", "1");
    u.hash = "";
    return u.toString();
  }

  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    fetch(partialUrl(), { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { if (!r.ok) { throw new Error("HTTP " + r.status); } return r.text(); })
      .then(function (html) {
        var main = document.getElementById("main");
        // Keep what the user is typing in the filter form.
        var active = document.activeElement && main.contains(document.activeElement);
        if (!active) { main.innerHTML = html; }
      })
      .catch(function () { /* next event or poll tries again */ })
      .finally(function () { busy = false; if (again) { again = false; refresh(); } });
  }

  function poll() {
    if (live) { live.textContent = "polling"; live.className = "on"; }
    window.setInterval(refresh, 5000);
  }

  if (!window.EventSource) { poll(); return; }
  var failures = 0;
  var es = new EventSource("/events");
  es.addEventListener("update", function () { failures = 0; refresh(); });
  es.onopen = function () { if (live) { live.textContent = "live"; live.className = "on"; } };
  es.onerror = function () {
    failures += 1;
    if (live) { live.textContent = "reconnecting"; live.className = ""; }
    if (failures > 5) { es.close(); poll(); }
  };
})();
