//! Plausible's CSV export (a directory of `imported_*_YYYYMMDD_YYYYMMDD.csv`
//! files, or the zip that holds them) read into hitvault's imported history
//! of one site ([`hitvault_store::imported::ImportedSet`]).
//!
//! Every file is read and checked before anything is returned: its name (a
//! known table and a date range), its header (exactly the table's columns,
//! in any order), and every row (field count, dates inside the file's
//! range, numbers). The first problem is a [`Bad`] with the file, the
//! 1-based data row and the reason. The rows are mapped to hitvault's
//! dimensions (docs: "Importing from Plausible"). [`ImportBody`] is the set
//! as the CLI sends it to a running daemon.
//!
//! Limits: [`MAX_FILES`] files, [`MAX_FILE_BYTES`] per file (or zip entry,
//! uncompressed), [`MAX_VALUES`] distinct (day, dimension, value) rows.
//! The zip reader is in [`zip`].

pub mod zip;

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use hitvault_store::imported::{ImportedDay, ImportedSet, ImportedValue};
use hitvault_store::stats::Dim;
use jiff::civil::Date;
use serde::{Deserialize, Serialize};

/// Largest uncompressed CSV file (or zip entry) read.
pub const MAX_FILE_BYTES: u64 = 4 << 30;
/// Most files in one export.
pub const MAX_FILES: usize = 64;
/// Most distinct (day, dimension, value) rows one import may hold.
pub const MAX_VALUES: usize = 20_000_000;

/// The tables of Plausible's CSV export this importer reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Table {
    Visitors,
    Sources,
    Pages,
    EntryPages,
    ExitPages,
    Locations,
    Devices,
    Browsers,
    OperatingSystems,
    CustomEvents,
}

impl Table {
    const ALL: [Table; 10] = [
        Table::Visitors,
        Table::Sources,
        Table::Pages,
        Table::EntryPages,
        Table::ExitPages,
        Table::Locations,
        Table::Devices,
        Table::Browsers,
        Table::OperatingSystems,
        Table::CustomEvents,
    ];

    fn name(self) -> &'static str {
        match self {
            Table::Visitors => "imported_visitors",
            Table::Sources => "imported_sources",
            Table::Pages => "imported_pages",
            Table::EntryPages => "imported_entry_pages",
            Table::ExitPages => "imported_exit_pages",
            Table::Locations => "imported_locations",
            Table::Devices => "imported_devices",
            Table::Browsers => "imported_browsers",
            Table::OperatingSystems => "imported_operating_systems",
            Table::CustomEvents => "imported_custom_events",
        }
    }

    /// The columns of the file, with their kind.
    fn columns(self) -> &'static [(&'static str, Col)] {
        use Col::*;
        match self {
            Table::Visitors => &[
                ("date", Day),
                ("visitors", Num),
                ("pageviews", Num),
                ("bounces", Num),
                ("visits", Num),
                ("visit_duration", Num),
            ],
            Table::Sources => &[
                ("date", Day),
                ("source", Text),
                ("referrer", Text),
                ("utm_source", Text),
                ("utm_medium", Text),
                ("utm_campaign", Text),
                ("utm_content", Text),
                ("utm_term", Text),
                ("pageviews", Num),
                ("visitors", Num),
                ("visits", Num),
                ("visit_duration", Num),
                ("bounces", Num32),
            ],
            Table::Pages => PAGES_TOTALS,
            Table::EntryPages => &[
                ("date", Day),
                ("entry_page", Text),
                ("visitors", Num),
                ("entrances", Num),
                ("visit_duration", Num),
                ("bounces", Num32),
                ("pageviews", Num),
            ],
            Table::ExitPages => &[
                ("date", Day),
                ("exit_page", Text),
                ("visitors", Num),
                ("visit_duration", Num),
                ("exits", Num),
                ("bounces", Num32),
                ("pageviews", Num),
            ],
            Table::Locations => &[
                ("date", Day),
                ("country", Text),
                ("region", Text),
                ("city", Num),
                ("visitors", Num),
                ("visits", Num),
                ("visit_duration", Num),
                ("bounces", Num32),
                ("pageviews", Num),
            ],
            Table::Devices => &[
                ("date", Day),
                ("device", Text),
                ("visitors", Num),
                ("visits", Num),
                ("visit_duration", Num),
                ("bounces", Num32),
                ("pageviews", Num),
            ],
            Table::Browsers => &[
                ("date", Day),
                ("browser", Text),
                ("browser_version", Text),
                ("visitors", Num),
                ("visits", Num),
                ("visit_duration", Num),
                ("bounces", Num32),
                ("pageviews", Num),
            ],
            Table::OperatingSystems => &[
                ("date", Day),
                ("operating_system", Text),
                ("operating_system_version", Text),
                ("visitors", Num),
                ("visits", Num),
                ("visit_duration", Num),
                ("bounces", Num32),
                ("pageviews", Num),
            ],
            Table::CustomEvents => &[
                ("date", Day),
                ("name", Text),
                ("link_url", Text),
                ("path", Text),
                ("visitors", Num),
                ("events", Num),
            ],
        }
    }
}

