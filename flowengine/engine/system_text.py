"""What the engine itself says (re-prompts, handoff notices), in every shipped locale.

Flows override these per step (`retry:`); these are the defaults, so a shopper never sees an
English fallback in a Thai conversation.
"""

from __future__ import annotations

from ..language.text import Text

_TEXTS: dict[str, dict[str, str]] = {
    "invalid.email": {
        "en": "That doesn't look like an email address. Could you check it and try again?",
        "cs": "To nevypadá jako e-mailová adresa. Zkontrolujte ji prosím a zkuste to znovu.",
        "th": "ดูเหมือนจะไม่ใช่อีเมลที่ถูกต้อง กรุณาตรวจสอบแล้วลองอีกครั้ง",
        "id": "Sepertinya itu bukan alamat email. Bisa dicek dan coba lagi?",
        "ro": "Nu pare a fi o adresă de e-mail. Verificați-o și încercați din nou.",
    },
    "invalid.order_number": {
        "en": "That doesn't look like an order number. It's on your confirmation email, e.g. 1001.",
        "cs": "To nevypadá jako číslo objednávky. Najdete ho v potvrzovacím e-mailu, např. 1001.",
        "th": "ดูเหมือนจะไม่ใช่หมายเลขคำสั่งซื้อ ดูได้ในอีเมลยืนยัน เช่น 1001",
        "id": "Sepertinya itu bukan nomor pesanan. Nomornya ada di email konfirmasi, mis. 1001.",
        "ro": "Nu pare a fi un număr de comandă. Îl găsiți în e-mailul de confirmare, de ex. 1001.",
    },
    "invalid.phone": {
        "en": "Please enter a phone number with 7 to 15 digits.",
        "cs": "Zadejte prosím telefonní číslo se 7 až 15 číslicemi.",
        "th": "กรุณากรอกหมายเลขโทรศัพท์ 7 ถึง 15 หลัก",
        "id": "Masukkan nomor telepon dengan 7 sampai 15 digit.",
        "ro": "Introduceți un număr de telefon cu 7 până la 15 cifre.",
    },
    "invalid.number": {
        "en": "Please enter a number.",
        "cs": "Zadejte prosím číslo.",
        "th": "กรุณากรอกตัวเลข",
        "id": "Masukkan angka.",
        "ro": "Introduceți un număr.",
    },
    "invalid.date": {
        "en": "Please enter a date, e.g. 2026-03-31.",
        "cs": "Zadejte prosím datum, např. 31.03.2026.",
        "th": "กรุณากรอกวันที่ เช่น 2026-03-31",
        "id": "Masukkan tanggal, mis. 2026-03-31.",
        "ro": "Introduceți o dată, de ex. 31.03.2026.",
    },
    # `validate: {date: {...}}`: a date of the right form on the wrong side of a bound.
    "invalid.date_past": {
        "en": "That date is in the future. Please enter a date up to today, "
        "{{ today | date('long') }}.",
        "cs": "To datum je v budoucnosti. Zadejte prosím datum nejpozději dnešní, "
        "{{ today | date('long') }}.",
        "th": "วันที่นี้ยังมาไม่ถึง กรุณากรอกวันที่ไม่เกินวันนี้ ({{ today | date('long') }})",
        "id": "Tanggal itu ada di masa depan. Masukkan tanggal paling lambat hari ini, "
        "{{ today | date('long') }}.",
        "ro": "Data este în viitor. Introduceți o dată cel târziu de azi, "
        "{{ today | date('long') }}.",
    },
    "invalid.date_future": {
        "en": "That date has already passed. Please enter today, "
        "{{ today | date('long') }}, or a later date.",
        "cs": "To datum už uplynulo. Zadejte prosím dnešní datum, "
        "{{ today | date('long') }}, nebo pozdější.",
        "th": "วันที่นี้ผ่านไปแล้ว กรุณากรอกวันนี้ ({{ today | date('long') }}) หรือวันที่หลังจากนี้",
        "id": "Tanggal itu sudah lewat. Masukkan tanggal hari ini, "
        "{{ today | date('long') }}, atau sesudahnya.",
        "ro": "Data a trecut deja. Introduceți data de azi, "
        "{{ today | date('long') }}, sau una ulterioară.",
    },
    "invalid.date_range": {
        "en": "That date is outside the dates I can accept. Please check the day and the year.",
        "cs": "Toto datum nemohu přijmout, je mimo povolený rozsah. Zkontrolujte prosím den a rok.",
        "th": "วันที่นี้อยู่นอกช่วงที่รับได้ กรุณาตรวจสอบวันและปีอีกครั้ง",
        "id": "Tanggal itu di luar rentang yang bisa saya terima. "
        "Mohon periksa tanggal dan tahunnya.",
        "ro": "Data este în afara intervalului acceptat. Verificați ziua și anul.",
    },
    "invalid.text": {
        "en": "Could you tell me a little more?",
        "cs": "Můžete to prosím trochu upřesnit?",
        "th": "ช่วยเล่ารายละเอียดเพิ่มอีกนิดได้ไหม",
        "id": "Bisa ceritakan sedikit lebih detail?",
        "ro": "Ne puteți spune puțin mai mult?",
    },
    "invalid.regex": {
        "en": "That isn't in the format I need. Please try again.",
        "cs": "To není ve formátu, který potřebuji. Zkuste to prosím znovu.",
        "th": "รูปแบบไม่ถูกต้อง กรุณาลองอีกครั้ง",
        "id": "Formatnya tidak sesuai. Silakan coba lagi.",
        "ro": "Nu este în formatul necesar. Încercați din nou.",
    },
    "invalid.one_of": {
        "en": "Please pick one of the options.",
        "cs": "Vyberte prosím jednu z možností.",
        "th": "กรุณาเลือกหนึ่งตัวเลือก",
        "id": "Silakan pilih salah satu opsi.",
        "ro": "Alegeți una dintre opțiuni.",
    },
    "handoff.connecting": {
        "en": "I'm connecting you with a person. Please stay here.",
        "cs": "Přepojuji vás na kolegu. Zůstaňte prosím tady.",
        "th": "กำลังเชื่อมต่อคุณกับเจ้าหน้าที่ กรุณารอสักครู่",
        "id": "Saya hubungkan Anda dengan petugas kami. Mohon tunggu di sini.",
        "ro": "Vă conectez cu un coleg. Vă rog să rămâneți aici.",
    },
    "handoff.unavailable": {
        "en": "Sorry, nobody is available right now. Please try again later.",
        "cs": "Omlouváme se, teď není nikdo k dispozici. Zkuste to prosím později.",
        "th": "ขออภัย ขณะนี้ไม่มีเจ้าหน้าที่ว่าง กรุณาลองใหม่ภายหลัง",
        "id": "Maaf, saat ini tidak ada petugas yang tersedia. Silakan coba lagi nanti.",
        "ro": "Ne pare rău, nu este nimeni disponibil acum. Încercați mai târziu.",
    },
    "handoff.back": {
        "en": "You're back with the assistant.",
        "cs": "Jste zpět u asistenta.",
        "th": "คุณกลับมาคุยกับผู้ช่วยอัตโนมัติแล้ว",
        "id": "Anda kembali ke asisten otomatis.",
        "ro": "Sunteți din nou cu asistentul.",
    },
    # The `csat` step's questions (a flow may write its own `prompt`), its answers, and the
    # question after a chat with a person (`handoff.csat` in flowengine.yaml).
    "csat.yes_no": {
        "en": "Did this solve it?",
        "cs": "Vyřešilo vám to, co jste potřebovali?",
        "th": "ข้อมูลนี้ช่วยแก้ปัญหาของคุณได้ไหมคะ",
        "id": "Apakah ini menyelesaikan masalah Anda?",
        "ro": "V-a rezolvat problema?",
    },
    "csat.five": {
        "en": "How would you rate this answer? 1 is poor, 5 is excellent.",
        "cs": "Jak hodnotíte tuto odpověď? 1 je špatná, 5 je výborná.",
        "th": "คุณให้คะแนนคำตอบนี้เท่าไรคะ 1 คือแย่ 5 คือดีมาก",
        "id": "Berapa nilai Anda untuk jawaban ini? 1 buruk, 5 sangat baik.",
        "ro": "Cum evaluați acest răspuns? 1 înseamnă slab, 5 excelent.",
    },
    "csat.agent": {
        "en": "How would you rate your chat with our team? 1 is poor, 5 is excellent.",
        "cs": "Jak hodnotíte rozhovor s naším týmem? 1 je špatný, 5 je výborný.",
        "th": "คุณให้คะแนนการสนทนากับเจ้าหน้าที่ของเราเท่าไรคะ 1 คือแย่ 5 คือดีมาก",
        "id": "Berapa nilai Anda untuk obrolan dengan tim kami? 1 buruk, 5 sangat baik.",
        "ro": "Cum evaluați discuția cu echipa noastră? 1 înseamnă slab, 5 excelent.",
    },
    # Typed text at a menu (docs/flow-language.md, "Intents: shoppers who type").
    "intents.no_match": {
        "en": "Sorry, I did not get that.",
        "cs": "Promiňte, tomu nerozumím.",
        "th": "ขออภัยค่ะ ไม่เข้าใจข้อความนี้",
        "id": "Maaf, saya tidak mengerti.",
        "ro": "Îmi pare rău, nu am înțeles.",
    },
    "intents.clarify": {
        "en": "Did you mean one of these?",
        "cs": "Myslíte jednu z těchto možností?",
        "th": "หมายถึงเรื่องใดเรื่องหนึ่งต่อไปนี้ใช่ไหมคะ",
        "id": "Apakah maksud Anda salah satu dari ini?",
        "ro": "V-ați referit la una dintre acestea?",
    },
    "intents.something_else": {
        "en": "Something else",
        "cs": "Něco jiného",
        "th": "เรื่องอื่น",
        "id": "Hal lain",
        "ro": "Altceva",
    },
    "intents.rephrase": {
        "en": "All right. Choose below, or tell me in other words.",
        "cs": "Dobře. Vyberte si níže, nebo mi to napište jinými slovy.",
        "th": "ได้ค่ะ เลือกจากด้านล่าง หรือพิมพ์บอกด้วยคำอื่นได้เลยค่ะ",
        "id": "Baik. Pilih di bawah, atau ceritakan dengan kata lain.",
        "ro": "Bine. Alegeți mai jos sau spuneți-mi cu alte cuvinte.",
    },
    "intents.person": {
        "en": "Talk to a person",
        "cs": "Mluvit s člověkem",
        "th": "คุยกับเจ้าหน้าที่",
        "id": "Bicara dengan petugas",
        "ro": "Vorbiți cu un om",
    },
    "csat.yes": {"en": "Yes", "cs": "Ano", "th": "ใช่", "id": "Ya", "ro": "Da"},
    "csat.no": {"en": "No", "cs": "Ne", "th": "ไม่ใช่", "id": "Tidak", "ro": "Nu"},
    "csat.thanks": {
        "en": "Thank you for your feedback!",
        "cs": "Děkujeme za zpětnou vazbu!",
        "th": "ขอบคุณสำหรับความคิดเห็นค่ะ",
        "id": "Terima kasih atas masukan Anda!",
        "ro": "Mulțumim pentru părere!",
    },
}

TEXTS: dict[str, Text] = {key: Text.of(value) for key, value in _TEXTS.items()}
