/* flowengine agent console: the live queue, claimed chats, replies, notes, close / hand back /
 * transfer (docs/agents.md). Every piece of text from shoppers, agents or flows is put in the
 * page with textContent, never as HTML; the page's Content-Security-Policy allows only this
 * script and this server.
 *
 * How it stays honest:
 * - lists are keyed: one DOM node per session, updated in place, added or removed only when the
 *   queue changes, so focus stays where it is; what changed is announced in one polite region;
 * - every action frame goes through an outbox until the server acks it (or answers an error):
 *   sent when the socket is up, resent with the same id after a reconnect (the server applies
 *   an id once); a reply shows as "sending…" until then and is never dropped;
 * - a chat's state comes from its transcript (`handoff`/`ended` events) and from the `queue`
 *   frame's `mine`: a chat that is no longer the agent's is marked for what happened and can no
 *   longer be replied to. */
(function () {
  "use strict";
  var $ = function (id) { return document.getElementById(id); };
  var TOKEN_KEY = "fe-console-token";
  var token = sessionStorage.getItem(TOKEN_KEY);
  // Action ids are unique per page load: the server remembers ids it has applied.
  var idPrefix = "c" + Date.now().toString(36) + Math.random().toString(36).slice(2, 7) + "-";
  var me = null, ws = null, ready = false, backoff = 500, counter = 0, retryTimer = null;
  var outbox = [];       // action frames not yet acked, in the order they were made
  var chats = {};        // session -> chat (see newChat)
  var active = null;     // the session shown: every action of the chat view goes to it
  var wanted = null;     // the session the agent asked to see (claim, read, take over)
  var teams = [], canned = [];
  var queue = { rows: {}, records: {}, first: true };   // waiting chats
  var others = { rows: {}, records: {} };               // admins: chats of other agents
  var mineRows = {};
  var inbox = { rows: {}, shown: null, wanted: null };  // tickets listed; the one in view
  var received = 0;      // Date.now() when the last queue frame came
  var opening = {};      // session -> true while an `open` for it is on its way
  var typingTimer = null, lastTyping = 0;

  var timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
  var dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

  function el(tag, text, cls) {
    var n = document.createElement(tag);
    if (text != null) n.textContent = String(text);
    if (cls) n.className = cls;
    return n;
  }
  function clear(n) { while (n.firstChild) n.removeChild(n.firstChild); }
  function setText(n, text) { text = String(text); if (n.textContent !== text) n.textContent = text; }
  function fmtWait(seconds) {
    var s = Math.max(0, Math.floor(seconds));
    var m = Math.floor(s / 60);
    return (m >= 60 ? Math.floor(m / 60) + ":" + String(m % 60).padStart(2, "0") : String(m)) +
      ":" + String(s % 60).padStart(2, "0");
  }
  function stamp(at) {
    var t = el("time", timeFormat.format(new Date(at * 1000)));
    t.dateTime = new Date(at * 1000).toISOString();
    t.title = dateFormat.format(new Date(at * 1000));
    return t;
  }
  function whoOf(shopper) {
    return (shopper && (shopper.name || shopper.email)) || "Shopper";
  }

  // -- announcements: one polite, visually hidden region ---------------------------------
  var said = [], sayTimer = null;
  function announce(text) {
    said.push(text);
    clearTimeout(sayTimer);
    sayTimer = setTimeout(function () {
      var region = $("announce");
      region.textContent = "";
      var text = said.join(". ");
      said = [];
      // A new text node in the next frame: the same sentence twice is read twice.
      setTimeout(function () { region.textContent = text; }, 50);
    }, 150);
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
        sessionStorage.setItem(TOKEN_KEY, token);
        $("password").value = "";
        start();
      })
      .catch(function () { $("login-error").textContent = "the server cannot be reached"; });
  });

  // Logged out only when the server says so: a login it could not end (its store away) would
  // stay good for hours on any copy of the token, so the console stays and says why.
  $("logout").addEventListener("click", function () {
    fetch("/agent/api/logout", { method: "POST", headers: { Authorization: "Bearer " + token } })
      .then(function (r) {
        if (r.ok) toLogin("You are logged out.");
        else flash("Not logged out: the service is briefly unavailable. Try again in a few seconds.");
      })
      .catch(function () { flash("Not logged out: the server cannot be reached. Try again."); });
  });

  // Back to the login form (logged out, or the server no longer accepts the login): no reload,
  // so a token the server refuses can never make the page loop.
  function toLogin(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    token = null;
    ready = false;
    clearTimeout(retryTimer);
    if (ws) { ws.onclose = null; ws.onmessage = null; try { ws.close(); } catch (e) { /* gone */ } ws = null; }
    reset();
    $("app-view").hidden = true;
    $("login-view").hidden = false;
    $("login-error").textContent = message || "";
    document.title = "flowengine console";
    $("username").focus();
  }

  function reset() {
    me = null; outbox = []; chats = {}; active = null; wanted = null; opening = {};
    queue = { rows: {}, records: {}, first: true };
    others = { rows: {}, records: {} };
    mineRows = {};
    inbox = { rows: {}, shown: null, wanted: null };
    $("ticket-view").hidden = true;
    ["queue", "mine", "others", "transcript", "notes", "inbox"].forEach(function (id) { clear($(id)); });
    $("queue").setAttribute("aria-busy", "true");
    $("chat").hidden = true;
    $("context").hidden = true;
    $("empty").hidden = false;
    $("waiting-count").textContent = "0";
    $("conn").textContent = "";
  }

  function start() {
    reset();
    $("login-view").hidden = true;
    $("app-view").hidden = false;
    $("login-error").textContent = "";
    backoff = 500;
    connect();
  }

  // -- the socket and the outbox --------------------------------------------------------
  function transmit(frame) {
    if (ready && ws && ws.readyState === 1) { ws.send(JSON.stringify(frame)); return true; }
    return false;
  }

  // An action: kept until its ack or error, sent now if the socket is up, else after the next
  // `welcome` (with the same id, so the server applies it once).
  function act(frame, extra) {
    counter += 1;
    frame.id = idPrefix + counter;
    var entry = { frame: frame };
    if (extra) Object.keys(extra).forEach(function (k) { entry[k] = extra[k]; });
    outbox.push(entry);
    transmit(frame);
    connState();
    return entry;
  }

  function take(id) {
    for (var i = 0; i < outbox.length; i++) {
      if (outbox[i].frame.id === id) return outbox.splice(i, 1)[0];
    }
    return null;
  }

  function connect() {
    var url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/agent/ws";
    var sock = new WebSocket(url);
    ws = sock;
    ready = false;
    sock.onopen = function () { sock.send(JSON.stringify({ type: "auth", token: token })); };
    sock.onmessage = function (m) {
      var f;
      try { f = JSON.parse(m.data); } catch (e) { return; }
      if (ws === sock) handle(f);
    };
    sock.onclose = function () {
      if (ws !== sock || !token) return;
      var wasReady = ready;
      ready = false;
      if (wasReady) announce("Connection lost; reconnecting");
      connState();
      retryTimer = setTimeout(connect, backoff);
      backoff = Math.min(backoff * 2, 10000);
    };
  }

  function connState() {
    var pending = outbox.filter(function (e) { return e.frame.type === "reply"; }).length;
    var text = ready ? "" : "Reconnecting…";
    if (!ready && pending) text += " " + pending + (pending === 1 ? " reply" : " replies") + " waiting to be sent";
    setText($("conn"), text);
  }

  function welcome(f) {
    var first = me === null;
    me = f.agent;
    teams = f.teams || [];
    canned = f.canned || [];
    ready = true;
    backoff = 500;
    connState();
    if (!first) announce("Reconnected");
    $("me").textContent = me.name + " · " + me.teams.join(", ");
    $("others-section").hidden = me.role !== "admin";
    var sel = $("transfer-team");
    var picked = sel.value;
    clear(sel);
    teams.forEach(function (t) { var o = el("option", t); o.value = t; sel.appendChild(o); });
    if (picked && teams.indexOf(picked) >= 0) sel.value = picked;
    var list = $("canned");
    clear(list);
    var none = el("option", "Canned responses…");
    none.value = "";
    list.appendChild(none);
    canned.forEach(function (c, i) { var o = el("option", c.title); o.value = String(i); list.appendChild(o); });
    list.hidden = canned.length === 0;
    if ($("status").value !== "online") transmit({ type: "status", status: $("status").value });
    // Reopen the chats still followed (their transcript may have moved on meanwhile), then
    // resend every action not yet acked, with its id: one the server has applied is not
    // applied again.
    var reopen = {};
    outbox = outbox.filter(function (e) {
      if (e.frame.type !== "open") return true;
      reopen[e.frame.session] = true;
      return false;
    });
    Object.keys(chats).forEach(function (sid) {
      if (chats[sid].status !== "finished") reopen[sid] = true;
    });
    opening = {};
    Object.keys(reopen).forEach(function (sid) { openChat(sid); });
    outbox.forEach(function (e) { if (e.frame.type !== "open") transmit(e.frame); });
    renderChatState();
    askTickets();
  }

  function handle(f) {
    if (f.type === "welcome") welcome(f);
    else if (f.type === "error" && f.code === "unauthorized") {
      toLogin("Your login is no longer valid (you logged out, it expired, or your account was " +
        "removed). Log in again.");
    } else if (f.type === "queue") onQueue(f);
    else if (f.type === "chat") onChat(f);
    else if (f.type === "event") onEvent(f);
    else if (f.type === "typing") {
      if (f.session === active && chats[active] && chats[active].status === "mine") {
        $("typing").hidden = false;
        clearTimeout(typingTimer);
        typingTimer = setTimeout(function () { $("typing").hidden = true; }, 4000);
      }
    } else if (f.type === "note") {
      var n = chats[f.session];
      if (n) { n.notes.push(f.note); if (f.session === active) renderNotes(n); }
    } else if (f.type === "tickets") renderTickets(f.items || []);
    else if (f.type === "ticket") onTicket(f.ticket);
    else if (f.type === "ack") onAck(f);
    else if (f.type === "error") onError(f);
  }

  // -- chats ----------------------------------------------------------------------------
  function newChat(sid) {
    return {
      sid: sid, packet: {}, handoff: null, events: [], unread: 0, notes: [],
      status: "reading",   // mine | reading (a chat that is not the agent's) | finished
      held: false,         // the agent has held it on this page: it is in "My chats"
      outcome: "",         // what happened, once finished
      heldBy: null,        // reading a chat someone else has
      acting: null,        // the close / hand back / transfer on its way
      pending: [],         // replies not yet acked: {id, text, error}
      draft: "", missing: 0, error: ""
    };
  }

  function openChat(sid) {
    if (opening[sid]) return;
    opening[sid] = true;
    act({ type: "open", session: sid });
  }

  function mineByRecord(record) {
    return !!(record && me && record.status === "assigned" && record.agent === me.username);
  }

  function onChat(f) {
    delete opening[f.session];
    var c = chats[f.session] || newChat(f.session);
    chats[f.session] = c;
    c.packet = f.packet || {};
    c.handoff = f.handoff || null;
    c.events = (c.packet.transcript || []).slice();
    c.notes = f.notes || [];
    var record = c.handoff || {};
    settleFromTranscript(c);
    if (wanted === f.session && c.status === "finished" && !mineByRecord(record)) {
      // Asked to read it again: a new handoff of a chat that had ended here.
      c.status = "reading"; c.held = false; c.outcome = "";
    }
    if (c.packet.missing) {
      finish(c, "gone", "The shopper's session has expired");
    } else if (mineByRecord(record)) {
      c.status = "mine"; c.held = true; c.outcome = ""; c.heldBy = null; c.missing = 0;
      dropWaiting(f.session);  // out of the waiting list at once, not at the next queue frame
    } else if (record.status === "queued") {
      if (c.held && c.status === "mine") {
        if (c.acting && c.acting.frame.type === "transfer") finish(c, "transferred", "Transferred to " + record.team);
        else finish(c, "requeued", "Requeued to " + record.team + " (taken from you)");
      }
      else if (c.status !== "finished") { c.status = "reading"; c.heldBy = null; }
    } else if (record.status === "assigned") {
      if (c.held && c.status === "mine") finish(c, "taken", "Taken over by " + (record.agent_name || record.agent));
      else if (c.status !== "finished") { c.status = "reading"; c.heldBy = record.agent_name || record.agent; }
    } else if (c.status !== "finished") {
      finish(c, record.outcome || "closed", c.acting && record.outcome === "closed" ? "Closed by you" : outcomeText(record));
    }
    // Show the chat the agent asked for (never keep another one on screen, where the next
    // reply would go to the wrong shopper); a chat reopened after a reconnect only when it is
    // the one shown, or nothing is.
    if (wanted === f.session || !active || active === f.session) {
      var asked = wanted === f.session;
      if (asked) wanted = null;
      show(f.session, asked);
    }
    renderMine();
  }

  function outcomeText(record) {
    switch (record.outcome) {
      case "handed_back": return "Handed back to the bot";
      case "timeout": return "Timed out: nobody claimed it";
      case "cancelled": return "Closed by the shopper";
      case "offline": return "Nobody was available";
      default: return "Closed";
    }
  }

  function finish(c, kind, text) {
    var was = c.status;
    c.status = "finished";
    c.kind = kind;
    c.outcome = text;
    c.acting = null;
    c.missing = 0;
    if (was !== "finished" && (c.held || c.sid === active)) announce("Chat with " + whoOf(c.packet.shopper) + ": " + text);
    if (c.sid === active) { $("typing").hidden = true; closeSlash(); }
    renderMine();
    if (c.sid === active) renderChatState();
  }

  // What a live transcript event says about the chat.
  function follow(c, e) {
    if (c.status === "finished") return;
    var mine = c.status === "mine";
    var byMe = me && e.agent === me.name;
    if (e.type === "ended") {
      finish(c, "ended", "Conversation ended");
    } else if (e.type !== "handoff") {
      return;
    } else if (e.status === "closed") {
      finish(c, "closed", e.by === "shopper" ? "Closed by the shopper" :
        byMe && mine ? "Closed by you" : "Closed by " + (e.agent || "an agent"));
    } else if (e.status === "handed_back") {
      finish(c, "handed_back", byMe && mine ? "Handed back to the bot" :
        "Handed back to the bot by " + (e.agent || "an agent"));
    } else if (e.status === "offline") {
      finish(c, "timeout", e.reason === "timeout" ? "Timed out: nobody claimed it" : "Nobody was available");
    } else if (e.status === "queued") {
      if (mine) {
        var asked = c.acting && c.acting.frame.type === "transfer";
        finish(c, "transferred", asked ? "Transferred to " + e.queue :
          "Requeued to " + e.queue + " (taken from you)");
      } else {
        c.heldBy = null;
        if (c.handoff) { c.handoff.status = "queued"; c.handoff.team = e.queue; }
        if (c.sid === active) renderChatState();
      }
    } else if (e.status === "assigned") {
      if (mine && !byMe) finish(c, "taken", "Taken over by " + e.agent);
      else if (!mine) {
        c.heldBy = e.agent;
        if (c.handoff) c.handoff.status = "assigned";
        if (c.sid === active) { announce("Chat claimed by someone else: " + e.agent); renderChatState(); }
      }
    }
  }

  function onEvent(f) {
    var c = chats[f.session];
    if (!c) return;
    var e = f.event;
    var last = c.events.length ? c.events[c.events.length - 1].seq : 0;
    if (e.seq != null && e.seq <= last) return;  // already in the transcript read
    c.events.push(e);
    if (e.from === "agent" && me && e.agent === me.name) settleReply(c, e.text);
    if (f.session === active) {
      appendEvent(e);
      if (e.from === "shopper") { $("typing").hidden = true; announce("New message from " + whoOf(c.packet.shopper)); }
    } else if (e.from === "shopper" && c.held && c.status === "mine") {
      c.unread += 1;
      announce("New message from " + whoOf(c.packet.shopper));
    }
    follow(c, e);
    renderMine();
  }

  // Replies sent before a reconnect that the transcript read now holds (their ack was lost
  // with the connection; the resend will be acked as a duplicate).
  function settleFromTranscript(c) {
    if (!c.pending.length || !me) return;
    var used = {};
    c.pending = c.pending.filter(function (p) {
      if (p.error) return true;
      for (var i = 0; i < c.events.length; i++) {
        var e = c.events[i];
        if (!used[e.seq] && e.seq > p.after && e.from === "agent" && e.agent === me.name && e.text === p.text) {
          used[e.seq] = true;
          return false;
        }
      }
      return true;
    });
  }

  // My reply is in the transcript: its "sending…" copy goes (its ack may still be on its way).
  function settleReply(c, text) {
    for (var i = 0; i < c.pending.length; i++) {
      if (c.pending[i].text === text && !c.pending[i].error) {
        c.pending[i].stored = true;
        c.pending.splice(i, 1);
        if (c.sid === active) renderPending(c);
        return;
      }
    }
  }

  // -- answers to actions ---------------------------------------------------------------
  function onAck(f) {
    var entry = take(f.id);
    connState();
    if (!entry) return;
    var fr = entry.frame, c = chats[fr.session];
    if (fr.type === "reply" && c) {
      c.pending = c.pending.filter(function (p) { return p.id !== fr.id; });
      if (c.sid === active) renderPending(c);
    } else if (fr.type === "note") {
      if (fr.session === active && $("note").value.trim() === fr.text) $("note").value = "";
      if (c && c.sid === active) renderChatState();
    } else if ((fr.type === "close" || fr.type === "handback" || fr.type === "transfer") && c) {
      // The notice normally came before the ack; if not, say what was done.
      if (c.status !== "finished") {
        finish(c, fr.type === "transfer" ? "transferred" : fr.type === "close" ? "closed" : "handed_back",
          fr.type === "transfer" ? "Transferred to " + fr.team :
            fr.type === "close" ? "Closed by you" : "Handed back to the bot");
      }
    } else if ((fr.type === "claim" || fr.type === "takeover") && f.duplicate && !c) {
      wanted = fr.session;  // applied before the connection dropped: fetch the chat
      openChat(fr.session);
    } else if (fr.type === "ticket_update") {
      askTickets();
    } else if (fr.type === "reassign") {
      chatError(fr.session, "Reassigned to " + fr.agent + ".");
      announce("Reassigned to " + fr.agent);
    }
  }

  var MESSAGES = {
    not_available: "Someone else claimed this chat, or it left the queue.",
    not_allowed: "This chat is not in your teams.",
    not_yours: "This chat is no longer assigned to you.",
    session_gone: "The shopper's session has expired.",
    store_unavailable: "Not saved: the server cannot reach its store. Try again.",
    rate_limited: "Too many messages at once; try again in a moment."
  };

  // A reply the server could not store (its store away) goes again by itself, with its id (so
  // it is stored once), after 1 s, then 2, 4, up to 10 s, shown as "sending again…" meanwhile:
  // nothing for the agent to retry by hand once the store is back.
  function resendLater(entry) {
    entry.delay = Math.min((entry.delay || 500) * 2, 10000);
    setTimeout(function () { if (outbox.indexOf(entry) >= 0) transmit(entry.frame); }, entry.delay);
  }

  function onError(f) {
    var waiting = f.code === "store_unavailable" && f.id ? outbox.filter(function (e) { return e.frame.id === f.id; })[0] : null;
    if (waiting && waiting.frame.type === "reply") {
      var rc = chats[waiting.frame.session];
      if (rc) {
        rc.pending.forEach(function (p) { if (p.id === f.id) p.retrying = true; });
        if (rc.sid === active) renderPending(rc);
      }
      resendLater(waiting);
      return;
    }
    var entry = f.id ? take(f.id) : null;
    connState();
    var message = f.message || MESSAGES[f.code] || f.code;
    // Not an answer to something the agent did (a background refresh, a login the store could
    // not check): the socket closes and comes back by itself, and "Reconnecting…" says so.
    if (!entry) { if (f.code !== "store_unavailable") flash(message); return; }
    var fr = entry.frame, sid = fr.session, c = chats[sid];
    if (fr.type === "ticket" || fr.type === "ticket_update") {
      var te = $("ticket-error");
      te.textContent = message;
      te.hidden = $("ticket-view").hidden;
      if (te.hidden) flash(message); else announce(message);
      return;
    }
    if (fr.type === "open") delete opening[sid];
    if (f.code === "session_gone" && c) finish(c, "gone", "The shopper's session has expired");
    if (f.code === "not_yours" && c && c.status === "mine") finish(c, "lost", "No longer assigned to you");
    if (fr.type === "claim" || fr.type === "takeover") {
      if (wanted === sid) wanted = null;
      var row = queue.rows[sid];
      if (row) row.claim.disabled = false;
      if (f.code === "not_available") {
        announce("Chat claimed by someone else");
        message = "Chat claimed by someone else.";
      }
      if (active === sid) chatError(sid, message); else flash(message);
      if (c && c.sid === active) renderChatState();
      return;
    }
    if (fr.type === "reply" && c) {
      // The text is kept: shown as not sent, with Retry and Edit.
      c.pending.forEach(function (p) { if (p.id === fr.id) p.error = MESSAGES[f.code] || message; });
      if (c.sid === active) renderPending(c);
      chatError(sid, "Your reply was not sent: " + (MESSAGES[f.code] || message));
      return;
    }
    if (c && (fr.type === "close" || fr.type === "handback" || fr.type === "transfer")) {
      c.acting = null;  // not done: the chat is still yours (and "My chats" says so again)
      if (f.code === "nobody_online") message = "Nobody in " + fr.team + " is online; the chat stays with you.";
      if (f.code === "store_unavailable") message = MESSAGES.store_unavailable;
      renderMine();
      if (c.sid === active) renderChatState();
    }
    if (sid) chatError(sid, message); else flash(message);
  }

  function chatError(sid, message) {
    var c = chats[sid];
    if (!c) { flash(message); return; }
    c.error = message;
    if (sid === active) {
      var p = $("chat-error");
      p.textContent = message;
      p.hidden = false;
    }
    announce(message);
  }

  function flash(message) {
    var conn = $("conn");
    conn.textContent = message;
    announce(message);
    setTimeout(function () { if (conn.textContent === message) connState(); }, 5000);
  }

  // -- the queue, my chats, other agents' chats: keyed rows -----------------------------
  // One row per session, made once and updated in place; rows move only when the order
  // changes, and a focused button stays focused.
  // Put `node` where `cursor` is (the next place in the list's order); the next place.
  function place(list, node, cursor) {
    if (node === cursor) return node.nextSibling;
    if (node.parentNode === list && node.contains(document.activeElement)) {
      // Move the rows in between past the focused row, instead of the row itself.
      while (cursor && cursor !== node) {
        var next = cursor.nextSibling;
        list.insertBefore(cursor, node.nextSibling);
        cursor = next;
      }
      return node.nextSibling;
    }
    list.insertBefore(node, cursor);
    return cursor;
  }

  function removeRow(list, node, heading) {
    if (node.contains(document.activeElement)) {
      var next = node.nextSibling || node.previousSibling;
      var target = next && (next.querySelector("button.primary") || next.querySelector("button"));
      list.removeChild(node);
      (target || $(heading)).focus();
    } else if (node.parentNode === list) {
      list.removeChild(node);
    }
  }

  function queueRow(r) {
    var li = el("li");
    li.dataset.session = r.session;
    var title = el("strong", null, "who");
    title.id = "q-" + r.session;
    var preview = el("p", null, "preview");
    var meta = el("span", null, "meta");
    var wait = el("span", null, "wait");
    var buttons = el("div", null, "row-actions");
    var read = el("button", "Read");
    read.type = "button";
    read.setAttribute("aria-describedby", title.id);
    read.addEventListener("click", function () { readChat(r.session); });
    var claim = el("button", "Claim", "primary");
    claim.type = "button";
    claim.setAttribute("aria-describedby", title.id);
    claim.addEventListener("click", function () { claimChat(r.session); });
    buttons.appendChild(read);
    buttons.appendChild(claim);
    [title, meta, preview, wait, buttons].forEach(function (n) { li.appendChild(n); });
    return { li: li, title: title, preview: preview, meta: meta, wait: wait, claim: claim };
  }

  function fillQueueRow(row, r) {
    row.li.className = r.priority || "";
    var s = r.shopper || {};
    setText(row.title, s.name && s.email ? s.name + " · " + s.email : whoOf(s));
    setText(row.meta, [r.reason || "handoff", r.team, r.flow && "flow " + r.flow, r.priority]
      .filter(Boolean).join(" · "));
    setText(row.preview, r.preview ? "“" + r.preview + "”" : "");
    row.preview.hidden = !r.preview;
  }

  function dropWaiting(sid) {
    var row = queue.rows[sid];
    if (!row) return;
    removeRow($("queue"), row.li, "waiting-title");
    delete queue.rows[sid];
    delete queue.records[sid];
    countWaiting();
  }

  function countWaiting() {
    var count = Object.keys(queue.rows).length;
    setText($("waiting-count"), count);
    $("queue-empty").hidden = count > 0;
    document.title = (count ? "(" + count + ") " : "") + "flowengine console";
  }

  function onQueue(f) {
    received = Date.now();
    // A chat this page holds is not waiting, whatever a queue frame read before the claim says.
    f.waiting = f.waiting.filter(function (r) { return !(chats[r.session] && chats[r.session].status === "mine"); });
    var seen = {}, list = $("queue"), added = [];
    var pendingClaims = {};
    outbox.forEach(function (e) { if (e.frame.type === "claim") pendingClaims[e.frame.session] = true; });
    f.waiting.forEach(function (r) { seen[r.session] = true; });
    var mineNow = {};
    f.mine.forEach(function (r) { mineNow[r.session] = r; });
    var othersNow = {};
    (f.others || []).forEach(function (r) { othersNow[r.session] = r; });
    Object.keys(queue.rows).forEach(function (sid) {
      if (seen[sid]) return;
      var gone = queue.records[sid];
      removeRow(list, queue.rows[sid].li, "waiting-title");
      delete queue.rows[sid];
      delete queue.records[sid];
      if (mineNow[sid] || pendingClaims[sid] || queue.first) return;
      var who = whoOf(gone && gone.shopper);
      announce(othersNow[sid] ? "Chat claimed by someone else: " + who : "No longer waiting: " + who);
    });
    var cursor = list.firstChild;
    f.waiting.forEach(function (r) {
      var row = queue.rows[r.session];
      if (!row) {
        row = queue.rows[r.session] = queueRow(r);
        added.push(r);
      }
      row.claim.disabled = !!pendingClaims[r.session];
      queue.records[r.session] = r;
      fillQueueRow(row, r);
      cursor = place(list, row.li, cursor);
    });
    if (!queue.first && added.length) {
      beep();
      added.forEach(function (r) { announce("New chat waiting: " + whoOf(r.shopper) + ", " + (r.reason || r.team)); });
    }
    queue.first = false;
    list.removeAttribute("aria-busy");
    tickWaits();
    countWaiting();

    // My chats: one the server says is mine that this page does not show as mine is opened;
    // one that left `mine` in two queue frames running (one may have been read before a
    // claim) without a notice saying why was taken from this agent.
    Object.keys(mineNow).forEach(function (sid) {
      var c = chats[sid];
      if (c && c.status === "mine") { c.missing = 0; return; }
      if (!c && !opening[sid]) { beep(); announce("New chat assigned to you: " + whoOf(mineNow[sid].shopper)); }
      openChat(sid);
    });
    Object.keys(chats).forEach(function (sid) {
      var c = chats[sid];
      if (c.status !== "mine" || mineNow[sid]) return;
      c.missing += 1;
      if (c.missing >= 2 && !c.acting) {
        var other = othersNow[sid];
        finish(c, "requeued", other ? "Taken over by " + (other.agent_name || other.agent) : "Requeued (taken from you)");
      }
    });
    if (f.others && me && me.role === "admin") renderOthers(f.others);
  }

  // The wait of every waiting chat, moved on every second between queue frames.
  function tickWaits() {
    var extra = received ? (Date.now() - received) / 1000 : 0;
    Object.keys(queue.rows).forEach(function (sid) {
      var r = queue.records[sid];
      if (r) setText(queue.rows[sid].wait, "waiting " + fmtWait((r.waiting || 0) + extra));
    });
  }
  setInterval(function () { if (ready) tickWaits(); }, 1000);

  function renderOthers(records) {
    var list = $("others"), seen = {}, names = {};
    records.forEach(function (r) { seen[r.session] = true; });
    Object.keys(others.rows).forEach(function (sid) {
      if (!seen[sid]) { removeRow(list, others.rows[sid].li, "others-title"); delete others.rows[sid]; }
    });
    var cursor = list.firstChild;
    records.forEach(function (r) {
      names[r.agent] = true;
      var row = others.rows[r.session];
      if (!row) {
        row = { li: el("li") };
        row.title = el("strong", null, "who");
        row.title.id = "o-" + r.session;
        row.meta = el("span", null, "meta");
        var buttons = el("div", null, "row-actions");
        var read = el("button", "Read");
        read.type = "button";
        read.setAttribute("aria-describedby", row.title.id);
        read.addEventListener("click", function () { readChat(r.session); });
        var take = el("button", "Take over", "primary");
        take.type = "button";
        take.setAttribute("aria-describedby", row.title.id);
        take.addEventListener("click", function () { takeOver(r.session); });
        buttons.appendChild(read);
        buttons.appendChild(take);
        [row.title, row.meta, buttons].forEach(function (n) { row.li.appendChild(n); });
        others.rows[r.session] = row;
      }
      setText(row.title, whoOf(r.shopper));
      setText(row.meta, "with " + (r.agent_name || r.agent) + " · " + [r.reason, r.team].filter(Boolean).join(" · "));
      cursor = place(list, row.li, cursor);
    });
    var datalist = $("agent-names");
    clear(datalist);
    Object.keys(names).forEach(function (n) { var o = el("option"); o.value = n; datalist.appendChild(o); });
    $("others-empty").hidden = records.length > 0;
  }

  function stateLabel(c) {
    if (c.status === "finished") return c.outcome;
    if (c.status === "mine") return c.acting ? "working…" : "yours";
    return c.heldBy ? "with " + c.heldBy + " · read only" : "waiting · read only";
  }

  function renderMine() {
    var list = $("mine"), seen = {};
    Object.keys(chats).forEach(function (sid) { if (chats[sid].held) seen[sid] = true; });
    Object.keys(mineRows).forEach(function (sid) {
      if (!seen[sid]) { removeRow(list, mineRows[sid].li, "mine-title"); delete mineRows[sid]; }
    });
    var cursor = list.firstChild;
    Object.keys(chats).forEach(function (sid) {
      var c = chats[sid];
      if (!c.held) return;
      var row = mineRows[sid];
      if (!row) {
        row = { li: el("li") };
        row.open = el("button", null, "row-main");
        row.open.type = "button";
        row.who = el("strong", null, "who");
        row.meta = el("span", null, "meta");
        row.badge = el("span", null, "unread");
        row.open.appendChild(row.who);
        row.open.appendChild(row.meta);
        row.open.appendChild(row.badge);
        row.open.addEventListener("click", function () { show(sid, true); });
        row.dismiss = el("button", "Dismiss", "dismiss");
        row.dismiss.type = "button";
        row.dismiss.addEventListener("click", function () { dismiss(sid); });
        row.li.appendChild(row.open);
        row.li.appendChild(row.dismiss);
        mineRows[sid] = row;
      }
      var p = c.packet || {};
      setText(row.who, whoOf(p.shopper));
      setText(row.meta, [p.reason, stateLabel(c)].filter(Boolean).join(" · "));
      setText(row.badge, c.unread ? c.unread + " new" : "");
      row.badge.hidden = !c.unread;
      row.li.className = (sid === active ? "active " : "") + (c.status === "finished" ? "finished" : "");
      if (sid === active) row.open.setAttribute("aria-current", "true");
      else row.open.removeAttribute("aria-current");
      row.dismiss.hidden = c.status !== "finished";
      row.dismiss.setAttribute("aria-label", "Dismiss the chat with " + whoOf(p.shopper));
      cursor = place(list, row.li, cursor);
    });
    $("mine-empty").hidden = Object.keys(seen).length > 0;
  }

  // -- one chat -------------------------------------------------------------------------
  function show(sid, focus) {
    var c = chats[sid];
    if (!c) return;
    if (active && active !== sid && chats[active]) {
      var prev = chats[active];
      prev.draft = $("reply").value;
      // A chat read but never held is let go of when another one is shown.
      if (!prev.held) delete chats[active];
    }
    var switched = active !== sid;
    active = sid;
    inbox.shown = null;
    $("ticket-view").hidden = true;
    c.unread = 0;
    $("empty").hidden = true;
    $("chat").hidden = false;
    $("context").hidden = false;
    var p = c.packet || {};
    $("chat-title").textContent = whoOf(p.shopper) + " · " + (p.flow || "") + " · " + (p.reason || "");
    if (switched) {
      $("reply").value = c.draft || "";
      $("typing").hidden = true;
      closeSlash();
    }
    renderTranscript(c);
    renderContext(p);
    renderNotes(c);
    renderChatState();
    renderMine();
    if (focus) {
      if (!$("reply").disabled) $("reply").focus();
      else $("chat-title").focus();
    }
  }

  function renderChatState() {
    var c = active && chats[active];
    if (!c) return;
    var mine = c.status === "mine";
    var finished = c.status === "finished";
    var admin = me && me.role === "admin";
    var state = $("chat-state");
    state.className = "state " + (finished ? "finished " + (c.kind || "") : mine ? "mine" : "reading");
    var label = finished ? c.outcome : mine ? (c.acting ? "Yours · " + actingLabel(c.acting) : "Yours") :
      c.heldBy ? "With " + c.heldBy + " · read only" :
        "Waiting" + (c.handoff && c.handoff.team ? " in " + c.handoff.team : "") + " · read only";
    setText(state, label);
    $("mine-actions").hidden = !mine;
    ["transfer", "handback", "close", "transfer-team"].forEach(function (id) { $(id).disabled = !!c.acting; });
    $("read-actions").hidden = mine || finished;
    $("chat-claim").hidden = !!c.heldBy || mine || finished;
    $("takeover").hidden = !admin || !c.heldBy;
    $("reassign-form").hidden = !admin || !c.heldBy;
    $("dismiss").hidden = !finished;
    var reply = $("reply");
    reply.disabled = !mine;
    reply.placeholder = mine ? "Reply to the shopper (Enter sends, Shift+Enter for a new line, / for canned responses)" :
      finished ? "This chat has ended: " + c.outcome : "Read only: claim this chat to reply";
    $("send").disabled = !mine;
    $("canned").disabled = !mine;
    $("note").disabled = !mine;
    $("note-send").disabled = !mine;
    var err = $("chat-error");
    err.textContent = c.error || "";
    err.hidden = !c.error;
  }

  function actingLabel(entry) {
    var fr = entry.frame;
    return fr.type === "close" ? "closing…" : fr.type === "handback" ? "handing back…" : "transferring to " + fr.team + "…";
  }

  function renderTranscript(c) {
    var t = $("transcript");
    clear(t);
    c.events.forEach(function (e) { var li = eventNode(e); if (li) t.appendChild(li); });
    renderPending(c);
    t.scrollTop = t.scrollHeight;
  }

  function appendEvent(e) {
    var t = $("transcript");
    var li = eventNode(e);
    if (!li) return;
    var nearBottom = t.scrollHeight - t.scrollTop - t.clientHeight < 80;
    t.insertBefore(li, t.querySelector("li.pending"));  // before replies still on their way
    if (nearBottom) t.scrollTop = t.scrollHeight;
  }

  function eventNode(e) {
    var li, head = el("span", null, "who");
    if (e.type === "message") {
      li = el("li", null, e.from);
      var c = chats[active];
      head.appendChild(document.createTextNode(
        e.from === "agent" ? (e.agent || "Agent") : e.from === "bot" ? "Bot" :
          e.from === "shopper" ? whoOf(c && c.packet.shopper) : "Notice"));
      var body = el("span", null, "text");
      if (e.from === "bot") rich(body, e.text || ""); else body.textContent = e.text || "";
      if (e.at) { head.appendChild(document.createTextNode(" · ")); head.appendChild(stamp(e.at)); }
      li.appendChild(head);
      li.appendChild(body);
      return li;
    }
    var text;
    if (e.type === "handoff") {
      text = {
        queued: "Waiting in " + e.queue + (e.position ? " (position " + e.position + ")" : ""),
        assigned: (e.agent || "An agent") + " joined",
        closed: e.by === "shopper" ? "The shopper left the chat" : "Closed by " + (e.agent || "an agent"),
        handed_back: "Handed back to the bot by " + (e.agent || "an agent"),
        offline: "Nobody available (" + (e.reason || "offline") + ")"
      }[e.status] || "handoff " + e.status;
      li = el("li", null, "handoff");
    } else if (e.type === "ended") {
      text = "Conversation ended (" + e.resolution + ")";
      li = el("li", null, "ended");
    } else return null;
    li.appendChild(el("span", text, "text"));
    if (e.at) { li.appendChild(document.createTextNode(" · ")); li.appendChild(stamp(e.at)); }
    return li;
  }

  function renderPending(c) {
    var t = $("transcript");
    Array.prototype.slice.call(t.querySelectorAll("li.pending")).forEach(function (n) { t.removeChild(n); });
    c.pending.forEach(function (p) {
      var li = el("li", null, "agent pending" + (p.error ? " failed" : ""));
      var how = p.error ? "not sent: " + p.error : p.retrying ? "not stored yet (the server cannot reach its store); sending again…" : "sending…";
      li.appendChild(el("span", (me ? me.name : "You") + " · " + how, "who"));
      li.appendChild(el("span", p.text, "text"));
      if (p.error && c.status === "mine") {
        var retry = el("button", "Retry");
        retry.type = "button";
        retry.addEventListener("click", function () {
          c.pending = c.pending.filter(function (q) { return q !== p; });
          sendReply(c, p.text);
        });
        li.appendChild(retry);
      }
      if (p.error) {
        var edit = el("button", c.status === "mine" ? "Edit" : "Discard");
        edit.type = "button";
        edit.addEventListener("click", function () {
          c.pending = c.pending.filter(function (q) { return q !== p; });
          if (c.status === "mine" && !$("reply").value.trim()) $("reply").value = p.text;
          renderPending(c);
          if (!$("reply").disabled) $("reply").focus();
        });
        li.appendChild(edit);
      }
      t.appendChild(li);
    });
    t.scrollTop = t.scrollHeight;
  }

  // The bot's **bold** and [links](https://...), built as elements; everything else is text.
  // A backslash before * [ ] or \ is that character as text: values a flow puts into its text
  // (a shopper's name) come escaped, so they never turn into links or bold (docs/protocol.md).
  // The same markup, read the same way, as the widget's rich() (tests/test_markup.py).
  var RICH = /\\([\\*\[\]])|\*\*((?:\\[\\*\[\]]|[^*\\])+)\*\*|\[((?:\\[\\*\[\]]|[^\]\\])+)\]\(((?:https?:\/\/|mailto:|tel:)[^\s)]+)\)/g;
  var ESCAPED = /\\([\\*\[\]])/g;
  function rich(node, text) {
    var last = 0, m, plain = "";
    RICH.lastIndex = 0;
    while ((m = RICH.exec(text))) {
      plain += text.slice(last, m.index);
      last = RICH.lastIndex;
      if (m[1] !== undefined) { plain += m[1]; continue; }
      node.appendChild(document.createTextNode(plain));
      plain = "";
      if (m[2] !== undefined) node.appendChild(el("strong", m[2].replace(ESCAPED, "$1")));
      else {
        var a = el("a", m[3].replace(ESCAPED, "$1"));
        a.href = m[4]; a.target = "_blank"; a.rel = "noopener noreferrer";
        node.appendChild(a);
      }
    }
    node.appendChild(document.createTextNode(plain + text.slice(last)));
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
    // What the shop's page passed in the widget's hello (a cart total, a plan): flat values.
    var given = p.context || {};
    dl($("page-context"), Object.keys(given).map(function (k) { return [k, given[k]]; }));
    $("page-context-title").hidden = !Object.keys(given).length;
  }

  function renderNotes(c) {
    var list = $("notes");
    clear(list);
    c.notes.forEach(function (n) {
      var li = el("li");
      li.appendChild(el("span", n.agent + ": " + n.text));
      if (n.at) { li.appendChild(document.createTextNode(" · ")); li.appendChild(stamp(n.at)); }
      list.appendChild(li);
    });
  }

  // -- acting: always on the chat in view -----------------------------------------------
  function claimChat(sid) {
    var row = queue.rows[sid];
    if (row) row.claim.disabled = true;
    wanted = sid;
    act({ type: "claim", session: sid });
  }

  function readChat(sid) {
    wanted = sid;
    if (chats[sid] && chats[sid].status !== "finished") { wanted = null; show(sid, true); return; }
    openChat(sid);
  }

  function takeOver(sid) {
    wanted = sid;
    act({ type: "takeover", session: sid });
  }

  function dismiss(sid) {
    var c = chats[sid];
    if (!c || c.status !== "finished") return;
    var row = mineRows[sid];
    var next = row && (row.li.nextSibling || row.li.previousSibling);
    delete chats[sid];
    if (active === sid) {
      active = null;
      $("chat").hidden = true;
      $("context").hidden = true;
      $("empty").hidden = false;
      $("reply").value = "";
    }
    renderMine();
    announce("Dismissed the chat with " + whoOf(c.packet.shopper));
    var target = null;
    if (next && next.parentNode) {
      var d = next.querySelector("button.dismiss");
      target = d && !d.hidden ? d : next.querySelector("button.row-main");
    }
    (target || $("mine-title")).focus();
  }

  function sendReply(c, text) {
    var entry = act({ type: "reply", session: c.sid, text: text });
    var last = c.events.length ? c.events[c.events.length - 1].seq : 0;
    c.pending.push({ id: entry.frame.id, text: text, error: null, after: last });
    c.error = "";
    if (c.sid === active) { renderPending(c); renderChatState(); }
  }

  $("reply-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var c = active && chats[active];
    var text = $("reply").value.trim();
    if (!text || !c || c.status !== "mine") return;
    sendReply(c, text);
    $("reply").value = "";  // the text is on screen as "sending…" until the server has it
    c.draft = "";
    closeSlash();
  });

  function terminal(type, extra) {
    var c = active && chats[active];
    if (!c || c.status !== "mine" || c.acting) return;
    var frame = { type: type, session: c.sid };
    if (extra) Object.keys(extra).forEach(function (k) { frame[k] = extra[k]; });
    c.acting = act(frame);
    c.error = "";
    renderChatState();
    renderMine();
  }
  $("close").addEventListener("click", function () { terminal("close"); });
  $("handback").addEventListener("click", function () { terminal("handback"); });
  $("transfer").addEventListener("click", function () { terminal("transfer", { team: $("transfer-team").value }); });
  $("dismiss").addEventListener("click", function () { if (active) dismiss(active); });
  $("chat-claim").addEventListener("click", function () { if (active) claimChat(active); });
  $("takeover").addEventListener("click", function () { if (active) takeOver(active); });
  $("reassign-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var agent = $("reassign-to").value.trim();
    if (!active || !agent) return;
    act({ type: "reassign", session: active, agent: agent });
    $("reassign-to").value = "";
  });

  $("note-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var c = active && chats[active];
    var text = $("note").value.trim();
    if (!text || !c || c.status !== "mine") return;
    act({ type: "note", session: c.sid, text: text });  // the field is cleared on the ack
  });

  $("reply").addEventListener("input", function () {
    var c = active && chats[active];
    if (c && c.status === "mine" && Date.now() - lastTyping > 2000) {
      lastTyping = Date.now();
      transmit({ type: "typing", session: c.sid });
    }
    updateSlash();
  });
  $("canned").addEventListener("change", function () {
    var item = canned[Number(this.value)];
    if (this.value !== "" && item) { $("reply").value = item.text; this.value = ""; $("reply").focus(); }
  });
  $("status").addEventListener("change", function () { transmit({ type: "status", status: this.value }); });

  // -- the inbox: tickets (left messages, problem reports) -------------------------------
  function askTickets() {
    transmit({ type: "tickets", status: $("inbox-status").value, query: $("inbox-query").value.trim() });
  }
  setInterval(function () { if (ready) askTickets(); }, 10000);
  var queryTimer = null;
  $("inbox-query").addEventListener("input", function () { clearTimeout(queryTimer); queryTimer = setTimeout(askTickets, 250); });
  $("inbox-status").addEventListener("change", askTickets);
  $("inbox-filter").addEventListener("submit", function (ev) { ev.preventDefault(); askTickets(); });

  function ticketName(t) {
    return "#" + (t.ticket_id || t.key) + " · " + (t.name || t.email || "Shopper");
  }

  function renderTickets(items) {
    var list = $("inbox"), seen = {};
    items.forEach(function (t) { seen[t.key] = true; });
    Object.keys(inbox.rows).forEach(function (key) {
      if (!seen[key]) { removeRow(list, inbox.rows[key].li, "inbox-title"); delete inbox.rows[key]; }
    });
    var cursor = list.firstChild;
    items.forEach(function (t, i) {
      var row = inbox.rows[t.key];
      if (!row) {
        row = { li: el("li") };
        row.title = el("strong", null, "who");
        row.title.id = "t-" + i + "-" + Date.now().toString(36);
        row.meta = el("span", null, "meta");
        row.details = el("p", null, "preview");
        var buttons = el("div", null, "row-actions");
        var open = el("button", "Open");
        open.type = "button";
        open.setAttribute("aria-describedby", row.title.id);
        open.addEventListener("click", function () { openTicket(t.key); });
        buttons.appendChild(open);
        [row.title, row.meta, row.details, buttons].forEach(function (n) { row.li.appendChild(n); });
        inbox.rows[t.key] = row;
      }
      row.li.className = t.status === "done" ? "done" : "";
      setText(row.title, ticketName(t));
      setText(row.meta, [t.kind, t.team, t.number && "order " + t.number, t.status,
        t.assignee ? "for " + t.assignee : null].filter(Boolean).join(" · "));
      setText(row.details, t.details || "");
      row.details.hidden = !t.details;
      cursor = place(list, row.li, cursor);
    });
    setText($("inbox-count"), items.length);
    $("inbox-empty").hidden = items.length > 0;
  }

  function openTicket(key) {
    inbox.wanted = key;
    act({ type: "ticket", ticket: key });
  }

  function onTicket(t) {
    if (!t) return;
    if (inbox.wanted === t.key || (inbox.shown && inbox.shown.key === t.key)) {
      var asked = inbox.wanted === t.key;
      inbox.wanted = null;
      showTicket(t, asked);
    }
  }

  // A ticket takes the place of the chat: no chat is in view, so no reply can go astray.
  function showTicket(t, focus) {
    if (active && chats[active]) {
      chats[active].draft = $("reply").value;
      if (!chats[active].held) delete chats[active];
    }
    active = null;
    closeSlash();
    inbox.shown = t;
    $("chat").hidden = true;
    $("context").hidden = true;
    $("empty").hidden = true;
    $("ticket-view").hidden = false;
    $("ticket-error").hidden = true;
    setText($("ticket-title"), ticketName(t));
    var state = $("ticket-state");
    state.className = "state " + (t.status === "done" ? "finished" : "mine");
    setText(state, (t.status === "done" ? "Done" : "Open") + (t.assignee ? " · for " + t.assignee : " · nobody's yet"));
    setText($("ticket-done"), t.status === "done" ? "Reopen" : "Mark done");
    var mine = me && t.assignee === me.username;
    setText($("ticket-assign"), mine ? "Unassign" : "Assign to me");
    var created = t.created_at ? dateFormat.format(new Date(t.created_at * 1000)) : null;
    dl($("ticket-fields"), [["kind", t.kind], ["team", t.team], ["name", t.name], ["email", t.email],
      ["order", t.number], ["created", created], ["message", t.details]]);
    var list = $("ticket-transcript");
    clear(list);
    ((t.packet && t.packet.transcript) || []).forEach(function (e) { var li = eventNode(e); if (li) list.appendChild(li); });
    renderMine();
    if (focus) $("ticket-title").focus();
  }

  $("ticket-done").addEventListener("click", function () {
    var t = inbox.shown;
    if (t) act({ type: "ticket_update", ticket: t.key, status: t.status === "done" ? "open" : "done" });
  });
  $("ticket-assign").addEventListener("click", function () {
    var t = inbox.shown;
    if (t && me) act({ type: "ticket_update", ticket: t.key, assignee: t.assignee === me.username ? null : me.username });
  });
  $("ticket-back").addEventListener("click", function () {
    inbox.shown = null;
    $("ticket-view").hidden = true;
    $("empty").hidden = false;
    $("inbox-title").focus();
  });

  // -- "/" for canned responses: a listbox under the reply box ------------------------
  var slash = { items: [], index: 0, open: false };
  function updateSlash() {
    var m = /^\/([^\n]*)$/.exec($("reply").value);
    if (!m || !canned.length || $("reply").disabled) { closeSlash(); return; }
    var q = m[1].trim().toLowerCase();
    slash.items = canned.filter(function (c) {
      return !q || c.title.toLowerCase().indexOf(q) >= 0 || c.text.toLowerCase().indexOf(q) >= 0;
    });
    slash.index = 0;
    renderSlash();
  }
  function renderSlash() {
    var list = $("slash"), reply = $("reply");
    clear(list);
    slash.open = true;
    list.hidden = false;
    if (!slash.items.length) {
      list.appendChild(el("li", "No canned response matches", "none"));
      reply.removeAttribute("aria-activedescendant");
      return;
    }
    slash.items.forEach(function (c, i) {
      var li = el("li");
      li.id = "slash-" + i;
      li.setAttribute("role", "option");
      li.setAttribute("aria-selected", i === slash.index ? "true" : "false");
      li.appendChild(el("strong", c.title));
      li.appendChild(el("span", c.text, "meta"));
      li.addEventListener("mousedown", function (ev) { ev.preventDefault(); });  // keep the focus
      li.addEventListener("click", function () { slash.index = i; insertSlash(); });
      list.appendChild(li);
    });
    reply.setAttribute("aria-activedescendant", "slash-" + slash.index);
    var current = $("slash-" + slash.index);
    if (current && current.scrollIntoView) current.scrollIntoView({ block: "nearest" });
  }
  function closeSlash() {
    if (!slash.open) return;
    slash.open = false;
    $("slash").hidden = true;
    clear($("slash"));
    $("reply").removeAttribute("aria-activedescendant");
  }
  function insertSlash() {
    var item = slash.items[slash.index];
    if (!item) return;
    var reply = $("reply");
    reply.value = item.text;
    closeSlash();
    reply.focus();
    reply.setSelectionRange(reply.value.length, reply.value.length);
    announce("Inserted " + item.title);
  }
  $("reply").addEventListener("keydown", function (ev) {
    if (slash.open) {
      var n = slash.items.length;
      if (ev.key === "ArrowDown" && n) { ev.preventDefault(); slash.index = (slash.index + 1) % n; renderSlash(); return; }
      if (ev.key === "ArrowUp" && n) { ev.preventDefault(); slash.index = (slash.index - 1 + n) % n; renderSlash(); return; }
      if (ev.key === "Escape") { ev.preventDefault(); closeSlash(); return; }
      if ((ev.key === "Enter" || ev.key === "Tab") && !ev.shiftKey && n) { ev.preventDefault(); insertSlash(); return; }
    }
    if (ev.key === "Enter" && !ev.shiftKey) { ev.preventDefault(); $("reply-form").requestSubmit(); }
  });
  $("reply").addEventListener("blur", function () { setTimeout(closeSlash, 150); });

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
