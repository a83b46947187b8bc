-- hitvault schema version 3: history imported from another analytics product
-- (Plausible's CSV export: `hitvault import-plausible`). Aggregates per site
-- and day, not hits: the stats engine adds them to unfiltered overviews.
-- Days are numbered from 1970-01-01 (the site's local dates as exported).
-- An import replaces every row of its site and day range.

-- Per day: the overview's totals.
CREATE TABLE imported_days (
    site_id          USMALLINT NOT NULL,     -- sites.id
    day              INTEGER   NOT NULL,
    visitors         UBIGINT   NOT NULL,
    pageviews        UBIGINT   NOT NULL,
    events           UBIGINT   NOT NULL,     -- custom events
    visits           UBIGINT   NOT NULL,     -- sessions
    bounces          UBIGINT   NOT NULL,
    visit_duration_s UBIGINT   NOT NULL      -- sum of the visits' durations
);

-- Per day, dimension and value: visitors and the panel's count (as in
-- rollup_values: pageviews; entrances or exits for entry_page and exit_page;
-- events for event). NULL value: none (direct traffic, an unknown country).
CREATE TABLE imported_values (
    site_id  USMALLINT NOT NULL,
    day      INTEGER   NOT NULL,
    dim      VARCHAR   NOT NULL,             -- the stats API's dimension name
    value    VARCHAR,
    visitors UBIGINT   NOT NULL,
    count    UBIGINT   NOT NULL
);
