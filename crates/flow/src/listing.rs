//! The list plumbing every Flow Service collection shares (`/connections`, `/sourceConnections`,
//! `/targetConnections`, `/flows`, `/runs`): `property` filter queries, `{"items": […]}` bodies and
//! their `_links.next.href` continuation tokens. Pure functions, so the wire shapes are unit-tested.

use percent_encoding::utf8_percent_encode;
use serde_json::Value;

use super::connections::{FILTER_VALUE_SEPARATOR, QUERY_VALUE, continuation_token_of};

/// One `property=<path><operator><value>` condition; repeated conditions are ANDed by Flow Service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Filter<'a> {
    /// The property path with its operator, as written on the wire: `name==`, `sourceConnectionIds[]==`,
    /// `metrics.durationSummary.startedAtUTC>`.
    pub(crate) path_and_operator: &'a str,
    /// The value, percent-encoded when the query is built.
    pub(crate) value: &'a str,
}

impl<'a> Filter<'a> {
    /// `property=<path_and_operator><value>`.
    pub(crate) const fn new(path_and_operator: &'a str, value: &'a str) -> Self {
        Self {
            path_and_operator,
            value,
        }
    }
}

/// The query of one list page: the filters, the page size, and the continuation token of every page
/// after the first.
///
/// A comma in a filter value means OR and cannot be escaped, so a filter whose value contains one is
/// left out: the lookup gets wider, never narrower, and every caller compares the values it asked for
/// on the items it gets back, so nothing is missed (which could lead to a duplicate create).
///
/// Filters are resent with the token rather than following `_links.next.href` verbatim, so that a
/// server whose href carries only the token cannot widen the lookup to every object.
pub(crate) fn filter_query(
    filters: &[Filter<'_>],
    page_size: u32,
    continuation_token: Option<&str>,
) -> String {
    let mut parts: Vec<String> = filters
        .iter()
        .filter(|filter| !filter.value.contains(FILTER_VALUE_SEPARATOR))
        .map(|filter| {
            format!(
                "property={}{}",
                filter.path_and_operator,
                utf8_percent_encode(filter.value, QUERY_VALUE)
            )
        })
        .collect();
    parts.push(format!("limit={page_size}"));
    if let Some(token) = continuation_token {
        parts.push(format!(
            "continuationToken={}",
            utf8_percent_encode(token, QUERY_VALUE)
        ));
    }
    parts.join("&")
}

/// Reads the `items` of a list body (or of a GET-by-id, which answers with a one-item list), each
/// through `parse_item`, and the continuation token of the next page. `_links: {}` (or no `_links`)
/// means this was the last page.
pub(crate) fn parse_page<T>(
    body: &[u8],
    parse_item: impl Fn(&Value) -> Option<T>,
) -> Result<(Vec<T>, Option<String>), String> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|error| format!("the list body is not JSON: {error}"))?;
    let items = value
        .get("items")
        .and_then(Value::as_array)
        .ok_or_else(|| "the list body has no `items` array".to_owned())?
        .iter()
        .map(|item| parse_item(item).ok_or_else(|| "a list item has no `id`".to_owned()))
        .collect::<Result<Vec<_>, _>>()?;
    let next = value
        .pointer("/_links/next/href")
        .and_then(Value::as_str)
        .filter(|href| !href.trim().is_empty());
    let continuation_token = match next {
        None => None,
        Some(href) => Some(continuation_token_of(href).ok_or_else(|| {
            "the list body's `_links.next.href` has no continuationToken".to_owned()
        })?),
    };
    Ok((items, continuation_token))
}

/// The string at a JSON pointer, when there is one.
pub(crate) fn text_at(item: &Value, pointer: &str) -> Option<String> {
    item.pointer(pointer)
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// The non-empty strings of the array at a JSON pointer (missing or not an array: none).
pub(crate) fn texts_at(item: &Value, pointer: &str) -> Vec<String> {
    item.pointer(pointer)
        .and_then(Value::as_array)
        .map(|values| {
            values
                .iter()
                .filter_map(Value::as_str)
                .filter(|text| !text.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// A whole number that Adobe writes as a JSON number in one place and as a string in another
/// (`mappingVersion` is `0` in requests and `"0"` in GET examples).
pub(crate) fn number_or_numeric_text(value: Option<&Value>) -> Option<u64> {
    match value? {
        Value::Number(number) => number.as_u64(),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    }
}

/// True for an id Adobe issued that is safe to keep and send back: non-empty, at most 64 characters,
/// letters, digits, `-` and `_` only (UUIDs, 32-hex mapping ids, 24-hex dataset ids). Stricter checks
/// (UUIDs for Flow Service objects) are applied where the reference documents the form.
pub(crate) fn is_plain_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn filters_are_encoded_and_a_comma_value_is_left_out() {
        assert_eq!(
            filter_query(
                &[
                    Filter::new("sourceConnectionIds[]==", "34ece231-294d"),
                    Filter::new("name==", "a, b"),
                    Filter::new("metrics.durationSummary.startedAtUTC>", "1596656058198"),
                ],
                100,
                Some("t 1"),
            ),
            "property=sourceConnectionIds[]==34ece231-294d\
             &property=metrics.durationSummary.startedAtUTC>1596656058198\
             &limit=100&continuationToken=t%201"
        );
        assert_eq!(filter_query(&[], 10, None), "limit=10");
    }

    #[test]
    fn pages_parse_items_and_the_next_token() {
        let parse = |item: &Value| text_at(item, "/id");
        let (items, token) = parse_page(
            br#"{"items":[{"id":"a"}],"_links":{"next":{"href":"/flows?continuationToken=n"}}}"#,
            parse,
        )
        .unwrap();
        assert_eq!(items, ["a"]);
        assert_eq!(token.as_deref(), Some("n"));
        assert_eq!(
            parse_page(br#"{"items":[]}"#, parse).unwrap(),
            (vec![], None)
        );
        assert!(parse_page(br#"{"items":[{"x":1}]}"#, parse).is_err());
        assert!(parse_page(br#"[]"#, parse).is_err());
    }

    #[test]
    fn numbers_may_be_written_as_text() {
        assert_eq!(number_or_numeric_text(Some(&Value::from(2))), Some(2));
        assert_eq!(number_or_numeric_text(Some(&Value::from("0"))), Some(0));
        assert_eq!(number_or_numeric_text(Some(&Value::from("x"))), None);
        assert_eq!(number_or_numeric_text(Some(&Value::from(-1))), None);
        assert_eq!(number_or_numeric_text(None), None);
    }

    #[test]
    fn plain_ids_cannot_carry_paths_or_queries() {
        assert!(is_plain_id("5b020a27e7040801dedbf46e"));
        assert!(is_plain_id("e7c80e4c0d8f4a98a7d400b4e178b635"));
        assert!(is_plain_id("a59d368a-1152-4673-a46e-bd52e8cdb9a9"));
        for id in ["", "a/b", "a?b", "a b", &"x".repeat(65)] {
            assert!(!is_plain_id(id), "{id}");
        }
    }
}
