//! XML-RPC bodies read as `xmlrpc.client.loads` reads them: spellings,
//! encodings, nesting, attributes, and what reading one may cost.

use super::*;

#[test]
fn xml_bypass_spellings_read_as_authenticate() {
    for element in [
        "<methodName>authenticate</methodName>",
        "<!-- <methodName>version</methodName> --><methodName>authenticate</methodName>",
        "<methodName>&#97;uthenticate</methodName>",
        "<methodName>&#x61;uthenticat&#101;</methodName>",
        "<methodName><![CDATA[authenticate]]></methodName>",
        "<methodName>auth<![CDATA[enti]]>cate</methodName>",
        "<methodName >authenticate</methodName\n>",
        "<methodName\t>authenticate</methodName >",
        "<methodName>auth<!-- x -->enticate</methodName>",
        "<methodName>auth<?pi x?>enticate</methodName>",
        "<x:methodName xmlns:x='urn:x'>authenticate</x:methodName>",
        "<methodName>version</methodName><methodName>authenticate</methodName>",
    ] {
        let body = auth_call(element);
        let got = read(&common(), body.as_bytes());
        let Reading::Call(c) = got else {
            panic!("{element}: {got:?}")
        };
        assert_eq!(c.method.as_deref(), Some("authenticate"), "{element}");
        assert!(c.is_login(), "{element}");
        assert_eq!(c.login.as_deref(), Some("admin"), "{element}");
    }
}

#[test]
fn xml_encodings() {
    let body = auth_call("<methodName>authenticate</methodName>");
    let utf16 = |le: bool, bom: bool, decl: &str| {
        let text = body.replace("<?xml version='1.0'?>", decl);
        let mut out = Vec::new();
        if bom {
            out.extend_from_slice(if le { b"\xFF\xFE" } else { b"\xFE\xFF" });
        }
        for u in text.encode_utf16() {
            out.extend_from_slice(&if le { u.to_le_bytes() } else { u.to_be_bytes() });
        }
        out
    };
    for (le, bom) in [(true, true), (false, true), (true, false), (false, false)] {
        let b = utf16(le, bom, "<?xml version='1.0' encoding='UTF-16'?>");
        assert_eq!(
            xml_method(&b).as_deref(),
            Some("authenticate"),
            "{le} {bom}"
        );
    }
    let latin = body
        .replace(
            "<?xml version='1.0'?>",
            "<?xml version='1.0' encoding='ISO-8859-1'?>",
        )
        .replace("admin", "adm\u{e9}");
    let bytes: Vec<u8> = latin.chars().map(|c| c as u32 as u8).collect();
    match read(&common(), &bytes) {
        Reading::Call(c) => assert_eq!(c.login.as_deref(), Some("adm\u{e9}")),
        other => panic!("{other:?}"),
    }
    let mut bom8 = b"\xEF\xBB\xBF".to_vec();
    bom8.extend_from_slice(body.as_bytes());
    assert_eq!(xml_method(&bom8).as_deref(), Some("authenticate"));
    // pyexpat takes any Python codec: not ours to guess.
    let cp = body.replace(
        "<?xml version='1.0'?>",
        "<?xml version='1.0' encoding='cp1252'?>",
    );
    assert_eq!(read(&common(), cp.as_bytes()), Reading::Uncertain);
}

#[test]
fn xml_doctype_and_garbage_are_uncertain() {
    let entity = auth_call("<methodName>&a;</methodName>").replace(
        "<?xml version='1.0'?>",
        "<?xml version='1.0'?><!DOCTYPE methodCall [<!ENTITY a \"authenticate\">]>",
    );
    assert_eq!(read(&common(), entity.as_bytes()), Reading::Uncertain);
    assert_eq!(
        read(&common(), b"<methodCall><methodName>authenticate"),
        Reading::Uncertain
    );
    assert_eq!(read(&common(), b"\xff\xfe\x00"), Reading::Uncertain);
    let deep = "<a>".repeat(100_000);
    assert_eq!(read(&common(), deep.as_bytes()), Reading::Uncertain);
}

