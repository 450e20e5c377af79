//! XML-RPC bodies as Odoo reads them: `xmlrpc.client.loads`, which feeds
//! expat's events to its `Unmarshaller`.
//!
//! The body is read as a stream of events by quick-xml (already in the
//! tree for the S3 backup target), never as a tree: what is kept is the
//! Unmarshaller's state, bounded by the first three values and the text
//! of the element open now, so a body costs about its own size whatever
//! its shape (a roxmltree tree cost ~30 times the body: 8 MB of `<a/>`
//! held 250 MB). quick-xml checks less than expat (names, characters,
//! one root): a body expat refuses may be read as a call here, which is
//! harmless (Odoo dispatches nothing; `tests/rpc_differential.rs` counts
//! them). Where expat reads a body, the events are the same: tags (end
//! names checked against their start), text with `\r\n` made `\n`, the
//! five predefined entities and character references, CDATA; comments
//! and processing instructions are no data. What expat does beyond it is
//! refused as [`Reading::Uncertain`]: a DOCTYPE (expat expands internal
//! entities, so `&a;` may spell `authenticate`), an encoding other than
//! UTF-8, UTF-16, ISO-8859-1 or US-ASCII (pyexpat takes any Python codec),
//! any other entity. The Unmarshaller's state machine is replayed on the
//! events: the method name is the text since the last start tag when the
//! last `methodName` element ends, wherever it is in the document.

use std::borrow::Cow;

use quick_xml::events::Event;

use super::{Call, Credential, Reading};

/// The part of a value the guard needs.
#[derive(Debug, Clone, PartialEq)]
enum Val {
    Str(String),
    /// Any other type, by its tag and text (the uid of an object call).
    Other(String),
}

pub fn read(service: &str, body: &[u8]) -> Reading {
    let Some(text) = decode(body) else {
        return Reading::Uncertain;
    };
    if !text.chars().all(xml_char) {
        return Reading::Uncertain;
    }
    let mut u = Unmarshaller {
        // Text copied into values (an end tag copies the text since the
        // last start tag; several end tags in a row copy it again each)
        // is bounded by a few times the body.
        budget: 4 * text.len() + 4096,
        ..Unmarshaller::default()
    };
    match u.replay(&text) {
        Err(Stop::Uncertain) => return Reading::Uncertain,
        Err(Stop::Raised) => return Reading::NoCall,
        Ok(()) => {}
    }
    if matches!(u.kind, None | Some(Kind::Fault)) || !u.marks.is_empty() {
        // loads() raises: nothing is dispatched.
        return Reading::NoCall;
    }
    let mut call = Call {
        service: Some(service.to_string()),
        method: u.method,
        login: None,
        credential: None,
        uid: None,
    };
    let first = &u.stack.first;
    if call.service.as_deref() == Some("common")
        && matches!(call.method.as_deref(), Some("login" | "authenticate"))
    {
        call.login = match first.get(1) {
            Some(Val::Str(s)) => Some(s.clone()),
            _ => None,
        };
    }
    if call.is_object() && first.len() >= 3 {
        let mut c = b"xml\0".to_vec();
        for v in first {
            c.extend_from_slice(format!("{v:?}").as_bytes());
            c.push(0);
        }
        call.credential = Some(Credential(c));
        // Odoo's `int(params[1])`: a float truncated, a bool 0 or 1.
        let int: Cow<str> = match &first[1] {
            Val::Str(s) => s.into(),
            Val::Other(o) => match o.split_once(' ') {
                Some(("int" | "boolean", n)) => n.into(),
                Some(("float", f)) => super::int_of_float(f).into(),
                _ => "?".into(),
            },
        };
        call.uid = Some(super::uid_name(&int));
    }
    Reading::Call(call)
}

/// Most attributes on one element before the body is uncertain: quick-xml
/// checks each attribute's name against the element's others (quadratic
/// in their number), and no XML-RPC element has any.
pub const MAX_ATTRIBUTES: usize = 32;

