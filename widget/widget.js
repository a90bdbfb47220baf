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

  // The widget's own words: each string once, in every locale (the flows bring their own
  // translations). {n} and {name} are filled in. Error lines are chosen by the server's error
  // code (ERRORS below), never taken from its English message.
  var STRINGS = {
    chat: {
      en: "Chat with us",
      cs: "Napište nám",
      th: "แชทกับเรา",
      id: "Chat dengan kami",
      ro: "Scrieți-ne"
    },
    open: {
      en: "Open chat",
      cs: "Otevřít chat",
      th: "เปิดแชท",
      id: "Buka chat",
      ro: "Deschideți chatul"
    },
    close: {
      en: "Close chat",
      cs: "Zavřít chat",
      th: "ปิดแชท",
      id: "Tutup chat",
      ro: "Închideți chatul"
    },
    conversation: {
      en: "Conversation",
      cs: "Konverzace",
      th: "บทสนทนา",
      id: "Percakapan",
      ro: "Conversație"
    },
    typing: {
      en: "Typing",
      cs: "Píše",
      th: "กำลังพิมพ์",
      id: "Mengetik",
      ro: "Scrie"
    },
    choices: {
      en: "Choices",
      cs: "Možnosti",
      th: "ตัวเลือก",
      id: "Pilihan",
      ro: "Opțiuni"
    },
    message: {
      en: "Your message",
      cs: "Vaše zpráva",
      th: "ข้อความของคุณ",
      id: "Pesan Anda",
      ro: "Mesajul dvs."
    },
    send: {
      en: "Send",
      cs: "Odeslat",
      th: "ส่ง",
      id: "Kirim",
      ro: "Trimiteți"
    },
    person: {
      en: "Talk to a person",
      cs: "Mluvit s člověkem",
      th: "คุยกับเจ้าหน้าที่",
      id: "Bicara dengan petugas",
      ro: "Vorbiți cu o persoană"
    },
    restart: {
      en: "Start over",
      cs: "Začít znovu",
      th: "เริ่มใหม่",
      id: "Mulai lagi",
      ro: "Începeți din nou"
    },
    newtab: {
      en: "opens in a new tab",
      cs: "otevře se v nové kartě",
      th: "เปิดในแท็บใหม่",
      id: "terbuka di tab baru",
      ro: "se deschide într-o filă nouă"
    },
    write: {
      en: "Write a message…",
      cs: "Napište zprávu…",
      th: "พิมพ์ข้อความ…",
      id: "Tulis pesan…",
      ro: "Scrieți un mesaj…"
    },
    choose: {
      en: "Choose an option above",
      cs: "Vyberte možnost výše",
      th: "เลือกตัวเลือกด้านบน",
      id: "Pilih opsi di atas",
      ro: "Alegeți o opțiune de mai sus"
    },
    // At a menu: typed text is matched to the flows (docs/flow-language.md, "Intents").
    ask: {
      en: "Or type your question…",
      cs: "Nebo napište svůj dotaz…",
      th: "หรือพิมพ์คำถามของคุณ…",
      id: "Atau ketik pertanyaan Anda…",
      ro: "Sau scrieți întrebarea…"
    },
    answer: {
      en: "Type your answer…",
      cs: "Napište odpověď…",
      th: "พิมพ์คำตอบ…",
      id: "Ketik jawaban Anda…",
      ro: "Scrieți răspunsul…"
    },
    // -- the connection
    expired: {
      en: "Your previous conversation expired, so here is a new one.",
      cs: "Předchozí konverzace vypršela, začínáme novou.",
      th: "บทสนทนาก่อนหน้าหมดอายุแล้ว เริ่มบทสนทนาใหม่",
      id: "Percakapan sebelumnya kedaluwarsa, ini percakapan baru.",
      ro: "Conversația anterioară a expirat; iată una nouă."
    },
    reconnecting: {
      en: "Reconnecting…",
      cs: "Znovu se připojuji…",
      th: "กำลังเชื่อมต่อใหม่…",
      id: "Menghubungkan ulang…",
      ro: "Se reconectează…"
    },
    connecting: {
      en: "Connecting…",
      cs: "Připojuji…",
      th: "กำลังเชื่อมต่อ…",
      id: "Menghubungkan…",
      ro: "Se conectează…"
    },
    queuedoffline: {
      en: "Offline: this will be sent when the connection is back.",
      cs: "Offline: odešle se, až bude spojení zpět.",
      th: "ออฟไลน์: จะส่งเมื่อเชื่อมต่อได้อีกครั้ง",
      id: "Offline: akan dikirim saat koneksi kembali.",
      ro: "Offline: se va trimite când revine conexiunea."
    },
    // -- a person (the handoff notices)
    queued: {
      en: "Waiting for a person…",
      cs: "Čekáte na kolegu…",
      th: "กำลังรอเจ้าหน้าที่…",
      id: "Menunggu petugas…",
      ro: "Așteptați un coleg…"
    },
    position: {
      en: "You are number {n} in line.",
      cs: "Jste {n}. v pořadí.",
      th: "คุณอยู่ลำดับที่ {n}",
      id: "Anda di antrean ke-{n}.",
      ro: "Sunteți pe locul {n} la rând."
    },
    joined: {
      en: "{name} joined the chat.",
      cs: "{name} se připojil(a) k chatu.",
      th: "{name} เข้าร่วมแชทแล้ว",
      id: "{name} bergabung ke chat.",
      ro: "{name} s-a alăturat chatului."
    },
    someone: {
      en: "A person",
      cs: "Kolega",
      th: "เจ้าหน้าที่",
      id: "Petugas",
      ro: "Un coleg"
    },
    offline: {
      en: "Nobody is available right now.",
      cs: "Teď není nikdo k dispozici.",
      th: "ขณะนี้ไม่มีเจ้าหน้าที่ว่าง",
      id: "Saat ini tidak ada petugas.",
      ro: "Nu este nimeni disponibil acum."
    },
    outofhours: {
      en: "We're outside our opening hours, so nobody can chat right now.",
      cs: "Jsme teď mimo pracovní dobu, takže s vámi nikdo nemůže chatovat.",
      th: "ขณะนี้อยู่นอกเวลาทำการ จึงยังไม่มีเจ้าหน้าที่ให้บริการแชท",
      id: "Saat ini di luar jam operasional, jadi belum ada petugas yang bisa melayani chat.",
      ro: "Suntem în afara programului, așa că acum nu vă poate răspunde nimeni pe chat."
    },
    notintime: {
      en: "Sorry, nobody was free to take your chat in time.",
      cs: "Omlouváme se, nikdo z kolegů se k vašemu chatu nestihl včas dostat.",
      th: "ขออภัย ไม่มีเจ้าหน้าที่รับแชทของคุณได้ทันเวลา",
      id: "Maaf, tidak ada petugas yang sempat menanggapi chat Anda.",
      ro: "Ne pare rău, niciun coleg nu a putut prelua chatul la timp."
    },
    closed: {
      en: "The chat with a person has ended.",
      cs: "Chat s kolegou skončil.",
      th: "การแชทกับเจ้าหน้าที่สิ้นสุดแล้ว",
      id: "Chat dengan petugas telah selesai.",
      ro: "Chatul cu colegul s-a încheiat."
    },
    ended: {
      en: "This conversation has ended. Start over any time.",
      cs: "Konverzace skončila. Kdykoli můžete začít znovu.",
      th: "บทสนทนาสิ้นสุดแล้ว เริ่มใหม่ได้ทุกเมื่อ",
      id: "Percakapan selesai. Mulai lagi kapan saja.",
      ro: "Conversația s-a încheiat. Puteți începe oricând din nou."
    },
    // -- error lines (by error code)
    pick: {
      en: "Please choose one of the options.",
      cs: "Vyberte prosím jednu z možností.",
      th: "กรุณาเลือกหนึ่งในตัวเลือก",
      id: "Silakan pilih salah satu opsi.",
      ro: "Alegeți una dintre opțiuni."
    },
    typeit: {
      en: "Please type your answer in the box below.",
      cs: "Napište prosím odpověď do pole níže.",
      th: "กรุณาพิมพ์คำตอบในช่องด้านล่าง",
      id: "Silakan ketik jawaban Anda di kolom bawah.",
      ro: "Scrieți răspunsul în câmpul de mai jos."
    },
    stale: {
      en: "That option is no longer available. Please choose one of the current ones.",
      cs: "Tato možnost už není k dispozici. Vyberte prosím z aktuální nabídky.",
      th: "ตัวเลือกนี้ใช้ไม่ได้แล้ว กรุณาเลือกจากตัวเลือกล่าสุด",
      id: "Opsi itu sudah tidak berlaku. Silakan pilih dari opsi terbaru.",
      ro: "Opțiunea nu mai este disponibilă. Alegeți una dintre opțiunile actuale."
    },
    toolong: {
      en: "That message is too long. Please shorten it.",
      cs: "Zpráva je příliš dlouhá. Zkraťte ji prosím.",
      th: "ข้อความยาวเกินไป กรุณาย่อให้สั้นลง",
      id: "Pesan terlalu panjang. Silakan persingkat.",
      ro: "Mesajul este prea lung. Vă rugăm să-l scurtați."
    },
    busy: {
      en: "One moment, I'm still working on your last answer.",
      cs: "Moment, ještě zpracovávám vaši předchozí odpověď.",
      th: "กรุณารอสักครู่ กำลังดำเนินการกับคำตอบก่อนหน้า",
      id: "Sebentar, jawaban Anda sebelumnya masih diproses.",
      ro: "Un moment, încă procesez răspunsul anterior."
    },
    withagent: {
      en: "You're chatting with a person now: just type your message.",
      cs: "Teď si píšete s kolegou, stačí napsat zprávu.",
      th: "ตอนนี้คุณกำลังคุยกับเจ้าหน้าที่ พิมพ์ข้อความได้เลย",
      id: "Anda sedang chat dengan petugas, cukup ketik pesan Anda.",
      ro: "Acum vorbiți cu un coleg; scrieți-i pur și simplu mesajul."
    },
    asked: {
      en: "You've already asked for a person. Please wait a moment.",
      cs: "O spojení s kolegou jste už požádali. Chvíli prosím vydržte.",
      th: "คุณขอคุยกับเจ้าหน้าที่ไปแล้ว กรุณารอสักครู่",
      id: "Anda sudah meminta bicara dengan petugas. Mohon tunggu sebentar.",
      ro: "Ați cerut deja să vorbiți cu un coleg. Vă rugăm să așteptați puțin."
    },
    slow: {
      en: "You're sending messages too quickly. Please wait a moment.",
      cs: "Posíláte zprávy příliš rychle. Chvíli prosím počkejte.",
      th: "คุณส่งข้อความเร็วเกินไป กรุณารอสักครู่",
      id: "Anda mengirim pesan terlalu cepat. Mohon tunggu sebentar.",
      ro: "Trimiteți mesaje prea repede. Vă rugăm să așteptați puțin."
    },
    resending: {
      en: "Not saved yet: the service is briefly unavailable. Sending it again…",
      cs: "Zatím neuloženo: služba je na chvíli nedostupná. Posíláme znovu…",
      th: "ยังไม่ได้บันทึก: บริการไม่พร้อมใช้งานชั่วคราว กำลังส่งอีกครั้ง…",
      id: "Belum tersimpan: layanan sedang tidak tersedia. Mengirim ulang…",
      ro: "Nesalvat încă: serviciul este indisponibil momentan. Se retrimite…"
    },
    unavailable: {
      en: "The service is briefly unavailable. Please try again in a moment.",
      cs: "Služba je na chvíli nedostupná. Zkuste to prosím za okamžik znovu.",
      th: "บริการไม่พร้อมใช้งานชั่วคราว กรุณาลองใหม่ในอีกสักครู่",
      id: "Layanan sedang tidak tersedia. Coba lagi sebentar lagi.",
      ro: "Serviciul este momentan indisponibil. Încercați din nou în câteva clipe."
    },
    gone: {
      en: "This conversation can't continue. Please start over.",
      cs: "V této konverzaci už nelze pokračovat. Začněte prosím znovu.",
      th: "ไม่สามารถดำเนินบทสนทนานี้ต่อได้ กรุณาเริ่มใหม่",
      id: "Percakapan ini tidak bisa dilanjutkan. Silakan mulai lagi.",
      ro: "Conversația nu mai poate continua. Vă rugăm să o începeți din nou."
    },
    oops: {
      en: "Something went wrong. Please try again.",
      cs: "Něco se pokazilo. Zkuste to prosím znovu.",
      th: "เกิดข้อผิดพลาด กรุณาลองอีกครั้ง",
      id: "Terjadi kesalahan. Silakan coba lagi.",
      ro: "Ceva nu a funcționat. Încercați din nou."
    }
  };
  // Server error codes (docs/protocol.md) -> a line above; any other code gets "oops". The
  // server's own message is English for developers and is never shown.
  var ERRORS = {
    expected_choice: "pick", expected_text: "typeit", unknown_option: "stale",
    text_too_long: "toolong", frame_too_large: "toolong", busy: "busy", with_agent: "withagent",
    already_with_agent: "asked", conversation_ended: "ended", rate_limited: "slow",
    flooding: "slow", store_unavailable: "unavailable", too_many_sessions: "unavailable",
    session_expired: "expired", flow_gone: "gone"
  };
  // Why nobody could take the chat (handoff offline `reason`) -> a line above.
  var OFFLINE = { no_agent: "offline", closed: "outofhours", timeout: "notintime" };
  function has(obj, key) { return Object.prototype.hasOwnProperty.call(obj, key); }
  // At most n UTF-16 units, never half of a surrogate pair (an emoji cut in two is not text).
  function cut(text, n) {
    text = String(text || "");
    if (text.length <= n) return text;
    var code = text.charCodeAt(n - 1);
    return text.slice(0, code >= 0xd800 && code <= 0xdbff ? n - 1 : n);
  }
  // The words in the shopper's language (fr-CA -> fr), English where it has none.
  function strings(locale) {
    var lang = String(locale || "en").toLowerCase().split("-")[0];
    var out = {};
    for (var key in STRINGS) if (has(STRINGS, key)) out[key] = STRINGS[key][lang] || STRINGS[key].en;
    return out;
  }
  function fill(text, values) { return text.replace(/\{(\w+)\}/g, function (_, k) { return values[k]; }); }

  // WCAG 2.2 contrast ratio of two #rgb / #rrggbb colours (1 to 21).
  function luminance(hex) {
    var h = hex.length === 4 ? hex.replace(/(\w)/g, "$1$1") : hex;
    var sum = 0, weights = [0.2126, 0.7152, 0.0722];
    for (var i = 0; i < 3; i++) {
      var c = parseInt(h.substr(1 + 2 * i, 2), 16) / 255;
      sum += weights[i] * (c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4));
    }
    return sum;
  }
  function contrast(a, b) {
    var x = luminance(a), y = luminance(b);
    return (Math.max(x, y) + 0.05) / (Math.min(x, y) + 0.05);
  }

  function fromDataset(d) {
    return {
      server: d.server, title: d.title, color: d.color, avatar: d.avatar, theme: d.theme,
      locale: d.locale, open: d.open === "true", openAfter: d.openAfter ? Number(d.openAfter) : null,
      openPages: d.openPages, context: d.context ? safeJson(d.context) : null,
      shopper: d.shopperEmail ? { email: d.shopperEmail, name: d.shopperName, userHash: d.shopperHash } : null
    };
  }
  function safeJson(s) { try { return JSON.parse(s); } catch (e) { return null; } }

  // Colours per theme. `edge` is the border of a control (3:1 against what is around it),
  // `muted` and `error` are text (4.5:1), `focus` is the focus ring.
  var LIGHT = { bg: "#fff", fg: "#1b1b1b", log: "#f6f6f4", bubble: "#fff", line: "#e3e3e0", muted: "#555",
                edge: "#767676", error: "#b00020", focus: "#1a5fb4" };
  var DARK = { bg: "#1e1f22", fg: "#eee", log: "#141517", bubble: "#2a2c30", line: "#3a3d42", muted: "#aaa",
               edge: "#8b8f96", error: "#ff8a80", focus: "#ffbf47" };

  // A theme's CSS variables for a brand colour: option borders in the brand colour only where it
  // stands out (a dark brand on a dark panel does not), text on the brand white or near-black.
  function palette(theme, brand) {
    var accent = contrast(brand, theme.bubble) >= 3 && contrast(brand, theme.log) >= 3 ? brand : theme.edge;
    var onBrand = contrast(brand, "#fff") >= contrast(brand, "#111") ? "#fff" : "#111";
    var out = "--brand:" + brand + ";--on-brand:" + onBrand + ";--accent:" + accent + ";";
    each(["bg", "fg", "log", "bubble", "line", "muted", "edge", "error", "focus"], function (k) {
      out += "--" + k + ":" + theme[k] + ";";
    });
    return out;
  }

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
    var color = /^#([0-9a-f]{3}|[0-9a-f]{6})$/i.test(opts.color || "") ? opts.color : "#1f3b2d";
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
    var dark = palette(DARK, color), light = palette(LIGHT, color);
    var css = [
      ":host{all:initial}",
      ".w{" + (theme === "dark" ? dark : light) + "}",
      theme === "auto" ? "@media (prefers-color-scheme:dark){.w{" + dark + "}}" : "",
      "*{box-sizing:border-box;font-family:system-ui,-apple-system,'Segoe UI',Roboto,'Noto Sans','Noto Sans Thai','Leelawadee UI',sans-serif}",
      "[hidden]{display:none!important}",
      ".launcher{position:fixed;right:20px;bottom:20px;width:58px;height:58px;border-radius:50%;border:0;background:var(--brand);color:var(--on-brand);cursor:pointer;box-shadow:0 4px 14px rgba(0,0,0,.25);display:flex;align-items:center;justify-content:center;padding:0}",
      ".badge{position:absolute;top:-2px;right:-2px;min-width:20px;height:20px;border-radius:10px;background:#c62828;color:#fff;font-size:12px;line-height:20px;padding:0 5px;display:none}",
      ".panel{position:fixed;right:20px;bottom:90px;width:370px;max-width:calc(100vw - 24px);height:min(600px,calc(100vh - 110px));background:var(--bg);color:var(--fg);border-radius:14px;box-shadow:0 8px 30px rgba(0,0,0,.25);display:none;flex-direction:column;overflow:hidden;font-size:15px;line-height:1.45;text-align:left}",
      ".panel.open{display:flex}",
      "header{background:var(--brand);color:var(--on-brand);padding:10px 12px;display:flex;align-items:center;gap:10px}",
      "header img{width:32px;height:32px;border-radius:50%;object-fit:cover;background:#fff}",
      "header h2{font-size:16px;margin:0;flex:1;font-weight:600}",
      "header button{background:transparent;border:0;color:var(--on-brand);font-size:22px;cursor:pointer;padding:2px 8px;line-height:1}",
      ".status{font-size:12px;padding:4px 14px;background:#fff4d6;color:#6b5200;display:none}",
      ".log{flex:1;overflow-y:auto;padding:12px;display:flex;flex-direction:column;gap:8px;background:var(--log)}",
      ".msg{max-width:85%;padding:8px 12px;border-radius:14px;white-space:pre-wrap;overflow-wrap:anywhere;margin:0}",
      ".bot,.agent{align-self:flex-start;background:var(--bubble);border:1px solid var(--line)}",
      ".agent{border-color:var(--accent)}",
      ".who{display:block;font-size:11px;color:var(--muted);margin-bottom:2px}",
      ".shopper{align-self:flex-end;background:var(--brand);color:var(--on-brand)}",
      ".notice{align-self:center;font-size:13px;color:var(--muted);text-align:center;max-width:95%}",
      ".error{align-self:center;font-size:13px;color:var(--error);text-align:center}",
      ".msg a{color:inherit;text-decoration:underline}",
      ".typing{align-self:flex-start;color:var(--muted);font-size:20px;letter-spacing:2px;display:none;padding:0 12px}",
      ".options{display:flex;flex-wrap:wrap;gap:6px;padding:8px 12px;background:var(--log)}",
      ".options:empty{display:none}",
      ".options button{border:1px solid var(--accent);color:var(--fg);background:var(--bubble);border-radius:16px;padding:7px 12px;cursor:pointer;font-size:14px;text-align:left}",
      ".options button:hover{background:var(--log)}",
      ".options.csat button{flex:1 1 0;min-width:0;min-height:40px;text-align:center;padding:7px 4px}",
      ".options.csat button.again{flex-basis:100%}",
      "button:focus-visible,input:focus-visible{outline:3px solid var(--focus);outline-offset:2px}",
      "header button:focus-visible{outline-color:var(--on-brand)}",
      "form{display:flex;gap:6px;padding:10px;border-top:1px solid var(--line);background:var(--bg)}",
      "form input{flex:1;min-width:0;padding:9px 10px;border:1px solid var(--edge);border-radius:8px;font-size:16px;background:var(--bg);color:var(--fg)}",
      "form input::placeholder{color:var(--muted);opacity:1}",
      "form input:disabled{opacity:.6}",
      "form button{background:var(--brand);color:var(--on-brand);border:0;border-radius:8px;padding:0 14px;cursor:pointer;font-size:15px}",
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
      for (var k in attrs || {}) if (has(attrs, k) && attrs[k] != null) n.setAttribute(k, attrs[k]);
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
    // novalidate: the server checks every answer and replies with the flow's own retry message.
    var form = el("form", { novalidate: "" });
    var input = el("input", { type: "text", "aria-label": T.message, autocomplete: "off", maxlength: "2000", disabled: "" });
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
    // The bot's **bold** and [links](https://...); a backslash before * [ ] or \ is that
    // character as text (values a flow puts into its text come escaped, so a shopper's name
    // never becomes a link). The same markup, read the same way, as the agent console's.
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
        if (m[2] !== undefined) node.appendChild(el("strong", {}, m[2].replace(ESCAPED, "$1")));
        else node.appendChild(el("a", { href: m[4], target: "_blank", rel: "noopener noreferrer" }, m[3].replace(ESCAPED, "$1")));
      }
      node.appendChild(document.createTextNode(plain + text.slice(last)));
    }

    // What the transcript so far says; rebuilt from scratch when it is replayed (reset).
    // current: the bot's last message (its menu or text box); person: null while the bot has
    // the chat, "queued" or "assigned" while it is with a person; waiting: the "waiting for a
    // person" notice while queued, whose place in line is updated where it stands.
    // answered: the shopper rated the chat after it ended; the thanks that follows does not
    // reopen the conversation, and the conversation's end is not announced twice.
    var unread = 0, lastSeq = 0, current, person, waiting, ended, answered, typingTimer = null;
    function reset() { lastSeq = 0; current = null; person = null; waiting = null; ended = false; answered = false; }
    reset();

    function setTyping(on) {
      typing.style.display = on ? "block" : "none";
      clearTimeout(typingTimer);
      if (on) typingTimer = setTimeout(function () { setTyping(false); }, 8000);
      if (on) { log.appendChild(typing); log.scrollTop = log.scrollHeight; }
    }

    function note(text, cls) {
      var line = el("p", { class: "msg " + (cls || "notice"), role: cls === "error" ? "alert" : null }, text);
      log.appendChild(line);
      log.scrollTop = log.scrollHeight;
      return line;
    }

    function show(e) {
      if (e.seq <= lastSeq) return; // never twice
      lastSeq = e.seq;
      store.set("seq", String(lastSeq));
      if (e.type === "message") showMessage(e);
      else if (e.type === "handoff") showHandoff(e);
      else if (e.type === "ended") {
        if (!(ended && answered)) note(T.ended);
        ended = true;
        answered = false;
        // The rating asked after a chat with a person stays answerable once it has ended.
        if (!(current && current.csat)) current = null;
      }
      log.scrollTop = log.scrollHeight;
    }

    function showMessage(e) {
      var who = { shopper: "shopper", agent: "agent", system: "notice" }[e.from] || "bot";
      if (who === "shopper" && ended && current && current.csat) answered = true;
      var bubble = el("p", { class: "msg " + who });
      if (who === "agent" && e.agent) bubble.appendChild(el("span", { class: "who" }, e.agent));
      if (who === "bot") rich(bubble, e.text); else bubble.appendChild(document.createTextNode(e.text));
      log.appendChild(bubble);
      if (who !== "shopper") {
        setTyping(false);
        if (who === "bot") current = e;
        if (!panel.classList.contains("open")) { unread++; badge.textContent = String(unread); badge.style.display = "block"; }
      }
      if (!answered) ended = false;
      emit("message", { from: e.from, text: e.text });
    }

    // One notice per handoff state, in the shopper's words; a status it does not know shows nothing.
    function showHandoff(e) {
      person = e.status === "queued" || e.status === "assigned" ? e.status : null;
      waiting = null;
      // A person has the chat now: the bot's last menu no longer applies. Any other notice
      // (offline, closed, handed back) comes with or after the bot's next message; the
      // shopper who started over got the greeting before the notice that the person left.
      if (person) current = null;
      setTyping(false);
      if (e.status === "queued") showWaiting(e);
      else if (e.status === "assigned") note(fill(T.joined, { name: e.agent || T.someone }));
      else if (e.status === "offline") note(T[has(OFFLINE, e.reason) ? OFFLINE[e.reason] : "offline"]);
      else if (e.status === "closed") note(T.closed);
      // handed_back: the server's own line ("You're back with the assistant.") follows in the
      // shopper's language; a second one here would say it twice.
      emit("handoff", { status: e.status });
    }

    function showWaiting(e) {
      var line = note(T.queued);
      waiting = { queue: e.queue, position: 0, where: line.appendChild(el("span")) };
      setPlace(e.position);
    }

    // A new place in line changes the one waiting notice (the log is a polite live region, so
    // the new text is read out once) instead of adding a line per move.
    function setPlace(n) {
      if (!waiting || !(n > 0) || n === waiting.position) return;
      waiting.position = n;
      waiting.where.textContent = " " + fill(T.position, { n: n });
    }

    function controls() {
      var had = root.activeElement; // keyboard focus, before its button is rebuilt or disabled
      showOptions();
      showInput();
      // Asking for a person again while one is coming, or after the end, could only fail.
      personBtn.hidden = !!person || ended;
      log.scrollTop = log.scrollHeight;
      if (had && panel.classList.contains("open") && lost(had)) focusNext();
    }

    // Focus left on a control that is gone, disabled or hidden would fall to <body>. With
    // neither menu nor text box yet (opened before the greeting came, or a bot line whose menu
    // follows in a moment) it waits on the log and moves on when they arrive.
    var parked = false;
    function lost(n) { return !n.isConnected || n.disabled || n.hidden || (n === log && parked); }
    function focusNext() {
      // At a menu the box is open too, but the first option keeps the focus (a phone would
      // otherwise open its keyboard over the options).
      var first = options.querySelector("button");
      var next = !input.disabled && !(atMenu() && first) ? input : first;
      parked = !next;
      (next || log).focus();
    }

    // One choice per menu: a double click would send a second one, which the server refuses
    // (the menu has moved on). Cleared when the next menu is shown or the choice is refused.
    var chosen = false;
    function showOptions() {
      options.textContent = "";
      chosen = false;
      // A verdict question (csat): its answers as one row of equal buttons (1-5 fits a phone).
      options.classList.toggle("csat", !!(current && current.csat));
      each(current && current.options || [], function (o) {
        var b = el("button", { type: "button" }, o.label);
        if (o.url) b.setAttribute("aria-label", o.label + " (" + T.newtab + ")");
        b.addEventListener("click", function () {
          if (o.url) { window.open(o.url, "_blank", "noopener,noreferrer"); return; }
          if (chosen) return;
          chosen = true;
          act({ type: "choose", option: o.id });
        });
        options.appendChild(b);
      });
      if (ended) {
        var again = el("button", { type: "button", class: "again" }, T.restart);
        again.addEventListener("click", function () { act({ type: "restart" }); });
        options.appendChild(again);
      }
    }

    // Every answer is plain text that reaches the server, which checks it and answers a wrong
    // one with the flow's retry message: type=email or type=date would let the browser block
    // it silently. The kind only picks the phone keyboard and autofill.
    var KEYBOARD = { email: "email", tel: "tel", number: "decimal" };
    var AUTOFILL = { email: "email", tel: "tel" };
    function showInput() {
      var kind = current && current.input ? current.input.kind : null;
      input.inputMode = has(KEYBOARD, kind) ? KEYBOARD[kind] : "text";
      input.setAttribute("autocomplete", has(AUTOFILL, kind) ? AUTOFILL[kind] : "off");
      input.setAttribute("autocapitalize", has(AUTOFILL, kind) ? "off" : "sentences");
      input.spellcheck = !has(AUTOFILL, kind);
      var menu = !kind && !person && atMenu();
      input.disabled = !kind && !person && !menu;
      sendBtn.disabled = input.disabled;
      input.placeholder = person ? T.write : kind ? T.answer : menu ? T.ask : T.choose;
    }
    // Options to click and no answer to type (not a 1-5 verdict): the shopper may also type
    // what they want, which the server matches to the options and flows.
    function atMenu() {
      return !ended && !!current && !current.input && !current.csat && !!(current.options || []).length;
    }

    // An error line in the widget's words, by code; never the server's (English) message.
    function errorText(code) {
      return T[has(ERRORS, code) ? ERRORS[code] : "oops"];
    }

    // -- connection --------------------------------------------------------------------------
    var ws = null, backoff = 500, pending = [], counter = 0, everConnected = false, fresh = true, retry = null;
    // Actions the server could not store (store_unavailable) are sent again, with their ids
    // (applied once), after a growing pause; one status line says so, not a line per try.
    var resendDelay = 1000, resendTimer = null;
    // The server answered, but without its store (a refused hello): said until a session opens,
    // through the reconnects, instead of a bare "Connecting…" over an empty chat.
    var storeAway = false;

    function setStatus(text) { status.textContent = text || ""; status.style.display = text ? "block" : "none"; }

    function hello() {
      var ctx = { page: { url: cut(location.href, 500), title: cut(document.title, 200) } };
      if (opts.context && typeof opts.context === "object") ctx.context = opts.context;
      if (pendingIdentity && pendingIdentity.email) {
        ctx.shopper = { email: String(pendingIdentity.email), name: pendingIdentity.name ? String(pendingIdentity.name) : undefined,
                        user_hash: pendingIdentity.userHash ? String(pendingIdentity.userHash) : undefined };
      } else if (pendingIdentity && pendingIdentity.name) {
        ctx.shopper = { name: String(pendingIdentity.name) };
      }
      // After a page load the whole transcript is replayed; after a dropped socket, only what was missed.
      // batch: an answer (its events and its ack) comes as one `batch` message (docs/protocol.md).
      return { type: "hello", session: store.get("session"), last_seq: fresh ? 0 : lastSeq, locale: locale, context: ctx, batch: true };
    }

    function connect() {
      clearTimeout(retry);
      try { ws = new WebSocket(wsUrl); } catch (e) { schedule(); return; }
      // The back-off starts over once a session is open, not when the socket opens: a server
      // that opens sockets but cannot reach its store must not be asked every half second.
      ws.onopen = function () { ws.send(JSON.stringify(hello())); };
      ws.onmessage = function (m) {
        var f;
        try { f = JSON.parse(m.data); } catch (e) { return; }
        if (f && f.type === "batch" && Array.isArray(f.frames)) each(f.frames, received);
        else received(f);
      };
      ws.onclose = function () { ws = null; schedule(); };
    }
    function received(f) {
      if (!f || typeof f !== "object") return;
      if (f.type === "session") {
        // reset: the server lost events this page showed (a failover); the whole transcript follows.
        if (f.session !== store.get("session") || fresh || f.reset) { log.textContent = ""; reset(); }
        fresh = false;
        backoff = 500;
        storeAway = false;
        store.set("session", f.session);
        everConnected = true;
        setStatus(f.expired ? T.expired : "");
        sendPending();
      } else if (f.type === "ack") {
        pending = without(pending, f.id);
        resendDelay = 1000;
        if (!pending.length && (status.textContent === T.queuedoffline || status.textContent === T.resending)) setStatus("");
      } else if (f.type === "error" && f.code === "store_unavailable") {
        // Nothing was stored: the action stays pending and goes again; a refused hello is
        // followed by a close, and the reconnect (with its back-off) tries again.
        var refused = without(pending, f.id).length !== pending.length;
        if (!refused) storeAway = true;
        setStatus(refused ? T.resending : T.unavailable);
        if (refused) {
          setTyping(false);
          clearTimeout(resendTimer);
          resendTimer = setTimeout(sendPending, resendDelay);
          resendDelay = Math.min(resendDelay * 2, 10000);
        }
      } else if (f.type === "error") {
        pending = without(pending, f.id);
        setTyping(false);
        chosen = false;
        note(errorText(f.code), "error");
      } else if (f.type === "typing" && f.from === "agent") {
        setTyping(true);
      } else if (f.type === "position") {
        if (waiting && f.queue === waiting.queue) setPlace(f.position);
      } else if (f.seq) {
        show(f);
        controls();
      }
    }
    // Every action not yet acknowledged, again with its id (the server applies each once): on a
    // new session after a reconnect, and after the store refused one.
    function sendPending() {
      if (ws && ws.readyState === 1 && !fresh) each(pending, function (p) { ws.send(JSON.stringify(p)); });
    }
    function schedule() {
      // Something the shopper sent is waiting: say it will go, rather than only "Reconnecting…"
      // (that line replaced the promise within a second, and the message was nowhere).
      var waitingToSend = pending.some(function (p) { return p.type === "text"; });
      setStatus(waitingToSend ? T.queuedoffline : storeAway ? T.unavailable : everConnected ? T.reconnecting : T.connecting);
      retry = setTimeout(connect, backoff + Math.random() * 300);
      backoff = Math.min(backoff * 2, 10000);
    }
    api._reconnect = function () { if (ws) { fresh = true; ws.close(); } };

    function act(frame) {
      counter += 1;
      frame.id = "w" + Date.now().toString(36) + counter;
      pending.push(frame);
      if (ws && ws.readyState === 1) {
        ws.send(JSON.stringify(frame));
        if (frame.type !== "restart") setTyping(true);
      } else {
        setStatus(T.queuedoffline);  // no typing dots: nobody is answering it yet
      }
    }

    var lastTyping = 0;
    input.addEventListener("input", function () {
      // Tell a person (not the bot) that the shopper is typing; at most every 2 seconds.
      if (person && ws && ws.readyState === 1 && Date.now() - lastTyping > 2000) {
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
      focusNext();
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
