//! End-to-end harness: a real API server (from `AEP_E2E_KUBECONFIG`), the operator as a separate
//! process authenticated as its own service account (RBAC of `deploy/`), the emulator in-process.
//! Also the two things the demo and the benchmark share with it: the operator's kubeconfig from a
//! TokenRequest ([`write_operator_kubeconfig`]) and the Ready predicate ([`is_ready`]).

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aep_emulator::{DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_ORG_ID, EmulatorConfig};
use aep_streaming_operator::api::{ServedKind, StreamingConnection, StreamingDataflow};
use aep_streaming_operator::controller::status;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::discovery::{Discovery, Scope};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Client, Config, ResourceExt};
use serde_json::{Value, json};

use crate::admin::EmulatorAdmin;
use crate::contract::{self, RecordingProxy};

/// The namespace `deploy/` installs the operator's service account in.
const OPERATOR_NAMESPACE: &str = "aep-streaming-operator";
/// The operator's service account, whose RBAC is that of `deploy/operator/rbac.yaml`.
const OPERATOR_SERVICE_ACCOUNT: &str = "aep-streaming-operator";
const E2E_MANAGER: &str = "e2e-tests";
/// How the operator's requests begin their User-Agent (`aep-streaming-operator/<version>`).
const OPERATOR_USER_AGENT: &str = "aep-streaming-operator/";

/// The repository root (the workspace root, two levels above this crate).
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The operator binary the tests start: the one cargo built beside the running test executable
/// (`target/<profile>/aep-streaming-operator`, as `CARGO_BIN_EXE_…` would name it in the root package), or
/// `AEP_OPERATOR_BINARY`.
fn operator_binary() -> PathBuf {
    if let Ok(path) = std::env::var("AEP_OPERATOR_BINARY") {
        return PathBuf::from(path);
    }
    let test_executable = std::env::current_exe().expect("the test executable's path");
    // target/<profile>/deps/<test>-<hash> → target/<profile>/aep-streaming-operator
    let profile_dir = test_executable
        .parent()
        .and_then(Path::parent)
        .expect("a test executable under target/<profile>/deps");
    profile_dir.join(format!(
        "aep-streaming-operator{}",
        std::env::consts::EXE_SUFFIX
    ))
}

fn kubeconfig_path() -> PathBuf {
    let path = std::env::var("AEP_E2E_KUBECONFIG").unwrap_or_else(|_| {
        panic!(
            "AEP_E2E_KUBECONFIG is not set: run the end-to-end tests with `make test`, or start a control plane \
             with `make cluster` and set AEP_E2E_KUBECONFIG=target/cluster/kubeconfig"
        )
    });
    PathBuf::from(path)
}

/// A client with the kubeconfig's own (admin) identity: for setting up and inspecting, never for
/// the operator.
pub async fn admin_client() -> Client {
    client_for(&kubeconfig_path()).await
}