/// The layouts of `imported_pages` Plausible has written, newest first:
/// with time on page and scroll depth as totals and the visits they are
/// over; with scroll depth totals only (a site without the new time on
/// page); with a mean scroll depth and the visitors it is over; and
/// without either.
const PAGES_TOTALS: Layout = &[
    ("date", Col::Day),
    ("hostname", Col::Text),
    ("page", Col::Text),
    ("visits", Col::Num),
    ("visitors", Col::Num),
    ("pageviews", Col::Num),
    ("total_scroll_depth", Col::NumOrNull),
    ("total_scroll_depth_visits", Col::NumOrNull),
    ("total_time_on_page", Col::NumOrNull),
    ("total_time_on_page_visits", Col::NumOrNull),
];
const PAGES_SCROLL_TOTALS: Layout = &[
    ("date", Col::Day),
    ("hostname", Col::Text),
    ("page", Col::Text),
    ("visits", Col::Num),
    ("visitors", Col::Num),
    ("pageviews", Col::Num),
    ("total_scroll_depth", Col::NumOrNull),
    ("total_scroll_depth_visits", Col::NumOrNull),
];
const PAGES_SCROLL_MEAN: Layout = &[
    ("date", Col::Day),
    ("hostname", Col::Text),
    ("page", Col::Text),
    ("visits", Col::Num),
    ("visitors", Col::Num),
    ("pageviews", Col::Num),
    ("scroll_depth", Col::NumOrNull),
    ("pageleave_visitors", Col::Num),
];
const PAGES_PLAIN: Layout = &[
    ("date", Col::Day),
    ("hostname", Col::Text),
    ("page", Col::Text),
    ("visits", Col::Num),
    ("visitors", Col::Num),
    ("pageviews", Col::Num),
];

impl Table {
    /// Every header layout read for this table, newest first: the columns
    /// of each (any order in the file).
    fn layouts(self) -> Vec<Layout> {
        match self {
            Table::Pages => vec![
                PAGES_TOTALS,
                PAGES_SCROLL_TOTALS,
                PAGES_SCROLL_MEAN,
                PAGES_PLAIN,
            ],
            other => vec![other.columns()],
        }
    }
}

/// A header layout: each column's name and what it holds.
type Layout = &'static [(&'static str, Col)];

/// What a column holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Col {
    /// `YYYY-MM-DD`, inside the file's range.
    Day,
    /// Any text; empty means none.
    Text,
    /// An unsigned 64-bit integer.
    Num,
    /// An unsigned 32-bit integer.
    Num32,
    /// An unsigned integer, or empty / `\N` for none.
    NumOrNull,
}

/// A problem with the input: the file, the 1-based data row, the reason.
#[derive(Debug)]
pub struct Bad {
    pub file: String,
    pub row: Option<u64>,
    pub reason: String,
}

impl std::error::Error for Bad {}

impl std::fmt::Display for Bad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.file)?;
        if let Some(r) = self.row {
            write!(f, ", row {r}")?;
        }
        write!(f, ": {}", self.reason)
    }
}

fn bad(file: &str, row: Option<u64>, reason: impl Into<String>) -> Bad {
    Bad {
        file: file.to_owned(),
        row,
        reason: reason.into(),
    }
}

/// `[imported_]TABLE_YYYYMMDD_YYYYMMDD.csv` -> the table and its range.
fn parse_name(name: &str) -> Option<(Table, Date, Date)> {
    let stem = name.strip_suffix(".csv")?;
    let (rest, end) = stem.rsplit_once('_')?;
    let (table, start) = rest.rsplit_once('_')?;
    let table = table.strip_prefix("imported_").unwrap_or(table);
    let table = Table::ALL
        .into_iter()
        .find(|t| t.name().strip_prefix("imported_") == Some(table))?;
    let date = |s: &str| -> Option<Date> {
        if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let n = |a: usize, b: usize| s[a..b].parse::<i16>().ok();
        jiff::civil::Date::new(n(0, 4)?, n(4, 6)? as i8, n(6, 8)? as i8).ok()
    };
    Some((table, date(start)?, date(end)?))
}

