//! XML-RPC bodies as Odoo reads them: `xmlrpc.client.loads`, which feeds
//! expat's events to its `Unmarshaller`.
//!
//! The body is read as a stream of events by quick-xml (already in the
//! tree for the S3 backup target), never as a tree, and the Unmarshaller's
//! state machine is replayed on them (`xml/unmarshal.rs`), keeping the
//! first three values and the text since the last start tag, each whole
//! up to 64 KiB and hashed past it: reading a UTF-8 body costs about the
//! same whatever its size or shape (a roxmltree tree cost ~30 times the
//! body: 8 MB of `<a/>` held 250 MB); another encoding is decoded into a
//! copy first.
//!
//! quick-xml checks less than expat; what decides dispatch, or was cheap
//! to match, is checked here (one root and only white space outside it,
//! the declaration first and read in order, XML 1.0 characters, no `]]>`
//! in text, comments without `--`). A body expat refuses may still be
//! read as a call here, which is harmless: Odoo dispatches nothing
//! (`tests/rpc_differential.rs` counts them). Where expat reads a body,
//! the events are the same: tags (end names checked against their start),
//! text with `\r\n` made `\n`, the five predefined entities and character
//! references, CDATA; comments and processing instructions are no data.
//! What expat does beyond quick-xml is refused as [`Reading::Uncertain`]:
//! a DOCTYPE (expat expands internal entities, so `&a;` may spell
//! `authenticate`), an encoding other than UTF-8, UTF-16, ISO-8859-1 or
//! US-ASCII (pyexpat takes any Python codec), any other entity. The method
//! name is the text since the last start tag when the last `methodName`
//! element ends, wherever it is in the document.

use std::borrow::Cow;

use quick_xml::events::Event;

mod unmarshal;

use super::{Call, Credential, Reading};
#[cfg(test)]
pub use unmarshal::TEXT_KEPT;
use unmarshal::{Kept, Kind, Stop, Unmarshaller, ValueKind};

pub fn read(service: &str, body: &[u8]) -> Reading {
    let Some(text) = decode(body) else {
        return Reading::Uncertain;
    };
    if !text.chars().all(xml_char) {
        return Reading::Uncertain;
    }
    let mut u = Unmarshaller::new(4 * text.len() + 4096);
    match replay(&mut u, &text) {
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
    let mut first = u.stack.first;
    if call.service.as_deref() == Some("common")
        && matches!(call.method.as_deref(), Some("login" | "authenticate"))
    {
        call.login = match first.get_mut(1) {
            Some(Kept {
                kind: ValueKind::Str,
                text,
                digest,
            }) => Some(match text.take() {
                Some(login) => login,
                // Longer than any login kept: named by its hash, so each
                // still has a budget of its own.
                None => format!("\0long login {}", hex(digest)),
            }),
            _ => None,
        };
    }
    if call.is_object() && first.len() >= 3 {
        // The three values by type and hash: fixed-length, so no two
        // different triples give the same bytes.
        let mut c = b"xml\0".to_vec();
        for v in &first {
            c.push(v.kind as u8);
            c.extend_from_slice(&v.digest);
        }
        call.credential = Some(Credential(c));
        call.uid = Some(super::uid_name(&uid_text(&first[1])));
    }
    Reading::Call(call)
}

/// What Odoo's `int(params[1])` reads from the uid's value: a string or an
/// int as spelled, a bool 0 or 1, a float or a Decimal truncated; `?`
/// for anything else (one shared budget: stricter).
fn uid_text(v: &Kept) -> Cow<'_, str> {
    let Some(text) = v.text.as_deref() else {
        return "?".into();
    };
    match v.kind {
        ValueKind::Str | ValueKind::Int | ValueKind::Boolean => text.into(),
        ValueKind::Float => super::int_of_float(text).into(),
        ValueKind::BigDecimal => int_of_decimal(text).into(),
        _ => "?".into(),
    }
}

