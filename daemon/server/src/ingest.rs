//! The ingest pipeline behind the HTTP handlers: resolve the site, enrich in
//! memory, append to the durable queue, and only then acknowledge.
//!
//! The client address enters here (from the socket or a trusted proxy header)
//! and is used for the country, the visitor hash and the exclusion list; it is
//! never written to the queue, the store or the logs.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hitvault_core::enrich::{Dropped, Enricher};
use hitvault_core::page::PageUrl;
use hitvault_core::sites::Sites;
use hitvault_core::{Engagement, Hit, RawHit};
use hitvault_queue::{AppendError, Queue};
use ipnet::IpNet;

use crate::metrics::{DropReason, Endpoint, Metrics, Refusal};
use crate::salt::SaltKeeper;
use crate::wire::{BrowserHit, Limits, ServerHit, WireError};

/// Everything the ingest endpoints share. Cheap to clone (all behind `Arc`).
#[derive(Clone)]
pub struct Ingest {
    pub limits: Arc<Limits>,
    pub enricher: Arc<Enricher>,
    /// The site registry; replaced whole when a site is added at run time.
    pub sites: Arc<RwLock<Arc<Sites>>>,
    pub salts: Arc<SaltKeeper>,
    pub queue: Queue,
    pub metrics: Arc<Metrics>,
    /// Peers whose `X-Forwarded-For` is believed. Empty by default.
    pub trusted_proxies: Arc<Vec<IpNet>>,
    /// Client addresses whose hits are dropped (the operator's own network, say).
    pub excluded: Arc<Vec<IpNet>>,
    /// Bearer token of `POST /api/ingest/batch`; `None` disables the endpoint.
    pub batch_token: Option<Arc<str>>,
    /// On a cluster node: when a hit may be taken, and when it may be
    /// acknowledged. `None` on a single node: durable in the queue is enough.
    pub replication: Option<Arc<dyn Replication>>,
}

/// A cluster node's part in ingest.
pub trait Replication: Send + Sync {
    /// Whether this node may take hits now; `Err` says why not (a node cut
    /// off from the cluster's majority, in `majority` mode).
    fn admit(&self) -> Result<(), String>;
    /// Waits until the hits up to `seq` are held as the acknowledgement mode
    /// requires (a majority's log in `majority` mode; at once in `local`
    /// mode); `false` after [`Replication::timeout`].
    fn acked(&self, seq: u64) -> Pin<Box<dyn Future<Output = bool> + Send + '_>>;
    /// How long [`Replication::acked`] waits.
    fn timeout(&self) -> Duration;
}

impl std::fmt::Debug for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingest")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// What happened to an accepted request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Durable in the queue: answer 202.
    Stored(usize),
    /// Well-formed but deliberately not stored: answer 200 and say why.
    Dropped(DropReason),
}

/// A refusal, with the status class it maps to.
#[derive(Clone, Debug)]
pub enum IngestError {
    Bad(WireError),
    Unavailable {
        reason: Refusal,
        retry_after: Duration,
        message: String,
    },
}

impl From<WireError> for IngestError {
    fn from(e: WireError) -> Self {
        IngestError::Bad(e)
    }
}

