//! `aep-streaming-operator run`: wires the command line to the Kubernetes client, the Flow Service
//! client, the HTTP endpoints and the controller, and shuts all of them down on SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use ::http::HeaderValue;
use ::http::header::USER_AGENT;
use anyhow::Context as _;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Client;
use kube::api::{Api, DynamicObject, ListParams};
use tokio::sync::watch;
use tracing::{debug, error, info, warn};

use crate::api::ServedKind;
use crate::cli::RunArgs;
use crate::controller::{self, Settings};
use crate::http::{self, Health};
use crate::leader::{self, Fence, LeaderElection, LeaseActivity, LeaseTiming};
use crate::metrics::{FlowMetrics, Metrics};
use aep_flow::{FlowClient, FlowClientConfig};

/// After the Lease is lost, how long the controller may take to stop before `run` gives up on it.
/// Flow Service writes already stopped (the fence was revoked first); this bounds everything else.
const STOP_AFTER_LOSS: Duration = Duration::from_secs(5);

/// Past [`STOP_AFTER_LOSS`], how long returning from `main` may take before the process exits anyway.
const EXIT_AFTER_LOSS: Duration = Duration::from_secs(3);

/// Runs the operator until SIGTERM or SIGINT, or until it must give way to another replica.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let client = kubernetes_client().await?;
    check_crds_installed(&client, args.namespace.as_deref()).await?;

    let metrics = Arc::new(Metrics::default());
    let flow = FlowClient::new(flow_config(&args, metrics.clone())?)
        .context("configuring the Flow Service client")?;
    let settings = Settings {
        resync_interval: args.resync_interval,
        max_concurrent_reconciles: args.max_concurrent_reconciles,
        namespace: args.namespace.clone(),
        create_settle: args.flow_request_timeout + controller::CREATE_SETTLE_DELAY,
        missing_confirm_window: controller::MISSING_CONFIRM_WINDOW,
    };

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        info!("shutdown requested; finishing reconciles in flight");
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };

    // Alive at once, ready only once this replica reconciles (see `http`).
    let health = Health::new(metrics.clone());
    let server = tokio::spawn(http::serve(
        args.metrics_addr,
        health.clone(),
        stopped(stop_rx.clone()),
    ));

    // With leader election, wait (as a standby) until this replica holds the Lease. Without it,
    // refuse to run next to a replica that holds and renews the Lease: both would reconcile.
    let election = match args.leader_election {
        true => Some(Arc::new(leader_election(&client, &args)?)),
        false => None,
    };
    let (fence, standalone_lease) = match &election {
        Some(election) => {
            tokio::select! {
                () = election.acquire() => {}
                () = stopped(stop_rx.clone()) => {
                    server.await.context("the HTTP server task failed")?.context("the HTTP server failed")?;
                    info!("stopped before becoming the leader");
                    return Ok(());
                }
            }
            (election.fence(), None)
        }
        None => {
            let lease = tokio::select! {
                checked = refuse_next_to_a_leader(&client, &args) => checked?,
                () = stopped(stop_rx.clone()) => {
                    server.await.context("the HTTP server task failed")?.context("the HTTP server failed")?;
                    info!("stopped before starting");
                    return Ok(());
                }
            };
            (Fence::unfenced(), lease)
        }
    };
    // Without leader election this process reconciles too, so it reports `leader 1` like a leader
    // does. That is unambiguous only because of the check above and the guard below: a process
    // without leader election neither starts nor keeps running while a replica renews the Lease.
    metrics.leader.set(1);
    health.set_leading(true);

    // The watchdog ends when this replica must stop reconciling: the Lease is lost, or (without
    // leader election) a replica with leader election appeared. Writes stop at once (the fence),
    // the process within a bound.
    let (lost_tx, lost_rx) = watch::channel(false);
    let give_way = {
        let (fence, metrics, health) = (fence.clone(), metrics.clone(), health.clone());
        move || {
            fence.revoke();
            metrics.leader.set(0);
            health.set_leading(false);
            let _ = lost_tx.send(true);
            exit_process_after(STOP_AFTER_LOSS + EXIT_AFTER_LOSS);
        }
    };
    let watchdog = match (&election, standalone_lease) {
        (Some(election), _) => {
            let election = election.clone();
            Some(tokio::spawn(async move {
                election.keep_renewing().await;
                give_way();
            }))
        }
        (None, Some((leases, namespace))) => {
            let window = args.leader_election_lease_duration;
            Some(tokio::spawn(async move {
                let holder = until_another_replica_leads(&leases, window).await;
                error!(
                    %holder,
                    %namespace,
                    lease = leader::LEASE_NAME,
                    "a replica with leader election started and renews the Lease; this one runs \
                     without --leader-election and stops, so that only one reconciles"
                );
                give_way();
            }))
        }
        (None, None) => None,
    };

    let mut stop = stop_rx.clone();
    let mut lost = lost_rx.clone();
    let shutdown = async move {
        // Nobody may ever report a lost Lease (no watchdog, or one aborted on a graceful stop): a
        // closed channel must not count as a loss, or the controller would stop at once.
        let leadership_lost = async move {
            if lost.wait_for(|lost| *lost).await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            _ = stop.wait_for(|stop| *stop) => {}
            () = leadership_lost => {}
        }
    };
    let mut lost = lost_rx.clone();
    let stop_bound_after_loss = async move {
        if lost.wait_for(|lost| *lost).await.is_err() {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(STOP_AFTER_LOSS).await;
    };
    info!(
        platform_url = %args.platform_url,
        namespace = args.namespace.as_deref().unwrap_or("<all>"),
        "starting the StreamingConnection controller"
    );
    let controller = controller::run(
        client,
        flow,
        settings,
        metrics.clone(),
        fence.clone(),
        health.clone(),
        shutdown,
    );
    tokio::select! {
        () = controller => {}
        // Dropping the controller cancels the reconciles still in flight at their next await.
        () = stop_bound_after_loss => warn!(
            bound = ?STOP_AFTER_LOSS,
            "the controller did not stop in time after giving way; abandoning the reconciles in flight"
        ),
    }
    metrics.leader.set(0);
    health.set_leading(false);
    fence.revoke();

    if *lost_rx.borrow() {
        // Another replica may already reconcile: exit so that this one restarts as a standby.
        anyhow::bail!(
            "stopped reconciling because another replica leads (lost the leader-election Lease, or a \
             replica with leader election runs next to this one); exiting"
        );
    }
    // Stop renewing first, or a renewal could take the released Lease back.
    if let Some(watchdog) = watchdog {
        watchdog.abort();
    }
    if let Some(election) = &election {
        election.release().await;
    }
    server
        .await
        .context("the HTTP server task failed")?
        .context("the HTTP server failed")?;
    info!("stopped");
    Ok(())
}

