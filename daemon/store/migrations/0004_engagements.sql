-- hitvault schema version 4: engagement, the time on page and scroll depth
-- that trackers report while a page is read (Plausible's `engagement`
-- event). Not hits: each row belongs to the pageview it was attributed to
-- when the writer stored it (the latest pageview of the same site, visitor
-- and path at or before it, on the same UTC day); see
-- docs/internals/engagement.md.

CREATE TABLE engagements (
    id           UBIGINT     NOT NULL,  -- queue sequence number of the engagement
    hit_id       UBIGINT     NOT NULL,  -- hits.id of its pageview
    site_id      USMALLINT   NOT NULL,  -- the pageview's site
    ts           TIMESTAMPTZ NOT NULL,  -- the pageview's time (not the engagement's), for range scans
    path         VARCHAR     NOT NULL,  -- the pageview's path
    engaged_ms   UINTEGER    NOT NULL,  -- visible and focused time since the previous engagement
    scroll_depth UTINYINT               -- deepest point seen, percent (0..100); NULL: not reported
);

-- Before this version, engagements were stored as custom events named
-- 'engagement' without their numbers (the parser did not read `e` and
-- `sd`). They counted as events and kept visits from bouncing; they carry
-- nothing an engagement row could hold, so they are removed.
DELETE FROM hit_props WHERE hit_id IN (SELECT id FROM hits WHERE kind = 1 AND name = 'engagement');
DELETE FROM hits WHERE kind = 1 AND name = 'engagement';
