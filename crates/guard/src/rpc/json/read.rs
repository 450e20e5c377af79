//! The visitors that read a JSON-RPC body into [`Params`] in one pass,
//! building only the values the guard reads (see the parent's doc).

use std::cell::Cell;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::{Field, Key, Params, Py};

/// Scalars all read as one value (`$v`).
macro_rules! scalars_are {
    ($v:expr) => {
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok($v)
        }
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok($v)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok($v)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok($v)
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok($v)
        }
    };
}

fn drain_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

fn drain_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

/// The whole body: `None` when it is not an object (`.get` raises) or
/// `dict(params)` raises.
pub(super) struct Top<'b>(pub(super) &'b Cell<usize>);

impl<'de> Visitor<'de> for Top<'_> {
    type Value = Option<Params>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON-RPC request")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        // Absent, `params` is `{}`; repeated, the last one is kept.
        let mut params = Some(Params::default());
        while let Some(key) = map.next_key_seed(KeySeed)? {
            if key == Name::Params {
                params = map.next_value_seed(ParamsSeed(self.0))?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(params)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        drain_seq(seq).map(|()| None)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    scalars_are!(None);
}

/// An object key, as far as the guard reads it (`params` at the top,
/// the params' own keys below).
#[derive(PartialEq)]
enum Name {
    Params,
    Param(Key),
}

struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Name;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Name, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Name;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Name, E> {
        Ok(match s {
            "params" => Name::Params,
            _ => Name::Param(Key::of(s)),
        })
    }
}

/// `dict(params)`: `None` where it raises.
struct ParamsSeed<'b>(&'b Cell<usize>);

impl<'de> DeserializeSeed<'de> for ParamsSeed<'_> {
    type Value = Option<Params>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ParamsSeed<'_> {
    type Value = Option<Params>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("params")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut params = Params::default();
        while let Some(name) = map.next_key_seed(KeySeed)? {
            let key = match name {
                Name::Param(k) => k,
                Name::Params => Key::Other,
            };
            let value = map.next_value_seed(FieldSeed(key, self.0))?;
            params.set(key, value);
        }
        Ok(Some(params))
    }
    /// `dict()` of a list: every item an iterable of exactly two, its
    /// first hashable; one that is not raises (after json.loads read it
    /// all, so the rest must still be JSON).
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut params = Params::default();
        while let Some(pair) = seq.next_element_seed(PairSeed(self.0))? {
            match pair {
                Some((key, value)) => params.set(key, value),
                None => return drain_seq(seq).map(|()| None),
            }
        }
        Ok(Some(params))
    }
    /// Iterating a string yields 1-character strings: only "" works.
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok(s.is_empty().then(Params::default))
    }
    scalars_are!(None);
}

/// One item of a list given to `dict()`: its key and value, `None` where
/// `dict()` raises.
struct PairSeed<'b>(&'b Cell<usize>);

impl<'de> DeserializeSeed<'de> for PairSeed<'_> {
    type Value = Option<(Key, Field)>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for PairSeed<'_> {
    type Value = Option<(Key, Field)>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key and value pair")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let Some(key) = seq.next_element_seed(PairKey)? else {
            return Ok(None);
        };
        let field = seq.next_element_seed(FieldSeed(key.unwrap_or(Key::Other), self.0))?;
        if seq.next_element::<IgnoredAny>()?.is_some() {
            return drain_seq(seq).map(|()| None);
        }
        // A list or an object as the key: unhashable.
        Ok(key.zip(field))
    }
    /// A pair of its first two distinct keys: `{"service": 1, "db": 2}`
    /// is `("service", "db")`.
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let keys = distinct_keys(map, 3)?;
        Ok(match &keys[..] {
            [k, v] => Some((Key::of(k), Field::of_str(Key::of(k), v))),
            _ => None,
        })
    }
    /// A 2-character string: a 1-character key, never one the guard reads.
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok((s.chars().count() == 2).then_some((Key::Other, Field::Skipped)))
    }
    scalars_are!(None);
}

