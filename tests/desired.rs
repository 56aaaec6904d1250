//! The pure core (`controller::desired`): plain tests, no client and no server. They live here rather than
//! beside the code because they use the test kit's fixtures.

use aep_flow::ConnectionUpdate;
use aep_streaming_operator::api::DataType;
use aep_streaming_operator::controller::desired::*;
use aep_testkit::fixtures::{StreamingConnectionExt, connection_for, streaming_connection};

#[test]
fn connection_name_defaults_to_namespace_slash_name() {
    let object = streaming_connection("web-events");
    assert_eq!(connection_name(&object), "marketing/web-events");
    let named = streaming_connection("web-events").with_connection_name("Web events");
    assert_eq!(connection_name(&named), "Web events");
}

#[test]
fn the_create_request_follows_the_spec() {
    let mut object = streaming_connection("web-events").with_description("Clickstream");
    object.spec.source_id = Some("storefront".into());
    object.spec.data_type = DataType::Raw;
    object.spec.authentication_required = true;
    let request = new_connection(&object);
    assert_eq!(request.name, "marketing/web-events");
    assert_eq!(request.description.as_deref(), Some("Clickstream"));
    assert_eq!(request.source_id.as_deref(), Some("storefront"));
    assert_eq!(request.data_type, aep_flow::DataType::Raw);
    assert!(request.authentication_required);
}

#[test]
fn an_unchanged_connection_needs_no_update() {
    let object = streaming_connection("web-events").with_description("Clickstream");
    let observed = connection_for(&object);
    assert_eq!(connection_update(&object, &observed), None);
}

#[test]
fn an_absent_and_an_empty_description_are_the_same() {
    let object = streaming_connection("web-events");
    let mut observed = connection_for(&object);
    observed.description = Some(String::new());
    assert_eq!(connection_update(&object, &observed), None);
}

#[test]
fn a_changed_description_or_name_is_an_update() {
    let object = streaming_connection("web-events").with_description("new text");
    let mut observed = connection_for(&object);
    observed.description = Some("old text".into());
    assert_eq!(
        connection_update(&object, &observed),
        Some(ConnectionUpdate {
            name: None,
            description: Some(Some("new text".into()))
        })
    );
    let renamed = streaming_connection("web-events").with_connection_name("Renamed");
    let observed = connection_for(&streaming_connection("web-events"));
    assert_eq!(
        connection_update(&renamed, &observed),
        Some(ConnectionUpdate {
            name: Some("Renamed".into()),
            description: None
        })
    );
}

#[test]
fn a_removed_description_is_removed_from_the_connection() {
    let object = streaming_connection("web-events");
    let mut observed = connection_for(&object);
    observed.description = Some("old text".into());
    assert_eq!(
        connection_update(&object, &observed),
        Some(ConnectionUpdate {
            name: None,
            description: Some(None)
        })
    );
}

#[test]
fn only_matching_streaming_connections_can_be_adopted() {
    let object = streaming_connection("web-events");
    let mut observed = connection_for(&object);
    assert_eq!(adoption_mismatch(&object, &observed), None);
    observed.authentication_required = true;
    assert!(
        adoption_mismatch(&object, &observed)
            .unwrap()
            .contains("authenticationRequired")
    );
    observed.connection_spec_id = "c604ff05-7f1a-43c0-8e18-33bf874cb11c".into();
    assert!(
        adoption_mismatch(&object, &observed)
            .unwrap()
            .contains("not a streaming connection")
    );
}

#[test]
fn the_config_map_publishes_the_inlet_and_is_owned_by_the_object() {
    let object = streaming_connection("web-events").with_config_map_label("team", "web");
    let connection = connection_for(&object);
    let config_map = config_map(&object, &connection);
    assert_eq!(
        config_map.metadata.name.as_deref(),
        Some("web-events-inlet")
    );
    assert_eq!(config_map.metadata.namespace.as_deref(), Some("marketing"));
    let data = config_map.data.as_ref().unwrap();
    assert_eq!(data["INLET_URL"], connection.inlet_url.clone().unwrap());
    assert_eq!(data["INLET_ID"], connection.inlet_id.clone().unwrap());
    assert_eq!(data["CONNECTION_ID"], connection.id);
    assert_eq!(data["AUTHENTICATION_REQUIRED"], "false");
    assert_eq!(data["DATA_TYPE"], "xdm");
    assert_eq!(data["SANDBOX"], "prod");
    for key in data.keys() {
        assert!(
            key.chars().all(|c| c.is_ascii_uppercase() || c == '_'),
            "{key} works as an env var"
        );
    }
    let labels = config_map.metadata.labels.as_ref().unwrap();
    assert_eq!(labels["team"], "web");
    assert_eq!(labels[MANAGED_BY_LABEL], "aep-streaming-operator");
    let owner = &config_map.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(owner.kind, "StreamingConnection");
    assert_eq!(owner.controller, Some(true));
    assert!(config_map_is_current(&config_map, &config_map));
}

#[test]
fn a_config_map_with_other_data_or_owner_is_not_current() {
    let object = streaming_connection("web-events");
    let desired = config_map(&object, &connection_for(&object));
    let mut stale = desired.clone();
    stale
        .data
        .as_mut()
        .unwrap()
        .insert("INLET_URL".into(), "https://old".into());
    assert!(!config_map_is_current(&stale, &desired));
    let mut foreign = desired.clone();
    foreign.metadata.owner_references = None;
    assert!(!config_map_is_current(&foreign, &desired));
    assert!(!owned_by(&foreign, Some("uid-web-events")));
    let mut extra = desired.clone();
    extra
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("added-by".into(), "someone".into());
    assert!(config_map_is_current(&extra, &desired));
}