/// Most elements open at once before the body is uncertain (expat has no
/// limit): XML-RPC messages are a few levels deep, and each open array or
/// struct keeps a mark.
const MAX_DEPTH: usize = 200;

/// The document as text, by expat's rules: a BOM, else the first bytes
/// (`<\0` is UTF-16LE), else the declared encoding, else UTF-8.
fn decode(body: &[u8]) -> Option<Cow<'_, str>> {
    if let Some(rest) = body.strip_prefix(b"\xEF\xBB\xBF") {
        let text = std::str::from_utf8(rest).ok()?;
        return match declared(text.as_bytes()) {
            None => Some(text.into()),
            Some(e) if e.eq_ignore_ascii_case("utf-8") => Some(text.into()),
            Some(_) => None,
        };
    }
    if let Some(rest) = body.strip_prefix(b"\xFF\xFE") {
        return utf16(rest, u16::from_le_bytes);
    }
    if let Some(rest) = body.strip_prefix(b"\xFE\xFF") {
        return utf16(rest, u16::from_be_bytes);
    }
    if body.starts_with(b"<\0") {
        return utf16(body, u16::from_le_bytes);
    }
    if body.starts_with(b"\0<") {
        return utf16(body, u16::from_be_bytes);
    }
    match declared(body).map(|e| e.to_ascii_lowercase()).as_deref() {
        None | Some("utf-8") => std::str::from_utf8(body).ok().map(Cow::Borrowed),
        Some("us-ascii") if body.is_ascii() => Some(String::from_utf8_lossy(body)),
        Some("iso-8859-1") => Some(Cow::Owned(body.iter().map(|&b| char::from(b)).collect())),
        _ => None,
    }
}

fn utf16(bytes: &[u8], unit: fn([u8; 2]) -> u16) -> Option<Cow<'static, str>> {
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    let units = bytes.chunks_exact(2).map(|c| unit([c[0], c[1]]));
    let text: String = char::decode_utf16(units).collect::<Result<_, _>>().ok()?;
    // A declaration, if any, must agree: expat refuses an 8-bit name here.
    match declared(text.as_bytes()) {
        None => Some(text.into()),
        Some(e) if e.eq_ignore_ascii_case("utf-16") => Some(text.into()),
        Some(_) => None,
    }
}

/// The `encoding` of an XML declaration at the very start, if any.
fn declared(body: &[u8]) -> Option<String> {
    let head = body.strip_prefix(b"<?xml")?;
    if !head.first().is_some_and(|b| b" \t\r\n".contains(b)) {
        return None;
    }
    let end = head.windows(2).position(|w| w == b"?>")?;
    let decl = std::str::from_utf8(&head[..end]).ok()?;
    let at = decl.find("encoding")?;
    let rest = decl[at + "encoding".len()..].trim_start();
    let rest = rest.strip_prefix('=')?.trim_start();
    let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let rest = &rest[1..];
    let close = rest.find(quote)?;
    Some(rest[..close].to_string())
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Params,
    Fault,
    /// `end_methodName` sets `_type` too ("no params").
    MethodName,
}

/// The Unmarshaller's value stack as far as the guard reads it: the
/// first three values (database, uid, password; or the login's two) and
/// how many there are. Later values are only counted: an array's or a
/// struct's items are replaced by one value when it ends, so positions
/// past the third never come back below it.
#[derive(Default)]
struct Stack {
    first: Vec<Val>,
    len: usize,
}

/// Values kept whole, from the bottom of the stack.
const KEPT: usize = 3;

impl Stack {
    /// Pushes the value `make` builds, building it only when it is kept;
    /// returns the bytes it copied.
    fn push(&mut self, make: impl FnOnce() -> Val) -> usize {
        self.len += 1;
        if self.first.len() < KEPT {
            let v = make();
            let n = match &v {
                Val::Str(s) | Val::Other(s) => s.len(),
            };
            self.first.push(v);
            n
        } else {
            0
        }
    }