/// The rows read so far, already mapped to hitvault's dimensions.
#[derive(Default)]
struct Acc {
    days: BTreeMap<Date, ImportedDay>,
    /// Days of the visitors file (each once).
    seen_days: std::collections::HashSet<Date>,
    /// By (day, dimension name, value): (visitors, count).
    values: HashMap<(Date, &'static str, Option<String>), (u64, u64)>,
    first: Option<Date>,
    last: Option<Date>,
}

impl Acc {
    fn value(&mut self, day: Date, dim: Dim, value: Option<String>, visitors: u64, count: u64) {
        let e = self.values.entry((day, dim.name(), value)).or_default();
        e.0 += visitors;
        e.1 += count;
    }
}

/// Empty text is no value.
fn opt(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

/// Plausible's device (a screen-size class) as hitvault's `screen` value.
fn screen(s: &str) -> Option<String> {
    match s {
        "" | "(not set)" => None,
        other => Some(other.to_ascii_lowercase()),
    }
}

/// Plausible's country code as hitvault's: upper case; empty or `ZZ` is none.
fn country(s: &str) -> Option<String> {
    match s.trim_end_matches('\0') {
        "" | "ZZ" | "zz" => None,
        c => Some(c.to_ascii_uppercase()),
    }
}

/// Reads one CSV file of `table` whose name says `[start, end]`.
fn read_csv(
    name: &str,
    table: Table,
    range: (Date, Date),
    input: impl Read,
    acc: &mut Acc,
) -> Result<u64, Bad> {
    let mut input = BufReader::with_capacity(1 << 20, input);
    // The last byte must end a line: a file cut anywhere else is truncated.
    let mut last = None;
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(LastByte {
            inner: &mut input,
            last: &mut last,
        });
    let header = rdr
        .headers()
        .map_err(|e| bad(name, None, format!("no readable header: {e}")))?;
    let (columns, at) = check_header(name, table, header)?;
    let mut rows = 0u64;
    let mut rec = csv::StringRecord::new();
    loop {
        let row = rows + 1;
        match rdr.read_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let reason = match e.kind() {
                    csv::ErrorKind::UnequalLengths {
                        len, expected_len, ..
                    } => format!(
                        "{len} fields, the header has {expected_len} (a truncated or damaged file?)"
                    ),
                    _ => e.to_string(),
                };
                return Err(bad(name, Some(row), reason));
            }
        }
        rows = row;
        let parsed = parse_row(name, row, columns, &at, &rec, range)?;
        apply_row(table, &parsed, range, acc).map_err(|reason| bad(name, Some(row), reason))?;
    }
    drop(rdr);
    if last.is_some_and(|b| b != b'\n') {
        return Err(bad(
            name,
            None,
            "the last line has no line end: the file looks truncated",
        ));
    }
    Ok(rows)
}

/// Checks that `header` holds exactly the columns of one of `table`'s
/// layouts, each once, in any order; returns that layout's columns and
/// where each is in the file. A header that fits none is compared with the
/// newest layout in the error.
fn check_header(
    name: &str,
    table: Table,
    header: &csv::StringRecord,
) -> Result<(Layout, Vec<usize>), Bad> {
    let header: Vec<&str> = header.iter().collect();
    let layouts = table.layouts();
    let cols = layouts
        .iter()
        .copied()
        .find(|l| l.len() == header.len() && l.iter().all(|c| header.contains(&c.0)))
        .unwrap_or(layouts[0]);
    let missing: Vec<&str> = cols
        .iter()
        .map(|c| c.0)
        .filter(|c| !header.contains(c))
        .collect();
    let extra: Vec<&str> = header
        .iter()
        .copied()
        .filter(|h| !cols.iter().any(|c| c.0 == *h))
        .collect();
    if header.is_empty() || !missing.is_empty() || !extra.is_empty() {
        return Err(bad(
            name,
            None,
            format!(
                "the header does not match {}: missing {missing:?}, unknown {extra:?} (expected {:?}{})",
                table.name(),
                cols.iter().map(|c| c.0).collect::<Vec<_>>(),
                if layouts.len() > 1 {
                    ", or an older layout: see the import guide"
                } else {
                    ""
                }
            ),
        ));
    }
    if let Some(dup) = (0..header.len()).find(|&i| header[..i].contains(&header[i])) {
        return Err(bad(
            name,
            None,
            format!("column {:?} appears twice", header[dup]),
        ));
    }
    Ok((
        cols,
        cols.iter()
            .map(|c| header.iter().position(|h| *h == c.0).expect("checked"))
            .collect(),
    ))
}

/// One data row, checked: its day (the file's start when the table has no
/// day column), its numbers and its texts, by the table's column names.
struct CsvRow<'r> {
    day: Date,
    columns: &'static [(&'static str, Col)],
    nums: [u64; 16],
    texts: Vec<&'r str>,
}

impl CsvRow<'_> {
    fn num(&self, c: &str) -> u64 {
        self.nums[self
            .columns
            .iter()
            .position(|x| x.0 == c)
            .expect("a column")]
    }

    fn text(&self, c: &str) -> &str {
        self.texts[self
            .columns
            .iter()
            .position(|x| x.0 == c)
            .expect("a column")]
    }
}

