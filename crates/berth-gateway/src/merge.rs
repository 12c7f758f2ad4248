//! Merged views: what one dockerd would answer, built from what several engines answered.
//!
//! The router asks every engine the client's question (same path, same query) and hands
//! the decoded answers here, in configured engine order. Nothing here does I/O or fails:
//! an answer of an unexpected shape counts as empty, so a merge never panics and never
//! invents an error the engines did not give. Engine errors are the router's business
//! (it answers with an engine's error instead of merging).
//!
//! - [`lists`]: `GET /containers/json`, `/images/json`, `/volumes`, `/networks`.
//! - [`anchors`]: their `since`/`before` filters, which name an object on one engine.
//! - [`reports`]: `GET /system/df`, `GET /info`, the `POST …/prune` reports.
//! - [`events`]: `GET /events`, several streams of JSON lines merged by time.

// Ready for the router; fanout.rs does not call it yet (issue #5, lead's file).
pub(crate) mod anchors;
pub(crate) mod events;
pub(crate) mod lists;
pub(crate) mod query;
pub(crate) mod reports;

pub(crate) use events::EventMerge;
pub(crate) use lists::{containers, images, limit_from_query, networks, volumes};
pub(crate) use reports::{info, prune, system_df};

use serde_json::Value;

/// Concatenates the arrays under `key` (an absent key or `null` counts as empty). An empty
/// result keeps the first engine's spelling (`null` or `[]`), as dockerd's Go slices print.
fn concat_field(per_engine: &[Value], key: &str) -> Option<Value> {
    let mut first: Option<&Value> = None;
    let mut items = Vec::new();
    for value in per_engine.iter().filter_map(|v| v.get(key)) {
        first.get_or_insert(value);
        if let Value::Array(array) = value {
            items.extend(array.iter().cloned());
        }
    }
    let first = first?;
    if items.is_empty() {
        Some(match first {
            Value::Array(_) => Value::Array(Vec::new()),
            _ => Value::Null,
        })
    } else {
        Some(Value::Array(items))
    }
}

/// Sums the integers under `key` (absent when no engine has it).
fn sum_field(per_engine: &[Value], key: &str) -> Option<Value> {
    let mut total: Option<i64> = None;
    for value in per_engine.iter().filter_map(|v| v.get(key)) {
        if let Some(n) = value.as_i64() {
            total = Some(total.unwrap_or(0).saturating_add(n));
        } else if let Some(n) = value.as_u64() {
            let n = i64::try_from(n).unwrap_or(i64::MAX);
            total = Some(total.unwrap_or(0).saturating_add(n));
        }
    }
    total.map(Value::from)
}

/// The elements of an engine's array answer; anything else counts as empty.
fn array_items(value: Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items,
        _ => Vec::new(),
    }
}

/// Stable sort by the integer `Created`, newest first: dockerd's list order. Each engine's
/// list is already in that order, so this is a k-way merge; equal seconds keep engine order.
fn sort_created_desc(items: &mut [Value]) {
    items.sort_by_key(|item| {
        std::cmp::Reverse(
            item.get("Created")
                .and_then(Value::as_i64)
                .unwrap_or(i64::MIN),
        )
    });
}
