//! Differential test: Rampart's reading of a request path against
//! werkzeug's, on the bytes Rampart forwards.
//!
//! For each request-target (hand-written bypass spellings, then a generated
//! corpus), Rampart parses it as hyper does, judges it (stage 1 canonical
//! path, stage 5 route) and, if it accepts it, the origin-form target it
//! would forward goes to `werkzeug_paths.py`, which runs werkzeug's own WSGI
//! request handler and a werkzeug Map with Odoo's sensitive rules. They must
//! agree on the path and on the route; Rampart may be stricter (refuse, or
//! judge a route sensitive that werkzeug does not match), never looser.
//!
//! Needs Debian's /usr/bin/python3 with python3-werkzeug (Odoo's werkzeug;
//! scripts/test.sh installs it): without them the test fails, it never
//! skips. `RAMPART_WERKZEUG_CASES` sets the generated corpus size (default
//! 5000, a few seconds; a million outside CI).

use rampart_edge::stage::normalize::{CanonicalPath, canonical_path};
use rampart_edge::stage::route::{Route, route};
use rampart_testkit::oracle::{self, Rng, env_number};

const PYTHON: &str = "/usr/bin/python3";

fn oracle_script() -> String {
    format!("{}/tests/werkzeug_paths.py", env!("CARGO_MANIFEST_DIR"))
}

/// Fails loudly when the oracle cannot run.
fn check_python() {
    oracle::require_module(PYTHON, "werkzeug", NEEDS);
}

const NEEDS: &str = "apt-get install python3 python3-werkzeug";

#[derive(Debug, serde::Deserialize)]
struct Werkzeug {
    #[serde(default)]
    path: String,
    endpoint: Option<String>,
    #[serde(default)]
    redirect: bool,
    /// werkzeug's handler failed on the target: Odoo runs nothing.
    error: Option<String>,
}

/// Runs the oracle over every target in one process.
fn werkzeug(targets: &[String]) -> Vec<Werkzeug> {
    oracle::run(PYTHON, &oracle_script(), NEEDS, targets.to_vec())
        .into_iter()
        .map(|v| serde_json::from_value(v).expect("a werkzeug answer"))
        .collect()
}

/// What Rampart makes of a raw request-target.
enum Judged {
    /// hyper or stage 1 refuses it (400).
    Refused,
    Accepted {
        canonical: CanonicalPath,
        route: Route,
        forwarded: String,
    },
}

fn judge(raw: &str) -> Judged {
    // hyper builds the request's Uri from the request-target.
    let Ok(uri) = raw.parse::<http::Uri>() else {
        return Judged::Refused;
    };
    if uri.path() == "*" {
        return Judged::Refused;
    }
    match canonical_path(uri.path()) {
        Err(_) => Judged::Refused,
        Ok(canonical) => Judged::Accepted {
            route: route(&canonical),
            // pipeline::to_origin_form keeps exactly this.
            forwarded: uri
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| "/".into()),
            canonical,
        },
    }
}

