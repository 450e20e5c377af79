//! XML-RPC bodies as Odoo reads them: `xmlrpc.client.loads`, which feeds
//! expat's events to its `Unmarshaller`.
//!
//! The XML is parsed by roxmltree (strict XML 1.0, no dependencies):
//! comments, CDATA, character and entity references, whitespace inside
//! tags, namespaces, all read as expat reads them. What expat does beyond
//! it is refused as [`Reading::Uncertain`]: a DOCTYPE (expat expands
//! internal entities, so `&a;` may spell `authenticate`), an encoding other
//! than UTF-8, UTF-16, ISO-8859-1 or US-ASCII (pyexpat takes any Python
//! codec). The tree is then walked as the event stream it came from and
//! the Unmarshaller's state machine is replayed on it: the method name is
//! the text since the last start tag when the last `methodName` element
//! ends, wherever it is in the document.

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
    if text.contains("<!DOCTYPE")
        || text.contains("<!ENTITY")
        || too_deep_or_joined(&text)
        || too_many_attributes(&text)
    {
        return Reading::Uncertain;
    }
    let opts = roxmltree::ParsingOptions {
        allow_dtd: false,
        ..Default::default()
    };
    let Ok(doc) = roxmltree::Document::parse_with_options(&text, opts) else {
        return Reading::Uncertain;
    };
    let mut u = Unmarshaller {
        // Text copied out of the tree (nested elements copy the same text
        // once per level) is bounded by a few times the body.
        budget: 4 * text.len() + 4096,
        ..Unmarshaller::default()
    };
    match u.walk(doc.root(), 0) {
        Err(Walk::TooDeep) => return Reading::Uncertain,
        Err(Walk::Raised) => return Reading::NoCall,
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
    if call.service.as_deref() == Some("common")
        && matches!(call.method.as_deref(), Some("login" | "authenticate"))
    {
        call.login = match u.stack.get(1) {
            Some(Val::Str(s)) => Some(s.clone()),
            _ => None,
        };
    }
    if call.is_object() && u.stack.len() >= 3 {
        let mut c = b"xml\0".to_vec();
        for v in &u.stack[..3] {
            c.extend_from_slice(format!("{v:?}").as_bytes());
            c.push(0);
        }
        call.credential = Some(Credential(c));
        // Odoo's `int(params[1])`: a float truncated, a bool 0 or 1.
        let int: std::borrow::Cow<str> = match &u.stack[1] {
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

/// Most attributes on one element before the body is uncertain: roxmltree
/// checks each new attribute against the element's others (quadratic: a
/// 1 MB start tag of 100,000 attributes took minutes; 8 MB of elements of
/// 256 each took ~1 s, where 32 each cost an eighth), and no XML-RPC
/// element has any.
pub const MAX_ATTRIBUTES: usize = 32;

/// Most namespace declarations (`xmlns`, `xmlns:p`) in a document before it
/// is uncertain: roxmltree copies the namespaces in scope into each element
/// that declares one, checking each against the element's own (an element
/// under 25,600 declarations cost ~327 million comparisons; a 1 MiB body
/// of them ran for minutes). XML-RPC clients declare one at most.
pub const MAX_NAMESPACES: usize = 16;

/// Whether the attributes may cost roxmltree more than their bytes: a
/// start tag with more than [`MAX_ATTRIBUTES`], more than
/// [`MAX_NAMESPACES`] declarations in the document, or any attribute with
/// a prefix (`p:a`, `xml:lang`): roxmltree compares a new attribute's
/// namespace URI, whole, with each of the element's others, so one long
/// URI made every pair cost its length (a 128 KiB body took 0.8 s, an
/// hour at 8 MiB).
///
/// A start tag lies between a `<` and the next (`<` is not allowed in an
/// attribute value), so each `<` starts a fresh count of the `=` outside
/// quotes before the tag's `>`; an attribute's name is the last word
/// (run of bytes that are not space, quote or `=`) before its `=`.
fn too_many_attributes(text: &str) -> bool {
    let b = text.as_bytes();
    let mut in_tag = false;
    let mut quote = 0u8;
    let mut count = 0usize;
    let mut declarations = 0usize;
    // The last word in the tag: its start, its end, whether it goes on.
    let (mut word, mut word_end, mut in_word) = (0usize, 0usize, false);
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'<' => {
                in_tag = true;
                quote = 0;
                count = 0;
                (word, word_end, in_word) = (i, i, false);
            }
            _ if !in_tag => {}
            b'"' | b'\'' if quote == 0 => {
                quote = c;
                in_word = false;
            }
            _ if quote != 0 && c == quote => quote = 0,
            _ if quote != 0 => {}
            b'>' => in_tag = false,
            b'=' => {
                count += 1;
                if count > MAX_ATTRIBUTES {
                    return true;
                }
                let name = &b[word..word_end];
                if name == b"xmlns" || name.starts_with(b"xmlns:") {
                    declarations += 1;
                    if declarations > MAX_NAMESPACES {
                        return true;
                    }
                } else if name.contains(&b':') {
                    return true;
                }
                // In well-formed XML a quote or a space follows, and the
                // next name starts a new word.
            }
            b' ' | b'\t' | b'\r' | b'\n' => in_word = false,
            _ => {
                if !in_word {
                    word = i;
                    in_word = true;
                }
                word_end = i + 1;
            }
        }
    }
    false
}

/// Whether elements may nest deeper than [`MAX_DEPTH`], or text be
/// joined past [`Joins`]' budget. roxmltree's tokenizer recurses once per
/// level: a few MiB of nested elements overflow the stack and abort the
/// whole process, so this runs first and must never count fewer levels
/// than roxmltree would build.
///
/// Hand-written because no library lexes only what changes the depth
/// without itself building the tree: start tags (to their `>` outside
/// quotes; `/>` closes them again), end tags, and the markup whose
/// content is not markup (comments, CDATA, processing instructions),
/// skipped whole so a `</a>` or `/>` inside them ends nothing. `>` and
/// `/>` in text are text. Unterminated markup, which
/// roxmltree refuses anyway, is answered "too deep" (uncertain).
fn too_deep_or_joined(text: &str) -> bool {
    let b = text.as_bytes();
    let mut depth: usize = 0;
    let mut joins = Joins::new(text.len());
    let mut i = 0;
    while let Some(at) = b[i..].iter().position(|&c| c == b'<') {
        let rest = &b[i + at..];
        // The length of the markup from its '<' through `close`.
        let through = |open: usize, close: &[u8]| {
            rest[open..]
                .windows(close.len())
                .position(|w| w == close)
                .map(|e| open + e + close.len())
        };
        let cdata = rest.starts_with(b"<![CDATA[");
        let len = if rest.starts_with(b"<!--") {
            through(4, b"-->")
        } else if cdata {
            through(9, b"]]>")
        } else if rest.starts_with(b"<?") {
            through(2, b"?>")
        } else if rest.starts_with(b"</") {
            depth = depth.saturating_sub(1);
            through(2, b">")
        } else {
            depth += 1;
            if depth > MAX_DEPTH {
                return true;
            }
            let len = start_tag_len(rest);
            if len.is_some_and(|n| rest[n - 2] == b'/') {
                depth -= 1;
            }
            len
        };
        let Some(len) = len else {
            return true;
        };
        if at > 0 {
            joins.piece(at);
        }
        if cdata {
            joins.piece(len - b"<![CDATA[]]>".len());
        } else {
            joins.end();
        }
        if joins.copied > joins.budget {
            return true;
        }
        i += at + len;
    }
    false
}

/// The bytes roxmltree copies joining text: text and CDATA that follow
/// one another are one node, and each piece joined copies what the node
/// holds so far with it (4 MiB of `x<![CDATA[]]>` took 9 s). Counted on
/// the raw bytes (references only shrink them), bounded by a few times
/// the body and a MiB (a few hundred short pieces in a row are cheap).
struct Joins {
    /// The node's length so far; None after markup that ends it.
    run: Option<usize>,
    copied: usize,
    budget: usize,
}

impl Joins {
    fn new(len: usize) -> Joins {
        Joins {
            run: None,
            copied: 0,
            budget: 4 * len + (1 << 20),
        }
    }

    /// A text or CDATA piece of `n` bytes.
    fn piece(&mut self, n: usize) {
        self.run = Some(match self.run {
            Some(run) => {
                self.copied += run + n;
                run + n
            }
            None => n,
        });
    }

    /// A tag, comment or processing instruction: the next piece starts a node.
    fn end(&mut self) {
        self.run = None;
    }
}

/// The length of the start tag `tag` begins with, through its `>`: the
/// first outside a quoted attribute value (where `>` and `/>` are text).
fn start_tag_len(tag: &[u8]) -> Option<usize> {
    let mut quote = None;
    for (i, &c) in tag.iter().enumerate() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == b'"' || c == b'\'' => quote = Some(c),
            None if c == b'>' => return Some(i + 1),
            None => {}
        }
    }
    None
}

