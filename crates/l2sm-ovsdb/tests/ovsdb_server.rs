//! The client against a real `ovsdb-server` (no ovs-vswitchd) serving the vswitch schema.

mod common;

use std::time::{Duration, Instant};

use common::OvsdbServer;
use l2sm_ovsdb::{datum, vswitch, Client, Condition, Error, Mutation, OpResult, Operation};
use serde_json::json;

const DB: &str = vswitch::DB;

/// `ovsdb-tool create` leaves the database empty; `ovs-vsctl init` would add this row.
async fn init_root(c: &Client) -> String {
    let r = c
        .transact(DB, &[Operation::insert(DB, json!({}), None)])
        .await
        .expect("insert Open_vSwitch row");
    r[0].uuid().expect("uuid").to_owned()
}

/// Bridge `br` with one internal port `port`, in one transaction via named UUIDs.
/// Returns (interface, port, bridge) UUIDs.
async fn add_bridge(c: &Client, br: &str, port: &str) -> (String, String, String) {
    let ops = [
        Operation::insert(
            "Interface",
            json!({"name": port, "type": "internal", "mtu_request": 1450}),
            Some("iface"),
        ),
        Operation::insert(
            "Port",
            json!({"name": port, "interfaces": datum::named_uuid("iface")}),
            Some("port"),
        ),
        Operation::insert(
            "Bridge",
            json!({
                "name": br,
                "ports": datum::set([datum::named_uuid("port")]),
                "protocols": datum::set([json!("OpenFlow13")]),
                "fail_mode": "secure",
                "other_config": datum::map([("datapath-id", "0000000000000001")]),
            }),
            Some("br"),
        ),
        Operation::mutate(
            DB,
            vec![],
            vec![Mutation::insert(
                "bridges",
                datum::set([datum::named_uuid("br")]),
            )],
        ),
        Operation::comment("l2sm-ovsdb test: add bridge"),
    ];
    let r = c.transact(DB, &ops).await.expect("add bridge");
    assert_eq!(r.len(), 5);
    assert_eq!(r[3], OpResult::Count(1));
    assert_eq!(r[4], OpResult::Empty);
    let uuid = |i: usize| r[i].uuid().expect("insert result is a uuid").to_owned();
    (uuid(0), uuid(1), uuid(2))
}

fn expect_transaction_error<T: std::fmt::Debug>(r: Result<T, Error>) -> (usize, String, String) {
    match r {
        Err(Error::Transaction {
            index,
            error,
            details,
        }) => (index, error, details),
        other => panic!("expected Error::Transaction, got {other:?}"),
    }
}

async fn select_one(c: &Client, table: &str, name: &str, columns: &[&str]) -> l2sm_ovsdb::Row {
    let r = c
        .transact(
            DB,
            &[Operation::select(table, vswitch::by_name(name), columns)],
        )
        .await
        .expect("select");
    let rows = r[0].rows().expect("select result has rows");
    assert_eq!(rows.len(), 1, "{table} {name}: {rows:?}");
    rows[0].clone()
}

#[tokio::test]
async fn list_dbs_and_schema() {
    let srv = OvsdbServer::started();
    let c = srv.client().await;
    let dbs = c.list_dbs().await.expect("list_dbs");
    assert!(dbs.contains(&DB.to_string()), "{dbs:?}");
    assert!(dbs.contains(&"_Server".to_string()), "{dbs:?}");

    let schema = vswitch::check_schema(&c).await.expect("check_schema");
    assert_eq!(schema.name, DB);
    assert!(!schema.version.is_empty());
    assert!(schema.tables["Bridge"].columns.contains_key("ports"));
    match schema.require("Bridge", &["name", "no_such_column"]) {
        Err(Error::Schema(m)) => assert!(m.contains("Bridge.no_such_column"), "{m}"),
        other => panic!("{other:?}"),
    }
    c.echo().await.expect("echo");

    // An unknown database is a JSON-RPC level error, not a transaction error.
    match c.get_schema("Nope").await {
        Err(Error::Rpc { error }) => assert_eq!(error["error"], "unknown database"),
        other => panic!("{other:?}"),
    }
    match c.transact("Nope", &[Operation::comment("x")]).await {
        Err(Error::Rpc { error }) => assert_eq!(error["error"], "unknown database"),
        other => panic!("{other:?}"),
    }
    // The connection survives request-level errors.
    assert!(!c.is_closed());
    c.echo().await.expect("echo after errors");
}

