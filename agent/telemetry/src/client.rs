//! A small blocking HTTP/1.1 client for the agent's API that pins the agent's TLS certificate by
//! its SHA-256 fingerprint, as Horde does: the certificate is self-signed and names no address a
//! client can rely on (a box behind NAT, a forwarded port), so no certificate authority and no
//! host name is checked — the fingerprint is (the certificate must still sign the handshake, so a
//! copy of the certificate without its key does not pass).
//!
//! A client that does not know the fingerprint yet may connect once with [`Pin::Learn`]: the
//! connection is not authenticated, but the answer tells which certificate the server showed
//! ([`Answer::fingerprint`]), and `/v1/telemetry`'s body — signed by the node key the client knows
//! from provisioning — carries the fingerprint the agent serves with (`agent.tls_fingerprint`):
//! when the two agree, the client pins it from then on (trust on first use, checked by the node's
//! signature).

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The SHA-256 of a certificate's DER, lowercase hex: what telemetry and the console show.
pub fn fingerprint(der: &[u8]) -> String {
    hex(&Sha256::digest(der))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The fingerprint of the first certificate in a PEM file's text.
pub fn pem_fingerprint(pem: &str) -> Option<String> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem.as_bytes()).next()?.ok().map(|c| fingerprint(&c))
}

/// How an `https://` server's certificate is taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pin {
    /// Only the certificate with this fingerprint (hex SHA-256 of its DER).
    Fingerprint(String),
    /// Any certificate, recorded in the answer (trust on first use; see the module's doc).
    Learn,
}

/// An answer: status, headers (names in lower case), body, and the fingerprint of the server's
/// certificate (`https://` only).
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub fingerprint: Option<String>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("not an http:// or https:// URL: {0}")]
    Url(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("the server's answer is not HTTP/1.1: {0}")]
    Protocol(String),
    #[error("the answer is larger than {0} bytes")]
    TooLarge(usize),
}

/// Accepts the certificate whose fingerprint is pinned (or any, recording it), and checks that
/// the server's handshake is signed by that certificate's key.
#[derive(Debug)]
struct PinVerifier {
    pin: Pin,
    seen: Mutex<Option<String>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got = fingerprint(end_entity);
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some(got.clone());
        }
        match &self.pin {
            Pin::Fingerprint(want) if !want.eq_ignore_ascii_case(&got) => Err(rustls::Error::General(
                format!("the server's certificate {got} is not the pinned {want}"),
            )),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// One request: `GET` (no body) or `POST` (a JSON body), with the bearer token, answered whole.
pub struct Request<'a> {
    pub url: &'a str,
    pub token: Option<&'a str>,
    pub body: Option<&'a str>,
    pub pin: &'a Pin,
    pub timeout: Duration,
    /// Largest answer accepted.
    pub max_bytes: usize,
}

/// Sends `r` and reads the whole answer.
pub fn send(r: &Request<'_>) -> Result<Answer, ClientError> {
    let (tls, rest) = if let Some(rest) = r.url.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = r.url.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err(ClientError::Url(r.url.to_string()));
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = authority
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| ClientError::Url(r.url.to_string()))?;
    let tcp = TcpStream::connect_timeout(&addr, r.timeout)?;
    tcp.set_read_timeout(Some(r.timeout))?;
    tcp.set_write_timeout(Some(r.timeout))?;
    let mut head = format!(
        "{} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nUser-Agent: aergo-telemetry-client\r\n",
        if r.body.is_some() { "POST" } else { "GET" }
    );
    if let Some(t) = r.token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if let Some(b) = r.body {
        head.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", b.len()));
    }
    head.push_str("\r\n");
    let mut request = head.into_bytes();
    request.extend_from_slice(r.body.unwrap_or_default().as_bytes());
    if !tls {
        let mut tcp = tcp;
        tcp.write_all(&request)?;
        let mut answer = read_answer(BufReader::new(tcp), r.max_bytes)?;
        answer.fingerprint = None;
        return Ok(answer);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        Arc::new(PinVerifier { pin: r.pin.clone(), seen: Mutex::new(None), provider: provider.clone() });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    // The name is not checked (the pin is); an address is sent as no SNI.
    let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h).trim_matches(['[', ']']);
    let name = ServerName::try_from(host.to_string()).map_err(|e| ClientError::Tls(e.to_string()))?;
    let conn =
        rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| ClientError::Tls(e.to_string()))?;
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    stream.write_all(&request).map_err(tls_error)?;
    let mut answer = read_answer(BufReader::new(&mut stream), r.max_bytes)?;
    answer.fingerprint = verifier.seen.lock().ok().and_then(|s| s.clone());
    Ok(answer)
}

/// A handshake refused by the verifier surfaces as an I/O error holding the TLS error.
fn tls_error(e: std::io::Error) -> ClientError {
    match e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        Some(t) => ClientError::Tls(t.to_string()),
        None => ClientError::Io(e),
    }
}

fn read_answer(mut reader: impl BufRead, max: usize) -> Result<Answer, ClientError> {
    let mut line = String::new();
    reader.read_line(&mut line).map_err(tls_error)?;
    let status = line
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| line.strip_prefix("HTTP/1.0 "))
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| ClientError::Protocol(line.trim().to_string()))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).map_err(tls_error)? == 0 {
            return Err(ClientError::Protocol("the answer ended in its head".into()));
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
        if headers.len() > 100 {
            return Err(ClientError::Protocol("more than 100 header lines".into()));
        }
    }
    let header = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let mut body = Vec::new();
    if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            line.clear();
            reader.read_line(&mut line).map_err(tls_error)?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or_default(), 16)
                .map_err(|_| ClientError::Protocol(format!("a chunk size {:?}", line.trim())))?;
            if size == 0 {
                break;
            }
            if body.len() + size > max {
                return Err(ClientError::TooLarge(max));
            }
            let start = body.len();
            body.resize(start + size, 0);
            reader.read_exact(&mut body[start..]).map_err(tls_error)?;
            line.clear();
            reader.read_line(&mut line).map_err(tls_error)?;
        }
    } else if let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        if len > max {
            return Err(ClientError::TooLarge(max));
        }
        body.resize(len, 0);
        reader.read_exact(&mut body).map_err(tls_error)?;
    } else {
        reader.take(max as u64 + 1).read_to_end(&mut body).map_err(tls_error)?;
        if body.len() > max {
            return Err(ClientError::TooLarge(max));
        }
    }
    Ok(Answer { status, headers, body, fingerprint: None })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_and_sized_answers_are_read_whole() {
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: b\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
        let a = read_answer(&chunked[..], 1 << 20).unwrap();
        assert_eq!((a.status, a.text().as_str(), a.header("x-a")), (200, "hello world", Some("b")));
        let sized = b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nabcdef";
        let a = read_answer(&sized[..], 1 << 20).unwrap();
        assert_eq!((a.status, a.text().as_str()), (404, "abc"));
        assert!(matches!(read_answer(&sized[..], 2), Err(ClientError::TooLarge(2))));
        assert!(read_answer(&b"SSH-2.0-x\r\n"[..], 10).is_err());
    }
}
