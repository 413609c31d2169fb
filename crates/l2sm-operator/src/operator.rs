//! `l2sm operator`: runs the reconcilers (and the webhook) against the cluster, after winning
//! the leader election when it is on.

use crate::crd::{L2Network, NetworkEdgeDevice, Overlay, QuarantinePodRequest};
use crate::leader::{LeaderElector, Timings, DEFAULT_LEASE_NAME};
use crate::reconcile::{self, pod::pod_attachments, pod::requested_networks, Context, Settings};
use crate::webhook;
use futures::{FutureExt as _, StreamExt as _};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{watcher, Controller, WatchStreamExt as _};
use kube::{Api, ResourceExt};
use l2sm_api::{ControllerClient, RetryPolicy};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Options of `l2sm operator` (flags, or the environment variables named).
#[derive(Clone, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct OperatorArgs {
    /// Something else than running the operator.
    #[command(subcommand)]
    pub command: Option<OperatorCommand>,
    /// The controller's REST API, from `l2sm`'s global `--controller-url`
    /// (`L2SM_CONTROLLER_URL`). Default: upstream's `http://$CONTROLLER_IP:$CONTROLLER_PORT`
    /// (l2sm-controller-service.l2sm-system.svc.cluster.local, 8181).
    #[arg(skip)]
    pub controller_url: Option<String>,
    /// Controller API user.
    #[arg(long, env = "L2SM_API_USER")]
    pub api_user: Option<String>,
    /// Controller API password.
    #[arg(long, env = "L2SM_API_PASSWORD", hide_env_values = true)]
    pub api_password: Option<String>,
    /// Namespace the operator runs in (its Lease lives here).
    #[arg(long, env = "POD_NAMESPACE", default_value = "l2sm-system")]
    pub namespace: String,
    /// Reconcile only resources of this namespace (default: every namespace).
    #[arg(long, env = "L2SM_WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,
    /// Elect a leader among replicas with a Lease (run more than one replica only with this).
    #[arg(long, env = "L2SM_LEADER_ELECT", default_value_t = false)]
    pub leader_elect: bool,
    /// Name of the Lease (upstream's, so the two operators never lead together).
    #[arg(long, default_value = DEFAULT_LEASE_NAME)]
    pub lease_name: String,
    /// Identity in the Lease (default: the host name, which is the pod name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Serve the mutating webhook (upstream's ENABLE_WEBHOOKS=false turns it off).
    #[arg(long, env = "ENABLE_WEBHOOKS", default_value_t = true, action = clap::ArgAction::Set)]
    pub webhook: bool,
    /// Webhook HTTPS address.
    #[arg(long, default_value = "0.0.0.0:9443")]
    pub webhook_listen: SocketAddr,
    /// Webhook certificate (PEM), as cert-manager mounts it.
    #[arg(long, default_value = "/tmp/k8s-webhook-server/serving-certs/tls.crt")]
    pub webhook_cert: PathBuf,
    /// Webhook private key (PEM).
    #[arg(long, default_value = "/tmp/k8s-webhook-server/serving-certs/tls.key")]
    pub webhook_key: PathBuf,
    /// What the webhook does with a pod it cannot honour: `reject` it with a message naming the
    /// network or field, or `annotate` (admit it and set `l2sm/error`).
    #[arg(long, default_value = "reject", value_parser = ["reject", "annotate"])]
    pub webhook_on_error: String,
    /// Without certificate files: one self-signed CA and serving certificate for this Service
    /// (in `--namespace`), shared by every replica through `--webhook-self-signed-secret`,
    /// with the CA put into the MutatingWebhookConfiguration.
    #[arg(long, env = "L2SM_WEBHOOK_SELF_SIGNED_SERVICE")]
    pub webhook_self_signed_service: Option<String>,
    /// Secret (in `--namespace`) the replicas share the self-signed certificate through.
    #[arg(long, default_value = webhook::SELF_SIGNED_SECRET)]
    pub webhook_self_signed_secret: String,
    /// The MutatingWebhookConfiguration whose `caBundle` a self-signed bootstrap sets.
    #[arg(long, default_value = "l2sm-mutating-webhook-configuration")]
    pub webhook_configuration: String,
    /// Image of the node agent the Overlay reconciler deploys.
    #[arg(
        long,
        env = "L2SM_AGENT_IMAGE",
        default_value = "ghcr.io/l2sm/l2sm:latest"
    )]
    pub agent_image: String,
    /// Other images an Overlay's `switchTemplate` may run the agents with, comma-separated:
    /// exact references, or `repository:*` for any tag or digest of a repository. Any other
    /// image is refused (condition `TemplateAccepted=False`); upstream's switch image maps to
    /// `--agent-image`. Default: none (only `--agent-image`).
    #[arg(long, env = "L2SM_ALLOWED_AGENT_IMAGES", value_delimiter = ',')]
    pub allowed_agent_images: Vec<String>,
    /// Which namespaces may use an L2Network: `global` (upstream's behaviour: every
    /// namespace, by name) or `namespace` (its own, and those its annotation
    /// `l2sm.l2sm.k8s.local/allowed-namespaces` lists; the webhook refuses other pods and no
    /// NAD is written for them).
    #[arg(long, env = "L2SM_NETWORK_SCOPE", default_value = "global", value_parser = ["global", "namespace"])]
    pub network_scope: String,
    /// Secret (keys `username`, `password`, as a kubernetes.io/basic-auth Secret) the agents
    /// read the controller credentials from, with `--agent-api-auth credentials`.
    #[arg(long, default_value = "l2sm-controller-credentials")]
    pub credentials_secret: String,
    /// How the agents authenticate to the controller's REST API: `certificate` (their node's
    /// switch certificate as TLS client certificate: the agent of that node only; needs an
    /// `https://` controller URL whose server trusts the switch CA) or `credentials` (the
    /// shared admin Basic credential of `--credentials-secret`, e.g. over plain HTTP).
    #[arg(long, env = "L2SM_AGENT_API_AUTH", default_value = "certificate", value_parser = ["certificate", "credentials"])]
    pub agent_api_auth: String,
    /// How the nodes get their switch certificates: `auto` (the agent pods' init container
    /// `l2sm agent-cert` requests one, which the operator's signer approves and signs) or
    /// `manual` (placed on each node by hand; docs/kubernetes.md, "Switch certificates").
    #[arg(long, env = "L2SM_SWITCH_CERTS", default_value = "auto", value_parser = ["auto", "manual"])]
    pub switch_certs: String,
    /// ServiceAccount (in `--namespace`) the agent pods run as; the signer approves only
    /// requests from it.
    #[arg(long, default_value = crate::switch_cert::signer::DEFAULT_AGENT_SERVICE_ACCOUNT)]
    pub agent_service_account: String,
    /// Secret (in `--namespace`; `tls.crt`, PKCS#8 `tls.key`) of the CA that signs switch
    /// certificates.
    #[arg(long, default_value = crate::switch_cert::signer::DEFAULT_CA_SECRET)]
    pub switch_ca_secret: String,
    /// Longest lifetime of a switch certificate the signer issues (a shorter
    /// `expirationSeconds` in the request wins): seconds, or a number with `s`, `m` or `h`.
    #[arg(long, default_value = "8760h", value_parser = parse_duration)]
    pub switch_cert_max_lifetime: Duration,
    /// PEM CA the controller's REST certificate must chain to (an `https://` controller URL;
    /// the system's roots without it).
    #[arg(long, env = "L2SM_CONTROLLER_API_CA")]
    pub controller_api_ca: Option<PathBuf>,
    /// Host directory the agents install the CNI plugin into (`l2sm`): where the container
    /// runtime and Multus look CNI plugins up (k3s, RKE2, OpenShift and GKE use other
    /// directories than /opt/cni/bin; see docs/kubernetes.md).
    #[arg(long, env = "L2SM_CNI_BIN_DIR", default_value = "/opt/cni/bin")]
    pub cni_bin_dir: String,
    /// PriorityClass of the agent pods (deploy/priorityclass.yaml); empty: none.
    #[arg(
        long,
        env = "L2SM_AGENT_PRIORITY_CLASS",
        default_value = "l2sm-node-critical"
    )]
    pub agent_priority_class: String,
    /// Seconds between re-checks of an unchanged resource (drift with the controller).
    #[arg(long, default_value_t = 300)]
    pub resync_seconds: u64,
    /// How long after an object's deletion its cleanup in the controller is retried before its
    /// finalizer is released anyway (with a Warning Event `CleanupAbandoned`): seconds, or a
    /// number with `s`, `m` or `h`.
    #[arg(long, env = "L2SM_CLEANUP_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    pub cleanup_timeout: Duration,
    /// User sent (HTTP Basic) to provider controllers of inter-cluster networks; without
    /// `--provider-api-user` and `--provider-api-password`, upstream's `karaf:karaf`.
    #[arg(long, env = "L2SM_PROVIDER_API_USER")]
    pub provider_api_user: Option<String>,
    /// Password sent to provider controllers.
    #[arg(long, env = "L2SM_PROVIDER_API_PASSWORD", hide_env_values = true)]
    pub provider_api_password: Option<String>,
    /// Secret (in `--namespace`; `tls.crt`, `tls.key`, `ca.crt`) mounted into the edge pods:
    /// their gRPC server certificate and key, and the CA the operator's client certificate
    /// must chain to.
    #[arg(long, env = "L2SM_EDGE_GRPC_SECRET", default_value = reconcile::DEFAULT_EDGE_GRPC_SECRET)]
    pub edge_grpc_secret: String,
    /// Run the edges' gRPC in cleartext without client authentication (upstream's way;
    /// labs only: anyone reaching port 50051 of the edge's node can then change its switch).
    #[arg(long, env = "L2SM_EDGE_GRPC_INSECURE", default_value_t = false)]
    pub edge_grpc_insecure: bool,
    /// Suricata image of the IDS pods (`L2Network.spec.ids`); it needs bash, curl and
    /// suricata-update.
    #[arg(
        long,
        env = "L2SM_IDS_IMAGE",
        default_value = "docker.io/jasonish/suricata:7.0.8"
    )]
    pub ids_image: String,
    /// CPU request of the Suricata container.
    #[arg(long, env = "L2SM_IDS_CPU", default_value = "500m")]
    pub ids_cpu: String,
    /// Memory request of the Suricata container.
    #[arg(long, env = "L2SM_IDS_MEMORY", default_value = "1Gi")]
    pub ids_memory: String,
    /// Memory limit of the Suricata container.
    #[arg(long, env = "L2SM_IDS_MEMORY_LIMIT", default_value = "2Gi")]
    pub ids_memory_limit: String,
    /// QuarantinePodRequests an IDS's alert watcher may create per minute.
    #[arg(long, env = "L2SM_IDS_RATE_PER_MINUTE", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=600))]
    pub ids_rate_per_minute: u32,
    /// … and at once.
    #[arg(long, env = "L2SM_IDS_BURST", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub ids_burst: u32,
    /// The operator's client certificate (PEM) for the edges' gRPC (chaining to the `ca.crt`
    /// of `--edge-grpc-secret`).
    #[arg(
        long,
        env = "L2SM_EDGE_GRPC_CLIENT_CERT",
        default_value = "/etc/l2sm/edge-client/tls.crt"
    )]
    pub edge_grpc_client_cert: PathBuf,
    /// Private key (PEM) of `--edge-grpc-client-cert`.
    #[arg(
        long,
        env = "L2SM_EDGE_GRPC_CLIENT_KEY",
        default_value = "/etc/l2sm/edge-client/tls.key"
    )]
    pub edge_grpc_client_key: PathBuf,
    /// CA (PEM) the edges' gRPC certificate must chain to; the certificate is verified for
    /// the name `l2sm-edge` (`edge::EDGE_TLS_SERVER_NAME`), not the dialed address, since all
    /// edges share the certificate of `--edge-grpc-secret`.
    #[arg(
        long,
        env = "L2SM_EDGE_GRPC_CA",
        default_value = "/etc/l2sm/edge-client/ca.crt"
    )]
    pub edge_grpc_ca: PathBuf,
    /// Keep a stanza in CoreDNS's Corefile forwarding `l2sm` and `inter.l2sm` to the
    /// controller's DNS Service (`true`), or remove it (`false`); only the lines between the
    /// operator's markers are ever written (docs/kubernetes.md, "Names").
    #[arg(long, env = "L2SM_COREDNS", default_value_t = true, action = clap::ArgAction::Set)]
    pub coredns: bool,
    /// CoreDNS's ConfigMap, `namespace/name` (key `Corefile`).
    #[arg(long, default_value = "kube-system/coredns", value_parser = parse_namespaced)]
    pub coredns_configmap: (String, String),
    /// The controller's Service, `namespace/name`: its cluster IP and port `dns` are where
    /// `l2sm` is forwarded.
    #[arg(long, default_value = "l2sm-system/l2sm-controller-service", value_parser = parse_namespaced)]
    pub dns_service: (String, String),
    /// Where `inter.l2sm` is forwarded (`IP:PORT`, the provider controller's DNS); default:
    /// the controller's Service too.
    #[arg(long, env = "L2SM_DNS_INTER_SERVER")]
    pub dns_inter_server: Option<SocketAddr>,
    /// Time between two checks of the CoreDNS stanza (seconds, or with `s`, `m`, `h`).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub coredns_interval: Duration,
}