#[tokio::test]
async fn insert_with_named_uuids_and_select_back() {
    let srv = OvsdbServer::started();
    let c = srv.client().await;
    init_root(&c).await;
    let (iface, port, br) = add_bridge(&c, "l2sm-br", "l2sm-p1").await;

    let row = select_one(
        &c,
        "Bridge",
        "l2sm-br",
        &[
            "_uuid",
            "ports",
            "protocols",
            "fail_mode",
            "other_config",
            "controller",
            "datapath_type",
        ],
    )
    .await;
    assert_eq!(datum::as_uuid(&row["_uuid"]), Some(br.clone()));
    // A one-element set comes back as the bare element.
    assert_eq!(row["ports"], datum::uuid(&port));
    assert_eq!(datum::as_set(&row["ports"]), vec![datum::uuid(&port)]);
    assert_eq!(datum::as_set(&row["protocols"]), vec![json!("OpenFlow13")]);
    assert_eq!(datum::as_opt_str(&row["fail_mode"]), Some("secure".into()));
    assert_eq!(
        datum::as_map(&row["other_config"]).get("datapath-id"),
        Some(&json!("0000000000000001"))
    );
    assert!(datum::as_set(&row["controller"]).is_empty());
    assert_eq!(row["datapath_type"], json!(""));

    let row = select_one(&c, "Port", "l2sm-p1", &[]).await;
    assert_eq!(datum::as_uuid(&row["interfaces"]), Some(iface.clone()));
    let row = select_one(
        &c,
        "Interface",
        "l2sm-p1",
        &["type", "mtu_request", "ofport", "error"],
    )
    .await;
    assert_eq!(row["type"], "internal");
    assert_eq!(datum::as_opt_i64(&row["mtu_request"]), Some(1450));
    // No vswitchd: nobody assigned an OpenFlow port number or reported an error.
    assert_eq!(datum::as_opt_i64(&row["ofport"]), None);
    assert_eq!(datum::as_opt_str(&row["error"]), None);

    // Selecting by a set column with "includes".
    let r = c
        .transact(
            DB,
            &[Operation::select(
                "Bridge",
                vec![Condition::includes("ports", datum::uuid(&port))],
                &["name"],
            )],
        )
        .await
        .expect("select includes");
    assert_eq!(r[0].rows().map(|r| r.len()), Some(1));
    assert_eq!(
        r[0].rows().map(|r| r[0]["name"].clone()),
        Some(json!("l2sm-br"))
    );
}

