//! Property tests (proptest, stable Rust) of the guard's parsers of
//! client bytes: the RPC reader and the PROXY protocol header. No input
//! may panic, and what they return must be consistent with the input.
//! CI runs proptest's default case count; `PROPTEST_CASES=1000000` for a
//! long run.

use proptest::prelude::*;
use rampart_guard::rpc::{self, Endpoint, Reading};
use rampart_guard::{ProxyHeader, parse_proxy_header};

fn xml_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("<?xml version='1.0'?>".to_string()),
        Just("<?xml version='1.0' encoding='UTF-16'?>".to_string()),
        Just("<methodCall>".to_string()),
        Just("</methodCall>".to_string()),
        Just("<methodName>".to_string()),
        Just("</methodName >".to_string()),
        Just("<params>".to_string()),
        Just("</params>".to_string()),
        Just("<param><value>".to_string()),
        Just("</value></param>".to_string()),
        Just("<string>".to_string()),
        Just("</string>".to_string()),
        Just("<array><data>".to_string()),
        Just("</data></array>".to_string()),
        Just("<struct><member><name>".to_string()),
        Just("</name><value>".to_string()),
        Just("</value></member></struct>".to_string()),
        Just("<![CDATA[".to_string()),
        Just("]]>".to_string()),
        Just("<!--".to_string()),
        Just("-->".to_string()),
        Just("&#97;".to_string()),
        Just("&amp;".to_string()),
        Just("<!DOCTYPE a [<!ENTITY e 'x'>]>".to_string()),
        Just("authenticate".to_string()),
        "[a-z<>/&;#\\[\\] \n]{0,12}",
    ]
}

fn json_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("{".to_string()),
        Just("}".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just(",".to_string()),
        Just(":".to_string()),
        Just("\"params\"".to_string()),
        Just("\"service\"".to_string()),
        Just("\"db\"".to_string()),
        Just("\"common\"".to_string()),
        Just("\"method\"".to_string()),
        Just("\"login\"".to_string()),
        Just("\"args\"".to_string()),
        Just("\"\\u0064b\"".to_string()),
        Just("\"\\ud83d\\ude00\"".to_string()),
        Just("\"ab\"".to_string()),
        Just("NaN".to_string()),
        Just("1e400".to_string()),
        Just("null".to_string()),
        Just("12".to_string()),
        "[a-z\"{}\\[\\],:\\\\ ]{0,8}",
    ]
}

fn endpoint() -> impl Strategy<Value = Endpoint> {
    prop_oneof![
        Just(Endpoint::JsonRpc),
        "[a-z0-9]{1,8}".prop_map(|service| Endpoint::XmlRpc { service }),
    ]
}

proptest! {
    #[test]
    fn rpc_reader_never_panics_on_bytes(e in endpoint(), body in proptest::collection::vec(any::<u8>(), 0..512)) {
        check_reading(&e, &body);
    }

    #[test]
    fn rpc_reader_never_panics_on_xml_shapes(pieces in proptest::collection::vec(xml_piece(), 0..40), utf16 in any::<bool>()) {
        let text = pieces.concat();
        let body: Vec<u8> = if utf16 {
            text.encode_utf16().flat_map(|u| u.to_le_bytes()).collect()
        } else {
            text.into_bytes()
        };
        check_reading(&Endpoint::XmlRpc { service: "common".into() }, &body);
    }

    #[test]
    fn rpc_reader_never_panics_on_json_shapes(pieces in proptest::collection::vec(json_piece(), 0..40)) {
        check_reading(&Endpoint::JsonRpc, pieces.concat().as_bytes());
    }

    #[test]
    fn proxy_header_never_panics_and_consumes_what_it_has(buf in proptest::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(ProxyHeader::Parsed { consumed, .. }) = parse_proxy_header(&buf) {
            prop_assert!(consumed <= buf.len());
        }
    }

    #[test]
    fn proxy_header_shaped_inputs(
        v2 in any::<bool>(),
        cmd in 0u8..4,
        fam in 0u8..4,
        len in 0u16..64,
        body in proptest::collection::vec(any::<u8>(), 0..64),
        line in "PROXY (TCP4|TCP6|UNKNOWN|TCP5)( [0-9a-f:.]{0,20}){0,5}(\r\n)?",
    ) {
        let buf: Vec<u8> = if v2 {
            let mut b = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
            b.push(0x20 | cmd);
            b.push(fam << 4 | 1);
            b.extend_from_slice(&len.to_be_bytes());
            b.extend_from_slice(&body);
            b
        } else {
            line.into_bytes()
        };
        // Every prefix of a header is Incomplete or an error, never a
        // different header.
        let whole = parse_proxy_header(&buf);
        for cut in 0..buf.len() {
            match parse_proxy_header(&buf[..cut]) {
                Ok(ProxyHeader::Parsed { consumed, .. }) => {
                    prop_assert!(consumed <= cut);
                    prop_assert_eq!(&whole, &parse_proxy_header(&buf[..cut]));
                }
                Ok(ProxyHeader::Incomplete) | Err(_) => {}
            }
        }
    }
}

fn check_reading(e: &Endpoint, body: &[u8]) {
    match rpc::read(e, body) {
        Reading::Call(c) => {
            if let Endpoint::XmlRpc { service } = e {
                assert_eq!(c.service.as_deref(), Some(service.as_str()));
            }
            assert!(c.login.is_none() || c.is_login());
        }
        Reading::NoCall | Reading::Uncertain => {}
    }
    // Deterministic: the same bytes, the same reading.
    assert_eq!(rpc::read(e, body), rpc::read(e, body));
}
