//! The audit log's reading routes: the admins' page, the export and the
//! control socket's list (see [`super`] for the table and parameters).

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::Arc;

use axum::extract::RawQuery;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hitvault_accounts::audit::{AuditError, AuditLog, Entry, Filter, MAX_LIMIT};
use serde_json::Value;

use super::{Audit, Kind};
use crate::dashboard::html::{esc, page};
use crate::error::{AdminError, ApiError};
use crate::export::Prepared;
use crate::rules::{Face, Need, Routes};

/// The export's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Ndjson,
    Csv,
}

/// The parameters of the reading routes (see the module doc).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub filter: Filter,
    pub limit: Option<usize>,
    pub format: Option<Format>,
}

/// A time parameter: RFC 3339, or a date (midnight UTC); unix ms.
pub fn parse_time(v: &str) -> Result<u64, String> {
    let ts = match v.parse::<jiff::Timestamp>() {
        Ok(t) => t,
        Err(_) => v
            .parse::<jiff::civil::Date>()
            .ok()
            .and_then(|d| d.to_zoned_datetime(jiff::tz::TimeZone::UTC).ok())
            .map(|z| z.timestamp())
            .ok_or_else(|| format!("{v:?} is neither an RFC 3339 time nor a date (YYYY-MM-DD)"))?,
    };
    u64::try_from(ts.as_millisecond()).map_err(|_| format!("{v:?} is before 1970"))
}

impl AuditQuery {
    /// Parses a URL query; unknown parameters and bad values are refused
    /// with (parameter, reason).
    pub fn parse(q: Option<&str>) -> Result<AuditQuery, (String, String)> {
        let mut out = AuditQuery::default();
        for (k, v) in crate::stats_api::form_urlencoded(q.unwrap_or("")) {
            let bad = |m: String| (k.clone(), m);
            match k.as_str() {
                "actor" if !v.is_empty() => out.filter.actor = Some(v),
                "kind" if !v.is_empty() => out.filter.kinds.push(v.parse().map_err(bad)?),
                "from" | "since" if !v.is_empty() => {
                    out.filter.since_ms = Some(parse_time(&v).map_err(bad)?)
                }
                "until" if !v.is_empty() => {
                    out.filter.until_ms = Some(parse_time(&v).map_err(bad)?)
                }
                "site" if !v.is_empty() => out.filter.site = Some(v),
                "before" if !v.is_empty() => {
                    out.filter.before_seq = Some(
                        v.parse()
                            .map_err(|_| bad(format!("{v:?} is not an entry's seq")))?,
                    )
                }
                "limit" if !v.is_empty() => {
                    out.limit = Some(
                        v.parse::<usize>()
                            .ok()
                            .filter(|n| (1..=MAX_LIMIT).contains(n))
                            .ok_or_else(|| bad(format!("1 to {MAX_LIMIT}, not {v:?}")))?,
                    )
                }
                "format" => {
                    out.format = Some(match v.as_str() {
                        "ndjson" => Format::Ndjson,
                        "csv" => Format::Csv,
                        _ => return Err(bad(format!("ndjson or csv, not {v:?}"))),
                    })
                }
                "actor" | "kind" | "from" | "since" | "until" | "site" | "before" | "limit" => {}
                _ => return Err(bad("unknown parameter".into())),
            }
        }
        Ok(out)
    }
}

fn bad_param((p, m): (String, String)) -> Response {
    ApiError::bad_parameter(&p, m).into_response()
}

/// An entry's time, for people: `2026-12-07 12:45:55 UTC`.
pub fn time_text(ms: u64) -> String {
    jiff::Timestamp::from_millisecond(ms as i64)
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

/// An entry's detail as one line of JSON.
pub fn detail_text(e: &Entry) -> String {
    if e.detail.is_empty() {
        String::new()
    } else {
        Value::Object(e.detail.clone()).to_string()
    }
}

/// Runs a read of the log on a blocking thread.
async fn read<T: Send + 'static>(
    log: Arc<AuditLog>,
    f: impl FnOnce(&AuditLog) -> Result<T, AuditError> + Send + 'static,
) -> Result<T, Response> {
    match tokio::task::spawn_blocking(move || f(&log)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(ApiError::internal("reading the audit log", e).into_response()),
        Err(e) => Err(ApiError::internal("an audit task", e).into_response()),
    }
}