/// A client with the identity of the kubeconfig at `path` (its current context).
pub async fn client_for(path: &Path) -> Client {
    let kubeconfig = Kubeconfig::read_from(path)
        .unwrap_or_else(|error| panic!("a readable kubeconfig at {}: {error}", path.display()));
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

/// True when the object's `Ready` condition is `True` for its current generation: the operator's own
/// predicate, for the tests and the benchmark alike.
pub fn is_ready(object: &StreamingConnection) -> bool {
    status::is_ready(object.status.as_ref(), object.metadata.generation)
}

/// Installs the CRDs of every served kind and the operator's RBAC (all from the repository), once per
/// cluster; applying again is harmless. The operator refuses to start unless it can list every kind.
pub async fn install(admin: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    for kind in ServedKind::ALL {
        let crd: CustomResourceDefinition =
            serde_saphyr::from_str(&std::fs::read_to_string(repo().join(kind.crd_file())).unwrap())
                .unwrap();
        let name = crd.name_any();
        crds.patch(
            &name,
            &PatchParams::apply(E2E_MANAGER).force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap();
        tokio::time::timeout(
            Duration::from_secs(30),
            await_condition(crds.clone(), &name, conditions::is_crd_established()),
        )
        .await
        .unwrap_or_else(|_| panic!("the CRD {name} is not established in time"))
        .unwrap();
    }
    for file in ["namespace.yaml", "serviceaccount.yaml", "rbac.yaml"] {
        apply_file(admin, &repo().join("deploy/operator").join(file)).await;
    }
    // Discovery of the new group can lag behind Established.
    for kind in ServedKind::ALL {
        let api: Api<DynamicObject> = Api::all_with(admin.clone(), &kind.api_resource());
        let served = wait_for(
            &format!("the {} API to be served", kind.kind()),
            Duration::from_secs(30),
            || async { api.list(&ListParams::default().limit(1)).await.is_ok() },
        )
        .await;
        assert!(served, "the {} API is not served", kind.kind());
    }
}

/// The service account of the namespaced installs ([`Scenario::start_namespaced`]).
const NAMESPACED_SERVICE_ACCOUNT: &str = "aep-streaming-operator-namespaced";

/// Installs the operator for one namespace, as a namespaced install does: a service account whose rights
/// are those of `deploy/operator/rbac.yaml`'s ClusterRole, granted by a Role in `namespace` only, except the one
/// cluster-scoped rule (reading the operator's own CRDs), which stays in a ClusterRole of its own. No
/// cluster-wide Secret read.
async fn install_namespaced(admin: &Client, namespace: &str) {
    let text = std::fs::read_to_string(repo().join("deploy/operator/rbac.yaml")).unwrap();
    let cluster_role = serde_saphyr::from_multiple::<Value>(&text)
        .unwrap()
        .into_iter()
        .find(|document| document["kind"] == "ClusterRole")
        .expect("deploy/operator/rbac.yaml has the operator's ClusterRole");
    let (cluster_rules, namespaced_rules): (Vec<Value>, Vec<Value>) = cluster_role["rules"]
        .as_array()
        .unwrap()
        .iter()
        .cloned()
        .partition(|rule| rule["apiGroups"] == json!(["apiextensions.k8s.io"]));
    let account = json!({"kind": "ServiceAccount", "name": NAMESPACED_SERVICE_ACCOUNT, "namespace": OPERATOR_NAMESPACE});
    let objects = [
        json!({"apiVersion": "v1", "kind": "ServiceAccount",
               "metadata": {"name": NAMESPACED_SERVICE_ACCOUNT, "namespace": OPERATOR_NAMESPACE}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
               "metadata": {"name": NAMESPACED_SERVICE_ACCOUNT, "namespace": namespace},
               "rules": namespaced_rules}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": NAMESPACED_SERVICE_ACCOUNT, "namespace": namespace},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": NAMESPACED_SERVICE_ACCOUNT},
               "subjects": [account]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
               "metadata": {"name": NAMESPACED_SERVICE_ACCOUNT},
               "rules": cluster_rules}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": NAMESPACED_SERVICE_ACCOUNT},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": NAMESPACED_SERVICE_ACCOUNT},
               "subjects": [account]}),
    ];
    let text = objects
        .iter()
        .map(|object| serde_saphyr::to_string(object).unwrap())
        .collect::<Vec<_>>()
        .join("---\n");
    apply_text(admin, &text, "the namespaced install").await;
}

/// Server-side applies every document of a YAML file.
async fn apply_file(client: &Client, path: &Path) {
    let text = std::fs::read_to_string(path).unwrap();
    apply_text(client, &text, &path.display().to_string()).await;
}

