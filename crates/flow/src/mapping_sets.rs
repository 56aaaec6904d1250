//! Data Prep mapping sets (`/data/foundation/conversion/mappingSets`): the mapping of raw JSON onto
//! the dataset's XDM schema that a raw flow's `Mapping` transformation names by id and version.
//!
//! Bodies use the current API-reference format (format (a) of the dataflow reference, §7):
//! `outputSchema.schemaRef` and `mappings[{sourceType, source, destination}]`. Responses are read in
//! both naming sets, since GET answers carry `source`/`destination` and the legacy
//! `sourceAttribute`/`destinationXdmPath` side by side.
//!
//! No reliable lookup by name: a mapping set created with this body has no name, Data Prep's
//! `GET /mappingSets?name=` is not documented to filter on anything the client sets, and there is no
//! documented DELETE. A crash between the create and recording its id therefore leaves an unused
//! mapping set behind; it is harmless (nothing references it) and the caller creates another.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::catalog::SchemaRef;
use super::dataflows::MappingRef;
use super::listing::{number_or_numeric_text, text_at};

/// How a mapping's `source` is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum SourceType {
    /// `source` is a path in the incoming JSON.
    Attribute,
    /// `source` is a Data Prep expression.
    Expression,
    /// `source` is a constant.
    Static,
}

impl SourceType {
    /// The wire value: `ATTRIBUTE`, `EXPRESSION` or `STATIC`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Attribute => "ATTRIBUTE",
            Self::Expression => "EXPRESSION",
            Self::Static => "STATIC",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [Self::Attribute, Self::Expression, Self::Static]
            .into_iter()
            .find(|kind| kind.as_str().eq_ignore_ascii_case(text))
    }
}

/// One field mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// How `source` is read.
    pub source_type: SourceType,
    /// A path in the raw JSON, an expression or a constant, per `source_type`.
    pub source: String,
    /// The XDM path written, e.g. `person.name.firstName`.
    pub destination: String,
}

/// A mapping set to create, or the new content of one (`PUT`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMappingSet {
    /// The output schema: must be the target dataset's schema, id and version, or flow creation fails
    /// with `FLOW-1425-400`.
    pub schema: SchemaRef,
    /// The field mappings.
    pub mappings: Vec<Mapping>,
}

/// A mapping set as Data Prep returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingSet {
    /// The mapping set id (32 hex characters, no dashes, in the reference).
    pub id: String,
    /// The version this body describes.
    pub version: u64,
    /// `outputSchema.schemaRef.id`, else the legacy `xdmSchema`.
    pub schema_id: Option<String>,
    /// `outputSchema.schemaRef.contentType`, when present.
    pub schema_content_type: Option<String>,
    /// The field mappings.
    pub mappings: Vec<Mapping>,
    /// Epoch milliseconds.
    pub created_at: Option<i64>,
    /// Epoch milliseconds.
    pub updated_at: Option<i64>,
}

impl MappingSet {
    /// The id and version a flow's `Mapping` transformation names.
    pub fn reference(&self) -> MappingRef {
        MappingRef {
            mapping_id: self.id.clone(),
            mapping_version: self.version,
        }
    }
}

/// The `POST /mappingSets` (and `PUT /mappingSets/{id}`) body.
pub fn mapping_set_body(request: &NewMappingSet) -> Value {
    json!({
        "outputSchema": {
            "schemaRef": {
                "id": request.schema.id,
                "contentType": request.schema.content_type,
            },
        },
        "mappings": request.mappings.iter().map(|mapping| json!({
            "sourceType": mapping.source_type.as_str(),
            "source": mapping.source,
            "destination": mapping.destination,
        })).collect::<Vec<_>>(),
    })
}

/// Reads `{"id", "version", …}` from a create or `PUT` answer (200, not 201): `None` without an id or
/// a version.
pub(crate) fn parse_version(body: &[u8]) -> Option<MappingRef> {
    let value: Value = serde_json::from_slice(body).ok()?;
    Some(MappingRef {
        mapping_id: text_at(&value, "/id").filter(|id| !id.is_empty())?,
        mapping_version: number_or_numeric_text(value.get("version"))?,
    })
}

/// Reads a `GET /mappingSets/{id}` body: the mapping set itself, not a list wrapper. The text of the
/// error says what is missing.
pub(crate) fn parse_mapping_set(body: &[u8]) -> Result<MappingSet, &'static str> {
    let value: Value = serde_json::from_slice(body).map_err(|_| "no JSON object")?;
    let reference = parse_version(body).ok_or("no `id` and `version`")?;
    let mappings = value
        .get("mappings")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(parse_mapping)
        .collect::<Option<Vec<_>>>()
        .ok_or("a mapping without source and destination, or with an unknown `sourceType`")?;
    Ok(MappingSet {
        id: reference.mapping_id,
        version: reference.mapping_version,
        schema_id: text_at(&value, "/outputSchema/schemaRef/id")
            .or_else(|| text_at(&value, "/xdmSchema")),
        schema_content_type: text_at(&value, "/outputSchema/schemaRef/contentType"),
        mappings,
        created_at: value.get("createdDate").and_then(Value::as_i64),
        updated_at: value.get("modifiedDate").and_then(Value::as_i64),
    })
}

