use super::*;
use std::net::IpAddr;

fn net(s: &str) -> IpNet {
    parse_ban_target(s).unwrap()
}

#[test]
fn round_trip_through_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let now = SystemTime::now();
    let t = BanTable::open(dir.path(), 100).unwrap();
    assert!(t.list(now).is_empty(), "missing file = no bans");
    t.insert(
        net("203.0.113.7"),
        now + Duration::from_secs(900),
        "10 failed logins in 1m".into(),
        now,
    )
    .unwrap();
    t.insert(
        net("2001:db8:1:2::/64"),
        now + Duration::from_secs(60),
        "x".into(),
        now,
    )
    .unwrap();
    t.flush().unwrap();
    let again = BanTable::open(dir.path(), 100).unwrap();
    assert_eq!(again.list(now), t.list(now));
    let ips: Vec<IpAddr> = vec!["203.0.113.7".parse().unwrap()];
    assert!(again.active_until(&[IpNet::from(ips[0])], now).is_some());
    let text = std::fs::read_to_string(dir.path().join("bans.json")).unwrap();
    assert!(text.contains("\"2001:db8:1:2::/64\""), "{text}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("bans.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn corrupt_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bans.json");
    std::fs::write(
        &path,
        "{\"version\": 1, \"bans\": [ {\"addr\": \"203.0.113.7\",\n",
    )
    .unwrap();
    let err = BanTable::open(dir.path(), 100)
        .err()
        .expect("corrupt file must not load");
    let shown = err.to_string();
    assert!(shown.contains(&path.display().to_string()), "{shown}");
    assert!(shown.contains("line 2"), "{shown}");
    // Valid JSON, bad address.
    std::fs::write(&path, r#"{"version":1,"bans":[{"addr":"nope","until":"2030-01-01T00:00:00Z","reason":"","count":1}]}"#)
        .unwrap();
    let shown = BanTable::open(dir.path(), 100).err().unwrap().to_string();
    assert!(
        shown.contains("bans[0]") && shown.contains("nope"),
        "{shown}"
    );
    // The corrupt file is left for the administrator, not replaced.
    assert!(std::fs::read_to_string(&path).unwrap().contains("nope"));
}

#[test]
fn expiry_is_reported_once_and_history_is_remembered() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = SystemTime::now();
    let t = BanTable::open(dir.path(), 100).unwrap();
    let n = net("198.51.100.1");
    t.insert(n, t0 + Duration::from_secs(10), "r".into(), t0)
        .unwrap();
    assert!(
        t.insert(n, t0 + Duration::from_secs(99), "again".into(), t0)
            .is_none(),
        "already banned"
    );
    assert!(t.expire(t0 + Duration::from_secs(5)).is_empty());
    let later = t0 + Duration::from_secs(11);
    assert_eq!(t.expire(later), vec![n]);
    assert!(t.expire(later).is_empty(), "logged once");
    assert!(t.active_until(&[n], later).is_none());
    assert!(t.list(later).is_empty());
    assert_eq!(t.previous_count(&n), 1, "remembered for the repeat factor");
    t.expire(t0 + REMEMBER + Duration::from_secs(11));
    assert_eq!(t.previous_count(&n), 0, "forgotten after a week");
}

#[test]
fn cap_drops_soonest_ending_bans() {
    let dir = tempfile::tempdir().unwrap();
    let now = SystemTime::now();
    let t = BanTable::open(dir.path(), 100).unwrap();
    for i in 0..1000u32 {
        let n = IpNet::from(IpAddr::V4(i.into()));
        t.insert(n, now + Duration::from_secs(60 + i as u64), "r".into(), now);
        assert!(t.active_count(now) <= 100);
    }
    // The longest ban survives.
    assert!(
        t.active_until(&[IpNet::from(IpAddr::V4(999u32.into()))], now)
            .is_some()
    );
}

#[test]
fn an_unreadable_table_is_an_error_not_an_empty_one() {
    // A read error other than "absent" (here: a directory in its place)
    // must not start the guard with every attacker freed.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("bans.json")).unwrap();
    let err = BanTable::open(dir.path(), 100)
        .err()
        .expect("an unreadable table must not load as empty");
    assert!(err.to_string().contains("bans.json"), "{err}");
}

#[test]
fn after_a_restart_each_ban_end_is_logged_once() {
    let dir = tempfile::tempdir().unwrap();
    let now = SystemTime::now();
    let (ended, active) = (net("198.51.100.7"), net("198.51.100.8"));
    {
        let t = BanTable::open(dir.path(), 100).unwrap();
        t.set(ended, now - Duration::from_secs(60), "r".into(), now);
        t.set(active, now + Duration::from_secs(3600), "r".into(), now);
        assert_eq!(t.expire(now), vec![ended]);
        t.save().unwrap();
    }
    let t = BanTable::open(dir.path(), 100).unwrap();
    let later = now + Duration::from_secs(7200);
    assert_eq!(
        t.expire(later),
        vec![active],
        "the ended one was logged before"
    );
    assert_eq!(t.previous_count(&ended), 1, "still remembered");
}