#[tokio::test]
async fn mutate_update_delete() {
    let srv = OvsdbServer::started();
    let c = srv.client().await;
    let root = init_root(&c).await;
    let (_iface, port, br) = add_bridge(&c, "br-m", "p-m").await;

    let r = c
        .transact(
            DB,
            &[
                Operation::mutate(
                    "Bridge",
                    vswitch::by_name("br-m"),
                    vec![Mutation::insert(
                        "external_ids",
                        datum::map([("l2sm", "yes")]),
                    )],
                ),
                Operation::update(
                    "Interface",
                    vswitch::by_name("p-m"),
                    json!({"mtu_request": datum::set([]), "options": datum::map([("k", "v")])}),
                ),
                Operation::update(
                    "Interface",
                    vswitch::by_name("absent"),
                    json!({"type": "x"}),
                ),
            ],
        )
        .await
        .expect("mutate/update");
    assert_eq!(
        r,
        vec![OpResult::Count(1), OpResult::Count(1), OpResult::Count(0)]
    );
    let row = select_one(&c, "Bridge", "br-m", &["external_ids"]).await;
    assert_eq!(
        datum::as_map(&row["external_ids"]).get("l2sm"),
        Some(&json!("yes"))
    );
    let row = select_one(&c, "Interface", "p-m", &["mtu_request", "options"]).await;
    assert_eq!(datum::as_opt_i64(&row["mtu_request"]), None);
    assert_eq!(datum::as_map(&row["options"]).get("k"), Some(&json!("v")));

    // Deleting a row that a strong reference still points at fails at commit time: the
    // error element is appended after the per-operation results.
    let ops = [Operation::delete("Bridge", vswitch::by_name("br-m"))];
    let (index, error, _) = expect_transaction_error(c.transact(DB, &ops).await);
    assert_eq!(
        (index, error.as_str()),
        (1, "referential integrity violation")
    );

    // Removing the last reference garbage-collects non-root rows (Port, Interface).
    let r = c
        .transact(
            DB,
            &[
                Operation::mutate(
                    "Bridge",
                    vswitch::by_name("br-m"),
                    vec![Mutation::delete("ports", datum::set([datum::uuid(&port)]))],
                ),
                Operation::select("Port", vec![], &["name"]),
            ],
        )
        .await
        .expect("delete port");
    assert_eq!(r[0], OpResult::Count(1));
    let r = c
        .transact(DB, &[Operation::select("Port", vec![], &["name"])])
        .await
        .expect("select ports");
    assert_eq!(r[0], OpResult::Rows(vec![]), "Port was garbage-collected");

    // Drop the bridge from the root row, then delete the root row itself.
    let r = c
        .transact(
            DB,
            &[
                Operation::mutate(
                    DB,
                    vec![Condition::eq("_uuid", datum::uuid(&root))],
                    vec![Mutation::delete("bridges", datum::uuid(&br))],
                ),
                Operation::delete(DB, vec![]),
                Operation::select("Bridge", vec![], &[]),
            ],
        )
        .await
        .expect("delete root");
    assert_eq!(r[..2], [OpResult::Count(1), OpResult::Count(1)]);
}

#[tokio::test]
async fn failing_operations_report_their_index() {
    let srv = OvsdbServer::started();
    let c = srv.client().await;
    init_root(&c).await;
    add_bridge(&c, "br-dup", "p-dup").await;

    // Unknown table in the middle: the server stops there and nulls the rest.
    let ops = [
        Operation::comment("first"),
        Operation::select("NoSuchTable", vec![], &[]),
        Operation::comment("never run"),
    ];
    let (index, error, details) = expect_transaction_error(c.transact(DB, &ops).await);
    assert_eq!((index, error.as_str()), (1, "syntax error"));
    assert!(details.contains("NoSuchTable"), "{details}");

    // Unknown column.
    let ops = [Operation::select("Bridge", vec![], &["nocol"])];
    let (index, error, _) = expect_transaction_error(c.transact(DB, &ops).await);
    assert_eq!((index, error.as_str()), (0, "syntax error"));

    // Wrong type.
    let ops = [
        Operation::comment("ok"),
        Operation::update("Bridge", vswitch::by_name("br-dup"), json!({"name": 7})),
    ];
    let (index, error, _) = expect_transaction_error(c.transact(DB, &ops).await);
    assert_eq!((index, error.as_str()), (1, "syntax error"));

    // A row that is not an object is refused by the server, not inserted with defaults.
    let ops = [Operation::insert("Bridge", json!("br-x"), None)];
    let (index, _, details) = expect_transaction_error(c.transact(DB, &ops).await);
    assert_eq!(index, 0);
    assert!(details.contains("_row_is_not_a_json_object"), "{details}");

    // A wait that cannot be satisfied immediately, with timeout 0.
    let ops = [
        Operation::comment("ok"),
        Operation::Wait {
            table: "Bridge".into(),
            conditions: vswitch::by_name("br-dup"),
            columns: vec!["fail_mode".into()],
            until_equal: true,
            rows: vec![json!({"fail_mode": "standalone"})
                .as_object()
                .cloned()
                .unwrap_or_default()],
            timeout_ms: Some(0),
        },
    ];
    let (index, error, _) = expect_transaction_error(c.transact(DB, &ops).await);
    assert_eq!((index, error.as_str()), (1, "timed out"));

    // Unique index on Bridge.name: every operation succeeds, the commit fails, and the
    // error sits one past the last operation.
    let ops = [
        Operation::insert("Bridge", json!({"name": "br-dup"}), Some("b")),
        Operation::mutate(
            DB,
            vec![],
            vec![Mutation::insert("bridges", datum::named_uuid("b"))],
        ),
    ];
    let (index, error, details) = expect_transaction_error(c.transact(DB, &ops).await);
    assert_eq!((index, error.as_str()), (2, "constraint violation"));
    assert!(details.contains("br-dup"), "{details}");

    // Nothing of the failed transactions was committed.
    let r = c
        .transact(DB, &[Operation::select("Bridge", vec![], &["name"])])
        .await
        .expect("select");
    assert_eq!(r[0].rows().map(<[_]>::len), Some(1));
}