#[test]
fn xml_without_params_is_no_call() {
    // loads() raises without a </params>, </methodName> or with a fault.
    assert_eq!(
        read(&common(), b"<methodCall></methodCall>"),
        Reading::NoCall
    );
    assert_eq!(
        read(
            &common(),
            b"<methodCall><methodName>authenticate</methodName><fault/></methodCall>"
        ),
        Reading::NoCall
    );
    assert_eq!(
        xml_method(b"<methodCall><methodName>authenticate</methodName></methodCall>").as_deref(),
        Some("authenticate")
    );
    // The text since the last start tag, as the Unmarshaller keeps it.
    let odd = auth_call("<methodName>auth<b/>enticate</methodName>");
    assert_eq!(xml_method(odd.as_bytes()).as_deref(), Some("enticate"));
    let odd = auth_call("<methodName><x>auth</x>enticate</methodName>");
    assert_eq!(xml_method(odd.as_bytes()).as_deref(), Some("authenticate"));
}

#[test]
fn xml_object_call_carries_its_credentials() {
    let body = b"<?xml version='1.0'?><methodCall><methodName>execute_kw</methodName><params><param><value><string>demo1</string></value></param><param><value><int>2</int></value></param><param><value><string>pw</string></value></param><param><value><string>res.partner</string></value></param></params></methodCall>";
    let object = Endpoint::XmlRpc {
        service: "object".into(),
    };
    let Reading::Call(c) = read(&object, body) else {
        panic!()
    };
    assert!(c.is_object());
    let other = String::from_utf8_lossy(body).replace(">pw<", ">pw2<");
    let Reading::Call(c2) = read(&object, other.as_bytes()) else {
        panic!()
    };
    assert!(c.credential.is_some());
    assert_ne!(c.credential, c2.credential);
    // Only the first three params are the credential: another model, or
    // more params after them, is the same proven credential.
    for later in [
        ">res.users<",
        ">res.partner</string></value></param><param><value><string>read<",
        ">res.partner</string></value></param><param><value><array><data><value><i4>1</i4></value></data></array></value></param><param><value><string>x<",
    ] {
        let other = String::from_utf8_lossy(body).replace(">res.partner<", later);
        let Reading::Call(c3) = read(&object, other.as_bytes()) else {
            panic!("{later}")
        };
        assert_eq!(c.credential, c3.credential, "{later}");
        assert_eq!(c3.uid.as_deref(), Some("\0uid 2"));
    }
}

#[test]
fn many_attributes_are_uncertain_and_cheap() {
    let many: String = (0..100_000).map(|i| format!(" a{i}=\"x\"")).collect();
    let body = format!("<methodCall{many}><methodName>login</methodName></methodCall>");
    assert_eq!(read(&common(), body.as_bytes()), Reading::Uncertain);
    // '>' inside values and quotes from a comment do not hide them.
    let tricky: String = (0..300).map(|i| format!(" a{i}=\">\"")).collect();
    let body =
        format!("<!-- \" --><methodCall{tricky}><methodName>login</methodName></methodCall>");
    assert_eq!(read(&common(), body.as_bytes()), Reading::Uncertain);
    // A few are read as before.
    let body = auth_call("<methodName a=\"1\" b='2'>authenticate</methodName>");
    assert_eq!(xml_method(body.as_bytes()).as_deref(), Some("authenticate"));
}

#[test]
fn a_long_password_is_still_a_login_and_text_copied_past_the_budget_is_uncertain() {
    // xmlrpc.client reads a 64 KiB password as any other: the call is
    // still an authenticate, counted against the budgets.
    let pw = "x".repeat(64 * 1024);
    let body = with_password(&pw);
    assert_eq!(xml_method(body.as_bytes()).as_deref(), Some("authenticate"));
    // Under 150 elements that are no XML-RPC tag it is copied nowhere:
    // read.
    let nest = |tag: &str| {
        format!(
            "<methodCall>{}{pw}{}<methodName>authenticate</methodName><params><param><value>demo1</value></param></params></methodCall>",
            format!("<{tag}>").repeat(150),
            format!("</{tag}>").repeat(150)
        )
    };
    assert_authenticate(&nest("x"));
    // Under 150 strings only the first three copies are kept.
    assert_authenticate(&nest("string"));
    // Each end of a methodName keeps the text since the last start tag
    // (Python's `_data` is cleared only by a start tag): 150 copies, past
    // four times the body, are not made (uncertain).
    assert_uncertain(&nest("methodName"), "150 copies of 64 KiB");
    assert_authenticate(&nest("methodName").replace(&pw, "short"));
}

#[test]
fn equals_signs_in_text_are_not_attributes() {
    // Only '=' inside a tag counts towards the attribute limit: a password
    // full of them is still an authenticate call.
    let pw = "a=b".repeat(50_000);
    let body = with_password(&pw);
    assert_eq!(xml_method(body.as_bytes()).as_deref(), Some("authenticate"));
}

