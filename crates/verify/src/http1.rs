//! HTTP/1.1 written and read by hand, so the request line carries exactly
//! the bytes a check means (`/web/%64atabase/manager`, `/web//database`,
//! `;x`) and the answer is seen as the server sent it.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

/// Enough for any login page or database-manager form; more is not read.
const MAX_BODY: usize = 4 * 1024 * 1024;
const MAX_HEAD: usize = 64 * 1024;
pub(crate) const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(15);

pub(crate) struct Request<'a> {
    pub method: &'a str,
    pub target: &'a str,
    pub headers: Vec<(&'a str, String)>,
    pub body: Vec<u8>,
    /// `Connection: close`, except for an upgrade.
    pub close: bool,
}

impl<'a> Request<'a> {
    pub fn get(target: &'a str) -> Request<'a> {
        Request {
            method: "GET",
            target,
            headers: Vec::new(),
            body: Vec::new(),
            close: true,
        }
    }

    pub fn post(target: &'a str, content_type: &str, body: impl Into<Vec<u8>>) -> Request<'a> {
        let mut r = Request::get(target);
        r.method = "POST";
        r.headers.push(("Content-Type", content_type.to_string()));
        r.body = body.into();
        r
    }

    pub fn header(mut self, name: &'a str, value: impl Into<String>) -> Request<'a> {
        self.headers.push((name, value.into()));
        self
    }

    pub fn to_bytes(&self, host: &str) -> Vec<u8> {
        let mut head = format!(
            "{} {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: rampart-verify/{}\r\nAccept: */*\r\n",
            self.method,
            self.target,
            env!("CARGO_PKG_VERSION")
        );
        if self.close {
            head.push_str("Connection: close\r\n");
        }
        for (k, v) in &self.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if !self.body.is_empty() || self.method == "POST" {
            head.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Writes the request and reads one response. A 1xx (the websocket's
/// 101) ends after the head; the connection is then dropped.
pub(crate) async fn exchange<S>(stream: S, request: &[u8]) -> Result<Response, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    tokio::time::timeout(EXCHANGE_TIMEOUT, exchange_inner(stream, request))
        .await
        .map_err(|_| format!("no complete answer within {} s", EXCHANGE_TIMEOUT.as_secs()))?
}

async fn exchange_inner<S>(mut stream: S, request: &[u8]) -> Result<Response, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    stream
        .write_all(request)
        .await
        .map_err(|e| format!("cannot send the request: {e}"))?;
    stream
        .flush()
        .await
        .map_err(|e| format!("cannot send the request: {e}"))?;
    let mut reader = BufReader::new(stream);
    let (status, headers) = read_head(&mut reader).await?;
    let mut response = Response {
        status,
        headers,
        body: Vec::new(),
    };
    if (100..200).contains(&status) || status == 204 || status == 304 {
        return Ok(response);
    }
    let chunked = response
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let length = response
        .header("content-length")
        .and_then(|v| v.trim().parse::<usize>().ok());
    response.body = if chunked {
        read_chunked(&mut reader).await?
    } else if let Some(n) = length {
        let mut body = vec![0u8; n.min(MAX_BODY)];
        reader
            .read_exact(&mut body)
            .await
            .map_err(|e| format!("the body ended early: {e}"))?;
        body
    } else {
        read_to_close(&mut reader).await
    };
    Ok(response)
}

async fn read_line<R: AsyncRead + Unpin>(
    r: &mut BufReader<R>,
    seen: &mut usize,
) -> Result<String, String> {
    let mut line = Vec::new();
    let n = r
        .read_until(b'\n', &mut line)
        .await
        .map_err(|e| format!("reading the answer: {e}"))?;
    if n == 0 {
        return Err("the connection closed before a complete answer".into());
    }
    *seen += n;
    if *seen > MAX_HEAD {
        return Err("answer head larger than 64 KiB".into());
    }
    Ok(String::from_utf8_lossy(&line)
        .trim_end_matches(['\r', '\n'])
        .to_string())
}

async fn read_head<R: AsyncRead + Unpin>(
    r: &mut BufReader<R>,
) -> Result<(u16, Vec<(String, String)>), String> {
    let mut seen = 0;
    let status_line = read_line(r, &mut seen).await?;
    let status = status_line
        .strip_prefix("HTTP/")
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("not an HTTP answer: {:?}", truncate(&status_line, 60)))?;
    let mut headers = Vec::new();
    loop {
        let line = read_line(r, &mut seen).await?;
        if line.is_empty() {
            return Ok((status, headers));
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
}

async fn read_chunked<R: AsyncRead + Unpin>(r: &mut BufReader<R>) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    let mut seen = 0;
    loop {
        let size_line = read_line(r, &mut seen).await?;
        seen = 0;
        let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| format!("bad chunk size line {:?}", truncate(&size_line, 40)))?;
        if size == 0 {
            return Ok(body); // trailers are not needed
        }
        let mut chunk = vec![0u8; size];
        r.read_exact(&mut chunk)
            .await
            .map_err(|e| format!("a chunk ended early: {e}"))?;
        if body.len() < MAX_BODY {
            body.extend_from_slice(&chunk);
        }
        read_line(r, &mut seen).await?;
        if body.len() >= MAX_BODY {
            return Ok(body);
        }
    }
}

/// Reads until the server closes (or the cap). A TLS peer that closes
/// without close_notify gives UnexpectedEof, which ends the body too.
async fn read_to_close<R: AsyncRead + Unpin>(r: &mut BufReader<R>) -> Vec<u8> {
    let mut body = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    while body.len() < MAX_BODY {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => body.extend_from_slice(&buf[..n]),
        }
    }
    body
}

pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(max).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn answer(raw: &'static [u8]) -> Result<Response, String> {
        let (client, mut server) = tokio::io::duplex(64 * 1024);
        tokio::spawn(async move {
            let mut sink = [0u8; 1024];
            let _ = server.read(&mut sink).await;
            server.write_all(raw).await.unwrap();
        });
        exchange(client, &Request::get("/x").to_bytes("h")).await
    }

    #[tokio::test]
    async fn parses_length_chunked_and_close_framed_bodies() {
        let r = answer(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello")
            .await
            .unwrap();
        assert_eq!(
            (r.status, r.text().as_str(), r.header("x-a")),
            (200, "hello", Some("b"))
        );
        let r = answer(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(r.text(), "abcde");
        let r = answer(b"HTTP/1.0 404 NOT FOUND\r\n\r\ngone").await.unwrap();
        assert_eq!((r.status, r.text().as_str()), (404, "gone"));
        let r = answer(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(r.status, 101);
        assert!(
            answer(b"SSH-2.0-OpenSSH\r\n")
                .await
                .unwrap_err()
                .contains("not an HTTP answer")
        );
    }

    #[test]
    fn request_bytes_keep_the_target_verbatim() {
        let r = Request::post("/web/%64atabase/manager;x", "text/xml", "<x/>")
            .header("Origin", "https://h");
        let text = String::from_utf8(r.to_bytes("erp.test:8443")).unwrap();
        assert!(
            text.starts_with("POST /web/%64atabase/manager;x HTTP/1.1\r\nHost: erp.test:8443\r\n"),
            "{text}"
        );
        assert!(text.contains("Content-Length: 4\r\n"));
        assert!(text.contains("Origin: https://h\r\n"));
        assert!(text.ends_with("\r\n\r\n<x/>"));
    }
}
