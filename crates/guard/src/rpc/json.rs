//! JSON-RPC bodies as Odoo 18 reads them: werkzeug's `get_data(as_text=True)`
//! (UTF-8), `json.loads`, then `dict(jsonrequest.get('params', {}))`.
//!
//! serde_json is strict JSON and Python's `json` is a superset (NaN,
//! Infinity, numbers beyond f64, lone surrogates, unlimited depth): whatever
//! serde_json refuses is [`Reading::Uncertain`]. Objects are read into an
//! ordered list of pairs (not `serde_json::Value`) because `dict()` depends
//! on key order: `dict([{"service": 1, "db": 2}])` is `{"service": "db"}`,
//! a 2-key object being a pair of its keys, as a 2-character string is.

use std::collections::HashMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

use super::{Call, Credential, Reading};

/// A JSON value as Python holds it after `json.loads`.
#[derive(Debug, Clone, PartialEq)]
enum Py {
    None,
    Bool(bool),
    Int(String),
    Float(String),
    Str(String),
    List(Vec<Py>),
    /// Keys in first-insertion order, last value wins (Python's dict).
    Dict(Vec<(Py, Py)>),
}

/// `params` as Odoo's dispatcher builds it: `Err` when the body cannot be
/// read with certainty, `Ok(None)` when Python raises before any dispatch.
fn params_of(body: &[u8]) -> Result<Option<Vec<(Py, Py)>>, ()> {
    // werkzeug decodes with errors="replace"; a client that is not
    // sending UTF-8 is not one of ours.
    if std::str::from_utf8(body).is_err() {
        return Err(());
    }
    let Ok(top) = serde_json::from_slice::<Py>(body) else {
        return Err(());
    };
    // `jsonrequest.get(...)`: anything but an object raises.
    let Py::Dict(top) = top else {
        return Ok(None);
    };
    let params = top
        .into_iter()
        .find(|(k, _)| matches!(k, Py::Str(s) if s == "params"))
        .map_or(Py::Dict(Vec::new()), |(_, v)| v);
    Ok(dict(params))
}

/// A model call's model and method (None where a value is not a string).
pub type ModelCall = (Option<String>, Option<String>);

/// `/web/dataset/call_kw` and `/web/dataset/call_button`: the model and
/// method Odoo's `call_kw(model, method, args, kwargs)` is given (None where
/// a value is not a string). `Err` when the body cannot be read with
/// certainty; `Ok(None)` when Odoo dispatches nothing.
#[allow(clippy::result_unit_err)]
pub fn model_call(body: &[u8]) -> Result<Option<ModelCall>, ()> {
    let Some(params) = params_of(body)? else {
        return Ok(None);
    };
    let text = |k: &str| match get(&params, k) {
        Some(Py::Str(s)) => Some(s.clone()),
        _ => None,
    };
    Ok(Some((text("model"), text("method"))))
}

/// `/web/session/authenticate`'s `login` param, when it is a string.
pub fn authenticate_login(body: &[u8]) -> Option<String> {
    match get(&params_of(body).ok()??, "login") {
        Some(Py::Str(s)) => Some(s.clone()),
        _ => None,
    }
}

pub fn read(body: &[u8]) -> Reading {
    let params = match params_of(body) {
        Err(()) => return Reading::Uncertain,
        Ok(None) => return Reading::NoCall,
        Ok(Some(p)) => p,
    };
    let text = |k: &str| match get(&params, k) {
        Some(Py::Str(s)) => Some(s.clone()),
        _ => None,
    };
    let args = get(&params, "args")
        .map(|a| iterate(a, 3).0)
        .unwrap_or_default();
    let mut call = Call {
        service: text("service"),
        method: text("method"),
        login: None,
        credential: None,
        uid: None,
    };
    if call.service.as_deref() == Some("common")
        && matches!(call.method.as_deref(), Some("login" | "authenticate"))
    {
        call.login = match args.get(1) {
            Some(Py::Str(s)) => Some(s.clone()),
            _ => None,
        };
    }
    if call.is_object() && args.len() >= 3 {
        let mut c = b"json\0".to_vec();
        for a in &args[..3] {
            c.extend_from_slice(format!("{a:?}").as_bytes());
            c.push(0);
        }
        call.credential = Some(Credential(c));
        call.uid = Some(super::uid_name(match &args[1] {
            Py::Int(s) | Py::Float(s) | Py::Str(s) => s,
            _ => "?",
        }));
    }
    Reading::Call(call)
}

/// Longest JSON-RPC `id` string accepted: Odoo echoes the id before its
/// verdict, so a long one pushes the verdict past what the edge reads.
pub const MAX_ID_LEN: usize = 128;

