//! 5 and 8 login bookkeeping: RPC bodies received and read with the
//! guard's parsers (large ones off the async threads), the guard's slot
//! for a password check, and the check's verdict read back from Odoo's
//! answer.

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, Method, Response, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use rampart_guard::{self as guard, Guard, LoginAttempt};

use crate::body::{self, Body};
use crate::refusal::Refusal;
use crate::spool::Spool;
use crate::stage::exchange;
use crate::stage::inspect_budget::{self, Loaded};
use crate::stage::request_body::{self, BodyError, Received};

/// Reads an RPC body with the guard's parsers; a large one on the blocking
/// pool (a few at a time), so its parse does not stall the async threads
/// that carry every other connection. A reader that panics fails closed.
pub(crate) async fn classify_off_thread(
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> guard::Decision {
    // Small bodies (the web client's calls, logins) cost microseconds:
    // read in place, not queued behind a large body's parse.
    if body.len() <= CLASSIFY_INLINE {
        let read = || guard::classify(method, path, headers, Some(body));
        return std::panic::catch_unwind(std::panic::AssertUnwindSafe(read))
            .unwrap_or_else(|_| unreadable());
    }
    let _permit = readers().acquire().await;
    let (m, p, h, b) = (
        method.clone(),
        path.to_string(),
        headers.clone(),
        body.clone(),
    );
    tokio::task::spawn_blocking(move || guard::classify(&m, &p, &h, Some(&b)))
        .await
        .unwrap_or_else(|_| unreadable())
}

/// The blocking-pool readers of large request bodies: a few at a time.
fn readers() -> &'static tokio::sync::Semaphore {
    static READERS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    READERS.get_or_init(|| tokio::sync::Semaphore::new(2))
}

/// The login name of a `/web/login` form, for the per-login budget; a
/// large body read on the blocking pool like a large RPC body (8 MB of
/// `login=İİ…` took ~0.13 s of an async thread). None when a reader
/// panicked: the address's budget, always safe.
async fn form_login_off_thread(parts: &Parts, body: &Bytes) -> Option<String> {
    let ct = parts
        .headers
        .get(header::CONTENT_TYPE)
        .map(|v| v.as_bytes());
    if body.len() <= CLASSIFY_INLINE {
        return guard::form_login(parts.uri.query(), ct, body);
    }
    let _permit = readers().acquire().await;
    let query = parts.uri.query().map(str::to_string);
    let (ct, body) = (ct.map(<[u8]>::to_vec), body.clone());
    tokio::task::spawn_blocking(move || guard::form_login(query.as_deref(), ct.as_deref(), &body))
        .await
        .unwrap_or(None)
}

/// The decision when a reader panicked: refused, never waved through.
pub(crate) fn unreadable() -> guard::Decision {
    guard::Decision {
        refuse: Some("the request body could not be read"),
        ..guard::Decision::default()
    }
}

/// Bodies up to this size are classified on the request's own task.
pub(crate) const CLASSIFY_INLINE: usize = 64 * 1024;

/// What the guard needs from a request whose body it reads (RPC calls,
/// login forms): the body received whole like any upload (memory, then the
/// spool, at the minimum pace), its first `INSPECT` bytes loaded within the
/// address's inspection budget, and the guard's decision on them.
pub(crate) async fn read_for_guard(
    incoming: Incoming,
    parts: &Parts,
    lower: &str,
    limits: request_body::Limits,
    spool: &Arc<Spool>,
    client: IpAddr,
) -> Result<(Received, guard::Decision, Option<Loaded>), Refusal> {
    let received = request_body::receive(incoming, &parts.headers, limits, spool, client).await?;
    let (decision, loaded) = match inspect_budget::load(&received, client, INSPECT).await {
        Ok(Some(loaded)) => {
            let d = classify_off_thread(&parts.method, lower, &parts.headers, &loaded.bytes).await;
            (d, Some(loaded))
        }
        // Too large to read here (an attachment sent through
        // execute_kw): judged unreadable, so it fails closed.
        Ok(None) => (
            guard::classify(&parts.method, lower, &parts.headers, None),
            None,
        ),
        Err(inspect_budget::LoadError::Busy) => return Err(Refusal::InspectBusy),
        Err(inspect_budget::LoadError::Io(e)) => {
            return Err(BodyError::Spool {
                full: false,
                source: e,
            }
            .into());
        }
    };
    Ok((received, decision, loaded))
}