/// The first `n` distinct keys of an object, in order; the rest skipped.
fn distinct_keys<'de, A: MapAccess<'de>>(mut map: A, n: usize) -> Result<Vec<String>, A::Error> {
    let mut keys: Vec<String> = Vec::new();
    while keys.len() < n {
        let Some(k) = map.next_key::<String>()? else {
            return Ok(keys);
        };
        map.next_value::<IgnoredAny>()?;
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    drain_map(map).map(|()| keys)
}

/// A pair's first item: the key when it is a string, `Key::Other` for
/// another hashable value, `None` for a list or an object.
struct PairKey;

impl<'de> DeserializeSeed<'de> for PairKey {
    type Value = Option<Key>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for PairKey {
    type Value = Option<Key>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Some(Key::of(s)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        drain_seq(seq).map(|()| None)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        drain_map(map).map(|()| None)
    }
    scalars_are!(Some(Key::Other));
}

/// A value of `params`, built as far as its key needs.
struct FieldSeed<'b>(Key, &'b Cell<usize>);

impl<'de> DeserializeSeed<'de> for FieldSeed<'_> {
    type Value = Field;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Field, D::Error> {
        match self.0 {
            Key::Other => IgnoredAny::deserialize(d).map(|_| Field::Skipped),
            Key::Args => d.deserialize_any(Args(self.1)).map(Field::Args),
            _ => d.deserialize_any(Text).map(Field::Text),
        }
    }
}

/// A value that counts only when it is a string.
struct Text;

impl<'de> Visitor<'de> for Text {
    type Value = Option<String>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a value")
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Some(s.to_string()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        drain_seq(seq).map(|()| None)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        drain_map(map).map(|()| None)
    }
    scalars_are!(None);
}

/// The first three items iterating `args` yields: a list's items (built
/// whole, within the budget), a string's characters, an object's keys;
/// nothing for a scalar (not iterable).
struct Args<'b>(&'b Cell<usize>);

impl<'de> Visitor<'de> for Args<'_> {
    type Value = Vec<Py>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("args")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut first = Vec::new();
        while first.len() < 3 {
            match seq.next_element_seed(Whole(self.0))? {
                Some(v) => first.push(v),
                None => return Ok(first),
            }
        }
        drain_seq(seq).map(|()| first)
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok(s.chars().take(3).map(|c| Py::Str(c.into())).collect())
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        Ok(distinct_keys(map, 3)?.into_iter().map(Py::Str).collect())
    }
    scalars_are!(Vec::new());
}

/// A value built whole, as Python holds it; each value built spends one
/// of the budget, and an empty budget is an error (uncertain).
struct Whole<'b>(&'b Cell<usize>);

impl Whole<'_> {
    fn spend<E: de::Error>(&self) -> Result<(), E> {
        match self.0.get().checked_sub(1) {
            Some(left) => {
                self.0.set(left);
                Ok(())
            }
            None => Err(E::custom("the first three args hold too many values")),
        }
    }
}

impl<'de> DeserializeSeed<'de> for Whole<'_> {
    type Value = Py;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Py, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Whole<'_> {
    type Value = Py;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Py, E> {
        self.spend().map(|()| Py::None)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Py, E> {
        self.spend().map(|()| Py::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Py, E> {
        self.spend().map(|()| Py::Int(v.to_string()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Py, E> {
        self.spend().map(|()| Py::Int(v.to_string()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Py, E> {
        // Shortest spelling that reads back the same: Display writes
        // 1e308 as 309 digits.
        self.spend().map(|()| Py::Float(format!("{v:?}")))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Py, E> {
        self.spend().map(|()| Py::Str(v.to_string()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Py, A::Error> {
        self.spend()?;
        let mut items = Vec::new();
        while let Some(v) = seq.next_element_seed(Whole(self.0))? {
            items.push(v);
        }
        Ok(Py::List(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Py, A::Error> {
        self.spend()?;
        let mut pairs: Vec<(String, Py)> = Vec::new();
        while let Some(k) = map.next_key::<String>()? {
            let v = map.next_value_seed(Whole(self.0))?;
            // Last value wins, at the key's first place.
            match pairs.iter_mut().find(|(have, _)| *have == k) {
                Some(pair) => pair.1 = v,
                None => pairs.push((k, v)),
            }
        }
        Ok(Py::Dict(pairs))
    }
}

/// A JSON-RPC `id` Odoo's answer can carry before its verdict: null, a
/// number or a short string ([`super::MAX_ID_LEN`]).
pub(super) struct IdSeed;

impl<'de> DeserializeSeed<'de> for IdSeed {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for IdSeed {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an id")
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<bool, E> {
        Ok(s.len() <= super::MAX_ID_LEN)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(true)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<bool, E> {
        Ok(true)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<bool, E> {
        Ok(true)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<bool, E> {
        Ok(true)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<bool, A::Error> {
        drain_seq(seq).map(|()| false)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<bool, A::Error> {
        drain_map(map).map(|()| false)
    }
}
