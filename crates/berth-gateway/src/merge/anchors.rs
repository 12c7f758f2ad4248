//! The `since` and `before` filters of `GET /containers/json` and `GET /images/json`.
//!
//! They name an object (a container, an image) that lives on one engine: every other
//! engine answers 404 to them. So only the owner of an anchor gets it; the others are
//! asked without it (and without `limit`, which would cut their lists before the
//! window is applied) and their lists are cut here by creation time instead.
//!
//! The router: reads [`ListAnchors::from_query`]; resolves each anchor to its owner and
//! its creation time (inspect: [`created_seconds`]); asks each engine the query of
//! [`ListAnchors::plan`]; applies each engine's [`CreatedWindow`] with [`within`]; then
//! merges as usual (`containers(…, limit_from_query(client's query))`).
//!
//! Lists show creation time in seconds, so an object of another engine created in the
//! same second as the anchor cannot be placed; it is left out of both windows.

use serde_json::Value;

use super::array_items;
use super::query::{go_atoi, pair_key, query_escape, query_unescape};

/// The anchors of a list query: the values of its `since` and `before` filters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ListAnchors {
    /// Only objects created after this one.
    pub(crate) since: Option<String>,
    /// Only objects created before this one.
    pub(crate) before: Option<String>,
}

/// Where an anchor lives and when it was created (Unix seconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ResolvedAnchor {
    /// Index of the engine that owns it.
    pub(crate) owner: usize,
    /// Its creation time.
    pub(crate) created: i64,
}

/// Bounds on `Created` (seconds, exclusive) that an engine's list still needs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct CreatedWindow {
    /// Keep only entries created after this second.
    pub(crate) after: Option<i64>,
    /// Keep only entries created before this second.
    pub(crate) before: Option<i64>,
}

/// What to ask one engine, and how to cut its answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct EngineQuery {
    /// The query string to send (without `?`).
    pub(crate) query: String,
    /// The window to apply to its answer with [`within`].
    pub(crate) window: CreatedWindow,
}

impl ListAnchors {
    /// The anchors in `query`'s `filters` (both the `{"since":{"x":true}}` and the legacy
    /// `{"since":["x"]}` shapes); with several values dockerd keeps one, here the last.
    pub(crate) fn from_query(query: Option<&str>) -> Self {
        let filters = query
            .and_then(|query| super::query::query_value(query, "filters"))
            .and_then(|json| serde_json::from_str::<Value>(&json).ok());
        let last_value = |key: &str| -> Option<String> {
            match filters.as_ref()?.get(key)? {
                Value::Object(values) => values.keys().next_back().cloned(),
                Value::Array(values) => values
                    .iter()
                    .rev()
                    .find_map(Value::as_str)
                    .map(str::to_owned),
                _ => None,
            }
        };
        Self {
            since: last_value("since"),
            before: last_value("before"),
        }
    }

    /// Whether the query names no anchor (then every engine gets the query unchanged).
    pub(crate) fn is_empty(&self) -> bool {
        self.since.is_none() && self.before.is_none()
    }

    /// The query and window for each of `engines` engines, given where the anchors
    /// resolved (`None`: not resolved; then every engine gets that anchor and answers
    /// dockerd's own error for it).
    pub(crate) fn plan(
        &self,
        query: &str,
        engines: usize,
        since: Option<ResolvedAnchor>,
        before: Option<ResolvedAnchor>,
    ) -> Vec<EngineQuery> {
        (0..engines)
            .map(|engine| {
                let foreign =
                    |anchor: Option<ResolvedAnchor>| anchor.filter(|anchor| anchor.owner != engine);
                let (since, before) = (foreign(since), foreign(before));
                if since.is_none() && before.is_none() {
                    return EngineQuery {
                        query: query.to_owned(),
                        window: CreatedWindow::default(),
                    };
                }
                EngineQuery {
                    query: query_without(query, since.is_some(), before.is_some()),
                    window: CreatedWindow {
                        after: since.map(|anchor| anchor.created),
                        before: before.map(|anchor| anchor.created),
                    },
                }
            })
            .collect()
    }
}

