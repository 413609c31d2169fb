//! Open vSwitch specifics on top of the generic client.
//!
//! ovsdb-server commits a transaction long before ovs-vswitchd acts on it. The
//! `next_cfg`/`cur_cfg` handshake (see `ovs-vswitchd.conf.db(5)`, table Open_vSwitch)
//! closes that gap: a client bumps `next_cfg` in its transaction, and vswitchd copies the
//! value to `cur_cfg` once it has reconfigured. This is what `ovs-vsctl --wait` does.

use std::time::Duration;

use crate::{datum, Client, Condition, Error, Mutation, OpResult, Operation, Schema};

/// The database ovs-vswitchd reads.
pub const DB: &str = "Open_vSwitch";

/// How often [`wait_applied`] polls `cur_cfg`.
const POLL_INTERVAL: Duration = Duration::from_millis(5);

/// Tables and columns L2S-M reads or writes, checked once by [`check_schema`].
pub const REQUIRED: &[(&str, &[&str])] = &[
    ("Open_vSwitch", &["bridges", "next_cfg", "cur_cfg", "ssl"]),
    ("SSL", &["private_key", "certificate", "ca_cert"]),
    (
        "Bridge",
        &[
            "name",
            "ports",
            "controller",
            "datapath_type",
            "protocols",
            "fail_mode",
            "other_config",
            "external_ids",
        ],
    ),
    ("Port", &["name", "interfaces", "external_ids"]),
    (
        "Interface",
        &[
            "name",
            "type",
            "options",
            "ofport",
            "ofport_request",
            "error",
            "external_ids",
            "mtu_request",
        ],
    ),
    (
        "Controller",
        &[
            "target",
            "connection_mode",
            "max_backoff",
            "inactivity_probe",
            "is_connected",
        ],
    ),
];

/// Operations to append to a transaction so that vswitchd reports when it applied it:
/// `next_cfg += 1` on the (single) Open_vSwitch row, then read the new value back in the
/// same transaction, so no other client's bump can be mistaken for ours.
pub fn bump_next_cfg_ops() -> [Operation; 2] {
    [
        Operation::mutate(DB, vec![], vec![Mutation::add("next_cfg", 1.into())]),
        Operation::select(DB, vec![], &["next_cfg"]),
    ]
}

/// The `next_cfg` read by the select from [`bump_next_cfg_ops`], i.e. the last result.
/// `None` if there is no Open_vSwitch row (a database nobody ran `ovs-vsctl init` on).
pub fn next_cfg_from(results: &[OpResult]) -> Option<i64> {
    results
        .last()?
        .rows()?
        .first()?
        .get("next_cfg")
        .and_then(datum::as_opt_i64)
}

/// Polls `cur_cfg` until it reaches `next_cfg`, failing with [`Error::Timeout`] after
/// `timeout`. Without a running ovs-vswitchd this always times out.
pub async fn wait_applied(client: &Client, next_cfg: i64, timeout: Duration) -> Result<(), Error> {
    let poll = async {
        let select = [Operation::select(DB, vec![], &["cur_cfg"])];
        loop {
            let results = client.transact(DB, &select).await?;
            let cur = results
                .first()
                .and_then(OpResult::rows)
                .and_then(|rows| rows.first())
                .ok_or_else(|| Error::Protocol("Open_vSwitch table has no row".into()))?
                .get("cur_cfg")
                .and_then(datum::as_opt_i64);
            if cur.is_some_and(|c| c >= next_cfg) {
                return Ok(());
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    };
    tokio::time::timeout(timeout, poll)
        .await
        .map_err(|_| Error::Timeout)?
}

/// Fetches the Open_vSwitch schema and checks it has everything in [`REQUIRED`], so a
/// too-old Open vSwitch fails at startup with the missing column's name.
pub async fn check_schema(client: &Client) -> Result<Schema, Error> {
    let schema = client.get_schema(DB).await?;
    for (table, columns) in REQUIRED {
        schema.require(table, columns)?;
    }
    Ok(schema)
}

/// `[name == value]`: the usual way to address a Bridge, Port or Interface, all of
/// which have a unique `name` index.
pub fn by_name(name: &str) -> Vec<Condition> {
    vec![Condition::eq("name", name.into())]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bump_ops_json() {
        let [m, s] = bump_next_cfg_ops();
        assert_eq!(
            m.to_json(),
            json!({"op": "mutate", "table": "Open_vSwitch", "where": [],
                   "mutations": [["next_cfg", "+=", 1]]})
        );
        assert_eq!(
            s.to_json(),
            json!({"op": "select", "table": "Open_vSwitch", "where": [],
                   "columns": ["next_cfg"]})
        );
    }

    #[test]
    fn next_cfg_from_last_result() {
        let row = json!({"next_cfg": 12})
            .as_object()
            .cloned()
            .unwrap_or_default();
        let results = [
            OpResult::Uuid("u".into()),
            OpResult::Count(1),
            OpResult::Rows(vec![row]),
        ];
        assert_eq!(next_cfg_from(&results), Some(12));
        assert_eq!(next_cfg_from(&results[..2]), None);
        assert_eq!(next_cfg_from(&[OpResult::Rows(vec![])]), None);
        assert_eq!(next_cfg_from(&[]), None);
    }

    #[test]
    fn by_name_condition() {
        assert_eq!(json!(by_name("br0")), json!([["name", "==", "br0"]]));
    }
}
