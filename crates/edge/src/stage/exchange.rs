//! 6 Odoo's side of one request, on a task of its own.
//!
//! A client that hangs up (HTTP/1) or resets its stream (HTTP/2) drops the
//! request's future; if the call to Odoo lived in that future, the slot
//! went with it while Odoo's worker was still busy with the request. Odoo
//! never notices a closed socket until it writes its answer, so a loop of
//! "send, hang up" piled work into Odoo's own accept queue, outside the
//! worker cap and the fair queues (red team 3: another user's login from
//! 169 ms to 3.3 s with one address). And a password check whose client
//! left was never counted.
//!
//! So the call runs on a spawned task that owns the slot and the pending
//! check. The request's future only waits for the answer; if nobody is
//! left to take it, the task reads Odoo's answer away (so the worker is
//! done), tells the guard the check's verdict from it, and only then frees
//! the slot.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use rampart_guard::{self as guard, LoginAttempt};
use tokio::sync::oneshot;

use crate::body::{self, Body};
use crate::upstream::Lease;

/// Odoo's answer (or why there is none), with the slot and the check.
pub struct Exchanged {
    /// Odoo's answer, or the HTTP client's error.
    pub res: Result<Response<Incoming>, hyper_util::client::legacy::Error>,
    /// The upstream slot, held until the answer is done.
    pub lease: Lease,
    /// The login check in progress, when the request is one.
    pub attempt: Option<LoginAttempt>,
}

/// Sends `req` to Odoo on a task of its own; `None` when Odoo gave no
/// answer within `timeout` (the task then frees the slot, and a check in
/// flight is counted as failed: Odoo may have checked it).
pub async fn send(
    client: &Client<HttpConnector, Body>,
    req: Request<Body>,
    lease: Lease,
    attempt: Option<LoginAttempt>,
    timeout: Duration,
) -> Option<Exchanged> {
    let (tx, rx) = oneshot::channel();
    let call = client.request(req);
    tokio::spawn(async move {
        let Ok(res) = tokio::time::timeout(timeout, call).await else {
            if let Some(a) = attempt {
                a.finish(guard::LoginOutcome::Failure);
            }
            let _ = tx.send(None);
            return;
        };
        let x = Exchanged {
            res,
            lease,
            attempt,
        };
        if let Err(Some(left)) = tx.send(Some(x)) {
            abandoned(left, timeout).await;
        }
    });
    rx.await.ok().flatten()
}

/// Nobody waits for this answer any more: read it away, judge the check
/// from it, then free the slot.
async fn abandoned(x: Exchanged, idle: Duration) {
    let Exchanged {
        res,
        lease,
        attempt,
    } = x;
    let Ok(res) = res else {
        // Odoo was not reached, or broke off: the guard's own rule for an
        // unknown outcome applies when the attempt is dropped.
        return;
    };
    let (parts, mut b) = res.into_parts();
    let keep = match attempt.as_ref().map(|a| guard::answer_read(a.route())) {
        Some(guard::AnswerRead::Body) => LOGIN_ANSWER_MAX,
        Some(guard::AnswerRead::Prefix) => body::PREFIX_MAX,
        Some(guard::AnswerRead::Status) | None => 0,
    };
    let mut kept = BytesMut::new();
    let mut whole = true;
    loop {
        match tokio::time::timeout(idle, b.frame()).await {
            Ok(Some(Ok(f))) => {
                if let Ok(d) = f.into_data() {
                    keep_prefix(&mut kept, &d, keep);
                }
            }
            Ok(None) => break,
            Ok(Some(Err(_))) | Err(_) => {
                whole = false;
                break;
            }
        }
    }
    drop(b);
    drop(lease);
    tracing::info!(
        status = parts.status.as_u16(),
        whole,
        "the client left before Odoo answered: its answer was read away"
    );
    if let Some(a) = attempt {
        let route = a.route();
        let complete = whole || !matches!(guard::answer_read(route), guard::AnswerRead::Body);
        let outcome = if complete {
            guard::login_outcome(route, parts.status.as_u16(), &parts.headers, &kept)
        } else {
            // Odoo checked it, and its verdict cannot be read: fail closed.
            guard::LoginOutcome::Failure
        };
        a.finish(outcome);
    }
}

fn keep_prefix(kept: &mut BytesMut, d: &Bytes, max: usize) {
    let room = max.saturating_sub(kept.len());
    kept.extend_from_slice(&d[..d.len().min(room)]);
}

/// Odoo's answers to login calls are a few hundred bytes.
pub const LOGIN_ANSWER_MAX: usize = 1024 * 1024;
