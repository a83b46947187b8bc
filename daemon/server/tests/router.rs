//! The router without a socket: real queue on disk, real enrichment, no writer.
//! With nobody committing, the queue fills up; ingest must then answer 503 with
//! Retry-After, and accept again once the queue has room.

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, RwLock};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use hitvault_core::bots::SpamList;
use hitvault_core::enrich::Enricher;
use hitvault_core::sites::Sites;
use hitvault_core::ua::UaParser;
use hitvault_queue::{Queue, QueueConfig};
use hitvault_server::ingest::{Ingest, now_ms};
use hitvault_server::metrics::{Gauges, Metrics, Refusal};
use hitvault_server::salt::SaltKeeper;
use hitvault_server::wire::Limits;
use hitvault_server::{AppState, router};
use http_body_util::BodyExt;
use tower::ServiceExt;

const UA: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";

fn state(dir: &std::path::Path, max_bytes: u64) -> (AppState, Queue) {
    let mut sites = Sites::new();
    sites.add("a.test", vec![]).unwrap();
    let qcfg = QueueConfig {
        dir: dir.join("queue"),
        segment_bytes: 64 * 1024,
        max_bytes,
        ..QueueConfig::default()
    };
    let queue = Queue::open(qcfg, 0, 1, None).unwrap();
    let metrics = Arc::new(Metrics::default());
    let ingest = Ingest {
        limits: Arc::new(Limits::default()),
        enricher: Arc::new(Enricher::new(
            UaParser::new([7; 16]),
            None,
            SpamList::new(&[]),
        )),
        sites: Arc::new(RwLock::new(Arc::new(sites))),
        salts: Arc::new(SaltKeeper::open(&dir.join("salts"), now_ms()).unwrap()),
        queue: queue.clone(),
        metrics: metrics.clone(),
        trusted_proxies: Arc::new(vec![]),
        excluded: Arc::new(vec![]),
        batch_token: None,
        replication: None,
    };
    let st = AppState {
        ingest,
        metrics,
        ready: Arc::new(AtomicBool::new(true)),
        gauges: Arc::new(Gauges::default),
        accounts: None,
    };
    (st, queue)
}

fn hit(i: usize) -> Request<Body> {
    let body = format!(
        r#"{{"n":"pageview","u":"https://a.test/page/{i}/{}"}}"#,
        "x".repeat(200)
    );
    let mut r = Request::post("/api/collect")
        .header("user-agent", UA)
        .body(Body::from(body))
        .unwrap();
    r.extensions_mut()
        .insert(ConnectInfo("192.0.2.1:5555".parse::<SocketAddr>().unwrap()));
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_answers_503_with_retry_after_then_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let (st, queue) = state(dir.path(), 128 * 1024);
    let app = router(st.clone());
    let mut acked = 0u64;
    let mut refused = None;
    for i in 0..5000 {
        let r = app.clone().oneshot(hit(i)).await.unwrap();
        match r.status() {
            StatusCode::ACCEPTED => acked += 1,
            StatusCode::SERVICE_UNAVAILABLE => {
                let retry = r
                    .headers()
                    .get("retry-after")
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .to_owned();
                let body: serde_json::Value =
                    serde_json::from_slice(&r.into_body().collect().await.unwrap().to_bytes())
                        .unwrap();
                refused = Some((retry, body));
                break;
            }
            s => panic!("unexpected status {s}"),
        }
    }
    let (retry, body) = refused.expect("the queue never filled up");
    assert_eq!(body["error"], "queue_full");
    assert!(retry.parse::<u64>().unwrap() >= 1);
    assert_eq!(st.metrics.refused_count(Refusal::QueueFull), 1);
    // Everything acknowledged is durable and readable, in order.
    let recs = queue
        .read_after(0, 100_000, std::time::Duration::from_millis(10))
        .unwrap();
    assert_eq!(recs.len() as u64, acked);
    // Once the writer (here: the test) commits, ingest resumes by itself.
    queue.mark_committed(recs.last().unwrap().0).unwrap();
    let r = app.clone().oneshot(hit(99_999)).await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn readyz_and_metrics_answer() {
    let dir = tempfile::tempdir().unwrap();
    let (st, _q) = state(dir.path(), 1 << 20);
    let app = router(st.clone());
    let r = app
        .clone()
        .oneshot(Request::get("/readyz").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    st.ready.store(false, std::sync::atomic::Ordering::Release);
    let r = app
        .clone()
        .oneshot(Request::get("/readyz").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let r = app
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text =
        String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    assert!(text.contains("# TYPE hitvault_queue_fsync_seconds histogram"));
}
