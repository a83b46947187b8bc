//! The `MANIFEST` of a Takeout and [`verify`].

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::schema::{READ_VERSIONS, TAKEOUT_VERSION, Table, file_name, hex};
use crate::{Format, read};

/// File name of the manifest inside a Takeout directory.
pub const MANIFEST: &str = "MANIFEST";

/// What an export selected. Times are RFC 3339 UTC; `from` inclusive, `until` exclusive.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// Hostnames; empty means every site.
    pub sites: Vec<String>,
    pub from: Option<String>,
    pub until: Option<String>,
}

/// Time of the first and last exported hit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeRange {
    pub first: String,
    pub last: String,
}

/// Smallest and largest hit id exported (version 4 on).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdRange {
    pub min: u64,
    pub max: u64,
}

/// One data file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    pub name: String,
    pub table: String,
    pub rows: u64,
    pub bytes: u64,
    pub sha256: String,
}

/// The `MANIFEST` file (JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`TAKEOUT_VERSION`] of the writer: the layout of tables and columns
    /// (any of [`READ_VERSIONS`] is read).
    pub takeout_version: u32,
    pub format: Format,
    pub hitvault_version: String,
    pub created_at: String,
    pub filter: Filter,
    /// `None` when no hit was exported.
    pub time_range: Option<TimeRange>,
    /// `None` when no hit was exported, and before version 4. An import
    /// into a running daemon reserves the ids up to `max` before the rows
    /// are read; without it, it reads the hits file once more first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hit_ids: Option<IdRange>,
    pub files: Vec<FileEntry>,
}

impl Manifest {
    /// The entry of `table`.
    pub fn file(&self, table: Table) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.table == table.name())
    }

    /// The tables of this manifest's layout version, in import order.
    pub fn tables(&self) -> &'static [Table] {
        Table::of_version(self.takeout_version).unwrap_or(&[])
    }
}

/// Everything wrong with a Takeout directory.
#[derive(Debug, thiserror::Error)]
#[error("{dir} is not a valid Takeout:\n  {}", problems.join("\n  "))]
pub struct VerifyError {
    pub dir: PathBuf,
    pub problems: Vec<String>,
}

/// Reads and parses `dir/MANIFEST`, checking its version and tables.
pub fn read_manifest(dir: &Path) -> Result<Manifest, VerifyError> {
    let fail = |p: String| VerifyError {
        dir: dir.to_owned(),
        problems: vec![p],
    };
    let path = dir.join(MANIFEST);
    let bytes = std::fs::read(&path).map_err(|e| {
        fail(format!(
            "{}: {e} (an export that did not finish has none)",
            path.display()
        ))
    })?;
    let m: Manifest = serde_json::from_slice(&bytes)
        .map_err(|e| fail(format!("{}: not a Takeout manifest: {e}", path.display())))?;
    let Some(layout) = Table::of_version(m.takeout_version) else {
        return Err(fail(format!(
            "{}: takeout_version {} is not one this hitvault reads ({READ_VERSIONS:?}; it writes {TAKEOUT_VERSION})",
            path.display(),
            m.takeout_version
        )));
    };
    if m.takeout_version < 4 && m.hit_ids.is_some() {
        return Err(fail(format!(
            "{}: hit_ids is new in takeout_version 4, this manifest says {}",
            path.display(),
            m.takeout_version
        )));
    }
    let mut tables: Vec<&str> = m.files.iter().map(|f| f.table.as_str()).collect();
    tables.sort_unstable();
    let mut want: Vec<&str> = layout.iter().map(|t| t.name()).collect();
    want.sort_unstable();
    if tables != want {
        return Err(fail(format!(
            "{}: lists tables {tables:?}, expected one file each for {want:?}",
            path.display()
        )));
    }
    for f in &m.files {
        let expected = file_name(Table::from_name(&f.table).expect("checked"), m.format);
        if f.name != expected {
            return Err(fail(format!(
                "{}: file {:?} should be named {expected:?}",
                path.display(),
                f.name
            )));
        }
    }
    Ok(m)
}

/// The range of hit ids read so far, to check against the manifest's.
#[derive(Debug, Default)]
pub(crate) struct HitIds(Option<IdRange>);

