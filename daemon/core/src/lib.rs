//! The domain of hitvault: what a hit is, and how a raw request becomes one.
//!
//! This crate owns the [`Hit`] type (what the queue carries and the store keeps),
//! the raw input a handler hands over ([`RawHit`]), and the enrichment that turns
//! one into the other in memory: user agent, bot filter, referrer source, UTM
//! fields, country, and the salted visitor hash.
//!
//! It never does I/O: no files, no sockets, no clock reads hidden in helpers.
//! Callers pass in the GeoIP bytes, the current salt and the time. The client IP
//! enters [`RawHit`] and leaves nowhere: [`Hit`] has no field that could hold it.
//!
//! A handler's path through the crate:
//! 1. [`PageUrl::parse`] the hit's URL (a bad one is the client's 4xx);
//! 2. [`Sites::resolve`] the claimed domain, or the page host;
//! 3. [`Enricher::enrich`] with today's [`Salt`] (chosen by [`day_index`]);
//!    a [`Dropped`] result is counted under [`Dropped::reason`], not stored.

pub mod bots;
pub mod enrich;
pub mod geo;
pub mod hit;
pub mod page;
pub mod referrer;
pub mod sites;
pub mod ua;
pub mod visitor;

pub use bots::{SpamList, is_bot_ua};
pub use enrich::{Dropped, Enricher, normalize_language};
pub use geo::{BUNDLED_GEOIP, GeoError, GeoIp};
pub use hit::{Device, Engagement, EngagementRef, Hit, HitRef, Kind, RawHit, Record, Utm, UtmRef};
pub use page::{PageUrl, UrlError};
pub use referrer::Referrer;
pub use sites::{SiteEntry, SiteError, Sites, normalize_host};
pub use ua::{UaInfo, UaParser, device_for};
pub use visitor::{Salt, day_index, visitor_id};