/// Server-side applies every document of YAML `text` (from `origin`, for messages).
async fn apply_text(client: &Client, text: &str, origin: &str) {
    let discovery = Discovery::new(client.clone()).run().await.unwrap();
    // Empty documents (a leading `---`, say) are skipped by the parser.
    for object in serde_saphyr::from_multiple::<DynamicObject>(text).unwrap() {
        let gvk = kube::core::GroupVersionKind::try_from(object.types.as_ref().unwrap()).unwrap();
        let (resource, capabilities) = discovery.resolve_gvk(&gvk).expect("a known kind");
        let api: Api<DynamicObject> = match (capabilities.scope, object.namespace()) {
            (Scope::Namespaced, Some(namespace)) => {
                Api::namespaced_with(client.clone(), &namespace, &resource)
            }
            (Scope::Namespaced, None) => Api::default_namespaced_with(client.clone(), &resource),
            (Scope::Cluster, _) => Api::all_with(client.clone(), &resource),
        };
        api.patch(
            &object.name_any(),
            &PatchParams::apply(E2E_MANAGER).force(),
            &Patch::Apply(&object),
        )
        .await
        .unwrap_or_else(|e| panic!("applying {} from {origin}: {e}", object.name_any()));
    }
}

/// Writes a kubeconfig for the operator to `path` (mode 0600): the API server of `admin_kubeconfig`,
/// authenticated with a token of the operator's service account from the TokenRequest API, valid for
/// `lifetime`, so the operator has exactly the RBAC of `deploy/`. The end-to-end tests, `tools/demo.sh`
/// and `tools/bench.sh` (through `aep-testkit operator-kubeconfig`) all write it here.
pub async fn write_operator_kubeconfig(
    admin: &Client,
    admin_kubeconfig: &Path,
    path: &Path,
    lifetime: Duration,
) {
    write_service_account_kubeconfig(
        admin,
        admin_kubeconfig,
        path,
        lifetime,
        OPERATOR_SERVICE_ACCOUNT,
    )
    .await;
}

/// Like [`write_operator_kubeconfig`], for `account` in the operator's namespace.
async fn write_service_account_kubeconfig(
    admin: &Client,
    admin_kubeconfig: &Path,
    path: &Path,
    lifetime: Duration,
    account: &str,
) {
    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), OPERATOR_NAMESPACE);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            expiration_seconds: Some(i64::try_from(lifetime.as_secs()).expect("a sane lifetime")),
            ..TokenRequestSpec::default()
        },
        ..TokenRequest::default()
    };
    let token = accounts
        .create_token_request(account, &PostParams::default(), &request)
        .await
        .expect("a service account token")
        .status
        .unwrap()
        .token;
    let admin_config: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(admin_kubeconfig).unwrap()).unwrap();
    let mut cluster = admin_config["clusters"][0]["cluster"].clone();
    if let Some(ca) = cluster.get("certificate-authority").and_then(Value::as_str) {
        // Relative paths in a kubeconfig are relative to the kubeconfig's folder.
        let ca = admin_kubeconfig.parent().unwrap().join(ca);
        cluster["certificate-authority"] = json!(ca.to_string_lossy());
    }
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "cluster", "cluster": cluster}],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": "cluster", "user": account}}],
        "current-context": "operator",
    });
    // The file holds a token: readable by its owner only, from the moment it exists.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .unwrap_or_else(|error| panic!("writing {}: {error}", path.display()));
    file.write_all(serde_saphyr::to_string(&config).unwrap().as_bytes())
        .unwrap();
}

/// Operator flags for leader election on the Lease in the operator's namespace, with a short lease
/// so that take-overs happen within a test.
pub const LEADER_ELECTION: [&str; 5] = [
    "--leader-election",
    "--leader-election-namespace",
    "aep-streaming-operator",
    "--leader-election-lease-duration",
    "4s",
];

/// The operator binary running as a separate process; stopped (SIGTERM, then SIGKILL) on drop.
pub struct Operator {
    child: Option<Child>,
    /// Where its stdout and stderr go.
    pub log: PathBuf,
}

