//! `GET /connections` query semantics (reference §1.4): `property` filters, `orderby`, `limit`, `count` and
//! `continuationToken` pages with a relative `_links.next.href`. Pure functions over rendered connections, so the
//! rules are unit-tested without HTTP.
//!
//! Pages are keyset-based: the continuation token carries the sort key and creation sequence of the last item
//! returned (plus the filters, order and limit), so following `next` never repeats or skips an item, even when
//! connections are created or deleted between pages.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::errors::FlowServiceProblem;

/// Items per page when the caller gives no `limit`. Adobe documents no default; a page smaller than the 1000 cap
/// makes clients that ignore `_links.next` fail visibly in tests instead of in production.
pub(crate) const DEFAULT_PAGE_SIZE: usize = 100;
/// Relative path of `_links.next.href`, as in the spec's `PageLink` example.
const NEXT_HREF_PREFIX: &str = "/connections?continuationToken=";

/// How strictly a list query is read: the emulator's `--lenient` and `--max-page-size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ListRules {
    pub(crate) lenient: bool,
    pub(crate) max_page_size: usize,
}

impl ListRules {
    /// The rules of `app`.
    pub(crate) fn of(app: &super::app::AppState) -> Self {
        Self {
            lenient: app.lenient,
            max_page_size: app.max_page_size,
        }
    }
}

/// A parsed `GET /connections` query.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ListRequest {
    /// The raw `property` expressions, kept to carry them in continuation tokens.
    properties: Vec<String>,
    filters: Vec<Filter>,
    orderby: Option<String>,
    order: Order,
    limit: Option<usize>,
    count: bool,
    after: Option<Cursor>,
}

#[derive(Debug, Clone, PartialEq)]
struct Filter {
    path: Vec<String>,
    operator: FilterOperator,
    values: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FilterOperator {
    Equal,
    NotEqual,
    Greater,
    GreaterOrEqual,
    Less,
    LessOrEqual,
    Contains,
    Exists,
    NotExists,
}

/// Two-character operators first so that `>=` is not read as `>`.
const OPERATORS: [(&str, FilterOperator); 7] = [
    ("==", FilterOperator::Equal),
    ("!=", FilterOperator::NotEqual),
    (">=", FilterOperator::GreaterOrEqual),
    ("<=", FilterOperator::LessOrEqual),
    (">", FilterOperator::Greater),
    ("<", FilterOperator::Less),
    ("~", FilterOperator::Contains),
];

#[derive(Debug, Clone, PartialEq, Default)]
struct Order {
    /// `None`: creation order.
    path: Option<Vec<String>>,
    descending: bool,
}

/// Where the previous page ended.
#[derive(Debug, Clone, PartialEq)]
struct Cursor {
    key: Option<Value>,
    seq: u64,
}

/// What a continuation token carries. Short field names keep the token (and the href) compact.
#[derive(Debug, Serialize, Deserialize)]
struct ContinuationToken {
    #[serde(rename = "p", default)]
    properties: Vec<String>,
    #[serde(rename = "o", default)]
    orderby: Option<String>,
    #[serde(rename = "l", default)]
    limit: Option<usize>,
    #[serde(rename = "k", default)]
    key: Option<Value>,
    #[serde(rename = "s")]
    seq: u64,
}

impl ContinuationToken {
    /// Hex of the JSON: opaque, and free of `=`/`&` so that clients that cut the token out of the href with
    /// `href.split("=")[1]` (as aepp does) still get all of it.
    fn encode(&self) -> String {
        hex::encode(serde_json::to_vec(self).expect("token serializes"))
    }

