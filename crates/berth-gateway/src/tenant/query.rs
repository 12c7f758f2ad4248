//! Query strings a tenant's request is scoped by: the tenant's label added to
//! `filters` (lists, prunes, events), a name mapped into the tenant's namespace.
//!
//! dockerd reads the first value of a key (Go's `Form.Get`); berth drops every pair
//! whose key decodes to one it sets (and pairs Go would skip) and appends its own, so
//! the engine reads exactly berth's value.

use serde_json::{Map, Value};

use crate::error::GatewayError;
use crate::merge::query::{pair_key, query_escape, query_value};

/// The label that marks what a tenant owns.
pub(crate) const OWNER_LABEL: &str = "berth.tenant";

/// `query` with `key` set to `value` (every earlier spelling of `key` dropped).
pub(crate) fn set(query: Option<&str>, key: &str, value: &str) -> String {
    let mut out = String::new();
    for pair in query.unwrap_or_default().split('&') {
        if pair.is_empty() {
            continue;
        }
        match pair_key(pair) {
            Some(k) if k != key => {
                out.push_str(pair);
                out.push('&');
            }
            // Go skips it (or it is the key berth sets).
            _ => {}
        }
    }
    out.push_str(key);
    out.push('=');
    out.push_str(&query_escape(value));
    out
}

/// Every value of `key` (Go's `Form[key]`, for keys dockerd reads as a list).
pub(crate) fn get_all(query: Option<&str>, key: &str) -> Vec<String> {
    query
        .unwrap_or_default()
        .split('&')
        .filter(|pair| pair_key(pair).as_deref() == Some(key))
        .filter_map(|pair| {
            crate::merge::query::query_unescape(pair.split_once('=').map_or("", |(_, v)| v))
        })
        .collect()
}

/// `query` with `key` set to `values` (every earlier spelling of `key` dropped).
pub(crate) fn set_all(query: Option<&str>, key: &str, values: &[String]) -> String {
    let mut out = set(query, key, "");
    // `set` ends with `key=`: replaced by one pair per value.
    out.truncate(out.len() - key.len() - 1);
    for v in values {
        out.push_str(key);
        out.push('=');
        out.push_str(&query_escape(v));
        out.push('&');
    }
    out.trim_end_matches('&').to_owned()
}

/// The value dockerd reads for `key`.
pub(crate) fn get(query: Option<&str>, key: &str) -> Option<String> {
    query_value(query?, key)
}

/// `filters` as dockerd reads them, with `label=berth.tenant=NAME` added (label filters
/// must all match) and, when `names` is given, every `name` filter value mapped by it.
/// A `filters` value dockerd would refuse is refused here too.
pub(crate) fn scoped_filters(
    query: Option<&str>,
    tenant: &str,
    names: Option<&dyn Fn(&str) -> String>,
) -> Result<String, GatewayError> {
    let mut filters: Map<String, Value> = match get(query, "filters").filter(|f| !f.is_empty()) {
        None => Map::new(),
        Some(text) => match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(map)) => map,
            _ => return Err(GatewayError::BadRequest(format!("invalid filter: {text}"))),
        },
    };
    // Both of dockerd's spellings (`{"k":{"v":true}}` and the old `{"k":["v"]}`)
    // become the map form.
    for (key, value) in filters.iter_mut() {
        let values: Map<String, Value> = match value {
            Value::Object(m) => m.iter().map(|(v, on)| (v.clone(), on.clone())).collect(),
            Value::Array(items) => items
                .iter()
                .filter_map(|v| v.as_str().map(|s| (s.to_owned(), Value::Bool(true))))
                .collect(),
            _ => return Err(GatewayError::BadRequest(format!("invalid filter: {key}"))),
        };
        let values = match (key.as_str(), names) {
            ("name", Some(map)) => values.into_iter().map(|(v, on)| (map(&v), on)).collect(),
            _ => values,
        };
        *value = Value::Object(values);
    }
    filters
        .entry("label")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .map(|labels| labels.insert(format!("{OWNER_LABEL}={tenant}"), Value::Bool(true)));
    Ok(set(query, "filters", &Value::Object(filters).to_string()))
}

