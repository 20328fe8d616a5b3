//! HTTP/1.1 by hand over a TCP socket: for what a well-behaved client library
//! will not send (malformed bytes, chunked bodies, requests never finished).

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An answer as read off the socket.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Answer {
    /// The `error` of a JSON error body (empty when there is none).
    pub fn reason(&self) -> String {
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|body| body["error"].as_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

/// A request's bytes; `chunked`: `Transfer-Encoding: chunked` and no
/// `Content-Length`. Always `Connection: close`, so the answer ends at EOF.
pub fn request(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    chunked: bool,
) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if chunked {
        head.push_str("Transfer-Encoding: chunked\r\n\r\n");
    } else {
        head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    }
    let mut bytes = head.into_bytes();
    if chunked {
        for chunk in body.chunks(4096) {
            bytes.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            bytes.extend_from_slice(chunk);
            bytes.extend_from_slice(b"\r\n");
        }
        bytes.extend_from_slice(b"0\r\n\r\n");
    } else {
        bytes.extend_from_slice(body);
    }
    bytes
}

/// Sends `request` and reads the answer. The request is written while the
/// answer is read: a server refusing a large body answers before it has
/// read it all, and the rest of the write may then fail (ignored).
pub async fn exchange(address: &str, request: Vec<u8>) -> Answer {
    let stream = TcpStream::connect(address).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let writing = tokio::spawn(async move {
        let _ = writer.write_all(&request).await;
        // Keep the write half open until the answer is read: a half-close
        // would look like a client going away.
        writer
    });
    let answer = tokio::time::timeout(Duration::from_secs(20), read_answer(&mut reader))
        .await
        .expect("an answer within 20 s")
        .expect("an HTTP answer before the connection closed");
    drop(writing.await);
    answer
}

/// Reads one answer: the head, then `Content-Length` bytes of body (or up
/// to EOF). `None`: the connection closed before a whole head arrived.
pub async fn read_answer(reader: &mut (impl AsyncReadExt + Unpin)) -> Option<Answer> {
    let mut bytes = Vec::new();
    let mut buffer = [0u8; 8192];
    loop {
        if let Some(end) = find(&bytes, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
            let length = content_length(&head);
            let mut body = bytes[end + 4..].to_vec();
            while length.is_none_or(|length| body.len() < length) {
                match reader.read(&mut buffer).await {
                    Ok(0) | Err(_) => break,
                    Ok(read) => body.extend_from_slice(&buffer[..read]),
                }
            }
            let status = head.split(' ').nth(1)?.parse().ok()?;
            return Some(Answer { status, head, body });
        }
        match reader.read(&mut buffer).await {
            Ok(0) | Err(_) => return None,
            Ok(read) => bytes.extend_from_slice(&buffer[..read]),
        }
    }
}

/// Waits until the server closes `stream` (EOF or reset), reading and
/// dropping whatever it sends first (a 408); returns how long that took, or
/// `None` if it was still open after `within`.
pub async fn closed_within(
    stream: &mut (impl AsyncReadExt + Unpin),
    within: Duration,
) -> Option<Duration> {
    let started = Instant::now();
    let mut buffer = [0u8; 1024];
    tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(_) => {}
            }
        }
    })
    .await
    .ok()
}

fn content_length(head: &str) -> Option<usize> {
    head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse().ok())?
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}
