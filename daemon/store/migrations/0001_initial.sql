-- hitvault schema version 1.
-- Timestamps are TIMESTAMPTZ (UTC instants, microsecond precision).
-- Unknown values are NULL. Small codes are decoded by the views hits_v and props_v.

CREATE TABLE sites (
    id          USMALLINT   PRIMARY KEY,   -- referenced by hits.site_id
    hostname    VARCHAR     NOT NULL UNIQUE,
    aliases     VARCHAR[]   NOT NULL,      -- other hostnames that count as this site
    origin      VARCHAR     NOT NULL,      -- 'config' (declared) or 'runtime' (site add)
    created_at  TIMESTAMPTZ NOT NULL
);

-- The queue position whose hits are all in this database. Written in the same
-- transaction as the hits, so a replay after a crash never stores a hit twice.
CREATE TABLE ingest_state (
    id            UTINYINT PRIMARY KEY,    -- always 1
    committed_seq UBIGINT  NOT NULL
);
INSERT INTO ingest_state VALUES (1, 0);

CREATE TABLE hits (
    id              UBIGINT     NOT NULL,  -- queue sequence number, unique per instance
    site_id         USMALLINT   NOT NULL,  -- sites.id
    ts              TIMESTAMPTZ NOT NULL,
    kind            UTINYINT    NOT NULL,  -- 0 pageview, 1 custom event
    name            VARCHAR     NOT NULL,  -- 'pageview' or the event name
    path            VARCHAR     NOT NULL,
    referrer        VARCHAR,               -- referrer URL without query; NULL: direct or internal
    source          VARCHAR,               -- grouped source (Google, Facebook, host, utm_source)
    utm_source      VARCHAR,
    utm_medium      VARCHAR,
    utm_campaign    VARCHAR,
    utm_term        VARCHAR,
    utm_content     VARCHAR,
    browser         VARCHAR,
    browser_version VARCHAR,
    os              VARCHAR,
    os_version      VARCHAR,
    device          UTINYINT    NOT NULL,  -- 0 unknown, 1 desktop, 2 mobile, 3 tablet
    country         VARCHAR,               -- ISO 3166-1 alpha-2
    language        VARCHAR,
    screen_width    USMALLINT,             -- CSS pixels
    visitor         UBIGINT     NOT NULL   -- keyed hash of (daily salt, site, IP, UA)
);

CREATE TABLE hit_props (
    hit_id  UBIGINT     NOT NULL,          -- hits.id
    site_id USMALLINT   NOT NULL,
    ts      TIMESTAMPTZ NOT NULL,          -- copy of hits.ts, for range scans
    key     VARCHAR     NOT NULL,
    value   VARCHAR     NOT NULL
);

CREATE VIEW hits_v AS
SELECT h.id, s.hostname AS site, h.ts,
       CASE h.kind WHEN 0 THEN 'pageview' ELSE 'event' END AS kind,
       h.name, h.path, h.referrer, h.source,
       h.utm_source, h.utm_medium, h.utm_campaign, h.utm_term, h.utm_content,
       h.browser, h.browser_version, h.os, h.os_version,
       CASE h.device WHEN 1 THEN 'desktop' WHEN 2 THEN 'mobile' WHEN 3 THEN 'tablet' END AS device,
       h.country, h.language, h.screen_width, h.visitor
FROM hits h JOIN sites s ON s.id = h.site_id;

CREATE VIEW props_v AS
SELECT p.hit_id AS id, s.hostname AS site, p.ts, p.key, p.value
FROM hit_props p JOIN sites s ON s.id = p.site_id;