// ---- the dashboard page -------------------------------------------------

/// Entries on a page of `/admin/audit`.
pub const PAGE_ROWS: usize = 50;

/// `/admin/audit`, under the dashboard's gate: for an instance admin (or
/// the operator).
pub(crate) fn page_routes() -> Routes {
    Routes::new(Face::Page).get("/admin/audit", Need::Admin, audit_page)
}

/// `/api/v1/audit`, under the API's gate: for an instance admin (or the
/// operator, or an admin's token with the admin scope).
pub(crate) fn api_routes() -> Routes {
    Routes::new(Face::Json).get("/api/v1/audit", Need::Admin, export)
}

/// `GET /audit` of the control socket.
pub(crate) fn control_routes() -> Routes {
    Routes::new(Face::Json).get("/audit", Need::Admin, control_list)
}

async fn audit_page(
    axum::Extension(Audit(log)): axum::Extension<Audit>,
    RawQuery(q): RawQuery,
) -> Response {
    use crate::dashboard::html as h;
    let query = match AuditQuery::parse(q.as_deref()) {
        Ok(q) => q,
        Err((p, m)) => {
            return crate::dashboard::html(
                StatusCode::BAD_REQUEST,
                h::message_page("Bad request", &format!("Parameter {p:?}: {m}")),
            );
        }
    };
    let f = query.filter.clone();
    let limit = query.limit.unwrap_or(PAGE_ROWS).min(PAGE_ROWS);
    let entries = match read(log, move |l| l.query(&f, limit)).await {
        Ok(e) => e,
        Err(r) => return r,
    };
    crate::dashboard::html(
        StatusCode::OK,
        render(&query, &entries, limit, q.as_deref()),
    )
}

