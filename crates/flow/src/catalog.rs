//! Catalog datasets: the type the client reads and the pure parser of `GET /dataSets/{id}`.
//!
//! The operator never creates or deletes a dataset: it checks that the one a dataflow lands in exists,
//! and takes its schema for the target connection and the mapping set (a mismatch makes flow creation
//! fail with `FLOW-1425-400`).

use serde_json::Value;

use super::listing::text_at;

/// The tag value that marks a dataset as enabled for Profile or Identity.
const ENABLED_TAG: &str = "enabled:true";

/// A reference to an XDM schema: its `$id` URI and content type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaRef {
    /// The schema's `$id` URI (`https://ns.adobe.com/{TENANT}/schemas/…`), not its `meta:altId`.
    pub id: String,
    /// The content type with the schema version, e.g.
    /// `application/vnd.adobe.xed-full+json;version=1`.
    pub content_type: String,
}

/// A Catalog dataset, as `GET /data/foundation/catalog/dataSets/{id}` returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dataset {
    /// The dataset id (24 hex characters in every documented example).
    pub id: String,
    /// The display name.
    pub name: String,
    /// The description, when it has one.
    pub description: Option<String>,
    /// The XDM schema the dataset's records follow.
    pub schema_ref: SchemaRef,
    /// True when `tags.unifiedProfile` holds `enabled:true`. Optional for landing in the data lake.
    pub profile_enabled: bool,
    /// True when `tags.unifiedIdentity` holds `enabled:true`.
    pub identity_enabled: bool,
    /// Catalog's own version string of the dataset (`1.0.1`), not the schema version.
    pub version: Option<String>,
    /// Epoch milliseconds.
    pub created_at: Option<i64>,
    /// Epoch milliseconds.
    pub updated_at: Option<i64>,
}

/// Why a 2xx dataset body could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DatasetBody {
    /// The body is an object without the requested id: Catalog's way of saying "no such dataset",
    /// were it ever to answer 200 instead of 404.
    Missing,
    /// The body is not the documented shape; the text says what is wrong.
    Unusable(&'static str),
}

/// Reads the dataset `id` out of a `GET /dataSets/{id}` body: an **object keyed by dataset id**, not
/// a list. A body with exactly one entry under another key is refused (the client asked for one id
/// and must not trust an answer about another).
pub(crate) fn parse_dataset(body: &[u8], id: &str) -> Result<Dataset, DatasetBody> {
    let value: Value =
        serde_json::from_slice(body).map_err(|_| DatasetBody::Unusable("no JSON object"))?;
    let entries = value
        .as_object()
        .ok_or(DatasetBody::Unusable("no JSON object"))?;
    let Some(entry) = entries.get(id) else {
        return Err(if entries.is_empty() {
            DatasetBody::Missing
        } else {
            DatasetBody::Unusable("no entry under the requested dataset id")
        });
    };
    let schema_id = text_at(entry, "/schemaRef/id")
        .filter(|schema| !schema.is_empty())
        .ok_or(DatasetBody::Unusable("a dataset without `schemaRef.id`"))?;
    let tag_enabled = |tag: &str| {
        entry
            .pointer(&format!("/tags/{tag}"))
            .and_then(Value::as_array)
            .is_some_and(|values| values.iter().any(|value| value == ENABLED_TAG))
    };
    Ok(Dataset {
        id: id.to_owned(),
        name: text_at(entry, "/name").unwrap_or_default(),
        description: text_at(entry, "/description"),
        schema_ref: SchemaRef {
            id: schema_id,
            content_type: text_at(entry, "/schemaRef/contentType").unwrap_or_default(),
        },
        profile_enabled: tag_enabled("unifiedProfile"),
        identity_enabled: tag_enabled("unifiedIdentity"),
        version: text_at(entry, "/version"),
        created_at: entry.get("created").and_then(Value::as_i64),
        updated_at: entry.get("updated").and_then(Value::as_i64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;
    use serde_json::json;

    /// The 200 body of the reference (§3.1).
    fn documented() -> Value {
        json!({
            "5b020a27e7040801dedbf46e": {
                "name": "Loyalty events",
                "imsOrg": "{ORG_ID}",
                "tags": {
                    "unifiedProfile": ["enabled:true"],
                    "unifiedIdentity": ["enabled:false"]
                },
                "version": "1.0.1",
                "created": 1536536917382_i64,
                "updated": 1539793978215_i64,
                "viewId": "5b020a27e7040801dedbf46f",
                "files": "@/dataSetFiles?dataSetId=5b020a27e7040801dedbf46e",
                "schemaRef": {
                    "id": "https://ns.adobe.com/acme/schemas/274f17bc5807ff307a046bab1489fb18",
                    "contentType": "application/vnd.adobe.xed-full+json;version=1"
                }
            }
        })
    }

    #[test]
    fn the_documented_dataset_is_read() {
        let body = documented().to_string();
        assert_eq!(
            parse_dataset(body.as_bytes(), "5b020a27e7040801dedbf46e").unwrap(),
            Dataset {
                id: "5b020a27e7040801dedbf46e".into(),
                name: "Loyalty events".into(),
                description: None,
                schema_ref: SchemaRef {
                    id: "https://ns.adobe.com/acme/schemas/274f17bc5807ff307a046bab1489fb18".into(),
                    content_type: "application/vnd.adobe.xed-full+json;version=1".into(),
                },
                profile_enabled: true,
                identity_enabled: false,
                version: Some("1.0.1".into()),
                created_at: Some(1536536917382),
                updated_at: Some(1539793978215),
            }
        );
    }

    #[test]
    fn another_id_an_empty_object_or_no_schema_is_refused() {
        let body = documented().to_string();
        assert!(matches!(
            parse_dataset(body.as_bytes(), "ffffffffffffffffffffffff"),
            Err(DatasetBody::Unusable(_))
        ));
        assert_eq!(parse_dataset(b"{}", "x"), Err(DatasetBody::Missing));
        assert!(matches!(
            parse_dataset(br#"{"x":{"name":"n"}}"#, "x"),
            Err(DatasetBody::Unusable(_))
        ));
        assert!(matches!(
            parse_dataset(br#"["@/dataSets/x"]"#, "x"),
            Err(DatasetBody::Unusable(_))
        ));
    }
}