impl Operator {
    fn start(
        kubeconfig: &Path,
        platform_url: &str,
        log: PathBuf,
        extra_args: &[&str],
        identity: &str,
    ) -> Self {
        let log_file = std::fs::File::create(&log).unwrap();
        let child = Command::new(operator_binary())
            .arg("run")
            .args(["--platform-url", platform_url, "--ims-url", platform_url])
            .args(["--metrics-addr", "127.0.0.1:0", "--flow-service-qps", "100"])
            .args(extra_args)
            .env("KUBECONFIG", kubeconfig)
            .env("POD_NAME", identity)
            .env("RUST_LOG", "info,aep_streaming_operator=debug")
            .stdout(Stdio::from(log_file.try_clone().unwrap()))
            .stderr(Stdio::from(log_file))
            .spawn()
            .expect("the operator starts");
        Self {
            child: Some(child),
            log,
        }
    }

    /// Stops the operator as Kubernetes would: SIGTERM, a grace period, then SIGKILL.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Kills the operator at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// Everything it logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One end-to-end scenario: its namespaces, a credentials Secret in each, the emulator, the operator.
pub struct Scenario {
    /// A client with the cluster's admin identity.
    pub admin: Client,
    /// Base URL of the emulator (IMS, Flow Service and inlet); stable across emulator restarts.
    pub emulator_url: String,
    /// The emulator's admin API.
    pub emulator: EmulatorAdmin,
    running_emulator: Option<aep_emulator::RunningEmulator>,
    /// The operator process (`operator-a`).
    pub operator: Operator,
    /// The scenario's namespaces, each with a random suffix.
    pub namespaces: Vec<String>,
    /// A client for direct requests to the emulator.
    pub http: reqwest::Client,
    /// Between the operators and the emulator, when the scenario records the operators' requests to hold
    /// them to Adobe's published contract ([`Scenario::start_with`]); `None` for [`Scenario::start_direct`].
    proxy: Option<RecordingProxy>,
    /// The namespace the operators watch (`--namespace`), or `None` for every namespace.
    watched_namespace: Option<String>,
    /// Logs, kubeconfig and emulator state of this scenario; kept after the run for a post-mortem.
    pub directory: PathBuf,
}

impl Scenario {
    /// Starts a scenario whose operator watches `namespaces[0]` only, or every namespace when there
    /// are several.
    pub async fn start(namespaces: &[&str]) -> Self {
        Self::start_with(namespaces, &[]).await
    }

    /// Like [`Scenario::start`], with extra flags for the operator (named `operator-a`).
    ///
    /// The operators reach the emulator through a [`RecordingProxy`], and [`Scenario::finish`] checks every
    /// request they sent against Adobe's published contract ([`crate::contract`]).
    pub async fn start_with(namespaces: &[&str], operator_args: &[&str]) -> Self {
        Self::start_recorded(namespaces, operator_args, true).await
    }

    /// Like [`Scenario::start_with`], with the operators talking to the emulator directly. For the fault
    /// tests: a connection the emulator drops (commit then drop) must reach the operator as a dropped
    /// connection, which a proxy in between would turn into an answer of its own.
    pub async fn start_direct(namespaces: &[&str], operator_args: &[&str]) -> Self {
        Self::start_recorded(namespaces, operator_args, false).await
    }

    /// A scenario installed for `namespaces[0]` only, as a namespaced install does (`--namespace`, a
    /// Role there instead of the cluster-wide rights of `deploy/operator/rbac.yaml`'s ClusterRole); the other
    /// namespaces are outside its reach. The operator's requests are recorded as by [`Scenario::start_with`].
    pub async fn start_namespaced(namespaces: &[&str]) -> Self {
        Self::start_as(namespaces, &[], true, Some(NAMESPACED_SERVICE_ACCOUNT)).await
    }

    async fn start_recorded(namespaces: &[&str], operator_args: &[&str], recorded: bool) -> Self {
        Self::start_as(namespaces, operator_args, recorded, None).await
    }