    /// Drops every value from `mark` on; returns how many there were.
    fn split_off(&mut self, mark: usize) -> usize {
        let mark = mark.min(self.len);
        let items = self.len - mark;
        self.len = mark;
        self.first.truncate(mark);
        items
    }
}

/// `xmlrpc.client.Unmarshaller`'s state, replayed.
#[derive(Default)]
struct Unmarshaller {
    stack: Stack,
    marks: Vec<usize>,
    data: String,
    value: bool,
    kind: Option<Kind>,
    method: Option<String>,
    /// Bytes that may still be copied out of `data` before the body is
    /// uncertain.
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
enum Stop {
    /// loads() raised: nothing is dispatched.
    Raised,
    /// Not read with certainty (a DOCTYPE, an entity, XML quick-xml
    /// refuses, deeper or costlier than we follow): fail closed.
    Uncertain,
}

/// The name Python dispatches on: `if ':' in tag: tag = tag.split(':')[-1]`
/// (the parser does no namespace processing).
fn local(name: &[u8]) -> Result<&str, Stop> {
    let name = std::str::from_utf8(name).map_err(|_| Stop::Uncertain)?;
    Ok(name.rsplit(':').next().unwrap_or(name))
}

impl Unmarshaller {
    /// Feeds the document's events to the state machine, as expat does.
    fn replay(&mut self, text: &str) -> Result<(), Stop> {
        let mut reader = quick_xml::Reader::from_str(text);
        let config = reader.config_mut();
        config.check_end_names = true;
        config.check_comments = true;
        config.allow_dangling_amp = false;
        config.allow_unmatched_ends = false;
        config.trim_text(false);
        let mut depth = 0usize;
        // Whether the root element has ended: nothing but white space,
        // comments and processing instructions may follow it.
        let mut root_ended = false;
        let mut before_any = true;
        loop {
            let event = reader.read_event().map_err(|_| Stop::Uncertain)?;
            let first = std::mem::take(&mut before_any);
            match event {
                Event::Start(e) => {
                    if depth == 0 && root_ended {
                        return Err(Stop::Uncertain);
                    }
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Err(Stop::Uncertain);
                    }
                    attributes_read(&e)?;
                    self.start(local(e.name().as_ref())?)?;
                }
                Event::Empty(e) => {
                    if depth == 0 && root_ended {
                        return Err(Stop::Uncertain);
                    }
                    root_ended |= depth == 0;
                    if depth + 1 > MAX_DEPTH {
                        return Err(Stop::Uncertain);
                    }
                    attributes_read(&e)?;
                    let name = e.name();
                    let tag = local(name.as_ref())?;
                    self.start(tag)?;
                    self.end(tag)?;
                }
                Event::End(e) => {
                    depth = depth.checked_sub(1).ok_or(Stop::Uncertain)?;
                    root_ended |= depth == 0;
                    self.end(local(e.name().as_ref())?)?;
                }
                Event::Text(t) if depth == 0 => {
                    // Outside the root element only white space is allowed.
                    if !t.iter().all(|b| b" \t\r\n".contains(b)) {
                        return Err(Stop::Uncertain);
                    }
                }
                Event::CData(_) | Event::GeneralRef(_) if depth == 0 => {
                    return Err(Stop::Uncertain);
                }
                // `]]>` ends nothing in text: expat raises.
                Event::Text(t) if t.windows(3).any(|w| w == b"]]>") => {
                    return Err(Stop::Uncertain);
                }
                Event::Text(t) => {
                    let t = t.xml10_content().map_err(|_| Stop::Uncertain)?;
                    self.data.push_str(&t);
                }
                Event::CData(t) => {
                    let t = t.xml10_content().map_err(|_| Stop::Uncertain)?;
                    self.data.push_str(&t);
                }
                Event::GeneralRef(r) => match r.resolve_char_ref() {
                    Ok(Some(c)) if xml_char(c) => self.data.push(c),
                    Ok(None) => self.data.push(match &*r {
                        b"lt" => '<',
                        b"gt" => '>',
                        b"amp" => '&',
                        b"apos" => '\'',
                        b"quot" => '"',
                        // Defined nowhere (a DOCTYPE is refused): expat
                        // raises, but no guess is needed to say so.
                        _ => return Err(Stop::Uncertain),
                    }),
                    Ok(Some(_)) | Err(_) => return Err(Stop::Uncertain),
                },
                Event::DocType(_) => return Err(Stop::Uncertain),
                // The declaration only first (decode() read its encoding).
                Event::Decl(_) if !first => return Err(Stop::Uncertain),
                Event::Comment(_) | Event::PI(_) | Event::Decl(_) => {}
                Event::Eof => break,
            }
        }
        if depth != 0 || !root_ended {
            // An element left open, or none: expat raises.
            return Err(Stop::Uncertain);
        }
        Ok(())
    }

