//! Speaking HTTP/1.1 to the real binary over a plain TCP socket, so tests see every status
//! line, header and body byte a client sees, with no HTTP client dependency.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The server's default body limit (`--max-message-bytes`).
pub const LIMIT_BYTES: usize = 4 * 1024 * 1024;
pub const WAIT: Duration = Duration::from_secs(30);

/// One HTTP answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).unwrap()
    }

    pub fn json(&self) -> Value {
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{self:?}"
        );
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// Asserts a Dapr error answer and returns its message.
    pub fn error(&self, status: u16, code: &str) -> String {
        assert_eq!(self.status, status, "{}", self.text());
        let body = self.json();
        assert_eq!(body["errorCode"], code, "{body}");
        assert_eq!(
            body.as_object().unwrap().len(),
            2,
            "only errorCode and message: {body}"
        );
        body["message"].as_str().unwrap().to_string()
    }
}

/// Parses a raw answer (`Connection: close`, so the body runs to the end of the stream).
pub fn parse(raw: &[u8]) -> Reply {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete header block");
    let head = std::str::from_utf8(&raw[..split]).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|line| {
            let (k, v) = line.split_once(':').unwrap();
            (k.trim().to_string(), v.trim().to_string())
        })
        .collect();
    let mut reply = Reply {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    };
    if reply.header("transfer-encoding") == Some("chunked") {
        reply.body = dechunk(&reply.body);
    }
    reply
}

pub fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&data[..line_end]).unwrap().trim(), 16)
                .unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[line_end + 2..line_end + 2 + size]);
        data = &data[line_end + 2 + size + 2..];
    }
}

/// Sends one request on a fresh connection and reads the whole answer.
pub async fn request(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    headers: &[(&str, &str)],
) -> Reply {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    if let Some(body) = body {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    if let Some(body) = body {
        stream.write_all(body).await.unwrap();
    }
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    parse(&raw)
}

pub async fn get(port: u16, path: &str) -> Reply {
    request(port, "GET", path, None, &[]).await
}

pub async fn post(port: u16, path: &str, body: &[u8]) -> Reply {
    request(port, "POST", path, Some(body), &[]).await
}

/// The start route for workflow `name`, with `?instanceID=` when `id` is not empty.
pub fn start_path(name: &str, id: &str) -> String {
    match id {
        "" => format!("/v1.0/workflows/dapr/{name}/start"),
        id => format!("/v1.0/workflows/dapr/{name}/start?instanceID={id}"),
    }
}

/// An instance route: `/v1.0/workflows/dapr/{id}` followed by `suffix` (`/pause`, …).
pub fn instance_path(id: &str, suffix: &str) -> String {
    format!("/v1.0/workflows/dapr/{id}{suffix}")
}

/// GETs an instance that must exist and returns its body.
pub async fn instance(port: u16, id: &str) -> Value {
    let reply = get(port, &instance_path(id, "")).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()
}

/// Asserts Dapr's answer to a management call: 202, `{}`, JSON.
pub fn assert_accepted(reply: &Reply) {
    assert_eq!(reply.status, 202, "{}", reply.text());
    assert_eq!(reply.json(), json!({}));
}

/// Polls GET until `done` holds for the instance body.
pub async fn wait_for(port: u16, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let reply = get(port, &format!("/v1.0/workflows/dapr/{id}")).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        let body = reply.json();
        if done(&body) {
            return body;
        }
        assert!(
            started.elapsed() < WAIT,
            "instance {id} never reached the state; last: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// RFC 3339 UTC with 0, 3, 6 or 9 fractional digits.
pub fn is_dapr_timestamp(value: &Value) -> bool {
    let Some(text) = value.as_str() else {
        return false;
    };
    let Some(rest) = text.strip_suffix('Z') else {
        return false;
    };
    let (whole, fraction) = rest.split_once('.').unwrap_or((rest, ""));
    let shape_ok = whole.len() == 19
        && whole.chars().enumerate().all(|(i, c)| match i {
            4 | 7 => c == '-',
            10 => c == 'T',
            13 | 16 => c == ':',
            _ => c.is_ascii_digit(),
        });
    shape_ok
        && [0, 3, 6, 9].contains(&fraction.len())
        && fraction.chars().all(|c| c.is_ascii_digit())
}

/// Sends a chunked body of `total` bytes while reading the answer, as a real client does
/// when the server answers before the body is complete.
pub async fn post_chunked(port: u16, path: &str, total: usize) -> Reply {
    let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let head = format!("POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n");
    let sender = tokio::spawn(async move {
        writer.write_all(head.as_bytes()).await?;
        let chunk = vec![b'7'; 64 * 1024];
        let mut left = total;
        while left > 0 {
            let size = left.min(chunk.len());
            writer.write_all(format!("{size:x}\r\n").as_bytes()).await?;
            writer.write_all(&chunk[..size]).await?;
            writer.write_all(b"\r\n").await?;
            left -= size;
        }
        writer.write_all(b"0\r\n\r\n").await
    });
    let mut raw = Vec::new();
    // The server may reset the connection after answering; what arrived before counts.
    let _ = reader.read_to_end(&mut raw).await;
    let _ = sender.await;
    parse(&raw)
}
