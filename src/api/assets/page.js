// Firebreak status page: progressive enhancement of the server-rendered view.
// Polls /ui/zones (the same server-side rendering as the first view) and runs operator
// actions with the API token, which lives in sessionStorage (this tab only).
(function () {
  "use strict";
  var KEY = "firebreak-api-token";
  var root = document.documentElement;
  root.classList.add("js");

  var poll = Number(document.body.getAttribute("data-poll-ms")) || 2000;
  var zones = document.getElementById("zones");
  var conn = document.getElementById("conn");
  var result = document.getElementById("action-result");
  var tokenInput = document.getElementById("token");
  var tokenState = document.getElementById("token-state");
  var lastOk = Date.now(); // the server-rendered view is fresh when the page loads
  var lastError = "";
  var busy = false;

  function clock(d) {
    return d.toISOString().substring(11, 19) + " UTC";
  }

  function token() {
    try { return sessionStorage.getItem(KEY) || ""; } catch (e) { return ""; }
  }

  function showTokenState() {
    tokenState.textContent = token() ? "token set for this tab" : "no token";
  }

  function renderConn() {
    var age = Math.round((Date.now() - lastOk) / 1000);
    if (lastError || age * 1000 > 3 * poll) {
      conn.className = "conn conn-bad";
      conn.textContent = "\u26A0 STALE: " + (lastError || "no answer from the agent") +
        ". Data below is from " + clock(new Date(lastOk)) + " (" + age + " s ago).";
      zones.classList.add("stale");
      zones.setAttribute("data-stale", "true");
    } else {
      conn.className = "conn conn-ok";
      conn.textContent = "\u2713 LIVE: updated " + clock(new Date(lastOk));
      zones.classList.remove("stale");
      zones.setAttribute("data-stale", "false");
    }
  }

  function refresh() {
    var ctl = typeof AbortController === "function" ? new AbortController() : null;
    var timer = setTimeout(function () { if (ctl) { ctl.abort(); } }, Math.max(poll * 2, 4000));
    fetch("/ui/zones", { cache: "no-store", signal: ctl ? ctl.signal : undefined })
      .then(function (r) {
        if (!r.ok) { throw new Error("the agent answered HTTP " + r.status); }
        return r.text();
      })
      .then(function (html) {
        zones.innerHTML = html; // rendered and escaped by the agent
        var summary = document.getElementById("summary");
        if (summary) {
          document.title = document.title.replace(/^[^·]*·/,
            summary.getAttribute("data-level").toUpperCase() + " ·");
        }
        lastOk = Date.now();
        lastError = "";
      })
      .catch(function (e) {
        lastError = (e && e.name === "AbortError") ? "the agent did not answer in time"
          : (e && e.message && e.message.indexOf("HTTP") >= 0) ? e.message
          : "AGENT UNREACHABLE";
      })
      .then(function () {
        clearTimeout(timer);
        renderConn();
        setTimeout(refresh, poll);
      });
  }

  function el(tag, text, cls) {
    var n = document.createElement(tag);
    if (text !== undefined) { n.textContent = text; }
    if (cls) { n.className = cls; }
    return n;
  }

  function show(ok, title, extra) {
    result.hidden = false;
    result.className = "action-result " + (ok ? "ok" : "bad");
    result.setAttribute("data-outcome", ok ? "ok" : "refused");
    result.textContent = "";
    result.appendChild(el("p", title)).style.fontWeight = "800";
    if (extra) { result.appendChild(extra); }
    result.appendChild(el("p", "at " + clock(new Date())));
  }

  function drillTable(steps) {
    var t = el("table"), head = el("tr");
    t.className = "drill-steps";
    ["Step", "Type", "Result", "Detail"].forEach(function (h) { head.appendChild(el("th", h)); });
    t.appendChild(head);
    steps.forEach(function (s) {
      var tr = el("tr");
      tr.className = s.ok ? "st-ok" : "st-bad";
      tr.appendChild(el("td", s.step));
      tr.appendChild(el("td", s.type));
      tr.appendChild(el("td", s.ok ? "\u2713 OK" : "\u2716 FAILED"));
      tr.appendChild(el("td", s.detail || ""));
      t.appendChild(tr);
    });
    return t;
  }

  var words = {
    drill: "Drill",
    failover: "Manual failover",
    reset: "Reset"
  };
  var confirmText = {
    failover: "Start the failover runbook for zone %s now? This moves services away from it.",
    reset: "Reset zone %s? This closes its incident and re-arms detection."
  };

  function act(action, zone) {
    var name = words[action] + " " + zone;
    var t = token();
    if (!t) {
      show(false, "REFUSED: " + name + " needs the API token. Enter it above; nothing was sent.");
      return;
    }
    if (confirmText[action] && !window.confirm(confirmText[action].replace("%s", zone))) {
      show(false, "Cancelled: " + name + " was not sent.");
      return;
    }
    if (busy) { return; }
    busy = true;
    show(true, name + ": running\u2026");
    var opts = { method: "POST", headers: { "Authorization": "Bearer " + t } };
    if (action === "reset") {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify({ by: "status page" });
    }
    fetch("/api/v1/zones/" + encodeURIComponent(zone) + "/" + action, opts)
      .then(function (r) {
        return r.text().then(function (body) {
          var data = {};
          try { data = JSON.parse(body); } catch (e) { data = { error: body }; }
          return { status: r.status, data: data };
        });
      })
      .then(function (res) {
        var d = res.data;
        if (res.status === 401 || res.status === 403) {
          show(false, "REFUSED (HTTP " + res.status + "): " + name + ": " + (d.error || "not authorised"));
        } else if (res.status >= 400) {
          show(false, "FAILED (HTTP " + res.status + "): " + name + ": " + (d.error || "error"));
        } else if (action === "drill") {
          show(d.pass === true, name + ": " + (d.pass ? "PASS" : "FAIL") +
            " (" + (d.steps || []).length + " step(s))", drillTable(d.steps || []));
        } else if (action === "failover") {
          show(true, name + ": started, incident " + d.incident);
        } else {
          show(true, name + ": done, incident " + d.incident + " closed");
        }
      })
      .catch(function () {
        show(false, "FAILED: " + name + ": the agent is unreachable; the action may not have run.");
      })
      .then(function () { busy = false; });
  }

  document.getElementById("token-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var v = tokenInput.value.trim();
    try {
      if (v) { sessionStorage.setItem(KEY, v); } else { sessionStorage.removeItem(KEY); }
    } catch (e) { /* storage disabled: no token kept */ }
    tokenInput.value = "";
    showTokenState();
  });
  document.getElementById("forget-token").addEventListener("click", function () {
    try { sessionStorage.removeItem(KEY); } catch (e) { /* nothing kept */ }
    showTokenState();
  });
  zones.addEventListener("click", function (ev) {
    var b = ev.target.closest ? ev.target.closest("button[data-action]") : null;
    if (b) { act(b.getAttribute("data-action"), b.getAttribute("data-zone")); }
  });

  showTokenState();
  renderConn();
  setInterval(renderConn, 1000);
  setTimeout(refresh, poll);
})();