/// The document as text, by expat's rules: a BOM, else the first bytes
/// (`<\0` is UTF-16LE), else the declared encoding, else UTF-8.
fn decode(body: &[u8]) -> Option<String> {
    if let Some(rest) = body.strip_prefix(b"\xEF\xBB\xBF") {
        let text = std::str::from_utf8(rest).ok()?;
        return match declared(text.as_bytes()) {
            None => Some(text.to_string()),
            Some(e) if e.eq_ignore_ascii_case("utf-8") => Some(text.to_string()),
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
        None | Some("utf-8") => std::str::from_utf8(body).ok().map(str::to_string),
        Some("us-ascii") if body.is_ascii() => Some(String::from_utf8_lossy(body).into_owned()),
        Some("iso-8859-1") => Some(body.iter().map(|&b| char::from(b)).collect()),
        _ => None,
    }
}

fn utf16(bytes: &[u8], unit: fn([u8; 2]) -> u16) -> Option<String> {
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    let units = bytes.chunks_exact(2).map(|c| unit([c[0], c[1]]));
    let text: String = char::decode_utf16(units).collect::<Result<_, _>>().ok()?;
    // A declaration, if any, must agree: expat refuses an 8-bit name here.
    match declared(text.as_bytes()) {
        None => Some(text),
        Some(e) if e.eq_ignore_ascii_case("utf-16") => Some(text),
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

/// `xmlrpc.client.Unmarshaller`'s state, replayed.
#[derive(Default)]
struct Unmarshaller {
    stack: Vec<Val>,
    marks: Vec<usize>,
    data: String,
    value: bool,
    kind: Option<Kind>,
    method: Option<String>,
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

/// loads() raised.
struct Raised;

enum Walk {
    Raised,
    /// Deeper or larger than we follow (expat has no limit): uncertain.
    TooDeep,
}

/// XML-RPC messages are a few levels deep; this bounds our recursion.
const MAX_DEPTH: usize = 200;

impl Unmarshaller {
    fn walk(&mut self, node: roxmltree::Node, depth: usize) -> Result<(), Walk> {
        if depth > MAX_DEPTH {
            return Err(Walk::TooDeep);
        }
        for child in node.children() {
            if child.is_element() {
                // Python strips a prefix; roxmltree resolved it to a namespace.
                let tag = child.tag_name().name();
                self.start(tag).map_err(|_| Walk::Raised)?;
                self.walk(child, depth + 1)?;
                if self.data.len() > self.budget {
                    return Err(Walk::TooDeep);
                }
                self.budget -= self.data.len();
                self.end(tag).map_err(|_| Walk::Raised)?;
            } else if child.is_text() {
                self.data.push_str(child.text().unwrap_or(""));
            }
        }
        Ok(())
    }

    fn start(&mut self, tag: &str) -> Result<(), Raised> {
        if tag == "array" || tag == "struct" {
            self.marks.push(self.stack.len());
        }
        self.data.clear();
        if self.value && !DISPATCH.contains(&tag) {
            return Err(Raised);
        }
        self.value = tag == "value";
        Ok(())
    }

    fn end(&mut self, tag: &str) -> Result<(), Raised> {
        let data = self.data.clone();
        match tag {
            "nil" => self.push(Val::Other("nil".into())),
            "boolean" => match data.as_str() {
                "0" | "1" => self.push(Val::Other(format!("boolean {data}"))),
                _ => return Err(Raised),
            },
            "i1" | "i2" | "i4" | "i8" | "int" | "biginteger" => {
                self.push(Val::Other(format!("int {data}")))
            }
            "double" | "float" | "bigdecimal" => self.push(Val::Other(format!("float {data}"))),
            "string" | "name" => self.push(Val::Str(data)),
            "array" | "struct" => {
                let mark = self.marks.pop().ok_or(Raised)?;
                let items = self.stack.split_off(mark.min(self.stack.len()));
                if tag == "struct" && !items.len().is_multiple_of(2) {
                    return Err(Raised);
                }
                // Not its content: nested levels would copy it again each
                // (and no array is ever a database, uid or password).
                self.push(Val::Other(tag.to_string()));
            }
            "base64" => self.push(Val::Other(format!("base64 {data}"))),
            // Python forgets to reset `_value` here; so do we.
            "dateTime.iso8601" => self.stack.push(Val::Other(format!("date {data}"))),
            "value" if self.value => self.push(Val::Str(data)),
            "params" => self.kind = Some(Kind::Params),
            "fault" => self.kind = Some(Kind::Fault),
            "methodName" => {
                self.method = Some(data);
                self.kind = Some(Kind::MethodName);
            }
            _ => {}
        }
        Ok(())
    }

    fn push(&mut self, v: Val) {
        self.stack.push(v);
        self.value = false;
    }
}