    fn decode(text: &str) -> Option<Self> {
        serde_json::from_slice(&hex::decode(text.trim()).ok()?).ok()
    }
}

impl ListRequest {
    /// Parse the raw query string. Parameters given explicitly win over those carried in a continuation token.
    pub(crate) fn parse(query: Option<&str>, rules: ListRules) -> Result<Self, FlowServiceProblem> {
        let mut properties = Vec::new();
        let mut orderby = None;
        let mut limit_text = None;
        let mut count = false;
        let mut token_text = None;
        for (name, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match name.as_ref() {
                "property" => properties.push(value.into_owned()),
                "orderby" => orderby = Some(value.into_owned()),
                "limit" => limit_text = Some(value.into_owned()),
                "count" => count = value.trim().eq_ignore_ascii_case("true"),
                "continuationToken" => token_text = Some(value.into_owned()),
                // The catalogue's `1451-400` "Invalid params testParam provided in query params".
                unknown if !rules.lenient => {
                    return Err(FlowServiceProblem::unknown_parameter(unknown));
                }
                _ => {}
            }
        }
        if count && limit_text.is_some() {
            return Err(FlowServiceProblem::limit_with_count());
        }
        let mut limit = match limit_text {
            None => None,
            Some(text) => match text.trim().parse::<usize>() {
                Ok(n) if (1..=rules.max_page_size).contains(&n) => Some(n),
                _ => {
                    return Err(FlowServiceProblem::invalid_parameter(
                        &format!("limit={text}"),
                        format!("an integer between 1 and {}", rules.max_page_size),
                    ));
                }
            },
        };
        let mut after = None;
        if let Some(text) = token_text.filter(|t| !count && !t.trim().is_empty()) {
            let token = ContinuationToken::decode(&text).ok_or_else(|| {
                FlowServiceProblem::invalid_parameter(
                    "continuationToken",
                    "not a token issued by this service",
                )
            })?;
            if properties.is_empty() {
                properties = token.properties;
            }
            if orderby.is_none() {
                orderby = token.orderby;
            }
            if limit.is_none() {
                limit = token.limit;
            }
            after = Some(Cursor {
                key: token.key,
                seq: token.seq,
            });
        }
        let filters: Vec<Filter> = properties
            .iter()
            .map(|p| parse_filter(p))
            .collect::<Result<_, _>>()?;
        if !rules.lenient
            && filters
                .iter()
                .any(|f| f.operator == FilterOperator::Contains)
        {
            // The catalogue's own example of `1440-400`: "Operator '~' not implemented".
            return Err(FlowServiceProblem::operator_not_implemented("~"));
        }
        let order = match &orderby {
            None => Order::default(),
            Some(text) => parse_order(text)?,
        };
        Ok(Self {
            properties,
            filters,
            orderby,
            order,
            limit,
            count,
            after,
        })
    }

    /// Answer the query over `(creation seq, rendered connection)` pairs of the caller's org and sandbox.
    pub(crate) fn respond(&self, connections: Vec<(u64, Value)>) -> Value {
        let matching = connections
            .into_iter()
            .filter(|(_, doc)| self.filters.iter().all(|f| f.matches(doc)));
        if self.count {
            return json!({ "count": matching.count() });
        }
        let mut keyed: Vec<(Option<Value>, u64, Value)> = matching
            .map(|(seq, doc)| (self.order.key(&doc), seq, doc))
            .collect();
        keyed.sort_by(|a, b| self.order.compare((a.0.as_ref(), a.1), (b.0.as_ref(), b.1)));
        if let Some(after) = &self.after {
            keyed.retain(|item| {
                self.order
                    .compare((item.0.as_ref(), item.1), (after.key.as_ref(), after.seq))
                    == Ordering::Greater
            });
        }
        let page_size = self.limit.unwrap_or(DEFAULT_PAGE_SIZE);
        let has_more = keyed.len() > page_size;
        keyed.truncate(page_size);
        let links = match keyed.last().filter(|_| has_more) {
            Some((key, seq, _)) => {
                let token = ContinuationToken {
                    properties: self.properties.clone(),
                    orderby: self.orderby.clone(),
                    limit: self.limit,
                    key: key.clone(),
                    seq: *seq,
                };
                json!({ "next": { "href": format!("{NEXT_HREF_PREFIX}{}", token.encode()) } })
            }
            None => json!({}),
        };
        let items: Vec<Value> = keyed.into_iter().map(|(_, _, doc)| doc).collect();
        json!({ "items": items, "_links": links })
    }
}

fn valid_path(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('.')
        && !path.ends_with('.')
        && !path.contains("..")
        && path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '[' | ']'))
}