#[tokio::test]
async fn monitor_initial_rows_and_updates() {
    let srv = OvsdbServer::started();
    let c = srv.client().await;
    init_root(&c).await;
    let (_, _, br1) = add_bridge(&c, "br-mon1", "p-mon1").await;

    let id = json!(["l2sm", 1]);
    let (initial, mut updates) = c
        .monitor(
            DB,
            id.clone(),
            json!({"Bridge": {"columns": ["name", "fail_mode"]}}),
        )
        .await
        .expect("monitor");
    assert_eq!(initial["Bridge"][&br1]["new"]["name"], "br-mon1");

    // Same id again while active: refused locally.
    assert!(matches!(
        c.monitor(DB, id.clone(), json!({"Bridge": {}})).await,
        Err(Error::Protocol(_))
    ));

    let (_, _, br2) = add_bridge(&c, "br-mon2", "p-mon2").await;
    let update = tokio::time::timeout(Duration::from_secs(5), updates.recv())
        .await
        .expect("update within 5 s")
        .expect("stream open");
    assert_eq!(update["Bridge"][&br2]["new"]["name"], "br-mon2");
    assert!(update["Bridge"][&br2].get("old").is_none());

    // A modification carries the old values of just the changed columns, and the new row.
    // (Bridge.name itself is immutable: updating it is a "constraint violation".)
    c.transact(
        DB,
        &[Operation::update(
            "Bridge",
            vswitch::by_name("br-mon2"),
            json!({"fail_mode": "standalone"}),
        )],
    )
    .await
    .expect("update fail_mode");
    let update = tokio::time::timeout(Duration::from_secs(5), updates.recv())
        .await
        .expect("update within 5 s")
        .expect("stream open");
    assert_eq!(
        update["Bridge"][&br2]["old"],
        json!({"fail_mode": "secure"})
    );
    assert_eq!(update["Bridge"][&br2]["new"]["fail_mode"], "standalone");
    assert_eq!(update["Bridge"][&br2]["new"]["name"], "br-mon2");

    // A second monitor on the same connection only sees its own tables.
    let (initial, _other) = c
        .monitor(DB, json!("ports"), json!({"Port": {"columns": ["name"]}}))
        .await
        .expect("second monitor");
    assert_eq!(initial["Port"].as_object().map(|o| o.len()), Some(2));

    c.monitor_cancel(id).await.expect("monitor_cancel");
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(5), updates.recv())
            .await
            .expect("stream ends"),
        None
    );
}

#[tokio::test]
async fn next_cfg_bump_and_wait_applied_timeout() {
    let srv = OvsdbServer::started();
    let c = srv.client().await;

    // No root row yet: nothing to bump.
    let r = c
        .transact(DB, &vswitch::bump_next_cfg_ops())
        .await
        .expect("bump");
    assert_eq!(r[0], OpResult::Count(0));
    assert_eq!(vswitch::next_cfg_from(&r), None);
    assert!(matches!(
        vswitch::wait_applied(&c, 1, Duration::from_secs(1)).await,
        Err(Error::Protocol(_))
    ));

    init_root(&c).await;
    let mut ops = vec![Operation::comment("some change")];
    ops.extend(vswitch::bump_next_cfg_ops());
    let r = c.transact(DB, &ops).await.expect("bump");
    assert_eq!(vswitch::next_cfg_from(&r), Some(1));
    let r = c
        .transact(DB, &vswitch::bump_next_cfg_ops())
        .await
        .expect("bump");
    let next = vswitch::next_cfg_from(&r);
    assert_eq!(next, Some(2));

    // cur_cfg == next_cfg is already applied.
    vswitch::wait_applied(&c, 0, Duration::from_secs(1))
        .await
        .expect("cur_cfg 0 >= 0");
    // Without ovs-vswitchd, cur_cfg never moves.
    let t0 = Instant::now();
    let r = vswitch::wait_applied(&c, 2, Duration::from_millis(200)).await;
    assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
    assert!(t0.elapsed() >= Duration::from_millis(200));
    assert!(t0.elapsed() < Duration::from_secs(3));
    assert!(
        !c.is_closed(),
        "a wait_applied timeout leaves the connection usable"
    );
    c.echo().await.expect("echo");
}

