//! Every answer Rampart makes itself instead of Odoo's, in one enum: its
//! status, the page's message, a Retry-After where waiting helps, and the
//! short `reason=` the access log writes. Stages return
//! `Result<_, Refusal>` and use `?`; the pipeline turns the refusal into a
//! page once (`pages::error`), so no stage builds an error response, and a
//! reader finds every refusal, and what the client is told, here.

use std::borrow::Cow;

use http::{HeaderValue, Response, StatusCode, header};
use rampart_guard::Admission;

use crate::body::Body;
use crate::pages;

/// An answer Rampart gives instead of Odoo's, and why.
#[derive(Debug)]
pub enum Refusal {
    /// 400: the connection's HTTP/1 framing could not be followed (CL + TE, ...).
    AmbiguousFraming,
    /// 400: a framing header (stage/normalize.rs), with its reason.
    Framing(&'static str),
    /// 400: a header werkzeug and Rampart could read differently.
    Header(&'static str),
    /// 400: a target other than OPTIONS with `*`.
    Asterisk,
    /// 400: a path werkzeug and Rampart could read differently.
    Path(&'static str),
    /// 400: no Host, or one that is not a host name.
    Host,
    /// 400: no Host left to send upstream.
    NoHost,
    /// 400: the target does not make an upstream URI.
    Target,
    /// 421: no site serves this host name.
    UnknownHost,
    /// 421: the host is not the site whose certificate the handshake presented.
    WrongCertificate,
    /// 403: the guard bans this address.
    Banned,
    /// 429: over the request rate.
    RateLimited {
        /// Seconds to wait, for Retry-After.
        retry_after: u64,
    },
    /// 302 to /web/login: the database manager from an address not allowed
    /// (302, not 303: the redirect hardening checklists accept, and
    /// browsers follow either with a GET).
    DatabaseManager,
    /// 403: the database service from an address not allowed.
    DatabaseService,
    /// 404: an HTTP-01 token that is not pending.
    NoAcmeChallenge,
    /// 404: paths Odoo serves only to itself.
    Internal,
    /// 400: the guard refused an RPC body (unreadable, ambiguous).
    RpcBody(&'static str),
    /// 503: too many large bodies read for the guard at once for this address.
    InspectBusy,
    /// 403: this account's logins are locked.
    LoginLocked,
    /// 403: this address's logins are over their failure budget.
    LoginsBanned,
    /// 403: this address's password checks (RPC) are over their budget.
    ChecksBanned,
    /// 429: too many password checks in flight from this address.
    ChecksBusy,
    /// 413: the body is larger than `max_body`.
    BodyTooLarge(u64),
    /// 408: the body stopped arriving.
    BodyTimeout,
    /// 408: the body arrived below the minimum rate.
    BodyTooSlow,
    /// 400: the body's framing or encoding is broken.
    BodyMalformed(String),
    /// 507: the spool is full.
    SpoolFull,
    /// 503: the spool could not store the body.
    SpoolError,
    /// 503: every Odoo slot stayed taken for `queue_timeout`.
    QueueTimeout,
    /// 503: this client already holds its share of Odoo's slots.
    ClientCap,
    /// 504: Odoo did not answer within `timeout`.
    UpstreamTimeout,
    /// 502: Odoo refused or dropped the connection.
    UpstreamUnreachable,
    /// 502: Odoo's answer to a login could not be read.
    LoginAnswer,
    /// 502: an X-Accel-Redirect that cannot be served.
    AccelUnservable,
    /// 404: an X-Accel-Redirect to a file missing from the filestore.
    AccelMissing,
    /// 503: this client holds its share of websockets.
    WebsocketClientCap,
    /// 503: every websocket slot stayed taken.
    WebsocketQueueTimeout,
    /// 504: the websocket worker did not answer in time.
    WebsocketTimeout,
    /// 502: the websocket worker is not answering.
    WebsocketUnreachable,
}

impl Refusal {
    /// The status the refusal is answered with.
    pub fn status(&self) -> StatusCode {
        use Refusal::*;
        match self {
            AmbiguousFraming | Framing(_) | Header(_) | Asterisk | Path(_) | Host | NoHost
            | Target | RpcBody(_) | BodyMalformed(_) => StatusCode::BAD_REQUEST,
            UnknownHost | WrongCertificate => StatusCode::MISDIRECTED_REQUEST,
            Banned | DatabaseService | LoginLocked | LoginsBanned | ChecksBanned => {
                StatusCode::FORBIDDEN
            }
            RateLimited { .. } | ChecksBusy => StatusCode::TOO_MANY_REQUESTS,
            DatabaseManager => StatusCode::FOUND,
            Internal | NoAcmeChallenge | AccelMissing => StatusCode::NOT_FOUND,
            BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            BodyTimeout | BodyTooSlow => StatusCode::REQUEST_TIMEOUT,
            SpoolFull => StatusCode::INSUFFICIENT_STORAGE,
            InspectBusy
            | SpoolError
            | QueueTimeout
            | ClientCap
            | WebsocketClientCap
            | WebsocketQueueTimeout => StatusCode::SERVICE_UNAVAILABLE,
            UpstreamTimeout | WebsocketTimeout => StatusCode::GATEWAY_TIMEOUT,
            UpstreamUnreachable | LoginAnswer | AccelUnservable | WebsocketUnreachable => {
                StatusCode::BAD_GATEWAY
            }
        }
    }

    /// What the page tells the client.
    pub fn message(&self) -> Cow<'static, str> {
        use Refusal::*;
        Cow::Borrowed(match self {
            AmbiguousFraming => {
                "Bad request: ambiguous framing (Content-Length together with Transfer-Encoding, or a connection that could not be followed)."
            }
            Framing(why) | Header(why) | Path(why) | RpcBody(why) => {
                return Cow::Owned(format!("Bad request: {why}."));
            }
            Asterisk => "Bad request: the target * is only for OPTIONS.",
            Host => "Bad request: missing or invalid Host header.",
            NoHost => "Bad request: missing Host header.",
            Target => "Bad request: invalid request target.",
            UnknownHost => "This server does not serve that host name.",
            WrongCertificate => {
                "The host name does not match the one this connection was opened for."
            }
            Banned => {
                "Access from your address is blocked for a while after too many failed attempts."
            }
            RateLimited { .. } => "Too many requests: please slow down.",
            DatabaseManager => "",
            DatabaseService => "The database service is not available from this address.",
            Internal => "Not found.",
            NoAcmeChallenge => "No such ACME challenge.",
            InspectBusy => {
                "Too many large requests in progress from your address: retry in a moment."
            }
            LoginLocked => {
                "Too many failed logins for this account: try again later, or from where you logged in before."
            }
            LoginsBanned => "Too many failed logins from your address: try again later.",
            ChecksBanned => "Too many failed password checks from your address: try again later.",
            ChecksBusy => {
                "Too many password checks in flight from your address: retry in a moment."
            }
            BodyTooLarge(limit) => {
                return Cow::Owned(format!(
                    "The request body is larger than this site accepts ({}). Administrators: raise max_body in rampart.toml.",
                    rampart_config::ByteSize(*limit)
                ));
            }
            BodyTimeout => "The request body did not arrive in time.",
            BodyTooSlow => "The request body arrived too slowly.",
            BodyMalformed(why) => return Cow::Owned(format!("Bad request body: {why}.")),
            SpoolFull => {
                "The request body could not be stored: the server's spool is full. Nothing was sent to Odoo."
            }
            SpoolError => {
                "The request body could not be stored (spool error). Nothing was sent to Odoo."
            }
            QueueTimeout => "Odoo is busy: every worker is taken. Please try again in a moment.",
            ClientCap => {
                "Too many requests from your address are already in progress. Please try again in a moment."
            }
            UpstreamTimeout => {
                "Odoo did not answer in time. A long report or import may still be running."
            }
            UpstreamUnreachable => {
                "Odoo is not answering. The server may be starting or stopped; please try again shortly."
            }
            LoginAnswer => "Odoo's answer to a login could not be read.",
            AccelUnservable => "The download could not be served.",
            AccelMissing => "The file is missing.",
            WebsocketClientCap => "Too many open websockets from your address.",
            WebsocketQueueTimeout => "Too many open websockets.",
            WebsocketTimeout => "Odoo's websocket worker did not answer in time.",
            WebsocketUnreachable => {
                "Odoo's websocket worker is not answering (is gevent_port running?)."
            }
        })
    }

    /// Seconds for Retry-After, where waiting is the remedy.
    pub fn retry_after(&self) -> Option<u64> {
        use Refusal::*;
        match self {
            RateLimited { retry_after } => Some(*retry_after),
            InspectBusy | ChecksBusy => Some(1),
            QueueTimeout | ClientCap | WebsocketClientCap | WebsocketQueueTimeout => Some(5),
            SpoolError => Some(30),
            _ => None,
        }
    }

    /// The access log's `reason=`: one word a log filter can match.
    pub fn reason(&self) -> &'static str {
        use Refusal::*;
        match self {
            AmbiguousFraming | Framing(_) => "framing",
            Header(_) => "header",
            Asterisk => "asterisk",
            Path(_) => "path",
            Host | NoHost => "host",
            Target => "target",
            UnknownHost => "unknown-host",
            WrongCertificate => "wrong-certificate",
            Banned => "banned",
            RateLimited { .. } => "rate-limited",
            DatabaseManager => "database-manager",
            DatabaseService => "database-service",
            Internal => "internal",
            NoAcmeChallenge => "acme-unknown-token",
            RpcBody(_) => "rpc-body",
            InspectBusy => "inspect-busy",
            LoginLocked => "login-locked",
            LoginsBanned => "logins-banned",
            ChecksBanned => "checks-banned",
            ChecksBusy => "checks-busy",
            BodyTooLarge(_) => "body-too-large",
            BodyTimeout => "body-timeout",
            BodyTooSlow => "body-too-slow",
            BodyMalformed(_) => "body-malformed",
            SpoolFull => "spool-full",
            SpoolError => "spool-error",
            QueueTimeout => "queue-timeout",
            ClientCap => "client-cap",
            UpstreamTimeout => "upstream-timeout",
            UpstreamUnreachable => "upstream-unreachable",
            LoginAnswer => "login-answer",
            AccelUnservable => "accel-unservable",
            AccelMissing => "accel-missing",
            WebsocketClientCap => "websocket-client-cap",
            WebsocketQueueTimeout => "websocket-queue-timeout",
            WebsocketTimeout => "websocket-timeout",
            WebsocketUnreachable => "websocket-unreachable",
        }
    }

    /// The page (or, for the database manager, the redirect).
    pub fn response(&self) -> Response<Body> {
        if let Refusal::DatabaseManager = self {
            return pages::redirect(self.status(), "/web/login");
        }
        let mut r = pages::error(self.status(), &self.message());
        if let Some(secs) = self.retry_after() {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        r
    }

    /// The guard's word on a request or login: banned or over the rate.
    pub fn admit(a: Admission) -> Result<(), Refusal> {
        match a {
            Admission::Admitted => Ok(()),
            Admission::Banned { .. } => Err(Refusal::Banned),
            limited @ Admission::Limited { .. } => Err(Refusal::RateLimited {
                retry_after: limited.retry_after_secs().unwrap_or(1).max(1),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use http_body_util::BodyExt;

    use crate::stage::request_body::BodyError;

    use super::*;

    async fn page(r: &Refusal) -> (Response<()>, String) {
        let (parts, body) = r.response().into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        (
            Response::from_parts(parts, ()),
            String::from_utf8(bytes.to_vec()).unwrap(),
        )
    }

    #[tokio::test]
    async fn a_refusal_is_a_page_with_its_status_message_and_retry_after() {
        let (res, html) = page(&Refusal::RateLimited { retry_after: 7 }).await;
        assert_eq!(res.status(), 429);
        assert_eq!(res.headers()[header::RETRY_AFTER], "7");
        assert_eq!(res.headers()[header::CACHE_CONTROL], "no-store");
        assert!(
            html.contains("Too many requests: please slow down."),
            "{html}"
        );

        let (res, html) = page(&Refusal::BodyTooLarge(1024 * 1024)).await;
        assert_eq!(res.status(), 413);
        assert!(res.headers().get(header::RETRY_AFTER).is_none());
        assert!(html.contains("raise max_body"), "{html}");

        let (res, _) = page(&Refusal::SpoolError).await;
        assert_eq!(res.status(), 503);
        assert_eq!(res.headers()[header::RETRY_AFTER], "30");

        let (res, html) = page(&Refusal::Header("a <b> & c")).await;
        assert_eq!(res.status(), 400);
        assert!(html.contains("Bad request: a &lt;b&gt; &amp; c."), "{html}");
    }

    #[tokio::test]
    async fn the_database_manager_is_sent_to_the_login_page() {
        let (res, body) = page(&Refusal::DatabaseManager).await;
        assert_eq!(res.status(), 302);
        assert_eq!(res.headers()[header::LOCATION], "/web/login");
        assert_eq!(res.headers()[header::CONTENT_LENGTH], "0");
        assert_eq!(body, "");
    }

    #[test]
    fn the_guard_s_word_becomes_403_or_429() {
        assert!(Refusal::admit(Admission::Admitted).is_ok());
        let banned = Admission::Banned {
            until: SystemTime::now() + Duration::from_secs(60),
        };
        assert!(matches!(Refusal::admit(banned), Err(Refusal::Banned)));
        // Never "retry after 0 seconds".
        let soon = Admission::Limited {
            retry_after: Duration::from_millis(10),
        };
        match Refusal::admit(soon) {
            Err(r @ Refusal::RateLimited { .. }) => assert_eq!(r.retry_after(), Some(1)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn body_errors_keep_their_answers() {
        let io = || std::io::Error::other("disk");
        let cases = [
            (BodyError::TooLarge(10), 413),
            (BodyError::Timeout, 408),
            (BodyError::TooSlow, 408),
            (
                BodyError::Spool {
                    full: true,
                    source: io(),
                },
                507,
            ),
            (
                BodyError::Spool {
                    full: false,
                    source: io(),
                },
                503,
            ),
        ];
        for (e, status) in cases {
            assert_eq!(Refusal::from(e).status(), status);
        }
    }

    #[test]
    fn reasons_are_one_word_a_log_filter_can_match() {
        use Refusal::*;
        let all = [
            AmbiguousFraming,
            Framing("x"),
            Header("x"),
            Asterisk,
            Path("x"),
            Host,
            NoHost,
            Target,
            UnknownHost,
            WrongCertificate,
            Banned,
            RateLimited { retry_after: 1 },
            DatabaseManager,
            DatabaseService,
            Internal,
            NoAcmeChallenge,
            RpcBody("x"),
            InspectBusy,
            LoginLocked,
            LoginsBanned,
            ChecksBanned,
            ChecksBusy,
            BodyTooLarge(1),
            BodyTimeout,
            BodyTooSlow,
            BodyMalformed("x".into()),
            SpoolFull,
            SpoolError,
            QueueTimeout,
            ClientCap,
            UpstreamTimeout,
            UpstreamUnreachable,
            LoginAnswer,
            AccelUnservable,
            AccelMissing,
            WebsocketClientCap,
            WebsocketQueueTimeout,
            WebsocketTimeout,
            WebsocketUnreachable,
        ];
        for r in &all {
            let reason = r.reason();
            assert!(
                !reason.is_empty() && reason.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'),
                "{r:?}: {reason:?}"
            );
            // Rampart's own answers are never 2xx.
            assert!(!r.status().is_success(), "{r:?}");
            // Every page but the redirect says something.
            assert_eq!(
                r.message().is_empty(),
                matches!(r, DatabaseManager),
                "{r:?}"
            );
        }
    }
}