/// `a.b[].c` → `["a", "b", "c"]`: arrays are searched element by element anyway.
fn split_path(path: &str) -> Vec<String> {
    path.split('.')
        .map(|segment| segment.trim_end_matches("[]").to_owned())
        .collect()
}

/// `path<op>values`. The path may be padded with spaces; the values are taken exactly as decoded (`==` is exact
/// equality: `name==web%20` finds `"web "`, not `"web"`).
fn parse_filter(expression: &str) -> Result<Filter, FlowServiceProblem> {
    let expression = expression.trim_start();
    let found = expression.char_indices().find_map(|(index, _)| {
        OPERATORS
            .iter()
            .find(|(symbol, _)| expression[index..].starts_with(symbol))
            .map(|(symbol, operator)| (index, symbol.len(), *operator))
    });
    let (path, operator, values) = match found {
        // `!=` at index 0 would be an empty path; a leading `!` alone means "does not exist".
        Some((index, length, operator)) if index > 0 => {
            let values = expression[index + length..]
                .split(',')
                .map(str::to_owned)
                .collect();
            (expression[..index].trim_end(), operator, values)
        }
        Some(_) => return Err(FlowServiceProblem::invalid_filter_field(expression)),
        None => match expression.trim_end().strip_prefix('!') {
            Some(path) => (path, FilterOperator::NotExists, Vec::new()),
            None if expression.contains('=') => {
                return Err(FlowServiceProblem::invalid_filter_operator(expression));
            }
            None => (expression.trim_end(), FilterOperator::Exists, Vec::new()),
        },
    };
    if !valid_path(path) {
        return Err(FlowServiceProblem::invalid_filter_field(path));
    }
    Ok(Filter {
        path: split_path(path),
        operator,
        values,
    })
}

fn parse_order(text: &str) -> Result<Order, FlowServiceProblem> {
    // An unencoded `+name` arrives as " name": `+` means space in a query string.
    let trimmed = text.trim();
    let (descending, path) = match trimmed.strip_prefix('-') {
        Some(path) => (true, path),
        None => (false, trimmed.strip_prefix('+').unwrap_or(trimmed)),
    };
    if !valid_path(path) {
        return Err(FlowServiceProblem::invalid_orderby(text));
    }
    Ok(Order {
        path: Some(split_path(path)),
        descending,
    })
}

/// Every value at `path`, descending into arrays element by element; `null` counts as absent.
fn lookup<'a>(value: &'a Value, path: &[String]) -> Vec<&'a Value> {
    match (value, path.split_first()) {
        (Value::Null, _) => Vec::new(),
        (Value::Array(items), _) => items.iter().flat_map(|item| lookup(item, path)).collect(),
        (_, None) => vec![value],
        (Value::Object(map), Some((head, rest))) => {
            map.get(head).map(|v| lookup(v, rest)).unwrap_or_default()
        }
        (_, Some(_)) => Vec::new(),
    }
}

/// Strings compare exactly; numbers and booleans by value, so spaces around them do not matter.
fn equals(found: &Value, wanted: &str) -> bool {
    match found {
        Value::String(s) => s == wanted,
        Value::Number(n) => {
            let wanted = wanted.trim();
            n.to_string() == wanted || wanted.parse::<f64>().ok() == n.as_f64()
        }
        Value::Bool(b) => wanted
            .trim()
            .eq_ignore_ascii_case(if *b { "true" } else { "false" }),
        _ => false,
    }
}

/// Numbers compare numerically, everything else as text.
fn compare_to(found: &Value, wanted: &str) -> Option<Ordering> {
    match found {
        Value::Number(n) => n.as_f64()?.partial_cmp(&wanted.trim().parse::<f64>().ok()?),
        Value::String(s) => Some(s.as_str().cmp(wanted)),
        _ => None,
    }
}

