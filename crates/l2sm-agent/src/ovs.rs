//! The agent's view of its Open vSwitch, through OVSDB only: the node's bridge with upstream
//! naming, its controller targets, the tunnel ports of the full mesh, and pod ports.

use anyhow::{anyhow, bail, Context as _};
use l2sm_ovsdb::{datum, vswitch, Client, Condition, Mutation, OpResult, Operation};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// How long to wait for ovs-vswitchd to apply a change.
const APPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// Tunnel ports get OpenFlow numbers from here up, pod ports stay below the trunk range.
pub const FIRST_TUNNEL_OFPORT: u32 = l2sm_pipeline::ids::FIRST_TUNNEL_PORT;
/// Trunk ports get OpenFlow numbers in `FIRST_TRUNK_OFPORT..FIRST_TUNNEL_OFPORT`, so the
/// controller can tell them apart over OpenFlow alone.
pub const FIRST_TRUNK_OFPORT: u32 = l2sm_pipeline::ids::FIRST_TRUNK_PORT;
/// UDP port of the overlay's VXLAN tunnels (upstream L2S-M uses 7000).
pub const VXLAN_DST_PORT: u16 = 7000;

/// Desired bridge settings.
#[derive(Debug, Clone)]
pub struct BridgeSpec {
    /// Bridge name (`br-…`).
    pub name: String,
    /// Datapath id, 16 hex digits.
    pub dpid_hex: String,
    /// `system` (kernel) or `netdev` (userspace).
    pub datapath_type: String,
    /// Controller targets such as `tcp:10.0.0.1:6653`.
    pub controllers: Vec<String>,
    /// Controller reconnect backoff ceiling in ms.
    pub max_backoff_ms: u64,
    /// Controller inactivity probe in ms.
    pub inactivity_probe_ms: u64,
}

/// The files OVS uses for `ssl:` controller connections (OVS reads them itself, so
/// ovs-vswitchd must be able to read them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SslSpec {
    /// PEM private key of the switch.
    pub private_key: String,
    /// PEM certificate of the switch (names its node: SAN URI `urn:l2sm:node:NAME`).
    pub certificate: String,
    /// PEM CA certificate the controller's certificate must chain to.
    pub ca_cert: String,
}

/// A tunnel toward a peer node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelSpec {
    /// Port name (`vxlan-…`).
    pub name: String,
    /// Peer underlay address.
    pub remote_ip: String,
    /// Local underlay address (`options:local_ip`); `None`: OVS picks it from the route.
    pub local_ip: Option<String>,
}

/// One row of the Interface table, as far as the agent cares.
#[derive(Debug, Clone)]
pub struct InterfaceRow {
    /// Interface name.
    pub name: String,
    /// Interface type (empty for system ports).
    pub kind: String,
    /// Assigned OpenFlow port.
    pub ofport: Option<i64>,
    /// Requested OpenFlow port.
    pub ofport_request: Option<i64>,
    /// Error reported by vswitchd.
    pub error: Option<String>,
    /// `options` column.
    pub options: BTreeMap<String, Value>,
    /// `external_ids` column.
    pub external_ids: BTreeMap<String, String>,
}

fn str_map(v: &Value) -> BTreeMap<String, String> {
    datum::as_map(v)
        .into_iter()
        .map(|(k, v)| (k, v.as_str().unwrap_or_default().to_string()))
        .collect()
}

fn rows(result: Option<&OpResult>) -> anyhow::Result<Vec<Map<String, Value>>> {
    match result {
        Some(OpResult::Rows(r)) => Ok(r.clone()),
        other => bail!("unexpected OVSDB select result {other:?}"),
    }
}

/// Thin OVSDB wrapper for the agent. It reconnects by itself when ovsdb-server restarts.
#[derive(Clone)]
pub struct Ovs {
    path: String,
    client: std::sync::Arc<tokio::sync::Mutex<Client>>,
}

/// How long an operation waits for ovsdb-server to come back.
const RECONNECT_WAIT: Duration = Duration::from_secs(15);

impl Ovs {
    /// Connects, retrying until `deadline` (ovsdb-server may still be starting), and checks
    /// that the server's schema has everything the agent uses.
    pub async fn connect(path: &str, wait: Duration) -> anyhow::Result<Ovs> {
        let path = path.strip_prefix("unix:").unwrap_or(path).to_string();
        let client = Self::dial(&path, wait).await?;
        vswitch::check_schema(&client)
            .await
            .map_err(|e| anyhow!("OVSDB at {path} has an unexpected schema: {e}"))?;
        Ok(Ovs {
            path,
            client: std::sync::Arc::new(tokio::sync::Mutex::new(client)),
        })
    }