/// An authenticate call with a nest of `levels` elements opened by `each`
/// under the methodCall (level 1), `inner` in the deepest: `<a>` is no
/// XML-RPC tag, so xmlrpc.client ignores the nest and still dispatches.
fn nested(levels: usize, each: &str, inner: &str) -> String {
    let nest = format!("{}{inner}{}", each.repeat(levels), "</a>".repeat(levels));
    auth_call(&format!("<methodName>authenticate</methodName>{nest}"))
}

#[test]
fn nesting_is_followed_to_200_levels_and_no_deeper() {
    // The methodCall is level 1: its 199-deep nest reaches level 200.
    assert_authenticate(&nested(199, "<a>", ""));
    assert_authenticate(&nested(198, "<a>", "<b/>"));
    assert_uncertain(&nested(200, "<a>", ""), "200 nested under the methodCall");
    assert_uncertain(&nested(199, "<a>", "<b/>"), "an empty element at 201");
    // What looks like tags inside comments, CDATA and processing
    // instructions opens nothing: 250 of them before the nest.
    for markup in ["<!--<b>-->", "<![CDATA[<b>]]>", "<?pi <b>?>"] {
        let body = nested(199, "<a>", "").replace(
            "</methodName>",
            &format!("</methodName>{}", markup.repeat(250)),
        );
        assert_authenticate(&body);
    }
}

#[test]
fn nothing_that_looks_like_an_end_hides_nesting() {
    // An earlier reader's tokenizer recursed once per level: 300,000
    // levels (a 3 MB body) overflowed the stack and aborted the process.
    // Each of these spellings put "/>" or "</" where it ends no element;
    // the nest must still be counted, and still be answered, not crash.
    for each in [
        "<a>/>",
        "<a>></a<",
        "<a x='/>'>",
        "<a x=\"/>\">",
        "<a x='\"/>'>",
        "<a><!--</a>-->",
        "<a><!--/>-->",
        "<a><![CDATA[</a>]]>",
        "<a><?pi </a>?>",
    ] {
        for levels in [200, 300_000] {
            assert_uncertain(&nested(levels, each, ""), &format!("{levels} × {each}"));
        }
    }
}

#[test]
fn attributes_are_counted_to_32_and_quoted_equals_are_not() {
    let attrs = |n: usize| -> String { (0..n).map(|i| format!(" a{i}=\"x\"")).collect() };
    assert_authenticate(&method_with(&attrs(32)));
    assert_uncertain(&method_with(&attrs(33)), "33 attributes");
    // One attribute whose value is 300 '=' (either quote, the other one
    // inside it) is one attribute.
    let eq = "=".repeat(300);
    for value in [format!("\"'{eq}\""), format!("'\"{eq}'")] {
        assert_authenticate(&method_with(&format!(" x={value}")));
    }
}

#[test]
fn namespaces_and_prefixes_are_names_as_python_reads_them() {
    // xmlrpc.client's expat does no namespace processing: `xmlns` is an
    // attribute like any other, and the Unmarshaller keeps the part of a
    // tag after its last ':' (`tag.split(':')[-1]`), bound or not.
    let decls = |n: usize| -> String { (0..n).map(|i| format!(" xmlns:p{i}='urn:x'")).collect() };
    assert_authenticate(&auth_call(&format!(
        "<p0:methodName{}>authenticate</p0:methodName>",
        decls(32)
    )));
    assert_authenticate(&auth_call("<p:methodName>authenticate</p:methodName>"));
    assert_authenticate(&auth_call("<a:b:methodName>authenticate</a:b:methodName>"));
    assert_eq!(
        xml_method(auth_call("<methodName:x>authenticate</methodName:x>").as_bytes()),
        None
    );
    for attr in ["p:a='1'", "p:a = '1'", "xml:lang='en'", "p:xmlns='urn:y'"] {
        assert_authenticate(&method_with(&format!(" xmlns:p='urn:x' {attr}")));
    }
    // An end tag must match its start literally, prefix and all.
    assert_uncertain(
        &auth_call("<p:methodName xmlns:p='urn:x'>authenticate</q:methodName>"),
        "a different prefix",
    );
    // An attribute twice is malformed.
    assert_uncertain(&method_with(" a='1' a='2'"), "a repeated attribute");
}