#[test]
fn bans_last_at_most_a_week_and_are_remembered_for_one() {
    assert_eq!(MAX_BAN, Duration::from_secs(7 * 86400));
    let dir = tempfile::tempdir().unwrap();
    let t0 = SystemTime::now();
    let t = BanTable::open(dir.path(), 100).unwrap();
    let n = net("192.0.2.77");
    t.insert(n, t0 + Duration::from_secs(900), "r".into(), t0);
    // Coming back three days after the ban ended still counts as a repeat.
    let back = t0 + Duration::from_secs(900 + 3 * 86400);
    t.expire(back);
    assert_eq!(t.previous_count(&n), 1);
    let again = t.insert(n, back + Duration::from_secs(900), "r".into(), back);
    assert_eq!(again.unwrap().count, 2);
}

#[test]
fn new_bans_under_the_cap_keep_every_repeat_offenders_history() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = SystemTime::now();
    let t = BanTable::open(dir.path(), 100).unwrap();
    let old = net("198.51.100.20");
    t.insert(old, t0 + Duration::from_secs(10), "r".into(), t0);
    let t1 = t0 + Duration::from_secs(20);
    assert_eq!(t.active_count(t1), 0, "served");
    // An automatic ban and an administrator's ban of others...
    t.insert(
        net("198.51.100.21"),
        t1 + Duration::from_secs(60),
        "r".into(),
        t1,
    );
    t.set(
        net("198.51.100.22"),
        t1 + Duration::from_secs(60),
        "admin".into(),
        t1,
    );
    assert_eq!(t.active_count(t1), 2);
    // ...leave the served one remembered as a repeat offender.
    assert_eq!(t.previous_count(&old), 1);
    // An administrator's ban of it is its second, and the next
    // automatic one its third (longer each time).
    assert_eq!(
        t.set(old, t1 + Duration::from_secs(5), "admin".into(), t1)
            .count,
        2
    );
    let t2 = t1 + Duration::from_secs(10);
    assert_eq!(t.active_count(t2), 2);
    let third = t.insert(old, t2 + Duration::from_secs(60), "r".into(), t2);
    assert_eq!(third.unwrap().count, 3);
}

#[test]
fn administrators_bans_stay_under_the_cap_too() {
    let dir = tempfile::tempdir().unwrap();
    let now = SystemTime::now();
    let t = BanTable::open(dir.path(), 4).unwrap();
    for i in 0..20u32 {
        let n = IpNet::from(IpAddr::V4(i.into()));
        t.set(
            n,
            now + Duration::from_secs(60 + i as u64),
            "admin".into(),
            now,
        );
        assert!(t.active_count(now) <= 4, "{} bans", t.active_count(now));
    }
    let last = IpNet::from(IpAddr::V4(19u32.into()));
    assert!(t.active_until(&[last], now).is_some(), "the longest stays");
}

#[test]
fn housekeeping_writes_the_file_only_when_the_table_changed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bans.json");
    let t0 = SystemTime::now();
    let t = BanTable::open(dir.path(), 100).unwrap();
    t.insert(
        net("203.0.113.30"),
        t0 + Duration::from_secs(10),
        "r".into(),
        t0,
    );
    t.flush().unwrap();
    assert!(
        std::fs::read_to_string(&path)
            .unwrap()
            .contains("203.0.113.30")
    );
    // Nothing changed: no write (a marker file is left alone).
    std::fs::write(&path, "marker").unwrap();
    t.expire(t0 + Duration::from_secs(5));
    t.flush().unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "marker");
    // A record past its memory is forgotten on disk as well.
    t.expire(t0 + REMEMBER + Duration::from_secs(11));
    t.flush().unwrap();
    assert!(
        !std::fs::read_to_string(&path)
            .unwrap()
            .contains("203.0.113.30")
    );
}

#[test]
fn a_full_table_drops_the_quarter_ending_soonest_and_a_ban_ends_at_its_time() {
    let dir = tempfile::tempdir().unwrap();
    let now = SystemTime::now();
    let t = BanTable::open(dir.path(), 8).unwrap();
    let n = |i: u32| IpNet::from(IpAddr::V4((0xcb00_7100 + i).into()));
    let until = |i: u32| now + Duration::from_secs(60 * (i as u64 + 1));
    for i in 0..9 {
        t.insert(n(i), until(i), "r".into(), now);
    }
    // Full at 8: the two ending soonest go (down to 6), then the 9th.
    assert_eq!(t.active_count(now), 7);
    for i in 0..2 {
        assert_eq!(t.active_until(&[n(i)], now), None, "{i} ends soonest");
    }
    for i in 2..9 {
        assert_eq!(t.active_until(&[n(i)], now), Some(until(i)), "{i} kept");
    }
    // A ban is over at its end time, not a moment later.
    assert_eq!(t.active_until(&[n(2)], until(2)), None);
}