    async fn dial(path: &str, wait: Duration) -> anyhow::Result<Client> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut backoff = Duration::from_millis(50);
        loop {
            match Client::connect_unix(path).await {
                Ok(c) => return Ok(c),
                Err(e) if tokio::time::Instant::now() < deadline => {
                    tracing::debug!("OVSDB at {path} not reachable yet: {e}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
                Err(e) => return Err(anyhow!("cannot connect to OVSDB at {path}: {e}")),
            }
        }
    }

    /// A live connection, re-established (with backoff) if ovsdb-server went away.
    async fn client(&self) -> anyhow::Result<Client> {
        let mut guard = self.client.lock().await;
        if guard.is_closed() {
            tracing::warn!(path = %self.path, "OVSDB connection lost; reconnecting");
            let fresh = Self::dial(&self.path, RECONNECT_WAIT).await?;
            vswitch::check_schema(&fresh)
                .await
                .map_err(|e| anyhow!("OVSDB at {} has an unexpected schema: {e}", self.path))?;
            *guard = fresh;
            tracing::info!(path = %self.path, "OVSDB connection re-established");
        }
        Ok(guard.clone())
    }

    /// Runs `ops` plus a next_cfg bump, then waits until ovs-vswitchd applied them.
    pub async fn transact_applied(&self, mut ops: Vec<Operation>) -> anyhow::Result<Vec<OpResult>> {
        ops.extend(vswitch::bump_next_cfg_ops());
        let client = self.client().await?;
        let results = client
            .transact(vswitch::DB, &ops)
            .await
            .map_err(|e| anyhow!("OVSDB transaction failed: {e}"))?;
        let next = vswitch::next_cfg_from(&results)
            .ok_or_else(|| anyhow!("OVSDB did not return next_cfg"))?;
        vswitch::wait_applied(&client, next, APPLY_TIMEOUT)
            .await
            .map_err(|e| anyhow!("ovs-vswitchd did not apply the change: {e}"))?;
        Ok(results)
    }

    async fn select(
        &self,
        table: &str,
        conditions: Vec<Condition>,
        columns: &[&str],
    ) -> anyhow::Result<Vec<Map<String, Value>>> {
        let results = self
            .client()
            .await?
            .transact(
                vswitch::DB,
                &[Operation::select(table, conditions, columns)],
            )
            .await
            .map_err(|e| anyhow!("OVSDB select on {table} failed: {e}"))?;
        rows(results.first())
    }

    /// Makes sure the Open_vSwitch root row exists (what `ovs-vsctl init` does).
    pub async fn init(&self) -> anyhow::Result<()> {
        if self
            .select("Open_vSwitch", vec![], &["_uuid"])
            .await?
            .is_empty()
        {
            self.client()
                .await?
                .transact(
                    vswitch::DB,
                    &[Operation::insert("Open_vSwitch", json!({}), None)],
                )
                .await
                .map_err(|e| anyhow!("cannot initialise the OVSDB root row: {e}"))?;
        }
        Ok(())
    }

    /// Points OVS's SSL table (used by every `ssl:` target) at `ssl`'s files, leaving a row
    /// that already names them alone.
    pub async fn ensure_ssl(&self, ssl: &SslSpec) -> anyhow::Result<()> {
        self.init().await?;
        let root = self.select("Open_vSwitch", vec![], &["ssl"]).await?;
        let current: Vec<String> = root
            .first()
            .map(|r| {
                datum::as_set(&r["ssl"])
                    .iter()
                    .filter_map(datum::as_uuid)
                    .collect()
            })
            .unwrap_or_default();
        if let [uuid] = current.as_slice() {
            let rows = self
                .select(
                    "SSL",
                    vec![Condition::eq("_uuid", datum::uuid(uuid))],
                    &["private_key", "certificate", "ca_cert"],
                )
                .await?;
            let same = rows.first().is_some_and(|r| {
                datum::as_opt_str(&r["private_key"]).as_deref() == Some(&ssl.private_key)
                    && datum::as_opt_str(&r["certificate"]).as_deref() == Some(&ssl.certificate)
                    && datum::as_opt_str(&r["ca_cert"]).as_deref() == Some(&ssl.ca_cert)
            });
            if same {
                return Ok(());
            }
        }
        let ops = vec![
            Operation::insert(
                "SSL",
                json!({
                    "private_key": ssl.private_key,
                    "certificate": ssl.certificate,
                    "ca_cert": ssl.ca_cert,
                }),
                Some("ssl"),
            ),
            Operation::update(
                "Open_vSwitch",
                vec![],
                json!({"ssl": datum::set([datum::named_uuid("ssl")])}),
            ),
        ];
        tracing::info!(certificate = %ssl.certificate, "configuring OVS SSL (switch certificate)");
        self.transact_applied(ops)
            .await
            .context("cannot configure OVS SSL")?;
        Ok(())
    }

    fn controller_rows(spec: &BridgeSpec) -> (Vec<Operation>, Vec<Value>) {
        let mut ops = Vec::new();
        let mut refs = Vec::new();
        for (i, target) in spec.controllers.iter().enumerate() {
            let name = format!("ctl{i}");
            ops.push(Operation::insert(
                "Controller",
                json!({
                    "target": target,
                    "connection_mode": "out-of-band",
                    "max_backoff": spec.max_backoff_ms,
                    "inactivity_probe": spec.inactivity_probe_ms,
                }),
                Some(&name),
            ));
            refs.push(datum::named_uuid(&name));
        }
        (ops, refs)
    }

    /// Creates the bridge or brings its settings in line, without touching a controller
    /// connection whose settings already match.
    pub async fn ensure_bridge(&self, spec: &BridgeSpec) -> anyhow::Result<()> {
        self.init().await?;
        let cond = || vec![Condition::eq("name", json!(spec.name))];
        let existing = self
            .select(
                "Bridge",
                cond(),
                &[
                    "controller",
                    "datapath_type",
                    "protocols",
                    "fail_mode",
                    "other_config",
                ],
            )
            .await?;
        let settings = json!({
            "datapath_type": spec.datapath_type,
            "protocols": datum::set([json!("OpenFlow13")]),
            "fail_mode": "secure",
            "other_config": datum::map([
                ("datapath-id", json!(spec.dpid_hex)),
                ("disable-in-band", json!("true")),
            ]),
        });
        let mut ops = Vec::new();
        match existing.first() {
            None => {
                let (ctl_ops, ctl_refs) = Self::controller_rows(spec);
                ops.extend(ctl_ops);
                ops.push(Operation::insert(
                    "Interface",
                    json!({"name": spec.name, "type": "internal"}),
                    Some("local_if"),
                ));
                ops.push(Operation::insert(
                    "Port",
                    json!({"name": spec.name, "interfaces": datum::named_uuid("local_if")}),
                    Some("local_port"),
                ));
                let mut row = settings;
                row["name"] = json!(spec.name);
                row["ports"] = datum::set([datum::named_uuid("local_port")]);
                row["controller"] = datum::set(ctl_refs);
                ops.push(Operation::insert("Bridge", row, Some("bridge")));
                ops.push(Operation::mutate(
                    "Open_vSwitch",
                    vec![],
                    vec![Mutation::insert(
                        "bridges",
                        datum::set([datum::named_uuid("bridge")]),
                    )],
                ));
                tracing::info!(bridge = %spec.name, "creating bridge");
            }
            Some(row) => {
                let current: Vec<String> = datum::as_set(&row["controller"])
                    .iter()
                    .filter_map(datum::as_uuid)
                    .collect();
                let controllers_ok = self.controllers_match(&current, spec).await?;
                // Leave a correct bridge alone: any write makes vswitchd reconfigure it.
                let same = |col: &str| {
                    settings[col] == row[col]
                        || (col == "other_config"
                            && datum::as_map(&settings[col]) == datum::as_map(&row[col]))
                        || (col == "protocols"
                            && datum::as_set(&settings[col]) == datum::as_set(&row[col]))
                };
                let settings_ok = ["datapath_type", "protocols", "fail_mode", "other_config"]
                    .into_iter()
                    .all(same);
                if controllers_ok && settings_ok {
                    tracing::info!(bridge = %spec.name, "bridge already configured");
                    return Ok(());
                }
                let mut update = settings.clone();
                if !controllers_ok {
                    let (ctl_ops, ctl_refs) = Self::controller_rows(spec);
                    ops.extend(ctl_ops);
                    update["controller"] = datum::set(ctl_refs);
                    tracing::info!(bridge = %spec.name, "updating controller targets");
                }
                ops.push(Operation::update("Bridge", cond(), update));
            }
        }
        self.transact_applied(ops)
            .await
            .with_context(|| format!("cannot set up bridge {}", spec.name))?;
        Ok(())
    }

    async fn controllers_match(&self, uuids: &[String], spec: &BridgeSpec) -> anyhow::Result<bool> {
        if uuids.len() != spec.controllers.len() {
            return Ok(false);
        }
        let rows = self
            .select(
                "Controller",
                vec![],
                &[
                    "_uuid",
                    "target",
                    "max_backoff",
                    "inactivity_probe",
                    "connection_mode",
                ],
            )
            .await?;
        let mut have: Vec<String> = Vec::new();
        for row in rows {
            let Some(uuid) = datum::as_uuid(&row["_uuid"]) else {
                continue;
            };
            if !uuids.contains(&uuid) {
                continue;
            }
            let ok = datum::as_opt_i64(&row["max_backoff"]) == Some(spec.max_backoff_ms as i64)
                && datum::as_opt_i64(&row["inactivity_probe"])
                    == Some(spec.inactivity_probe_ms as i64)
                && datum::as_opt_str(&row["connection_mode"]).as_deref() == Some("out-of-band");
            if !ok {
                return Ok(false);
            }
            have.push(datum::as_opt_str(&row["target"]).unwrap_or_default());
        }
        have.sort();
        let mut want = spec.controllers.clone();
        want.sort();
        Ok(have == want)
    }

    /// The interfaces of `bridge` (OpenFlow numbers are per bridge; other bridges on the node
    /// are none of our business).
    pub async fn interfaces(&self, bridge: &str) -> anyhow::Result<Vec<InterfaceRow>> {
        let ops = [
            Operation::select(
                "Bridge",
                vec![Condition::eq("name", json!(bridge))],
                &["ports"],
            ),
            Operation::select("Port", vec![], &["_uuid", "interfaces"]),
            Operation::select(
                "Interface",
                vec![],
                &[
                    "_uuid",
                    "name",
                    "type",
                    "ofport",
                    "ofport_request",
                    "error",
                    "options",
                    "external_ids",
                ],
            ),
        ];
        let results = self
            .client()
            .await?
            .transact(vswitch::DB, &ops)
            .await
            .map_err(|e| anyhow!("OVSDB select failed: {e}"))?;
        let bridges = rows(results.first())?;
        let Some(bridge_row) = bridges.first() else {
            return Ok(Vec::new());
        };
        let port_ids: Vec<String> = datum::as_set(&bridge_row["ports"])
            .iter()
            .filter_map(datum::as_uuid)
            .collect();
        let iface_ids: Vec<String> = rows(results.get(1))?
            .iter()
            .filter(|p| datum::as_uuid(&p["_uuid"]).is_some_and(|u| port_ids.contains(&u)))
            .flat_map(|p| datum::as_set(&p["interfaces"]))
            .filter_map(|v| datum::as_uuid(&v))
            .collect();
        Ok(rows(results.get(2))?
            .into_iter()
            .filter(|r| datum::as_uuid(&r["_uuid"]).is_some_and(|u| iface_ids.contains(&u)))
            .map(|r| InterfaceRow {
                name: r["name"].as_str().unwrap_or_default().to_string(),
                kind: r["type"].as_str().unwrap_or_default().to_string(),
                ofport: datum::as_opt_i64(&r["ofport"]),
                ofport_request: datum::as_opt_i64(&r["ofport_request"]),
                error: datum::as_opt_str(&r["error"]),
                options: datum::as_map(&r["options"]),
                external_ids: str_map(&r["external_ids"]),
            })
            .collect())
    }

    /// Port rows by name -> uuid.
    async fn port_uuids(&self) -> anyhow::Result<BTreeMap<String, String>> {
        Ok(self
            .select("Port", vec![], &["_uuid", "name"])
            .await?
            .into_iter()
            .filter_map(|r| {
                Some((
                    r["name"].as_str()?.to_string(),
                    datum::as_uuid(&r["_uuid"])?,
                ))
            })
            .collect())
    }

    /// Creates missing tunnels, fixes changed ones and removes tunnels to nodes no longer in
    /// the mesh. Tunnels that are already right are left alone, so traffic does not flap.
    pub async fn ensure_tunnels(&self, bridge: &str, tunnels: &[TunnelSpec]) -> anyhow::Result<()> {
        let interfaces = self.interfaces(bridge).await?;
        let ports = self.port_uuids().await?;
        let existing: BTreeMap<&str, &InterfaceRow> = interfaces
            .iter()
            .filter(|i| l2sm_pipeline::ids::is_tunnel_port_name(&i.name))
            .map(|i| (i.name.as_str(), i))
            .collect();
        let mut used: Vec<i64> = interfaces
            .iter()
            .filter_map(|i| i.ofport_request.or(i.ofport))
            .collect();
        let mut ops = Vec::new();
        let bridge_cond = || vec![Condition::eq("name", json!(bridge))];
        for (i, t) in tunnels.iter().enumerate() {
            let mut pairs = vec![
                ("remote_ip", json!(t.remote_ip)),
                ("key", json!("flow")),
                ("dst_port", json!(VXLAN_DST_PORT.to_string())),
            ];
            if let Some(local) = &t.local_ip {
                pairs.push(("local_ip", json!(local)));
            }
            let options = datum::map(pairs);
            match existing.get(t.name.as_str()) {
                Some(row) => {
                    let want: BTreeMap<String, Value> = datum::as_map(&options);
                    if row.kind != "vxlan" || row.options != want {
                        ops.push(Operation::update(
                            "Interface",
                            vec![Condition::eq("name", json!(t.name))],
                            json!({"type": "vxlan", "options": options}),
                        ));
                    }
                }
                None => {
                    let mut ofport = i64::from(FIRST_TUNNEL_OFPORT);
                    while used.contains(&ofport) {
                        ofport += 1;
                    }
                    used.push(ofport);
                    let (iface, port) = (format!("tif{i}"), format!("tport{i}"));
                    ops.push(Operation::insert(
                        "Interface",
                        json!({"name": t.name, "type": "vxlan", "options": options, "ofport_request": ofport}),
                        Some(&iface),
                    ));
                    ops.push(Operation::insert(
                        "Port",
                        json!({"name": t.name, "interfaces": datum::named_uuid(&iface)}),
                        Some(&port),
                    ));
                    ops.push(Operation::mutate(
                        "Bridge",
                        bridge_cond(),
                        vec![Mutation::insert(
                            "ports",
                            datum::set([datum::named_uuid(&port)]),
                        )],
                    ));
                }
            }
        }
        for name in existing.keys() {
            if tunnels.iter().all(|t| t.name != *name) {
                if let Some(uuid) = ports.get(*name) {
                    ops.push(Operation::mutate(
                        "Bridge",
                        bridge_cond(),
                        vec![Mutation::delete("ports", datum::set([datum::uuid(uuid)]))],
                    ));
                }
            }
        }
        if ops.is_empty() {
            return Ok(());
        }
        self.transact_applied(ops)
            .await
            .context("cannot set up tunnel ports")?;
        Ok(())
    }

    /// Makes the bridge's trunk ports exactly `trunks`: existing interfaces of the node added
    /// with a number in the trunk range, trunks no longer wanted removed from the bridge (the
    /// device itself is left alone).
    pub async fn ensure_trunks(
        &self,
        bridge: &str,
        trunks: &[l2sm_api::topology::Trunk],
    ) -> anyhow::Result<()> {
        let interfaces = self.interfaces(bridge).await?;
        let is_trunk =
            |i: &InterfaceRow| i.external_ids.get("l2sm-link").map(String::as_str) == Some("trunk");
        let mut used: Vec<i64> = interfaces
            .iter()
            .filter_map(|i| i.ofport_request.or(i.ofport))
            .collect();
        let mut changes = Vec::new();
        for t in trunks {
            if interfaces
                .iter()
                .any(|i| i.name == t.interface && is_trunk(i))
            {
                continue;
            }
            if interfaces.iter().any(|i| i.name == t.interface) {
                bail!(
                    "interface {} is already a port of {bridge} and cannot become a trunk",
                    t.interface
                );
            }
            let mut ofport = i64::from(FIRST_TRUNK_OFPORT);
            while used.contains(&ofport) {
                ofport += 1;
            }
            if ofport >= i64::from(FIRST_TUNNEL_OFPORT) {
                bail!("no free trunk port number left on {bridge}");
            }
            used.push(ofport);
            changes.push(PortChange::Add(NewPort {
                name: t.interface.clone(),
                ofport: u32::try_from(ofport)?,
                external_ids: vec![
                    ("l2sm-link".into(), "trunk".into()),
                    ("l2sm-peer".into(), t.peer.clone()),
                ],
            }));
        }
        for i in interfaces.iter().filter(|i| is_trunk(i)) {
            if trunks.iter().all(|t| t.interface != i.name) {
                changes.push(PortChange::Remove(i.name.clone()));
            }
        }
        if changes.is_empty() {
            return Ok(());
        }
        for r in self.apply_port_changes(bridge, &changes).await? {
            r.context("cannot set up trunk ports")?;
        }
        tracing::info!(trunks = trunks.len(), "trunk ports reconciled");
        Ok(())
    }

    /// Applies pod port additions and removals in ONE transaction and waits once for vswitchd:
    /// each reconfiguration of vswitchd costs the same whether it adds one port or a hundred.
    /// Returns one result per change; additions are checked (no error, the requested number).
    pub async fn apply_port_changes(
        &self,
        bridge: &str,
        changes: &[PortChange],
    ) -> anyhow::Result<Vec<anyhow::Result<()>>> {
        let uuids = if changes.iter().any(|c| matches!(c, PortChange::Remove(_))) {
            self.port_uuids().await?
        } else {
            BTreeMap::new()
        };
        let bridge_cond = || vec![Condition::eq("name", json!(bridge))];
        let mut ops = Vec::new();
        let mut inserted = Vec::new();
        let mut removed = Vec::new();
        for (i, change) in changes.iter().enumerate() {
            match change {
                PortChange::Add(p) => {
                    let ids = datum::map(p.external_ids.iter().map(|(k, v)| (k.clone(), json!(v))));
                    let (iface, port) = (format!("iface{i}"), format!("port{i}"));
                    ops.push(Operation::insert(
                        "Interface",
                        json!({"name": p.name, "ofport_request": p.ofport, "external_ids": ids}),
                        Some(&iface),
                    ));
                    ops.push(Operation::insert(
                        "Port",
                        json!({"name": p.name, "interfaces": datum::named_uuid(&iface), "external_ids": ids}),
                        Some(&port),
                    ));
                    inserted.push(datum::named_uuid(&port));
                }
                PortChange::Remove(name) => {
                    if let Some(uuid) = uuids.get(name) {
                        removed.push(datum::uuid(uuid));
                    }
                }
            }
        }
        if !inserted.is_empty() {
            ops.push(Operation::mutate(
                "Bridge",
                bridge_cond(),
                vec![Mutation::insert("ports", datum::set(inserted))],
            ));
        }
        if !removed.is_empty() {
            ops.push(Operation::mutate(
                "Bridge",
                bridge_cond(),
                vec![Mutation::delete("ports", datum::set(removed))],
            ));
        }
        if ops.is_empty() {
            return Ok(changes.iter().map(|_| Ok(())).collect());
        }
        self.transact_applied(ops).await?;
        let rows: BTreeMap<String, InterfaceRow> = if inserted_any(changes) {
            self.interfaces(bridge)
                .await?
                .into_iter()
                .map(|r| (r.name.clone(), r))
                .collect()
        } else {
            BTreeMap::new()
        };
        Ok(changes
            .iter()
            .map(|c| match c {
                PortChange::Remove(_) => Ok(()),
                PortChange::Add(p) => {
                    let row = rows.get(&p.name).ok_or_else(|| {
                        anyhow!("port {} vanished right after it was added", p.name)
                    })?;
                    if let Some(err) = row.error.as_ref().filter(|e| !e.is_empty()) {
                        bail!("Open vSwitch could not add port {}: {err}", p.name);
                    }
                    if row.ofport != Some(i64::from(p.ofport)) {
                        bail!(
                            "port {} got OpenFlow number {:?} instead of {}",
                            p.name,
                            row.ofport,
                            p.ofport
                        );
                    }
                    Ok(())
                }
            })
            .collect())
    }
}

fn inserted_any(changes: &[PortChange]) -> bool {
    changes.iter().any(|c| matches!(c, PortChange::Add(_)))
}

/// A pod port to add.
#[derive(Debug, Clone)]
pub struct NewPort {
    /// Interface (and port) name.
    pub name: String,
    /// Requested OpenFlow number.
    pub ofport: u32,
    /// `external_ids` of the Port and Interface rows.
    pub external_ids: Vec<(String, String)>,
}

/// One change of the batched port path.
#[derive(Debug, Clone)]
pub enum PortChange {
    /// Add a pod port.
    Add(NewPort),
    /// Remove a port by name (absent ports are fine).
    Remove(String),
}

type Pending = (PortChange, tokio::sync::oneshot::Sender<anyhow::Result<()>>);

/// Group commit for pod ports: concurrent attaches and detaches share OVSDB transactions.
#[derive(Clone)]
pub struct PortBatcher {
    tx: tokio::sync::mpsc::Sender<Pending>,
}

/// Most changes merged into one transaction.
const MAX_BATCH: usize = 128;

impl PortBatcher {
    /// Starts the batching task for `bridge`.
    pub fn spawn(ovs: Ovs, bridge: String) -> PortBatcher {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Pending>(1024);
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(p) => batch.push(p),
                        Err(_) => break,
                    }
                }
                let changes: Vec<PortChange> = batch.iter().map(|(c, _)| c.clone()).collect();
                match ovs.apply_port_changes(&bridge, &changes).await {
                    Ok(results) => {
                        for ((_, reply), r) in batch.into_iter().zip(results) {
                            let _ = reply.send(r);
                        }
                    }
                    // One bad change must not fail its neighbours: retry them one by one.
                    Err(_) if batch.len() > 1 => {
                        for (change, reply) in batch {
                            let r = match ovs
                                .apply_port_changes(&bridge, std::slice::from_ref(&change))
                                .await
                            {
                                Ok(mut v) => v.pop().unwrap_or(Ok(())),
                                Err(e) => Err(e),
                            };
                            let _ = reply.send(r);
                        }
                    }
                    Err(e) => {
                        for (_, reply) in batch {
                            let _ = reply.send(Err(anyhow!("{e:#}")));
                        }
                    }
                }
            }
        });
        PortBatcher { tx }
    }

    /// Queues one change and waits for its result.
    pub async fn apply(&self, change: PortChange) -> anyhow::Result<()> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.tx
            .send((change, reply))
            .await
            .map_err(|_| anyhow!("port batcher stopped"))?;
        rx.await.map_err(|_| anyhow!("port batcher stopped"))?
    }
}