/// Moves the value out when `take`, otherwise clones it.
fn take_or_clone<T: Clone + Default>(v: &mut T, take: bool) -> T {
    if take { std::mem::take(v) } else { v.clone() }
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The queue record of an enriched hit: the hit itself, or, for an
/// `engagement`, the engagement of the page it names (site, path, visitor
/// and time taken from the hit; never stored as an event).
fn record(hit: Hit, engaged: Option<crate::wire::Engaged>) -> Vec<u8> {
    match engaged {
        None => hit.encode(),
        Some(e) => Engagement::of(hit, e.engaged_ms, e.scroll_depth).encode(),
    }
}

/// The client address: the socket peer, unless the peer is a trusted proxy, in
/// which case the right-most `X-Forwarded-For` entry that is not itself a
/// trusted proxy (the standard walk from the right).
pub fn client_ip(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(&ip.to_canonical()));
    if !is_trusted(&peer) {
        return peer;
    }
    let Some(xff) = forwarded_for else {
        return peer;
    };
    let mut client = peer;
    for part in xff.rsplit(',') {
        let Ok(ip) = part.trim().parse::<IpAddr>() else {
            break;
        };
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    client
}

impl Ingest {
    /// The sites a hit claims, as indices into `sites` (one snapshot of the
    /// registry serves the whole request; nothing is copied out of it).
    fn site(sites: &Sites, hit: &BrowserHit, page: &PageUrl) -> Result<Vec<usize>, WireError> {
        let found: Vec<usize> = if hit.domains.is_empty() {
            sites.resolve_index(&page.host).into_iter().collect()
        } else {
            hit.domains
                .iter()
                .filter_map(|d| sites.resolve_index(d))
                .collect()
        };
        if found.is_empty() {
            let claimed = if hit.domains.is_empty() {
                page.host.clone()
            } else {
                hit.domains.join(",")
            };
            return Err(WireError {
                reason: Refusal::UnknownSite,
                message: format!("no site named {claimed:?} is configured on this server"),
                field: Some("domain".into()),
            });
        }
        Ok(found)
    }

    /// Validates and enriches one hit into queue records (one per claimed site).
    fn prepare(
        &self,
        mut hit: BrowserHit,
        user_agent: &str,
        ip: IpAddr,
        ts_ms: i64,
    ) -> Result<Result<Vec<Hit>, DropReason>, WireError> {
        let page = PageUrl::parse(&hit.url).map_err(|e| WireError {
            reason: Refusal::InvalidUrl,
            message: format!("field 'url' is not an absolute http(s) URL: {e}"),
            field: Some("url".into()),
        })?;
        let sites = self.sites.read().unwrap_or_else(|p| p.into_inner()).clone();
        let found = Self::site(&sites, &hit, &page)?;
        if self.excluded.iter().any(|n| n.contains(&ip.to_canonical())) {
            return Ok(Err(DropReason::ExcludedAddress));
        }
        let salt = self.salts.salt_for(ts_ms.max(now_ms())).map_err(|e| {
            tracing::error!(error = %e, "visitor salt unavailable");
            WireError::new(
                Refusal::Unavailable,
                "the server cannot read its visitor salt",
            )
        })?;
        let mut out = Vec::with_capacity(found.len());
        let mut page = Some(page);
        for (n, &i) in found.iter().enumerate() {
            let site = &sites.list()[i];
            // The last (usually the only) site takes the request's strings;
            // earlier ones get copies.
            let last = n + 1 == found.len();
            let raw = RawHit {
                ts_ms,
                domain: Some(site.hostname.clone()),
                name: take_or_clone(&mut hit.name, last),
                url: take_or_clone(&mut hit.url, last),
                referrer: take_or_clone(&mut hit.referrer, last),
                props: take_or_clone(&mut hit.props, last),
                screen_width: hit.screen_width,
                language: take_or_clone(&mut hit.language, last),
                user_agent: user_agent.to_owned(),
                ip,
            };
            let page = if last {
                page.take().expect("taken once, by the last site")
            } else {
                page.clone().expect("present until the last site")
            };
            match self.enricher.enrich(raw, page, site, &salt) {
                Ok(h) => out.push(h),
                Err(Dropped::Bot) => return Ok(Err(DropReason::Bot)),
                Err(Dropped::ReferrerSpam) => return Ok(Err(DropReason::ReferrerSpam)),
            }
        }
        Ok(Ok(out))
    }

    /// On a cluster node: refuses before anything is queued when the node
    /// may not take hits.
    fn admit(&self) -> Result<(), IngestError> {
        match self.replication.as_ref().map(|r| r.admit()) {
            Some(Err(why)) => Err(IngestError::Unavailable {
                reason: Refusal::Unavailable,
                retry_after: Duration::from_secs(2),
                message: why,
            }),
            _ => Ok(()),
        }
    }

    /// On a cluster node: waits until the hits up to `seq` are held as the
    /// acknowledgement mode requires. A 503 after the wait means the hits
    /// are in this node's queue but not known to be on a majority: they are
    /// proposed again until they are, so a retry may store them twice
    /// (docs/operations/cluster.md).
    async fn replicated(&self, seq: u64) -> Result<(), IngestError> {
        let Some(r) = &self.replication else {
            return Ok(());
        };
        if r.acked(seq).await {
            return Ok(());
        }
        self.metrics.unreplicated.fetch_add(1, Relaxed);
        Err(IngestError::Unavailable {
            reason: Refusal::Unavailable,
            retry_after: Duration::from_secs(2),
            message: format!(
                "the cluster's majority did not confirm the hit within {} s; it is kept on this \
                 node and sent again until it is",
                r.timeout().as_secs()
            ),
        })
    }

    fn queue_error(&self, e: AppendError) -> IngestError {
        let (reason, retry_after, message) = match e {
            AppendError::Full { retry_after } => (
                Refusal::QueueFull,
                retry_after,
                "the ingest queue is full; retry later".to_owned(),
            ),
            AppendError::DiskFull => (
                Refusal::DiskFull,
                Duration::from_secs(5),
                "the disk is full; retry later".into(),
            ),
            AppendError::TooLarge { limit } => {
                return IngestError::Bad(WireError::new(
                    Refusal::BodyTooLarge,
                    format!("the hit is larger than the queue's record limit of {limit} bytes"),
                ));
            }
            AppendError::Closed => (
                Refusal::Unavailable,
                Duration::from_secs(2),
                "the server is shutting down".to_owned(),
            ),
            AppendError::Io(err) => {
                tracing::error!(%err, "queue append failed");
                (
                    Refusal::Unavailable,
                    Duration::from_secs(2),
                    "the ingest queue cannot write".to_owned(),
                )
            }
        };
        IngestError::Unavailable {
            reason,
            retry_after,
            message,
        }
    }

    /// One browser hit (`/api/collect` or `/api/event`).
    pub async fn browser(
        &self,
        endpoint: Endpoint,
        hit: BrowserHit,
        user_agent: Option<&str>,
        ip: IpAddr,
    ) -> Result<Outcome, IngestError> {
        let ua = match user_agent.map(str::trim) {
            Some(ua) if !ua.is_empty() => ua,
            _ => {
                return Err(WireError::new(
                    Refusal::MissingUserAgent,
                    "the request has no User-Agent header",
                )
                .into());
            }
        };
        if ua.len() > self.limits.user_agent_bytes {
            return Err(WireError {
                reason: Refusal::FieldTooLong,
                message: format!(
                    "User-Agent is {} bytes; the limit is {}",
                    ua.len(),
                    self.limits.user_agent_bytes
                ),
                field: Some("user-agent".into()),
            }
            .into());
        }
        let engaged = hit.engagement;
        let hits = match self.prepare(hit, ua, ip, now_ms())? {
            Ok(h) => h,
            Err(d) => return Ok(Outcome::Dropped(d)),
        };
        let n = hits.len();
        let records = hits
            .into_iter()
            .map(|h| record(h, engaged))
            .collect::<Vec<_>>();
        self.admit()?;
        let res = if n == 1 {
            self.queue
                .append(records.into_iter().next().expect("one record"))
                .await
        } else {
            self.queue.append_all(records).await.map(|r| *r.end())
        };
        let last = res.map_err(|e| self.queue_error(e))?;
        self.replicated(last).await?;
        match engaged {
            Some(_) => {
                self.metrics
                    .engagements_accepted
                    .fetch_add(n as u64, Relaxed);
            }
            None => self.metrics.accepted(endpoint, n as u64),
        };
        Ok(Outcome::Stored(n))
    }

    /// A server-side batch: all hits are validated first; then every stored hit
    /// goes to the queue in one group commit (all or nothing).
    pub async fn batch(
        &self,
        hits: Vec<ServerHit>,
        caller: IpAddr,
        allowed: &(dyn Fn(&str) -> bool + Sync),
    ) -> Result<(usize, usize), IngestError> {
        let now = now_ms();
        let mut records = Vec::with_capacity(hits.len());
        let (mut dropped, mut engagements) = (0, 0);
        for (i, h) in hits.into_iter().enumerate() {
            let ip = h.ip.unwrap_or(caller);
            let engaged = h.hit.engagement;
            match self.prepare(h.hit, &h.user_agent, ip, h.ts_ms.unwrap_or(now)) {
                Ok(Ok(hs)) if hs.iter().any(|h| !allowed(&h.site)) => {
                    let site = hs
                        .iter()
                        .find(|h| !allowed(&h.site))
                        .map(|h| h.site.clone());
                    return Err(WireError {
                        reason: Refusal::Forbidden,
                        message: format!(
                            "hit {i}: this token may not send hits for site {:?} (it needs the \
                             ingest scope, the site among its sites, and its user an editor \
                             or owner of the site)",
                            site.unwrap_or_default()
                        ),
                        field: Some("domain".into()),
                    }
                    .into());
                }
                Ok(Ok(hs)) => {
                    if engaged.is_some() {
                        engagements += hs.len() as u64;
                    }
                    records.extend(hs.into_iter().map(|h| record(h, engaged)))
                }
                Ok(Err(reason)) => {
                    self.metrics.dropped(reason);
                    dropped += 1;
                }
                Err(mut e) => {
                    e.message = format!("hit {i}: {}", e.message);
                    return Err(e.into());
                }
            }
        }
        let n = records.len();
        if n > 0 {
            self.admit()?;
            let seqs = self
                .queue
                .append_all(records)
                .await
                .map_err(|e| self.queue_error(e))?;
            self.replicated(*seqs.end()).await?;
        }
        self.metrics
            .accepted(Endpoint::Batch, n as u64 - engagements);
        self.metrics
            .engagements_accepted
            .fetch_add(engagements, Relaxed);
        Ok((n, dropped))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(s: &[&str]) -> Vec<IpNet> {
        s.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn forwarded_header_ignored_unless_peer_trusted() {
        let peer: IpAddr = "198.51.100.2".parse().unwrap();
        assert_eq!(client_ip(peer, Some("203.0.113.5"), &[]), peer);
        assert_eq!(
            client_ip(peer, Some("203.0.113.5"), &nets(&["10.0.0.0/8"])),
            peer
        );
    }

    #[test]
    fn forwarded_header_walked_from_the_right() {
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        let t = nets(&["10.0.0.0/8"]);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(client_ip(peer, Some("203.0.113.5"), &t), ip("203.0.113.5"));
        // A client cannot spoof by prepending: the right-most untrusted entry wins.
        assert_eq!(
            client_ip(peer, Some("1.2.3.4, 203.0.113.5, 10.0.0.7"), &t),
            ip("203.0.113.5")
        );
        assert_eq!(client_ip(peer, Some("garbage"), &t), peer);
        assert_eq!(client_ip(peer, None, &t), peer);
        // IPv4-mapped peers match IPv4 ranges.
        assert_eq!(
            client_ip(ip("::ffff:10.0.0.1"), Some("203.0.113.5"), &t),
            ip("203.0.113.5")
        );
    }
}