/// RPC bodies up to this size are read whole to find the `db` service,
/// login calls and object calls' credentials.
const INSPECT: usize = 8 * 1024 * 1024;

/// 8 login: takes the guard's slot for a password check (held while the
/// check is in flight), after the login rate for logins. `None` when the
/// request checks no secret. With `[cluster]` the attempt is also
/// reserved in PostgreSQL (one round trip, logins and checks only).
pub(crate) async fn begin(
    g: &Guard,
    client: IpAddr,
    decision: guard::Decision,
    loaded: Option<&Loaded>,
    parts: &Parts,
) -> Result<Option<LoginAttempt>, Refusal> {
    let Some(check) = decision.check else {
        return Ok(None);
    };
    let login = match (decision.login, loaded) {
        (Some(login), _) => Some(login),
        (None, Some(l)) if check == guard::LoginRoute::WebLogin => {
            form_login_off_thread(parts, &l.bytes).await
        }
        _ => None,
    };
    if check.is_login() {
        Refusal::admit(g.admit_login(client, login.as_deref()))?;
    }
    g.begin_check_shared(client, check, decision.proof, login.as_deref())
        .await
        .map(Some)
        .map_err(|r| check_refused(r, check.is_login()))
}

/// A login over budget is refused as before; other checks in flight (an
/// integration's burst) are told to retry in a moment.
fn check_refused(r: guard::Refused, is_login: bool) -> Refusal {
    match r {
        guard::Refused::LoginLocked => Refusal::LoginLocked,
        guard::Refused::Banned | guard::Refused::Busy if is_login => Refusal::LoginsBanned,
        guard::Refused::Banned => Refusal::ChecksBanned,
        guard::Refused::Busy => Refusal::ChecksBusy,
    }
}

/// 8: reads the verdict of a check from Odoo's answer and tells the
/// guard: the status for forms, the (small) body of RPC logins (read and
/// passed on unchanged). The first KiB of answers that may be large
/// (`object` calls, database forms) is judged in `proxy`, on Odoo's side.
pub(crate) async fn login_outcome(
    attempt: LoginAttempt,
    res: Response<Body>,
    timeout: std::time::Duration,
) -> Result<Response<Body>, Refusal> {
    let route = attempt.route();
    match guard::answer_read(route) {
        guard::AnswerRead::Status => {
            let outcome = guard::login_outcome(route, res.status().as_u16(), res.headers(), b"");
            attempt.finish_answer(outcome, res.headers());
            Ok(res)
        }
        // Judged as the buffer drains Odoo's answer (`proxy`).
        guard::AnswerRead::Prefix => {
            drop(attempt);
            Ok(res)
        }
        guard::AnswerRead::Body => {
            let (parts, b) = res.into_parts();
            let bytes = match tokio::time::timeout(timeout, read_small(b)).await {
                Ok(Some(bytes)) => bytes,
                _ => {
                    drop(attempt);
                    return Err(Refusal::LoginAnswer);
                }
            };
            let outcome =
                guard::login_outcome(route, parts.status.as_u16(), &parts.headers, &bytes);
            attempt.finish_answer(outcome, &parts.headers);
            Ok(Response::from_parts(parts, body::full(bytes)))
        }
    }
}