    fn start(&mut self, tag: &str) -> Result<(), Stop> {
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

    fn end(&mut self, tag: &str) -> Result<(), Stop> {
        // Taken for the match (pushing borrows the rest of self), put
        // back after it: Python's `_data` is cleared only by a start tag.
        let data_kept = std::mem::take(&mut self.data);
        let data = data_kept.as_str();
        let copied = match tag {
            "nil" => self.push(|| Val::Other("nil".into())),
            "boolean" => match data {
                "0" | "1" => self.push(|| Val::Other(format!("boolean {data}"))),
                _ => return Err(Stop::Raised),
            },
            "i1" | "i2" | "i4" | "i8" | "int" | "biginteger" => {
                self.push(|| Val::Other(format!("int {data}")))
            }
            "double" | "float" | "bigdecimal" => self.push(|| Val::Other(format!("float {data}"))),
            "string" | "name" => self.push(|| Val::Str(data.to_string())),
            "array" | "struct" => {
                let mark = self.marks.pop().ok_or(Stop::Raised)?;
                let items = self.stack.split_off(mark);
                if tag == "struct" && !items.is_multiple_of(2) {
                    return Err(Stop::Raised);
                }
                // Not its content: no array is ever a database, uid or
                // password, and nested levels would copy it again each.
                self.push(|| Val::Other(tag.to_string()))
            }
            "base64" => self.push(|| Val::Other(format!("base64 {data}"))),
            // Python forgets to reset `_value` here; so do we.
            "dateTime.iso8601" => self.stack.push(|| Val::Other(format!("date {data}"))),
            "value" if self.value => self.push(|| Val::Str(data.to_string())),
            "params" => {
                self.kind = Some(Kind::Params);
                0
            }
            "fault" => {
                self.kind = Some(Kind::Fault);
                0
            }
            "methodName" => {
                self.method = Some(data.to_string());
                self.kind = Some(Kind::MethodName);
                data.len()
            }
            _ => 0,
        };
        self.data = data_kept;
        self.budget = self.budget.checked_sub(copied).ok_or(Stop::Uncertain)?;
        Ok(())
    }

    fn push(&mut self, make: impl FnOnce() -> Val) -> usize {
        self.value = false;
        self.stack.push(make)
    }
}

/// A character XML 1.0 allows anywhere (`Char`), spelled or referenced:
/// expat raises on any other (a control character, U+FFFE).
fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Reads a start tag's attributes as quick-xml checks them (well-formed,
/// none twice), at most [`MAX_ATTRIBUTES`]; XML-RPC uses none.
fn attributes_read(e: &quick_xml::events::BytesStart) -> Result<(), Stop> {
    for (i, a) in e.attributes().with_checks(true).enumerate() {
        if i >= MAX_ATTRIBUTES || a.is_err() {
            return Err(Stop::Uncertain);
        }
    }
    Ok(())
}