/// `int(Decimal(text))`: the digits before the point, exactly (an f64
/// rounds 2.99999999999999999999 up to 3, where Python truncates to 2);
/// `?` for an exponent, an underscore, inf or nan.
fn int_of_decimal(text: &str) -> String {
    let t = text.trim();
    let (sign, digits) = match t.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", t.strip_prefix('+').unwrap_or(t)),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let plain = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !plain(int) || !plain(frac) {
        return "?".to_string();
    }
    format!("{sign}{}", if int.is_empty() { "0" } else { int })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
        return match declared(text.as_bytes()).ok()? {
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
    match declared(body)
        .ok()?
        .map(|e| e.to_ascii_lowercase())
        .as_deref()
    {
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
    match declared(text.as_bytes()).ok()? {
        None => Some(text.into()),
        Some(e) if e.eq_ignore_ascii_case("utf-16") => Some(text.into()),
        Some(_) => None,
    }
}

/// The `encoding` of an XML declaration at the very start, if any; Err
/// when the declaration is not read with certainty. Its pseudo-attributes
/// are read in order, as expat reads them (`version`, then `encoding`,
/// then `standalone`): the first "encoding" in the text may be inside the
/// version's value (`version="encoding"`, which expat takes).
fn declared(body: &[u8]) -> Result<Option<String>, ()> {
    let Some(head) = body.strip_prefix(b"<?xml") else {
        return Ok(None);
    };
    if !head.first().is_some_and(|b| b" \t\r\n".contains(b)) {
        // `<?xml-stylesheet ...?>` and the like: a processing instruction.
        return Ok(None);
    }
    let end = head.windows(2).position(|w| w == b"?>").ok_or(())?;
    let mut rest = std::str::from_utf8(&head[..end]).map_err(|_| ())?;
    const ORDER: [&str; 3] = ["version", "encoding", "standalone"];
    // ORDER's index of the next name allowed.
    let mut next = 0;
    let mut encoding = None;
    loop {
        rest = rest.trim_start_matches([' ', '\t', '\r', '\n']);
        if rest.is_empty() {
            return Ok(encoding);
        }
        let name_len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || "._:-".contains(c)))
            .unwrap_or(rest.len());
        let (name, after) = rest.split_at(name_len);
        // Each name at most once, in order, version first.
        let at = ORDER[next..].iter().position(|n| *n == name).ok_or(())? + next;
        if next == 0 && at != 0 {
            return Err(());
        }
        next = at + 1;
        let after = after.trim_start_matches([' ', '\t', '\r', '\n']);
        let after = after.strip_prefix('=').ok_or(())?;
        let after = after.trim_start_matches([' ', '\t', '\r', '\n']);
        let quote = after
            .chars()
            .next()
            .filter(|c| *c == '"' || *c == '\'')
            .ok_or(())?;
        let after = &after[1..];
        let close = after.find(quote).ok_or(())?;
        if name == "encoding" {
            encoding = Some(after[..close].to_string());
        }
        rest = &after[close + 1..];
    }
}

/// The name Python dispatches on: `if ':' in tag: tag = tag.split(':')[-1]`
/// (the parser does no namespace processing).
fn local(name: &[u8]) -> Result<&str, Stop> {
    let name = std::str::from_utf8(name).map_err(|_| Stop::Uncertain)?;
    Ok(name.rsplit(':').next().unwrap_or(name))
}

/// Feeds the document's events to the state machine, as expat does.
fn replay(u: &mut Unmarshaller, text: &str) -> Result<(), Stop> {
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
            // After the root nothing opens again (so root_ended means
            // depth 0).
            Event::Start(e) => {
                if root_ended {
                    return Err(Stop::Uncertain);
                }
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(Stop::Uncertain);
                }
                attributes_read(&e)?;
                u.start(local(e.name().as_ref())?)?;
            }
            Event::Empty(e) => {
                if root_ended {
                    return Err(Stop::Uncertain);
                }
                root_ended |= depth == 0;
                if depth + 1 > MAX_DEPTH {
                    return Err(Stop::Uncertain);
                }
                attributes_read(&e)?;
                let name = e.name();
                let tag = local(name.as_ref())?;
                u.start(tag)?;
                u.end(tag)?;
            }
            Event::End(e) => {
                depth = depth.checked_sub(1).ok_or(Stop::Uncertain)?;
                root_ended |= depth == 0;
                u.end(local(e.name().as_ref())?)?;
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
                u.text(&t);
            }
            Event::CData(t) => {
                let t = t.xml10_content().map_err(|_| Stop::Uncertain)?;
                u.text(&t);
            }
            Event::GeneralRef(r) => match r.resolve_char_ref() {
                Ok(Some(c)) if xml_char(c) => u.text(c.encode_utf8(&mut [0; 4])),
                Ok(None) => u.text(match &*r {
                    b"lt" => "<",
                    b"gt" => ">",
                    b"amp" => "&",
                    b"apos" => "'",
                    b"quot" => "\"",
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
    if !root_ended {
        // An element left open, or none: expat raises.
        return Err(Stop::Uncertain);
    }
    Ok(())
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
