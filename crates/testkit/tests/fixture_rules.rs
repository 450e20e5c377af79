//! Odoo 18's rules the fixture enforces because a front can break them: the CSRF token bound to
//! the session (and the session read as werkzeug reads cookies), routing on the decoded path, the
//! TOTP step, Odoo 19's bearer API keys, JSON-RPC params read with `dict()`, attachment uploads.
//! The expected answers are what a real Odoo 18.0 sent to the same requests (curl, 2026-12-01).

use std::net::SocketAddr;
use std::time::Duration;

use rampart_testkit::{FixtureOptions, OdooFixture, raw_exchange};

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn session(&self) -> Option<String> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
            .find_map(|(_, v)| v.strip_prefix("session_id="))
            .map(|v| v.split(';').next().unwrap().to_string())
    }
}

async fn send(addr: SocketAddr, request: &[u8]) -> Answer {
    let raw = raw_exchange(addr, None, request, Duration::from_secs(20)).await;
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no head in {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.to_string(), v.trim().to_string())
        })
        .collect();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&raw[end + 4..]).into_owned(),
    }
}

async fn get(addr: SocketAddr, path: &str, extra: &str) -> Answer {
    send(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: erp.test\r\n{extra}\r\n").as_bytes(),
    )
    .await
}

async fn post_form(addr: SocketAddr, path: &str, form: &str, extra: &str) -> Answer {
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: erp.test\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n{extra}\r\n{form}",
        form.len()
    );
    send(addr, request.as_bytes()).await
}

