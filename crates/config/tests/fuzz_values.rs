//! Property tests (proptest, stable Rust) of the config values a person
//! types: durations, sizes, address ranges. No input panics or wraps;
//! what is displayed reads back as the same value. CI runs proptest's
//! default case count; `PROPTEST_CASES=1000000` for a long run.

use proptest::prelude::*;
use rampart_config::{ByteSize, Cidr, Duration};

fn duration_text() -> impl Strategy<Value = String> {
    let part = (
        prop_oneof![
            (0u64..100_000).prop_map(|n| n.to_string()),
            any::<u64>().prop_map(|n| n.to_string()),
            "[0-9]{15,25}",
        ],
        prop_oneof![
            Just("ms"),
            Just("s"),
            Just("m"),
            Just("h"),
            Just("d"),
            Just(""),
            Just("x"),
            Just(" ")
        ],
    )
        .prop_map(|(n, u)| format!("{n}{u}"));
    proptest::collection::vec(part, 0..4).prop_map(|v| v.concat())
}

proptest! {
    #[test]
    fn durations_never_panic_and_round_trip(s in prop_oneof![duration_text(), any::<String>()]) {
        if let Ok(d) = s.parse::<Duration>() {
            let shown = d.to_string();
            let back: Duration = shown.parse().unwrap_or_else(|e| panic!("{s:?} shown as {shown:?}: {e}"));
            prop_assert_eq!(back, d, "{:?} shown as {:?}", s, shown);
        }
    }

    #[test]
    fn durations_add_up_exactly(parts in proptest::collection::vec((0u64..1_000_000, 0usize..5), 1..5)) {
        let units = [("ms", 0u64), ("s", 1), ("m", 60), ("h", 3600), ("d", 86400)];
        let text: String = parts.iter().map(|(n, u)| format!("{n}{}", units[*u].0)).collect();
        let want = parts.iter().fold(std::time::Duration::ZERO, |t, (n, u)| {
            t + if *u == 0 { std::time::Duration::from_millis(*n) } else { std::time::Duration::from_secs(n * units[*u].1) }
        });
        prop_assert_eq!(text.parse::<Duration>().unwrap().get(), want);
    }

    #[test]
    fn sizes_never_panic_and_round_trip(
        s in prop_oneof![
            ("[0-9]{1,22}", "( )?(|b|B|k|KB|kib|KiB|m|MB|MiB|g|GB|GiB|t|TB|TiB|parsecs)").prop_map(|(n, u)| format!("{n}{u}")),
            any::<String>(),
        ]
    ) {
        if let Ok(b) = s.parse::<ByteSize>() {
            let shown = b.to_string();
            prop_assert_eq!(shown.parse::<ByteSize>().unwrap(), b);
        }
    }

    #[test]
    fn cidrs_never_panic_and_round_trip(
        s in prop_oneof![
            "([0-9]{1,3}\\.){3}[0-9]{1,3}(/[0-9]{1,3})?",
            "[0-9a-f:]{2,30}(/[0-9]{1,3})?",
            any::<String>(),
        ]
    ) {
        if let Ok(c) = s.parse::<Cidr>() {
            let shown = c.to_string();
            prop_assert_eq!(shown.parse::<Cidr>().unwrap(), c);
        }
    }
}