/// The query string of the filter form's values (for the export link and
/// the next page).
fn filter_query(q: Option<&str>, drop: &[&str]) -> String {
    crate::stats_api::form_urlencoded(q.unwrap_or(""))
        .into_iter()
        .filter(|(k, v)| !drop.contains(&k.as_str()) && !v.is_empty())
        .map(|(k, v)| format!("{}={}", enc(&k), enc(&v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn render(q: &AuditQuery, entries: &[Entry], limit: usize, raw: Option<&str>) -> String {
    let f = &q.filter;
    let value = |v: Option<&str>| esc(v.unwrap_or(""));
    let raw_of = |k: &str| {
        crate::stats_api::form_urlencoded(raw.unwrap_or(""))
            .into_iter()
            .find(|(n, _)| n == k || (k == "from" && n == "since"))
            .map(|(_, v)| v)
    };
    let mut m = String::from(
        "<h1>Audit log</h1><p>Who did what on this instance: sign-ins, factor and user changes, \
         sites, goals and funnels, exports, imports, backups and prunes. It is the operator's \
         security record, kept with the client's address, never pruned.</p>",
    );
    let chosen = f.kinds.first().map(|k| k.as_str()).unwrap_or("");
    let mut kinds = String::from("<option value=\"\">any</option>");
    for k in Kind::ALL {
        let sel = if k.as_str() == chosen {
            " selected"
        } else {
            ""
        };
        let _ = write!(kinds, "<option value=\"{k}\"{sel}>{k}</option>");
    }
    let _ = write!(
        m,
        "<form method=\"get\" action=\"/admin/audit\" class=\"controls\" aria-label=\"Filter the audit log\">\
         <label for=\"audit-actor\">Actor (a user name, or local, cli, system, token, share, anonymous)\
         <input type=\"text\" name=\"actor\" id=\"audit-actor\" maxlength=\"64\" value=\"{actor}\"></label>\
         <label for=\"audit-kind\">Kind<select name=\"kind\" id=\"audit-kind\">{kinds}</select></label>\
         <label for=\"audit-from\">From<input type=\"text\" name=\"from\" id=\"audit-from\" \
         placeholder=\"2026-01-31\" value=\"{from}\"></label>\
         <label for=\"audit-until\">Until<input type=\"text\" name=\"until\" id=\"audit-until\" \
         placeholder=\"2026-02-01T00:00:00Z\" value=\"{until}\"></label>\
         <button type=\"submit\">Show</button></form>",
        actor = value(f.actor.as_deref()),
        from = value(raw_of("from").as_deref()),
        until = value(raw_of("until").as_deref()),
    );
    let base = filter_query(raw, &["before", "limit", "format"]);
    let amp = if base.is_empty() { "" } else { "&" };
    let _ = write!(
        m,
        "<p>Export what this filter selects: \
         <a href=\"/api/v1/audit?format=csv{amp}{b}\" id=\"audit-csv\">CSV</a>, \
         <a href=\"/api/v1/audit?format=ndjson{amp}{b}\" id=\"audit-ndjson\">NDJSON</a>.</p>",
        b = esc(&base),
    );
    if entries.is_empty() {
        m.push_str("<p class=\"empty\">No entry matches.</p>");
    } else {
        m.push_str(
            "<table class=\"audit\" id=\"audit\"><caption class=\"sr-only\">Audit entries, newest first</caption>\
             <thead><tr><th scope=\"col\">#</th><th scope=\"col\">Time</th><th scope=\"col\">Actor</th>\
             <th scope=\"col\">Address</th><th scope=\"col\">Kind</th><th scope=\"col\">Site</th>\
             <th scope=\"col\">Detail</th></tr></thead><tbody>",
        );
        for e in entries {
            let _ = write!(
                m,
                "<tr data-seq=\"{seq}\" data-kind=\"{kind}\"><td class=\"num\">{seq}</td><td>{at}</td>\
                 <td>{actor}</td><td>{addr}</td><td>{kind}</td><td>{site}</td><td><code>{detail}</code></td></tr>",
                seq = e.seq,
                at = time_text(e.at),
                actor = esc(&e.actor.label()),
                addr = esc(e.address.as_deref().unwrap_or("")),
                kind = e.kind,
                site = esc(e.site.as_deref().unwrap_or("")),
                detail = esc(&detail_text(e)),
            );
        }
        m.push_str("</tbody></table>");
        if entries.len() == limit
            && let Some(last) = entries.last()
        {
            let keep = filter_query(raw, &["before", "format"]);
            let amp = if keep.is_empty() { "" } else { "&" };
            let _ = write!(
                m,
                "<p><a href=\"/admin/audit?{b}{amp}before={seq}\" id=\"audit-older\" rel=\"next\">Older entries</a></p>",
                b = esc(&keep),
                seq = last.seq
            );
        }
    }
    page("Audit log", None, "page-audit", &m)
}

// ---- the export -----------------------------------------------------------

async fn export(
    axum::Extension(Audit(log)): axum::Extension<Audit>,
    RawQuery(q): RawQuery,
) -> Response {
    let query = match AuditQuery::parse(q.as_deref()) {
        Ok(q) => q,
        Err(e) => return bad_param(e),
    };
    let Some(format) = query.format else {
        return ApiError::bad_parameter("format", "format= is required: ndjson or csv")
            .into_response();
    };
    let (filter, limit) = (query.filter, query.limit);
    crate::export::stream_prepared(move || {
        Ok(Prepared {
            media: match format {
                Format::Ndjson => "application/x-ndjson",
                Format::Csv => "text/csv; charset=utf-8",
            },
            headers: vec![(
                "content-disposition",
                format!(
                    "attachment; filename=\"audit.{}\"",
                    match format {
                        Format::Ndjson => "ndjson",
                        Format::Csv => "csv",
                    }
                ),
            )],
            write: Box::new(move |mut out| {
                use crate::dashboard::csv::{field, text_field};
                let mut failed: Option<std::io::Error> = None;
                let mut n = 0usize;
                if format == Format::Csv {
                    let _ = out.write_all(b"seq,at,actor_kind,actor,address,kind,site,detail\r\n");
                }
                log.each(&filter, |e| {
                    if failed.is_some() || limit.is_some_and(|l| n >= l) {
                        return;
                    }
                    n += 1;
                    let r = match format {
                        Format::Ndjson => serde_json::to_writer(&mut out, e)
                            .map_err(std::io::Error::other)
                            .and_then(|()| out.write_all(b"\n")),
                        Format::Csv => {
                            let at = jiff::Timestamp::from_millisecond(e.at as i64)
                                .map(|t| t.to_string())
                                .unwrap_or_default();
                            let row = [
                                e.seq.to_string(),
                                field(&at),
                                field(e.actor.kind()),
                                text_field(&e.actor.label()),
                                text_field(e.address.as_deref().unwrap_or("")),
                                field(e.kind.as_str()),
                                text_field(e.site.as_deref().unwrap_or("")),
                                text_field(&detail_text(e)),
                            ];
                            out.write_all(row.join(",").as_bytes())
                                .and_then(|()| out.write_all(b"\r\n"))
                        }
                    };
                    if let Err(e) = r {
                        failed = Some(e);
                    }
                })
                .map_err(|e| AdminError::Internal(e.to_string()))?;
                if let Some(e) = failed {
                    return Err(AdminError::Internal(e.to_string()));
                }
                out.finish()
                    .map_err(|e| AdminError::Internal(e.to_string()))
            }),
        })
    })
    .await
}

// ---- the control socket -------------------------------------------------

/// Entries `GET /audit` returns without `limit`.
pub const CONTROL_DEFAULT_LIMIT: usize = 100;

async fn control_list(
    axum::Extension(Audit(log)): axum::Extension<Audit>,
    RawQuery(q): RawQuery,
) -> Response {
    let query = match AuditQuery::parse(q.as_deref()) {
        Ok(q) => q,
        Err(e) => return bad_param(e),
    };
    let limit = query.limit.unwrap_or(CONTROL_DEFAULT_LIMIT);
    let f = query.filter;
    match read(log, move |l| l.query(&f, limit)).await {
        Ok(entries) => axum::Json(entries).into_response(),
        Err(r) => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_parsed_and_bad_ones_named() {
        let q = AuditQuery::parse(Some(
            "actor=alice&kind=export&kind=sign_in&from=2026-01-02&until=2026-01-03T00:00:00Z&limit=5&format=csv&before=9",
        ))
        .unwrap();
        assert_eq!(q.filter.actor.as_deref(), Some("alice"));
        assert_eq!(q.filter.kinds, vec![Kind::Export, Kind::SignIn]);
        assert_eq!(q.filter.since_ms, Some(1_767_312_000_000));
        assert_eq!(q.filter.until_ms, Some(1_767_398_400_000));
        assert_eq!(q.filter.before_seq, Some(9));
        assert_eq!((q.limit, q.format), (Some(5), Some(Format::Csv)));
        // The page's empty fields select nothing.
        assert_eq!(
            AuditQuery::parse(Some("actor=&kind=&from=&until=")).unwrap(),
            AuditQuery::default()
        );
        for (bad, param) in [
            ("kind=nope", "kind"),
            ("from=yesterday", "from"),
            ("limit=0", "limit"),
            ("format=xml", "format"),
            ("color=red", "color"),
        ] {
            assert_eq!(AuditQuery::parse(Some(bad)).unwrap_err().0, param, "{bad}");
        }
    }
}