/// werkzeug's path the way Rampart's canonical form spells it: `//`
/// collapsed (werkzeug redirects to that), no trailing slash
/// (`strict_slashes=False`).
fn werkzeug_canonical(path: &str) -> String {
    let mut out = String::new();
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        out.push('/');
        out.push_str(seg);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// The service Rampart's guard sees in an XML-RPC path, if it is one.
fn xmlrpc_service(lower: &str) -> Option<&str> {
    let rest = lower
        .strip_prefix("/xmlrpc/2/")
        .or_else(|| lower.strip_prefix("/xmlrpc/"))?;
    (!rest.is_empty() && !rest.contains('/')).then_some(rest)
}

/// werkzeug's `static:<module>:<path>` names the file Rampart serves:
/// the same file on disk, `//` and a trailing `/` aside (werkzeug's `path`
/// converter keeps them; Odoo joins the path with `os.path.join`).
fn same_static(endpoint: &str, module: &str, file: &str) -> bool {
    let Some((m, p)) = endpoint
        .strip_prefix("static:")
        .and_then(|r| r.split_once(':'))
    else {
        return false;
    };
    let p: Vec<&str> = p.split('/').filter(|s| !s.is_empty()).collect();
    m == module && p.join("/") == file
}

/// `None` when Rampart's judgement agrees with werkzeug's (or is
/// stricter); else what is wrong.
fn disagreement(c: &CanonicalPath, r: &Route, w: &Werkzeug) -> Option<String> {
    let wpath = werkzeug_canonical(&w.path);
    if wpath != c.path {
        return Some(format!("path: werkzeug {wpath:?}, Rampart {:?}", c.path));
    }
    let endpoint = w.endpoint.as_deref();
    let ok = match endpoint {
        None => true,
        Some("db") => *r == Route::DatabaseManager,
        Some("jsonrpc") => *r == Route::JsonRpc,
        Some("websocket") => *r == Route::Websocket,
        Some("login") => c.lower == "/web/login",
        // Odoo dispatches on the exact service name (`common`, `object`,
        // `db`); any other name is an error before anything runs.
        Some(e) if e.starts_with("xmlrpc:") => match &e["xmlrpc:".len()..] {
            "db" => *r == Route::DatabaseRpc,
            s @ ("common" | "object") => xmlrpc_service(&c.lower) == Some(s),
            _ => true,
        },
        Some(e) if e.starts_with("static:") => match r {
            Route::Static { module, file } => same_static(e, module, file),
            // Forwarded to Odoo, which serves it: fine.
            _ => true,
        },
        Some(e) => return Some(format!("unknown werkzeug endpoint {e}")),
    };
    // A file Rampart serves from disk must be the one Odoo's route names,
    // or one werkzeug's map does not route at all (`///` is a 404 there,
    // not a redirect): a public asset, no decision rests on it.
    let static_ok = match r {
        Route::Static { module, file } => endpoint.is_none_or(|e| same_static(e, module, file)),
        _ => true,
    };
    (!ok || !static_ok).then(|| format!("route: werkzeug {endpoint:?}, Rampart {r:?}"))
}

#[derive(Default, Debug)]
struct Tally {
    cases: usize,
    refused: usize,
    compared: usize,
    sensitive: usize,
    stricter: usize,
    werkzeug_errors: usize,
    redirects: usize,
    static_unrouted: usize,
    failures: Vec<String>,
}

fn sensitive(r: &Route) -> bool {
    matches!(
        r,
        Route::DatabaseManager | Route::DatabaseRpc | Route::JsonRpc | Route::Websocket
    )
}

fn run(targets: Vec<String>) -> Tally {
    let mut tally = Tally {
        cases: targets.len(),
        ..Tally::default()
    };
    let mut accepted = Vec::new();
    for raw in &targets {
        match judge(raw) {
            Judged::Refused => tally.refused += 1,
            Judged::Accepted {
                canonical,
                route,
                forwarded,
            } => accepted.push((raw.clone(), canonical, route, forwarded)),
        }
    }
    let forwarded: Vec<String> = accepted.iter().map(|a| a.3.clone()).collect();
    let answers = werkzeug(&forwarded);
    for ((raw, c, r, fwd), w) in accepted.iter().zip(&answers) {
        if w.error.is_some() {
            tally.werkzeug_errors += 1;
            continue;
        }
        tally.compared += 1;
        if w.redirect {
            tally.redirects += 1;
        }
        if w.endpoint.is_some() {
            tally.sensitive += 1;
        }
        if sensitive(r) && w.endpoint.is_none() {
            tally.stricter += 1;
        }
        if matches!(r, Route::Static { .. }) && w.endpoint.is_none() {
            tally.static_unrouted += 1;
        }
        if let Some(why) = disagreement(c, r, w) {
            tally
                .failures
                .push(format!("{raw:?} (forwarded {fwd:?}): {why}"));
        }
    }
    tally
}

fn assert_agree(what: &str, t: &Tally) {
    eprintln!(
        "{what}: {} targets, {} refused by Rampart, {} that werkzeug's handler cannot read, {} compared with werkzeug ({} on a sensitive werkzeug route, {} after a werkzeug redirect, {} where Rampart is stricter, {} static files werkzeug's map does not route), {} disagreements",
        t.cases,
        t.refused,
        t.werkzeug_errors,
        t.compared,
        t.sensitive,
        t.redirects,
        t.stricter,
        t.static_unrouted,
        t.failures.len()
    );
    assert!(
        t.failures.is_empty(),
        "{what}: Rampart and werkzeug disagree on {} targets, e.g.:\n{}",
        t.failures.len(),
        t.failures
            .iter()
            .take(25)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

const SPELLINGS: &[&str] = &[
    "/web/database/manager",
    "/web/database/manager/",
    "/web//database/manager",
    "//web/database/manager",
    "///web/database/manager",
    "/web/%64atabase/manager",
    "/web/%2564atabase/manager",
    "/web%2fdatabase/manager",
    "/web%2Fdatabase/manager",
    "/web%252fdatabase/manager",
    "/WEB/DATABASE/MANAGER",
    "/web/database;x=1/manager",
    "/web;/database/manager;",
    "/web%5cdatabase/manager",
    "/web/./database/manager",
    "/web/static/../database/manager",
    "/web/database/..%2f..%2fweb/login",
    "/web/database/manager/..%2f..%2fmanager",
    "/web/database/%2e%2e/%2e%2e/web/login",
    "/web/database/..;/..;/web/login",
    "/web/database/%252e%252e/%252e%252e/web/login",
    "/xmlrpc/2/db",
    "/xmlrpc/2/db/",
    "/xmlrpc/2//db",
    "/xmlrpc//2/db",
    "/xmlrpc/2/%64b",
    "/xmlrpc/2/DB",
    "/xmlrpc/2/db;x",
    "/xmlrpc/2/db%3bx",
    "/xmlrpc/db",
    "/xmlrpc/2/common",
    "/xmlrpc/2/object",
    "/xmlrpc/2/common%2f",
    "/jsonrpc",
    "/jsonrpc/",
    "//jsonrpc",
    "/json%72pc",
    "/jsonrpc%3f",
    "/jsonrpc?x=/web/database/manager",
    "/web/login",
    "/web/login/",
    "/web//login",
    "/web/%6cogin",
    "/web/login%2f",
    "/websocket",
    "/websocket/",
    "/%77ebsocket",
    "/web/static/img/logo.png",
    "/web/static//img/logo.png",
    "/web/static/img%2flogo.png",
    "/web/static/%2e%2e/%2e%2e/etc/passwd",
    "/web/%73tatic/img/logo.png",
    "/web_editor/static/src/x.js",
    "/web/static/",
    "/web/%c3%a9",
    "/web/%ff",
    "/web/%00",
    "/web/%0a",
    "/web/%zz",
    "/%2f%2fweb/database/manager",
    "/%2fweb/database/manager",
    "//web%2fdatabase/manager",
    "//web@x/database",
    "//x:y/web/database/manager",
    "/a%23/web/database",
    "/web/database%23/manager",
];

#[test]
fn hand_written_spellings_agree_with_werkzeug() {
    check_python();
    let t = run(SPELLINGS.iter().map(|s| s.to_string()).collect());
    assert_agree("hand-written spellings", &t);
    assert!(t.compared > 30, "most spellings reach the comparison");
}

/// Pieces attackers and browsers put in paths.
const PIECES: &[&str] = &[
    "/",
    "/",
    "/",
    "//",
    ".",
    "..",
    "%2e",
    "%2E",
    "%2e%2e",
    ".%2e",
    "%2f",
    "%2F",
    "%5c",
    "%25",
    "%252f",
    "%252e",
    "%2525",
    ";",
    ";x=1",
    "..;",
    "web",
    "web",
    "database",
    "manager",
    "xmlrpc",
    "2",
    "db",
    "DB",
    "%64b",
    "common",
    "object",
    "jsonrpc",
    "json%72pc",
    "login",
    "%6cogin",
    "websocket",
    "static",
    "%73tatic",
    "img",
    "logo.png",
    "src",
    "x.js",
    "WEB",
    "Web",
    "%20",
    "+",
    "~",
    "@",
    ":",
    "!",
    "$",
    "&",
    "'",
    "(",
    ")",
    "*",
    ",",
    "=",
    "?",
    "?x=1",
    "?a=/web/database",
    "#",
    "#frag",
    "%3f",
    "%23",
    "%3b",
    "%c3%a9",
    "%e2%80%ae",
    "%ff",
    "%c0%af",
    "%00",
    "%0a",
    "%7f",
    "%zz",
    "%",
    "%2",
    "a",
    "b",
    "-",
    "_",
    "0",
    "%41",
    "%61",
    "{",
    "}",
    "|",
    "^",
    "`",
    "\\",
    "\"",
    "<",
    ">",
    "[",
    "]",
];

/// The routes worth reaching, to be mutated.
const BASES: &[&str] = &[
    "/web/database/manager",
    "/web/database/list",
    "/xmlrpc/2/db",
    "/xmlrpc/db",
    "/xmlrpc/2/common",
    "/xmlrpc/2/object",
    "/jsonrpc",
    "/web/login",
    "/websocket",
    "/web/static/img/logo.png",
    "/base/static/src/x.js",
];

/// Half: random pieces. Half: a sensitive path with some of its
/// characters percent-encoded (either case), pieces inserted, or slashes
/// doubled.
fn generated(n: usize, seed: u64) -> Vec<String> {
    let mut rng = Rng::new(seed | 1);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let mut t = String::from("/");
        if i % 2 == 0 {
            let len = 1 + rng.below(10);
            for _ in 0..len {
                t.push_str(PIECES[rng.below(PIECES.len())]);
            }
        } else {
            t.clear();
            let base = BASES[rng.below(BASES.len())];
            for ch in base.chars() {
                match rng.below(12) {
                    0 => t.push_str(&format!("%{:02x}", ch as u32)),
                    1 => t.push_str(&format!("%{:02X}", ch as u32)),
                    2 => {
                        t.push_str(PIECES[rng.below(PIECES.len())]);
                        t.push(ch);
                    }
                    3 if ch == '/' => t.push_str("//"),
                    4 => t.push(ch.to_ascii_uppercase()),
                    _ => t.push(ch),
                }
            }
            if rng.below(4) == 0 {
                t.push_str(PIECES[rng.below(PIECES.len())]);
            }
        }
        out.push(t);
    }
    out
}

#[test]
fn generated_paths_agree_with_werkzeug() {
    check_python();
    let n = env_number("RAMPART_WERKZEUG_CASES", 5000) as usize;
    let seed = env_number("RAMPART_WERKZEUG_SEED", 0x005e_ed0f_0d00);
    let t = run(generated(n, seed));
    assert_agree(&format!("{n} generated targets (seed {seed})"), &t);
    assert!(
        t.compared > n / 10,
        "the corpus must mostly reach the comparison"
    );
    assert!(
        t.sensitive > 0,
        "the corpus must reach werkzeug's sensitive routes"
    );
}