#[tokio::test]
async fn server_exit_fails_pending_calls() {
    let mut srv = OvsdbServer::started();
    let c = srv.client().await;
    init_root(&c).await;

    // A wait that ovsdb-server holds open for a minute: a call genuinely in flight.
    let blocked = tokio::spawn({
        let c = c.clone();
        async move {
            let wait = Operation::Wait {
                table: DB.into(),
                conditions: vec![],
                columns: vec!["next_cfg".into()],
                until_equal: true,
                rows: vec![json!({"next_cfg": 99})
                    .as_object()
                    .cloned()
                    .unwrap_or_default()],
                timeout_ms: Some(60_000),
            };
            c.transact(DB, &[wait]).await
        }
    });
    // Other calls still go through while the wait is pending.
    c.echo().await.expect("echo while a wait is pending");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !blocked.is_finished(),
        "the wait op should still be pending"
    );

    let t0 = Instant::now();
    srv.kill();
    let r = tokio::time::timeout(Duration::from_secs(5), blocked)
        .await
        .expect("pending call ends promptly")
        .expect("task");
    assert!(matches!(r, Err(Error::Closed)), "{r:?}");
    assert!(t0.elapsed() < Duration::from_secs(2));
    assert!(c.is_closed());
    assert!(matches!(c.list_dbs().await, Err(Error::Closed)));

    // Connecting to a dead server is an I/O error naming the socket.
    match Client::connect_unix(&srv.sock).await {
        Err(e @ Error::Io(_)) => {
            assert!(
                e.to_string().contains(&srv.sock.display().to_string()),
                "{e}"
            )
        }
        other => panic!("{other:?}"),
    }
}

/// ovsdb-server only sends inactivity probes on unix sockets when a Manager row asks for
/// them (the default probe interval is 0 for `punix:`), so the test configures one.
#[tokio::test]
async fn answers_real_inactivity_probes() {
    let mut srv = OvsdbServer::new();
    let mgr_sock = srv.dir().join("mgr.sock");
    srv.offline_transact(&json!([
        DB,
        {"op": "insert", "table": "Manager", "uuid-name": "m",
         "row": {"target": format!("punix:{}", mgr_sock.display()), "inactivity_probe": 1000}},
        {"op": "insert", "table": DB,
         "row": {"manager_options": ["set", [["named-uuid", "m"]]]}}
    ]));
    srv.start(&[
        "--remote=db:Open_vSwitch,Open_vSwitch,manager_options",
        "-vjsonrpc:file:dbg",
    ]);
    srv.wait_for_socket(&mgr_sock);

    let c = Client::connect_unix(&mgr_sock)
        .await
        .expect("connect manager socket");
    c.echo().await.expect("echo");
    // Idle for well over two probe intervals: an unanswered probe would get us dropped.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert!(!c.is_closed(), "server dropped us; log:\n{}", srv.log());
    assert!(c.list_dbs().await.is_ok());
    let log = srv.log();
    assert!(
        log.contains(r#"send request, method="echo""#),
        "server never probed; log:\n{log}"
    );
    assert!(!log.contains("no response to inactivity probe"), "{log}");
}

#[tokio::test]
async fn connect_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("absent.sock");
    match Client::connect_unix(&missing).await {
        Err(Error::Io(e)) => {
            assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
            assert!(e.to_string().contains("absent.sock"), "{e}");
        }
        other => panic!("{other:?}"),
    }
}