    /// `namespaced_account`: the service account of a namespaced install for `namespaces[0]`, or `None`
    /// for the operator's own (`deploy/`), watching `namespaces[0]` alone when it is the only one.
    async fn start_as(
        namespaces: &[&str],
        operator_args: &[&str],
        recorded: bool,
        namespaced_account: Option<&str>,
    ) -> Self {
        let admin = admin_client().await;
        install(&admin).await;
        let suffix = format!("{:x}", rand::random::<u32>());
        let namespaces: Vec<String> = namespaces.iter().map(|n| format!("{n}-{suffix}")).collect();
        for namespace in &namespaces {
            let api: Api<Namespace> = Api::all(admin.clone());
            api.create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": namespace}})).unwrap(),
            )
            .await
            .unwrap();
            put_secret(&admin, namespace, "aep-credentials", DEMO_CLIENT_SECRET).await;
        }
        let directory = repo().join("target/e2e-logs").join(&namespaces[0]);
        std::fs::create_dir_all(&directory).unwrap();
        let emulator = aep_emulator::start(EmulatorConfig {
            state_file: Some(directory.join("emulator-state.json")),
            ..EmulatorConfig::default()
        })
        .await
        .unwrap();
        let kubeconfig = directory.join("operator-kubeconfig");
        if namespaced_account.is_some() {
            install_namespaced(&admin, &namespaces[0]).await;
        }
        write_service_account_kubeconfig(
            &admin,
            &kubeconfig_path(),
            &kubeconfig,
            Duration::from_secs(3600),
            namespaced_account.unwrap_or(OPERATOR_SERVICE_ACCOUNT),
        )
        .await;
        let watched_namespace =
            (namespaced_account.is_some() || namespaces.len() == 1).then(|| namespaces[0].clone());
        let proxy = if recorded {
            Some(RecordingProxy::start(&emulator.url()).await)
        } else {
            None
        };
        let mut scenario = Self {
            admin,
            emulator_url: emulator.url(),
            emulator: EmulatorAdmin::new(emulator.url()),
            running_emulator: Some(emulator),
            operator: Operator {
                child: None,
                log: PathBuf::new(),
            },
            namespaces,
            http: reqwest::Client::new(),
            proxy,
            watched_namespace,
            directory,
        };
        scenario.operator = scenario.start_operator(&kubeconfig, operator_args, "operator-a");
        scenario
    }

    /// Starts (another) operator process for this scenario, logging to `<identity>.log`.
    pub fn start_operator(
        &self,
        kubeconfig: &Path,
        extra_args: &[&str],
        identity: &str,
    ) -> Operator {
        let mut args = vec!["--resync-interval", "3s"];
        if let Some(namespace) = &self.watched_namespace {
            args.extend(["--namespace", namespace.as_str()]);
        }
        args.extend(extra_args);
        let log = self.directory.join(format!("{identity}.log"));
        Operator::start(kubeconfig, &self.platform_url(), log, &args, identity)
    }

    /// The base URL the operators use for IMS and Flow Service: the recording proxy's, or the emulator's.
    pub fn platform_url(&self) -> String {
        self.proxy
            .as_ref()
            .map_or_else(|| self.emulator_url.clone(), RecordingProxy::url)
    }

    /// Panics unless every request the operators sent (recognised by their User-Agent) agrees with
    /// Adobe's published contract, apart from the deviations that Adobe's own documented examples make
    /// ([`contract::DOCUMENTED_EXAMPLE_DEVIATIONS`]). Requests of the tests themselves are not checked
    /// here: some are deliberately outside the contract. Without a proxy there is nothing to check.
    pub fn assert_operator_requests_in_contract(&self) {
        let Some(proxy) = &self.proxy else {
            return;
        };
        let exchanges: Vec<_> = proxy
            .exchanges()
            .into_iter()
            .filter(|exchange| {
                exchange
                    .request_header("user-agent")
                    .is_some_and(|agent| agent.starts_with(OPERATOR_USER_AGENT))
            })
            .collect();
        assert!(
            !exchanges.is_empty(),
            "the recording proxy saw no request of the operator"
        );
        let violations: Vec<String> = exchanges
            .iter()
            .flat_map(|exchange| {
                contract::validate_request(exchange)
                    .into_iter()
                    .filter(|violation| !contract::is_documented_example_deviation(violation))
                    .map(move |violation| format!("  {}: {violation}", exchange.describe()))
            })
            .collect();
        assert!(
            violations.is_empty(),
            "the operator sent {} request(s) outside Adobe's published contract:\n{}",
            violations.len(),
            violations.join("\n")
        );
    }

