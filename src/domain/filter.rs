//! Payload filters (a Herald extension): the small expression language an endpoint's `filter` is
//! written in, its parser and its evaluator over a message's JSON payload.
//!
//! Hand-written recursive descent rather than a parser crate: the grammar is a dozen rules, and
//! what matters here (a byte position in every error, a hard nesting bound enforced while parsing,
//! no backtracking so the cost is linear) is simpler to guarantee directly than through a crate.
//!
//! Grammar (whitespace between tokens is free):
//! ```text
//! expr    := and ("or" and)*
//! and     := unary ("and" unary)*
//! unary   := "not" unary | "(" expr ")" | path test
//! test    := ("==" | "!=" | "<" | ">") value | "in" "[" value ("," value)* "]"
//!          | "exists" | "startsWith" string
//! path    := "$" ("." name | "[" integer "]" | "[" string "]")*
//! value   := string | number | "true" | "false" | "null"
//! ```
//! Strings are JSON strings (double quotes, JSON escapes). A path that does not resolve (missing
//! key, index out of range, payload not an object) makes every test false except `!=`, which is
//! `not ==`.

use serde_json::Value;

/// Longest filter accepted, in bytes.
pub const MAX_LEN: usize = 1000;
/// Deepest nesting of parentheses and `not` accepted.
pub const MAX_DEPTH: usize = 32;

/// A parse error: the byte position where the filter stops making sense, and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("position {pos}: {msg}")]
pub struct FilterError {
    pub pos: usize,
    pub msg: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Key(String),
    Index(usize),
}

#[derive(Debug, Clone, PartialEq)]
enum Test {
    Eq(Value),
    Ne(Value),
    Lt(Value),
    Gt(Value),
    In(Vec<Value>),
    Exists,
    StartsWith(String),
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Or(Vec<Node>),
    And(Vec<Node>),
    Not(Box<Node>),
    Cmp(Vec<Seg>, Test),
}

/// A parsed filter, ready to evaluate against payloads.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter(Node);

impl Filter {
    /// Parse `text`; the error says where and what was expected.
    pub fn parse(text: &str) -> Result<Filter, FilterError> {
        if text.len() > MAX_LEN {
            return Err(FilterError {
                pos: MAX_LEN,
                msg: format!("longer than {MAX_LEN} characters"),
            });
        }
        let mut p = Parser { s: text, pos: 0 };
        let node = p.expr(0)?;
        p.ws();
        if p.pos < text.len() {
            return Err(p.err("expected `and`, `or` or the end"));
        }
        Ok(Filter(node))
    }

    /// Whether `payload` passes the filter.
    pub fn matches(&self, payload: &Value) -> bool {
        eval(&self.0, payload)
    }
}

/// Whether a message with this JSON `payload` passes an endpoint's `filter` (absent: all do). For
/// a single check; fan-out parses the payload once for all endpoints.
pub fn passes(filter: Option<&str>, payload: &[u8]) -> bool {
    let Some(text) = filter else {
        return true;
    };
    let value = serde_json::from_slice(payload).unwrap_or(Value::Null);
    Filter::parse(text).is_ok_and(|f| f.matches(&value))
}

fn eval(n: &Node, payload: &Value) -> bool {
    match n {
        Node::Or(xs) => xs.iter().any(|x| eval(x, payload)),
        Node::And(xs) => xs.iter().all(|x| eval(x, payload)),
        Node::Not(x) => !eval(x, payload),
        Node::Cmp(path, test) => {
            let v = resolve(path, payload);
            match test {
                Test::Ne(lit) => !v.is_some_and(|v| same(v, lit)),
                _ => v.is_some_and(|v| holds(test, v)),
            }
        }
    }
}

fn resolve<'a>(path: &[Seg], payload: &'a Value) -> Option<&'a Value> {
    path.iter().try_fold(payload, |v, seg| match seg {
        Seg::Key(k) => v.as_object()?.get(k),
        Seg::Index(i) => v.as_array()?.get(*i),
    })
}