/// Parses and checks the fields of data row `row` (1-based) of a file
/// whose header has `columns` (a layout of its table) at `at`.
fn parse_row<'r>(
    name: &str,
    row: u64,
    columns: Layout,
    at: &[usize],
    rec: &'r csv::StringRecord,
    (start, end): (Date, Date),
) -> Result<CsvRow<'r>, Bad> {
    let mut parsed = CsvRow {
        day: start,
        columns,
        nums: [0; 16],
        texts: Vec::with_capacity(columns.len()),
    };
    for (i, (col, kind)) in columns.iter().enumerate() {
        let v = &rec[at[i]];
        parsed.texts.push(v);
        let fail = |what: &str| bad(name, Some(row), format!("{col}: {v:?} is not {what}"));
        match kind {
            Col::Day => {
                let day = v
                    .parse::<Date>()
                    .ok()
                    .filter(|_| v.len() == 10)
                    .ok_or_else(|| fail("a date (YYYY-MM-DD)"))?;
                if day < start || day > end {
                    return Err(bad(
                        name,
                        Some(row),
                        format!("date {day} is outside the file's range {start} to {end}"),
                    ));
                }
                parsed.day = day;
            }
            Col::Text => {}
            Col::Num => parsed.nums[i] = v.parse().map_err(|_| fail("an unsigned integer"))?,
            Col::Num32 => {
                parsed.nums[i] = u64::from(
                    v.parse::<u32>()
                        .map_err(|_| fail("an unsigned 32-bit integer"))?,
                )
            }
            Col::NumOrNull => {
                if !(v.is_empty() || v == "\\N") {
                    parsed.nums[i] = v
                        .parse()
                        .map_err(|_| fail("an unsigned integer or empty"))?;
                }
            }
        }
    }
    Ok(parsed)
}

/// Adds a checked row of `table` (from a file of `range`) to what is read
/// so far; the error is the reason the row is refused.
fn apply_row(
    table: Table,
    r: &CsvRow<'_>,
    (start, end): (Date, Date),
    acc: &mut Acc,
) -> Result<(), String> {
    let day = r.day;
    acc.first = Some(acc.first.map_or(start, |f| f.min(start)));
    acc.last = Some(acc.last.map_or(end, |l| l.max(end)));
    let visitors = r.num("visitors");
    let one = match table {
        Table::Visitors => {
            if !acc.seen_days.insert(day) {
                return Err(format!("date {day} appears twice"));
            }
            let d = acc.days.entry(day).or_insert_with(|| ImportedDay {
                day,
                ..Default::default()
            });
            d.visitors = visitors;
            d.pageviews = r.num("pageviews");
            d.bounces = r.num("bounces");
            d.visits = r.num("visits");
            d.visit_duration_s = r.num("visit_duration");
            None
        }
        Table::Sources => {
            let pv = r.num("pageviews");
            for (dim, col) in [
                (Dim::Source, "source"),
                (Dim::Referrer, "referrer"),
                (Dim::UtmSource, "utm_source"),
                (Dim::UtmMedium, "utm_medium"),
                (Dim::UtmCampaign, "utm_campaign"),
                (Dim::UtmContent, "utm_content"),
                (Dim::UtmTerm, "utm_term"),
            ] {
                acc.value(day, dim, opt(r.text(col)), visitors, pv);
            }
            None
        }
        Table::Pages => Some((Dim::Page, opt(r.text("page")), "pageviews")),
        Table::EntryPages => Some((Dim::EntryPage, opt(r.text("entry_page")), "entrances")),
        Table::ExitPages => Some((Dim::ExitPage, opt(r.text("exit_page")), "exits")),
        Table::Locations => Some((Dim::Country, country(r.text("country")), "pageviews")),
        Table::Devices => Some((Dim::Screen, screen(r.text("device")), "pageviews")),
        Table::Browsers => Some((Dim::Browser, opt(r.text("browser")), "pageviews")),
        Table::OperatingSystems => Some((Dim::Os, opt(r.text("operating_system")), "pageviews")),
        Table::CustomEvents => {
            let events = r.num("events");
            acc.days
                .entry(day)
                .or_insert_with(|| ImportedDay {
                    day,
                    ..Default::default()
                })
                .events += events;
            Some((Dim::Event, opt(r.text("name")), "events"))
        }
    };
    if let Some((dim, value, count)) = one {
        acc.value(day, dim, value, visitors, r.num(count));
    }
    if acc.values.len() > MAX_VALUES {
        return Err(format!(
            "more than {MAX_VALUES} distinct (day, dimension, value) rows"
        ));
    }
    Ok(())
}

/// Remembers the last byte read (to tell a file that ends mid-line).
struct LastByte<'a, R: Read> {
    inner: &'a mut R,
    last: &'a mut Option<u8>,
}

