/* flowengine chat widget: one script tag, Shadow DOM, menus first, survives reloads.
 *
 *   <script src="https://your-server/widget.js" data-title="Help" data-color="#1f3b2d" defer></script>
 *
 * Options are data attributes, or FlowEngine.init({...}) with data-manual="true". The JS API is
 * FlowEngine.open(), .close(), .identify({email, name, userHash}), .on(event, fn). See
 * docs/widget.md. Speaks docs/protocol.md. Shopper and agent text is only ever inserted as text
 * nodes; the bot's **bold** and [links](https://...) are built as elements, never parsed as HTML.
 */
(function () {
  "use strict";
  if (window.FlowEngine && window.FlowEngine.version) return;
  var script = document.currentScript;
  var scriptSrc = script ? script.src : location.href;
  var listeners = {};
  var api = { version: "1", init: init, open: noop, close: noop, identify: identify, on: on };
  window.FlowEngine = api;
  function noop() {}
  // Plain loops, not Array.prototype.forEach/filter/some: a host page may have replaced those.
  function each(list, fn) { for (var i = 0; i < list.length; i++) fn(list[i], i); }
  function without(list, id) {
    var out = [];
    for (var i = 0; i < list.length; i++) if (list[i].id !== id) out.push(list[i]);
    return out;
  }
  function on(name, fn) { (listeners[name] = listeners[name] || []).push(fn); }
  function emit(name, data) {
    each(listeners[name] || [], function (fn) { try { fn(data); } catch (e) { /* the page's bug */ } });
  }

  var pendingIdentity = null;
  function identify(who) { pendingIdentity = who || null; if (api._reconnect) api._reconnect(); }

  // The widget's own words, per locale (the flows bring their own translations).
  var STRINGS = {"en":{"chat":"Chat with us","open":"Open chat","close":"Close chat","conversation":"Conversation","typing":"Typing","choices":"Choices","message":"Your message","send":"Send","person":"Talk to a person","restart":"Start over","queued":"Waiting for a person…","position":"You are number {n} in line.","joined":"{name} joined the chat.","someone":"A person","offline":"Nobody is available right now.","closed":"The chat with a person has ended.","ended":"This conversation has ended. Start over any time.","newtab":"opens in a new tab","write":"Write a message…","choose":"Choose an option above","answer":"Type your answer…","expired":"Your previous conversation expired, so here is a new one.","notsent":"Not sent: the service is briefly unavailable. Please try again.","reconnecting":"Reconnecting…","connecting":"Connecting…","queuedoffline":"Offline: this will be sent when the connection is back.","back":"You're back with the assistant.","agenttyping":"typing…"},"cs":{"chat":"Napište nám","open":"Otevřít chat","close":"Zavřít chat","conversation":"Konverzace","typing":"Píše","choices":"Možnosti","message":"Vaše zpráva","send":"Odeslat","person":"Mluvit s člověkem","restart":"Začít znovu","queued":"Čekáte na kolegu…","position":"Jste {n}. v pořadí.","joined":"{name} se připojil(a) k chatu.","someone":"Kolega","offline":"Teď není nikdo k dispozici.","closed":"Chat s kolegou skončil.","ended":"Konverzace skončila. Kdykoli můžete začít znovu.","newtab":"otevře se v nové kartě","write":"Napište zprávu…","choose":"Vyberte možnost výše","answer":"Napište odpověď…","expired":"Předchozí konverzace vypršela, začínáme novou.","notsent":"Neodesláno: služba je na chvíli nedostupná. Zkuste to prosím znovu.","reconnecting":"Znovu se připojuji…","connecting":"Připojuji…","queuedoffline":"Offline: odešle se, až bude spojení zpět.","back":"Jste zpět u asistenta.","agenttyping":"píše…"},"th":{"chat":"แชทกับเรา","open":"เปิดแชท","close":"ปิดแชท","conversation":"บทสนทนา","typing":"กำลังพิมพ์","choices":"ตัวเลือก","message":"ข้อความของคุณ","send":"ส่ง","person":"คุยกับเจ้าหน้าที่","restart":"เริ่มใหม่","queued":"กำลังรอเจ้าหน้าที่…","position":"คุณอยู่ลำดับที่ {n}","joined":"{name} เข้าร่วมแชทแล้ว","someone":"เจ้าหน้าที่","offline":"ขณะนี้ไม่มีเจ้าหน้าที่ว่าง","closed":"การแชทกับเจ้าหน้าที่สิ้นสุดแล้ว","ended":"บทสนทนาสิ้นสุดแล้ว เริ่มใหม่ได้ทุกเมื่อ","newtab":"เปิดในแท็บใหม่","write":"พิมพ์ข้อความ…","choose":"เลือกตัวเลือกด้านบน","answer":"พิมพ์คำตอบ…","expired":"บทสนทนาก่อนหน้าหมดอายุแล้ว เริ่มบทสนทนาใหม่","notsent":"ยังไม่ได้ส่ง: บริการไม่พร้อมใช้งานชั่วคราว กรุณาลองอีกครั้ง","reconnecting":"กำลังเชื่อมต่อใหม่…","connecting":"กำลังเชื่อมต่อ…","queuedoffline":"ออฟไลน์: จะส่งเมื่อเชื่อมต่อได้อีกครั้ง","back":"คุณกลับมาคุยกับผู้ช่วยอัตโนมัติแล้ว","agenttyping":"กำลังพิมพ์…"},"id":{"chat":"Chat dengan kami","open":"Buka chat","close":"Tutup chat","conversation":"Percakapan","typing":"Mengetik","choices":"Pilihan","message":"Pesan Anda","send":"Kirim","person":"Bicara dengan petugas","restart":"Mulai lagi","queued":"Menunggu petugas…","position":"Anda antrean ke-{n}.","joined":"{name} bergabung ke chat.","someone":"Petugas","offline":"Saat ini tidak ada petugas.","closed":"Chat dengan petugas telah selesai.","ended":"Percakapan selesai. Mulai lagi kapan saja.","newtab":"terbuka di tab baru","write":"Tulis pesan…","choose":"Pilih opsi di atas","answer":"Ketik jawaban Anda…","expired":"Percakapan sebelumnya kedaluwarsa, ini percakapan baru.","notsent":"Belum terkirim: layanan sedang tidak tersedia. Coba lagi.","reconnecting":"Menghubungkan ulang…","connecting":"Menghubungkan…","queuedoffline":"Offline: akan dikirim saat koneksi kembali.","back":"Anda kembali ke asisten otomatis.","agenttyping":"mengetik…"},"ro":{"chat":"Scrieți-ne","open":"Deschideți chatul","close":"Închideți chatul","conversation":"Conversație","typing":"Scrie","choices":"Opțiuni","message":"Mesajul dvs.","send":"Trimiteți","person":"Vorbiți cu un om","restart":"Începeți din nou","queued":"Așteptați un coleg…","position":"Sunteți al {n}-lea la rând.","joined":"{name} s-a alăturat chatului.","someone":"Un coleg","offline":"Nu este nimeni disponibil acum.","closed":"Chatul cu colegul s-a încheiat.","ended":"Conversația s-a încheiat. Puteți începe oricând din nou.","newtab":"se deschide într-o filă nouă","write":"Scrieți un mesaj…","choose":"Alegeți o opțiune de mai sus","answer":"Scrieți răspunsul…","expired":"Conversația anterioară a expirat; iată una nouă.","notsent":"Netrimis: serviciul este indisponibil momentan. Încercați din nou.","reconnecting":"Se reconectează…","connecting":"Se conectează…","queuedoffline":"Offline: se va trimite când revine conexiunea.","back":"Sunteți din nou cu asistentul.","agenttyping":"scrie…"}};
  function strings(locale) {
    var lang = String(locale || "en").toLowerCase().split("-")[0];
    return STRINGS[lang] || STRINGS.en;
  }
  function fill(text, values) { return text.replace(/\{(\w+)\}/g, function (_, k) { return values[k]; }); }

  function fromDataset(d) {
    return {
      server: d.server, title: d.title, color: d.color, avatar: d.avatar, theme: d.theme,
      locale: d.locale, open: d.open === "true", openAfter: d.openAfter ? Number(d.openAfter) : null,
      openPages: d.openPages, context: d.context ? safeJson(d.context) : null,
      shopper: d.shopperEmail ? { email: d.shopperEmail, name: d.shopperName, userHash: d.shopperHash } : null
    };
  }
  function safeJson(s) { try { return JSON.parse(s); } catch (e) { return null; } }

  if (script && script.dataset.manual !== "true") {
    var auto = fromDataset(script.dataset);
    if (document.body) init(auto); else document.addEventListener("DOMContentLoaded", function () { init(auto); });
  }

  function init(opts) {
    if (api._started) return;
    api._started = true;
    opts = opts || {};
    var base = new URL(opts.server || scriptSrc, location.href);
    var wsUrl = (base.protocol === "https:" ? "wss://" : "ws://") + base.host + "/ws";
    var key = "flowengine:" + base.host;
    var locale = opts.locale || (navigator.languages && navigator.languages[0]) || navigator.language || "en";
    var color = /^#[0-9a-fA-F]{3,8}$/.test(opts.color || "") ? opts.color : "#1f3b2d";
    var T = strings(locale);
    var title = opts.title || T.chat;
    var theme = opts.theme === "dark" || opts.theme === "light" ? opts.theme : "auto";
    if (opts.shopper) pendingIdentity = opts.shopper;

    var store = {
      get: function (k) { try { return localStorage.getItem(key + ":" + k); } catch (e) { return null; } },
      set: function (k, v) { try { localStorage.setItem(key + ":" + k, v); } catch (e) { /* private mode */ } },
      del: function (k) { try { localStorage.removeItem(key + ":" + k); } catch (e) { /* ignore */ } }
    };

    // -- DOM in a shadow root: the shop's CSS cannot reach in, and ours cannot leak out -------
    // A custom element name: page rules for div, span, * by tag are unlikely to match it.
    var host = document.createElement("flowengine-chat");
    host.setAttribute("data-flowengine", "");
    host.style.cssText = "all:initial!important;position:fixed!important;z-index:2147483647!important;";
    var root = host.attachShadow({ mode: "open" });
    var dark = "--bg:#1e1f22;--fg:#eee;--log:#141517;--bubble:#2a2c30;--line:#3a3d42;--muted:#aaa;";
    var light = "--bg:#fff;--fg:#1b1b1b;--log:#f6f6f4;--bubble:#fff;--line:#e3e3e0;--muted:#555;";
    var css = [
      ":host{all:initial}",
      ".w{" + (theme === "dark" ? dark : light) + "--brand:" + color + "}",
      theme === "auto" ? "@media (prefers-color-scheme:dark){.w{" + dark + "}}" : "",
      "*{box-sizing:border-box;font-family:system-ui,-apple-system,'Segoe UI',Roboto,'Noto Sans','Noto Sans Thai','Leelawadee UI',sans-serif}",
      ".launcher{position:fixed;right:20px;bottom:20px;width:58px;height:58px;border-radius:50%;border:0;background:var(--brand);color:#fff;cursor:pointer;box-shadow:0 4px 14px rgba(0,0,0,.25);display:flex;align-items:center;justify-content:center;padding:0}",
      ".badge{position:absolute;top:-2px;right:-2px;min-width:20px;height:20px;border-radius:10px;background:#d33;color:#fff;font-size:12px;line-height:20px;padding:0 5px;display:none}",
      ".panel{position:fixed;right:20px;bottom:90px;width:370px;max-width:calc(100vw - 24px);height:min(600px,calc(100vh - 110px));background:var(--bg);color:var(--fg);border-radius:14px;box-shadow:0 8px 30px rgba(0,0,0,.25);display:none;flex-direction:column;overflow:hidden;font-size:15px;line-height:1.45;text-align:left}",
      ".panel.open{display:flex}",
      "header{background:var(--brand);color:#fff;padding:10px 12px;display:flex;align-items:center;gap:10px}",
      "header img{width:32px;height:32px;border-radius:50%;object-fit:cover;background:#fff}",
      "header h2{font-size:16px;margin:0;flex:1;font-weight:600}",
      "header button{background:transparent;border:0;color:#fff;font-size:22px;cursor:pointer;padding:2px 8px;line-height:1}",
      ".status{font-size:12px;padding:4px 14px;background:#fff4d6;color:#6b5200;display:none}",
      ".log{flex:1;overflow-y:auto;padding:12px;display:flex;flex-direction:column;gap:8px;background:var(--log)}",
      ".msg{max-width:85%;padding:8px 12px;border-radius:14px;white-space:pre-wrap;overflow-wrap:anywhere;margin:0}",
      ".bot,.agent{align-self:flex-start;background:var(--bubble);border:1px solid var(--line)}",
      ".agent{border-color:var(--brand)}",
      ".who{display:block;font-size:11px;color:var(--muted);margin-bottom:2px}",
      ".shopper{align-self:flex-end;background:var(--brand);color:#fff}",
      ".notice{align-self:center;font-size:12px;color:var(--muted);text-align:center;max-width:95%}",
      ".error{align-self:center;font-size:13px;color:#b00020;text-align:center}",
      ".msg a{color:inherit;text-decoration:underline}",
      ".typing{align-self:flex-start;color:var(--muted);font-size:20px;letter-spacing:2px;display:none;padding:0 12px}",
      ".options{display:flex;flex-wrap:wrap;gap:6px;padding:8px 12px;background:var(--log)}",
      ".options:empty{display:none}",
      ".options button{border:1px solid var(--brand);color:var(--fg);background:var(--bubble);border-radius:16px;padding:7px 12px;cursor:pointer;font-size:14px;text-align:left}",
      ".options button:hover{background:var(--log)}",
      "button:focus-visible,input:focus-visible{outline:3px solid #ffbf47;outline-offset:2px}",
      "form{display:flex;gap:6px;padding:10px;border-top:1px solid var(--line);background:var(--bg)}",
      "form input{flex:1;min-width:0;padding:9px 10px;border:1px solid var(--line);border-radius:8px;font-size:16px;background:var(--bg);color:var(--fg)}",
      "form input:disabled{opacity:.6}",
      "form button{background:var(--brand);color:#fff;border:0;border-radius:8px;padding:0 14px;cursor:pointer;font-size:15px}",
      "form button:disabled{opacity:.5;cursor:default}",
      ".tools{display:flex;gap:14px;padding:0 12px 10px;font-size:13px;background:var(--bg)}",
      ".tools button{background:none;border:0;color:var(--muted);text-decoration:underline;cursor:pointer;padding:0;font-size:13px}",
      "@media (max-width:480px){.panel{right:0;bottom:0;width:100vw;max-width:100vw;height:100%;border-radius:0}.panel.open~.launcher{display:none}}",
      "@media (prefers-reduced-motion:no-preference){.panel.open{animation:pop .15s ease-out}@keyframes pop{from{transform:translateY(8px);opacity:0}}}"
    ].join("\n");
    var style = document.createElement("style");
    style.textContent = css;
    root.appendChild(style);
    var wrap = el("div", { class: "w" });
    root.appendChild(wrap);

    function el(tag, attrs, text) {
      var n = document.createElement(tag);
      for (var k in attrs || {}) if (attrs[k] != null) n.setAttribute(k, attrs[k]);
      if (text != null) n.textContent = text;
      return n;
    }

    var panel = el("div", { class: "panel", role: "dialog", "aria-label": title, "aria-modal": "false", id: "fe-panel" });
    var launcher = el("button", { class: "launcher", "aria-label": T.open, "aria-expanded": "false", "aria-controls": "fe-panel" });
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

    var header = el("header");
    if (opts.avatar && /^(https:\/\/|\/)/.test(opts.avatar)) header.appendChild(el("img", { src: opts.avatar, alt: "" }));
    header.appendChild(el("h2", {}, title));
    var closeBtn = el("button", { type: "button", "aria-label": T.close }, "×");
    header.appendChild(closeBtn);
    var status = el("div", { class: "status", role: "status" });
    var log = el("div", { class: "log", role: "log", "aria-live": "polite", "aria-label": T.conversation, tabindex: "0" });
    var typing = el("div", { class: "typing", "aria-label": T.typing }, "•••");
    var options = el("div", { class: "options", role: "group", "aria-label": T.choices });
    var form = el("form");
    var input = el("input", { "aria-label": T.message, autocomplete: "off", maxlength: "2000", disabled: "" });
    var sendBtn = el("button", { type: "submit", disabled: "" }, T.send);
    form.appendChild(input);
    form.appendChild(sendBtn);
    var tools = el("div", { class: "tools" });
    var personBtn = el("button", { type: "button" }, T.person);
    var restartBtn = el("button", { type: "button" }, T.restart);
    tools.appendChild(personBtn);
    tools.appendChild(restartBtn);
    each([header, status, log, options, form, tools], function (n) { panel.appendChild(n); });
    wrap.appendChild(panel);
    wrap.appendChild(launcher);

    // -- rendering ---------------------------------------------------------------------------
    var RICH = /\*\*([^*]+)\*\*|\[([^\]]+)\]\(((?:https?:\/\/|mailto:|tel:)[^\s)]+)\)/g;
    function rich(node, text) {
      var last = 0, m;
      RICH.lastIndex = 0;
      while ((m = RICH.exec(text))) {
        node.appendChild(document.createTextNode(text.slice(last, m.index)));
        if (m[1] !== undefined) node.appendChild(el("strong", {}, m[1]));
        else node.appendChild(el("a", { href: m[3], target: "_blank", rel: "noopener noreferrer" }, m[2]));
        last = RICH.lastIndex;
      }
      node.appendChild(document.createTextNode(text.slice(last)));
    }

    var unread = 0, lastSeq = 0, current = null, withAgent = false, ended = false, typingTimer = null;

    function setTyping(on) {
      typing.style.display = on ? "block" : "none";
      clearTimeout(typingTimer);
      if (on) typingTimer = setTimeout(function () { setTyping(false); }, 8000);
      if (on) { log.appendChild(typing); log.scrollTop = log.scrollHeight; }
    }

    function note(text, cls) {
      log.appendChild(el("p", { class: "msg " + (cls || "notice"), role: cls === "error" ? "alert" : null }, text));
      log.scrollTop = log.scrollHeight;
    }

    function show(e) {
      if (e.seq <= lastSeq) return; // never twice
      lastSeq = e.seq;
      store.set("seq", String(lastSeq));
      if (e.type === "message") {
        var who = { shopper: "shopper", agent: "agent", system: "notice" }[e.from] || "bot";
        var bubble = el("p", { class: "msg " + who });
        if (who === "agent" && e.agent) bubble.appendChild(el("span", { class: "who" }, e.agent));
        if (who === "bot") rich(bubble, e.text); else bubble.appendChild(document.createTextNode(e.text));
        log.appendChild(bubble);
        if (who !== "shopper") {
          setTyping(false);
          if (who === "bot") current = e;
          if (!panel.classList.contains("open")) { unread++; badge.textContent = String(unread); badge.style.display = "block"; }
        }
        ended = false;
        emit("message", { from: e.from, text: e.text });
      } else if (e.type === "handoff") {
        var text = {
          queued: T.queued + (e.position ? " " + fill(T.position, { n: e.position }) : ""),
          assigned: fill(T.joined, { name: e.agent || T.someone }),
          offline: T.offline,
          closed: T.closed,
          handed_back: null
        }[e.status] || e.status;
        withAgent = e.status === "queued" || e.status === "assigned";
        // A person has the chat now: the bot's last menu no longer applies. Any other notice
        // (offline, closed, handed back) comes with or after the bot's next message; the
        // shopper who started over got the greeting before the notice that the person left.
        if (withAgent) current = null;
        setTyping(false);
        if (text) note(text);
        emit("handoff", { status: e.status });
      } else if (e.type === "ended") {
        ended = true;
        current = null;
        note(T.ended);
      }
      log.scrollTop = log.scrollHeight;
    }

    function controls() {
      // Rebuilding the buttons would drop keyboard focus on the floor: remember where it was.
      var focusedInside = root.activeElement && options.contains(root.activeElement);
      options.textContent = "";
      var ask = current && current.input;
      each(current && current.options || [], function (o) {
        var b = el("button", { type: "button" }, o.label);
        if (o.url) b.setAttribute("aria-label", o.label + " (" + T.newtab + ")");
        b.addEventListener("click", function () {
          if (o.url) { window.open(o.url, "_blank", "noopener,noreferrer"); return; }
          act({ type: "choose", option: o.id });
        });
        options.appendChild(b);
      });
      if (ended) {
        var again = el("button", { type: "button" }, T.restart);
        again.addEventListener("click", function () { act({ type: "restart" }); });
        options.appendChild(again);
      }
      var kinds = { email: "email", tel: "tel", date: "date", number: "text", text: "text" };
      input.type = ask ? (kinds[ask.kind] || "text") : "text";
      input.inputMode = ask && ask.kind === "number" ? "decimal" : ask && ask.kind === "tel" ? "tel" : ask && ask.kind === "email" ? "email" : "text";
      input.disabled = !ask && !withAgent;
      sendBtn.disabled = input.disabled;
      input.placeholder = withAgent ? T.write : input.disabled ? T.choose : T.answer;
      log.scrollTop = log.scrollHeight;
      if (panel.classList.contains("open") && (focusedInside || !root.activeElement)) {
        var next = !input.disabled ? input : options.querySelector("button");
        if (next) next.focus();
      }
    }

    // -- connection --------------------------------------------------------------------------
    var ws = null, backoff = 500, pending = [], counter = 0, everConnected = false, fresh = true, retry = null;

    function setStatus(text) { status.textContent = text || ""; status.style.display = text ? "block" : "none"; }

    function hello() {
      var ctx = { page: { url: location.href.slice(0, 500), title: document.title.slice(0, 200) } };
      if (opts.context && typeof opts.context === "object") ctx.context = opts.context;
      if (pendingIdentity && pendingIdentity.email) {
        ctx.shopper = { email: String(pendingIdentity.email), name: pendingIdentity.name ? String(pendingIdentity.name) : undefined,
                        user_hash: pendingIdentity.userHash ? String(pendingIdentity.userHash) : undefined };
      } else if (pendingIdentity && pendingIdentity.name) {
        ctx.shopper = { name: String(pendingIdentity.name) };
      }
      // After a page load the whole transcript is replayed; after a dropped socket, only what was missed.
      return { type: "hello", session: store.get("session"), last_seq: fresh ? 0 : lastSeq, locale: locale, context: ctx };
    }

    function connect() {
      clearTimeout(retry);
      try { ws = new WebSocket(wsUrl); } catch (e) { schedule(); return; }
      ws.onopen = function () { backoff = 500; ws.send(JSON.stringify(hello())); };
      ws.onmessage = function (m) {
        var f;
        try { f = JSON.parse(m.data); } catch (e) { return; }
        if (f.type === "session") {
          if (f.session !== store.get("session") || fresh) { log.textContent = ""; lastSeq = 0; current = null; }
          fresh = false;
          store.set("session", f.session);
          everConnected = true;
          setStatus(f.expired ? T.expired : "");
          each(pending, function (p) { ws.send(JSON.stringify(p)); }); // resent once; ids dedupe
        } else if (f.type === "ack") {
          pending = without(pending, f.id);
          if (!pending.length && status.textContent === T.queuedoffline) setStatus("");
        } else if (f.type === "error") {
          var was = without(pending, f.id).length !== pending.length;
          pending = without(pending, f.id);
          setTyping(false);
          if (f.code === "store_unavailable" && was) { note(T.notsent, "error"); }
          else if (f.code !== "unknown_option") note(f.message, "error");
        } else if (f.type === "typing" && f.from === "agent") {
          setTyping(true);
        } else if (f.seq) {
          show(f);
          controls();
        }
      };
      ws.onclose = function () { ws = null; schedule(); };
    }
    function schedule() {
      setStatus(everConnected ? T.reconnecting : T.connecting);
      retry = setTimeout(connect, backoff + Math.random() * 300);
      backoff = Math.min(backoff * 2, 10000);
    }
    api._reconnect = function () { if (ws) { fresh = true; ws.close(); } };

    function act(frame) {
      counter += 1;
      frame.id = "w" + Date.now().toString(36) + counter;
      pending.push(frame);
      if (frame.type !== "restart") setTyping(true);
      if (ws && ws.readyState === 1) ws.send(JSON.stringify(frame));
      else setStatus(T.queuedoffline);
    }

    var lastTyping = 0;
    input.addEventListener("input", function () {
      // Tell a person (not the bot) that the shopper is typing; at most every 2 seconds.
      if (withAgent && ws && ws.readyState === 1 && Date.now() - lastTyping > 2000) {
        lastTyping = Date.now();
        ws.send(JSON.stringify({ type: "typing" }));
      }
    });

    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var text = input.value.trim();
      if (!text || input.disabled) return;
      input.value = "";
      act({ type: "text", text: text });
    });
    personBtn.addEventListener("click", function () { act({ type: "handoff" }); });
    restartBtn.addEventListener("click", function () { act({ type: "restart" }); });

    function open() {
      panel.classList.add("open");
      launcher.setAttribute("aria-expanded", "true");
      launcher.setAttribute("aria-label", T.close);
      unread = 0;
      badge.style.display = "none";
      store.set("open", "1");
      var first = options.querySelector("button") || (input.disabled ? closeBtn : input);
      first.focus();
      emit("open");
    }
    function close() {
      panel.classList.remove("open");
      launcher.setAttribute("aria-expanded", "false");
      launcher.setAttribute("aria-label", T.open);
      store.del("open");
      launcher.focus();
      emit("close");
    }
    launcher.addEventListener("click", function () { if (panel.classList.contains("open")) close(); else open(); });
    closeBtn.addEventListener("click", close);
    panel.addEventListener("keydown", function (ev) { if (ev.key === "Escape") close(); });
    // Keep the panel above the on-screen keyboard on phones.
    if (window.visualViewport) {
      window.visualViewport.addEventListener("resize", function () {
        if (window.innerWidth <= 480) panel.style.height = window.visualViewport.height + "px";
      });
    }

    api.open = open;
    api.close = close;
    document.body.appendChild(host);
    connect();
    controls();
    if (store.get("open") || opts.open) open();
    // Proactive open: after N seconds on pages matching a pattern, at most once per session.
    if (opts.openAfter && opts.openAfter > 0 && matches(opts.openPages)) {
      setTimeout(function () {
        var flag = key + ":proactive";
        try { if (sessionStorage.getItem(flag)) return; sessionStorage.setItem(flag, "1"); } catch (e) { /* ignore */ }
        if (!panel.classList.contains("open")) open();
      }, opts.openAfter * 1000);
    }
  }

  function matches(patterns) {
    if (!patterns) return true;
    var list = String(patterns).split(",");
    for (var i = 0; i < list.length; i++) {
      var re = new RegExp("^" + list[i].trim().replace(/[.+?^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*") + "$");
      if (re.test(location.pathname)) return true;
    }
    return false;
  }
})();
