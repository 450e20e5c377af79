//! When each target last held all the WAL this process's streamer had
//! received: the gauge an alert reads as "WAL N minutes behind". Kept
//! process-wide because the streamer runs inside `rampart serve`, beside
//! the metrics that read it; a streamer in another process
//! (`rampart wal-stream`) reports nothing here.

use std::collections::BTreeMap;
use std::sync::Mutex;

static CAUGHT_UP: Mutex<BTreeMap<String, i64>> = Mutex::new(BTreeMap::new());

/// `target` held everything received up to `at` (Unix seconds).
pub(crate) fn caught_up_at(target: &str, at: i64) {
    let mut m = CAUGHT_UP.lock().unwrap_or_else(|e| e.into_inner());
    let e = m.entry(target.to_owned()).or_insert(at);
    *e = (*e).max(at);
}

/// Each target's last caught-up moment (Unix seconds), by target name.
pub fn caught_up() -> Vec<(String, i64)> {
    let m = CAUGHT_UP.lock().unwrap_or_else(|e| e.into_inner());
    m.iter().map(|(k, v)| (k.clone(), *v)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_moment_per_target_is_kept() {
        caught_up_at("freshness-test-a", 100);
        caught_up_at("freshness-test-a", 90);
        caught_up_at("freshness-test-b", 50);
        let all = caught_up();
        assert!(all.contains(&("freshness-test-a".into(), 100)), "{all:?}");
        assert!(all.contains(&("freshness-test-b".into(), 50)), "{all:?}");
    }
}