/// Whether the top-level `id` (the last one, as `dict` keeps it) is
/// absent, null, a number or a string of at most [`MAX_ID_LEN`] bytes;
/// None when the body is not strict JSON (its answer may not be either).
pub fn id_acceptable(body: &[u8]) -> Option<bool> {
    let ok = std::cell::Cell::new(true);
    let mut de = serde_json::Deserializer::from_slice(body);
    de::Deserializer::deserialize_any(&mut de, TopIds(&ok)).ok()?;
    de.end().ok()?;
    Some(ok.get())
}

struct TopIds<'a>(&'a std::cell::Cell<bool>);

impl<'de> Visitor<'de> for TopIds<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(k) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if k == "id" {
                let v = map.next_value::<serde_json::Value>()?;
                self.0.set(match v {
                    serde_json::Value::Null | serde_json::Value::Number(_) => true,
                    serde_json::Value::String(s) => s.len() <= MAX_ID_LEN,
                    _ => false,
                });
            } else {
                map.next_value::<de::IgnoredAny>()?;
            }
        }
        Ok(())
    }
    crate::accept_any_other_value!();
}

fn get<'a>(d: &'a [(Py, Py)], key: &str) -> Option<&'a Py> {
    d.iter()
        .find(|(k, _)| matches!(k, Py::Str(s) if s == key))
        .map(|(_, v)| v)
}

/// The first `n` items iterating a value yields in Python (`*args`), and
/// whether there are more; empty when it is not iterable. Only what is
/// needed is built: a long string as `args` costs no more than a short one.
fn iterate(v: &Py, n: usize) -> (Vec<Py>, bool) {
    match v {
        Py::List(items) => (items.iter().take(n).cloned().collect(), items.len() > n),
        Py::Str(s) => {
            let mut chars = s.chars();
            let first = chars
                .by_ref()
                .take(n)
                .map(|c| Py::Str(c.to_string()))
                .collect();
            (first, chars.next().is_some())
        }
        Py::Dict(pairs) => (
            pairs.iter().take(n).map(|(k, _)| k.clone()).collect(),
            pairs.len() > n,
        ),
        _ => (Vec::new(), false),
    }
}

/// Python's `dict(v)`; None where it raises.
fn dict(v: Py) -> Option<Vec<(Py, Py)>> {
    let items = match v {
        Py::Dict(d) => return Some(d),
        Py::List(items) => items,
        // Iterating a string yields 1-character strings: only "" works.
        Py::Str(s) if s.is_empty() => return Some(Vec::new()),
        _ => return None,
    };
    let mut pairs = Vec::with_capacity(items.len());
    for item in items {
        // Each element must be an iterable of exactly two.
        let (pair, more) = match item {
            Py::List(_) | Py::Str(_) | Py::Dict(_) => iterate(&item, 2),
            _ => return None,
        };
        if more {
            return None;
        }
        let [k, v]: [Py; 2] = pair.try_into().ok()?;
        if matches!(k, Py::List(_) | Py::Dict(_)) {
            return None; // unhashable
        }
        pairs.push((k, v));
    }
    Some(dedup(pairs))
}

/// Last value wins, at the key's first position. Non-string keys never
/// equal a string key, which is all that is looked up, so numbers are
/// compared by spelling only for determinism.
fn dedup(pairs: Vec<(Py, Py)>) -> Vec<(Py, Py)> {
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut out: Vec<(Py, Py)> = Vec::with_capacity(pairs.len());
    for (k, v) in pairs {
        let id = match &k {
            Py::Str(s) => format!("s{s}"),
            other => format!("o{other:?}"),
        };
        match index.get(&id) {
            Some(&i) => out[i].1 = v,
            None => {
                index.insert(id, out.len());
                out.push((k, v));
            }
        }
    }
    out
}

impl<'de> serde::Deserialize<'de> for Py {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Py, D::Error> {
        d.deserialize_any(PyVisitor)
    }
}

struct PyVisitor;

impl<'de> Visitor<'de> for PyVisitor {
    type Value = Py;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Py, E> {
        Ok(Py::None)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Py, E> {
        Ok(Py::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Py, E> {
        Ok(Py::Int(v.to_string()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Py, E> {
        Ok(Py::Int(v.to_string()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Py, E> {
        Ok(Py::Float(v.to_string()))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Py, E> {
        Ok(Py::Str(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Py, E> {
        Ok(Py::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Py, A::Error> {
        let mut items = Vec::new();
        while let Some(v) = seq.next_element::<Py>()? {
            items.push(v);
        }
        // A list of one grows room for four: 128 bytes per '[' of a nest.
        items.shrink_to_fit();
        Ok(Py::List(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Py, A::Error> {
        let mut pairs = Vec::new();
        while let Some(k) = map.next_key::<String>()? {
            let v = map.next_value::<Py>()?;
            pairs.push((Py::Str(k), v));
        }
        Ok(Py::Dict(dedup(pairs)))
    }
}