/// `query` without the `since` and/or `before` filters and without `limit`. A positive
/// `limit` also means "stopped ones too" to dockerd, so it becomes `all=1`.
fn query_without(query: &str, drop_since: bool, drop_before: bool) -> String {
    let limited = super::lists::limit_from_query(Some(query)).is_some();
    let mut filters_seen = false;
    let mut pairs: Vec<String> = Vec::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        match pair_key(pair).as_deref() {
            Some("limit") => continue,
            Some("all") if limited => continue,
            Some("filters") if !filters_seen => {
                filters_seen = true;
                let raw = pair.split_once('=').map_or("", |(_, value)| value);
                let parsed =
                    query_unescape(raw).and_then(|json| serde_json::from_str::<Value>(&json).ok());
                if let Some(Value::Object(mut filters)) = parsed {
                    if drop_since {
                        filters.remove("since");
                    }
                    if drop_before {
                        filters.remove("before");
                    }
                    let json = Value::Object(filters).to_string();
                    pairs.push(format!("filters={}", query_escape(&json)));
                    continue;
                }
            }
            _ => {}
        }
        pairs.push(pair.to_owned());
    }
    if limited {
        pairs.push("all=1".to_owned());
    }
    pairs.join("&")
}

/// The entries of an engine's list answer inside `window`, by their `Created` seconds.
pub(crate) fn within(list: Value, window: CreatedWindow) -> Value {
    if window == CreatedWindow::default() {
        return list;
    }
    let kept = array_items(list)
        .into_iter()
        .filter(|entry| {
            let Some(created) = entry.get("Created").and_then(created_seconds) else {
                return false;
            };
            window.after.is_none_or(|after| created > after)
                && window.before.is_none_or(|before| created < before)
        })
        .collect();
    Value::Array(kept)
}

/// A `Created` as Unix seconds: an integer (lists) or an RFC 3339 time (inspect:
/// `2026-11-28T22:11:41.108256642Z`, or with an offset).
pub(crate) fn created_seconds(created: &Value) -> Option<i64> {
    match created {
        Value::Number(n) => n.as_i64(),
        Value::String(text) => rfc3339_seconds(text),
        _ => None,
    }
}

