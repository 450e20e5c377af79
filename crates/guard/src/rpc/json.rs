//! JSON-RPC bodies as Odoo 18 reads them: werkzeug's `get_data(as_text=True)`
//! (UTF-8), `json.loads`, then `dict(jsonrequest.get('params', {}))`.
//!
//! serde_json is strict JSON and Python's `json` is a superset (NaN,
//! Infinity, numbers beyond f64, lone surrogates, unlimited depth): whatever
//! serde_json refuses is [`Reading::Uncertain`]. `dict()` depends on key
//! order: `dict([{"service": 1, "db": 2}])` is `{"service": "db"}`, a 2-key
//! object being a pair of its keys, as a 2-character string is.
//!
//! Only what the guard reads is built: the four names (`service`, `method`,
//! `model`, `login`) when they are strings and the first three items of
//! `args`, last value winning as in a dict. Everything else is skipped with
//! serde's `IgnoredAny`, which still checks that it is JSON. A tree of the
//! whole body (as `serde_json::Value` or Python holds it) is ~30 times its
//! bytes for small tokens (8 MB of `[1,1,...]` took 281 MB), while the
//! inspect budget counts bytes; a skipped value costs nothing, and the args
//! read whole are held to [`ARGS_NODES`] values.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};

use super::{Call, Credential, Reading};

/// Most values built for the first three args (database, uid and
/// password in every call Odoo 18 serves: three scalars). Past it the body
/// is uncertain: a nest there is not what any client sends.
pub const ARGS_NODES: usize = 1024;

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
    Dict(Vec<(String, Py)>),
}

/// What the guard reads of `dict(params)`: each key's last value.
#[derive(Debug, Default)]
struct Params {
    service: Option<String>,
    method: Option<String>,
    model: Option<String>,
    login: Option<String>,
    /// The first three items iterating `args` yields (`*args`).
    args: Vec<Py>,
}

/// A key of `params`, as far as the guard reads it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Key {
    Service,
    Method,
    Model,
    Login,
    Args,
    Other,
}

impl Key {
    fn of(s: &str) -> Key {
        match s {
            "service" => Key::Service,
            "method" => Key::Method,
            "model" => Key::Model,
            "login" => Key::Login,
            "args" => Key::Args,
            _ => Key::Other,
        }
    }
}

/// A value of `params` as far as its key needs it.
enum Field {
    /// The value when it is a string.
    Text(Option<String>),
    Args(Vec<Py>),
    Skipped,
}

impl Field {
    /// The value a key takes when it is the string `s` (a 2-key object's
    /// second key).
    fn of_str(key: Key, s: &str) -> Field {
        match key {
            Key::Args => Field::Args(s.chars().take(3).map(|c| Py::Str(c.into())).collect()),
            _ => Field::Text(Some(s.to_string())),
        }
    }
}

impl Params {
    fn set(&mut self, key: Key, value: Field) {
        match (key, value) {
            (Key::Args, Field::Args(a)) => self.args = a,
            (Key::Service, Field::Text(t)) => self.service = t,
            (Key::Method, Field::Text(t)) => self.method = t,
            (Key::Model, Field::Text(t)) => self.model = t,
            (Key::Login, Field::Text(t)) => self.login = t,
            _ => {}
        }
    }
}

/// `params` as Odoo's dispatcher builds it: `Err` when the body cannot be
/// read with certainty, `Ok(None)` when Python raises before any dispatch.
fn params_of(body: &[u8]) -> Result<Option<Params>, ()> {
    // werkzeug decodes with errors="replace"; a client that is not
    // sending UTF-8 is not one of ours.
    if std::str::from_utf8(body).is_err() {
        return Err(());
    }
    let budget = Cell::new(ARGS_NODES);
    let mut de = serde_json::Deserializer::from_slice(body);
    let params = de.deserialize_any(Top(&budget)).map_err(|_| ())?;
    de.end().map_err(|_| ())?;
    Ok(params)
}

/// A model call's model and method (None where a value is not a string).
pub type ModelCall = (Option<String>, Option<String>);

/// `/web/dataset/call_kw` and `/web/dataset/call_button`: the model and
/// method Odoo's `call_kw(model, method, args, kwargs)` is given (None where
/// a value is not a string). `Err` when the body cannot be read with
/// certainty; `Ok(None)` when Odoo dispatches nothing.
#[allow(clippy::result_unit_err)]
pub fn model_call(body: &[u8]) -> Result<Option<ModelCall>, ()> {
    Ok(params_of(body)?.map(|p| (p.model, p.method)))
}

/// `/web/session/authenticate`'s `login` param, when it is a string.
pub fn authenticate_login(body: &[u8]) -> Option<String> {
    params_of(body).ok()??.login
}

pub fn read(body: &[u8]) -> Reading {
    let params = match params_of(body) {
        Err(()) => return Reading::Uncertain,
        Ok(None) => return Reading::NoCall,
        Ok(Some(p)) => p,
    };
    let args = params.args;
    let mut call = Call {
        service: params.service,
        method: params.method,
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
            canonical(a, &mut c);
        }
        call.credential = Some(Credential(c));
        // Odoo's `int(args[1])`: a float truncated, a bool 0 or 1.
        call.uid = Some(match &args[1] {
            Py::Int(s) | Py::Str(s) => super::uid_name(s),
            Py::Float(s) => super::uid_name(&super::int_of_float(s)),
            Py::Bool(b) => super::uid_name(if *b { "1" } else { "0" }),
            _ => super::uid_name("?"),
        });
    }
    Reading::Call(call)
}

/// One spelling per value, its bytes once (a string's length before it,
/// so no two values share one): what [`Credential`] hashes.
fn canonical(v: &Py, out: &mut Vec<u8>) {
    let text = |tag: u8, s: &str, out: &mut Vec<u8>| {
        out.push(tag);
        out.extend_from_slice(s.len().to_string().as_bytes());
        out.push(b':');
        out.extend_from_slice(s.as_bytes());
    };
    match v {
        Py::None => out.push(b'n'),
        Py::Bool(b) => out.push(if *b { b't' } else { b'f' }),
        Py::Int(s) => text(b'i', s, out),
        Py::Float(s) => text(b'r', s, out),
        Py::Str(s) => text(b's', s, out),
        Py::List(items) => {
            text(b'l', &items.len().to_string(), out);
            items.iter().for_each(|i| canonical(i, out));
        }
        Py::Dict(pairs) => {
            text(b'd', &pairs.len().to_string(), out);
            for (k, v) in pairs {
                text(b's', k, out);
                canonical(v, out);
            }
        }
    }
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
                // Read without building it: an id can be any JSON.
                self.0.set(map.next_value_seed(read::IdSeed)?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
    crate::accept_any_other_value!();
}

mod read;
use read::Top;