#[test]
fn text_cdata_and_references_join_as_expat_reports_them() {
    // Python joins every piece of text since the last start tag: text,
    // CDATA, references, around comments and processing instructions.
    for spelled in [
        "au<![CDATA[then]]>ticate",
        "au<!-- x -->the<?pi x?>nticate",
        "&#97;uth&#x65;nticate",
        "<![CDATA[]]>authenticate<![CDATA[]]>",
    ] {
        assert_authenticate(&auth_call(&format!("<methodName>{spelled}</methodName>")));
    }
    // Line ends are made '\n' before anything else; a reference keeps '\r'.
    let login = |spelled: &str| match read(
        &common(),
        auth_call("<methodName>login</methodName>")
            .replace(">admin<", &format!(">{spelled}<"))
            .as_bytes(),
    ) {
        Reading::Call(c) => c.login,
        other => panic!("{other:?}"),
    };
    assert_eq!(login("a\r\nb\rc").as_deref(), Some("a\nb\nc"));
    assert_eq!(
        login("a&#13;\nb<![CDATA[\r\n]]>").as_deref(),
        Some("a\r\nb\n")
    );
    assert_eq!(
        login("&lt;&gt;&amp;&apos;&quot;").as_deref(),
        Some("<>&'\"")
    );
    // Any other entity is defined nowhere (a DOCTYPE is refused).
    assert_uncertain(&with_password("&nbsp;"), "an undefined entity");
    assert_uncertain(&with_password("&#0;"), "a reference to NUL");
    assert_uncertain(&with_password("a & b"), "a bare ampersand");
    // Pieces without end cost their bytes once: 4 MiB of them are read.
    assert_authenticate(&with_password(&"x<![CDATA[]]>".repeat(300_000)));
}

#[test]
fn texts_past_what_is_kept_are_hashed_not_copied() {
    use crate::rpc::xml::TEXT_KEPT;
    let object = Endpoint::XmlRpc {
        service: "object".into(),
    };
    let call = |db: &str, uid: &str, pw: &str| {
        let body = format!(
            "<methodCall><methodName>execute_kw</methodName><params>\
             <param><value>{db}</value></param><param><value>{uid}</value></param>\
             <param><value>{pw}</value></param></params></methodCall>"
        );
        match read(&object, body.as_bytes()) {
            Reading::Call(c) => c,
            other => panic!("{other:?}"),
        }
    };
    let long = "p".repeat(TEXT_KEPT + 1);
    let longer = "p".repeat(TEXT_KEPT + 2);
    // Long passwords and databases are credentials as distinct as short
    // ones, whether the text came in one piece or many.
    let a = call("d", "2", &long);
    assert_ne!(a.credential, call("d", "2", &longer).credential);
    assert_ne!(a.credential, call(&long, "2", "p").credential);
    let pieces = format!("{}<!---->p", "p".repeat(TEXT_KEPT));
    assert_eq!(a.credential, call("d", "2", &pieces).credential);
    let at_limit = "p".repeat(TEXT_KEPT);
    let split = format!("{}<![CDATA[p]]>", "p".repeat(TEXT_KEPT - 1));
    assert_eq!(
        call("d", "2", &at_limit).credential,
        call("d", "2", &split).credential
    );
    // Type matters: the string "2" and the int 2 are different credentials.
    assert_ne!(
        call("d", "<string>2</string>", "p").credential,
        call("d", "<int>2</int>", "p").credential
    );
    // A uid past the limit is no user's: the shared budget.
    let zeros = format!("{}2", "0".repeat(TEXT_KEPT));
    assert_eq!(call("d", &zeros, "p").uid.as_deref(), Some("\0uid ?"));
    let zeros = format!("{}2", "0".repeat(TEXT_KEPT - 1));
    assert_eq!(call("d", &zeros, "p").uid.as_deref(), Some("\0uid 2"));
    // A login past the limit is named by its hash: one budget each.
    let login = |l: &str| {
        let body = with_password("x").replace(">admin<", &format!(">{l}<"));
        match read(&common(), body.as_bytes()) {
            Reading::Call(c) => c.login.unwrap(),
            other => panic!("{other:?}"),
        }
    };
    let (l1, l2) = (login(&long), login(&longer));
    assert!(l1.starts_with("\0long login ") && l1.len() < 100, "{l1:?}");
    assert_ne!(l1, l2);
    assert_eq!(login(&at_limit), at_limit);
    // A method name past the limit is none Odoo has.
    let body = auth_call(&format!("<methodName>{long}</methodName>"));
    assert_eq!(
        read(&common(), body.as_bytes()),
        Reading::Call(Call {
            service: Some("common".into()),
            ..Call::default()
        })
    );
}
