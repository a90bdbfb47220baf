/* flowengine agent console: the live queue, claimed chats, replies, notes, close / hand back /
 * transfer (docs/agents.md). Every piece of text from shoppers, agents or flows is put in the
 * page with textContent, never as HTML; the page's Content-Security-Policy allows only this
 * script and this server. */
(function () {
  "use strict";
  var $ = function (id) { return document.getElementById(id); };
  var token = sessionStorage.getItem("fe-console-token");
  var me = null, ws = null, backoff = 500, counter = 0;
  var chats = {};        // session -> {packet, handoff, events: [], unread, notes}
  var active = null;     // the session shown
  var wanted = null;     // the session the agent asked to see (claim), shown when it arrives
  var mine = [];         // sessions assigned to me
  var waitingCount = 0;
  var lastQueue = null;
  var teams = [];
  var typingTimer = null;

  function el(tag, text, cls) {
    var n = document.createElement(tag);
    if (text != null) n.textContent = String(text);
    if (cls) n.className = cls;
    return n;
  }
  function clear(n) { while (n.firstChild) n.removeChild(n.firstChild); }
  function fmtWait(seconds) {
    var s = Math.max(0, Math.floor(seconds));
    return Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");
  }

  // -- log in / out ---------------------------------------------------------------------
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
        sessionStorage.setItem("fe-console-token", token);
        $("password").value = "";
        start();
      })
      .catch(function () { $("login-error").textContent = "the server cannot be reached"; });
  });

  $("logout").addEventListener("click", function () {
    fetch("/agent/api/logout", { method: "POST", headers: { Authorization: "Bearer " + token } });
    sessionStorage.removeItem("fe-console-token");
    token = null;
    if (ws) { ws.onclose = null; ws.close(); }
    location.reload();
  });

  function start() {
    $("login-view").hidden = true;
    $("app-view").hidden = false;
    connect();
  }

  // -- the socket -----------------------------------------------------------------------
  function send(frame) {
    counter += 1;
    frame.id = "k" + counter;
    if (ws && ws.readyState === 1) ws.send(JSON.stringify(frame));
    return frame.id;
  }

  function connect() {
    var url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/agent/ws";
    ws = new WebSocket(url);
    ws.onopen = function () { backoff = 500; ws.send(JSON.stringify({ type: "auth", token: token })); };
    ws.onmessage = function (m) {
      var f;
      try { f = JSON.parse(m.data); } catch (e) { return; }
      handle(f);
    };
    ws.onclose = function () {
      if (!token) return;
      $("conn").textContent = "Reconnecting…";
      setTimeout(connect, backoff);
      backoff = Math.min(backoff * 2, 10000);
    };
  }

  function handle(f) {
    if (f.type === "welcome") {
      me = f.agent;
      teams = f.teams;
      $("conn").textContent = "";
      $("me").textContent = me.name + " · " + me.teams.join(", ");
      var sel = $("transfer-team");
      clear(sel);
      teams.forEach(function (t) { var o = el("option", t); o.value = t; sel.appendChild(o); });
      var canned = $("canned");
      clear(canned);
      canned.appendChild(el("option", "Canned responses…"));
      canned.firstChild.value = "";
      f.canned.forEach(function (c) { var o = el("option", c.title); o.value = c.text; canned.appendChild(o); });
      // After a reconnect, open the chats that are still mine.
      Object.keys(chats).forEach(function (sid) { send({ type: "open", session: sid }); });
    } else if (f.type === "error" && f.code === "unauthorized") {
      sessionStorage.removeItem("fe-console-token");
      token = null;
      location.reload();
    } else if (f.type === "queue") {
      renderQueue(f);
    } else if (f.type === "chat") {
      var c = chats[f.session] || { events: [], unread: 0, notes: [] };
      c.packet = f.packet;
      c.handoff = f.handoff;
      c.events = (f.packet.transcript || []).slice();
      c.notes = f.notes || [];
      chats[f.session] = c;
      if (f.handoff && f.handoff.status === "assigned" && me && f.handoff.agent === me.username &&
          mine.indexOf(f.session) < 0) {
        mine.push(f.session);
        if (lastQueue) {  // mine now: out of the waiting list at once, not at the next tick
          renderQueue({
            waiting: lastQueue.waiting.filter(function (r) { return r.session !== f.session; }),
            mine: lastQueue.mine.concat([f.handoff]), at: lastQueue.at
          });
        }
      }
      // Show the chat the agent just claimed or opened (never keep another one on screen, where
      // the next reply would go to the wrong shopper); a chat reopened after a reconnect only
      // when nothing is shown.
      if (!active || active === f.session || wanted === f.session) { wanted = null; show(f.session); }
    } else if (f.type === "event") {
      var chat = chats[f.session];
      if (!chat) return;
      chat.events.push(f.event);
      if (f.session === active) appendEvent(f.event);
      else if (f.event.from === "shopper") { chat.unread += 1; renderMine(); }
      if (f.event.type === "ended" || (f.event.type === "handoff" && /closed|handed_back/.test(f.event.status))) renderMine();
      if (f.event.from === "shopper" && f.session === active) $("typing").hidden = true;
    } else if (f.type === "typing" && f.session === active) {
      $("typing").hidden = false;
      clearTimeout(typingTimer);
      typingTimer = setTimeout(function () { $("typing").hidden = true; }, 4000);
    } else if (f.type === "note") {
      var n = chats[f.session];
      if (n) { n.notes.push(f.note); if (f.session === active) renderNotes(n.notes); }
    } else if (f.type === "error") {
      $("conn").textContent = f.message;
      setTimeout(function () { if ($("conn").textContent === f.message) $("conn").textContent = ""; }, 4000);
    }
  }

  // -- queue and my chats ---------------------------------------------------------------
  function renderQueue(f) {
    lastQueue = f;
    var q = $("queue");
    clear(q);
    f.waiting.forEach(function (r) {
      var li = el("li", null, r.priority);
      li.appendChild(el("strong", (r.reason || "handoff") + " · " + r.team));
      li.appendChild(el("span", "flow " + r.flow + " · " + r.priority + " · waiting " + fmtWait(r.waiting), "meta"));
      var b = el("button", "Claim", "primary");
      b.addEventListener("click", function () { wanted = r.session; send({ type: "claim", session: r.session }); });
      li.appendChild(b);
      q.appendChild(li);
    });
    if (f.waiting.length > waitingCount) beep();
    waitingCount = f.waiting.length;
    $("waiting-count").textContent = String(waitingCount);
    var sessions = f.mine.map(function (r) { return r.session; });
    sessions.forEach(function (sid) {
      if (mine.indexOf(sid) < 0 && !chats[sid]) { beep(); send({ type: "open", session: sid }); }
    });
    mine = sessions;
    document.title = (waitingCount ? "(" + waitingCount + ") " : "") + "flowengine console";
    renderMine();
  }

  function renderMine() {
    var list = $("mine");
    clear(list);
    Object.keys(chats).forEach(function (sid) {
      var c = chats[sid];
      var p = c.packet || {};
      var li = el("li", null, sid === active ? "active" : "");
      var who = (p.shopper && (p.shopper.name || p.shopper.email)) || "Shopper";
      li.appendChild(el("strong", who));
      var mineNow = mine.indexOf(sid) >= 0;
      li.appendChild(el("span", (p.reason || "") + (mineNow ? "" : " · ended"), "meta"));
      if (c.unread) li.appendChild(el("span", c.unread + " new", "unread"));
      li.tabIndex = 0;
      li.addEventListener("click", function () { show(sid); });
      li.addEventListener("keydown", function (ev) { if (ev.key === "Enter") show(sid); });
      list.appendChild(li);
    });
  }

  // -- one chat -------------------------------------------------------------------------
  function show(sid) {
    active = sid;
    var c = chats[sid];
    c.unread = 0;
    $("empty").hidden = true;
    $("chat").hidden = false;
    $("context").hidden = false;
    var p = c.packet || {};
    $("chat-title").textContent = ((p.shopper && (p.shopper.name || p.shopper.email)) || "Shopper") +
      " · " + (p.flow || "") + " · " + (p.reason || "");
    var t = $("transcript");
    clear(t);
    c.events.forEach(appendEvent);
    renderContext(p);
    renderNotes(c.notes);
    renderMine();
    $("reply").focus();
  }

  function appendEvent(e) {
    var t = $("transcript");
    var li;
    if (e.type === "message") {
      li = el("li", null, e.from);
      if (e.from === "agent") li.appendChild(el("span", e.agent || "agent", "who"));
      if (e.from === "bot") rich(li, e.text); else li.appendChild(document.createTextNode(e.text));
    } else if (e.type === "handoff") {
      li = el("li", "handoff " + e.status + (e.agent ? " · " + e.agent : "") + (e.reason ? " · " + e.reason : ""), "handoff");
    } else if (e.type === "ended") {
      li = el("li", "conversation ended (" + e.resolution + ")", "ended");
    } else return;
    t.appendChild(li);
    t.scrollTop = t.scrollHeight;
  }

  // The bot's **bold** and [links](https://...), built as elements; everything else is text.
  var RICH = /\*\*([^*]+)\*\*|\[([^\]]+)\]\(((?:https?:\/\/|mailto:|tel:)[^\s)]+)\)/g;
  function rich(node, text) {
    var last = 0, m;
    RICH.lastIndex = 0;
    while ((m = RICH.exec(text))) {
      node.appendChild(document.createTextNode(text.slice(last, m.index)));
      if (m[1] !== undefined) node.appendChild(el("strong", m[1]));
      else {
        var a = el("a", m[2]);
        a.href = m[3]; a.target = "_blank"; a.rel = "noopener noreferrer";
        node.appendChild(a);
      }
      last = RICH.lastIndex;
    }
    node.appendChild(document.createTextNode(text.slice(last)));
  }

  function dl(target, pairs) {
    clear(target);
    pairs.forEach(function (kv) {
      if (kv[1] == null || kv[1] === "") return;
      target.appendChild(el("dt", kv[0]));
      target.appendChild(el("dd", typeof kv[1] === "object" ? JSON.stringify(kv[1]) : kv[1]));
    });
  }

  function renderContext(p) {
    var s = p.shopper || {};
    dl($("shopper"), [["name", s.name], ["email", s.email], ["verified", s.verified ? "yes" : "no"],
      ["locale", p.locale], ["page", p.page && p.page.url], ["team", p.team], ["priority", p.priority]]);
    var o = p.order || {};
    dl($("order"), [["number", o.number], ["status", o.status], ["placed", o.placed_at], ["delivered", o.delivered_at],
      ["eta", o.eta], ["carrier", o.carrier], ["tracking", o.tracking_url], ["total", o.total != null ? o.total + " " + (o.currency || "") : null],
      ["returnable", o.number ? (o.returnable ? "yes (" + o.return_days_left + " days left)" : "no") : null]]);
    var items = $("items");
    clear(items);
    (o.items || []).forEach(function (i) {
      items.appendChild(el("li", i.qty + " × " + i.name + " (" + i.sku + ")" + (i.final_sale ? " · final sale" : "")));
    });
    var collected = [];
    Object.keys(p.collected || {}).forEach(function (k) { if (k !== "order") collected.push([k, p.collected[k]]); });
    dl($("collected"), collected);
  }

  function renderNotes(notes) {
    var list = $("notes");
    clear(list);
    notes.forEach(function (n) { list.appendChild(el("li", n.agent + ": " + n.text)); });
  }

  // -- acting ---------------------------------------------------------------------------
  $("reply-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var text = $("reply").value.trim();
    if (!text || !active) return;
    send({ type: "reply", session: active, text: text });
    $("reply").value = "";
  });
  $("reply").addEventListener("keydown", function (ev) {
    if (ev.key === "Enter" && !ev.shiftKey) { ev.preventDefault(); $("reply-form").requestSubmit(); }
  });
  var lastTyping = 0;
  $("reply").addEventListener("input", function () {
    if (active && Date.now() - lastTyping > 2000) { lastTyping = Date.now(); send({ type: "typing", session: active }); }
  });
  $("canned").addEventListener("change", function () {
    if (this.value) { $("reply").value = this.value; this.value = ""; $("reply").focus(); }
  });
  $("note-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var text = $("note").value.trim();
    if (!text || !active) return;
    send({ type: "note", session: active, text: text });
    $("note").value = "";
  });
  $("close").addEventListener("click", function () { if (active) send({ type: "close", session: active }); });
  $("handback").addEventListener("click", function () { if (active) send({ type: "handback", session: active }); });
  $("transfer").addEventListener("click", function () {
    if (active) send({ type: "transfer", session: active, team: $("transfer-team").value });
  });
  $("status").addEventListener("change", function () { send({ type: "status", status: this.value }); });

  var audio = null;
  function beep() {
    try {
      audio = audio || new (window.AudioContext || window.webkitAudioContext)();
      var o = audio.createOscillator(), g = audio.createGain();
      o.frequency.value = 880;
      g.gain.value = 0.05;
      o.connect(g); g.connect(audio.destination);
      o.start(); o.stop(audio.currentTime + 0.15);
    } catch (e) { /* no sound available */ }
  }

  if (token) start();
})();