/// The query of a tenant's image event stream (`events.rs`): its own filters with
/// `type` = `image`; `None` when its `type` filter asks for no image events.
pub(crate) fn image_events(query: Option<&str>) -> Result<Option<String>, GatewayError> {
    let mut filters: Map<String, Value> = match get(query, "filters").filter(|f| !f.is_empty()) {
        None => Map::new(),
        Some(text) => match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(map)) => map,
            _ => return Err(GatewayError::BadRequest(format!("invalid filter: {text}"))),
        },
    };
    let asks_images = match filters.get("type") {
        None => true,
        Some(Value::Object(m)) => m.contains_key("image"),
        Some(Value::Array(a)) => a.iter().any(|v| v == "image"),
        Some(_) => return Err(GatewayError::BadRequest("invalid filter: type".into())),
    };
    if !asks_images {
        return Ok(None);
    }
    filters.insert("type".into(), serde_json::json!({"image": true}));
    Ok(Some(set(
        query,
        "filters",
        &Value::Object(filters).to_string(),
    )))
}

/// `key` as dockerd's `BoolValue` reads it.
pub(crate) fn bool_value(query: Option<&str>, key: &str) -> bool {
    get(query, key).is_some_and(|v| {
        !matches!(
            v.to_ascii_lowercase().as_str(),
            "" | "0" | "no" | "false" | "none"
        )
    })
}

/// The keys of `filters` as dockerd reads them (none: no filters).
pub(crate) fn filter_keys(query: Option<&str>) -> Result<Vec<String>, GatewayError> {
    match get(query, "filters").filter(|f| !f.is_empty()) {
        None => Ok(Vec::new()),
        Some(text) => match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(map)) => Ok(map.keys().cloned().collect()),
            _ => Err(GatewayError::BadRequest(format!("invalid filter: {text}"))),
        },
    }
}

/// The `id` filter of `ids` (`{"<id>":true,…}`) as a query value (escaped): made once
/// per change of a tenant's container set, not per list.
pub(crate) fn ids_value(ids: &[String]) -> String {
    let ids = ids
        .iter()
        .map(|id| (id.clone(), Value::Bool(true)))
        .collect();
    query_escape(&Value::Object(ids).to_string())
}

/// A query of [`scoped_filters`] with the `id` filter `ids` (of [`ids_value`]) in place
/// of any it had (dockerd keeps a container whose ID any of them is a prefix of, and
/// looks up only those).
pub(crate) fn with_ids(scoped: &str, ids: &str) -> String {
    let mut filters: Map<String, Value> = get(Some(scoped), "filters")
        .and_then(|f| serde_json::from_str(&f).ok())
        .unwrap_or_default();
    filters.remove("id");
    let rest = Value::Object(filters).to_string();
    let mut q = set(Some(scoped), "filters", "");
    q.push_str(&query_escape("{\"id\":"));
    q.push_str(ids);
    match rest.strip_prefix('{') {
        Some(rest) if rest != "}" => {
            q.push_str("%2C");
            q.push_str(&query_escape(rest));
        }
        _ => q.push_str("%7D"),
    }
    q
}

