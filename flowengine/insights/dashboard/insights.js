/* flowengine insights (docs/insights.md): the numbers of a period against the one before, a
 * daily chart, flows by drop-off, hand-off reasons, languages, agents, tickets, and one flow's
 * graph painted with its funnel. Admins only; the login is the agent console's (the same
 * account, the same token in sessionStorage).
 *
 * Every piece of text from the API (flow, step, agent, option names) is set with textContent or
 * as an SVG text node, never as HTML; the page's Content-Security-Policy allows only this script
 * and this server. The charts are SVG drawn here: no library, no build step. */
(function () {
  "use strict";
  var $ = function (id) { return document.getElementById(id); };
  var SVG = "http://www.w3.org/2000/svg";
  var TOKEN_KEY = "fe-console-token";  // the console's: one login for both pages
  var token = sessionStorage.getItem(TOKEN_KEY);
  var meta = null;        // /insights/api/meta: the admin, the server's today, flows, locales
  var report = null;      // the last report shown
  var period = null;      // {since, until} as YYYY-MM-DD
  var loading = 0;        // a counter: only the latest request's answer is drawn
  var funnelLoading = 0;
  var funnelFlow = null;  // the flow whose funnel is shown
  var chartDays = [], chartPick = -1, chartLayout = null;

  var numberFormat = new Intl.NumberFormat(undefined);
  var pctFormat = new Intl.NumberFormat(undefined, { style: "percent", maximumFractionDigits: 1 });
  var dayShort = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric", timeZone: "UTC" });
  var dayLong = new Intl.DateTimeFormat(undefined, { weekday: "short", year: "numeric", month: "short", day: "numeric", timeZone: "UTC" });

  // -- small helpers ------------------------------------------------------------------------
  function el(tag, text, cls) {
    var n = document.createElement(tag);
    if (text != null) n.textContent = String(text);
    if (cls) n.className = cls;
    return n;
  }
  function svg(tag, attrs, text) {
    var n = document.createElementNS(SVG, tag);
    Object.keys(attrs || {}).forEach(function (k) { n.setAttribute(k, String(attrs[k])); });
    if (text != null) n.textContent = String(text);
    return n;
  }
  function clear(n) { while (n.firstChild) n.removeChild(n.firstChild); }
  function num(n) { return n == null ? "—" : numberFormat.format(n); }
  function pct(r) { return r == null ? "—" : pctFormat.format(r); }
  function secs(s) {
    if (s == null) return "—";
    s = Math.round(s);
    if (s < 90) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min " + String(s % 60).padStart(2, "0") + " s";
    return Math.floor(s / 3600) + " h " + String(Math.floor(s % 3600 / 60)).padStart(2, "0") + " min";
  }
  function mean(x) { return x == null ? "—" : (Math.round(x * 10) / 10).toFixed(1) + " / 5"; }
  function toDate(day) { var p = day.split("-"); return new Date(Date.UTC(+p[0], +p[1] - 1, +p[2])); }
  function toDay(d) { return d.toISOString().slice(0, 10); }
  function addDays(day, n) { var d = toDate(day); d.setUTCDate(d.getUTCDate() + n); return toDay(d); }
  function daysBetween(a, b) { return Math.round((toDate(b) - toDate(a)) / 86400000) + 1; }
  function truncate(s, n) { s = String(s); return s.length > n ? s.slice(0, n - 1) + "…" : s; }

  // A table from rows: `cols` are [heading, function(row) -> text or Node, class].
  function table(node, cols, rows, empty) {
    clear(node);
    if (!rows.length) {
      var tr0 = el("tr"), td0 = el("td", empty, "none");
      td0.colSpan = cols.length;
      tr0.appendChild(td0);
      node.appendChild(tr0);
      return;
    }
    var head = el("thead"), hr = el("tr");
    cols.forEach(function (c) { var th = el("th", c[0], c[2]); th.scope = "col"; hr.appendChild(th); });
    head.appendChild(hr);
    node.appendChild(head);
    var body = el("tbody");
    rows.forEach(function (row) {
      var tr = el("tr");
      cols.forEach(function (c, i) {
        var v = c[1](row), td = el(i === 0 ? "th" : "td", null, c[2]);
        if (i === 0) td.scope = "row";
        if (v instanceof Node) td.appendChild(v); else td.textContent = v;
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
    node.appendChild(body);
  }

  // -- talking to the server -------------------------------------------------------------
  function api(path) {
    return fetch(path, { headers: { Authorization: "Bearer " + token } }).then(function (r) {
      if (r.status === 401) { toLogin("Your login is no longer valid; log in again."); throw new Stop(); }
      if (r.status === 403) { refused(); throw new Stop(); }
      if (!r.ok) {
        return r.json().catch(function () { return {}; }).then(function (b) {
          throw new Error(b.error || "the server answered " + r.status);
        });
      }
      return r;
    });
  }
  function Stop() { this.message = "stopped"; }
  function apiJson(path) { return api(path).then(function (r) { return r.json(); }); }
  function showError(e) {
    if (e instanceof Stop) return;
    $("error").textContent = e && e.message && e.message !== "Failed to fetch" ? e.message : "The server cannot be reached; try again.";
    $("error").hidden = false;
  }
  function query(extra) {
    var p = new URLSearchParams({ since: period.since, until: period.until });
    Object.keys(extra || {}).forEach(function (k) { if (extra[k]) p.set(k, extra[k]); });
    return p.toString();
  }

  // -- log in / out (the console's login) ------------------------------------------------
  function view(name) {
    ["login-view", "refused-view", "app-view"].forEach(function (id) { $(id).hidden = id !== name; });
  }
  $("login-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    $("login-error").textContent = "";
    fetch("/agent/api/login", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ username: $("username").value, password: $("password").value })
    }).then(function (r) { return r.json().then(function (b) { return { ok: r.ok, body: b }; }); })
      .then(function (res) {
        if (!res.ok) { $("login-error").textContent = res.body.error || "could not log in"; return; }
        token = res.body.token;
        sessionStorage.setItem(TOKEN_KEY, token);
        $("password").value = "";
        start();
      })
      .catch(function () { $("login-error").textContent = "the server cannot be reached"; });
  });
  function logout() {
    if (token) {
      fetch("/agent/api/logout", { method: "POST", headers: { Authorization: "Bearer " + token } })
        .catch(function () { /* the token is forgotten here either way */ });
    }
    toLogin("You are logged out.");
  }
  $("logout").addEventListener("click", logout);
  $("refused-logout").addEventListener("click", logout);

  // Whoever may no longer read them sees no numbers, not even hidden ones.
  function forget() {
    loading++; funnelLoading++;
    report = null; chartDays = []; funnelFlow = null;
    ["headline", "chart", "daily", "flows", "reasons", "locales", "agents", "tickets", "graph", "steps", "typed", "kept"]
      .forEach(function (id) { clear($(id)); });
    ["chart-tip", "funnel-summary", "period-text", "me", "queue-line", "typed-line"].forEach(function (id) { $(id).textContent = ""; });
  }

  function toLogin(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    token = null;
    meta = null;
    forget();
    view("login-view");
    $("login-error").textContent = message || "";
    $("username").focus();
  }
  function refused() {
    forget();
    view("refused-view");
  }

  function start() {
    $("error").hidden = true;
    apiJson("/insights/api/meta").then(function (m) {
      meta = m;
      $("me").textContent = m.agent.name + " (" + m.agent.username + ")";
      fillSelect($("filter-flow"), m.flows, "All flows");
      fillSelect($("filter-locale"), m.locales, "All");
      fillSelect($("funnel-flow"), m.flows, null);
      var oldest = addDays(m.today, -(m.retention_days - 1));
      ["since", "until"].forEach(function (id) { $(id).min = oldest; $(id).max = m.today; });
      view("app-view");
      preset();
    }).catch(function (e) {
      if (e instanceof Stop) return;
      view("app-view");
      showError(e);
    });
  }
  function fillSelect(select, values, all) {
    var keep = select.value;
    clear(select);
    if (all != null) { var o = el("option", all); o.value = ""; select.appendChild(o); }
    values.forEach(function (v) { var o = el("option", v); o.value = v; select.appendChild(o); });
    if (values.indexOf(keep) >= 0 || keep === "") select.value = keep;
  }

  // -- the period ------------------------------------------------------------------------
  function chosenPreset() { return document.querySelector("input[name=preset]:checked").value; }
  function preset() {
    var p = chosenPreset();
    $("custom").hidden = p !== "custom";
    if (p === "custom") {
      if (!$("since").value) { $("since").value = period ? period.since : addDays(meta.today, -29); }
      if (!$("until").value) { $("until").value = period ? period.until : meta.today; }
      return;  // shown when the admin presses Show
    }
    period = { since: addDays(meta.today, -(Number(p) - 1)), until: meta.today };
    load();
  }
  Array.prototype.forEach.call(document.querySelectorAll("input[name=preset]"), function (r) {
    r.addEventListener("change", preset);
  });
  $("period-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var since = $("since").value, until = $("until").value;
    if (!since || !until) { showError(new Error("Choose both days of the period.")); return; }
    if (since > until) { showError(new Error("The first day is after the last day.")); return; }
    period = { since: since, until: until };
    load();
  });
  $("filter-flow").addEventListener("change", function () { load(); });
  $("filter-locale").addEventListener("change", function () { load(); });

  function load() {
    var mine = ++loading;
    $("error").hidden = true;
    var days = daysBetween(period.since, period.until);
    var shown = dayLong.format(toDate(period.since)) + " – " + dayLong.format(toDate(period.until)) +
      " (" + days + (days === 1 ? " day" : " days") + ", UTC)";
    var filters = { flow: $("filter-flow").value, locale: $("filter-locale").value };
    document.body.setAttribute("aria-busy", "true");
    apiJson("/insights/api/report?" + query(filters)).then(function (r) {
      if (mine !== loading) return;
      report = r;
      // Named only with its numbers: after a failed request, it still says what is shown.
      $("period-text").textContent = shown + ", compared with " + dayLong.format(toDate(r.previous.since)) +
        " – " + dayLong.format(toDate(r.previous.until));
      drawHeadline(r);
      drawChart(r.daily);
      drawDaily(r.daily);
      drawFlows(r.flows);
      drawReasons(r.handoff_reasons);
      drawLocales(r.locales);
      drawAgents(r);
      drawTickets(r.tickets);
      drawTyped(r.typed);
      // The funnel: the filtered flow, else the one the admin chose, else the worst one.
      showFunnel($("filter-flow").value || funnelFlow || (r.flows.length ? r.flows[0].flow : meta.flows[0]), "");
    }).catch(function (e) { if (mine === loading) showError(e); })
      .then(function () { if (mine === loading) document.body.removeAttribute("aria-busy"); });
  }

  // -- headline --------------------------------------------------------------------------
  // [key, label, format, kind of change, which way is better (1 up, -1 down, 0 neither)]
  var HEADLINE = [
    ["conversations", "Conversations", num, "relative", 0],
    ["automation_rate", "Automation rate", pct, "points", 1],
    ["automated", "Resolved by the flows", num, "relative", 1],
    ["handed_over", "Handed to a person", num, "relative", 0],
    ["abandoned", "Abandoned", num, "relative", -1],
    ["csat_flow", "“Did this solve it?” yes", pct, "points", 1, "csat_flow_n"],
    ["csat_agent", "Agent rating", mean, "relative", 1, "csat_agent_n"],
    ["queue_wait_p50", "Wait in queue (median)", secs, "relative", -1],
    ["queue_wait_p90", "Wait in queue (p90)", secs, "relative", -1],
    ["first_reply_p50", "First agent reply (median)", secs, "relative", -1],
    ["handle_p50", "Handle time (median)", secs, "relative", 0]
  ];

  // The change against the previous period: an arrow and a percentage (percentage points for
  // rates); "—" when there is nothing to compare with.
  function change(now, before, kind) {
    if (now == null || before == null) return null;
    var delta;
    if (kind === "points") {
      delta = (now - before) * 100;
      return { dir: Math.sign(Math.round(delta * 10)), text: Math.abs(delta).toFixed(1).replace(/\.0$/, "") + " pts" };
    }
    if (before === 0) return null;
    delta = (now - before) / before * 100;
    return { dir: Math.sign(Math.round(delta * 10)), text: Math.abs(delta).toFixed(1).replace(/\.0$/, "") + "%" };
  }

  function drawHeadline(r) {
    var list = $("headline");
    clear(list);
    HEADLINE.forEach(function (h) {
      var now = r.headline[h[0]], before = r.headline_previous[h[0]];
      var li = el("li", null, "stat");
      li.dataset.metric = h[0];
      li.appendChild(el("span", h[1], "label"));
      li.appendChild(el("span", h[2](now), "value"));
      if (h[5]) li.appendChild(el("span", "from " + num(r.headline[h[5]]) + (r.headline[h[5]] === 1 ? " answer" : " answers"), "n"));
      var c = change(now, before, h[3]);
      var delta = el("span", null, "delta");
      if (c === null) {
        delta.textContent = "—";
        delta.title = "nothing to compare with in the previous period";
        delta.classList.add("flat");
      } else {
        var arrow = c.dir > 0 ? "▲ " : c.dir < 0 ? "▼ " : "= ";
        delta.textContent = arrow + c.text;
        var good = c.dir * h[4];
        delta.classList.add(good > 0 ? "good" : good < 0 ? "bad" : "flat");
        delta.title = "previous period: " + h[2](before);
      }
      li.appendChild(delta);
      list.appendChild(li);
    });
  }

  // -- the daily chart: conversations (bars, left axis) and automation rate (line, right) ---
  // The top of the count axis: four whole-number steps of 1, 2 or 5 times a power of ten.
  function niceMax(n) {
    var raw = Math.max(1, n) / 4, mag = Math.pow(10, Math.floor(Math.log10(raw)));
    var step = [1, 2, 5, 10].map(function (k) { return k * mag; })
      .filter(function (v) { return v >= raw && v >= 1; })[0] || Math.max(1, 10 * mag);
    return Math.ceil(step) * 4;
  }

  function drawChart(daily) {
    var box = $("chart");
    clear(box);
    chartDays = daily;
    chartPick = -1;
    $("chart-tip").textContent = "";
    var total = daily.reduce(function (s, d) { return s + d.conversations; }, 0);
    if (!total) { box.appendChild(el("p", "No conversations in this period.", "none empty-state")); return; }
    var W = Math.max(320, box.clientWidth || 640), H = 240;
    var m = { l: 40, r: 44, t: 12, b: 30 };
    var iw = W - m.l - m.r, ih = H - m.t - m.b;
    var top = niceMax(Math.max.apply(null, daily.map(function (d) { return d.conversations; })));
    var n = daily.length, slot = iw / n;
    var x = function (i) { return m.l + slot * i + slot / 2; };
    var yCount = function (v) { return m.t + ih - v / top * ih; };
    var yRate = function (r) { return m.t + ih - r * ih; };
    var root = svg("svg", { viewBox: "0 0 " + W + " " + H, width: W, height: H, role: "img", class: "daily" });
    root.appendChild(svg("title", {}, "Conversations and automation rate per day"));
    // Grid and both axes: counts on the left, the rate on the right.
    for (var k = 0; k <= 4; k++) {
      var gy = m.t + ih * k / 4;
      root.appendChild(svg("line", { x1: m.l, x2: m.l + iw, y1: gy, y2: gy, class: "grid" }));
      root.appendChild(svg("text", { x: m.l - 6, y: gy + 4, class: "axis count-axis", "text-anchor": "end" }, numberFormat.format(top * (4 - k) / 4)));
      root.appendChild(svg("text", { x: m.l + iw + 6, y: gy + 4, class: "axis rate-axis" }, (100 - 25 * k) + "%"));
    }
    root.appendChild(svg("line", { x1: m.l, x2: m.l + iw, y1: m.t + ih, y2: m.t + ih, class: "baseline" }));
    var every = Math.max(1, Math.ceil(n / Math.max(2, Math.floor(iw / 64))));
    var bw = Math.max(1, Math.min(28, slot * 0.7));
    var bars = svg("g", { class: "bars" }), line = svg("g", { class: "rate-line" }), points = svg("g", { class: "points" });
    var segment = [];
    var flush = function () {
      if (segment.length > 1) line.appendChild(svg("polyline", { points: segment.join(" "), class: "rate" }));
      segment = [];
    };
    daily.forEach(function (d, i) {
      var g = svg("g", { class: "day", "data-day": d.day });
      var y = yCount(d.conversations);
      g.appendChild(svg("rect", { x: x(i) - bw / 2, y: y, width: bw, height: m.t + ih - y, class: "bar" }));
      if (d.conversations && i % every === 0) { /* a count label when there is room for it */
        if (bw >= 16) g.appendChild(svg("text", { x: x(i), y: y - 3, class: "bar-label", "text-anchor": "middle" }, numberFormat.format(d.conversations)));
      }
      bars.appendChild(g);
      if (d.automation_rate == null) { flush(); } else {
        segment.push(x(i).toFixed(1) + "," + yRate(d.automation_rate).toFixed(1));
        points.appendChild(svg("circle", { cx: x(i), cy: yRate(d.automation_rate), r: Math.max(1.5, Math.min(3.5, slot / 4)), class: "point", "data-day": d.day }));
      }
      if (i % every === 0) {
        root.appendChild(svg("text", { x: x(i), y: H - 10, class: "axis day-label", "text-anchor": "middle" }, dayShort.format(toDate(d.day))));
      }
    });
    flush();
    root.appendChild(bars);
    root.appendChild(line);
    root.appendChild(points);
    var pick = svg("line", { x1: 0, x2: 0, y1: m.t, y2: m.t + ih, class: "pick", visibility: "hidden" });
    root.appendChild(pick);
    // One hit area per day: hover, tap, or arrow keys on the focused chart say that day's numbers.
    var hits = svg("g", { class: "hits" });
    daily.forEach(function (d, i) {
      var r = svg("rect", { x: m.l + slot * i, y: m.t, width: slot, height: ih, class: "hit" });
      r.addEventListener("pointerenter", function () { pickDay(i); });
      r.addEventListener("click", function () { pickDay(i); });
      hits.appendChild(r);
    });
    root.appendChild(hits);
    root.setAttribute("tabindex", "0");
    root.setAttribute("aria-label", "Daily chart; arrow keys move between days");
    root.addEventListener("keydown", function (ev) {
      if (ev.key !== "ArrowLeft" && ev.key !== "ArrowRight") return;
      ev.preventDefault();
      var i = chartPick < 0 ? n - 1 : chartPick + (ev.key === "ArrowRight" ? 1 : -1);
      pickDay(Math.max(0, Math.min(n - 1, i)));
    });
    chartLayout = { x: x, pick: pick };
    box.appendChild(root);
  }

  function pickDay(i) {
    var d = chartDays[i];
    chartPick = i;
    chartLayout.pick.setAttribute("x1", chartLayout.x(i));
    chartLayout.pick.setAttribute("x2", chartLayout.x(i));
    chartLayout.pick.setAttribute("visibility", "visible");
    $("chart-tip").textContent = dayLong.format(toDate(d.day)) + ": " + num(d.conversations) +
      " conversations, " + num(d.automated) + " resolved by the flows (" + pct(d.automation_rate) +
      "), " + num(d.handed_over) + " handed to a person, " + num(d.abandoned) + " abandoned";
  }

  // -- tables ----------------------------------------------------------------------------
  function drawDaily(daily) {
    var any = daily.some(function (d) { return d.conversations > 0; });
    table($("daily"), [
      ["Day", function (d) { return dayLong.format(toDate(d.day)); }],
      ["Conversations", function (d) { return num(d.conversations); }, "n"],
      ["Resolved by the flows", function (d) { return num(d.automated); }, "n"],
      ["Automation rate", function (d) { return pct(d.automation_rate); }, "n"],
      ["Handed to a person", function (d) { return num(d.handed_over); }, "n"],
      ["Abandoned", function (d) { return num(d.abandoned); }, "n"]
    ], any ? daily : [], "No conversations in this period.");
  }

  function drawFlows(flows) {
    table($("flows"), [
      ["Flow", function (f) {
        var b = el("button", f.flow, "link");
        b.type = "button";
        b.title = "Show where shoppers drop off in " + f.flow;
        b.addEventListener("click", function () {
          $("funnel-flow").value = f.flow;
          showFunnel(f.flow, "");
          $("funnel-title").scrollIntoView({ behavior: "smooth", block: "start" });
        });
        return b;
      }],
      ["Started", function (f) { return num(f.started); }, "n"],
      ["Resolved", function (f) { return num(f.resolved); }, "n"],
      ["Handed over", function (f) { return num(f.handed_over); }, "n"],
      ["Dropped", function (f) { return num(f.dropped); }, "n"],
      ["Drop rate", function (f) { return pct(f.drop_rate); }, "n"],
      ["Solved it? yes / no", function (f) { return f.csat_yes + f.csat_no ? num(f.csat_yes) + " / " + num(f.csat_no) : "—"; }, "n"],
      ["Versions", function (f) { return f.versions.map(function (v) { return v.slice(0, 8); }).join(", "); }, "versions"]
    ], flows, "No conversations in this period.");
  }

  // docs/events.md#handoff-reasons; a reason not named here is shown as it is.
  var REASONS = {
    asked: "The shopper asked",
    action_error: "An action failed",
    no_match: "Their data matched nothing",
    unsolved: "“Did this solve it?”: no",
    flow: "The flow hands over"
  };
  function drawReasons(reasons) {
    var rows = Object.keys(reasons).map(function (k) { return { reason: k, count: reasons[k] }; })
      .filter(function (r) { return r.count > 0; })
      .sort(function (a, b) { return b.count - a.count; });
    var total = rows.reduce(function (s, r) { return s + r.count; }, 0);
    table($("reasons"), [
      ["Reason", function (r) { return REASONS[r.reason] || r.reason.replace(/_/g, " "); }],
      ["Hand-offs", function (r) { return num(r.count); }, "n"],
      ["Share", function (r) {
        var wrap = el("span", null, "share");
        var bar = el("span", null, "share-bar");
        bar.style.width = Math.round(r.count / total * 100) + "%";
        wrap.appendChild(bar);
        wrap.appendChild(el("span", pct(r.count / total), "share-text"));
        return wrap;
      }, "share-cell"]
    ], rows, "No hand-offs in this period.");
  }

  function drawLocales(locales) {
    table($("locales"), [
      ["Language", function (l) { return l.locale; }],
      ["Conversations", function (l) { return num(l.conversations); }, "n"],
      ["Automation rate", function (l) { return pct(l.automation_rate); }, "n"]
    ], locales, "No conversations in this period.");
  }

  function drawAgents(r) {
    var h = r.headline;
    $("queue-line").textContent = h.queue_wait_p50 == null ? "" : "Wait in queue: median " +
      secs(h.queue_wait_p50) + ", p90 " + secs(h.queue_wait_p90) + " · first reply: median " +
      secs(h.first_reply_p50) + " · handle time: median " + secs(h.handle_p50);
    table($("agents"), [
      ["Agent", function (a) { return a.agent; }],
      ["Chats", function (a) { return num(a.chats); }, "n"],
      ["First reply (median)", function (a) { return secs(a.first_reply_p50); }, "n"],
      ["Handle time (median)", function (a) { return secs(a.handle_p50); }, "n"],
      ["Rating", function (a) { return a.csat == null ? "—" : mean(a.csat) + " (" + num(a.csat_n) + ")"; }, "n"]
    ], r.agents, "No chats with agents in this period.");
  }

  function drawTyped(t) {
    var all = t.matched + t.unmatched;
    $("typed-line").textContent = all ? num(all) + " typed texts: " + num(t.matched) +
      " matched, " + num(t.unmatched) + " unmatched (" + pct(t.unmatched / all) + ")" : "";
    table($("typed"), [
      ["Where", function (s) { return s.flow + " · " + s.step; }],
      ["Matched", function (s) { return num(s.matched); }, "n"],
      ["Unmatched", function (s) { return num(s.unmatched); }, "n"],
      ["Unmatched rate", function (s) { return pct(s.unmatched_rate); }, "n"]
    ], t.steps, "Nobody typed at a menu in this period.");
    $("kept-box").hidden = !t.unmatched_texts.length;
    table($("kept"), [
      ["Text", function (x) { return x.text; }],
      ["Language", function (x) { return x.locale; }],
      ["Where", function (x) { return x.flow + " · " + x.step; }],
      ["Times", function (x) { return num(x.count); }, "n"]
    ], t.unmatched_texts, "");
  }

  function drawTickets(t) {
    var dl = $("tickets");
    clear(dl);
    [["Open", t.open], ["Done", t.done], ["Left as messages (nobody online)", t.offline_handoffs]].forEach(function (p) {
      var div = el("div", null, "ticket-stat");
      div.appendChild(el("dt", p[0]));
      div.appendChild(el("dd", num(p[1])));
      dl.appendChild(div);
    });
  }

  // -- one flow's funnel, painted on its graph --------------------------------------------
  $("funnel-flow").addEventListener("change", function () { showFunnel($("funnel-flow").value, ""); });
  $("funnel-version").addEventListener("change", function () {
    showFunnel($("funnel-flow").value, $("funnel-version").value);
  });

  function showFunnel(flow, version) {
    if (!flow) return;
    var mine = ++funnelLoading;
    funnelFlow = flow;
    $("funnel-flow").value = flow;
    apiJson("/insights/api/funnel?" + query({ flow: flow, version: version })).then(function (f) {
      if (mine !== funnelLoading) return;
      var select = $("funnel-version");
      clear(select);
      var all = el("option", "All versions");
      all.value = "";
      select.appendChild(all);
      f.versions.forEach(function (v) { var o = el("option", v.slice(0, 12)); o.value = v; select.appendChild(o); });
      select.value = version || "";
      drawFunnel(f);
    }).catch(function (e) { if (mine === funnelLoading) showError(e); });
  }

  // The marker of the heaviest drop-offs, worst first (the API names at most three).
  function heavyLabel(rank) { return rank === 0 ? "▼ MOST DROP-OFFS" : "▼ DROP-OFFS #" + (rank + 1); }

  function drawFunnel(f) {
    var entered = f.steps.length ? f.steps[0].entered : 0;
    var anyone = f.steps.some(function (s) { return s.entered > 0; });
    var summary = $("funnel-summary");
    var box = $("graph");
    clear(box);
    if (!anyone) {
      summary.textContent = "No conversations in this period went through " + f.flow + ".";
    } else {
      var worst = f.heaviest.length ? f.heaviest.join(", ") : "nowhere";
      summary.textContent = num(entered) + " entered " + f.flow + " at its first step; most drop-offs: " + worst + ".";
    }
    drawGraph(box, f);
    table($("steps"), [
      ["Step", function (s) { return s.step; }],
      ["Kind", function (s) { return s.kind; }],
      ["Entered", function (s) { return num(s.entered); }, "n"],
      ["Dropped here", function (s) {
        var t = num(s.dropped);
        var rank = f.heaviest.indexOf(s.step);
        if (rank >= 0) {
          var span = el("span", null, "heavy-mark");
          span.appendChild(el("strong", t));
          span.appendChild(document.createTextNode(" " + heavyLabel(rank).toLowerCase()));
          return span;
        }
        return t;
      }, "n"],
      ["Drop rate", function (s) { return pct(s.drop_rate); }, "n"],
      ["Went on to", function (s) {
        return Object.keys(s.next).sort(function (a, b) { return s.next[b] - s.next[a]; })
          .map(function (k) { return k + " " + num(s.next[k]); }).join(", ") || "—";
      }]
    ], anyone ? f.steps : [], "No conversations in this period.");
  }

  // Layers by breadth-first search from the flow's first step, one row per layer, top down;
  // within a row, nodes are ordered by where their parents are (fewer crossing edges). Targets
  // that are not steps (end, handoff, another flow) get a small node of their own.
  function layout(f) {
    var nodes = {}, order = [];
    function add(id, step) {
      if (!nodes[id]) { nodes[id] = { id: id, step: step, layer: -1, out: [], into: [] }; order.push(id); }
      return nodes[id];
    }
    f.steps.forEach(function (s) { add(s.step, s); });
    f.edges.forEach(function (e) {
      add(e.from, null).out.push(e);
      add(e.to, null).into.push(e);
    });
    var first = f.steps.length ? f.steps[0].step : order[0];
    var layers = [];
    if (first) {
      nodes[first].layer = 0;
      var todo = [first];
      while (todo.length) {
        var id = todo.shift(), n = nodes[id];
        (layers[n.layer] = layers[n.layer] || []).push(id);
        n.out.forEach(function (e) {
          var t = nodes[e.to];
          if (t.layer < 0) { t.layer = n.layer + 1; todo.push(e.to); }
        });
      }
    }
    var rest = order.filter(function (id) { return nodes[id].layer < 0; });
    if (rest.length) {
      rest.forEach(function (id) { nodes[id].layer = layers.length; });
      layers.push(rest);
    }
    layers.forEach(function (row, li) {
      if (li === 0) return;
      var at = function (id) {
        var ps = nodes[id].into.map(function (e) { return nodes[e.from]; }).filter(function (p) { return p.layer === li - 1; });
        if (!ps.length) return 1e9;
        return ps.reduce(function (s, p) { return s + layers[li - 1].indexOf(p.id); }, 0) / ps.length;
      };
      row.sort(function (a, b) { return at(a) - at(b) || order.indexOf(a) - order.indexOf(b); });
    });
    return { nodes: nodes, layers: layers };
  }

  function drawGraph(box, f) {
    var L = layout(f);
    if (!L.layers.length) return;
    var NW = 164, NH = 74, GX = 28, GY = 64, PAD = 24, SMALL = 34;
    var widest = Math.max.apply(null, L.layers.map(function (r) { return r.length; }));
    var W = Math.max(NW + 2 * PAD, widest * NW + (widest - 1) * GX + 2 * PAD);
    var y = PAD;
    L.layers.forEach(function (row) {
      var h = row.some(function (id) { return L.nodes[id].step; }) ? NH : SMALL;
      var rowW = row.length * NW + (row.length - 1) * GX;
      row.forEach(function (id, i) {
        var n = L.nodes[id];
        n.w = NW; n.h = n.step ? NH : SMALL;
        n.x = (W - rowW) / 2 + i * (NW + GX);
        n.y = y + (h - n.h) / 2;
      });
      y += h + GY;
    });
    var H = y - GY + PAD;
    var root = svg("svg", { viewBox: "0 0 " + W + " " + H, width: W, height: H, role: "img", class: "funnel-graph" });
    root.appendChild(svg("title", {}, "Flow " + f.flow + ": each step with its entries and drop-offs; edges with how many went that way"));
    var defs = svg("defs");
    var marker = svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 9, markerHeight: 9, markerUnits: "userSpaceOnUse", orient: "auto-start-reverse" });
    marker.appendChild(svg("path", { d: "M0,0 L10,5 L0,10 z", class: "arrowhead" }));
    defs.appendChild(marker);
    root.appendChild(defs);
    var most = Math.max.apply(null, [1].concat(f.edges.map(function (e) { return e.count; })));
    var edges = svg("g", { class: "edges" }), labels = svg("g", { class: "edge-labels" });
    var reach = 0;  // the right end of the edges that go around
    f.edges.forEach(function (e) {
      var a = L.nodes[e.from], b = L.nodes[e.to], d, lx, ly;
      if (b.layer > a.layer) {
        var x1 = a.x + a.w / 2, y1 = a.y + a.h, x2 = b.x + b.w / 2, y2 = b.y;
        d = "M" + x1 + "," + y1 + " C" + x1 + "," + (y1 + GY * 0.6) + " " + x2 + "," + (y2 - GY * 0.6) + " " + x2 + "," + y2;
        lx = (x1 + x2) / 2; ly = (y1 + y2) / 2;
      } else {  // back to an earlier row, or within one: around the right of the rows between
        var sx = a.x + a.w, sy = a.y + a.h / 2, tx = b.x + b.w, ty = b.y + b.h / 2;
        var clear = Math.max(sx, tx);
        L.layers.slice(Math.min(a.layer, b.layer), Math.max(a.layer, b.layer) + 1).forEach(function (row) {
          row.forEach(function (id) { clear = Math.max(clear, L.nodes[id].x + L.nodes[id].w); });
        });
        clear += 22;
        // A cubic whose two control points share x reaches 3/4 of the way to them.
        var ctrl = Math.max(sx, tx) + (clear - Math.max(sx, tx)) / 0.75;
        d = "M" + sx + "," + sy + " C" + ctrl + "," + sy + " " + ctrl + "," + ty + " " + tx + "," + ty;
        lx = clear; ly = (sy + ty) / 2;
        reach = Math.max(reach, clear + 24);
      }
      var path = svg("path", { d: d, class: "edge" + (e.count ? "" : " unused"), "marker-end": "url(#arrow)", "stroke-width": (1 + 5 * e.count / most).toFixed(1), "data-from": e.from, "data-to": e.to });
      path.appendChild(svg("title", {}, e.from + " → " + e.to + (e.label ? " (" + e.label + ")" : "") + ": " + e.count));
      edges.appendChild(path);
      var g = svg("g", { class: "edge-label", "data-from": e.from, "data-to": e.to });
      var text = numberFormat.format(e.count);
      var tw = 8 + 7 * text.length;
      g.appendChild(svg("rect", { x: lx - tw / 2, y: ly - 9, width: tw, height: 18, rx: 9 }));
      g.appendChild(svg("text", { x: lx, y: ly + 4, "text-anchor": "middle" }, text));
      labels.appendChild(g);
    });
    W = Math.max(W, Math.ceil(reach));
    root.setAttribute("viewBox", "0 0 " + W + " " + H);
    root.setAttribute("width", W);
    root.appendChild(edges);
    var heavy = f.heaviest;
    Object.keys(L.nodes).forEach(function (id) {
      var n = L.nodes[id], s = n.step;
      var g = svg("g", { class: "node" + (s ? "" : " terminal") + (s && heavy.indexOf(id) >= 0 ? " heavy" : ""), "data-step": id, transform: "translate(" + n.x + "," + n.y + ")" });
      g.appendChild(svg("rect", { width: n.w, height: n.h, rx: s ? 8 : n.h / 2 }));
      if (!s) {
        // `end`, `handoff`, or `flow:<name>`: another flow, whose funnel a click opens.
        var other = id.indexOf("flow:") === 0 ? id.slice(5) : null;
        g.appendChild(svg("text", { x: n.w / 2, y: n.h / 2 + 4, "text-anchor": "middle", class: "name" }, truncate(other ? "→ " + other : id, 22)));
        g.appendChild(svg("title", {}, other ? "Flow " + other + ": show its funnel" : id));
        if (other && meta.flows.indexOf(other) >= 0) openOnClick(g, other);
      } else {
        g.appendChild(svg("text", { x: 10, y: 18, class: "name" }, truncate(id, 21)));
        g.appendChild(svg("text", { x: n.w - 10, y: 18, class: "kind", "text-anchor": "end" }, s.kind));
        g.appendChild(svg("text", { x: 10, y: 38, class: "entered" }, numberFormat.format(s.entered) + " entered"));
        g.appendChild(svg("text", { x: 10, y: 58, class: "dropped" }, numberFormat.format(s.dropped) + " dropped" + (s.drop_rate == null ? "" : " · " + pct(s.drop_rate))));
        var rank = heavy.indexOf(id);
        if (rank >= 0) {  // colour and words: the marker reads without colour too
          var badge = svg("g", { class: "badge", transform: "translate(" + (n.w - 138) + ",-11)" });
          badge.appendChild(svg("rect", { width: 132, height: 18, rx: 9 }));
          badge.appendChild(svg("text", { x: 66, y: 13, "text-anchor": "middle" }, heavyLabel(rank)));
          g.appendChild(badge);
        }
        g.appendChild(svg("title", {}, id + " (" + s.kind + "): " + s.entered + " entered, " + s.dropped + " dropped here"));
      }
      root.appendChild(g);
    });
    root.appendChild(labels);
    box.appendChild(root);
    // Wider than the screen (a phone): start with the flow's first step in view.
    var start = L.nodes[L.layers[0][0]];
    box.scrollLeft = Math.max(0, start.x + start.w / 2 - box.clientWidth / 2);
  }

  function openOnClick(g, flow) {
    g.setAttribute("class", g.getAttribute("class") + " link");
    g.setAttribute("tabindex", "0");
    g.setAttribute("role", "button");
    g.setAttribute("aria-label", "Show the funnel of " + flow);
    var open = function () { showFunnel(flow, ""); };
    g.addEventListener("click", open);
    g.addEventListener("keydown", function (ev) {
      if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); open(); }
    });
  }

  window.addEventListener("resize", function () {
    if (report && chartDays.length) drawChart(chartDays);
  });

  $("export").addEventListener("click", function () {
    // A download needs the token in a header: fetched here, then saved from a blob.
    api("/insights/export.csv?" + query()).then(function (r) {
      var name = (/filename="([^"]+)"/.exec(r.headers.get("content-disposition") || "") || [])[1] || "insights.csv";
      return r.blob().then(function (b) {
        var a = el("a");
        a.href = URL.createObjectURL(b);
        a.download = name;
        document.body.appendChild(a);
        a.click();
        a.remove();
        setTimeout(function () { URL.revokeObjectURL(a.href); }, 10000);
      });
    }).catch(showError);
  });

  if (token) start(); else toLogin("");
})();
