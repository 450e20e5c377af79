//! Odoo's RPC answers, in their fixed shapes: whether an XML-RPC answer
//! is `<params>` or a `<fault>`, which of `"result"` / `"error"` comes
//! first in a JSON-RPC answer (read by a parser: the `id` before them is
//! the client's), and the uid of an XML-RPC login.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;

use super::LoginOutcome;

pub(super) fn xml_login_outcome(body: &[u8]) -> LoginOutcome {
    let text = String::from_utf8_lossy(body);
    if text.contains("<fault>") {
        return LoginOutcome::Failure;
    }
    let Some(value) = xml_element_text(body, "value") else {
        return LoginOutcome::Unknown;
    };
    if let Some(b) = xml_element_text(value.as_bytes(), "boolean") {
        return match b.trim() {
            "0" => LoginOutcome::Failure,
            _ => LoginOutcome::Unknown,
        };
    }
    for tag in ["int", "i4", "i8"] {
        if let Some(n) = xml_element_text(value.as_bytes(), tag) {
            return match n.trim().parse::<i64>() {
                Ok(uid) if uid > 0 => LoginOutcome::Success,
                _ => LoginOutcome::Unknown,
            };
        }
    }
    LoginOutcome::Unknown
}

#[derive(Debug, PartialEq)]
pub(super) enum XmlAnswer {
    Params,
    Fault,
}

/// Odoo's XML-RPC answer starts `<?xml version="1.0"?>`, `<methodResponse>`,
/// then `<params>` or `<fault>`: nothing a client wrote comes before.
pub(super) fn xml_answer(body: &[u8]) -> Option<XmlAnswer> {
    let text = std::str::from_utf8(&body[..body.len().min(256)])
        .or_else(|e| std::str::from_utf8(&body[..e.valid_up_to()]))
        .ok()?;
    let mut rest = text.trim_start();
    if let Some(r) = rest.strip_prefix("<?xml") {
        rest = &r[r.find("?>")? + 2..];
    }
    let rest = rest
        .trim_start()
        .strip_prefix("<methodResponse>")?
        .trim_start();
    if rest.starts_with("<params>") {
        Some(XmlAnswer::Params)
    } else if rest.starts_with("<fault>") {
        Some(XmlAnswer::Fault)
    } else {
        None
    }
}

#[derive(Debug, PartialEq)]
pub(super) enum JsonAnswer {
    /// `"result"`; `falsy` when it is false or null (a refused login).
    Result { falsy: bool },
    /// `"error"`, with `data.name` (the exception) when the prefix holds it.
    Error { name: Option<String> },
}

/// The first of `"result"` / `"error"` among the top-level keys of a
/// JSON-RPC answer, read by a parser (the `id` before them is the
/// client's). A prefix cut inside a value after that key is fine.
pub(super) fn json_answer(prefix: &[u8]) -> Option<JsonAnswer> {
    let found = Cell::new(None);
    let mut de = serde_json::Deserializer::from_slice(prefix);
    let _ignored_error_after_the_key = (&mut de).deserialize_map(FirstKey(&found));
    found.into_inner()
}

struct FirstKey<'a>(&'a Cell<Option<JsonAnswer>>);

impl<'de> Visitor<'de> for FirstKey<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON-RPC answer")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "result" => {
                    let falsy = match map.next_value::<Value>() {
                        Ok(Value::Bool(false)) | Ok(Value::Null) => true,
                        Ok(_) => false,
                        // Cut by the prefix: a large result, not false.
                        Err(_) => false,
                    };
                    self.0.set(Some(JsonAnswer::Result { falsy }));
                    return Err(de::Error::custom("found"));
                }
                "error" => {
                    let name = Cell::new(None);
                    let _cut_or_read = map.next_value_seed(ErrorName(&name, 0));
                    self.0.set(Some(JsonAnswer::Error {
                        name: name.into_inner(),
                    }));
                    return Err(de::Error::custom("found"));
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// Reads `data.name` of a JSON-RPC error (depth 0: the error, 1: its data).
struct ErrorName<'a>(&'a Cell<Option<String>>, u8);

impl<'de> de::DeserializeSeed<'de> for ErrorName<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ErrorName<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON-RPC error")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            match (self.1, key.as_str()) {
                (0, "data") => map.next_value_seed(ErrorName(self.0, 1))?,
                (1, "name") => {
                    if let Value::String(n) = map.next_value::<Value>()? {
                        self.0.set(Some(n));
                    }
                    return Err(de::Error::custom("found"));
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
    crate::accept_any_other_value!();
}

/// Text between the first `<tag>` and its `</tag>`: enough for the fixed
/// shapes of XML-RPC messages without an XML parser.
fn xml_element_text(body: &[u8], tag: &str) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = text.find(&open)? + open.len();
    let end = text[start..].find(&close)? + start;
    Some(text[start..end].to_string())
}
