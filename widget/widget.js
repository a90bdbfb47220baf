/* flowengine chat widget: one script tag, Shadow DOM, menus first, survives reloads.
 *
 *   <script src="https://your-server/widget.js" data-title="Help" data-color="#1f3b2d" defer></script>
 *
 * Speaks the protocol in docs/protocol.md. Shopper and agent text is only ever inserted as text
 * nodes; the bot's **bold** and [links](https://...) are built as elements, never as HTML.
 */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || window.FlowEngine) return;
  var cfg = script.dataset;
  var base = new URL(cfg.server || script.src, location.href);
  var wsUrl = (base.protocol === "https:" ? "wss://" : "ws://") + base.host + "/ws";
  var key = "flowengine:" + base.host;
  var locale = cfg.locale || (navigator.language || "en");
  var color = /^#[0-9a-fA-F]{3,8}$/.test(cfg.color || "") ? cfg.color : "#1f3b2d";
  var title = cfg.title || "Chat with us";

  var store = {
    get: function (k) { try { return localStorage.getItem(key + ":" + k); } catch (e) { return null; } },
    set: function (k, v) { try { localStorage.setItem(key + ":" + k, v); } catch (e) { /* private mode */ } },
    del: function (k) { try { localStorage.removeItem(key + ":" + k); } catch (e) { /* ignore */ } }
  };

  // -- DOM, isolated in a shadow root so the shop's CSS cannot reach in (nor ours out) --------
  var host = document.createElement("div");
  host.setAttribute("data-flowengine", "");
  var root = host.attachShadow({ mode: "open" });
  var css = [
    ":host{all:initial}",
    "*{box-sizing:border-box;font-family:system-ui,-apple-system,'Segoe UI',Roboto,'Noto Sans','Noto Sans Thai',sans-serif}",
    ".launcher{position:fixed;right:20px;bottom:20px;width:58px;height:58px;border-radius:50%;border:0;background:" + color + ";color:#fff;cursor:pointer;box-shadow:0 4px 14px rgba(0,0,0,.25);z-index:2147483646;font-size:26px;display:flex;align-items:center;justify-content:center}",
    ".badge{position:absolute;top:-2px;right:-2px;min-width:20px;height:20px;border-radius:10px;background:#d33;color:#fff;font-size:12px;line-height:20px;padding:0 5px;display:none}",
    ".panel{position:fixed;right:20px;bottom:90px;width:370px;max-width:calc(100vw - 24px);height:min(600px,calc(100vh - 110px));background:#fff;color:#1b1b1b;border-radius:14px;box-shadow:0 8px 30px rgba(0,0,0,.25);display:none;flex-direction:column;overflow:hidden;z-index:2147483647;font-size:15px;line-height:1.4}",
    ".panel.open{display:flex}",
    "header{background:" + color + ";color:#fff;padding:12px 14px;display:flex;align-items:center;gap:8px}",
    "header h2{font-size:16px;margin:0;flex:1}",
    "header button{background:transparent;border:0;color:#fff;font-size:20px;cursor:pointer;padding:2px 6px}",
    ".status{font-size:12px;padding:4px 14px;background:#fff4d6;color:#6b5200;display:none}",
    ".log{flex:1;overflow-y:auto;padding:12px;display:flex;flex-direction:column;gap:8px;background:#f6f6f4}",
    ".msg{max-width:85%;padding:8px 12px;border-radius:14px;white-space:pre-wrap;word-wrap:break-word}",
    ".bot,.agent{align-self:flex-start;background:#fff;border:1px solid #e3e3e0}",
    ".agent{border-color:" + color + "}",
    ".shopper{align-self:flex-end;background:" + color + ";color:#fff}",
    ".system,.notice{align-self:center;font-size:12px;color:#555;background:transparent;text-align:center}",
    ".msg a{color:inherit}",
    ".options{display:flex;flex-wrap:wrap;gap:6px;padding:8px 12px;background:#f6f6f4}",
    ".options button{border:1px solid " + color + ";color:" + color + ";background:#fff;border-radius:16px;padding:6px 12px;cursor:pointer;font-size:14px}",
    ".options button:focus-visible,.launcher:focus-visible,form button:focus-visible{outline:3px solid #ffbf47;outline-offset:2px}",
    "form{display:flex;gap:6px;padding:10px;border-top:1px solid #e3e3e0}",
    "form input{flex:1;padding:8px 10px;border:1px solid #ccc;border-radius:8px;font-size:15px}",
    "form button{background:" + color + ";color:#fff;border:0;border-radius:8px;padding:0 14px;cursor:pointer}",
    ".tools{display:flex;gap:12px;padding:0 12px 10px;font-size:12px}",
    ".tools button{background:none;border:0;color:#555;text-decoration:underline;cursor:pointer;padding:0}",
    "@media (max-width:480px){.panel{right:0;bottom:0;width:100vw;max-width:100vw;height:100%;border-radius:0}}",
    "@media (prefers-reduced-motion:no-preference){.panel.open{animation:pop .15s ease-out}@keyframes pop{from{transform:translateY(8px);opacity:0}}}"
  ].join("\n");
  var style = document.createElement("style");
  style.textContent = css;
  root.appendChild(style);

  function el(tag, attrs, text) {
    var n = document.createElement(tag);
    for (var k in attrs || {}) n.setAttribute(k, attrs[k]);
    if (text != null) n.textContent = text;
    return n;
  }

  var launcher = el("button", { class: "launcher", "aria-label": "Open chat", "aria-expanded": "false" });
  var SVG = "http://www.w3.org/2000/svg";
  var icon = document.createElementNS(SVG, "svg");
  icon.setAttribute("viewBox", "0 0 24 24");
  icon.setAttribute("width", "28");
  icon.setAttribute("height", "28");
  icon.setAttribute("aria-hidden", "true");
  var path = document.createElementNS(SVG, "path");
  path.setAttribute("fill", "currentColor");
  path.setAttribute("d", "M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4H4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z");
  icon.appendChild(path);
  launcher.appendChild(icon);
  var badge = el("span", { class: "badge", "aria-hidden": "true" });
  launcher.appendChild(badge);
  var panel = el("div", { class: "panel", role: "dialog", "aria-label": title, "aria-modal": "false" });
  var header = el("header");
  header.appendChild(el("h2", {}, title));
  var closeBtn = el("button", { "aria-label": "Close chat" }, "×");
  header.appendChild(closeBtn);
  var status = el("div", { class: "status", role: "status" });
  var log = el("div", { class: "log", role: "log", "aria-live": "polite", "aria-label": "Conversation" });
  var options = el("div", { class: "options", role: "group", "aria-label": "Choices" });
  var form = el("form");
  var input = el("input", { "aria-label": "Your message", autocomplete: "off", disabled: "" });
  var sendBtn = el("button", { type: "submit", disabled: "" }, "Send");
  form.appendChild(input);
  form.appendChild(sendBtn);
  var tools = el("div", { class: "tools" });
  var personBtn = el("button", { type: "button" }, "Talk to a person");
  var restartBtn = el("button", { type: "button" }, "Start over");
  tools.appendChild(personBtn);
  tools.appendChild(restartBtn);
  [header, status, log, options, form, tools].forEach(function (n) { panel.appendChild(n); });
  root.appendChild(panel);
  root.appendChild(launcher);

  // -- rendering -------------------------------------------------------------------------
  var LINK = /\*\*([^*]+)\*\*|\[([^\]]+)\]\(((?:https?:\/\/|mailto:|tel:)[^\s)]+)\)/g;
  function rich(node, text) {
    var last = 0, m;
    LINK.lastIndex = 0;
    while ((m = LINK.exec(text))) {
      node.appendChild(document.createTextNode(text.slice(last, m.index)));
      if (m[1] !== undefined) node.appendChild(el("strong", {}, m[1]));
      else node.appendChild(el("a", { href: m[3], target: "_blank", rel: "noopener noreferrer" }, m[2]));
      last = LINK.lastIndex;
    }
    node.appendChild(document.createTextNode(text.slice(last)));
  }

  var unread = 0;
  var lastSeq = 0;
  var current = null; // the latest bot message with options or input

  function show(e) {
    if (e.seq <= lastSeq) return; // never twice
    lastSeq = e.seq;
    if (e.type === "message") {
      var who = e.from === "shopper" ? "shopper" : e.from === "agent" ? "agent" : e.from === "system" ? "system" : "bot";
      var bubble = el("div", { class: "msg " + who });
      if (who === "bot") rich(bubble, e.text); else bubble.textContent = e.text;
      log.appendChild(bubble);
      if (who !== "shopper") {
        current = e;
        if (!panel.classList.contains("open")) { unread++; badge.textContent = String(unread); badge.style.display = "block"; }
      }
    } else if (e.type === "handoff") {
      var labels = { queued: "Waiting for a person…", assigned: "A person joined the chat", offline: "Nobody is available right now", closed: "The person closed the chat" };
      log.appendChild(el("div", { class: "msg notice" }, labels[e.status] || e.status));
      current = null;
    } else if (e.type === "ended") {
      log.appendChild(el("div", { class: "msg notice" }, "Conversation ended. Start over any time."));
      current = null;
    }
    log.scrollTop = log.scrollHeight;
  }

  function controls() {
    options.textContent = "";
    var ask = current && current.input;
    (current && current.options || []).forEach(function (o) {
      var b = el("button", { type: "button" }, o.label);
      b.addEventListener("click", function () {
        if (o.url) { window.open(o.url, "_blank", "noopener,noreferrer"); return; }
        act({ type: "choose", option: o.id });
      });
      options.appendChild(b);
    });
    var kinds = { email: "email", number: "text", tel: "tel", date: "date", text: "text" };
    input.type = ask ? (kinds[ask.kind] || "text") : "text";
    input.inputMode = ask && ask.kind === "number" ? "decimal" : "";
    input.disabled = !ask && !withAgent;
    sendBtn.disabled = input.disabled;
    input.placeholder = input.disabled ? "Choose an option above" : "Type your answer…";
    log.scrollTop = log.scrollHeight;
  }

  // -- connection ------------------------------------------------------------------------
  var ws = null, backoff = 500, pending = [], counter = 0, withAgent = false, everConnected = false;

  function setStatus(text) { status.textContent = text || ""; status.style.display = text ? "block" : "none"; }

  function connect() {
    ws = new WebSocket(wsUrl);
    ws.onopen = function () {
      backoff = 500;
      var context = { page: { url: location.href.slice(0, 500), title: document.title.slice(0, 200) } };
      ws.send(JSON.stringify({ type: "hello", session: store.get("session"), last_seq: lastSeq, locale: locale, context: context }));
    };
    ws.onmessage = function (m) {
      var f;
      try { f = JSON.parse(m.data); } catch (e) { return; }
      if (f.type === "session") {
        store.set("session", f.session);
        everConnected = true;
        setStatus(f.expired ? "Your previous conversation expired; here is a new one." : "");
        if (f.expired || !f.resumed) { log.textContent = ""; lastSeq = 0; }
        pending.forEach(function (p) { ws.send(JSON.stringify(p)); }); // resent once; ids dedupe
      } else if (f.type === "ack") {
        pending = pending.filter(function (p) { return p.id !== f.id; });
      } else if (f.type === "error") {
        pending = pending.filter(function (p) { return p.id !== f.id; });
        if (f.code !== "unknown_option") log.appendChild(el("div", { class: "msg notice", role: "alert" }, f.message));
      } else if (f.seq) {
        if (f.type === "handoff") withAgent = f.status === "queued" || f.status === "assigned";
        show(f);
        controls();
      }
    };
    ws.onclose = function () {
      setStatus(everConnected ? "Reconnecting…" : "Connecting…");
      setTimeout(connect, backoff + Math.random() * 300);
      backoff = Math.min(backoff * 2, 10000);
    };
  }

  function act(frame) {
    counter += 1;
    frame.id = "w" + Date.now().toString(36) + counter;
    pending.push(frame);
    if (ws && ws.readyState === 1) ws.send(JSON.stringify(frame));
    else setStatus("Offline: your message will be sent when the connection is back.");
  }

  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var text = input.value.trim();
    if (!text) return;
    input.value = "";
    act({ type: "text", text: text });
  });
  personBtn.addEventListener("click", function () { act({ type: "handoff" }); });
  restartBtn.addEventListener("click", function () { act({ type: "restart" }); });

  function open() {
    panel.classList.add("open");
    launcher.setAttribute("aria-expanded", "true");
    launcher.setAttribute("aria-label", "Close chat");
    unread = 0; badge.style.display = "none";
    store.set("open", "1");
    var first = options.querySelector("button") || (input.disabled ? closeBtn : input);
    first.focus();
  }
  function close() {
    panel.classList.remove("open");
    launcher.setAttribute("aria-expanded", "false");
    launcher.setAttribute("aria-label", "Open chat");
    store.del("open");
    launcher.focus();
  }
  launcher.addEventListener("click", function () { panel.classList.contains("open") ? close() : open(); });
  closeBtn.addEventListener("click", close);
  panel.addEventListener("keydown", function (ev) { if (ev.key === "Escape") close(); });

  window.FlowEngine = { open: open, close: close };
  document.body.appendChild(host);
  connect();
  controls();
  if (store.get("open") || cfg.open === "true") open();
})();
