-- hitvault schema version 2: goals, funnels, and the stats rollups.

-- A goal is reached by a custom event of a name, or by a pageview whose path
-- matches a pattern ('*' matches any run of characters, e.g. '/blog/*').
CREATE TABLE goals (
    id           UINTEGER    PRIMARY KEY,
    site_id      USMALLINT   NOT NULL,     -- sites.id
    kind         VARCHAR     NOT NULL,     -- 'event' or 'page'
    value        VARCHAR     NOT NULL,     -- the event name, or the path pattern
    display_name VARCHAR     NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    UNIQUE (site_id, display_name)
);

-- A funnel: 2 to 8 ordered steps, each an event name or a path pattern as in
-- goals; a step counts only after the previous one in the same session.
CREATE TABLE funnels (
    id          UINTEGER    PRIMARY KEY,
    site_id     USMALLINT   NOT NULL,
    name        VARCHAR     NOT NULL,
    step_kinds  VARCHAR[]   NOT NULL,      -- 'event' or 'page', one per step
    step_values VARCHAR[]   NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    UNIQUE (site_id, name)
);

-- Rollups: per site and UTC day, what the unfiltered dashboard needs, derived
-- from `hits` by the rules of the stats engine. A cache: a day's rows are used
-- only while `rollup_days` still matches the day's hits (count and id sum),
-- and are rebuilt when it does not, or when the binary derives rollups
-- differently (`version`). Days are numbered from 1970-01-01 (UTC).
CREATE TABLE rollup_days (
    site_id  USMALLINT   NOT NULL,
    day      INTEGER     NOT NULL,
    version  UINTEGER    NOT NULL,         -- rollup::VERSION of the builder
    hits     UBIGINT     NOT NULL,         -- count of the day's hits when built
    id_sum   HUGEINT     NOT NULL,         -- sum of their ids
    built_at TIMESTAMPTZ NOT NULL
);

-- One row per visitor and day, with the quarter hours of the day (0..95) in
-- which the visitor had a hit: bit q of q_lo for q < 64, bit q-64 of q_hi.
CREATE TABLE rollup_visitors (
    site_id USMALLINT NOT NULL,
    day     INTEGER   NOT NULL,
    visitor UBIGINT   NOT NULL,
    q_lo    UBIGINT   NOT NULL,
    q_hi    UBIGINT   NOT NULL
);

-- Per quarter hour (slot = quarter hours since 1970): hits, and the sessions
-- that began in it.
CREATE TABLE rollup_slots (
    site_id   USMALLINT NOT NULL,
    day       INTEGER   NOT NULL,
    slot      BIGINT    NOT NULL,
    pageviews UBIGINT   NOT NULL,
    events    UBIGINT   NOT NULL,
    sessions  UBIGINT   NOT NULL,
    bounces   UBIGINT   NOT NULL,
    dur_us    HUGEINT   NOT NULL,          -- sum of the sessions' durations
    sess_pv   UBIGINT   NOT NULL           -- sum of the sessions' pageviews
);

-- Per day, dimension and value: distinct visitors and the panel's count.
CREATE TABLE rollup_values (
    site_id  USMALLINT NOT NULL,
    day      INTEGER   NOT NULL,
    dim      VARCHAR   NOT NULL,           -- the stats API's dimension name
    value    VARCHAR,
    visitors UBIGINT   NOT NULL,
    count    UBIGINT   NOT NULL
);
