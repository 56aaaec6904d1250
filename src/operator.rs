//! `aep-streaming-operator run`: wires the command line to the Kubernetes client, the Flow Service
//! client, the HTTP endpoints and the controller, and shuts all of them down on SIGTERM.

use std::sync::Arc;

use ::http::HeaderValue;
use ::http::header::USER_AGENT;
use anyhow::Context as _;
use kube::Client;
use kube::api::{Api, ListParams};
use kube::client::ClientBuilder;
use tokio::sync::watch;
use tower_http::set_header::SetRequestHeaderLayer;
use tracing::info;

use crate::api::StreamingConnection;
use crate::cli::RunArgs;
use crate::controller::{self, Settings};
use crate::flow::{FlowClient, FlowClientConfig};
use crate::http::{self, Health};
use crate::leader::{self, LeaderElection, LeaseTiming};
use crate::metrics::{FlowMetrics, Metrics};

/// Runs the operator until SIGTERM or SIGINT.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let client = kubernetes_client().await?;
    check_crd_installed(&client, args.namespace.as_deref()).await?;

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

    let health = Health::new(metrics.clone());
    let server = tokio::spawn(http::serve(
        args.metrics_addr,
        health.clone(),
        stopped(stop_rx.clone()),
    ));
    health.set_ready(true);

    // With leader election, wait (as a standby) until this replica holds the Lease.
    let election = match args.leader_election {
        true => Some(Arc::new(leader_election(&client, &args)?)),
        false => None,
    };
    if let Some(election) = &election {
        tokio::select! {
            () = election.acquire() => {}
            () = stopped(stop_rx.clone()) => {
                server.await.context("the HTTP server task failed")?.context("the HTTP server failed")?;
                info!("stopped before becoming the leader");
                return Ok(());
            }
        }
    }
    metrics.leader.set(1);

    // The controller stops on SIGTERM, or when the Lease can no longer be renewed.
    let (lost_tx, lost_rx) = watch::channel(false);
    let renewal = election.clone().map(|election| {
        tokio::spawn(async move {
            election.keep_renewing().await;
            let _ = lost_tx.send(true);
        })
    });
    let mut stop = stop_rx.clone();
    let mut lost = lost_rx.clone();
    let shutdown = async move {
        // Without leader election nobody ever reports a lost Lease: a closed channel must not
        // count as one, or the controller would stop at once.
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
    info!(
        platform_url = %args.platform_url,
        namespace = args.namespace.as_deref().unwrap_or("<all>"),
        "starting the StreamingConnection controller"
    );
    controller::run(
        client,
        flow,
        settings,
        metrics.clone(),
        crate::leader::Fence::unfenced(),
        shutdown,
    )
    .await;
    metrics.leader.set(0);

    if *lost_rx.borrow() {
        // Another replica may already reconcile: exit so that this one restarts as a standby.
        anyhow::bail!(
            "lost the leader-election Lease; exiting so that this replica restarts as a standby"
        );
    }
    if let Some(election) = &election {
        // Stop renewing first, or a renewal could take the released Lease back.
        if let Some(renewal) = renewal {
            renewal.abort();
        }
        election.release().await;
    }
    health.set_ready(false);
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

/// The Kubernetes client. Its User-Agent names the operator, so that the API server records the
/// finalizer patches (which are not server-side applies) under the operator's field manager too.
async fn kubernetes_client() -> anyhow::Result<Client> {
    let config = kube::Config::infer()
        .await
        .context("no Kubernetes configuration found (in-cluster service account or KUBECONFIG)")?;
    let user_agent = HeaderValue::from_static(concat!(
        "aep-streaming-operator/",
        env!("CARGO_PKG_VERSION")
    ));
    Ok(ClientBuilder::try_from(config)
        .context("building the Kubernetes client")?
        .with_layer(&SetRequestHeaderLayer::overriding(USER_AGENT, user_agent))
        .build())
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

/// Fails early, with the fix in the message, when the CRD is missing or the operator may not list it.
async fn check_crd_installed(client: &Client, namespace: Option<&str>) -> anyhow::Result<()> {
    let api: Api<StreamingConnection> = match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    };
    api.list(&ListParams::default().limit(1)).await.context(
        "cannot list StreamingConnections: install the CRD (kubectl apply -f crds/streamingconnection.yaml) \
         and the RBAC of deploy/ first",
    )?;
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
