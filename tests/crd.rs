//! The committed CRDs must be exactly what the Rust types generate, and `crds/kustomization.yaml` must
//! install every one of them.

use aep_streaming_operator::api::{ServedKind, definitions_yaml};

fn committed(file: &str) -> String {
    std::fs::read_to_string(format!("{}/{file}", env!("CARGO_MANIFEST_DIR")))
        .unwrap_or_else(|error| panic!("{file} is committed: {error}"))
}

fn crd_command(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_aep-streaming-operator"))
        .arg("crd")
        .args(args)
        .output()
        .expect("the operator binary runs")
}

#[test]
fn every_committed_crd_matches_the_rust_types() {
    // Every kind is checked before failing, so one run names every stale file.
    let stale: Vec<String> = ServedKind::ALL
        .iter()
        .filter(|kind| committed(&kind.crd_file()) != kind.definition_yaml())
        .map(|kind| kind.crd_file())
        .collect();
    assert!(
        stale.is_empty(),
        "stale: {stale:?}: run `make crd` (cargo run -- crd <kind> > crds/<kind>.yaml for each kind) and commit"
    );
}

#[test]
fn the_kustomization_installs_every_crd_and_nothing_else() {
    let kustomization: serde_json::Value =
        serde_saphyr::from_str(&committed("crds/kustomization.yaml")).unwrap();
    let mut listed: Vec<String> = kustomization["resources"]
        .as_array()
        .expect("crds/kustomization.yaml lists resources")
        .iter()
        .map(|file| format!("crds/{}", file.as_str().unwrap()))
        .collect();
    listed.sort();
    let mut expected: Vec<String> = ServedKind::ALL.map(ServedKind::crd_file).to_vec();
    expected.sort();
    assert_eq!(listed, expected);
}

// The two tests below compare with what the types generate, not with the committed files: a stale file is
// the drift test's to report, and a mismatch here would print both CRDs in full.
#[test]
fn the_crd_command_prints_every_crd_as_one_stream() {
    let output = crd_command(&[]);
    assert!(output.status.success());
    let printed = String::from_utf8(output.stdout).unwrap();
    assert!(printed == definitions_yaml(&ServedKind::ALL));
    assert_eq!(
        printed.matches("\n---\n").count(),
        ServedKind::ALL.len() - 1
    );
}

#[test]
fn the_crd_command_prints_one_crd_when_the_kind_is_named() {
    for kind in ServedKind::ALL {
        let output = crd_command(&[kind.singular()]);
        assert!(output.status.success(), "{kind:?}");
        assert!(
            String::from_utf8(output.stdout).unwrap() == kind.definition_yaml(),
            "{kind:?}"
        );
    }
}

#[test]
fn the_crd_command_refuses_an_unknown_kind_and_names_the_known_ones() {
    let output = crd_command(&["widget"]);
    assert!(!output.status.success());
    let error = String::from_utf8(output.stderr).unwrap();
    for kind in ServedKind::ALL {
        assert!(error.contains(kind.singular()), "{error}");
    }
}