/// `filters` with every value of `key` also in the tenant's repository (`map`): dockerd
/// keeps what any value matches, so the tenant's own `app` and a shared `busybox` both
/// still match (an image list's `reference`, the events' `image`). `None`: no `key`
/// filter.
pub(crate) fn also_in_repository(
    query: Option<&str>,
    key: &str,
    map: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<String>, GatewayError> {
    let Some(text) = get(query, "filters").filter(|f| !f.is_empty()) else {
        return Ok(None);
    };
    let mut filters: Map<String, Value> = match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(map)) => map,
        _ => return Err(GatewayError::BadRequest(format!("invalid filter: {text}"))),
    };
    let Some(patterns) = filters.get_mut(key) else {
        return Ok(None);
    };
    let given: Vec<String> = match patterns {
        Value::Object(m) => m.keys().cloned().collect(),
        Value::Array(a) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => return Err(GatewayError::BadRequest(format!("invalid filter: {key}"))),
    };
    let mut all = Map::new();
    for p in given {
        if let Some(own) = map(&p) {
            all.insert(own, Value::Bool(true));
        }
        all.insert(p, Value::Bool(true));
    }
    *patterns = Value::Object(all);
    Ok(Some(set(
        query,
        "filters",
        &Value::Object(filters).to_string(),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tenant_label_is_the_filter_dockerd_reads() {
        let q = scoped_filters(
            Some("all=1&filters=%7B%22label%22%3A%5B%22a%3Db%22%5D%7D&%66ilters=x&a;b=1"),
            "ci",
            None,
        )
        .unwrap();
        assert!(q.starts_with("all=1&filters="), "{q}");
        let f: Value = serde_json::from_str(&get(Some(&q), "filters").unwrap()).unwrap();
        assert_eq!(
            f,
            serde_json::json!({"label": {"a=b": true, "berth.tenant=ci": true}})
        );
        assert_eq!(q.matches("filters").count(), 1, "{q}");
        let map = |n: &str| format!("ci.{n}");
        let q = scoped_filters(
            Some("filters=%7B%22name%22%3A%7B%22app_default%22%3Atrue%7D%7D"),
            "ci",
            Some(&map),
        )
        .unwrap();
        let f: Value = serde_json::from_str(&get(Some(&q), "filters").unwrap()).unwrap();
        assert_eq!(
            f,
            serde_json::json!({"name": {"ci.app_default": true}, "label": {"berth.tenant=ci": true}})
        );
        assert!(scoped_filters(Some("filters=nope"), "ci", None).is_err());
        let own = |r: &str| Some(format!("ns/{r}"));
        let q = also_in_repository(
            Some("filters=%7B%22reference%22%3A%5B%22app%22%5D%7D"),
            "reference",
            &own,
        )
        .unwrap()
        .unwrap();
        let f: Value = serde_json::from_str(&get(Some(&q), "filters").unwrap()).unwrap();
        assert_eq!(
            f,
            serde_json::json!({"reference": {"app": true, "ns/app": true}})
        );
        assert_eq!(
            also_in_repository(Some("all=1"), "reference", &own).unwrap(),
            None
        );
        let scoped = scoped_filters(
            Some("all=1&filters=%7B%22status%22%3A%5B%22exited%22%5D%7D"),
            "ci",
            None,
        )
        .unwrap();
        assert_eq!(filter_keys(Some(&scoped)).unwrap(), ["label", "status"]);
        let q = with_ids(&scoped, &ids_value(&["a1".into(), "b2".into()]));
        let f: Value = serde_json::from_str(&get(Some(&q), "filters").unwrap()).unwrap();
        assert_eq!(
            f,
            serde_json::json!({"status": {"exited": true}, "label": {"berth.tenant=ci": true}, "id": {"a1": true, "b2": true}})
        );
        // An `id` filter already there is replaced, not repeated (dockerd's decoder
        // would read the last one).
        let q = with_ids(&q, &ids_value(&["c3".into()]));
        let f = get(Some(&q), "filters").unwrap();
        assert_eq!(f.matches("\"id\"").count(), 1, "{f}");
        let f: Value = serde_json::from_str(&f).unwrap();
        assert_eq!(f["id"], serde_json::json!({"c3": true}));
        let f = get(Some(&with_ids("all=1", &ids_value(&[]))), "filters").unwrap();
        assert_eq!(f, r#"{"id":{}}"#);
        assert_eq!(
            set(Some("name=a&x=1&name=b"), "name", "ci.w"),
            "x=1&name=ci.w"
        );
        let q = image_events(Some("since=5&filters=%7B%22event%22%3A%5B%22tag%22%5D%7D"))
            .unwrap()
            .unwrap();
        let f: Value = serde_json::from_str(&get(Some(&q), "filters").unwrap()).unwrap();
        assert_eq!(
            f,
            serde_json::json!({"event": ["tag"], "type": {"image": true}})
        );
        assert!(q.starts_with("since=5&"), "{q}");
        let containers = "filters=%7B%22type%22%3A%7B%22container%22%3Atrue%7D%7D";
        assert_eq!(image_events(Some(containers)).unwrap(), None);
    }
}
