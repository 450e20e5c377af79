//! Differential test: the session id and the login name Rampart reads
//! from a request against what werkzeug 2.2 (Odoo 18's) reads from the same
//! bytes (`oracle_sessions.py`), on hand-written spellings and seeded
//! mutations of them.
//!
//! Agreement: where Rampart names a session id or a login, werkzeug must
//! name the same one (the session id exactly; the login after Rampart's
//! case and space folding). Rampart's None is always safe (grouped by
//! address; the per-address login bucket). python3 or werkzeug missing is
//! a failure, not a skip. `RAMPART_DIFF_CASES` (default 3000) mutations;
//! `RAMPART_ORACLE_PYTHON` (default python3) picks the interpreter, e.g.
//! a real Odoo's virtualenv.

use std::io::{BufRead, BufReader, Write};

use rampart_guard::{form_login, request_session_id};
use rampart_testkit::oracle::{self, Rng, env_number};

const COOKIES: &[&str] = &[
    "session_id=abc",
    "a=1; session_id=abc; b=2",
    "session_id=first; session_id=second",
    " session_id = abc ;",
    "session_id=a b",
    "session_id=a,b; c=d",
    "flag; session_id=x",
    "=x; session_id=y",
    ";;session_id=z;;",
    "Session_id=upper; session_id=lower",
    "session_id=; session_id=second",
    "session_id",
    "session_id=x=y",
    "a=\"q;session_id=evil\"; session_id=good",
    "session_id=\"quoted\"",
    "session_id\t=\ttab",
    "sessionid=x; session_id =y",
    "=session_id=first; session_id=second",
];

const FORMS: &[(&str, &str, &str)] = &[
    (
        "",
        "application/x-www-form-urlencoded",
        "login=admin&password=x",
    ),
    ("login=q", "application/x-www-form-urlencoded", "password=x"),
    ("login=q", "application/x-www-form-urlencoded", "login=form"),
    ("login=q", "text/plain", "login=body"),
    (
        "",
        "application/x-www-form-urlencoded; charset=utf-8",
        "login=a+b%40c",
    ),
    ("", "application/x-www-form-urlencoded", "login=1&login=2"),
    ("", "application/x-www-form-urlencoded", "%6Cogin=enc"),
    ("", "application/x-www-form-urlencoded", "login=%zz%4"),
    (
        "",
        "application/x-www-form-urlencoded",
        "login=%C3%A9t%C3%A9",
    ),
    ("", "application/x-www-form-urlencoded", "login=%FF"),
    ("", "APPLICATION/X-WWW-FORM-URLENCODED", "login=Upper"),
    ("", "application/x-www-form-urlencoded", "a=1;login=semi"),
    ("", "application/x-www-form-urlencoded", "login"),
    ("login=x&login=y", "", ""),
];

const NOISE: &[&str] = &[
    ";",
    "=",
    " ",
    "\t",
    "\"",
    ",",
    "session_id",
    "login",
    "%",
    "+",
    "&",
    "a",
    "%41",
    "\\",
];

fn mutate(rng: &mut Rng, s: &str) -> String {
    let mut s = s.to_string();
    for _ in 0..1 + rng.below(3) {
        let at = if s.is_empty() {
            0
        } else {
            rng.below(s.len() + 1)
        };
        let at = (0..=at).rev().find(|i| s.is_char_boundary(*i)).unwrap_or(0);
        match rng.below(3) {
            0 => s.insert_str(at, NOISE[rng.below(NOISE.len())]),
            1 if at < s.len() => {
                let end = (at + 1..=s.len()).find(|i| s.is_char_boundary(*i)).unwrap();
                s.replace_range(at..end, "");
            }
            _ => s.insert_str(at, NOISE[rng.below(NOISE.len())]),
        }
    }
    s
}

#[test]
fn rampart_reads_the_session_and_login_as_werkzeug_does() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oracle_sessions.py");
    let python = std::env::var("RAMPART_ORACLE_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut py = oracle::spawn(&python, script, "werkzeug: Debian's python3-werkzeug");
    let mut stdin = py.stdin.take().unwrap();
    let mut stdout = BufReader::new(py.stdout.take().unwrap());
    let mut ask = |req: serde_json::Value| -> serde_json::Value {
        writeln!(stdin, "{req}").unwrap();
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or_else(|_| {
            panic!("the oracle did not answer (is werkzeug installed?): {line:?} for {req}")
        })
    };
    let cases = env_number("RAMPART_DIFF_CASES", 3000) as usize;
    let mut rng = Rng::new(env_number("RAMPART_DIFF_SEED", 0x5e55_1045) | 1);
    let mut checked = (0, 0, 0);
    let mut disagreements = Vec::new();
    let mut cookies: Vec<String> = COOKIES.iter().map(|s| s.to_string()).collect();
    for _ in 0..cases {
        let base = COOKIES[rng.below(COOKIES.len())];
        cookies.push(mutate(&mut rng, base));
    }
    for c in &cookies {
        let Ok(v) = http::HeaderValue::from_str(c) else {
            continue;
        };
        let mut h = http::HeaderMap::new();
        h.insert(http::header::COOKIE, v);
        let ours = request_session_id(&h).map(|b| String::from_utf8_lossy(b).into_owned());
        let theirs = ask(serde_json::json!({ "cookie": c }))["sid"]
            .as_str()
            .map(str::to_string);
        checked.0 += 1;
        if ours.is_some() {
            checked.2 += 1;
        }
        if ours.is_some() && ours != theirs {
            disagreements.push(format!(
                "cookie {c:?}: rampart {ours:?}, werkzeug {theirs:?}"
            ));
        }
    }
    let mut forms: Vec<(String, String, String)> = FORMS
        .iter()
        .map(|(q, c, b)| (q.to_string(), c.to_string(), b.to_string()))
        .collect();
    for _ in 0..cases {
        let (q, c, b) = FORMS[rng.below(FORMS.len())];
        let (q, b) = if rng.below(2) == 0 {
            (mutate(&mut rng, q), b.to_string())
        } else {
            (q.to_string(), mutate(&mut rng, b))
        };
        // Query strings travel percent-encoded-safe in a request target.
        if q.bytes().any(|x| x <= b' ' || x == b'"' || x == b'\\') {
            continue;
        }
        forms.push((q, c.to_string(), b));
    }
    for (q, c, b) in &forms {
        let ct = (!c.is_empty()).then_some(c.as_bytes());
        let query = (!q.is_empty()).then_some(q.as_str());
        let ours = form_login(query, ct, b.as_bytes());
        let theirs = ask(serde_json::json!({ "query": q, "ctype": c, "body": b }))["login"]
            .as_str()
            .map(|l| l.trim().to_lowercase());
        checked.1 += 1;
        if ours.is_some() && ours != theirs {
            disagreements.push(format!(
                "form query {q:?} type {c:?} body {b:?}: rampart {ours:?}, werkzeug {theirs:?}"
            ));
        }
    }
    drop(stdin);
    let _ = py.wait();
    eprintln!(
        "{} cookie headers ({} with a session id), {} forms checked",
        checked.0, checked.2, checked.1
    );
    assert!(checked.2 > 100, "too few cookie cases named a session id");
    assert!(
        disagreements.is_empty(),
        "{} disagreements:\n{}",
        disagreements.len(),
        disagreements.join("\n")
    );
}