    /// Stops the emulator and starts it again on the same address with the same state file, as a
    /// restart of the platform would look to the operator (tokens it issued are gone).
    pub async fn restart_emulator(&mut self, downtime: Duration) {
        let running = self.running_emulator.take().expect("the emulator runs");
        let listen = running.local_addr();
        running.shutdown().await;
        tokio::time::sleep(downtime).await;
        let config = EmulatorConfig {
            listen,
            state_file: Some(self.directory.join("emulator-state.json")),
            ..EmulatorConfig::default()
        };
        for attempt in 0.. {
            match aep_emulator::start(config.clone()).await {
                Ok(emulator) => {
                    self.running_emulator = Some(emulator);
                    return;
                }
                Err(error) if attempt < 50 => {
                    eprintln!("restarting the emulator: {error}; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => panic!("the emulator did not restart: {error}"),
            }
        }
    }

    /// The kubeconfig the scenario's operators run with.
    pub fn operator_kubeconfig(&self) -> PathBuf {
        self.directory.join("operator-kubeconfig")
    }

    /// The first namespace.
    pub fn namespace(&self) -> &str {
        &self.namespaces[0]
    }

    /// The StreamingConnections of `namespace`, as admin.
    pub fn connections(&self, namespace: &str) -> Api<StreamingConnection> {
        Api::namespaced(self.admin.clone(), namespace)
    }

    /// Creates a StreamingConnection from a JSON spec (defaults from the CRD apply).
    pub async fn create(&self, namespace: &str, name: &str, spec: Value) -> StreamingConnection {
        let object = json!({
            "apiVersion": "streaming.aep-operator.dev/v1alpha1",
            "kind": "StreamingConnection",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        });
        self.connections(namespace)
            .create(
                &PostParams::default(),
                &serde_json::from_value(object).unwrap(),
            )
            .await
            .unwrap_or_else(|e| panic!("creating {namespace}/{name}: {e}"))
    }

    /// Waits until the object is Ready for its current generation ([`is_ready`]), and returns it.
    pub async fn wait_ready(&self, namespace: &str, name: &str) -> StreamingConnection {
        self.wait_until(namespace, name, "Ready=True", is_ready)
            .await
    }

    /// Waits until condition `type_` has `status` (and `reason`, when given) for the current generation.
    pub async fn wait_condition(
        &self,
        namespace: &str,
        name: &str,
        type_: &str,
        status: &str,
        reason: Option<&str>,
    ) -> StreamingConnection {
        let what = format!("{type_}={status} {reason:?}");
        self.wait_until(namespace, name, &what, |object| {
            let generation = object.metadata.generation;
            object.status.as_ref().is_some_and(|s| {
                s.conditions.iter().any(|c| {
                    c.type_ == type_
                        && c.status == status
                        && c.observed_generation == generation
                        && reason.is_none_or(|r| c.reason == r)
                })
            })
        })
        .await
    }

    /// Polls the object until `matched` holds, and returns it; panics with its status and the
    /// operator's log after two minutes.
    async fn wait_until(
        &self,
        namespace: &str,
        name: &str,
        what: &str,
        matched: impl Fn(&StreamingConnection) -> bool,
    ) -> StreamingConnection {
        self.wait_for_object(self.connections(namespace), name, what, matched)
            .await
    }

    /// Polls object `name` of `api` until `matched` holds, and returns it; panics with the object
    /// and the operator's log after two minutes.
    pub async fn wait_for_object<K>(
        &self,
        api: Api<K>,
        name: &str,
        what: &str,
        matched: impl Fn(&K) -> bool,
    ) -> K
    where
        K: kube::Resource
            + Clone
            + serde::de::DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
    {
        // Long enough for a create whose answer never came to settle (the scenarios' request
        // timeout plus 30 s) and be retried with the backoff.
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let object = api.get(name).await.unwrap();
            if matched(&object) {
                return object;
            }
            if Instant::now() > deadline {
                let status = serde_json::to_value(&object).unwrap()["status"].clone();
                panic!(
                    "{name} never had {what}; status: {}\n--- operator log ({}) ---\n{}",
                    serde_json::to_string_pretty(&status).unwrap(),
                    self.operator.log.display(),
                    tail(&self.operator.log_text(), 60)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The StreamingDataflows of `namespace`, as admin.
    pub fn dataflows(&self, namespace: &str) -> Api<StreamingDataflow> {
        Api::namespaced(self.admin.clone(), namespace)
    }

    /// Creates a StreamingDataflow from a JSON spec (defaults from the CRD apply).
    pub async fn create_dataflow(
        &self,
        namespace: &str,
        name: &str,
        spec: Value,
    ) -> StreamingDataflow {
        let object = json!({
            "apiVersion": "streaming.aep-operator.dev/v1alpha1",
            "kind": "StreamingDataflow",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        });
        self.dataflows(namespace)
            .create(
                &PostParams::default(),
                &serde_json::from_value(object).unwrap(),
            )
            .await
            .unwrap_or_else(|e| panic!("creating {namespace}/{name}: {e}"))
    }

    /// Waits until condition `type_` of StreamingDataflow `name` has `status` (and `reason`, when
    /// given) for its current generation, and returns it.
    pub async fn wait_dataflow_condition(
        &self,
        namespace: &str,
        name: &str,
        type_: &str,
        status: &str,
        reason: Option<&str>,
    ) -> StreamingDataflow {
        let what = format!("{type_}={status} {reason:?}");
        self.wait_for_object(self.dataflows(namespace), name, &what, |object| {
            let generation = object.metadata.generation;
            object.status.as_ref().is_some_and(|s| {
                s.conditions.iter().any(|c| {
                    c.type_ == type_
                        && c.status == status
                        && c.observed_generation == generation
                        && reason.is_none_or(|r| c.reason == r)
                })
            })
        })
        .await
    }

    /// Waits until StreamingDataflow `name` is Ready for its current generation, and returns it.
    pub async fn wait_dataflow_ready(&self, namespace: &str, name: &str) -> StreamingDataflow {
        self.wait_dataflow_condition(namespace, name, "Ready", "True", None)
            .await
    }

    /// Deletes StreamingDataflow `name` and waits until it is gone (its finalizer has run).
    pub async fn delete_dataflow_and_wait(&self, namespace: &str, name: &str) {
        let api = self.dataflows(namespace);
        api.delete(name, &DeleteParams::default()).await.unwrap();
        let gone = wait_for(
            &format!("{namespace}/{name} to be deleted"),
            Duration::from_secs(60),
            || async { api.get_opt(name).await.unwrap().is_none() },
        )
        .await;
        assert!(
            gone,
            "{namespace}/{name} was not deleted\n{}",
            tail(&self.operator.log_text(), 40)
        );
    }

    /// Deletes the object and waits until it is gone (the finalizer has run).
    pub async fn delete_and_wait(&self, namespace: &str, name: &str) {
        let api = self.connections(namespace);
        api.delete(name, &DeleteParams::default()).await.unwrap();
        let gone = wait_for(
            &format!("{namespace}/{name} to be deleted"),
            Duration::from_secs(60),
            || async { api.get_opt(name).await.unwrap().is_none() },
        )
        .await;
        assert!(
            gone,
            "{namespace}/{name} was not deleted\n{}",
            tail(&self.operator.log_text(), 40)
        );
    }

    /// An IMS token from the emulator for the demo client, as an application would get one.
    pub async fn ims_token(&self) -> String {
        crate::emulator::fetch_token(
            &self.http,
            &self.emulator_url,
            DEMO_CLIENT_ID,
            DEMO_CLIENT_SECRET,
        )
        .await
    }

    /// Flow Service headers for direct calls to the emulator (as another tool would make them).
    pub async fn flow_request(
        &self,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::RequestBuilder {
        let token = self.ims_token().await;
        let url = format!("{}/data/foundation/flowservice{path}", self.emulator_url);
        crate::emulator::flow_request(&self.http, method, &url, &token, "prod")
    }

    /// Deletes every StreamingDataflow and StreamingConnection of the scenario (so their finalizers
    /// run while the operator is still there), then the namespaces, then stops the operator.
    pub async fn finish(mut self) {
        for namespace in self.namespaces.clone() {
            let dataflows = self.dataflows(&namespace);
            for object in dataflows.list(&ListParams::default()).await.unwrap() {
                let _ = dataflows
                    .delete(&object.name_any(), &DeleteParams::default())
                    .await;
            }
            let api = self.connections(&namespace);
            for object in api.list(&ListParams::default()).await.unwrap() {
                api.delete(&object.name_any(), &DeleteParams::default())
                    .await
                    .unwrap();
            }
            let emptied = wait_for(
                &format!("StreamingConnections in {namespace} to be deleted"),
                Duration::from_secs(120),
                || async {
                    api.list(&ListParams::default())
                        .await
                        .unwrap()
                        .items
                        .is_empty()
                },
            )
            .await;
            assert!(
                emptied,
                "cleanup of {namespace} hung\n{}",
                tail(&self.operator.log_text(), 40)
            );
            let namespaces: Api<Namespace> = Api::all(self.admin.clone());
            let _ = namespaces
                .delete(&namespace, &DeleteParams::default())
                .await;
        }
        self.operator.stop();
        self.assert_operator_requests_in_contract();
        let log = self.operator.log_text();
        assert!(
            !log.contains(DEMO_CLIENT_SECRET),
            "the operator log contains the client secret"
        );
        assert!(
            !log.to_lowercase().contains("bearer "),
            "the operator log contains a bearer token"
        );
    }
}

/// Creates or replaces a credentials Secret.
pub async fn put_secret(admin: &Client, namespace: &str, name: &str, client_secret: &str) {
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), namespace);
    let secret = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "stringData": {"clientId": DEMO_CLIENT_ID, "clientSecret": client_secret, "orgId": DEMO_ORG_ID},
    });
    secrets
        .patch(
            name,
            &PatchParams::apply(E2E_MANAGER).force(),
            &Patch::Apply(&secret),
        )
        .await
        .unwrap();
}

/// Polls `check` until it is true or `timeout` passes; returns whether it became true.
pub async fn wait_for<F, Fut>(what: &str, timeout: Duration, check: F) -> bool
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("timed out waiting for {what}");
    false
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The folder of the local control plane that `tools/cluster.sh` started, when the tests run on one
/// (it can then restart components); `None` for a cluster from elsewhere.
pub fn local_cluster_dir() -> Option<PathBuf> {
    let dir = std::env::var("AEP_E2E_CLUSTER_DIR")
        .map(PathBuf::from)
        .ok()
        .or_else(|| kubeconfig_path().parent().map(Path::to_path_buf))?;
    dir.join("cmd/kube-apiserver.args").exists().then_some(dir)
}

/// Restarts one component of the local control plane (`tools/cluster.sh restart`).
pub fn restart_component(dir: &Path, component: &str, downtime: Duration) {
    let status = Command::new(repo().join("tools/cluster.sh"))
        .arg("restart")
        .arg(dir)
        .arg(component)
        .args(["--downtime", &downtime.as_secs().to_string()])
        .status()
        .expect("tools/cluster.sh runs");
    assert!(status.success(), "restarting {component} failed");
}