/// `namespace/name`.
pub fn parse_namespaced(s: &str) -> Result<(String, String), String> {
    match s.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok((ns.to_string(), name.to_string()))
        }
        _ => Err(format!("{s:?} is not namespace/name")),
    }
}

/// Deadline of one call to an edge (connection, TLS and answer), as upstream's 10 s.
const EDGE_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// `90`, `90s`, `5m`, `1h` as a duration (at least one second).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let (digits, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => t.split_at(i),
        None => (t, "s"),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a duration such as 300, 90s, 5m or 1h"))?;
    let secs = match unit {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        _ => None,
    }
    .ok_or_else(|| format!("{s:?} is not a duration such as 300, 90s, 5m or 1h"))?;
    if secs == 0 {
        return Err("the duration must be at least 1s".into());
    }
    Ok(Duration::from_secs(secs))
}

/// `l2sm operator <command>`.
#[derive(Clone, Debug, clap::Subcommand)]
pub enum OperatorCommand {
    /// Print the four CRDs as YAML (for `kubectl apply -f -`).
    Crds,
}

impl std::fmt::Debug for OperatorArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorArgs")
            .field("controller_url", &self.controller_url)
            .field("namespace", &self.namespace)
            .field("leader_elect", &self.leader_elect)
            .finish_non_exhaustive()
    }
}