impl Ovs {
    /// A plain standalone bridge (normal L2 switching, no controller) holding `uplink`. The lab
    /// uses it to give a node's underlay address to OVS, which userspace tunnels require.
    pub async fn ensure_plain_bridge(
        &self,
        name: &str,
        datapath_type: &str,
        uplink: &str,
    ) -> anyhow::Result<()> {
        self.init().await?;
        let exists = !self
            .select(
                "Bridge",
                vec![Condition::eq("name", json!(name))],
                &["_uuid"],
            )
            .await?
            .is_empty();
        if exists {
            return Ok(());
        }
        let ops = vec![
            Operation::insert(
                "Interface",
                json!({"name": name, "type": "internal"}),
                Some("lif"),
            ),
            Operation::insert(
                "Port",
                json!({"name": name, "interfaces": datum::named_uuid("lif")}),
                Some("lport"),
            ),
            Operation::insert("Interface", json!({"name": uplink}), Some("uif")),
            Operation::insert(
                "Port",
                json!({"name": uplink, "interfaces": datum::named_uuid("uif")}),
                Some("uport"),
            ),
            Operation::insert(
                "Bridge",
                json!({
                    "name": name,
                    "datapath_type": datapath_type,
                    "ports": datum::set([datum::named_uuid("lport"), datum::named_uuid("uport")]),
                }),
                Some("br"),
            ),
            Operation::mutate(
                "Open_vSwitch",
                vec![],
                vec![Mutation::insert(
                    "bridges",
                    datum::set([datum::named_uuid("br")]),
                )],
            ),
        ];
        self.transact_applied(ops)
            .await
            .with_context(|| format!("cannot create bridge {name}"))?;
        Ok(())
    }
}