impl<R: Read> Read for LastByte<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            *self.last = Some(buf[n - 1]);
        }
        Ok(n)
    }
}

/// Counts bytes and refuses to read past [`MAX_FILE_BYTES`].
struct Capped<R: Read> {
    inner: R,
    n: u64,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.n += k as u64;
        if self.n > MAX_FILE_BYTES {
            return Err(std::io::Error::other(format!(
                "larger than {MAX_FILE_BYTES} bytes"
            )));
        }
        Ok(k)
    }
}

/// One file of the export: where to read it.
enum Source {
    File(PathBuf),
    Zip(zip::Entry),
}

/// Reads and checks every file of the export at `path` (a directory or a zip).
pub fn read_export(path: &Path) -> Result<(ImportedSet, Vec<(String, u64)>), Bad> {
    let shown = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|e| bad(&shown, None, e.to_string()))?;
    let mut zip = None;
    let mut sources: Vec<(String, Source)> = if meta.is_dir() {
        let mut v = Vec::new();
        for e in std::fs::read_dir(path).map_err(|e| bad(&shown, None, e.to_string()))? {
            let e = e.map_err(|e| bad(&shown, None, e.to_string()))?;
            v.push((
                e.file_name().to_string_lossy().into_owned(),
                Source::File(e.path()),
            ));
        }
        v
    } else {
        let mut f = File::open(path).map_err(|e| bad(&shown, None, e.to_string()))?;
        let entries = zip::entries(&mut f).map_err(|e| bad(&shown, None, e))?;
        zip = Some(f);
        entries
            .into_iter()
            .map(|e| (e.name.clone(), Source::Zip(e)))
            .collect()
    };
    sources.sort_by(|a, b| a.0.cmp(&b.0));
    if sources.len() > MAX_FILES {
        return Err(bad(
            &shown,
            None,
            format!("{} files, at most {MAX_FILES}", sources.len()),
        ));
    }
    let mut tables: Vec<(Table, String, (Date, Date), Source)> = Vec::new();
    for (name, src) in sources {
        let base = name.rsplit('/').next().unwrap_or(&name).to_owned();
        let Some((table, start, end)) = parse_name(&base) else {
            return Err(bad(
                &name,
                None,
                "not a file of Plausible's CSV export (imported_<table>_<YYYYMMDD>_<YYYYMMDD>.csv, \
                 with a table among visitors, sources, pages, entry_pages, exit_pages, locations, \
                 devices, browsers, operating_systems, custom_events)",
            ));
        };
        if start > end {
            return Err(bad(
                &name,
                None,
                format!("the range {start} to {end} is inverted"),
            ));
        }
        if let Some(other) = tables.iter().find(|t| t.0 == table) {
            return Err(bad(
                &name,
                None,
                format!("a second {} file beside {}", table.name(), other.1),
            ));
        }
        tables.push((table, name, (start, end), src));
    }
    if !tables.iter().any(|t| t.0 == Table::Visitors) {
        return Err(bad(
            &shown,
            None,
            "no imported_visitors file: it holds the totals every other table adds to",
        ));
    }
    let mut acc = Acc::default();
    let mut counts = Vec::new();
    tables.sort_by_key(|t| t.0);
    for (table, name, range, src) in tables {
        let rows = match src {
            Source::File(p) => {
                let f = File::open(&p).map_err(|e| bad(&name, None, e.to_string()))?;
                read_csv(&name, table, range, Capped { inner: f, n: 0 }, &mut acc)?
            }
            Source::Zip(entry) => {
                let f = zip.as_mut().expect("a zip");
                let inner = zip::open(f, &entry).map_err(|e| bad(&name, None, e))?;
                let r = Capped { inner, n: 0 };
                read_csv(&name, table, range, r, &mut acc)?
            }
        };
        counts.push((name, rows));
    }
    let (first_day, last_day) = (
        acc.first.expect("the visitors file sets the range"),
        acc.last.expect("the visitors file sets the range"),
    );
    let mut values: Vec<ImportedValue> = acc
        .values
        .into_iter()
        .map(|((day, dim, value), (visitors, count))| ImportedValue {
            day,
            dim: Dim::parse(dim).expect("a dimension's own name"),
            value,
            visitors,
            count,
        })
        .collect();
    values.sort_by(|a, b| (a.day, a.dim.name(), &a.value).cmp(&(b.day, b.dim.name(), &b.value)));
    Ok((
        ImportedSet {
            first_day,
            last_day,
            days: acc.days.into_values().collect(),
            values,
        },
        counts,
    ))
}