fn leader_election(client: &Client, args: &RunArgs) -> anyhow::Result<LeaderElection> {
    let namespace = args
        .leader_election_namespace
        .clone()
        .or_else(leader::default_namespace)
        .context("--leader-election needs --leader-election-namespace outside a pod")?;
    Ok(LeaderElection::new(
        client.clone(),
        &namespace,
        leader::default_identity(),
        LeaseTiming::new(args.leader_election_lease_duration),
    ))
}

/// Without leader election: reads the Lease for one lease duration and fails if a replica holds
/// and renews it. Returns the Lease to keep guarding, or `None` when it cannot be read (namespace
/// unknown, or no RBAC for it): the check is a safety net for a misconfiguration, not a gate.
async fn refuse_next_to_a_leader(
    client: &Client,
    args: &RunArgs,
) -> anyhow::Result<Option<(Api<Lease>, String)>> {
    let Some(namespace) = args
        .leader_election_namespace
        .clone()
        .or_else(leader::default_namespace)
    else {
        debug!(
            "no --leader-election-namespace and not in a pod: not checking whether a replica with \
             leader election runs"
        );
        return Ok(None);
    };
    let leases: Api<Lease> = Api::namespaced(client.clone(), &namespace);
    let window = args.leader_election_lease_duration;
    let poll = (window / 4).min(Duration::from_secs(1));
    match leader::watch_lease_activity(&leases, window, poll).await {
        Ok(LeaseActivity::Idle) => Ok(Some((leases, namespace))),
        Ok(LeaseActivity::Renewed { holder }) => anyhow::bail!(
            "the leader-election Lease {namespace}/{} is held by {holder:?}, which renews it: another \
             instance of the operator runs with --leader-election. Starting without leader election \
             would make both reconcile (and create duplicate connections). Enable --leader-election \
             on this instance too, or stop the other one",
            leader::LEASE_NAME
        ),
        Err(kube::Error::Api(status)) if status.code == 403 => {
            warn!(
                %namespace,
                lease = leader::LEASE_NAME,
                "may not read the leader-election Lease: cannot check that no replica with leader \
                 election runs next to this one (grant `get` on leases, or enable --leader-election)"
            );
            Ok(None)
        }
        Err(error) => {
            warn!(%error, %namespace, "could not read the leader-election Lease; starting anyway");
            Ok(Some((leases, namespace)))
        }
    }
}