impl HitIds {
    /// Adds the ids of a batch of the hits table.
    pub(crate) fn add(&mut self, batch: &arrow_array::RecordBatch) {
        use arrow_array::cast::AsArray;
        let Some(ids) = batch
            .column_by_name("id")
            .and_then(|c| c.as_primitive_opt::<arrow_array::types::UInt64Type>())
        else {
            return;
        };
        let vals = ids.values();
        if let (Some(&lo), Some(&hi)) = (vals.iter().min(), vals.iter().max()) {
            self.0 = Some(match self.0 {
                Some(r) => IdRange {
                    min: r.min.min(lo),
                    max: r.max.max(hi),
                },
                None => IdRange { min: lo, max: hi },
            });
        }
    }

    /// The range read so far (None: no hit).
    pub(crate) fn range(&self) -> Option<IdRange> {
        self.0
    }

    /// The range read, checked against `m`'s `hit_ids` (from version 4).
    fn check(&self, m: &Manifest) -> Result<(), String> {
        let show = |r: Option<IdRange>| match r {
            Some(r) => format!("{}..{}", r.min, r.max),
            None => "none".into(),
        };
        if m.takeout_version >= 4 && self.0 != m.hit_ids {
            return Err(format!(
                "hit ids {}, the manifest says {}",
                show(self.0),
                show(m.hit_ids)
            ));
        }
        Ok(())
    }
}

/// Reads the file of `table` listed in `m` from `dir`, every row checked
/// (see [`read::read_table`]), handing each batch to `sink`, and checks
/// it against the manifest: its row count and, for the hits, their id
/// range (version 4). Returns the rows and the hits' id range; an error
/// names the file.
pub fn read_listed(
    dir: &Path,
    m: &Manifest,
    table: Table,
    sink: &mut dyn FnMut(arrow_array::RecordBatch) -> Result<(), String>,
) -> Result<(u64, Option<IdRange>), String> {
    let entry = m.file(table).expect("read_manifest checked the tables");
    let path = dir.join(&entry.name);
    let mut ids = HitIds::default();
    let rows = read::read_table(&path, m.format, table, &mut |batch| {
        if table == Table::Hits {
            ids.add(&batch);
        }
        sink(batch)
    })
    .map_err(|e| e.to_string())?;
    if rows != entry.rows {
        return Err(format!(
            "{}: {rows} rows, the manifest says {}",
            path.display(),
            entry.rows
        ));
    }
    if table == Table::Hits {
        ids.check(m)
            .map_err(|p| format!("{}: {p}", path.display()))?;
    }
    Ok((rows, ids.range()))
}

/// Size and SHA-256 (hex) of a file, read in 1 MiB pieces.
pub fn sha256_file(path: &Path) -> std::io::Result<(u64, String)> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((n, hex(&h.finalize())))
}

/// Checks every listed file's size and SHA-256 against the manifest.
pub fn check_files(dir: &Path, m: &Manifest) -> Vec<String> {
    let mut problems = Vec::new();
    for f in &m.files {
        let path = dir.join(&f.name);
        match sha256_file(&path) {
            Err(e) => problems.push(format!("{}: {e}", path.display())),
            Ok((bytes, sha)) => {
                if bytes != f.bytes {
                    problems.push(format!(
                        "{}: {bytes} bytes, the manifest says {}",
                        path.display(),
                        f.bytes
                    ));
                }
                if sha != f.sha256 {
                    problems.push(format!(
                        "{}: SHA-256 {sha}, the manifest says {}",
                        path.display(),
                        f.sha256
                    ));
                }
            }
        }
    }
    problems
}

/// Checks a Takeout: the manifest, then every file's size and SHA-256, then
/// its rows by reading it in its format (every value checked as import
/// does). Extra files in the directory are mismatches too. Returns the
/// manifest when everything agrees.
pub fn verify(dir: &Path) -> Result<Manifest, VerifyError> {
    let m = read_manifest(dir)?;
    let mut problems = check_files(dir, &m);
    for f in &m.files {
        let path = dir.join(&f.name);
        if !path.exists() {
            continue;
        }
        let table = Table::from_name(&f.table).expect("checked by read_manifest");
        if let Err(p) = read_listed(dir, &m, table, &mut |_| Ok(())) {
            problems.push(p);
        }
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name != MANIFEST && !m.files.iter().any(|f| f.name == name) {
                problems.push(format!(
                    "{}: not listed in the manifest",
                    e.path().display()
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(m)
    } else {
        Err(VerifyError {
            dir: dir.to_owned(),
            problems,
        })
    }
}