/// Why the operator stopped.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// Bad options.
    #[error("{0}")]
    Config(String),
    /// No Kubernetes client configuration.
    #[error("cannot reach the Kubernetes API")]
    Kube(#[from] kube::Error),
    /// The webhook could not start.
    #[error("webhook: {0}")]
    Webhook(String),
    /// Another replica took over.
    #[error("leadership lost")]
    LeadershipLost,
}

/// The controller URL: the flag, else upstream's `CONTROLLER_IP`/`CONTROLLER_PORT`.
pub fn controller_url(flag: Option<&str>, ip: Option<&str>, port: Option<&str>) -> String {
    match flag {
        Some(u) => u.to_string(),
        None => format!(
            "http://{}:{}",
            ip.unwrap_or("l2sm-controller-service.l2sm-system.svc.cluster.local"),
            port.unwrap_or("8181")
        ),
    }
}

/// How long the reconcilers may take to finish their work after SIGTERM. The lease release
/// after it takes at most the renew deadline (10 s), so the pod's
/// `terminationGracePeriodSeconds` must exceed both together (deploy/operator.yaml: 45 s).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// Runs until SIGTERM/Ctrl-C or until leadership is lost.
pub async fn run(args: OperatorArgs) -> Result<(), OperatorError> {
    if let Some(OperatorCommand::Crds) = args.command {
        let yaml = crate::all_crds_yaml().map_err(|e| OperatorError::Config(e.to_string()))?;
        // A closed pipe (`| head`) is not an error worth a panic.
        let mut out = std::io::stdout().lock();
        return match std::io::Write::write_all(&mut out, yaml.as_bytes()) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                Err(OperatorError::Config(format!("writing the CRDs: {e}")))
            }
            _ => Ok(()),
        };
    }
    let url = controller_url(
        args.controller_url.as_deref(),
        std::env::var("CONTROLLER_IP").ok().as_deref(),
        std::env::var("CONTROLLER_PORT").ok().as_deref(),
    );
    let credentials = match (args.api_user.clone(), args.api_password.clone()) {
        (Some(u), Some(p)) => Some((u, p)),
        (None, None) => None,
        _ => {
            return Err(OperatorError::Config(
                "give both --api-user and --api-password (or neither)".into(),
            ))
        }
    };
    if args.provider_api_user.is_some() != args.provider_api_password.is_some() {
        return Err(OperatorError::Config(
            "give both --provider-api-user and --provider-api-password (or neither)".into(),
        ));
    }
    if !args.cni_bin_dir.starts_with('/') {
        return Err(OperatorError::Config(format!(
            "--cni-bin-dir {:?} must be an absolute host path",
            args.cni_bin_dir
        )));
    }
    let agent_api_certificate = args.agent_api_auth == "certificate";
    if agent_api_certificate && !url.starts_with("https://") {
        return Err(OperatorError::Config(format!(
            "--agent-api-auth certificate needs an https:// controller URL, not {url:?} \
             (or --agent-api-auth credentials for a plain-HTTP controller)"
        )));
    }
    let controller = ControllerClient::with_tls(
        &url,
        credentials,
        RetryPolicy::default(),
        l2sm_api::TlsOptions {
            ca_file: args.controller_api_ca.clone(),
            client_cert: None,
            client_key: None,
        },
    )
    .map_err(|e| OperatorError::Config(e.to_string()))?;
    let client = kube::Client::try_default().await?;
    if let Err(e) = controller.health().await {
        // Not fatal (upstream exits here): resources report it in their conditions.
        tracing::warn!("controller not healthy yet: {e}");
    }

    let webhook_task = if args.webhook {
        Some(start_webhook(&args, client.clone()).await?)
    } else {
        None
    };

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // Turns true when leadership is lost: the reconcilers are then dropped at once (not
    // drained), so they have stopped before the lease can expire and a new leader starts.
    let (lost_tx, mut lost_rx) = tokio::sync::watch::channel(false);
    let elector = if args.leader_elect {
        let identity = args
            .identity
            .clone()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| format!("l2sm-operator-{}", std::process::id()));
        let elector = Arc::new(LeaderElector::new(
            client.clone(),
            &args.namespace,
            &args.lease_name,
            &identity,
            Timings::default(),
        ));
        tokio::select! {
            _ = elector.acquire() => {}
            _ = shutdown_signal() => return Ok(()),
        }
        let mut leading = elector.clone().keep_renewing();
        tokio::spawn(async move {
            if leading.wait_for(|l| !l).await.is_ok() {
                let _ = lost_tx.send(true);
            }
        });
        Some(elector)
    } else {
        None
    };
    {
        let tx = stop_tx.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            let _ = tx.send(true);
        });
    }

    let settings = Settings {
        agent_image: args.agent_image.clone(),
        allowed_agent_images: args
            .allowed_agent_images
            .iter()
            .map(|i| i.trim().to_string())
            .filter(|i| !i.is_empty())
            .collect(),
        network_scope: network_scope(&args),
        controller_url: url,
        credentials_secret: (!agent_api_certificate).then(|| args.credentials_secret.clone()),
        agent_api_certificate,
        switch_certs_auto: args.switch_certs == "auto",
        agent_service_account: args.agent_service_account.clone(),
        resync: Duration::from_secs(args.resync_seconds.max(10)),
        namespace: args.namespace.clone(),
        cni_bin_dir: args.cni_bin_dir.clone(),
        agent_priority_class: Some(args.agent_priority_class.clone()).filter(|c| !c.is_empty()),
        cleanup_timeout: args.cleanup_timeout,
        provider_credentials: match (&args.provider_api_user, &args.provider_api_password) {
            (Some(u), Some(p)) => Some(crate::provider::Credentials {
                user: u.clone(),
                password: p.clone(),
            }),
            _ => Some(crate::provider::Credentials::upstream()),
        },
        edge_grpc_insecure: args.edge_grpc_insecure,
        edge_grpc_secret: args.edge_grpc_secret.clone(),
        ids: reconcile::ids::IdsSettings {
            image: args.ids_image.clone(),
            cpu: args.ids_cpu.clone(),
            memory: args.ids_memory.clone(),
            memory_limit: args.ids_memory_limit.clone(),
            rate_per_minute: args.ids_rate_per_minute,
            burst: args.ids_burst,
        },
        ..Settings::default()
    };
    // The edges' gRPC client: TLS with the operator's client certificate, or h2c for edges
    // run with --ned-grpc-insecure.
    let edge: Arc<dyn crate::edge::EdgeConnector> = if args.edge_grpc_insecure {
        Arc::new(crate::edge::GrpcEdge::insecure(EDGE_CALL_TIMEOUT))
    } else {
        Arc::new(crate::edge::GrpcEdge::tls(
            crate::edge::EdgeTlsFiles {
                cert: args.edge_grpc_client_cert.clone(),
                key: args.edge_grpc_client_key.clone(),
                ca: args.edge_grpc_ca.clone(),
            },
            EDGE_CALL_TIMEOUT,
        ))
    };
    let ctx = Context::with_edge(client.clone(), controller, settings, edge);
    let coredns = {
        let mut stop = stop_rx.clone();
        crate::coredns::run(
            client.clone(),
            ctx.recorder.clone(),
            crate::coredns::Config {
                configmap: args.coredns_configmap.clone(),
                service: args.dns_service.clone(),
                inter: args.dns_inter_server.map(|a| a.to_string()),
                enabled: args.coredns,
                interval: args.coredns_interval,
            },
            async move {
                let _ = stop.wait_for(|s| *s).await;
            },
        )
    };
    let signer = if args.switch_certs == "auto" {
        let mut stop = stop_rx.clone();
        Some(crate::switch_cert::signer::run(
            client.clone(),
            crate::switch_cert::signer::SignerConfig {
                namespace: args.namespace.clone(),
                agent_service_account: args.agent_service_account.clone(),
                ca_secret: args.switch_ca_secret.clone(),
                max_lifetime: args.switch_cert_max_lifetime,
            },
            async move {
                let _ = stop.wait_for(|s| *s).await;
            },
        ))
    } else {
        None
    };
    let watch_ns = args.watch_namespace.clone();
    let ctl_stop = stop_rx.clone();
    let controllers = async move {
        // The signer runs beside the reconcilers, on the leader only.
        let signer = async move {
            if let Some(s) = signer {
                s.await;
            }
        };
        // So does the CoreDNS stanza.
        futures::join!(
            run_controllers(client, watch_ns.as_deref(), ctx, ctl_stop),
            signer,
            coredns
        );
    };
    let mut stopping = stop_rx.clone();
    let drained = async move {
        let _ = stopping.wait_for(|s| *s).await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    let lost = async {
        let _ = lost_rx.wait_for(|l| *l).await;
    };
    let lost = tokio::select! {
        _ = controllers => false,
        _ = lost => {
            tracing::error!("leadership lost: stopping the reconcilers at once");
            true
        }
        _ = drained => {
            tracing::warn!(grace = ?SHUTDOWN_GRACE, "reconcilers did not finish within the shutdown grace; stopping them");
            false
        }
    };

    if let Some(task) = webhook_task {
        task.abort();
    }
    if let Some(elector) = elector {
        if let Err(e) = elector.release().await {
            tracing::warn!("could not release the lease: {e}");
        }
    }
    if lost {
        // Exit non-zero so the pod restarts as a follower.
        return Err(OperatorError::LeadershipLost);
    }
    tracing::info!("operator stopped");
    Ok(())
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => futures::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

fn api<K>(client: &kube::Client, ns: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// The controllers (L2Network, Pod, Pod cleanup, Overlay, QuarantinePodRequest,
/// NetworkEdgeDevice) and the node cache, until `stop` turns true.
pub async fn run_controllers(
    client: kube::Client,
    ns: Option<&str>,
    ctx: Arc<Context>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let stopped = move || {
        let mut rx = stop.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
        .shared()
    };
    let pods_cfg = watcher::Config::default().labels(&format!("{}=true", reconcile::POD_LABEL));

    // The Pod controller's cache of `l2sm` pods is what the L2Network reconciler reads (one
    // watch, no list per pod event); Nodes come from their own cache for the Overlays.
    let pods = Controller::new(api::<Pod>(&client, ns), pods_cfg.clone());
    ctx.set_pod_store(pods.store());
    let (node_store, node_writer) = reflector::store::<Node>();
    ctx.set_node_store(node_store);
    let node_cache = watcher(Api::<Node>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .modify(|n| {
            // Only the addresses are read: keep the cache small.
            n.managed_fields_mut().clear();
            if let Some(st) = n.status.as_mut() {
                st.images = None;
            }
        })
        .reflect(node_writer)
        .take_until(stopped())
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::warn!("node watch: {e}");
            }
        });

    let l2n = Controller::new(api::<L2Network>(&client, ns), watcher::Config::default());
    let networks = l2n.store();
    let by_provider = l2n.store();
    let l2n = l2n
        .watches(
            api::<NetworkEdgeDevice>(&client, ns),
            watcher::Config::default(),
            move |ned| {
                // An edge device appearing, moving or going changes the provider networks
                // of its provider.
                by_provider
                    .state()
                    .into_iter()
                    .filter(|n| {
                        n.spec
                            .provider
                            .as_ref()
                            .is_some_and(|p| p.name == ned.spec.provider.name)
                    })
                    .map(|n| ObjectRef::from_obj(&*n))
                    .collect::<Vec<_>>()
            },
        )
        .watches(api::<Pod>(&client, ns), pods_cfg.clone(), move |pod| {
            // A pod asking for a network (or moved to one) changes its NADs and status.
            let mut names = requested_networks(&pod);
            names.extend(
                pod_attachments(&pod)
                    .into_iter()
                    .flat_map(|a| std::iter::once(a.network).chain(a.quarantined_from)),
            );
            networks
                .state()
                .into_iter()
                .filter(|n| names.iter().any(|x| *x == n.name_any()))
                .map(|n| ObjectRef::from_obj(&*n))
                .collect::<Vec<_>>()
        })
        .graceful_shutdown_on(stopped())
        .run(
            reconcile::l2network::reconcile,
            reconcile::error_policy,
            ctx.clone(),
        )
        .for_each(|_| async {});

    let pods = pods
        .graceful_shutdown_on(stopped())
        .run(
            reconcile::pod::reconcile,
            reconcile::error_policy,
            ctx.clone(),
        )
        .for_each(|_| async {});

    // Agent DaemonSets live in the operator's namespace (no owner references across
    // namespaces): their events map back to the Overlay named in their annotation.
    let overlays = Controller::new(api::<Overlay>(&client, ns), watcher::Config::default())
        .watches(
            Api::<DaemonSet>::namespaced(client.clone(), &ctx.settings.namespace),
            watcher::Config::default().labels("app=l2sm-agent"),
            |ds| reconcile::overlay::overlay_of(&ds),
        )
        .graceful_shutdown_on(stopped())
        .run(
            reconcile::overlay::reconcile,
            reconcile::error_policy,
            ctx.clone(),
        )
        .for_each(|_| async {});

    let qpr = Controller::new(
        api::<QuarantinePodRequest>(&client, ns),
        watcher::Config::default(),
    );
    let requests = qpr.store();
    let qpr = qpr
        .watches(api::<Pod>(&client, ns), pods_cfg, move |pod| {
            // Pods appearing (or getting their port) later are moved too.
            let pns = pod.namespace();
            requests
                .state()
                .into_iter()
                .filter(|r| r.namespace() == pns)
                .map(|r| ObjectRef::from_obj(&*r))
                .collect::<Vec<_>>()
        })
        .graceful_shutdown_on(stopped())
        .run(
            reconcile::quarantine::reconcile,
            reconcile::error_policy,
            ctx.clone(),
        )
        .for_each(|_| async {});

    // Edge DaemonSets live in the operator's namespace too (see reconcile/nedevice.rs).
    let neds = Controller::new(
        api::<NetworkEdgeDevice>(&client, ns),
        watcher::Config::default(),
    )
    .watches(
        Api::<DaemonSet>::namespaced(client.clone(), &ctx.settings.namespace),
        watcher::Config::default().labels("app=l2sm-edge"),
        |ds| reconcile::nedevice::ned_of(&ds),
    )
    .graceful_shutdown_on(stopped())
    .run(
        reconcile::nedevice::reconcile,
        reconcile::error_policy,
        ctx.clone(),
    )
    .for_each(|_| async {});

    // Pods the operator holds a finalizer on, whatever their other labels (a pod whose `l2sm`
    // label is removed leaves the watch above, not this one).
    let cleanups = Controller::new(
        api::<Pod>(&client, ns),
        watcher::Config::default().labels(reconcile::CLEANUP_LABEL),
    )
    .graceful_shutdown_on(stopped())
    .run(
        reconcile::pod::reconcile_cleanup,
        reconcile::error_policy,
        ctx,
    )
    .for_each(|_| async {});

    futures::join!(l2n, pods, cleanups, overlays, qpr, neds, node_cache);
}