/// One end of an OVS patch port pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchEnd {
    /// Bridge holding this end.
    pub bridge: String,
    /// Port (and interface) name.
    pub name: String,
    /// Requested OpenFlow number.
    pub ofport: u32,
}

/// A port of any bridge, with where it is.
#[derive(Debug, Clone)]
pub struct PortLocation {
    /// The bridge holding it.
    pub bridge: String,
    /// The Port row's uuid.
    pub uuid: String,
    /// Port name.
    pub name: String,
    /// `external_ids` of the Port row.
    pub external_ids: BTreeMap<String, String>,
}

impl Ovs {
    /// The `datapath_type` of a bridge, `None` when there is no such bridge.
    pub async fn bridge_datapath_type(&self, bridge: &str) -> anyhow::Result<Option<String>> {
        Ok(self
            .select(
                "Bridge",
                vec![Condition::eq("name", json!(bridge))],
                &["datapath_type"],
            )
            .await?
            .first()
            .map(|r| r["datapath_type"].as_str().unwrap_or_default().to_string()))
    }

    /// Every port of every bridge whose `external_ids` hold `key` (any value).
    pub async fn ports_with_external_id(&self, key: &str) -> anyhow::Result<Vec<PortLocation>> {
        let ops = [
            Operation::select("Bridge", vec![], &["name", "ports"]),
            Operation::select("Port", vec![], &["_uuid", "name", "external_ids"]),
        ];
        let results = self
            .client()
            .await?
            .transact(vswitch::DB, &ops)
            .await
            .map_err(|e| anyhow!("OVSDB select failed: {e}"))?;
        let mut owner: BTreeMap<String, String> = BTreeMap::new();
        for b in rows(results.first())? {
            let name = b["name"].as_str().unwrap_or_default().to_string();
            for p in datum::as_set(&b["ports"]) {
                if let Some(u) = datum::as_uuid(&p) {
                    owner.insert(u, name.clone());
                }
            }
        }
        Ok(rows(results.get(1))?
            .into_iter()
            .filter_map(|r| {
                let uuid = datum::as_uuid(&r["_uuid"])?;
                let external_ids = str_map(&r["external_ids"]);
                if !external_ids.contains_key(key) {
                    return None;
                }
                Some(PortLocation {
                    bridge: owner.get(&uuid)?.clone(),
                    uuid,
                    name: r["name"].as_str().unwrap_or_default().to_string(),
                    external_ids,
                })
            })
            .collect())
    }

