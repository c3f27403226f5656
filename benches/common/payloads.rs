//! Realistic JSON payloads for the benchmarks (shared by `store` and `load` through `#[path]`):
//! order, invoice, customer and push events of 0.3 to 8 KiB with varied field values, from a
//! seeded xorshift generator, so compression and parsing see what production sees, not a
//! repeated pad string.

use serde_json::json;

pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }

    pub fn alnum(&mut self, len: usize) -> String {
        const A: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        (0..len)
            .map(|_| A[self.below(A.len() as u64) as usize] as char)
            .collect()
    }

    fn hex(&mut self, len: usize) -> String {
        (0..len)
            .map(|_| char::from_digit(self.below(16) as u32, 16).unwrap_or('0'))
            .collect()
    }

    fn words(&mut self, lo: u64, hi: u64) -> String {
        let n = self.range(lo, hi);
        let mut s = String::new();
        for i in 0..n {
            if i > 0 {
                s.push(' ');
            }
            s.push_str(self.pick(WORDS));
        }
        s
    }

    fn money(&mut self) -> u64 {
        self.range(99, 250_000)
    }

    fn time(&mut self) -> String {
        format!(
            "2026-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            self.range(1, 12),
            self.range(1, 28),
            self.below(24),
            self.below(60),
            self.below(60),
            self.below(1000)
        )
    }
}

const WORDS: &[&str] = &[
    "delivery",
    "package",
    "express",
    "blue",
    "cotton",
    "shirt",
    "large",
    "small",
    "medium",
    "premium",
    "annual",
    "monthly",
    "subscription",
    "refund",
    "discount",
    "voucher",
    "please",
    "leave",
    "at",
    "the",
    "door",
    "ring",
    "bell",
    "twice",
    "fragile",
    "handle",
    "with",
    "care",
    "gift",
    "wrap",
    "birthday",
    "present",
    "for",
    "my",
    "sister",
    "office",
    "reception",
    "closed",
    "on",
    "weekends",
    "call",
    "before",
    "arriving",
    "back",
    "entrance",
    "near",
    "garage",
    "green",
    "steel",
    "bottle",
    "ceramic",
    "mug",
    "wireless",
    "headphones",
    "charger",
    "cable",
    "usb",
    "laptop",
    "stand",
    "desk",
    "lamp",
    "notebook",
    "pen",
    "set",
    "organic",
    "coffee",
    "beans",
    "tea",
    "sampler",
    "running",
    "shoes",
    "socks",
    "jacket",
    "waterproof",
    "winter",
    "summer",
    "edition",
    "limited",
    "order",
    "confirmed",
    "shipped",
    "your",
    "has",
    "been",
    "updated",
    "payment",
    "received",
    "thank",
    "you",
    "new",
    "message",
    "from",
    "support",
    "team",
    "reply",
    "soon",
    "status",
    "changed",
    "account",
    "settings",
    "security",
    "alert",
    "login",
    "device",
];
const FIRST: &[&str] = &[
    "Anna", "Ben", "Chloé", "David", "Elif", "Farid", "Greta", "Hiro", "Ines", "Jonas", "Kasia",
    "Liam", "Maya", "Noah", "Olga", "Pedro", "Quinn", "Rosa", "Sven", "Tariq", "Uma", "Viktor",
    "Wen", "Xavier", "Yusuf", "Zoë",
];
const LAST: &[&str] = &[
    "Andersen", "Baptiste", "Costa", "Dubois", "Eriksen", "Fischer", "García", "Hansen", "Ivanova",
    "Jansen", "Kowalski", "Larsen", "Müller", "Nakamura", "O'Brien", "Petrov", "Rossi", "Schmidt",
    "Tanaka", "Urquhart", "Villa", "Weber", "Yilmaz", "Zhang",
];
const CITIES: &[(&str, &str)] = &[
    ("Berlin", "DE"),
    ("Lyon", "FR"),
    ("Porto", "PT"),
    ("Gdańsk", "PL"),
    ("Leeds", "GB"),
    ("Utrecht", "NL"),
    ("Bologna", "IT"),
    ("Malmö", "SE"),
    ("Austin", "US"),
    ("Osaka", "JP"),
    ("Toronto", "CA"),
    ("Valencia", "ES"),
];
const CURRENCIES: &[&str] = &["EUR", "USD", "GBP", "SEK", "PLN", "JPY", "CAD"];
const DOMAINS: &[&str] = &[
    "example.com",
    "mail.example.org",
    "shop.example.net",
    "corp.example",
];