/// Without leader election, after start-up: returns the holder once a replica with leader election
/// holds and renews the Lease. Two reads a lease duration apart see any live holder renew.
async fn until_another_replica_leads(leases: &Api<Lease>, window: Duration) -> String {
    loop {
        match leader::watch_lease_activity(leases, window, window).await {
            Ok(LeaseActivity::Renewed { holder }) => return holder,
            Ok(LeaseActivity::Idle) => {}
            Err(kube::Error::Api(status)) if status.code == 403 => {
                warn!("may no longer read the leader-election Lease; stopped watching it");
                return std::future::pending().await;
            }
            Err(error) => {
                debug!(%error, "reading the leader-election Lease failed; retrying");
                tokio::time::sleep(window).await;
            }
        }
    }
}

/// Ends the process `after` from now if it still runs. Returning an error from `run` is the normal
/// way out, but dropping the Tokio runtime waits without a bound for blocking tasks (the HTTP
/// clients resolve host names on them), and a replica that gave way must not linger.
fn exit_process_after(after: Duration) {
    std::thread::spawn(move || {
        std::thread::sleep(after);
        error!(bound = ?after, "the operator did not exit in time after giving way; exiting now");
        std::process::exit(1);
    });
}

/// The Kubernetes client. Its User-Agent names the operator, so that the API server records the
/// finalizer patches (which are not server-side applies) under the operator's field manager too.
async fn kubernetes_client() -> anyhow::Result<Client> {
    let mut config = kube::Config::infer()
        .await
        .context("no Kubernetes configuration found (in-cluster service account or KUBECONFIG)")?;
    // kube sends no User-Agent of its own, so an extra header on every request sets it (and no
    // tower-http layer of ours is needed).
    config.headers.push((
        USER_AGENT,
        HeaderValue::from_static(concat!(
            "aep-streaming-operator/",
            env!("CARGO_PKG_VERSION")
        )),
    ));
    Client::try_from(config).context("building the Kubernetes client")
}

fn flow_config(args: &RunArgs, metrics: Arc<Metrics>) -> anyhow::Result<FlowClientConfig> {
    let extra_ca_pem = match &args.ca_file {
        Some(path) => Some(
            std::fs::read(path).with_context(|| format!("reading --ca-file {}", path.display()))?,
        ),
        None => None,
    };
    Ok(FlowClientConfig {
        platform_url: args.platform_url.clone(),
        ims_url: args.ims_url.clone(),
        qps: args.flow_service_qps,
        request_timeout: args.flow_request_timeout,
        extra_ca_pem,
        observer: Some(Arc::new(FlowMetrics(metrics))),
        ..FlowClientConfig::default()
    })
}

/// Fails early, with the fix in the message, when the CRD of a served kind is missing or the operator may
/// not list its objects.
async fn check_crds_installed(client: &Client, namespace: Option<&str>) -> anyhow::Result<()> {
    for kind in ServedKind::ALL {
        // Untyped, so that one loop covers every kind; only whether the list succeeds matters.
        let resource = kind.api_resource();
        let api: Api<DynamicObject> = match namespace {
            Some(namespace) => Api::namespaced_with(client.clone(), namespace, &resource),
            None => Api::all_with(client.clone(), &resource),
        };
        api.list(&ListParams::default().limit(1))
            .await
            .with_context(|| {
                format!(
                    "cannot list {}s: install the CRD (kubectl apply -f {}) and the RBAC of deploy/ first",
                    kind.kind(),
                    kind.crd_file()
                )
            })?;
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