/// The import as sent to a running daemon (`POST /import-plausible`).
#[derive(Serialize, Deserialize)]
pub struct ImportBody {
    pub site: String,
    pub first_day: String,
    pub last_day: String,
    /// `[day, visitors, pageviews, events, visits, bounces, visit_duration_s]`.
    pub days: Vec<(String, u64, u64, u64, u64, u64, u64)>,
    /// `[day, dimension, value, visitors, count]`.
    pub values: Vec<(String, String, Option<String>, u64, u64)>,
}

impl ImportBody {
    /// The body that carries `s` for `site`.
    pub fn of(site: &str, s: &ImportedSet) -> ImportBody {
        ImportBody {
            site: site.to_owned(),
            first_day: s.first_day.to_string(),
            last_day: s.last_day.to_string(),
            days: s
                .days
                .iter()
                .map(|d| {
                    (
                        d.day.to_string(),
                        d.visitors,
                        d.pageviews,
                        d.events,
                        d.visits,
                        d.bounces,
                        d.visit_duration_s,
                    )
                })
                .collect(),
            values: s
                .values
                .iter()
                .map(|v| {
                    (
                        v.day.to_string(),
                        v.dim.name().to_owned(),
                        v.value.clone(),
                        v.visitors,
                        v.count,
                    )
                })
                .collect(),
        }
    }

