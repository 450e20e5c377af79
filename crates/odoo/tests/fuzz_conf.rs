//! Property tests (proptest, stable Rust) of the odoo.conf reader: no
//! input panics; what it renders reads back the same; a key it sets reads
//! back as set. CI runs proptest's default case count;
//! `PROPTEST_CASES=1000000` for a long run.

use std::path::Path;

use proptest::prelude::*;
use rampart_odoo::conf::OdooConf;

fn line() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("[options]".to_string()),
        Just("[DEFAULT]".to_string()),
        Just("[other]".to_string()),
        Just("".to_string()),
        Just("# comment".to_string()),
        Just("; comment".to_string()),
        "[a-z_]{1,10} ?[=:] ?[ -~]{0,20}",
        "[ \t]{1,3}[ -~]{0,12}",
        "[ -~]{0,30}",
        any::<String>(),
    ]
}

fn text() -> impl Strategy<Value = String> {
    (
        proptest::collection::vec(line(), 0..12),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(lines, crlf, end)| {
            let nl = if crlf { "\r\n" } else { "\n" };
            let mut t = lines.join(nl);
            if end {
                t.push_str(nl);
            }
            t
        })
}

proptest! {
    #[test]
    fn parse_never_panics_and_render_reads_back(t in text()) {
        let p = Path::new("odoo.conf");
        if let Ok(c) = OdooConf::parse(p, &t) {
            let again = OdooConf::parse(p, &c.render()).expect("what we render parses");
            let a: Vec<_> = c.options().collect();
            let b: Vec<_> = again.options().collect();
            prop_assert_eq!(a, b);
        }
    }

    #[test]
    fn a_key_set_reads_back(t in text(), key in "[a-z_]{1,12}", value in "[ -~]{0,30}") {
        let p = Path::new("odoo.conf");
        if let Ok(mut c) = OdooConf::parse(p, &t) {
            c.set(&key, &value);
            let again = OdooConf::parse(p, &c.render()).expect("what we render parses");
            prop_assert_eq!(again.get(&key).map(|v| v.value), Some(value.trim()));
        }
    }
}