fn token_in(html: &str) -> String {
    html.split(r#"name="csrf_token" value=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no csrf_token in:\n{html}"))
        .to_string()
}

/// GET /web/login as a browser does: (session id, CSRF token).
async fn login_form(addr: SocketAddr) -> (String, String) {
    let page = get(addr, "/web/login", "").await;
    assert_eq!(page.status, 200);
    (
        page.session().expect("the login page sets a session"),
        token_in(&page.body),
    )
}

const CSRF_400: &str = "<!doctype html>\n<html lang=en>\n<title>400 Bad Request</title>\n<h1>Bad Request</h1>\n<p>Session expired (invalid CSRF token)</p>\n";

#[tokio::test]
async fn login_post_needs_the_token_of_its_own_session() {
    let dir = std::env::temp_dir().join(format!("rampart-fixture-rules-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("odoo-csrf.log");
    let _ = std::fs::remove_file(&log);
    let odoo = OdooFixture::start_with(FixtureOptions {
        log_file: Some(log.clone()),
        ..Default::default()
    })
    .await;
    let addr = odoo.http_addr;
    let (sid, token) = login_form(addr).await;
    assert_eq!(
        sid.len(),
        84,
        "Odoo 18 session ids are 84 url-safe characters: {sid}"
    );
    let good = format!("csrf_token={token}&login=admin&password=admin");

    // No token at all: 400 before the password is looked at, no cookie.
    let none = post_form(
        addr,
        "/web/login",
        "login=admin&password=admin",
        &format!("Cookie: session_id={sid}\r\n"),
    )
    .await;
    assert_eq!((none.status, none.body.as_str()), (400, CSRF_400));
    assert!(none.header("set-cookie").is_none());
    // The token of another session.
    let (other_sid, _) = login_form(addr).await;
    let other = post_form(
        addr,
        "/web/login",
        &good,
        &format!("Cookie: session_id={other_sid}\r\n"),
    )
    .await;
    assert_eq!(other.status, 400);
    // No cookie: a new session, which the token was not made for.
    assert_eq!(post_form(addr, "/web/login", &good, "").await.status, 400);
    // The cookie split over two lines (as an HTTP/2 hop forwarded verbatim would): werkzeug joins
    // them with "," and the session is lost, whichever line comes first.
    for lines in [
        format!("Cookie: session_id={sid}\r\nCookie: tz=Europe/Brussels\r\n"),
        format!("Cookie: tz=Europe/Brussels\r\nCookie: session_id={sid}\r\n"),
    ] {
        let split = post_form(addr, "/web/login", &good, &lines).await;
        assert_eq!(split.status, 400, "{lines}");
    }
    // An expired token for the right session.
    let (hm, _) = token.rsplit_once('o').unwrap();
    let expired = post_form(
        addr,
        "/web/login",
        &format!("csrf_token={hm}o1700000000&login=admin&password=admin"),
        &format!("Cookie: session_id={sid}\r\n"),
    )
    .await;
    assert_eq!(expired.status, 400);
    // The same cookies joined into one line, as RFC 9113 section 8.2.3 says: logged in.
    let ok = post_form(
        addr,
        "/web/login",
        &good,
        &format!("Cookie: tz=Europe/Brussels; session_id={sid}\r\n"),
    )
    .await;
    assert_eq!(ok.status, 303, "{}", ok.body);
    assert_eq!(ok.header("location"), Some("/odoo"));
    assert_ne!(ok.session().expect("a rotated session"), sid);

    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains(
            "WARNING demo1 odoo.http: No CSRF validation token provided for path '/web/login'"
        ),
        "{text}"
    );
    assert!(
        text.contains("WARNING demo1 odoo.http: CSRF validation failed on path '/web/login'"),
        "{text}"
    );
    assert_eq!(text.matches("Login successful").count(), 1, "{text}");
    assert_eq!(
        text.matches("Login failed").count(),
        0,
        "refused posts never reach the password check:\n{text}"
    );
    std::fs::remove_file(&log).unwrap();
}

#[tokio::test]
async fn session_cookie_is_sent_only_for_a_new_session() {
    let odoo = OdooFixture::start().await;
    let (sid, _) = login_form(odoo.http_addr).await;
    let again = get(
        odoo.http_addr,
        "/web/login",
        &format!("Cookie: session_id={sid}\r\n"),
    )
    .await;
    assert_eq!(again.status, 200);
    assert!(
        again.header("set-cookie").is_none(),
        "a known session is not set again"
    );
    // Not 84 url-safe characters: Odoo ignores it and starts a new session.
    let short = get(odoo.http_addr, "/web/login", "Cookie: session_id=abc\r\n").await;
    let new = short.session().expect("a new session");
    assert!(new.len() == 84 && new != "abc");
}

#[tokio::test]
async fn routes_match_the_percent_decoded_path() {
    let odoo = OdooFixture::start().await;
    let manager = get(odoo.http_addr, "/web/%64atabase/manager", "").await;
    assert_eq!(manager.status, 200);
    assert!(manager.body.contains("UPSTREAM-REACHED database manager"));
    assert_eq!(
        get(odoo.http_addr, "/web/login/", "").await.status,
        200,
        "strict_slashes=False"
    );
    // `..` is not resolved after decoding: Odoo 18 answers 404 here (ODOO-FACTS).
    assert_eq!(
        get(
            odoo.http_addr,
            "/web/database/manager/..%2f..%2fmanager",
            ""
        )
        .await
        .status,
        404
    );
    let seen = odoo.requests();
    assert_eq!(seen[0].target, "/web/%64atabase/manager");
    assert_eq!(seen[0].path, "/web/database/manager");
    assert_eq!(odoo.count_path("/web/database/"), 2);
    assert_eq!(
        odoo.count("/web/database/"),
        1,
        "count() still looks at the raw target"
    );
}

#[tokio::test]
async fn totp_is_a_second_step_after_the_password() {
    let odoo = OdooFixture::start_with(FixtureOptions {
        totp_secret: Some(b"12345678901234567890".to_vec()),
        ..Default::default()
    })
    .await;
    let addr = odoo.http_addr;
    let (sid, token) = login_form(addr).await;
    let cookie = format!("Cookie: session_id={sid}\r\n");
    let first = post_form(
        addr,
        "/web/login",
        &format!("csrf_token={token}&login=admin&password=admin&redirect=%2Fodoo%2Fx"),
        &cookie,
    )
    .await;
    assert_eq!(first.status, 303);
    assert_eq!(
        first.header("location"),
        Some("/web/login/totp?redirect=%2Fodoo%2Fx")
    );
    assert_eq!(
        first.session().as_deref(),
        Some(sid.as_str()),
        "same session, sent again"
    );
    assert_eq!(
        get(addr, "/odoo", &cookie).await.status,
        303,
        "not logged in before the code"
    );

    let form = get(addr, "/web/login/totp?redirect=%2Fodoo%2Fx", &cookie).await;
    assert_eq!(form.status, 200);
    let token = token_in(&form.body);
    let code: u32 = odoo.totp_code().parse().unwrap();
    let wrong = format!("{:06}", (code + 500_000) % 1_000_000);
    let refused = post_form(
        addr,
        "/web/login/totp",
        &format!("csrf_token={token}&totp_token={wrong}&redirect=%2Fodoo%2Fx"),
        &cookie,
    )
    .await;
    assert_eq!(refused.status, 200);
    assert!(
        refused
            .body
            .contains("Verification failed, please double-check the 6-digit code")
    );
    let garbled = post_form(
        addr,
        "/web/login/totp",
        &format!("csrf_token={token}&totp_token=12ab56"),
        &cookie,
    )
    .await;
    assert!(garbled.body.contains("Invalid authentication code format."));
    let no_csrf = post_form(
        addr,
        "/web/login/totp",
        &format!("totp_token={code:06}"),
        &cookie,
    )
    .await;
    assert_eq!(no_csrf.status, 400);

    let ok = post_form(
        addr,
        "/web/login/totp",
        &format!(
            "csrf_token={token}&totp_token={}&redirect=%2Fodoo%2Fx",
            odoo.totp_code()
        ),
        &cookie,
    )
    .await;
    assert_eq!(ok.status, 303, "{}", ok.body);
    assert_eq!(ok.header("location"), Some("/odoo/x"));
    let logged_in = ok.session().expect("the session rotates");
    assert_ne!(logged_in, sid);
    assert_eq!(
        get(
            addr,
            "/odoo",
            &format!("Cookie: session_id={logged_in}\r\n")
        )
        .await
        .status,
        200
    );
    // Without a pending password step the form sends the user back to /web/login.
    let (fresh, _) = login_form(addr).await;
    let back = get(
        addr,
        "/web/login/totp",
        &format!("Cookie: session_id={fresh}\r\n"),
    )
    .await;
    assert_eq!(
        (back.status, back.header("location")),
        (303, Some("/web/login"))
    );
}

#[tokio::test]
async fn json2_needs_the_bearer_api_key_on_every_call() {
    let odoo = OdooFixture::start().await;
    let key = odoo.api_key().to_string();
    let call = |auth: String| {
        let addr = odoo.http_addr;
        async move {
            let body = r#"{"domain": []}"#;
            let request = format!(
                "POST /json/2/res.partner/search HTTP/1.1\r\nHost: erp.test\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\n\r\n{body}",
                body.len()
            );
            send(addr, request.as_bytes()).await
        }
    };
    assert_eq!(
        call(format!("Authorization: Bearer {key}\r\n"))
            .await
            .status,
        200
    );
    assert_eq!(
        call(format!("authorization: bearer   {key}\r\n"))
            .await
            .status,
        200
    );
    let wrong = call("Authorization: bearer not-the-key\r\n".into()).await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.body.contains("Invalid apikey"));
    assert_eq!(call(String::new()).await.status, 401);
    assert_eq!(
        call(format!("Authorization: Basic {key}\r\n")).await.status,
        401
    );
    // Two Authorization lines reach Odoo as one, joined by ",": not the key.
    assert_eq!(
        call(format!(
            "Authorization: bearer {key}\r\nAuthorization: bearer {key}\r\n"
        ))
        .await
        .status,
        401
    );
}

#[tokio::test]
async fn jsonrpc_params_are_read_with_dict_semantics() {
    let odoo = OdooFixture::start().await;
    for params in [
        r#"{"service": "db", "method": "list", "args": []}"#,
        r#"[["service", "db"], ["method", "list"], ["args", []]]"#,
        r#"{"service": "common", "service": "db", "method": "l\u0069st"}"#,
        // Python's json accepts what strict JSON parsers refuse.
        r#"{"service": "db", "method": "list", "x": NaN, "y": -Infinity, "z": 1e400}"#,
        r#"{"service": "db", "method": "list", "x": "\udc00"}"#,
    ] {
        let body =
            format!(r#"{{"jsonrpc": "2.0", "method": "call", "id": 1, "params": {params}}}"#);
        let request = format!(
            "POST /jsonrpc HTTP/1.1\r\nHost: erp.test\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let answer = send(odoo.http_addr, request.as_bytes()).await;
        assert!(
            answer.body.contains(r#""result":["demo1"]"#),
            "{params}: {}",
            answer.body
        );
    }
}

#[tokio::test]
async fn upload_attachment_stores_the_file_for_a_logged_in_session_with_its_token() {
    let odoo = OdooFixture::start().await;
    let addr = odoo.http_addr;
    let (sid, token) = login_form(addr).await;
    let login = post_form(
        addr,
        "/web/login",
        &format!("csrf_token={token}&login=admin&password=admin"),
        &format!("Cookie: session_id={sid}\r\n"),
    )
    .await;
    let sid = login.session().unwrap();
    let page = get(addr, "/odoo", &format!("Cookie: session_id={sid}\r\n")).await;
    let token = token_in(&page.body);
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let multipart = |token: &str| {
        let mut body = format!("--B0undary\r\nContent-Disposition: form-data; name=\"csrf_token\"\r\n\r\n{token}\r\n--B0undary\r\nContent-Disposition: form-data; name=\"ufile\"; filename=\"f.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n").into_bytes();
        body.extend_from_slice(&data);
        body.extend_from_slice(b"\r\n--B0undary--\r\n");
        let mut request = format!(
            "POST /web/binary/upload_attachment HTTP/1.1\r\nHost: erp.test\r\nCookie: session_id={sid}\r\nContent-Type: multipart/form-data; boundary=B0undary\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(&body);
        request
    };
    assert_eq!(send(addr, &multipart("nope")).await.status, 400);
    assert!(odoo.attachments().is_empty());
    let stored = send(addr, &multipart(&token)).await;
    assert_eq!(stored.status, 200, "{}", stored.body);
    let reply: serde_json::Value = serde_json::from_str(&stored.body).unwrap();
    assert_eq!(reply[0]["size"], data.len());
    assert_eq!(reply[0]["filename"], "f.bin");
    let attachments = odoo.attachments();
    assert_eq!(attachments.len(), 1);
    let (id, sha1) = &attachments[0];
    assert_eq!(reply[0]["id"], *id);
    let file = odoo
        .filestore_dir()
        .join("demo1")
        .join(&sha1[..2])
        .join(sha1);
    assert_eq!(std::fs::read(&file).unwrap(), data);
}

#[tokio::test]
async fn xmlrpc_bodies_are_read_by_python() {
    let odoo = OdooFixture::start().await;
    let call = |body: Vec<u8>| {
        let addr = odoo.http_addr;
        async move {
            let mut request = format!(
                "POST /xmlrpc/2/common HTTP/1.1\r\nHost: erp.test\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            request.extend_from_slice(&body);
            send(addr, &request).await.body
        }
    };
    let spellings = |password: &str| -> Vec<Vec<u8>> {
        let params = format!(
            "<params><param><value><string>demo1</string></value></param><param><value>admin</value></param><param><value><string>{password}</string></value></param><param><value><struct></struct></value></param></params>"
        );
        let utf16: Vec<u8> = std::iter::once(0xfeffu16)
            .chain(
                format!("<?xml version='1.0' encoding='UTF-16'?><methodCall><methodName>authenticate</methodName>{params}</methodCall>")
                    .encode_utf16(),
            )
            .flat_map(|u| u.to_le_bytes())
            .collect();
        vec![
            format!("<?xml version='1.0'?><methodCall><!-- <methodName>version</methodName> --><methodName>authenticate</methodName>{params}</methodCall>").into_bytes(),
            format!("<methodCall><methodName>&#97;uthenticate</methodName>{params}</methodCall>").into_bytes(),
            format!("<methodCall><methodName><![CDATA[authenticate]]></methodName>{params}</methodCall>").into_bytes(),
            format!("<methodCall ><methodName\n>authenticate</methodName >{params}</methodCall>").into_bytes(),
            utf16,
        ]
    };
    for (i, body) in spellings("admin").into_iter().enumerate() {
        let answer = call(body).await;
        assert!(
            answer.contains("<int>2</int>"),
            "spelling {i}, right password: {answer}"
        );
    }
    for (i, body) in spellings("wrong").into_iter().enumerate() {
        let answer = call(body).await;
        assert!(
            answer.contains("<boolean>0</boolean>"),
            "spelling {i}, wrong password: {answer}"
        );
    }
    let broken = call(b"<methodCall><methodName>authenticate</methodCall>".to_vec()).await;
    assert!(
        broken.contains("<name>faultCode</name>") && broken.contains("ExpatError"),
        "{broken}"
    );
}

#[tokio::test]
async fn database_manager_routes_are_exact_as_in_odoo() {
    let odoo = OdooFixture::start().await;
    // Answers a real Odoo 18.0 gave to the same paths.
    for (path, status) in [
        ("/web/database/manager", 200),
        ("/web/database/manager/", 200),
        ("/web/database/selector", 200),
        ("/web/database/", 404),
        ("/web/database", 404),
        ("/web/database/foo", 404),
        ("/web/database/manager/x", 404),
        ("/web/database/manager;x", 404),
        ("/web/database/manager/..%2fx", 404),
        ("/web/database/backup", 405),
    ] {
        assert_eq!(get(odoo.http_addr, path, "").await.status, status, "{path}");
    }
}