/// Reads a body of at most `exchange::LOGIN_ANSWER_MAX` bytes.
pub(crate) async fn read_small(mut b: Body) -> Option<Bytes> {
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = b.frame().await {
        if let Ok(data) = frame.ok()?.into_data() {
            buf.extend_from_slice(&data);
            if buf.len() > exchange::LOGIN_ANSWER_MAX {
                return None;
            }
        }
    }
    Some(buf.freeze())
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use http::StatusCode;
    use rampart_guard::{Admission, GuardConfig, LoginRoute};

    use super::*;

    const CLIENT: &str = "203.0.113.40";

    fn client() -> IpAddr {
        CLIENT.parse().unwrap()
    }

    fn max_failures() -> usize {
        GuardConfig::default().login_failures.max.get() as usize
    }

    fn answer(status: u16, text: impl Into<Bytes>) -> Response<Body> {
        let mut r = Response::new(body::full(text.into()));
        *r.status_mut() = StatusCode::from_u16(status).unwrap();
        r
    }

    fn banned(g: &Guard) -> bool {
        matches!(g.admit_request(client(), None), Admission::Banned { .. })
    }

    async fn check(g: &Guard, route: LoginRoute, res: Response<Body>) -> Result<Bytes, Refusal> {
        let attempt = g
            .begin_check_as(client(), route, None, None)
            .expect("a slot");
        let res = login_outcome(attempt, res, Duration::from_secs(5)).await?;
        Ok(res.into_body().collect().await.unwrap().to_bytes())
    }

    #[tokio::test]
    async fn a_form_login_is_judged_by_its_status() {
        let dir = tempfile::tempdir().unwrap();
        let g = Guard::open(&GuardConfig::default(), dir.path()).unwrap();
        for _ in 0..max_failures() {
            assert!(!banned(&g));
            // Odoo shows the form again: a failed login, passed on as it is.
            let body = check(&g, LoginRoute::WebLogin, answer(200, "<form>")).await;
            assert_eq!(body.unwrap(), "<form>");
        }
        assert!(banned(&g), "max failed logins ban the address");
    }

    #[tokio::test]
    async fn an_rpc_login_is_judged_by_its_body_passed_on_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let g = Guard::open(&GuardConfig::default(), dir.path()).unwrap();
        let denied = r#"{"jsonrpc": "2.0", "id": 1, "error": {"code": 200, "message": "Odoo Server Error", "data": {"name": "odoo.exceptions.AccessDenied"}}}"#;
        for _ in 0..max_failures() {
            assert!(!banned(&g));
            let body = check(&g, LoginRoute::SessionAuthenticate, answer(200, denied)).await;
            assert_eq!(body.unwrap(), denied);
        }
        assert!(banned(&g));
    }

    #[tokio::test]
    async fn an_rpc_login_answer_too_large_to_judge_is_a_502_and_no_verdict() {
        let dir = tempfile::tempdir().unwrap();
        let g = Guard::open(&GuardConfig::default(), dir.path()).unwrap();
        let huge = vec![b' '; exchange::LOGIN_ANSWER_MAX + 1];
        for _ in 0..max_failures() + 1 {
            let r = check(
                &g,
                LoginRoute::SessionAuthenticate,
                answer(200, huge.clone()),
            )
            .await;
            assert!(matches!(r, Err(Refusal::LoginAnswer)), "{r:?}");
        }
        assert!(
            !banned(&g),
            "an unread answer is neither a failure nor a success"
        );
    }

    #[test]
    fn logins_over_budget_are_403_other_checks_in_flight_429() {
        use guard::Refused::*;
        assert!(matches!(
            check_refused(LoginLocked, true),
            Refusal::LoginLocked
        ));
        assert!(matches!(
            check_refused(LoginLocked, false),
            Refusal::LoginLocked
        ));
        assert!(matches!(check_refused(Banned, true), Refusal::LoginsBanned));
        assert!(matches!(check_refused(Busy, true), Refusal::LoginsBanned));
        assert!(matches!(
            check_refused(Banned, false),
            Refusal::ChecksBanned
        ));
        assert!(matches!(check_refused(Busy, false), Refusal::ChecksBusy));
        assert_eq!(check_refused(Busy, false).status(), 429);
        assert_eq!(check_refused(Busy, true).status(), 403);
    }

    /// Whether reading a form of `body` let another task of a
    /// single-threaded runtime run (it did: read off the async thread).
    async fn others_ran_while_reading(body: Vec<u8>) -> (bool, Option<String>) {
        let ran = Arc::new(AtomicBool::new(false));
        let flag = ran.clone();
        tokio::spawn(async move { flag.store(true, Ordering::SeqCst) });
        let (parts, ()) = http::Request::post("/web/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(())
            .unwrap()
            .into_parts();
        let login = form_login_off_thread(&parts, &Bytes::from(body)).await;
        (ran.load(Ordering::SeqCst), login)
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_large_login_form_is_read_off_the_async_thread() {
        let mut big = b"csrf_token=x&login=Admin&password=".to_vec();
        big.resize(CLASSIFY_INLINE + 1, b'p');
        let (ran, login) = others_ran_while_reading(big).await;
        assert!(
            ran,
            "the async thread was held while the large form was read"
        );
        assert_eq!(login.as_deref(), Some("admin"));
        // A small one is read in place: nothing else runs meanwhile.
        let (ran, login) = others_ran_while_reading(b"login=Admin&password=x".to_vec()).await;
        assert!(!ran);
        assert_eq!(login.as_deref(), Some("admin"));
    }
}