impl Filter {
    fn matches(&self, doc: &Value) -> bool {
        let found = lookup(doc, &self.path);
        let first_value = self.values.first().map(String::as_str).unwrap_or("");
        let compared = |accept: fn(Ordering) -> bool| {
            found
                .iter()
                .any(|f| compare_to(f, first_value).is_some_and(accept))
        };
        match self.operator {
            FilterOperator::Equal => found
                .iter()
                .any(|f| self.values.iter().any(|w| equals(f, w))),
            FilterOperator::NotEqual => !found
                .iter()
                .any(|f| self.values.iter().any(|w| equals(f, w))),
            FilterOperator::Greater => compared(|o| o == Ordering::Greater),
            FilterOperator::GreaterOrEqual => compared(|o| o != Ordering::Less),
            FilterOperator::Less => compared(|o| o == Ordering::Less),
            FilterOperator::LessOrEqual => compared(|o| o != Ordering::Greater),
            FilterOperator::Contains => found.iter().any(|f| {
                f.as_str()
                    .is_some_and(|s| self.values.iter().any(|w| s.contains(w.as_str())))
            }),
            FilterOperator::Exists => !found.is_empty(),
            FilterOperator::NotExists => found.is_empty(),
        }
    }
}

fn type_rank(value: &Value) -> u8 {
    match value {
        Value::Null => 0,
        Value::Bool(_) => 1,
        Value::Number(_) => 2,
        Value::String(_) => 3,
        Value::Array(_) => 4,
        Value::Object(_) => 5,
    }
}

/// Missing keys sort after present ones.
fn compare_keys(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(a), Some(b)) => match (a, b) {
            (Value::Number(x), Value::Number(y)) => x
                .as_f64()
                .partial_cmp(&y.as_f64())
                .unwrap_or(Ordering::Equal),
            (Value::String(x), Value::String(y)) => x.cmp(y),
            (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
            _ => type_rank(a).cmp(&type_rank(b)),
        },
    }
}

impl Order {
    fn key(&self, doc: &Value) -> Option<Value> {
        let path = self.path.as_ref()?;
        lookup(doc, path).first().map(|v| (*v).clone())
    }

