//! `xmlrpc.client.Unmarshaller`'s state machine, replayed on the events of
//! a body (see `xml.rs`), keeping what the guard reads and no more: the
//! first three values of its stack and the text since the last start tag,
//! each whole up to [`TEXT_KEPT`] bytes. Past that only a text's length
//! and a running SHA-256 are kept, so memory stays the same whatever the
//! body holds (whole texts kept three times over, escaped for a
//! credential, reached 34 times a Latin-1 body).

use ring::digest::{Context, SHA256, digest};

/// Bytes of one text kept whole: far past any database name, login, uid,
/// password or method name a person or a client uses.
pub const TEXT_KEPT: usize = 64 * 1024;

/// Values kept, from the bottom of the stack: database, uid, password
/// (or the login's database and login).
const KEPT: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    Params,
    Fault,
    /// `end_methodName` sets `_type` too ("no params").
    MethodName,
}

/// The Python type a value was made as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    Str,
    Nil,
    Boolean,
    Int,
    Float,
    BigDecimal,
    Array,
    Struct,
    Base64,
    Date,
}

/// A value kept: its type, its text (None past [`TEXT_KEPT`]) and the
/// SHA-256 of the text.
pub struct Kept {
    pub kind: ValueKind,
    pub text: Option<String>,
    pub digest: [u8; 32],
}

/// Python's `_data`: the text since the last start tag (an end tag does
/// not clear it). Whole up to [`TEXT_KEPT`] bytes; past that, its hash.
#[derive(Default)]
struct Data {
    head: String,
    len: usize,
    long: Option<Context>,
}

impl Data {
    fn clear(&mut self) {
        self.head.clear();
        self.len = 0;
        self.long = None;
    }

    fn push(&mut self, s: &str) {
        self.len += s.len();
        match &mut self.long {
            Some(h) => h.update(s.as_bytes()),
            None if self.len <= TEXT_KEPT => self.head.push_str(s),
            None => {
                let mut h = Context::new(&SHA256);
                h.update(self.head.as_bytes());
                h.update(s.as_bytes());
                self.long = Some(h);
                self.head.clear();
            }
        }
    }

    /// The whole text, when it is kept.
    fn text(&self) -> Option<&str> {
        self.long.is_none().then_some(self.head.as_str())
    }

    fn digest(&self) -> [u8; 32] {
        let d = match &self.long {
            Some(h) => h.clone().finish(),
            None => digest(&SHA256, self.head.as_bytes()),
        };
        d.as_ref().try_into().expect("SHA-256 is 32 bytes")
    }
}

/// The Unmarshaller's value stack as far as the guard reads it: the
/// first [`KEPT`] values and how many there are. Later values are only
/// counted: an array's or a struct's items are replaced by one value when
/// it ends, so positions past the third never come back below it.
#[derive(Default)]
pub struct Stack {
    pub first: Vec<Kept>,
    len: usize,
}

impl Stack {
    /// Drops every value from `mark` on; returns how many there were.
    fn split_off(&mut self, mark: usize) -> usize {
        let mark = mark.min(self.len);
        let items = self.len - mark;
        self.len = mark;
        self.first.truncate(mark);
        items
    }
}

/// `xmlrpc.client.Unmarshaller`'s state.
#[derive(Default)]
pub struct Unmarshaller {
    pub stack: Stack,
    pub marks: Vec<usize>,
    data: Data,
    value: bool,
    pub kind: Option<Kind>,
    /// The method name; None past [`TEXT_KEPT`] bytes too.
    pub method: Option<String>,
    /// Bytes that may still be copied or hashed out of the text (several
    /// end tags in a row each take the same text) before the body is
    /// uncertain: a few times the body.
    budget: usize,
}

/// The tags the Unmarshaller dispatches on.
const DISPATCH: &[&str] = &[
    "nil",
    "boolean",
    "i1",
    "i2",
    "i4",
    "i8",
    "int",
    "biginteger",
    "double",
    "float",
    "bigdecimal",
    "string",
    "name",
    "array",
    "struct",
    "base64",
    "dateTime.iso8601",
    "value",
    "params",
    "fault",
    "methodName",
];

/// Why the replay stopped before the end of the body.
pub enum Stop {
    /// loads() raised: nothing is dispatched.
    Raised,
    /// Not read with certainty (a DOCTYPE, an entity, XML quick-xml
    /// refuses, deeper or costlier than we follow): fail closed.
    Uncertain,
}

impl Unmarshaller {
    /// A replay that may copy or hash `budget` bytes of text.
    pub fn new(budget: usize) -> Unmarshaller {
        Unmarshaller {
            budget,
            ..Unmarshaller::default()
        }
    }

    pub fn text(&mut self, s: &str) {
        self.data.push(s);
    }

    pub fn start(&mut self, tag: &str) -> Result<(), Stop> {
        if tag == "array" || tag == "struct" {
            self.marks.push(self.stack.len);
        }
        self.data.clear();
        if self.value && !DISPATCH.contains(&tag) {
            return Err(Stop::Raised);
        }
        self.value = tag == "value";
        Ok(())
    }

    pub fn end(&mut self, tag: &str) -> Result<(), Stop> {
        use ValueKind as V;
        let (kind, from_data) = match tag {
            "nil" => (V::Nil, false),
            "boolean" => match self.data.text() {
                Some("0" | "1") => (V::Boolean, true),
                _ => return Err(Stop::Raised),
            },
            "i1" | "i2" | "i4" | "i8" | "int" | "biginteger" => (V::Int, true),
            "double" | "float" => (V::Float, true),
            "bigdecimal" => (V::BigDecimal, true),
            "string" | "name" => (V::Str, true),
            "array" | "struct" => {
                let mark = self.marks.pop().ok_or(Stop::Raised)?;
                let items = self.stack.split_off(mark);
                if tag == "struct" && !items.is_multiple_of(2) {
                    return Err(Stop::Raised);
                }
                // Not its content: no array is ever a database, uid or
                // password.
                let kind = if tag == "array" { V::Array } else { V::Struct };
                (kind, false)
            }
            "base64" => (V::Base64, true),
            "dateTime.iso8601" => (V::Date, true),
            "value" if self.value => (V::Str, true),
            "params" => {
                self.kind = Some(Kind::Params);
                return Ok(());
            }
            "fault" => {
                self.kind = Some(Kind::Fault);
                return Ok(());
            }
            "methodName" => {
                self.method = self.data.text().map(str::to_string);
                self.kind = Some(Kind::MethodName);
                return self.spend(self.data.len.min(TEXT_KEPT));
            }
            _ => return Ok(()),
        };
        // Python forgets to reset `_value` after a dateTime; so do we.
        if kind != V::Date {
            self.value = false;
        }
        self.stack.len += 1;
        if self.stack.first.len() >= KEPT {
            return Ok(());
        }
        // A nil, an array or a struct is made of no text.
        let no_text = Data::default();
        let source = if from_data { &self.data } else { &no_text };
        let kept = Kept {
            kind,
            text: source.text().map(str::to_string),
            digest: source.digest(),
        };
        let copied = source.len.min(TEXT_KEPT);
        self.stack.first.push(kept);
        self.spend(copied)
    }

    fn spend(&mut self, bytes: usize) -> Result<(), Stop> {
        self.budget = self.budget.checked_sub(bytes).ok_or(Stop::Uncertain)?;
        Ok(())
    }
}