    /// Back into a set (the daemon's side); an error names the bad field.
    pub fn into_set(self) -> Result<(String, ImportedSet), String> {
        let date = |s: &str| s.parse::<Date>().map_err(|e| format!("{s:?}: {e}"));
        let mut days = Vec::with_capacity(self.days.len());
        for (d, visitors, pageviews, events, visits, bounces, dur) in self.days {
            days.push(ImportedDay {
                day: date(&d)?,
                visitors,
                pageviews,
                events,
                visits,
                bounces,
                visit_duration_s: dur,
            });
        }
        let mut values = Vec::with_capacity(self.values.len());
        for (d, dim, value, visitors, count) in self.values {
            values.push(ImportedValue {
                day: date(&d)?,
                dim: Dim::parse(&dim).ok_or_else(|| format!("no dimension {dim:?}"))?,
                value,
                visitors,
                count,
            });
        }
        Ok((
            self.site,
            ImportedSet {
                first_day: date(&self.first_day)?,
                last_day: date(&self.last_day)?,
                days,
                values,
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hitvault_store::stats::{Interval, Row, Window};
    use hitvault_store::{Store, StoreOptions};

    /// The hand-written export in `tests/fixtures/plausible` (its numbers
    /// are summed by hand below).
    fn fixture() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/plausible")
    }

    /// A copy of the fixture to damage.
    fn copy() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for e in std::fs::read_dir(fixture()).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), d.path().join(e.file_name())).unwrap();
        }
        d
    }

    fn refused(dir: &Path, mentions: &[&str]) {
        let e = match read_export(dir) {
            Ok(_) => panic!("{} was read", dir.display()),
            Err(e) => e.to_string(),
        };
        for m in mentions {
            assert!(e.contains(m), "{m:?} not in {e}");
        }
    }

    fn edit(dir: &Path, table: &str, f: impl Fn(String) -> String) {
        let p = dir.join(format!("imported_{table}_20240301_20240302.csv"));
        let t = std::fs::read_to_string(&p).unwrap();
        std::fs::write(&p, f(t)).unwrap();
    }

    fn row(v: Option<&str>, visitors: u64, count: u64) -> (Option<String>, u64, u64) {
        (v.map(str::to_owned), visitors, count)
    }

    /// The fixture into a store, and the overview of its two days.
    #[test]
    fn fixture_export_gives_the_overview_summed_by_hand() {
        let (set, counts) = read_export(&fixture()).unwrap();
        assert_eq!(counts.len(), 10);
        assert_eq!(counts.iter().map(|c| c.1).sum::<u64>(), 2 + 9 * 3);
        assert_eq!(
            (set.first_day.to_string(), set.last_day.to_string()),
            ("2024-03-01".into(), "2024-03-02".into())
        );
        let data = tempfile::tempdir().unwrap();
        let mut store = Store::open(data.path(), &StoreOptions::default()).unwrap();
        store.upsert_site("ex.test", &[], "config").unwrap();
        store.replace_imported("ex.test", &set).unwrap();
        let stats = store.stats().unwrap();
        let id = stats.site_id("ex.test").unwrap().unwrap();
        let w = |from: &str, to: &str| Window {
            site_id: id,
            from: from.parse().unwrap(),
            to: to.parse().unwrap(),
            tz: jiff::tz::TimeZone::UTC,
        };
        let panels: Vec<Dim> = hitvault_store::stats::PANELS.to_vec();
        let (o, info) = stats
            .overview_with_imported(
                &w("2024-03-01T00:00:00Z", "2024-03-03T00:00:00Z"),
                &w("2024-02-28T00:00:00Z", "2024-03-01T00:00:00Z"),
                &[],
                Interval::Day,
                &panels,
                10,
            )
            .unwrap();
        assert!(info.included && info.in_series && info.days == 2);
        // visitors 10 + 5, pageviews 30 + 9, events 3 + 1 + 2, visits 12 + 6,
        // bounces 4 + 1, duration (600 + 300) / 18, views 39 / 18.
        let k = &o.kpis;
        assert_eq!(
            (k.visitors, k.pageviews, k.events, k.sessions, k.bounces),
            (15, 39, 6, 18, 5)
        );
        assert!((k.bounce_rate - 5.0 / 18.0).abs() < 1e-9);
        assert!((k.avg_duration_s - 50.0).abs() < 1e-9);
        assert!((k.views_per_visit - 39.0 / 18.0).abs() < 1e-9);
        let series: Vec<(u64, u64, u64)> = o
            .series
            .iter()
            .map(|p| (p.visitors, p.pageviews, p.sessions))
            .collect();
        assert_eq!(series, [(10, 30, 12), (5, 9, 6)]);
        let panel = |d: Dim| -> Vec<(Option<String>, u64, u64)> {
            let rows: &Vec<Row> = &o.breakdowns.iter().find(|b| b.0 == d).unwrap().1;
            rows.iter()
                .map(|r| (r.value.clone(), r.visitors, r.count))
                .collect()
        };
        assert_eq!(
            panel(Dim::Page),
            [row(Some("/"), 7 + 5, 20 + 9), row(Some("/pricing"), 3, 10)]
        );
        assert_eq!(
            panel(Dim::Source),
            [
                row(None, 6, 18),
                row(Some("Newsletter"), 5, 9),
                row(Some("Google"), 4, 12)
            ]
        );
        assert_eq!(
            panel(Dim::Referrer),
            [
                row(None, 11, 27),
                row(Some("https://www.google.com/"), 4, 12)
            ]
        );
        assert_eq!(
            panel(Dim::UtmCampaign),
            [row(None, 10, 30), row(Some("spring, 2024"), 5, 9)]
        );
        assert_eq!(
            panel(Dim::UtmMedium),
            [row(None, 10, 30), row(Some("email"), 5, 9)]
        );
        assert_eq!(panel(Dim::UtmContent), [row(None, 15, 39)]);
        assert_eq!(
            panel(Dim::EntryPage),
            [row(Some("/"), 14, 17), row(Some("/pricing"), 1, 1)]
        );
        assert_eq!(
            panel(Dim::ExitPage),
            [row(Some("/"), 12, 14), row(Some("/pricing"), 3, 4)]
        );
        assert_eq!(
            panel(Dim::Country),
            [row(Some("DE"), 11, 29), row(Some("FR"), 4, 10)]
        );
        assert_eq!(
            panel(Dim::Screen),
            [row(Some("desktop"), 12, 31), row(Some("mobile"), 3, 8)]
        );
        assert_eq!(
            panel(Dim::Browser),
            [row(Some("Firefox"), 11, 27), row(Some("Chrome"), 4, 12)]
        );
        assert_eq!(
            panel(Dim::Os),
            [row(Some("Linux"), 11, 27), row(Some("Android"), 4, 12)]
        );
        assert_eq!(
            panel(Dim::Event),
            [
                row(Some("Signup"), 3, 4),
                row(Some("Outbound Link: Click"), 1, 2)
            ]
        );
        // Plausible has no such columns: these panels get nothing.
        assert!(panel(Dim::Device).is_empty() && panel(Dim::Language).is_empty());
    }

    #[test]
    fn bad_files_are_refused_with_file_row_and_reason() {
        let d = copy();
        edit(d.path(), "visitors", |t| {
            t.replace("2024-03-02,5,", "2024-03-02,5O,")
        });
        refused(
            d.path(),
            &[
                "imported_visitors_20240301_20240302.csv, row 2",
                "visitors: \"5O\" is not an unsigned integer",
            ],
        );

        let d = copy();
        edit(d.path(), "visitors", |t| {
            t.replacen("pageviews", "page_views", 1)
        });
        refused(
            d.path(),
            &[
                "imported_visitors_20240301_20240302.csv",
                "missing [\"pageviews\"], unknown [\"page_views\"]",
            ],
        );

        let d = copy();
        edit(d.path(), "pages", |t| t[..t.len() - 9].to_owned());
        refused(
            d.path(),
            &[
                "imported_pages_20240301_20240302.csv, row 3",
                "5 fields, the header has 8",
            ],
        );

        let d = copy();
        edit(d.path(), "pages", |t| t.trim_end().to_owned());
        refused(
            d.path(),
            &["imported_pages_20240301_20240302.csv", "no line end"],
        );

        let d = copy();
        edit(d.path(), "sources", |t| {
            t.replace("2024-03-02,News", "2024-03-03,News")
        });
        refused(
            d.path(),
            &[
                "imported_sources_20240301_20240302.csv, row 3",
                "outside the file's range",
            ],
        );

        let d = copy();
        edit(d.path(), "sources", |t| t.replace(",300,1\n", ",300,-1\n"));
        refused(
            d.path(),
            &["row 2", "bounces: \"-1\" is not an unsigned 32-bit integer"],
        );

        let d = copy();
        std::fs::write(d.path().join("notes.txt"), "hello").unwrap();
        refused(
            d.path(),
            &["notes.txt", "not a file of Plausible's CSV export"],
        );

        let d = copy();
        std::fs::remove_file(d.path().join("imported_visitors_20240301_20240302.csv")).unwrap();
        refused(d.path(), &["no imported_visitors file"]);

        let d = copy();
        edit(d.path(), "visitors", |t| t + "2024-03-02,1,1,1,1,1\n");
        refused(d.path(), &["row 3", "date 2024-03-02 appears twice"]);
    }

    /// Every layout Plausible has written for `imported_pages` is read, to
    /// the same page panel; a header that mixes two layouts is refused,
    /// naming what differs from the newest one.
    #[test]
    fn every_layout_of_imported_pages_is_read() {
        let pages = |text: &str| {
            let d = copy();
            edit(d.path(), "pages", |_| text.to_owned());
            let (set, _) = read_export(d.path()).unwrap();
            let mut rows: Vec<(String, String, u64, u64)> = set
                .values
                .iter()
                .filter(|v| v.dim == Dim::Page)
                .map(|v| {
                    let p = v.value.clone().unwrap_or_default();
                    (v.day.to_string(), p, v.visitors, v.count)
                })
                .collect();
            rows.sort();
            rows
        };
        let want = pages(
            "date,hostname,page,visits,visitors,pageviews\n\
             2024-03-01,ex.test,/,8,7,20\n\
             2024-03-01,ex.test,/pricing,4,3,10\n",
        );
        assert_eq!(
            want,
            [
                ("2024-03-01".into(), "/".into(), 7, 20),
                ("2024-03-01".into(), "/pricing".into(), 3, 10)
            ]
        );
        for text in [
            "date,hostname,page,visits,visitors,pageviews,scroll_depth,pageleave_visitors\n\
             2024-03-01,ex.test,/,8,7,20,,0\n\
             2024-03-01,ex.test,/pricing,4,3,10,55,2\n",
            "visitors,date,hostname,page,visits,pageviews,total_scroll_depth,total_scroll_depth_visits\n\
             7,2024-03-01,ex.test,/,8,20,0,0\n\
             3,2024-03-01,ex.test,/pricing,4,10,110,2\n",
            "date,hostname,page,visits,visitors,pageviews,total_scroll_depth,total_scroll_depth_visits,\
             total_time_on_page,total_time_on_page_visits\n\
             2024-03-01,ex.test,/,8,7,20,0,0,,\n\
             2024-03-01,ex.test,/pricing,4,3,10,110,2,95,3\n",
        ] {
            assert_eq!(pages(text), want, "{text}");
        }
        let d = copy();
        edit(d.path(), "pages", |_| {
            "date,hostname,page,visits,visitors,pageviews,scroll_depth,total_scroll_depth_visits\n"
                .to_owned()
        });
        refused(
            d.path(),
            &[
                "imported_pages_20240301_20240302.csv",
                "unknown [\"scroll_depth\"]",
                "or an older layout",
            ],
        );
        let d = copy();
        edit(d.path(), "pages", |_| {
            "date,hostname,page,visits,visitors,pageviews,total_scroll_depth,total_scroll_depth_visits,\
             total_time_on_page,total_time_on_page_visits\n\
             2024-03-01,ex.test,/,8,7,20,0,0,x,1\n"
                .to_owned()
        });
        refused(
            d.path(),
            &[
                "row 1",
                "total_time_on_page: \"x\" is not an unsigned integer",
            ],
        );
    }

    #[test]
    fn file_names_name_a_table_and_a_range() {
        let (t, a, b) = parse_name("imported_pages_20240101_20240131.csv").unwrap();
        assert_eq!(t, Table::Pages);
        assert_eq!(
            (a.to_string(), b.to_string()),
            ("2024-01-01".into(), "2024-01-31".into())
        );
        assert_eq!(
            parse_name("operating_systems_20240101_20240131.csv")
                .unwrap()
                .0,
            Table::OperatingSystems
        );
        for bad in [
            "imported_pages_20240101.csv",
            "imported_pagez_20240101_20240131.csv",
            "imported_pages_20241301_20240131.csv",
            "imported_pages_20240101_20240131.txt",
            "pages.csv",
        ] {
            assert!(parse_name(bad).is_none(), "{bad}");
        }
    }
}