/// JSON equality, except that numbers compare by value (`1 == 1.0`).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn holds(test: &Test, v: &Value) -> bool {
    match test {
        Test::Eq(lit) => same(v, lit),
        Test::Ne(lit) => !same(v, lit),
        Test::Lt(lit) => order(v, lit) == Some(std::cmp::Ordering::Less),
        Test::Gt(lit) => order(v, lit) == Some(std::cmp::Ordering::Greater),
        Test::In(lits) => lits.iter().any(|l| same(v, l)),
        Test::Exists => true,
        Test::StartsWith(p) => v.as_str().is_some_and(|s| s.starts_with(p.as_str())),
    }
}

/// Numbers order with numbers, strings with strings; anything else does not compare.
fn order(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

struct Parser<'a> {
    s: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn err(&self, msg: &str) -> FilterError {
        FilterError {
            pos: self.pos,
            msg: msg.to_string(),
        }
    }

    fn rest(&self) -> &str {
        &self.s[self.pos..]
    }

    fn ws(&mut self) {
        let r = self.rest();
        self.pos += r.len() - r.trim_start().len();
    }

    /// Consume `sym` (after whitespace) if it comes next.
    fn eat(&mut self, sym: &str) -> bool {
        self.ws();
        if self.rest().starts_with(sym) {
            self.pos += sym.len();
            true
        } else {
            false
        }
    }

    /// Consume the keyword `kw` if it comes next as a whole word.
    fn keyword(&mut self, kw: &str) -> bool {
        self.ws();
        let r = self.rest();
        let whole = r.starts_with(kw)
            && !r[kw.len()..]
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        if whole {
            self.pos += kw.len();
        }
        whole
    }

    fn expr(&mut self, depth: usize) -> Result<Node, FilterError> {
        let mut xs = vec![self.and(depth)?];
        while self.keyword("or") {
            xs.push(self.and(depth)?);
        }
        Ok(if xs.len() == 1 {
            xs.remove(0)
        } else {
            Node::Or(xs)
        })
    }

    fn and(&mut self, depth: usize) -> Result<Node, FilterError> {
        let mut xs = vec![self.unary(depth)?];
        while self.keyword("and") {
            xs.push(self.unary(depth)?);
        }
        Ok(if xs.len() == 1 {
            xs.remove(0)
        } else {
            Node::And(xs)
        })
    }

    fn unary(&mut self, depth: usize) -> Result<Node, FilterError> {
        self.ws();
        if depth >= MAX_DEPTH {
            return Err(self.err(&format!("nested deeper than {MAX_DEPTH}")));
        }
        if self.keyword("not") {
            return Ok(Node::Not(Box::new(self.unary(depth + 1)?)));
        }
        if self.eat("(") {
            let inner = self.expr(depth + 1)?;
            if !self.eat(")") {
                return Err(self.err("expected `)`"));
            }
            return Ok(inner);
        }
        let path = self.path()?;
        let test = self.test()?;
        Ok(Node::Cmp(path, test))
    }

    fn path(&mut self) -> Result<Vec<Seg>, FilterError> {
        if !self.eat("$") {
            return Err(self.err("expected a path starting with `$`, `(` or `not`"));
        }
        let mut segs = Vec::new();
        loop {
            if self.rest().starts_with('.') {
                self.pos += 1;
                let name_len = self
                    .rest()
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
                    .unwrap_or(self.rest().len());
                if name_len == 0 {
                    return Err(self.err("expected a field name"));
                }
                segs.push(Seg::Key(self.rest()[..name_len].to_string()));
                self.pos += name_len;
            } else if self.rest().starts_with('[') {
                self.pos += 1;
                self.ws();
                if self.rest().starts_with('"') {
                    segs.push(Seg::Key(self.string()?));
                } else {
                    let digits = self
                        .rest()
                        .find(|c: char| !c.is_ascii_digit())
                        .unwrap_or(self.rest().len());
                    let index = self.rest()[..digits]
                        .parse()
                        .map_err(|_| self.err("expected an index or a quoted field name"))?;
                    self.pos += digits;
                    segs.push(Seg::Index(index));
                }
                if !self.eat("]") {
                    return Err(self.err("expected `]`"));
                }
            } else {
                return Ok(segs);
            }
        }
    }

    fn test(&mut self) -> Result<Test, FilterError> {
        if self.eat("==") {
            return Ok(Test::Eq(self.value()?));
        }
        if self.eat("!=") {
            return Ok(Test::Ne(self.value()?));
        }
        if self.eat("<") {
            return Ok(Test::Lt(self.value()?));
        }
        if self.eat(">") {
            return Ok(Test::Gt(self.value()?));
        }
        if self.keyword("exists") {
            return Ok(Test::Exists);
        }
        if self.keyword("startsWith") {
            self.ws();
            return Ok(Test::StartsWith(self.string()?));
        }
        if self.keyword("in") {
            if !self.eat("[") {
                return Err(self.err("expected `[`"));
            }
            let mut xs = vec![self.value()?];
            while self.eat(",") {
                xs.push(self.value()?);
            }
            if !self.eat("]") {
                return Err(self.err("expected `,` or `]`"));
            }
            return Ok(Test::In(xs));
        }
        self.ws();
        Err(self.err("expected an operator (==, !=, <, >, in, exists, startsWith)"))
    }

    fn value(&mut self) -> Result<Value, FilterError> {
        self.ws();
        if self.rest().starts_with('"') {
            return self.string().map(Value::String);
        }
        for (kw, v) in [
            ("true", Value::Bool(true)),
            ("false", Value::Bool(false)),
            ("null", Value::Null),
        ] {
            if self.keyword(kw) {
                return Ok(v);
            }
        }
        let len = self
            .rest()
            .find(|c: char| !(c.is_ascii_digit() || "+-.eE".contains(c)))
            .unwrap_or(self.rest().len());
        match serde_json::from_str::<serde_json::Number>(&self.rest()[..len]) {
            Ok(n) if len > 0 => {
                self.pos += len;
                Ok(Value::Number(n))
            }
            _ => Err(self.err("expected a value")),
        }
    }

    /// A JSON string literal; `pos` is at its opening quote.
    fn string(&mut self) -> Result<String, FilterError> {
        let r = self.rest();
        if !r.starts_with('"') {
            return Err(self.err("expected a string"));
        }
        let mut escaped = false;
        let end = r[1..].char_indices().find_map(|(i, c)| {
            let closes = c == '"' && !escaped;
            escaped = c == '\\' && !escaped;
            closes.then_some(i + 2)
        });
        let Some(end) = end else {
            return Err(self.err("unterminated string"));
        };
        let s = serde_json::from_str(&r[..end]).map_err(|_| self.err("invalid string"))?;
        self.pos += end;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn m(f: &str, p: Value) -> bool {
        Filter::parse(f).unwrap().matches(&p)
    }

    fn err(f: &str) -> String {
        Filter::parse(f).unwrap_err().to_string()
    }

    #[test]
    fn every_operator() {
        let p = json!({"type": "order.paid", "n": 5, "ok": true, "none": null,
            "data": {"items": [{"sku": "A-1"}], "k y": 1}});
        assert!(m(r#"$.type == "order.paid""#, p.clone()));
        assert!(!m(r#"$.type == "x""#, p.clone()));
        assert!(m("$.n == 5.0", p.clone()));
        assert!(m("$.n != 4", p.clone()));
        assert!(!m("$.n != 5", p.clone()));
        assert!(m("$.missing != 5", p.clone()));
        assert!(m("$.n < 6 and $.n > 4", p.clone()));
        assert!(!m("$.n < 5", p.clone()));
        assert!(!m("$.n > 5", p.clone()));
        assert!(!m(r#"$.n < "9""#, p.clone()));
        assert!(m(r#"$.type < "p""#, p.clone()));
        assert!(m(r#"$.n in [1, "5", 5]"#, p.clone()));
        assert!(!m("$.n in [1, 2]", p.clone()));
        assert!(m("$.none exists", p.clone()));
        assert!(m("$.none == null", p.clone()));
        assert!(!m("$.nope exists", p.clone()));
        assert!(m("$.ok == true and $.ok != false", p.clone()));
        assert!(m(r#"$.type startsWith "order.""#, p.clone()));
        assert!(!m(r#"$.n startsWith "5""#, p.clone()));
        assert!(m(r#"$.data.items[0].sku == "A-1""#, p.clone()));
        assert!(m(r#"$["data"]["k y"] == 1"#, p.clone()));
        assert!(!m("$.data.items[1] exists", p.clone()));
        assert!(m("not $.n == 4", p.clone()));
        assert!(m("$.n == 4 or ($.n == 5 and not $.ok == false)", p.clone()));
        assert!(!m("$.n == 4 or $.n == 6", p.clone()));
        // `and` binds tighter than `or`.
        assert!(m("$.n == 5 or $.n == 4 and $.n == 6", p.clone()));
        assert!(!m("($.n == 5 or $.n == 4) and $.n == 6", p.clone()));
        assert!(m("$ exists", p));
    }

    #[test]
    fn a_payload_that_is_not_an_object_matches_no_path() {
        for p in [json!([1]), json!("s"), json!(3), json!(null)] {
            assert!(!m("$.a exists", p.clone()));
            assert!(!m("$.a == 1", p.clone()));
            assert!(m("$.a != 1", p));
        }
    }

    #[test]
    fn errors_say_where() {
        assert_eq!(err("$.a =="), "position 6: expected a value");
        assert_eq!(
            err("$.a == 1 and"),
            "position 12: expected a path starting with `$`, `(` or `not`"
        );
        assert_eq!(
            err("$.a ~ 1"),
            "position 4: expected an operator (==, !=, <, >, in, exists, startsWith)"
        );
        assert_eq!(err("($.a exists"), "position 11: expected `)`");
        assert_eq!(err("$.a in [1, 2"), "position 12: expected `,` or `]`");
        assert_eq!(err("$.a in 1"), "position 7: expected `[`");
        assert_eq!(err(r#"$.a == "x"#), "position 7: unterminated string");
        assert_eq!(err("$. == 1"), "position 2: expected a field name");
        assert_eq!(
            err("$[x] exists"),
            "position 2: expected an index or a quoted field name"
        );
        assert_eq!(
            err("$.a exists $.b"),
            "position 11: expected `and`, `or` or the end"
        );
        assert_eq!(err("$.a startsWith 1"), "position 15: expected a string");
        assert_eq!(
            err(""),
            "position 0: expected a path starting with `$`, `(` or `not`"
        );
        assert!(err(&"x".repeat(MAX_LEN + 1)).starts_with("position 1000: longer than"));
        let deep = format!("{}$.a exists{}", "(".repeat(40), ")".repeat(40));
        assert_eq!(err(&deep), "position 32: nested deeper than 32");
        let nots = format!("{}$.a exists", "not ".repeat(40));
        assert!(err(&nots).ends_with("nested deeper than 32"));
        let ok = format!("{}$.a exists{}", "(".repeat(31), ")".repeat(31));
        assert!(Filter::parse(&ok).is_ok());
    }

    /// A small seeded generator (xorshift) so failures reproduce without a fuzzing crate.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
            xs[(self.next() % xs.len() as u64) as usize]
        }
    }

    /// A valid expression from the grammar, up to `budget` levels deep.
    fn valid(rng: &mut Rng, budget: u32) -> String {
        const PATHS: &[&str] = &["$", "$.a", "$.a[1].b", "$[\"k\"]", "$.b.k", "$.a[0]"];
        const VALUES: &[&str] = &["1", "-2.5e3", "\"s\"", "true", "false", "null"];
        match rng.next() % if budget == 0 { 1 } else { 4 } {
            0 => {
                let path = rng.pick(PATHS);
                let value = rng.pick(VALUES);
                match rng.next() % 7 {
                    0 => format!("{path} == {value}"),
                    1 => format!("{path} != {value}"),
                    2 => format!("{path} < {value}"),
                    3 => format!("{path} > {value}"),
                    4 => format!("{path} in [{value}, {}]", rng.pick(VALUES)),
                    5 => format!("{path} exists"),
                    _ => format!("{path} startsWith \"s\""),
                }
            }
            1 => format!("not {}", valid(rng, budget - 1)),
            2 => format!("({})", valid(rng, budget - 1)),
            _ => format!(
                "{} {} {}",
                valid(rng, budget - 1),
                rng.pick(&["and", "or"]),
                valid(rng, budget - 1)
            ),
        }
    }

    /// `text` with a random cut, or a random token put in or dropped at a random place.
    fn mutate(rng: &mut Rng, text: &str, tokens: &[&str]) -> String {
        let cuts: Vec<usize> = (0..=text.len())
            .filter(|&i| text.is_char_boundary(i))
            .collect();
        let at = cuts[(rng.next() % cuts.len() as u64) as usize];
        match rng.next() % 3 {
            0 => text[..at].to_string(),
            1 => format!("{}{}{}", &text[..at], rng.pick(tokens), &text[at..]),
            _ => {
                let to = cuts[(rng.next() % cuts.len() as u64) as usize].max(at);
                format!("{}{}", &text[..at], &text[to..])
            }
        }
    }

    fn depth(n: &Node) -> usize {
        match n {
            Node::Or(xs) | Node::And(xs) => xs.iter().map(depth).max().unwrap_or(0),
            Node::Not(x) => 1 + depth(x),
            Node::Cmp(..) => 0,
        }
    }

    #[test]
    fn fuzz_never_panics_and_stays_bounded() {
        const TOKENS: &[&str] = &[
            "$",
            ".a",
            ".b",
            "[0]",
            "[\"k\"]",
            "[",
            "]",
            "(",
            ")",
            " ",
            "==",
            "!=",
            "<",
            ">",
            "in",
            "exists",
            "startsWith",
            "and",
            "or",
            "not",
            "\"s\"",
            "\"\\\"",
            "1",
            "-2.5e3",
            "true",
            "null",
            ",",
            "é",
            "\\",
            "\"",
            "$.a == 1",
            "1e999",
        ];
        let payload = json!({"a": [1, {"b": "s"}], "b": {"k": null}, "k": 1});
        let start = std::time::Instant::now();
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut parsed = 0;
        for i in 0..20_000 {
            if start.elapsed() > std::time::Duration::from_secs(20) {
                break;
            }
            let text: String = if i % 3 == 2 {
                let v = valid(&mut rng, 6);
                if rng.next() % 4 == 0 {
                    assert!(Filter::parse(&v).is_ok(), "{v}");
                    v
                } else {
                    mutate(&mut rng, &v, TOKENS)
                }
            } else if i % 2 == 0 {
                let n = rng.next() % 40;
                (0..n)
                    .map(|_| rng.pick(TOKENS))
                    .collect::<Vec<_>>()
                    .join(if i % 4 == 0 { " " } else { "" })
            } else {
                let n = (rng.next() % 64) as usize;
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                String::from_utf8_lossy(&bytes).into_owned()
            };
            match Filter::parse(&text) {
                Ok(f) => {
                    parsed += 1;
                    assert!(depth(&f.0) <= MAX_DEPTH, "{text}");
                    f.matches(&payload);
                }
                Err(e) => assert!(e.pos <= text.len(), "{text}: {e}"),
            }
        }
        // Deep inputs far past the bound are refused, not overflowed.
        let deep = "not (".repeat(5000);
        assert!(Filter::parse(&deep).is_err());
        assert!(
            parsed > 0,
            "the generator should produce some valid filters"
        );
    }

    #[test]
    fn evaluation_cost() {
        let f = Filter::parse(
            r#"$.type startsWith "order." and ($.data.items[0].sku in ["A-1", "B-2"] or $.n > 3)"#,
        )
        .unwrap();
        let p = json!({"type": "order.paid", "n": 5, "data": {"items": [{"sku": "C"}]}});
        let n = 100_000;
        let t = std::time::Instant::now();
        for _ in 0..n {
            assert!(std::hint::black_box(&f).matches(&p));
        }
        let eval_us = t.elapsed().as_secs_f64() * 1e6 / f64::from(n);
        let t = std::time::Instant::now();
        for _ in 0..10_000 {
            std::hint::black_box(Filter::parse(std::hint::black_box(
                r#"$.type startsWith "order." and ($.data.items[0].sku in ["A-1", "B-2"] or $.n > 3)"#,
            )))
            .unwrap();
        }
        let parse_us = t.elapsed().as_secs_f64() * 1e6 / 10_000.0;
        eprintln!("filter: {eval_us:.3} µs per evaluation, {parse_us:.3} µs per parse");
    }
}