    /// A total order: the key, then the creation sequence (unique), both reversed when descending, so
    /// that `-createdAt` lists newest first even among connections created in the same millisecond.
    fn compare(&self, a: (Option<&Value>, u64), b: (Option<&Value>, u64)) -> Ordering {
        let ascending = compare_keys(a.0, b.0).then(a.1.cmp(&b.1));
        if self.descending {
            ascending.reverse()
        } else {
            ascending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: ListRules = ListRules {
        lenient: false,
        max_page_size: 1000,
    };

    fn docs() -> Vec<(u64, Value)> {
        vec![
            (
                1,
                json!({"name": "b", "state": "enabled", "createdAt": 30, "auth": {"params": {"inletId": "x1"}}}),
            ),
            (
                2,
                json!({"name": "a", "state": "disabled", "createdAt": 10, "auth": {"params": {"inletId": "x2"}}}),
            ),
            (
                3,
                json!({"name": "c d", "state": "enabled", "createdAt": 20, "auth": {"params": {}}}),
            ),
        ]
    }

    fn names(response: &Value) -> Vec<&str> {
        response["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].as_str().unwrap())
            .collect()
    }

    fn run(query: &str) -> Value {
        ListRequest::parse(Some(query), STRICT)
            .unwrap()
            .respond(docs())
    }

    #[test]
    fn filters_and_or_and_decoding() {
        assert_eq!(names(&run("property=state==enabled")), ["b", "c d"]);
        assert_eq!(names(&run("property=name==a,b")), ["b", "a"]);
        assert_eq!(
            names(&run("property=name==a,b&property=state==enabled")),
            ["b"]
        );
        assert_eq!(names(&run("property=name==c%20d")), ["c d"]);
        assert_eq!(names(&run("property=auth.params.inletId==x2")), ["a"]);
        assert_eq!(names(&run("property=name!=a")), ["b", "c d"]);
        assert_eq!(names(&run("property=createdAt>=20")), ["b", "c d"]);
        assert_eq!(names(&run("property=!auth.params.inletId")), ["c d"]);
        assert_eq!(names(&run("property=nothing.here==1")), Vec::<&str>::new());
    }

    #[test]
    fn equality_is_exact_for_strings_and_by_value_for_numbers() {
        let docs = vec![
            (1, json!({"name": "web", "createdAt": 5})),
            (2, json!({"name": "web ", "createdAt": 6})),
            (3, json!({"name": " web", "createdAt": 7})),
        ];
        let run = |query: &str| {
            ListRequest::parse(Some(query), STRICT)
                .unwrap()
                .respond(docs.clone())
        };
        assert_eq!(names(&run("property=name==web")), ["web"]);
        assert_eq!(names(&run("property=name==web%20")), ["web "]);
        assert_eq!(names(&run("property=name==web+")), ["web "]);
        assert_eq!(names(&run("property=name==%20web")), [" web"]);
        assert_eq!(names(&run("property=name!=web%20")), ["web", " web"]);
        assert_eq!(names(&run("property=name==web,web%20")), ["web", "web "]);
        // Spaces around the path, and around numbers, still do not matter.
        assert_eq!(names(&run("property=%20name%20==web")), ["web"]);
        assert_eq!(names(&run("property=createdAt==6%20")), ["web "]);
        assert_eq!(names(&run("property=createdAt>=6%20")), ["web ", " web"]);
        assert_eq!(names(&run("property=%20name%20")).len(), 3);
    }

    #[test]
    fn orderby_ascending_descending_and_unencoded_plus() {
        assert_eq!(names(&run("orderby=name")), ["a", "b", "c d"]);
        assert_eq!(names(&run("orderby=+name")), ["a", "b", "c d"]);
        assert_eq!(names(&run("orderby=%2Bname")), ["a", "b", "c d"]);
        assert_eq!(names(&run("orderby=-name")), ["c d", "b", "a"]);
        assert_eq!(names(&run("orderby=-createdAt")), ["b", "c d", "a"]);
    }

    #[test]
    fn count_and_limit_rules() {
        assert_eq!(
            run("count=true&property=state==enabled"),
            json!({"count": 2})
        );
        assert_eq!(
            ListRequest::parse(Some("count=true&limit=1"), STRICT)
                .unwrap_err()
                .code,
            "1401"
        );
        assert_eq!(
            ListRequest::parse(Some("limit=0"), STRICT)
                .unwrap_err()
                .code,
            "1453"
        );
        assert_eq!(
            ListRequest::parse(Some("limit=1001"), STRICT)
                .unwrap_err()
                .code,
            "1453"
        );
        assert_eq!(
            ListRequest::parse(Some("continuationToken=zz"), STRICT)
                .unwrap_err()
                .code,
            "1453"
        );
        assert_eq!(
            ListRequest::parse(Some("property=name=a"), STRICT)
                .unwrap_err()
                .code,
            "1450"
        );
        assert_eq!(
            ListRequest::parse(Some("orderby=na%20me"), STRICT)
                .unwrap_err()
                .code,
            "1432"
        );
    }

    #[test]
    fn following_next_visits_each_item_once() {
        let mut seen = Vec::new();
        let mut query = "limit=1&orderby=-name".to_owned();
        loop {
            let page = run(&query);
            seen.extend(names(&page).into_iter().map(str::to_owned));
            match page["_links"]["next"]["href"].as_str() {
                Some(href) => query = href.trim_start_matches("/connections?").to_owned(),
                None => break,
            }
        }
        assert_eq!(seen, ["c d", "b", "a"]);
    }

    #[test]
    fn strict_lists_refuse_unknown_parameters_and_the_tilde_operator_lenient_ones_take_them() {
        let lenient = ListRules {
            lenient: true,
            max_page_size: 1000,
        };
        let code = |query: &str, rules| ListRequest::parse(Some(query), rules).unwrap_err().code;
        assert_eq!(code("start=0", STRICT), "1451");
        assert_eq!(code("property=name~web", STRICT), "1440");
        assert!(ListRequest::parse(Some("start=0"), lenient).is_ok());
        assert!(ListRequest::parse(Some("property=name~web"), lenient).is_ok());
        let small = ListRules {
            lenient: false,
            max_page_size: 50,
        };
        assert_eq!(code("limit=51", small), "1453");
        assert!(ListRequest::parse(Some("limit=50"), small).is_ok());
    }
}
