//! The committed CRD must be exactly what the Rust types generate.

use aep_streaming_operator::api::StreamingConnection;

#[test]
fn committed_crd_matches_the_rust_types() {
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crds/streamingconnection.yaml"
    ))
    .expect("crds/streamingconnection.yaml is committed");
    assert!(
        committed == StreamingConnection::definition_yaml(),
        "crds/streamingconnection.yaml is stale: run `make crd` (cargo run -- crd > crds/streamingconnection.yaml) and commit it"
    );
}

#[test]
fn the_crd_command_prints_the_committed_crd() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_aep-streaming-operator"))
        .arg("crd")
        .output()
        .expect("the operator binary runs");
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        StreamingConnection::definition_yaml()
    );
}
