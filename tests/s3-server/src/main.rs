//! `cairn-s3-server ROOT ACCESS_KEY SECRET_KEY [CERT_PEM KEY_PEM]`
//!
//! Serves the s3s-fs store at ROOT (one directory per bucket, one file per object) on a free
//! loopback port over plain http and, with a certificate and key, on a second one over TLS.
//! Prints `http http://127.0.0.1:PORT` (and `https https://127.0.0.1:PORT`) on stdout once
//! listening, and exits when stdin closes, so it never outlives the test process that
//! started it.
//!
//! Unlike the stock s3s-fs binary it sets TCP_NODELAY on every connection: the server writes
//! headers and body separately, and without it Nagle's algorithm and the client's delayed ACK
//! hold every small response back by 40 ms.

use std::sync::Arc;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use s3s::auth::SimpleAuth;
use s3s::service::{S3Service, S3ServiceBuilder};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (root, ak, sk) = match args.as_slice() {
        [root, ak, sk] | [root, ak, sk, _, _] => (root, ak, sk),
        _ => return Err("usage: cairn-s3-server ROOT ACCESS_KEY SECRET_KEY [CERT_PEM KEY_PEM]".into()),
    };
    let service = {
        let mut b = S3ServiceBuilder::new(s3s_fs::FileSystem::new(root).map_err(|e| format!("{root}: {e:?}"))?);
        b.set_auth(SimpleAuth::from_single(ak.as_str(), sk.as_str()));
        b.build()
    };
    let http = TcpListener::bind("127.0.0.1:0").await?;
    println!("http http://{}", http.local_addr()?);
    tokio::spawn(serve(http, service.clone(), None));
    if let [_, _, _, cert, key] = args.as_slice() {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)?.collect::<Result<_, _>>()?;
        let key = PrivateKeyDer::from_pem_file(key)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs, key)?;
        let https = TcpListener::bind("127.0.0.1:0").await?;
        println!("https https://{}", https.local_addr()?);
        tokio::spawn(serve(https, service, Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))));
    }
    println!("ready");
    // Run until whoever started us goes away.
    let mut sink = Vec::new();
    let _ = tokio::io::stdin().read_to_end(&mut sink).await;
    Ok(())
}

async fn serve(listener: TcpListener, service: S3Service, tls: Option<tokio_rustls::TlsAcceptor>) {
    let server = ConnBuilder::new(TokioExecutor::new());
    loop {
        let Ok((socket, _)) = listener.accept().await else { continue };
        let _ = socket.set_nodelay(true);
        let (server, service, tls) = (server.clone(), service.clone(), tls.clone());
        tokio::spawn(async move {
            match tls {
                None => {
                    let _ = server.serve_connection(TokioIo::new(socket), service).await;
                }
                Some(acceptor) => {
                    if let Ok(stream) = acceptor.accept(socket).await {
                        let _ = server.serve_connection(TokioIo::new(stream), service).await;
                    }
                }
            }
        });
    }
}
