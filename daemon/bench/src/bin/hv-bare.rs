//! `hv-bare`: the HTTP ceiling that ingest is measured against. A bare
//! hyper HTTP/1.1 server on the same runtime shape as the daemon (tokio
//! multi-thread, keep-alive) that reads each request's whole body and
//! answers `202` with an empty body: no parsing, no enrichment, no queue,
//! no fsync. `hv-load --bare` starts it beside the daemon and drives both
//! with the same requests, in one run, to print hitvault's share of it.
//!
//! It prints `listening on ADDR` on stdout once it accepts connections, and
//! serves until it is killed.

use std::convert::Infallible;

use http_body_util::{BodyExt, Empty};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};

async fn accept(req: Request<Incoming>) -> Result<Response<Empty<Bytes>>, Infallible> {
    // Read the whole body, as ingest must before it can answer.
    let _ = req.into_body().collect().await;
    let mut res = Response::new(Empty::new());
    *res.status_mut() = StatusCode::ACCEPTED;
    Ok(res)
}

fn main() -> anyhow::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        println!("listening on {}", listener.local_addr()?);
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, hyper::service::service_fn(accept))
                    .await;
            });
        }
    })
}