fn rfc3339_seconds(text: &str) -> Option<i64> {
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = text.get(range)?;
        digits
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| go_atoi(digits))?
    };
    let bytes = text.as_bytes();
    let separators = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')];
    if separators
        .iter()
        .any(|&(at, want)| !bytes.get(at).is_some_and(|b| b.eq_ignore_ascii_case(&want)))
    {
        return None;
    }
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    let mut rest = text.get(19..)?;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        rest = &fraction[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            if rest.len() != 6 || rest.as_bytes()[3] != b':' {
                return None;
            }
            let hours = go_atoi(rest.get(1..3)?).filter(|h| (0..24).contains(h))?;
            let minutes = go_atoi(rest.get(4..6)?).filter(|m| (0..60).contains(m))?;
            sign * (hours * 3600 + minutes * 60)
        }
    };
    let days = days_from_civil(year, month, day);
    Some(days * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn decoded_filters(query: &str) -> Value {
        let json = super::super::query::query_value(query, "filters").unwrap();
        serde_json::from_str(&json).unwrap()
    }

    #[test]
    fn anchors_are_read_from_both_filter_shapes() {
        // What `docker ps --filter since=c1 --filter before=c9` sends.
        let query = "all=1&filters=%7B%22before%22%3A%7B%22c9%22%3Atrue%7D%2C%22since%22%3A%7B%22c1%22%3Atrue%7D%7D";
        let anchors = ListAnchors::from_query(Some(query));
        assert_eq!(anchors.since.as_deref(), Some("c1"));
        assert_eq!(anchors.before.as_deref(), Some("c9"));
        let legacy = ListAnchors::from_query(Some("filters=%7B%22since%22%3A%5B%22c1%22%5D%7D"));
        assert_eq!(legacy.since.as_deref(), Some("c1"));
        assert_eq!(legacy.before, None);
        assert!(
            ListAnchors::from_query(Some("all=1&filters=%7B%22label%22%3A%5B%22a%22%5D%7D"))
                .is_empty()
        );
        assert!(ListAnchors::from_query(Some("filters=%7Bbroken")).is_empty());
        assert!(ListAnchors::from_query(None).is_empty());
    }

    #[test]
    fn only_the_owner_gets_an_anchor_and_the_others_a_window() {
        let query = format!(
            "limit=2&size=1&filters={}",
            query_escape(r#"{"before":{"c9":true},"label":{"app=web":true}}"#)
        );
        let anchors = ListAnchors::from_query(Some(&query));
        let before = ResolvedAnchor {
            owner: 1,
            created: 1795903901,
        };
        let plan = anchors.plan(&query, 3, None, Some(before));
        assert_eq!(plan[1].query, query);
        assert_eq!(plan[1].window, CreatedWindow::default());
        for other in [&plan[0], &plan[2]] {
            assert_eq!(
                other.window,
                CreatedWindow {
                    after: None,
                    before: Some(1795903901)
                }
            );
            // No anchor, no limit (applied after the window), but stopped ones included
            // as `limit` implied; the other filters kept.
            assert_eq!(
                decoded_filters(&other.query),
                json!({"label": {"app=web": true}})
            );
            assert!(
                other.query.starts_with("size=1&filters="),
                "{}",
                other.query
            );
            assert!(other.query.ends_with("&all=1"), "{}", other.query);
            assert_eq!(
                super::super::query::query_value(&other.query, "limit"),
                None
            );
        }
        // Unresolved anchors go everywhere unchanged (dockerd's 404 is the answer).
        let plan = anchors.plan(&query, 2, None, None);
        assert!(plan.iter().all(|engine| engine.query == query));
    }

    #[test]
    fn anchors_on_two_engines_each_stay_with_their_owner() {
        let query = format!(
            "all=1&filters={}",
            query_escape(r#"{"before":{"b":true},"since":{"a":true}}"#)
        );
        let anchors = ListAnchors::from_query(Some(&query));
        let since = ResolvedAnchor {
            owner: 0,
            created: 100,
        };
        let before = ResolvedAnchor {
            owner: 1,
            created: 200,
        };
        let plan = anchors.plan(&query, 2, Some(since), Some(before));
        assert_eq!(
            decoded_filters(&plan[0].query),
            json!({"since": {"a": true}})
        );
        assert_eq!(
            plan[0].window,
            CreatedWindow {
                after: None,
                before: Some(200)
            }
        );
        assert_eq!(
            decoded_filters(&plan[1].query),
            json!({"before": {"b": true}})
        );
        assert_eq!(
            plan[1].window,
            CreatedWindow {
                after: Some(100),
                before: None
            }
        );
        // No limit in the query: `all` is left as the client sent it.
        assert!(plan[0].query.starts_with("all=1&"));
    }

    #[test]
    fn windows_cut_by_created_seconds_leaving_out_the_anchors_second() {
        let list = json!([
            {"Id": "new", "Created": 300},
            {"Id": "same", "Created": 200},
            {"Id": "mid", "Created": 150},
            {"Id": "old", "Created": 100},
            {"Id": "odd"}
        ]);
        let ids = |list: Value| -> Vec<String> {
            array_items(list)
                .iter()
                .map(|entry| entry["Id"].as_str().unwrap().to_owned())
                .collect()
        };
        let before = CreatedWindow {
            after: None,
            before: Some(200),
        };
        assert_eq!(ids(within(list.clone(), before)), ["mid", "old"]);
        let after = CreatedWindow {
            after: Some(100),
            before: Some(200),
        };
        assert_eq!(ids(within(list.clone(), after)), ["mid"]);
        assert_eq!(within(list.clone(), CreatedWindow::default()), list);
    }

    #[test]
    fn created_times_from_lists_and_inspect() {
        assert_eq!(created_seconds(&json!(1795903901)), Some(1795903901));
        // `docker inspect` of a container created at 1795903901 (list `Created`).
        assert_eq!(
            created_seconds(&json!("2026-11-28T22:11:41.108256642Z")),
            Some(1795903901)
        );
        assert_eq!(created_seconds(&json!("1970-01-01T00:00:00Z")), Some(0));
        assert_eq!(
            created_seconds(&json!("2000-02-29T12:00:00+01:30")),
            Some(951_820_200)
        );
        assert_eq!(created_seconds(&json!("2026-11-28 22:11:41Z")), None);
        assert_eq!(created_seconds(&json!("2026-11-28T22:11:41+0é:00")), None);
        assert_eq!(created_seconds(&json!("2026-13-28T22:11:41Z")), None);
        assert_eq!(created_seconds(&json!("")), None);
        assert_eq!(created_seconds(&json!(null)), None);
    }
}