/// `--network-scope` (validated by clap: `global` or `namespace`).
fn network_scope(args: &OperatorArgs) -> crate::scope::NetworkScope {
    args.network_scope.parse().unwrap_or_default()
}

/// TLS for the webhook: the certificate files (cert-manager), else the self-signed pair all
/// replicas share through a Secret, whose CA goes into the webhook configuration (every
/// replica writes the same caBundle, so the API server trusts whichever replica it calls).
async fn webhook_tls(
    args: &OperatorArgs,
    client: &kube::Client,
) -> Result<Arc<rustls::ServerConfig>, OperatorError> {
    let err = |e: webhook::TlsError| OperatorError::Webhook(e.to_string());
    let service = match &args.webhook_self_signed_service {
        Some(s) if !args.webhook_cert.exists() => s,
        _ => return webhook::tls_from_files(&args.webhook_cert, &args.webhook_key).map_err(err),
    };
    let pair = webhook::shared_self_signed(
        client.clone(),
        &args.namespace,
        &args.webhook_self_signed_secret,
        &webhook::service_dns_names(service, &args.namespace),
    )
    .await
    .map_err(err)?;
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let patch = webhook::ca_bundle_patch(1, &pair.ca_bundle());
    match serde_json::from_value::<json_patch::Patch>(patch) {
        Ok(p) => {
            if let Err(e) = api
                .patch(
                    &args.webhook_configuration,
                    &PatchParams::default(),
                    &Patch::Json::<()>(p),
                )
                .await
            {
                tracing::warn!(configuration = %args.webhook_configuration, "cannot set the webhook caBundle: {e}");
            }
        }
        Err(e) => tracing::warn!("caBundle patch: {e}"),
    }
    webhook::tls_from_pem(&pair.cert_pem, &pair.key_pem).map_err(err)
}