    /// Removes these ports from their bridges in ONE transaction (rows the bridges no longer
    /// reference are deleted by OVSDB).
    pub async fn remove_ports(&self, ports: &[PortLocation]) -> anyhow::Result<()> {
        let mut by_bridge: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
        for p in ports {
            by_bridge
                .entry(p.bridge.as_str())
                .or_default()
                .push(datum::uuid(&p.uuid));
        }
        if by_bridge.is_empty() {
            return Ok(());
        }
        let ops = by_bridge
            .into_iter()
            .map(|(bridge, uuids)| {
                Operation::mutate(
                    "Bridge",
                    vec![Condition::eq("name", json!(bridge))],
                    vec![Mutation::delete("ports", datum::set(uuids))],
                )
            })
            .collect();
        self.transact_applied(ops).await?;
        Ok(())
    }

    /// Creates a patch port pair `a` <-> `b` in ONE OVSDB transaction (both ends or
    /// neither), both with `external_ids`, then checks that vswitchd gave each end its
    /// requested number without error; when it did not, both ends are removed again.
    pub async fn create_patch_pair(
        &self,
        a: &PatchEnd,
        b: &PatchEnd,
        external_ids: &[(String, String)],
    ) -> anyhow::Result<()> {
        let ids = datum::map(external_ids.iter().map(|(k, v)| (k.clone(), json!(v))));
        let mut ops = Vec::new();
        for (i, (end, peer)) in [(a, b), (b, a)].into_iter().enumerate() {
            let (iface, port) = (format!("pif{i}"), format!("pport{i}"));
            ops.push(Operation::insert(
                "Interface",
                json!({
                    "name": end.name,
                    "type": "patch",
                    "options": datum::map([("peer", json!(peer.name))]),
                    "ofport_request": end.ofport,
                    "external_ids": ids,
                }),
                Some(&iface),
            ));
            ops.push(Operation::insert(
                "Port",
                json!({"name": end.name, "interfaces": datum::named_uuid(&iface), "external_ids": ids}),
                Some(&port),
            ));
            ops.push(Operation::mutate(
                "Bridge",
                vec![Condition::eq("name", json!(end.bridge))],
                vec![Mutation::insert(
                    "ports",
                    datum::set([datum::named_uuid(&port)]),
                )],
            ));
        }
        let results = self.transact_applied(ops).await?;
        // A mutate of a bridge that does not exist touches 0 rows: not an error for OVSDB.
        let untouched = results.iter().any(|r| matches!(r, OpResult::Count(0)));
        let mut problem = untouched.then(|| "a bridge of the pair does not exist".to_string());
        if problem.is_none() {
            for end in [a, b] {
                let rows = self.interfaces(&end.bridge).await?;
                let row = rows.iter().find(|r| r.name == end.name);
                problem = match row {
                    None => Some(format!("{} is not on {}", end.name, end.bridge)),
                    Some(r) if r.error.as_ref().is_some_and(|e| !e.is_empty()) => Some(format!(
                        "Open vSwitch could not add {}: {}",
                        end.name,
                        r.error.as_deref().unwrap_or_default()
                    )),
                    Some(r) if r.ofport != Some(i64::from(end.ofport)) => Some(format!(
                        "{} got OpenFlow number {:?} instead of {}",
                        end.name, r.ofport, end.ofport
                    )),
                    Some(_) => None,
                };
                if problem.is_some() {
                    break;
                }
            }
        }
        if let Some(p) = problem {
            let made: Vec<PortLocation> = self
                .ports_with_external_id(external_ids.first().map_or("", |(k, _)| k))
                .await?
                .into_iter()
                .filter(|l| l.name == a.name || l.name == b.name)
                .collect();
            if let Err(e) = self.remove_ports(&made).await {
                tracing::warn!("cannot remove the half-made patch pair: {e:#}");
            }
            bail!("{p}");
        }
        Ok(())
    }
}
