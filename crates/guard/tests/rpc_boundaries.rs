//! Bodies at the edges of what Rampart's XML-RPC reader follows (nesting,
//! attributes, encodings, every value type before the login), each read
//! exactly as python3 reads it (`oracle_rpc.py`). Stricter than the
//! differential corpus (`rpc_differential.rs`), where Uncertain always
//! agrees: here, where Python dispatches, Rampart must read the same call
//! (Uncertain would leave a real login uncounted by the per-login budget),
//! and where Python raises, no call.

use rampart_guard::rpc::{self, Endpoint, Reading};
use rampart_testkit::oracle::{self, hex};

fn boundaries() -> Vec<(&'static str, Vec<u8>)> {
    let auth = |method: &str, first: &str, login: &str| {
        format!(
            "<?xml version='1.0'?>\n<methodCall>\n{method}\n<params>\n<param>{first}</param>\n<param><value><string>{login}</string></value></param>\n<param><value><string>x</string></value></param>\n<param><value><struct></struct></value></param>\n</params>\n</methodCall>\n"
        )
    };
    let m = "<methodName>authenticate</methodName>";
    let first = "<value><string>demo1</string></value>";
    let plain = auth(m, first, "admin");
    let declared = |enc: &str, login: &str| {
        auth(m, first, login).replace(
            "<?xml version='1.0'?>",
            &format!("<?xml version='1.0' encoding='{enc}'?>"),
        )
    };
    let latin1 = |s: String| -> Vec<u8> { s.chars().map(|c| c as u32 as u8).collect() };
    let bom = |s: String| [b"\xEF\xBB\xBF".as_slice(), s.as_bytes()].concat();
    let utf16le = |s: String| -> Vec<u8> {
        let mut out = b"\xFF\xFE".to_vec();
        out.extend(s.encode_utf16().flat_map(u16::to_le_bytes));
        out
    };
    let attrs: String = (0..32).map(|i| format!(" a{i}=\"x\"")).collect();
    let array = |items: &str| format!("<value><array><data>{items}</data></array></value>");
    let nest = format!("{m}{}{}", "<a>".repeat(199), "</a>".repeat(199));
    vec![
        // Nesting and size: the pre-checks' boundaries, from inside.
        ("200 levels", auth(&nest, first, "admin").into_bytes()),
        (
            "32 attributes",
            auth(
                &format!("<methodName{attrs}>authenticate</methodName>"),
                first,
                "admin",
            )
            .into_bytes(),
        ),
        (
            "'=' in a quoted value",
            auth(
                &format!(
                    "<methodName x=\"{}\">authenticate</methodName>",
                    "=".repeat(300)
                ),
                first,
                "admin",
            )
            .into_bytes(),
        ),
        (
            "250 comments and processing instructions",
            auth(
                &format!("{m}{}{}", "<!--c-->".repeat(250), "<?pi x?>".repeat(250)),
                first,
                "admin",
            )
            .into_bytes(),
        ),
        (
            "an array of 250 strings first",
            auth(
                m,
                &array(&"<value><string>a</string></value>".repeat(250)),
                "admin",
            )
            .into_bytes(),
        ),
        (
            "an array of 250 empty values first",
            auth(m, &array(&"<value/>".repeat(250)), "admin").into_bytes(),
        ),
        (
            "an array of 251 strings first",
            auth(
                m,
                &array(&"<value><string>a</string></value>".repeat(251)),
                "admin",
            )
            .into_bytes(),
        ),
        (
            "a struct member without a value first",
            auth(
                m,
                "<value><struct><member><name>a</name></member></struct></value>",
                "admin",
            )
            .into_bytes(),
        ),
        (
            "params without a methodName",
            auth("", first, "admin").into_bytes(),
        ),
        ("'>' before the document", format!(">{plain}").into_bytes()),
        // Every value type before the login moves it along the same.
        (
            "nil first",
            auth(m, "<value><nil/></value>", "admin").into_bytes(),
        ),
        (
            "boolean first",
            auth(m, "<value><boolean>1</boolean></value>", "admin").into_bytes(),
        ),
        (
            "boolean 2 first",
            auth(m, "<value><boolean>2</boolean></value>", "admin").into_bytes(),
        ),
        (
            "base64 first",
            auth(m, "<value><base64>eA==</base64></value>", "admin").into_bytes(),
        ),
        (
            "double first",
            auth(m, "<value><double>1.5</double></value>", "admin").into_bytes(),
        ),
        (
            "dateTime first",
            auth(
                m,
                "<value><dateTime.iso8601>20260101T00:00:00</dateTime.iso8601></value>",
                "admin",
            )
            .into_bytes(),
        ),
        // Encodings: BOM, declaration and bytes that agree or do not.
        ("BOM, declared UTF-8", bom(declared("UTF-8", "adm\u{e9}n"))),
        ("BOM, undeclared", bom(auth(m, first, "adm\u{e9}n"))),
        (
            "BOM, declared US-ASCII, not ASCII",
            bom(declared("us-ascii", "adm\u{e9}n")),
        ),
        (
            "declared US-ASCII, ASCII",
            declared("US-ASCII", "admin").into_bytes(),
        ),
        (
            "declared US-ASCII, not ASCII",
            latin1(declared("us-ascii", "adm\u{e9}n")),
        ),
        (
            "declared ISO-8859-1",
            latin1(declared("ISO-8859-1", "adm\u{e9}n")),
        ),
        (
            "declared iso-8859-1",
            latin1(declared("iso-8859-1", "\u{ff}dmin")),
        ),
        (
            "declared ISO-8859-1 in double quotes",
            latin1(declared("ISO-8859-1", "adm\u{e9}n").replace(
                "<?xml version='1.0' encoding='ISO-8859-1'?>",
                "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>",
            )),
        ),
        (
            "UTF-16 declared UTF-16",
            utf16le(declared("UTF-16", "adm\u{e9}n")),
        ),
        ("UTF-16 declared UTF-8", utf16le(declared("UTF-8", "admin"))),
        (
            "UTF-16 declared ISO-8859-1",
            utf16le(declared("iso-8859-1", "admin")),
        ),
        // The declaration's pseudo-attributes in order: "encoding" inside
        // the version's value is not the encoding (red team of a1c0b17).
        (
            "version 'encoding', declared ISO-8859-1",
            latin1(
                declared("ISO-8859-1", "\u{c3}\u{a9}")
                    .replace("version='1.0'", "version='encoding'"),
            ),
        ),
        (
            "version '1.0encoding', declared ISO-8859-1",
            latin1(
                declared("ISO-8859-1", "\u{c3}\u{a9}")
                    .replace("version='1.0'", "version=\"1.0encoding\""),
            ),
        ),
        (
            "declared ISO-8859-1 with standalone",
            latin1(declared("ISO-8859-1", "adm\u{e9}n").replace("'?>", "' standalone='yes'?>")),
        ),
        (
            "encoding declared twice",
            latin1(declared("ISO-8859-1", "admin").replace(
                "encoding='ISO-8859-1'",
                "encoding='ISO-8859-1' encoding='UTF-8'",
            )),
        ),
        (
            "standalone before encoding",
            latin1(declared("ISO-8859-1", "adm\u{e9}n").replace(
                "encoding='ISO-8859-1'",
                "standalone='yes' encoding='ISO-8859-1'",
            )),
        ),
        (
            "encoding before version",
            latin1(declared("ISO-8859-1", "adm\u{e9}n").replace(
                "version='1.0' encoding='ISO-8859-1'",
                "encoding='ISO-8859-1' version='1.0'",
            )),
        ),
        // What expat refuses around a well-formed call: no call.
        (
            "']]>' in text",
            plain.replace("admin", "ad]]>min").into_bytes(),
        ),
        ("text after the root", format!("{plain}x").into_bytes()),
        ("a second root", format!("{plain}<a/>").into_bytes()),
        (
            "a second root, opened",
            format!("{plain}<a></a>").into_bytes(),
        ),
        (
            "CDATA after the root",
            format!("{plain}<![CDATA[]]>").into_bytes(),
        ),
        (
            "a reference after the root",
            format!("{plain}&#32;").into_bytes(),
        ),
        (
            "white space, a comment and a PI after the root",
            format!("{plain} \r\n\t<!--c--><?pi x?>").into_bytes(),
        ),
        (
            "an empty root, then the call",
            format!("<a/>{}", &plain[22..]).into_bytes(),
        ),
        (
            "the declaration after a space",
            format!(" {plain}").into_bytes(),
        ),
        (
            "a second declaration",
            plain
                .replacen("<methodCall>", "<?xml version='1.0'?><methodCall>", 1)
                .into_bytes(),
        ),
        (
            "a control character",
            plain.replace("admin", "ad\u{1}min").into_bytes(),
        ),
        (
            "a reference to one",
            plain.replace("admin", "ad&#1;min").into_bytes(),
        ),
        (
            "U+FFFE",
            plain.replace("admin", "ad\u{fffe}min").into_bytes(),
        ),
        (
            "an undefined entity",
            plain.replace("admin", "ad&nbsp;min").into_bytes(),
        ),
        (
            "an element left open",
            plain.replace("</methodCall>", "").into_bytes(),
        ),
        (
            "a comment with '--'",
            plain
                .replace("<params>", "<!-- a -- b --><params>")
                .into_bytes(),
        ),
    ]
}

#[test]
fn boundary_bodies_are_read_exactly_as_python_reads_them() {
    let cases = boundaries();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oracle_rpc.py");
    let lines = cases
        .iter()
        .map(|(_, body)| format!("xml common {}", hex(body)))
        .collect();
    let answers = oracle::run(
        "python3",
        script,
        "python3: the oracle is Python's own parsers",
        lines,
    );
    let endpoint = Endpoint::XmlRpc {
        service: "common".into(),
    };
    let mut bad = Vec::new();
    for ((name, body), py) in cases.iter().zip(answers) {
        let ours = rpc::read(&endpoint, body);
        let text = |k: &str| py[k].as_str().map(str::to_string);
        let agree = match &ours {
            Reading::Call(c) => {
                py["call"] == true
                    && c.service == text("service")
                    && c.method == text("method")
                    && c.login == text("login")
            }
            _ => py["call"] == false,
        };
        if !agree {
            bad.push(format!("{name}:\n  rampart {ours:?}\n  python  {py}"));
        }
    }
    assert!(
        bad.is_empty(),
        "read otherwise than Python:\n{}",
        bad.join("\n")
    );
}
