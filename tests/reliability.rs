//! Reliability under injected faults, against the real control plane: the operator is killed in the
//! middle of creates, Flow Service throws 429 storms, 5xx and "commit then fail" answers, and the
//! platform restarts. Each test then counts: connections in the emulator, objects Ready. The
//! invariant is always the same: exactly one connection per object, and every object Ready.
//!
//! Run by `make test` after the end-to-end suite (same cluster, one test at a time).

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::cluster::{Scenario, local_cluster_dir, restart_component, tail};

const CONNECTIONS: &str = "/data/foundation/flowservice/connections";
const CONNECTION: &str = "/data/foundation/flowservice/connections/{id}";

fn spec() -> Value {
    json!({"sandbox": "prod", "credentialsRef": {"name": "aep-credentials"}})
}

/// Creates `count` objects named `conn-NN` in the scenario's first namespace.
async fn create_many(scenario: &Scenario, count: usize) {
    let ns = scenario.namespace().to_string();
    for index in 0..count {
        scenario
            .create(&ns, &format!("conn-{index:02}"), spec())
            .await;
    }
}

/// Waits for every object to be Ready, then checks that the emulator holds exactly one connection
/// per object (by name) and that every status points at one of them.
async fn assert_exactly_one_connection_each(scenario: &Scenario, count: usize) {
    let ns = scenario.namespace().to_string();
    let mut ids = Vec::new();
    for index in 0..count {
        let object = scenario.wait_ready(&ns, &format!("conn-{index:02}")).await;
        ids.push(object.status.unwrap().connection_id.unwrap());
    }
    let connections = scenario.emulator_connections().await;
    let mut names: Vec<String> = connections
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    let expected: Vec<String> = (0..count)
        .map(|index| format!("{ns}/conn-{index:02}"))
        .collect();
    assert_eq!(
        names,
        expected,
        "exactly one connection per object\n{}",
        tail(&scenario.operator.log_text(), 40)
    );
    for id in ids {
        assert!(
            connections.iter().any(|c| c["id"] == id.as_str()),
            "status names a connection that does not exist"
        );
    }
}

async fn add_faults(scenario: &Scenario, rules: Value) {
    let response = scenario
        .http
        .post(format!("{}/_emulator/faults", scenario.emulator_url))
        .json(&rules)
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{}",
        response.text().await.unwrap()
    );
}

async fn clear_faults(scenario: &Scenario) {
    scenario
        .http
        .delete(format!("{}/_emulator/faults", scenario.emulator_url))
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a control plane: run `make test` (or `make cluster` and set AEP_E2E_KUBECONFIG)"]
async fn killing_the_operator_in_the_middle_of_creates_leaves_no_duplicate() {
    let mut scenario = Scenario::start(&["crash"]).await;
    // Creates are slow, so the kill lands while several POSTs are in flight.
    add_faults(
        &scenario,
        json!({"method": "POST", "route": "/data/foundation/flowservice/connections", "latencyMs": 1500}),
    )
    .await;
    create_many(&scenario, 12).await;
    for _round in 0..3 {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        scenario.operator.kill();
        let kubeconfig = scenario.operator_kubeconfig();
        scenario.operator = scenario.start_operator(&kubeconfig, &[], "operator-a");
    }
    clear_faults(&scenario).await;
    assert_exactly_one_connection_each(&scenario, 12).await;
    scenario.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a control plane: run `make test` (or `make cluster` and set AEP_E2E_KUBECONFIG)"]
async fn a_storm_of_429_5xx_and_commit_then_fail_converges_without_duplicates() {
    let scenario = Scenario::start(&["storm"]).await;
    add_faults(
        &scenario,
        // The first requests of each kind surely fail (rules with `times` fire first), then a
        // random share of the rest, so the storm is both guaranteed and unpredictable.
        json!([
            {"method": "POST", "route": CONNECTIONS, "action": "commitThenFail", "status": 502, "times": 3},
            {"method": "POST", "route": CONNECTIONS, "status": 429, "retryAfter": 1, "times": 4},
            {"method": "POST", "route": CONNECTIONS, "action": "commitThenDrop", "times": 2},
            {"method": "GET", "route": CONNECTION, "status": 503, "times": 4},
            {"method": "POST", "route": CONNECTIONS, "action": "commitThenFail", "status": 502, "probability": 0.15},
            {"method": "POST", "route": CONNECTIONS, "status": 429, "retryAfter": 1, "probability": 0.2},
            {"method": "GET", "route": CONNECTION, "status": 503, "probability": 0.3},
            {"method": "GET", "route": CONNECTIONS, "status": 500, "probability": 0.2},
            {"method": "POST", "route": CONNECTIONS, "action": "commitThenDrop", "probability": 0.1}
        ]),
    )
    .await;
    create_many(&scenario, 15).await;
    assert_exactly_one_connection_each(&scenario, 15).await;

    // The storm was real: the operator saw each kind of failure and stayed within bounds.
    let requests = scenario.emulator_requests().await;
    eprintln!("requests during the storm: {}", requests["counts"]);
    let count = |status: u64| -> u64 {
        requests["counts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["status"] == status)
            .map(|c| c["count"].as_u64().unwrap())
            .sum()
    };
    assert!(
        count(502) >= 3 && count(429) >= 4 && count(503) >= 4 && count(0) >= 2,
        "{requests}"
    );
    let total: u64 = requests["counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["count"].as_u64().unwrap())
        .sum();
    assert!(
        total < 15 * 40,
        "no hot loop: {total} requests for 15 objects"
    );
    clear_faults(&scenario).await;
    scenario.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a control plane: run `make test` (or `make cluster` and set AEP_E2E_KUBECONFIG)"]
async fn a_platform_restart_is_ridden_out() {
    let mut scenario = Scenario::start(&["restart"]).await;
    create_many(&scenario, 5).await;
    assert_exactly_one_connection_each(&scenario, 5).await;

    // The platform goes away for a while (connection refused), and comes back with its state but
    // without the tokens it had issued: the operator must re-mint and carry on.
    scenario.restart_emulator(Duration::from_secs(3)).await;
    let ns = scenario.namespace().to_string();
    for index in 5..8 {
        scenario
            .create(&ns, &format!("conn-{index:02}"), spec())
            .await;
    }
    assert_exactly_one_connection_each(&scenario, 8).await;
    scenario.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a control plane: run `make test` (or `make cluster` and set AEP_E2E_KUBECONFIG)"]
async fn an_api_server_restart_is_ridden_out() {
    let Some(cluster) = local_cluster_dir() else {
        eprintln!(
            "skipped: the cluster was not started by tools/cluster.sh, so it cannot be restarted here"
        );
        return;
    };
    let mut scenario = Scenario::start(&["apiserver"]).await;
    create_many(&scenario, 4).await;
    assert_exactly_one_connection_each(&scenario, 4).await;

    // The API server goes away (watches break, writes fail) and comes back with the same data.
    restart_component(&cluster, "kube-apiserver", Duration::from_secs(3));
    assert!(
        scenario.operator.is_running(),
        "the operator survives the outage\n{}",
        scenario.operator.log_text()
    );
    let ns = scenario.namespace().to_string();
    for index in 4..7 {
        scenario
            .create(&ns, &format!("conn-{index:02}"), spec())
            .await;
    }
    assert_exactly_one_connection_each(&scenario, 7).await;
    scenario.finish().await;
}
