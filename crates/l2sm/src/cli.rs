//! The command line: its clap types and the dispatch of each verb to a component crate.

use anyhow::bail;
use l2sm_api::v1::{CreateNetwork, LinkView, NetworkView, SwitchStatus};
use l2sm_api::{ControllerClient, RetryPolicy};
use l2sm_lab::{self as lab, state::Lab, AttachOptions};

/// L2S-M: isolated link-layer virtual networks for pods, across nodes.
#[derive(Debug, clap::Parser)]
#[command(name = "l2sm", version, about)]
pub(crate) struct Cli {
    /// Lab to act on (namespaces l2sm-<LAB>-*, state in /run/l2sm/lab/<LAB>).
    #[arg(long, global = true, env = "L2SM_LAB", default_value = "lab")]
    pub(crate) lab: String,
    /// Controller API URL for network verbs outside a lab, e.g. http://10.0.0.1:8181 or
    /// https://… (credentials from L2SM_API_USER / L2SM_API_PASSWORD; for https, the CA
    /// file from L2SM_CONTROLLER_CA, else the system's roots).
    #[arg(long, global = true, env = "L2SM_CONTROLLER_URL")]
    pub(crate) controller_url: Option<String>,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The verbs.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Run the SDN controller (OpenFlow 1.3 server + REST API).
    Controller(Box<l2sm_controller::ControllerArgs>),
    /// Run the node agent (OVS, pod interfaces).
    Agent(l2sm_agent::AgentArgs),
    /// Run a cluster's edge switch (upstream's NetworkEdgeDevice, `talpa ned`): OVS bridge,
    /// VXLAN to the other clusters' edges, OpenFlow to the provider controller, upstream's
    /// gRPC `nedpb.NedService`.
    Edge(l2sm_agent::edge::EdgeArgs),
    /// Emulated cluster on this host.
    #[command(subcommand)]
    Lab(LabCommand),
    /// Manage virtual networks.
    #[command(subcommand)]
    Network(NetworkCommand),
    /// Give a pod an interface on a network (lab).
    Attach(AttachArgs),
    /// Remove a pod's interface(s) (lab).
    Detach(DetachArgs),
    /// Names on networks: query the controller's DNS server (`<pod>.<network>.l2sm`).
    #[command(subcommand)]
    Dns(DnsCommand),
    /// Run the Kubernetes operator (reconcilers, webhook, leader election).
    Operator(Box<l2sm_operator::operator::OperatorArgs>),
    /// Switches, links and networks, as text or Graphviz DOT.
    Topology {
        /// Print Graphviz DOT instead of text (`--format dot`).
        #[arg(long)]
        dot: bool,
        /// text (switches, links with their health, networks), dot, or a picture: svg or png,
        /// laid out by Graphviz `dot` (Debian package graphviz), links coloured by health and
        /// labelled with latency and loss.
        #[arg(long, value_enum, default_value_t = TopoFormat::Text)]
        format: TopoFormat,
        /// Write to FILE instead of standard output.
        #[arg(short = 'o', long, value_name = "FILE")]
        output: Option<std::path::PathBuf>,
    },
    /// Install the CNI plugin as DIR/l2sm, atomically (the agent's init container).
    InstallCni(InstallCniArgs),
    /// Keep this node's switch key and certificate (tls.key, tls.crt, ca.crt in --dir): when
    /// missing, for another node, not chaining to ca.crt or with less than a third of their
    /// lifetime left, make a key here and get a certificate through a Kubernetes
    /// CertificateSigningRequest signed by the operator (the agent's init container).
    AgentCert(l2sm_operator::switch_cert::agent::AgentCertArgs),
    /// Print the shell completion script of `l2sm` for SHELL, e.g.
    /// `l2sm completions bash > /etc/bash_completion.d/l2sm`,
    /// `l2sm completions zsh > "${fpath[1]}/_l2sm"`,
    /// `l2sm completions fish > ~/.config/fish/completions/l2sm.fish`.
    Completions {
        /// The shell to complete in.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page of `l2sm` (roff), e.g. `l2sm man | man -l -`, or write it with
    /// one page per verb (`l2sm-network-create.1`, …) into a directory: `l2sm man --dir
    /// /usr/local/share/man/man1`.
    Man {
        /// Write `l2sm.1` and the verbs' pages into this existing directory.
        #[arg(long, value_name = "DIR")]
        dir: Option<std::path::PathBuf>,
    },
    /// Turn Suricata's EVE alerts (--eve FILE, tailed) into QuarantinePodRequests for the
    /// offending pods of --network (found by source address or MAC), rate-limited, one per
    /// pod and signature (the IDS pod's second container, beside Suricata).
    IdsWatch(l2sm_operator::ids_watch::IdsWatchArgs),
}

/// `l2sm dns …`
#[derive(Debug, clap::Subcommand)]
pub(crate) enum DnsCommand {
    /// Look a name up (an address with `--type PTR`); prints one record a line. Exit code 0
    /// with records, 1 when the name does not exist or has none of that type, 2 when the
    /// server refused (not its zone) or failed.
    Lookup {
        /// `<pod>.<network>.l2sm`, or an address (or its reverse name) with `--type PTR`.
        name: String,
        /// Record type.
        #[arg(long = "type", default_value = "A", value_parser = ["A", "AAAA", "PTR", "SOA", "ANY"], ignore_case = true)]
        qtype: String,
        /// DNS server (the controller's `--dns-listen`); default: the lab controller's.
        #[arg(long, env = "L2SM_DNS_SERVER")]
        server: Option<std::net::SocketAddr>,
        /// Seconds to wait for the answer.
        #[arg(long, default_value_t = 2)]
        timeout: u64,
    },
}

/// `l2sm install-cni`
#[derive(Debug, clap::Args)]
pub(crate) struct InstallCniArgs {
    /// CNI binary directory, created if missing (the host's /opt/cni/bin, or its
    /// distribution's, as mounted in the container).
    #[arg(long)]
    pub dir: std::path::PathBuf,
    /// Plugin to install (default: `l2sm-cni` beside this executable).
    #[arg(long)]
    pub from: Option<std::path::PathBuf>,
}

/// `l2sm lab …`
#[derive(Debug, clap::Subcommand)]
pub(crate) enum LabCommand {
    /// Build the emulated cluster: nodes with OVS and agents, and a controller.
    Up {
        /// Number of nodes (per cluster with --clusters).
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// Build several clusters (c1, c2, …): each with its nodes (c1-n1, …), its own
        /// underlay subnet and controller and its edge on its first node, routed to each
        /// other; plus a provider controller (see docs/lab.md, multi-cluster labs).
        #[arg(long, conflicts_with = "topology")]
        clusters: Option<usize>,
        /// Links between the nodes: mesh, line, ring, star, or a topology file (JSON, Overlay
        /// topology shape; lab nodes are n1..nN and get their addresses filled in).
        #[arg(long, default_value = "mesh")]
        topology: String,
        /// OpenFlow over plain TCP instead of mutually authenticated TLS (warning: any
        /// process that reaches the controller can then pose as a switch).
        #[arg(long)]
        insecure_openflow: bool,
    },
    /// Remove everything the lab made (also after a crash).
    Down,
    /// Show nodes, switch connections, networks and pods.
    Status,
    /// Restart the controller, a node's agent, or a node's OVS daemon, keeping state.
    Restart {
        /// `controller`, NODE (its agent), NODE/ovs-vswitchd or NODE/ovsdb-server.
        target: String,
    },
    /// Realize Kubernetes manifests (L2Network, Overlay, Pod, Deployment,
    /// QuarantinePodRequest) in the lab through the operator's code; lists what is not emulated.
    Apply(ManifestArgs),
    /// Remove what `lab apply -f` made for these manifests.
    Delete(ManifestArgs),
    /// Run a command inside a pod's (or node's) network namespace; returns its exit code.
    Exec {
        /// Pod or node name (`underlay` for the controller's namespace).
        target: String,
        /// The command, after `--`.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Run an IDS on a network's mirror port: rules in a Suricata subset (docs/ids.md) matched
    /// by tshark in an IDS pod, alerts as EVE JSON, offending pods optionally moved to a
    /// quarantine network. Runs until Ctrl-C, --count or --duration; removes its pod and the
    /// mirror on exit.
    Ids {
        /// Network to watch.
        #[arg(long)]
        network: String,
        /// Rules file.
        #[arg(long)]
        rules: std::path::PathBuf,
        /// Move the pod an alert comes from to this network (once per pod).
        #[arg(long)]
        quarantine_to: Option<String>,
        /// Append EVE JSON alerts to this file (default: standard output).
        #[arg(long)]
        eve: Option<std::path::PathBuf>,
        /// Node of the IDS pod (default: the first node).
        #[arg(long)]
        node: Option<String>,
        /// Stop after this many alerts.
        #[arg(long)]
        count: Option<u64>,
        /// Stop after this many seconds.
        #[arg(long, value_name = "SECONDS")]
        duration: Option<u64>,
        /// Rule variable NAME=VALUE, e.g. HOME_NET=[10.10.0.0/24] (repeatable; names ending
        /// in _PORTS are port groups; HOME_NET and EXTERNAL_NET default to any).
        #[arg(long = "var")]
        vars: Vec<String>,
    },
}

/// `-f FILE|DIR …` of `lab apply` and `lab delete`, as kubectl reads them.
#[derive(Debug, clap::Args)]
pub(crate) struct ManifestArgs {
    /// Manifest file, or directory of .yaml/.yml/.json files (repeatable).
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<std::path::PathBuf>,
    /// Also read the directories' subdirectories.
    #[arg(short = 'R', long)]
    pub recursive: bool,
}

/// `l2sm network …`
#[derive(Debug, clap::Subcommand)]
pub(crate) enum NetworkCommand {
    /// Create a network (existing networks are left as they are).
    Create {
        /// Network name.
        name: String,
        /// Subnet whose addresses pods get when they ask for none (one IPv4, one IPv6).
        #[arg(long = "cidr")]
        cidrs: Vec<String>,
        /// Range inside the CIDR that dynamic addresses come from.
        #[arg(long = "pod-range")]
        pod_ranges: Vec<String>,
        /// Address never handed out (repeatable).
        #[arg(long = "exclude")]
        exclude: Vec<String>,
        /// Port security: each pod port sends only from its own MAC and addresses (a pod
        /// may opt out with `attach --port-security off`).
        #[arg(long)]
        port_security: bool,
        /// Multi-cluster lab: one network across the clusters, at the provider and in every
        /// cluster, joined through each cluster's edge.
        #[arg(long, conflicts_with = "cluster")]
        provider: bool,
        /// Multi-cluster lab: create the cluster-local network in this cluster only (default:
        /// in each cluster, one separate LAN each).
        #[arg(long)]
        cluster: Option<String>,
    },
    /// Delete a network and all its memberships.
    Delete {
        /// Network name.
        name: String,
        /// Multi-cluster lab: delete the cluster-local network in this cluster only (a
        /// provider network goes everywhere at once).
        #[arg(long)]
        cluster: Option<String>,
    },
    /// List networks.
    List,
    /// Show or change the abuse limits of a network's pod ports (0 turns a limit off); the
    /// limits not given stay as they are.
    Limits {
        /// Network name.
        name: String,
        /// MACs learned behind each pod port at most (frames from more are dropped).
        #[arg(long)]
        mac_limit: Option<u32>,
        /// Broadcast/multicast/unknown-unicast packets/s each pod port may flood.
        #[arg(long)]
        flood_pps: Option<u32>,
        /// Burst of the flood meter, packets.
        #[arg(long)]
        flood_burst: Option<u32>,
    },
    /// Set, replace or clear the port that receives a copy of every frame of a network. A
    /// port that is a member of this network leaves it first (a mirror is no member).
    Mirror {
        /// Network name.
        name: String,
        /// Port as `of:<16 hex>/<number>`.
        #[arg(required_unless_present = "clear", conflicts_with = "clear")]
        port: Option<String>,
        /// Stop mirroring.
        #[arg(long)]
        clear: bool,
    },
}

/// `l2sm attach`
#[derive(Debug, clap::Args)]
pub(crate) struct AttachArgs {
    /// Node the pod runs on.
    #[arg(long)]
    pub node: String,
    /// Pod name (created if new).
    #[arg(long)]
    pub pod: String,
    /// Network to join.
    #[arg(long)]
    pub network: String,
    /// Address with prefix length, e.g. 10.10.0.1/24 (repeatable).
    #[arg(long = "ip")]
    pub ips: Vec<String>,
    /// Interface name in the pod (default: next free netN).
    #[arg(long)]
    pub ifname: Option<String>,
    /// MAC address of the pod interface.
    #[arg(long)]
    pub mac: Option<String>,
    /// MTU of the pod interface.
    #[arg(long)]
    pub mtu: Option<u32>,
    /// Port security of this interface (on/off), overriding its network's.
    #[arg(long, value_name = "on|off", value_parser = clap::builder::BoolishValueParser::new())]
    pub port_security: Option<bool>,
    /// Multi-cluster lab: the pod's cluster (`--node n1` then means node `c1-n1`).
    #[arg(long)]
    pub cluster: Option<String>,
}

/// `l2sm detach`
#[derive(Debug, clap::Args)]
pub(crate) struct DetachArgs {
    /// Pod name.
    #[arg(long)]
    pub pod: String,
    /// Only this network (default: all, and the pod is removed).
    #[arg(long)]
    pub network: Option<String>,
}

async fn controller_api(lab: &Lab, controller: Option<String>) -> anyhow::Result<ControllerClient> {
    match controller {
        Some(url) => {
            let user = std::env::var("L2SM_API_USER").ok();
            let pass = std::env::var("L2SM_API_PASSWORD").ok();
            // An https:// controller is verified against L2SM_CONTROLLER_CA (a PEM file) when
            // set, else against the system's CA certificates.
            let tls = l2sm_api::TlsOptions {
                ca_file: std::env::var_os("L2SM_CONTROLLER_CA").map(Into::into),
                ..Default::default()
            };
            Ok(ControllerClient::with_tls(
                &url,
                user.zip(pass),
                RetryPolicy::once(),
                tls,
            )?)
        }
        None => {
            let state = lab.load_ready()?;
            lab.controller_api(&state)
        }
    }
}

/// Runs one command; returns the process exit code.
pub(crate) async fn dispatch(
    lab_name: String,
    controller: Option<String>,
    command: Command,
) -> anyhow::Result<u8> {
    let lab = || Lab::new(&lab_name);
    match command {
        Command::Controller(args) => l2sm_controller::run(*args).await?,
        Command::Agent(args) => l2sm_agent::run(args).await?,
        Command::Edge(args) => l2sm_agent::edge::run(args).await?,
        Command::Operator(mut args) => {
            args.controller_url = controller;
            l2sm_operator::operator::run(*args).await?
        }
        Command::Lab(LabCommand::Up {
            nodes,
            topology,
            insecure_openflow,
            clusters: Some(clusters),
        }) => {
            let _ = topology;
            lab::multi::up(&lab()?, clusters, nodes, insecure_openflow).await?
        }
        Command::Lab(LabCommand::Up {
            nodes,
            topology,
            insecure_openflow,
            clusters: None,
        }) => lab::up(&lab()?, nodes, &topology, insecure_openflow).await?,
        Command::Lab(LabCommand::Down) => lab::down(&lab()?)?,
        Command::Lab(LabCommand::Restart { target }) => lab::restart(&lab()?, &target).await?,
        Command::Lab(LabCommand::Status) => lab::status(&lab()?).await?,
        Command::Lab(LabCommand::Apply(m)) => {
            lab::apply::apply(&lab()?, &m.files, m.recursive).await?
        }
        Command::Lab(LabCommand::Delete(m)) => {
            lab::apply::delete(&lab()?, &m.files, m.recursive).await?
        }
        Command::Lab(LabCommand::Ids {
            network,
            rules,
            quarantine_to,
            eve,
            node,
            count,
            duration,
            vars,
        }) => {
            let summary = lab::ids::run(
                &lab()?,
                lab::ids::IdsOptions {
                    network,
                    rules,
                    quarantine_to,
                    eve,
                    node,
                    count,
                    duration: duration.map(std::time::Duration::from_secs),
                    vars,
                },
            )
            .await?;
            eprintln!(
                "ids: {} alerts, {} pods quarantined",
                summary.alerts,
                summary.quarantined.len()
            );
        }
        Command::Lab(LabCommand::Exec { target, command }) => {
            let code = tokio::task::block_in_place(|| lab::exec(&lab()?, &target, &command))?;
            return Ok(u8::try_from(code).unwrap_or(1));
        }
        Command::Network(cmd) => network(&lab()?, controller, cmd).await?,
        Command::Topology {
            dot,
            format,
            output,
        } => {
            let format = if dot { TopoFormat::Dot } else { format };
            topology(&lab()?, controller, format, output).await?
        }
        Command::Attach(a) => {
            let att = lab::attach(
                &lab()?,
                AttachOptions {
                    node: a.node,
                    pod: a.pod.clone(),
                    network: a.network,
                    ips: a.ips,
                    ifname: a.ifname,
                    mac: a.mac,
                    mtu: a.mtu,
                    port_security: a.port_security,
                    cluster: a.cluster,
                },
            )
            .await?;
            let ips = l2sm_agent::proto::join_ips(&att.ips);
            println!(
                "pod {} joined {} as {} (mac {}{}{}), switch port {}",
                a.pod,
                att.network,
                att.ifname,
                att.mac,
                if ips.is_empty() { "" } else { ", " },
                ips,
                att.port
            );
        }
        Command::InstallCni(a) => {
            let from = match a.from {
                Some(p) => p,
                None => crate::install_cni::default_source()?,
            };
            let installed =
                tokio::task::block_in_place(|| crate::install_cni::install(&a.dir, &from))?;
            println!("installed {} as {}", from.display(), installed.display());
        }
        Command::IdsWatch(a) => l2sm_operator::ids_watch::run(a).await?,
        Command::AgentCert(a) => match l2sm_operator::switch_cert::agent::run(a).await? {
            l2sm_operator::switch_cert::agent::Outcome::Kept { not_after } => println!(
                "switch certificate kept (valid until {} s after the epoch)",
                not_after
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs()
            ),
            l2sm_operator::switch_cert::agent::Outcome::Issued { csr, why } => {
                println!("switch certificate issued through {csr} ({why})")
            }
        },
        Command::Dns(DnsCommand::Lookup {
            name,
            qtype,
            server,
            timeout,
        }) => {
            let timeout = std::time::Duration::from_secs(timeout.max(1));
            if let Some(server) = server {
                return tokio::task::block_in_place(|| dns_lookup(&name, &qtype, server, timeout));
            }
            // The lab's controller: only its underlay namespace reaches it.
            let lab = lab()?;
            let state = lab.load_ready()?;
            if state.is_multi() {
                bail!("lab {:?} has several clusters: give --server", lab.name);
            }
            let server =
                format!("{}:{}", lab::state::CONTROLLER_IP, lab::state::DNS_PORT).parse()?;
            let ns = l2sm_netns::Netns::open_named(&lab.underlay_ns())?;
            return tokio::task::block_in_place(|| {
                l2sm_netns::run_in_netns(&ns, move || dns_lookup(&name, &qtype, server, timeout))
            })?;
        }
        Command::Detach(d) => {
            let removed = lab::detach(&lab()?, &d.pod, d.network.as_deref()).await?;
            for a in &removed {
                println!("pod {} left {} ({} removed)", d.pod, a.network, a.ifname);
            }
            if d.network.is_none() {
                println!("pod {} removed", d.pod);
            }
        }
        Command::Completions { shell } => print_generated(|out| {
            let mut cli = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cli, "l2sm", out);
            Ok(())
        })?,
        Command::Man { dir: None } => print_generated(|out| {
            clap_mangen::Man::new(<Cli as clap::CommandFactory>::command()).render(out)
        })?,
        Command::Man { dir: Some(dir) } => {
            if !dir.is_dir() {
                bail!("{} is not a directory", dir.display());
            }
            clap_mangen::generate_to(<Cli as clap::CommandFactory>::command(), &dir)
                .map_err(|e| anyhow::anyhow!("cannot write pages into {}: {e}", dir.display()))?;
            println!("manual pages written into {}", dir.display());
        }
    }
    Ok(0)
}

/// Writes what `render` generates from the clap definition (completions, man page) to
/// standard output; a reader that stops early (`| head`) is not an error.
fn print_generated(render: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut text = Vec::new();
    render(&mut text)?;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(&text).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// Whether network verbs go to a multi-cluster lab (no --controller-url, a lab with
/// clusters).
fn multi_lab(lab: &Lab, controller: &Option<String>) -> bool {
    controller.is_none() && lab.load().ok().flatten().is_some_and(|s| s.is_multi())
}

/// `l2sm network create|delete|list` in a multi-cluster lab.
async fn multi_network(lab: &Lab, cmd: NetworkCommand) -> anyhow::Result<()> {
    let lines = match cmd {
        NetworkCommand::Create {
            name,
            cidrs,
            pod_ranges,
            exclude,
            port_security,
            provider,
            cluster,
        } => {
            let request = if cidrs.is_empty()
                && pod_ranges.is_empty()
                && exclude.is_empty()
                && !port_security
            {
                None
            } else {
                Some(create_request(
                    &name,
                    &cidrs,
                    &pod_ranges,
                    &exclude,
                    port_security,
                )?)
            };
            lab::multi::network_create(lab, &name, provider, cluster.as_deref(), request).await?
        }
        NetworkCommand::Delete { name, cluster } => {
            lab::multi::network_delete(lab, &name, cluster.as_deref()).await?
        }
        NetworkCommand::List => {
            lab::multi::network_list(lab).await?;
            vec![]
        }
        _ => bail!(
            "lab {:?} has several clusters: give --controller-url for this command (one controller)",
            lab.name
        ),
    };
    for l in lines {
        println!("{l}");
    }
    Ok(())
}

/// A network creation request with address settings, checked.
fn create_request(
    name: &str,
    cidrs: &[String],
    pod_ranges: &[String],
    exclude: &[String],
    port_security: bool,
) -> anyhow::Result<CreateNetwork> {
    l2sm_pipeline::ids::validate_network_name(name)?;
    let parse_nets = |v: &[String], what: &str| -> anyhow::Result<Vec<ipnet::IpNet>> {
        v.iter()
            .map(|c| {
                c.parse::<ipnet::IpNet>().map_err(|_| {
                    anyhow::anyhow!("invalid {what} {c:?}: expected a CIDR such as 10.10.0.0/24")
                })
            })
            .collect()
    };
    let exclude: Vec<std::net::IpAddr> = exclude
        .iter()
        .map(|a| {
            a.parse()
                .map_err(|_| anyhow::anyhow!("invalid address to exclude {a:?}"))
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(CreateNetwork {
        name: name.to_string(),
        cidrs: parse_nets(cidrs, "CIDR")?,
        pod_ranges: parse_nets(pod_ranges, "pod range")?,
        exclude,
        port_security,
        limits: None,
    })
}

async fn network(lab: &Lab, controller: Option<String>, cmd: NetworkCommand) -> anyhow::Result<()> {
    if multi_lab(lab, &controller) {
        return multi_network(lab, cmd).await;
    }
    if let NetworkCommand::Create {
        provider, cluster, ..
    } = &cmd
    {
        if *provider || cluster.is_some() {
            bail!("--provider and --cluster need a multi-cluster lab (l2sm lab up --clusters N)");
        }
    }
    if let NetworkCommand::Delete {
        cluster: Some(_), ..
    } = &cmd
    {
        bail!("--cluster needs a multi-cluster lab (l2sm lab up --clusters N)");
    }
    let api = controller_api(lab, controller).await?;
    match cmd {
        NetworkCommand::Create {
            name,
            cidrs,
            pod_ranges,
            exclude,
            port_security,
            ..
        } if !cidrs.is_empty()
            || !pod_ranges.is_empty()
            || !exclude.is_empty()
            || port_security =>
        {
            l2sm_pipeline::ids::validate_network_name(&name)?;
            let parse_nets = |v: &[String], what: &str| -> anyhow::Result<Vec<ipnet::IpNet>> {
                v.iter()
                    .map(|c| {
                        c.parse::<ipnet::IpNet>().map_err(|_| {
                            anyhow::anyhow!(
                                "invalid {what} {c:?}: expected a CIDR such as 10.10.0.0/24"
                            )
                        })
                    })
                    .collect()
            };
            let cidrs = parse_nets(&cidrs, "CIDR")?;
            let pod_ranges = parse_nets(&pod_ranges, "pod range")?;
            let exclude: Vec<std::net::IpAddr> = exclude
                .iter()
                .map(|a| {
                    a.parse()
                        .map_err(|_| anyhow::anyhow!("invalid address to exclude {a:?}"))
                })
                .collect::<anyhow::Result<_>>()?;
            let req = CreateNetwork {
                name: name.clone(),
                cidrs: cidrs.clone(),
                pod_ranges,
                exclude,
                port_security,
                limits: None,
            };
            match api.create_network(&req).await {
                Ok((true, _)) => println!(
                    "network {name} created ({})",
                    cidrs
                        .iter()
                        .map(|c| c.to_string())
                        .chain(port_security.then(|| "port security".to_string()))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                Ok((false, _)) => println!("network {name} already exists"),
                Err(e) if e.status().is_some() => bail!(
                    "controller refused to create network {name:?}: {}",
                    e.message()
                ),
                Err(e) => return Err(e.into()),
            }
        }
        NetworkCommand::Create { name, .. } => {
            l2sm_pipeline::ids::validate_network_name(&name)?;
            let exists = api.network_exists(&name).await?;
            match api.create_vnet(&name).await {
                Ok(()) => {}
                Err(e) if e.status().is_some() => bail!(
                    "controller refused to create network {name:?}: {}",
                    e.message()
                ),
                Err(e) => return Err(e.into()),
            }
            if exists {
                println!("network {name} already exists");
            } else {
                println!("network {name} created");
            }
        }
        NetworkCommand::Limits {
            name,
            mac_limit,
            flood_pps,
            flood_burst,
        } => {
            let Some(current) = api.get_network(&name).await? else {
                bail!("unknown network {name:?}");
            };
            let mut limits = current.limits;
            if mac_limit.is_none() && flood_pps.is_none() && flood_burst.is_none() {
                println!(
                    "network {name}: macLimit {} floodPps {} floodBurst {}",
                    limits.mac_limit, limits.flood_pps, limits.flood_burst
                );
                return Ok(());
            }
            limits.mac_limit = mac_limit.unwrap_or(limits.mac_limit);
            limits.flood_pps = flood_pps.unwrap_or(limits.flood_pps);
            limits.flood_burst = flood_burst.unwrap_or(limits.flood_burst);
            let view = match api.set_network_limits(&name, &limits).await {
                Ok(view) => view,
                Err(e) if e.status().is_some() => bail!(
                    "controller refused the limits of network {name:?}: {}",
                    e.message()
                ),
                Err(e) => return Err(e.into()),
            };
            let l = view.limits;
            println!(
                "network {name}: macLimit {} floodPps {} floodBurst {}",
                l.mac_limit, l.flood_pps, l.flood_burst
            );
        }
        NetworkCommand::Delete { name, .. } => {
            if !api.network_exists(&name).await? {
                bail!("unknown network {name:?}");
            }
            match api.delete_network(&name).await {
                Ok(()) => {}
                Err(e) if e.status().is_some() => bail!(
                    "controller refused to delete network {name:?}: {}",
                    e.message()
                ),
                Err(e) => return Err(e.into()),
            }
            println!("network {name} deleted");
        }
        NetworkCommand::Mirror {
            name, clear: true, ..
        } => {
            match api.clear_mirror_port(&name).await {
                Ok(()) => {}
                Err(e) if e.status().is_some() => {
                    bail!("cannot clear the mirror of {name:?}: {}", e.message())
                }
                Err(e) => return Err(e.into()),
            }
            println!("network {name} is not mirrored");
        }
        NetworkCommand::Mirror { name, port, .. } => {
            let port = port.unwrap_or_default();
            let port_id: l2sm_pipeline::ids::PortId = port
                .parse()
                .map_err(|e| anyhow::anyhow!("invalid port {port:?}: {e}"))?;
            let port = port_id.to_string();
            let nets = api.networks().await?;
            if nets
                .iter()
                .any(|n| n.name == name && n.endpoints.contains(&port))
            {
                match api.remove_port(&name, &port).await {
                    Ok(()) => {}
                    Err(e) if e.status().is_some() => {
                        bail!("cannot take {port} out of {name:?}: {}", e.message())
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            match api.set_mirror_port(&name, &port).await {
                Ok(()) => {}
                Err(e) if e.status().is_some() => bail!(
                    "controller refused {port} as mirror of {name:?}: {}",
                    e.message()
                ),
                Err(e) => return Err(e.into()),
            }
            println!("network {name} mirrored to {port}");
        }
        NetworkCommand::List => {
            let nets: Vec<NetworkView> = api.networks().await?;
            println!(
                "{:<20} {:<8} {:<6} {:<20} {:<15} PORTS",
                "NETWORK", "VNI", "VLAN", "CIDR", "DNS"
            );
            for n in nets {
                let cidr = n
                    .ipam
                    .as_ref()
                    .map(|i| {
                        i.cidrs
                            .iter()
                            .map(|c| c.to_string())
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .unwrap_or_else(|| "-".into());
                let vlan = n.vlan.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
                let dns = n
                    .dns
                    .as_ref()
                    .and_then(|d| {
                        d.address
                            .map(std::net::IpAddr::V4)
                            .or(d.address6.map(std::net::IpAddr::V6))
                    })
                    .map(|a| a.to_string())
                    .unwrap_or_else(|| "-".into());
                println!(
                    "{:<20} {:<8} {:<6} {:<20} {:<15} {}",
                    n.name,
                    n.vni,
                    vlan,
                    cidr,
                    dns,
                    n.endpoints.join(" ")
                );
            }
        }
    }
    Ok(())
}

/// What `l2sm topology` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum TopoFormat {
    /// Text.
    Text,
    /// Graphviz DOT.
    Dot,
    /// SVG, laid out by Graphviz.
    Svg,
    /// PNG, laid out by Graphviz.
    Png,
}

/// Longest time Graphviz may take to lay out a topology.
const DOT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Runs Graphviz `dot -T<format>` on `graph`, within [`DOT_TIMEOUT`].
fn render_dot(graph: &str, format: &str) -> anyhow::Result<Vec<u8>> {
    use std::io::{Read as _, Write as _};
    use std::process::{Command as Proc, Stdio};
    let mut child = Proc::new("dot")
        .arg(format!("-T{format}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot run Graphviz `dot` ({e}): install it (Debian: apt-get install graphviz), or use --format dot"
            )
        })?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdin for dot"))?;
    let graph = graph.to_owned();
    let writer = std::thread::spawn(move || stdin.write_all(graph.as_bytes()));
    let mut stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout for dot"))?;
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        stdout.read_to_end(&mut out).map(|_| out)
    });
    let deadline = std::time::Instant::now() + DOT_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("Graphviz `dot` took longer than {DOT_TIMEOUT:?}: stopped");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let _ = writer.join();
    let out = reader
        .join()
        .map_err(|_| anyhow::anyhow!("reading dot's output failed"))??;
    if !status.success() {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        bail!("Graphviz `dot` failed ({status}): {}", err.trim());
    }
    Ok(out)
}

/// `l2sm topology [--format text|dot|svg|png] [-o FILE]`: what the controller sees.
async fn topology(
    lab: &Lab,
    controller: Option<String>,
    format: TopoFormat,
    output: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    if multi_lab(lab, &controller) {
        let state = lab.load_ready()?;
        let places = lab::multi::controllers(lab, &state)?;
        if format != TopoFormat::Text || output.is_some() {
            bail!("--dot, --format and -o show one controller: give --controller-url (the lab's controllers are in `l2sm lab status`)");
        }
        for (label, api) in places {
            println!("== {label} ==");
            print!("{}", topology_text(&api).await?);
        }
        println!("== inter-cluster hops (edge patch port pairs) ==");
        let lines = lab::multi::hop_lines(&state);
        if lines.is_empty() {
            println!("  (no provider network)");
        }
        for l in lines {
            println!("  {l}");
        }
        return Ok(());
    }
    let api = controller_api(lab, controller).await?;
    let bytes = match format {
        TopoFormat::Text => topology_text(&api).await?.into_bytes(),
        other => {
            let switches: Vec<SwitchStatus> = api.switches().await?;
            let links: Vec<LinkView> = api.links().await?;
            let networks: Vec<NetworkView> = api.networks().await?;
            let graph = l2sm_api::picture::dot(&switches, &links, &networks);
            match other {
                TopoFormat::Svg => render_dot(&graph, "svg")?,
                TopoFormat::Png => render_dot(&graph, "png")?,
                _ => graph.into_bytes(),
            }
        }
    };
    match output {
        Some(path) => std::fs::write(&path, &bytes)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?,
        None => {
            use std::io::Write as _;
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&bytes)?;
            stdout.flush()?;
        }
    }
    Ok(())
}

/// One direction's health in the text listing.
fn health_text(d: &l2sm_api::v1::LinkHealthView) -> String {
    let ms = |v: Option<f64>| {
        v.map(|v| format!("{v:.1} ms"))
            .unwrap_or_else(|| "-".into())
    };
    let loss = d
        .loss
        .map(|l| format!("{:.0}% ({}/{})", l * 100.0, d.lost, d.judged))
        .unwrap_or_else(|| "-".into());
    let rate = d
        .bits_per_second
        .map(|b| format!("{:.1} kbit/s", b / 1000.0))
        .unwrap_or_else(|| "-".into());
    format!(
        "latency {} jitter {} loss {loss} rate {rate}",
        ms(d.latency_ms),
        ms(d.jitter_ms)
    )
}

async fn topology_text(api: &ControllerClient) -> anyhow::Result<String> {
    use std::fmt::Write as _;
    let switches: Vec<SwitchStatus> = api.switches().await?;
    let links: Vec<LinkView> = api.links().await?;
    let networks: Vec<NetworkView> = api.networks().await?;
    let mut out = String::new();
    macro_rules! println {
        ($($arg:tt)*) => { let _ = writeln!(out, $($arg)*); };
    }
    println!("SWITCHES");
    for s in &switches {
        let (tunnels, trunks) = (
            s.ports.iter().filter(|p| p.kind == "tunnel").count(),
            s.ports.iter().filter(|p| p.kind == "trunk").count(),
        );
        println!(
            "  {:<21} {:<20} {:>3} ports ({tunnels} tunnels, {trunks} trunks), {} flows, {} groups",
            s.id,
            s.peer,
            s.ports.len(),
            s.flows,
            s.groups
        );
    }
    println!("LINKS");
    if links.is_empty() {
        println!("  (none known: the controller has no topology, switches form a full mesh of their tunnels)");
    }
    for l in &links {
        println!(
            "  {}/{} <-> {}/{}  {}  {}  {}",
            l.a,
            l.a_port,
            l.b,
            l.b_port,
            l.id,
            l.kind,
            if l.state.is_empty() { "up" } else { &l.state }
        );
        let (a, b) = l2sm_api::picture::end_names(l);
        println!("      {a}->{b} {}", health_text(&l.ab));
        println!("      {b}->{a} {}", health_text(&l.ba));
    }
    println!("NETWORKS");
    for n in &networks {
        println!(
            "  {:<16} vni {:<6} {} ports: {}",
            n.name,
            n.vni,
            n.endpoints.len(),
            n.endpoints.join(" ")
        );
    }
    Ok(out)
}

/// `l2sm dns lookup`: prints the answer's records; the exit code says what kind of answer.
fn dns_lookup(
    name: &str,
    qtype: &str,
    server: std::net::SocketAddr,
    timeout: std::time::Duration,
) -> anyhow::Result<u8> {
    use l2sm_controller::dns::wire::{self, Name, RData};
    let qtype = match qtype.to_ascii_uppercase().as_str() {
        "AAAA" => wire::TYPE_AAAA,
        "PTR" => wire::TYPE_PTR,
        "SOA" => wire::TYPE_SOA,
        "ANY" => wire::TYPE_ANY,
        _ => wire::TYPE_A,
    };
    let qname = match name.parse::<std::net::IpAddr>() {
        Ok(ip) if qtype == wire::TYPE_PTR => Name::reverse(ip),
        _ => Name::parse(name).ok_or_else(|| anyhow::anyhow!("not a DNS name: {name:?}"))?,
    };
    let r = l2sm_controller::dns::client::lookup(server, &qname, qtype, timeout)?;
    for rec in &r.answers {
        let (t, data) = match &rec.data {
            RData::Addr(ip @ std::net::IpAddr::V4(_)) => ("A", ip.to_string()),
            RData::Addr(ip) => ("AAAA", ip.to_string()),
            RData::Ptr(n) => ("PTR", n.to_string()),
            RData::Soa(s) => ("SOA", format!("{} {} {}", s.mname, s.rname, s.serial)),
            RData::Other(t, d) => {
                println!("{} {} TYPE{t} ({} octets)", rec.name, rec.ttl, d.len());
                continue;
            }
        };
        println!("{} {} {t} {data}", rec.name, rec.ttl);
    }
    match r.rcode {
        0 if !r.answers.is_empty() => Ok(0),
        0 => {
            eprintln!("{qname}: no records of that type (NODATA)");
            Ok(1)
        }
        3 => {
            eprintln!("{qname}: no such name (NXDOMAIN)");
            Ok(1)
        }
        5 => {
            eprintln!(
                "{qname}: refused by {server} (outside its zone {}.)",
                l2sm_controller::dns::ZONE
            );
            Ok(2)
        }
        rcode => {
            eprintln!("{qname}: server {server} answered rcode {rcode}");
            Ok(2)
        }
    }
}