/// Starts op-api's webhook on `--webhook-listen`, returning its task.
pub async fn start_webhook(
    args: &OperatorArgs,
    client: kube::Client,
) -> Result<tokio::task::JoinHandle<()>, OperatorError> {
    let tls = webhook_tls(args, &client).await?;
    let listener = tokio::net::TcpListener::bind(args.webhook_listen)
        .await
        .map_err(|e| OperatorError::Webhook(format!("listen on {}: {e}", args.webhook_listen)))?;
    let on_error = if args.webhook_on_error == "annotate" {
        webhook::OnError::Annotate
    } else {
        webhook::OnError::Reject
    };
    let hook = Arc::new(webhook::Webhook::new(
        webhook::KubeCatalog::new(client),
        webhook::WebhookConfig {
            on_error,
            scope: network_scope(args),
        },
    ));
    let router = webhook::router(hook);
    tracing::info!(listen = %args.webhook_listen, "webhook serving {}", webhook::WEBHOOK_PATH);
    Ok(tokio::spawn(async move {
        if let Err(e) =
            webhook::serve_https(listener, tls, router, futures::future::pending()).await
        {
            tracing::error!("webhook server stopped: {e}");
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: OperatorArgs,
    }

    #[test]
    fn controller_url_defaults_to_upstream_env() {
        assert_eq!(
            controller_url(None, None, None),
            "http://l2sm-controller-service.l2sm-system.svc.cluster.local:8181"
        );
        assert_eq!(
            controller_url(None, Some("10.0.0.1"), Some("9000")),
            "http://10.0.0.1:9000"
        );
        assert_eq!(
            controller_url(Some("http://c:1"), Some("x"), None),
            "http://c:1"
        );
    }

    #[test]
    fn flags_parse() {
        let cli = Cli::try_parse_from([
            "op",
            "--leader-elect",
            "--webhook",
            "false",
            "--namespace",
            "l2sm",
        ])
        .unwrap();
        assert!(cli.args.leader_elect);
        assert!(!cli.args.webhook);
        assert_eq!(cli.args.namespace, "l2sm");
        assert!(Cli::try_parse_from(["op", "--webhook-listen", "nope"]).is_err());
        assert_eq!(cli.args.cni_bin_dir, "/opt/cni/bin");
        assert_eq!(cli.args.agent_priority_class, "l2sm-node-critical");
        assert_eq!(
            cli.args.webhook_self_signed_secret,
            webhook::SELF_SIGNED_SECRET
        );
        let cli = Cli::try_parse_from([
            "op",
            "--cni-bin-dir",
            "/home/kubernetes/bin",
            "--agent-priority-class=",
        ])
        .unwrap();
        assert_eq!(cli.args.cni_bin_dir, "/home/kubernetes/bin");
        assert_eq!(cli.args.agent_priority_class, "");
        assert_eq!(cli.args.cleanup_timeout, Duration::from_secs(300));
        let cli = Cli::try_parse_from(["op", "--cleanup-timeout", "90s"]).unwrap();
        assert_eq!(cli.args.cleanup_timeout, Duration::from_secs(90));
        for bad in ["0", "5x", "-1", "m", ""] {
            assert!(
                Cli::try_parse_from(["op", "--cleanup-timeout", bad]).is_err(),
                "{bad}"
            );
        }
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("15"), Ok(Duration::from_secs(15)));
        assert!(cli.args.allowed_agent_images.is_empty());
        assert_eq!(network_scope(&cli.args), crate::scope::NetworkScope::Global);
        let cli = Cli::try_parse_from([
            "op",
            "--allowed-agent-images",
            "reg.example/l2sm:v2,reg.example/l2sm-dev:*",
            "--network-scope",
            "namespace",
        ])
        .unwrap();
        assert_eq!(
            cli.args.allowed_agent_images,
            ["reg.example/l2sm:v2", "reg.example/l2sm-dev:*"]
        );
        assert_eq!(
            network_scope(&cli.args),
            crate::scope::NetworkScope::Namespace
        );
        assert!(Cli::try_parse_from(["op", "--network-scope", "tenant"]).is_err());
        let cli = Cli::try_parse_from(["op", "crds"]).unwrap();
        assert!(matches!(cli.args.command, Some(OperatorCommand::Crds)));
    }
}