fn person(r: &mut Rng) -> serde_json::Value {
    let (first, last) = (r.pick(FIRST), r.pick(LAST));
    let (city, country) = CITIES[r.below(CITIES.len() as u64) as usize];
    json!({
        "id": format!("cus_{}", r.alnum(14)),
        "name": format!("{first} {last}"),
        "email": format!("{}.{}{}@{}", first.to_lowercase(), last.to_lowercase(), r.below(100), r.pick(DOMAINS)),
        "phone": format!("+{} {} {}", r.range(1, 89), r.range(100, 999), r.range(100_000, 9_999_999)),
        "address": {
            "line1": format!("{} {} Street", r.range(1, 400), r.pick(WORDS)),
            "line2": if r.below(3) == 0 { json!(format!("Apt {}", r.range(1, 90))) } else { json!(null) },
            "city": city,
            "postal_code": format!("{}", r.range(10_000, 99_999)),
            "country": country,
        },
    })
}

fn order_created(r: &mut Rng) -> serde_json::Value {
    let items: Vec<_> = (0..r.range(1, 40))
        .map(|_| {
            json!({
                "sku": format!("SKU-{}-{}", r.alnum(4).to_uppercase(), r.range(100, 9999)),
                "name": r.words(2, 5),
                "quantity": r.range(1, 6),
                "unit_price": r.money(),
                "tax_rate": r.range(0, 25),
            })
        })
        .collect();
    json!({
        "type": "order.created",
        "timestamp": r.time(),
        "data": {
            "id": format!("ord_{}", r.alnum(16)),
            "status": "confirmed",
            "currency": r.pick(CURRENCIES),
            "total": r.money() * 3,
            "customer": person(r),
            "shipping": { "method": r.pick(&["standard", "express", "pickup"]), "note": r.words(0, 14) },
            "items": items,
            "created_at": r.time(),
        }
    })
}

fn invoice_paid(r: &mut Rng) -> serde_json::Value {
    let lines: Vec<_> = (0..r.range(1, 40))
        .map(|_| {
            json!({
                "id": format!("il_{}", r.alnum(14)),
                "description": r.words(3, 9),
                "amount": r.money(),
                "period": { "start": r.time(), "end": r.time() },
                "proration": r.below(5) == 0,
            })
        })
        .collect();
    json!({
        "type": "invoice.paid",
        "timestamp": r.time(),
        "data": {
            "id": format!("in_{}", r.alnum(18)),
            "number": format!("INV-2026-{:06}", r.below(1_000_000)),
            "customer_id": format!("cus_{}", r.alnum(14)),
            "currency": r.pick(CURRENCIES),
            "amount_due": r.money(),
            "amount_paid": r.money(),
            "paid_at": r.time(),
            "payment_method": { "type": "card", "brand": r.pick(&["visa", "mastercard", "amex"]), "last4": format!("{:04}", r.below(10_000)) },
            "lines": lines,
        }
    })
}

fn customer_updated(r: &mut Rng) -> serde_json::Value {
    let meta: serde_json::Map<String, serde_json::Value> = (0..r.range(0, 12))
        .map(|i| (format!("{}_{i}", r.pick(WORDS)), json!(r.words(1, 4))))
        .collect();
    json!({
        "type": "customer.updated",
        "timestamp": r.time(),
        "data": {
            "customer": person(r),
            "previous_attributes": { "email": format!("{}@{}", r.alnum(8).to_lowercase(), r.pick(DOMAINS)) },
            "metadata": meta,
            "tags": (0..r.range(0, 6)).map(|_| r.pick(WORDS)).collect::<Vec<_>>(),
        }
    })
}

fn push_notification(r: &mut Rng) -> serde_json::Value {
    json!({
        "type": "push.notification",
        "timestamp": r.time(),
        "data": {
            "device_token": r.hex(64),
            "platform": r.pick(&["ios", "android", "web"]),
            "title": r.words(2, 6),
            "body": r.words(4, 40),
            "badge": r.below(20),
            "deep_link": format!("app://{}/{}", r.pick(WORDS), r.alnum(10)),
        }
    })
}

/// `n` events of 300 B to 8 KiB (an event outside is drawn again), the same ones every run.
pub fn payload_pool(n: usize) -> Vec<Vec<u8>> {
    let mut r = Rng(0x9E37_79B9_7F4A_7C15);
    let mut pool = Vec::with_capacity(n);
    while pool.len() < n {
        let v = match r.below(4) {
            0 => order_created(&mut r),
            1 => invoice_paid(&mut r),
            2 => customer_updated(&mut r),
            _ => push_notification(&mut r),
        };
        let bytes = serde_json::to_vec(&v).unwrap_or_default();
        if (300..=8192).contains(&bytes.len()) {
            pool.push(bytes);
        }
    }
    pool
}
