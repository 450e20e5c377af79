//! Nothing Rampart writes to stderr shows a secret: values a config took
//! from `${VAR}` or `{ file = … }` are replaced by `********` in the final
//! error line (`main`), in every process log event (the tracing writer) and
//! in panic messages. The config loader registers each config's values as it
//! reads them (at start and on every reload); errors raised later, far from
//! the config (an ACME directory refused when the store opens, a bind that
//! fails, a connection error quoting a URL), pass through here on their way
//! out, so no code path has to remember to mask.
//!
//! Besides each whole value, the password of a URL or connection string
//! (`scheme://user:PASSWORD@host`, `password=PASSWORD`) is scrubbed on its own,
//! since a parser's error may quote only that part; and each value's
//! JSON-escaped form, for `[log] process = "json"`.

use std::io::Write;
use std::sync::RwLock;

use rampart_config::Secrets;
use rampart_config::secret::MASK;

/// Shorter values are not scrubbed from free text (a `${WORKERS}` of "4"
/// would blank every 4), as in the config crate's own scrubbing.
const MIN: usize = 4;

/// Every value registered so far, longest first. Values are never removed:
/// a reload's old values may still be quoted by work in flight.
static NEEDLES: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Registers a loaded config's secret values.
pub fn register(secrets: &Secrets) {
    let mut add = Vec::new();
    for r in &secrets.0 {
        let v = r.value.as_str();
        add.push(v.to_string());
        if let Some(p) = password_in(v) {
            add.push(p.to_string());
        }
    }
    let json: Vec<String> = add
        .iter()
        .filter_map(|v| {
            let quoted = serde_json::to_string(v).ok()?;
            let inner = &quoted[1..quoted.len() - 1];
            (inner != v).then(|| inner.to_string())
        })
        .collect();
    add.extend(json);
    let mut needles = NEEDLES.write().unwrap_or_else(|e| e.into_inner());
    for v in add {
        if v.len() >= MIN && !needles.contains(&v) {
            needles.push(v);
        }
    }
    needles.sort_by_key(|v| std::cmp::Reverse(v.len()));
}

/// `text` with every registered value replaced by the mask.
pub fn text(text: &str) -> String {
    let needles = NEEDLES.read().unwrap_or_else(|e| e.into_inner());
    let mut out = text.to_string();
    for n in needles.iter() {
        if out.contains(n.as_str()) {
            out = out.replace(n.as_str(), MASK);
        }
    }
    out
}

/// The password in `scheme://user:password@host…` or `… password=x …`.
fn password_in(v: &str) -> Option<&str> {
    if let Some((_, rest)) = v.split_once("://") {
        let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
        if let Some((userinfo, _)) = authority.rsplit_once('@')
            && let Some((_, password)) = userinfo.split_once(':')
        {
            return Some(password);
        }
    }
    let lower = v.to_ascii_lowercase();
    let at = lower.find("password=")? + "password=".len();
    let rest = &v[at..];
    let end = rest.find([' ', '&', ';']).unwrap_or(rest.len());
    Some(rest[..end].trim_matches(['\'', '"']))
}

/// stderr for the tracing subscriber: each event is formatted whole and
/// written with one `write_all`, so each write is scrubbed whole.
pub struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let clean = text(&String::from_utf8_lossy(buf));
        std::io::stderr().lock().write_all(clean.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Panic messages too: the default hook's text (and backtrace), scrubbed.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("<unnamed>");
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "Box<dyn Any>".into());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}:{}", l.file(), l.line(), l.column()))
            .unwrap_or_default();
        eprintln!("thread '{name}' panicked{at}:\n{}", text(&msg));
        // As the default hook: a backtrace when RUST_BACKTRACE asks for one.
        let bt = std::backtrace::Backtrace::capture();
        if bt.status() == std::backtrace::BacktraceStatus::Captured {
            eprintln!("stack backtrace:\n{}", text(&bt.to_string()));
        }
    }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_config::secret::{Reference, Resolved};

    fn secrets(values: &[&str]) -> Secrets {
        Secrets(
            values
                .iter()
                .map(|v| Resolved {
                    path: vec![],
                    reference: Reference::Env("${X}".into()),
                    value: v.to_string(),
                })
                .collect(),
        )
    }

    #[test]
    fn whole_values_their_passwords_and_json_forms_are_masked() {
        register(&secrets(&[
            "https://acme:pw-in-url-77@acme.example/dir",
            "host=db password='pw-in-conninfo-88' user=x",
            "quote\"in-secret-99",
            "7",
        ]));
        assert_eq!(
            text("at https://acme:pw-in-url-77@acme.example/dir: refused"),
            "at ********: refused"
        );
        assert_eq!(
            text("password pw-in-url-77 rejected"),
            "password ******** rejected"
        );
        assert_eq!(text("bad pw-in-conninfo-88"), "bad ********");
        assert_eq!(
            text(r#"{"msg":"quote\"in-secret-99"}"#),
            r#"{"msg":"********"}"#
        );
        // Short values stay: a "7" from the environment does not blank every 7.
        assert_eq!(text("port 7"), "port 7");
    }

    #[test]
    fn passwords_in_urls_and_conninfo() {
        assert_eq!(password_in("sftp://u:p4ss@h:22/x"), Some("p4ss"));
        assert_eq!(password_in("s3://bucket/odoo"), None);
        assert_eq!(
            password_in("postgresql://u@db/x?password=abc&x=1"),
            Some("abc")
        );
        assert_eq!(password_in("https://h/p@x:y"), None);
    }
}