/// A legacy mapping has no `sourceType`: its `sourceAttribute` is an attribute path.
fn parse_mapping(item: &Value) -> Option<Mapping> {
    let source_type = match text_at(item, "/sourceType") {
        None => SourceType::Attribute,
        Some(text) => SourceType::parse(&text)?,
    };
    Some(Mapping {
        source_type,
        source: text_at(item, "/source").or_else(|| text_at(item, "/sourceAttribute"))?,
        destination: text_at(item, "/destination")
            .or_else(|| text_at(item, "/destinationXdmPath"))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    const SCHEMA: &str =
        "https://ns.adobe.com/acme/schemas/89abc189258b1cb1a816d8f2b2341a6d98000ed8f4ee";

    fn documented_request() -> NewMappingSet {
        NewMappingSet {
            schema: SchemaRef {
                id: SCHEMA.into(),
                content_type: "application/vnd.adobe.xed-full+json;version=1".into(),
            },
            mappings: vec![
                Mapping {
                    source_type: SourceType::Attribute,
                    source: "id".into(),
                    destination: "_id".into(),
                },
                Mapping {
                    source_type: SourceType::Attribute,
                    source: "firstName".into(),
                    destination: "person.name.firstName".into(),
                },
            ],
        }
    }

    #[test]
    fn the_body_is_the_api_reference_format() {
        assert_eq!(
            mapping_set_body(&documented_request()),
            json!({
                "outputSchema": { "schemaRef": {
                    "id": SCHEMA, "contentType": "application/vnd.adobe.xed-full+json;version=1" } },
                "mappings": [
                    { "sourceType": "ATTRIBUTE", "source": "id", "destination": "_id" },
                    { "sourceType": "ATTRIBUTE", "source": "firstName", "destination": "person.name.firstName" }
                ]
            })
        );
    }

    #[test]
    fn the_documented_create_answer_is_read() {
        let body =
            br#"{"id":"e7c80e4c0d8f4a98a7d400b4e178b635","version":0,"createdDate":1614901254724,
            "modifiedDate":1614901254724,"createdBy":"acme@AdobeID","modifiedBy":"acme@AdobeID"}"#;
        assert_eq!(
            parse_version(body),
            Some(MappingRef {
                mapping_id: "e7c80e4c0d8f4a98a7d400b4e178b635".into(),
                mapping_version: 0,
            })
        );
        assert_eq!(
            parse_version(br#"{"id":"x","version":"2"}"#)
                .unwrap()
                .mapping_version,
            2
        );
        assert_eq!(parse_version(br#"{"id":"x"}"#), None);
        assert_eq!(parse_version(br#"{"version":1}"#), None);
    }

    #[test]
    fn a_get_answer_with_both_naming_sets_is_read() {
        let body = json!({
            "id": "e7c80e4c0d8f4a98a7d400b4e178b635", "version": 1,
            "createdDate": 1614901254724_i64, "modifiedDate": 1614901299999_i64,
            "outputSchema": { "schemaRef": { "id": SCHEMA, "contentType": "application/vnd.adobe.xed-full+json;version=1" } },
            "mappings": [
                { "sourceType": "ATTRIBUTE", "source": "id", "destination": "_id",
                  "sourceAttribute": "id", "destinationXdmPath": "_id", "identity": false, "version": 0 },
                { "sourceAttribute": "firstName", "destinationXdmPath": "person.name.firstName" }
            ]
        });
        let set = parse_mapping_set(body.to_string().as_bytes()).unwrap();
        assert_eq!(set.version, 1);
        assert_eq!(set.schema_id.as_deref(), Some(SCHEMA));
        assert_eq!(set.mappings, documented_request().mappings);
        assert_eq!(
            set.reference().mapping_id,
            "e7c80e4c0d8f4a98a7d400b4e178b635"
        );
        assert_eq!(set.updated_at, Some(1614901299999));

        let legacy = json!({ "id": "m", "version": "0", "xdmSchema": SCHEMA, "mappings": [] });
        let legacy = parse_mapping_set(legacy.to_string().as_bytes()).unwrap();
        assert_eq!(legacy.schema_id.as_deref(), Some(SCHEMA));

        let unknown = json!({ "id": "m", "version": 0,
            "mappings": [ { "sourceType": "LOOKUP", "source": "a", "destination": "b" } ] });
        assert!(parse_mapping_set(unknown.to_string().as_bytes()).is_err());
    }

    #[test]
    fn source_types_are_upper_case_on_the_wire() {
        assert_eq!(
            serde_json::to_value(SourceType::Static).unwrap(),
            json!("STATIC")
        );
        assert_eq!(
            SourceType::parse("expression"),
            Some(SourceType::Expression)
        );
    }
}
