//! 4 and 8 login bookkeeping: the guard's admission as an answer, RPC
//! bodies read with the guard's parsers off the async threads, and the
//! verdict of a password check read back from Odoo's answer.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use http_body_util::BodyExt;
use rampart_guard::{self as guard, Admission, LoginAttempt};

use crate::body::{self, Body};
use crate::pages;
use crate::stage::exchange;

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
    static READERS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    let readers = READERS.get_or_init(|| tokio::sync::Semaphore::new(2));
    let _permit = readers.acquire().await;
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

/// The decision when a reader panicked: refused, never waved through.
pub(crate) fn unreadable() -> guard::Decision {
    guard::Decision {
        refuse: Some("the request body could not be read"),
        ..guard::Decision::default()
    }
}

/// Bodies up to this size are classified on the request's own task.
pub(crate) const CLASSIFY_INLINE: usize = 64 * 1024;

/// The guard's refusal as a response: 403 when banned, 429 with
/// Retry-After when over the rate.
pub(crate) fn refuse(a: Admission) -> Option<Response<Body>> {
    match a {
        Admission::Admitted => None,
        Admission::Banned { .. } => Some(pages::error(
            StatusCode::FORBIDDEN,
            "Access from your address is blocked for a while after too many failed attempts.",
        )),
        limited @ Admission::Limited { .. } => {
            let secs = limited.retry_after_secs().unwrap_or(1).max(1);
            let mut r = pages::error(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many requests: please slow down.",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            Some(r)
        }
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
) -> Response<Body> {
    let route = attempt.route();
    match guard::answer_read(route) {
        guard::AnswerRead::Status => {
            let outcome = guard::login_outcome(route, res.status().as_u16(), res.headers(), b"");
            attempt.finish_answer(outcome, res.headers());
            res
        }
        // Judged as the buffer drains Odoo's answer (`proxy`).
        guard::AnswerRead::Prefix => {
            drop(attempt);
            res
        }
        guard::AnswerRead::Body => {
            let (parts, b) = res.into_parts();
            let bytes = match tokio::time::timeout(timeout, read_small(b)).await {
                Ok(Some(bytes)) => bytes,
                _ => {
                    drop(attempt);
                    return pages::error(
                        StatusCode::BAD_GATEWAY,
                        "Odoo's answer to a login could not be read.",
                    );
                }
            };
            let outcome =
                guard::login_outcome(route, parts.status.as_u16(), &parts.headers, &bytes);
            attempt.finish_answer(outcome, &parts.headers);
            Response::from_parts(parts, body::full(bytes))
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
