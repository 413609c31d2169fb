//! Async OVSDB client over a unix socket (RFC 7047 §4).
//!
//! One background task reads the socket and routes every incoming message: replies go to
//! the call waiting on that id, `echo` requests are answered on the spot (ovsdb-server
//! sends them as inactivity probes, and drops connections that stay silent, §4.1.11),
//! and `update`/`update2`/`update3` notifications go to monitor subscribers (§4.1.6).
//! A second task owns the write half, so replies to `echo` never wait behind a caller.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;

use crate::framing::Framer;
use crate::ops::{parse_transact_result, OpResult, Operation};
use crate::schema::Schema;
use crate::Error;

/// Default bound on every call, including connecting.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

const READ_CHUNK: usize = 64 * 1024;

type Reply = Result<Value, Error>;

/// A connection to an OVSDB server. Cheap to clone; all clones share the connection,
/// which closes when the last clone is dropped.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
    timeout: Duration,
}

/// Owns the background tasks: dropping the last [`Client`] stops them and closes the socket.
struct Inner {
    shared: Arc<Shared>,
    tasks: [AbortHandle; 2],
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shared.close();
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// State reachable from the callers and both tasks.
struct Shared {
    state: Mutex<State>,
    next_id: AtomicU64,
}

struct State {
    /// `None` once the connection is closed; taking it also ends the writer task.
    out: Option<mpsc::UnboundedSender<Vec<u8>>>,
    pending: HashMap<u64, oneshot::Sender<Reply>>,
    /// Keyed by the monitor id's JSON text, since ids are arbitrary JSON values.
    monitors: HashMap<String, mpsc::UnboundedSender<Value>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the maps half-updated in a way that
        // matters (each operation is a single insert/remove), so poisoning is ignored.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Fails every call in flight (their senders drop) and ends monitor streams.
    fn close(&self) {
        let mut st = self.lock();
        st.out = None;
        st.pending.clear();
        st.monitors.clear();
    }

    fn is_closed(&self) -> bool {
        self.lock().out.is_none()
    }

    /// Registers a pending call and queues its request, atomically with respect to
    /// [`Shared::close`], so a call can never wait on a connection that already died.
    fn start_call(
        &self,
        method: &str,
        params: Value,
    ) -> Result<(u64, oneshot::Receiver<Reply>), Error> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let bytes = serde_json::to_vec(&json!({"method": method, "params": params, "id": id}))?;
        let (tx, rx) = oneshot::channel();
        let mut st = self.lock();
        let out = st.out.as_ref().ok_or(Error::Closed)?;
        out.send(bytes).map_err(|_| Error::Closed)?;
        st.pending.insert(id, tx);
        Ok((id, rx))
    }

    fn send_raw(&self, msg: &Value) {
        match serde_json::to_vec(msg) {
            Ok(bytes) => {
                if let Some(out) = self.lock().out.as_ref() {
                    // A failed send means the writer is gone; close() follows from it.
                    let _ = out.send(bytes);
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot encode OVSDB message"),
        }
    }

    fn dispatch(&self, msg: Value) {
        let Value::Object(mut msg) = msg else {
            tracing::warn!(%msg, "ignoring non-object JSON-RPC message");
            return;
        };
        let id = msg.remove("id").unwrap_or(Value::Null);
        if let Some(method) = msg.get("method").and_then(Value::as_str) {
            let params = msg.get("params").cloned().unwrap_or(Value::Null);
            self.handle_request(method, id, params);
            return;
        }
        let Some(num) = id.as_u64() else {
            tracing::warn!(%id, "ignoring JSON-RPC reply with an id we never used");
            return;
        };
        let reply = match msg.remove("error") {
            Some(Value::Null) | None => Ok(msg.remove("result").unwrap_or(Value::Null)),
            Some(error) => Err(Error::Rpc { error }),
        };
        match self.lock().pending.remove(&num) {
            // The caller may have given up (timeout, dropped future); that is fine.
            Some(tx) => {
                let _ = tx.send(reply);
            }
            None => tracing::debug!(id = num, "reply for a call nobody waits for"),
        }
    }

    fn handle_request(&self, method: &str, id: Value, params: Value) {
        match method {
            // §4.1.11: the reply echoes the params; the id is whatever the server chose
            // (ovsdb-server uses the string "echo").
            "echo" if !id.is_null() => {
                tracing::trace!("answering server echo");
                self.send_raw(&json!({"id": id, "result": params, "error": null}));
            }
            // §4.1.6 update: [monitor-id, table-updates]; RFC 7047 extensions used by
            // monitor_cond (update2) have the same shape, monitor_cond_since (update3)
            // inserts the last transaction id before the updates.
            "update" | "update2" | "update3" => {
                let (mon, updates) = match (method, params.as_array().map(Vec::as_slice)) {
                    ("update3", Some([mon, _txn, updates])) => (mon, updates),
                    (_, Some([mon, updates, ..])) => (mon, updates),
                    _ => {
                        tracing::warn!(%params, "malformed {method} notification");
                        return;
                    }
                };
                let key = mon.to_string();
                let mut st = self.lock();
                let delivered = st
                    .monitors
                    .get(&key)
                    .map(|tx| tx.send(updates.clone()).is_ok());
                match delivered {
                    Some(true) => {}
                    Some(false) => {
                        tracing::debug!(monitor = %key, "monitor receiver dropped");
                        st.monitors.remove(&key);
                    }
                    None => tracing::debug!(monitor = %key, "update for unknown monitor"),
                }
            }
            _ if !id.is_null() => {
                tracing::debug!(method, "answering unsupported request");
                self.send_raw(&json!({"id": id, "result": null, "error": "unknown method"}));
            }
            _ => tracing::debug!(method, "ignoring notification"),
        }
    }
}

async fn read_loop(mut rd: OwnedReadHalf, shared: Arc<Shared>) {
    let mut framer = Framer::new();
    let mut chunk = vec![0u8; READ_CHUNK];
    loop {
        let n = match rd.read(&mut chunk).await {
            Ok(0) => {
                tracing::debug!("OVSDB server closed the connection");
                break;
            }
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "OVSDB read failed");
                break;
            }
        };
        match framer.push(&chunk[..n]) {
            Ok(msgs) => msgs.into_iter().for_each(|m| shared.dispatch(m)),
            Err(e) => {
                tracing::warn!(error = %e, "OVSDB stream is not JSON-RPC; closing");
                break;
            }
        }
    }
    shared.close();
}

async fn write_loop(
    mut wr: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
    shared: Arc<Shared>,
) {
    while let Some(bytes) = rx.recv().await {
        if let Err(e) = wr.write_all(&bytes).await {
            tracing::warn!(error = %e, "OVSDB write failed");
            shared.close();
            return;
        }
    }
    // Sender gone: the connection was closed on purpose.
    let _ = wr.shutdown().await;
}

/// Removes a pending entry when its call stops waiting (timeout or dropped future),
/// so abandoned calls do not accumulate.
struct PendingGuard<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.shared.lock().pending.remove(&self.id);
    }
}

impl Client {
    /// Connects to `path` (e.g. `/var/run/openvswitch/db.sock`) within [`DEFAULT_TIMEOUT`].
    /// Must be called inside a tokio runtime: it spawns the connection's tasks.
    pub async fn connect_unix(path: impl AsRef<Path>) -> Result<Client, Error> {
        let path = path.as_ref();
        let with_path = |e: std::io::Error| {
            Error::Io(std::io::Error::new(
                e.kind(),
                format!("connect {}: {e}", path.display()),
            ))
        };
        let stream = tokio::time::timeout(DEFAULT_TIMEOUT, UnixStream::connect(path))
            .await
            .map_err(|_| Error::Timeout)?
            .map_err(with_path)?;
        Ok(Self::from_stream(stream))
    }

    /// Wraps an already connected stream (useful for tests and socket activation).
    pub fn from_stream(stream: UnixStream) -> Client {
        let (rd, wr) = stream.into_split();
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                out: Some(tx),
                pending: HashMap::new(),
                monitors: HashMap::new(),
            }),
            next_id: AtomicU64::new(1),
        });
        let reader = tokio::spawn(read_loop(rd, shared.clone()));
        let writer = tokio::spawn(write_loop(wr, rx, shared.clone()));
        Client {
            inner: Arc::new(Inner {
                shared,
                tasks: [reader.abort_handle(), writer.abort_handle()],
            }),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The same connection with a different per-call timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Client {
        self.timeout = timeout;
        self
    }

    /// The per-call timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// True once the connection is gone; every further call fails with [`Error::Closed`].
    pub fn is_closed(&self) -> bool {
        self.inner.shared.is_closed()
    }

    /// Sends any JSON-RPC request and returns its `result` member. The building block of
    /// the typed calls; a non-null `error` member becomes [`Error::Rpc`].
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, Error> {
        let shared = &self.inner.shared;
        let (id, rx) = shared.start_call(method, params)?;
        let _guard = PendingGuard { shared, id };
        match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => Err(Error::Closed),
            Err(_) => Err(Error::Timeout),
        }
    }

    /// §4.1.1: the databases the server serves (ovsdb-server adds `_Server`).
    pub async fn list_dbs(&self) -> Result<Vec<String>, Error> {
        let v = self.call("list_dbs", json!([])).await?;
        v.as_array()
            .and_then(|a| a.iter().map(|s| s.as_str().map(str::to_owned)).collect())
            .ok_or_else(|| {
                Error::Protocol(format!("list_dbs result is not an array of strings: {v}"))
            })
    }

    /// §4.1.2.
    pub async fn get_schema(&self, db: &str) -> Result<Schema, Error> {
        Schema::from_json(&self.call("get_schema", json!([db])).await?)
    }

    /// §4.1.3: runs `ops` atomically. A failing operation (or commit) becomes
    /// [`Error::Transaction`] with its index, so callers never inspect raw error objects.
    pub async fn transact(&self, db: &str, ops: &[Operation]) -> Result<Vec<OpResult>, Error> {
        let mut params = Vec::with_capacity(ops.len() + 1);
        params.push(Value::from(db));
        params.extend(ops.iter().map(Operation::to_json));
        let result = self.call("transact", Value::Array(params)).await?;
        parse_transact_result(ops.len(), &result)
    }

    /// §4.1.11: a round trip proving the server (and this connection) is alive.
    pub async fn echo(&self) -> Result<(), Error> {
        let params = json!(["l2sm-ovsdb"]);
        let v = self.call("echo", params.clone()).await?;
        if v == params {
            Ok(())
        } else {
            Err(Error::Protocol(format!(
                "echo returned {v}, expected {params}"
            )))
        }
    }

    /// §4.1.5: starts monitor `monitor_id` with `requests` (`{table: <monitor-request>}`).
    /// Returns the initial `<table-updates>` and a stream of later ones (the `update`
    /// notifications for this id). The stream ends when the connection closes.
    ///
    /// The subscription is registered before the request goes out because ovsdb-server
    /// can send an `update` before the reply to the `transact` that caused it.
    pub async fn monitor(
        &self,
        db: &str,
        monitor_id: Value,
        requests: Value,
    ) -> Result<(Value, mpsc::UnboundedReceiver<Value>), Error> {
        let key = monitor_id.to_string();
        let (tx, rx) = mpsc::unbounded_channel();
        {
            let mut st = self.inner.shared.lock();
            if st.monitors.get(&key).is_some_and(|t| !t.is_closed()) {
                return Err(Error::Protocol(format!(
                    "monitor id {key} is already in use"
                )));
            }
            st.monitors.insert(key.clone(), tx);
        }
        match self
            .call("monitor", json!([db, monitor_id, requests]))
            .await
        {
            Ok(initial) => Ok((initial, rx)),
            Err(e) => {
                self.inner.shared.lock().monitors.remove(&key);
                Err(e)
            }
        }
    }

    /// §4.1.7: stops a monitor; its update stream ends.
    pub async fn monitor_cancel(&self, monitor_id: Value) -> Result<(), Error> {
        let key = monitor_id.to_string();
        let res = self.call("monitor_cancel", json!([monitor_id])).await;
        self.inner.shared.lock().monitors.remove(&key);
        res.map(drop)
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("closed", &self.is_closed())
            .field("timeout", &self.timeout)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    //! Behaviour that a real ovsdb-server cannot be made to show on demand, checked
    //! against a scripted peer on a socketpair.
    use super::*;
    use tokio::io::AsyncReadExt;

    async fn read_values(peer: &mut UnixStream, framer: &mut Framer, want: usize) -> Vec<Value> {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while got.len() < want {
            let n = peer.read(&mut buf).await.expect("peer read");
            assert!(n > 0, "client closed the socket");
            got.extend(framer.push(&buf[..n]).expect("client sent valid JSON"));
        }
        got
    }

    #[tokio::test]
    async fn answers_server_echo_and_routes_replies() {
        let (ours, mut peer) = UnixStream::pair().expect("socketpair");
        let client = Client::from_stream(ours);
        let mut framer = Framer::new();

        // An echo request split across writes, glued to a notification for nobody.
        peer.write_all(br#"{"id":"echo","method":"#).await.unwrap();
        peer.write_all(
            br#""echo","params":[42,"x"]}{"id":null,"method":"update","params":[1,{}]}"#,
        )
        .await
        .unwrap();
        let reply = read_values(&mut peer, &mut framer, 1).await;
        assert_eq!(
            reply,
            vec![json!({"id": "echo", "result": [42, "x"], "error": null})]
        );

        // A call is answered by id, even when another reply arrives in the same read.
        let call = tokio::spawn({
            let c = client.clone();
            async move { c.list_dbs().await }
        });
        let req = read_values(&mut peer, &mut framer, 1).await;
        assert_eq!(req[0]["method"], "list_dbs");
        let id = req[0]["id"].clone();
        let answer = json!({"id": id, "result": ["Open_vSwitch"], "error": null});
        peer.write_all(format!(r#"{{"id":999,"result":1,"error":null}}{answer}"#).as_bytes())
            .await
            .unwrap();
        assert_eq!(
            call.await.unwrap().unwrap(),
            vec!["Open_vSwitch".to_string()]
        );

        // Unknown requests are refused rather than left unanswered.
        peer.write_all(br#"{"id":7,"method":"lock","params":["x"]}"#)
            .await
            .unwrap();
        let reply = read_values(&mut peer, &mut framer, 1).await;
        assert_eq!(reply[0]["id"], 7);
        assert_eq!(reply[0]["error"], "unknown method");
        assert!(!client.is_closed());
    }

    #[tokio::test]
    async fn rpc_error_member_is_reported() {
        let (ours, mut peer) = UnixStream::pair().unwrap();
        let client = Client::from_stream(ours);
        let mut framer = Framer::new();
        let call = tokio::spawn({
            let c = client.clone();
            async move { c.get_schema("Nope").await }
        });
        let req = read_values(&mut peer, &mut framer, 1).await;
        assert_eq!(req[0]["params"], json!(["Nope"]));
        let answer = json!({"id": req[0]["id"], "result": null, "error": "unknown database"});
        peer.write_all(answer.to_string().as_bytes()).await.unwrap();
        match call.await.unwrap() {
            Err(Error::Rpc { error }) => assert_eq!(error, "unknown database"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn silent_server_times_out() {
        let (ours, _peer) = UnixStream::pair().unwrap();
        let client = Client::from_stream(ours).with_timeout(Duration::from_millis(100));
        let t0 = std::time::Instant::now();
        assert!(matches!(client.echo().await, Err(Error::Timeout)));
        assert!(t0.elapsed() < Duration::from_secs(2));
        assert!(client.inner.shared.lock().pending.is_empty());
        assert!(!client.is_closed());
    }

    #[tokio::test]
    async fn peer_hangup_fails_pending_calls() {
        let (ours, mut peer) = UnixStream::pair().unwrap();
        let client = Client::from_stream(ours);
        let mut framer = Framer::new();
        let call = tokio::spawn({
            let c = client.clone();
            async move { c.echo().await }
        });
        read_values(&mut peer, &mut framer, 1).await;
        let t0 = std::time::Instant::now();
        drop(peer);
        assert!(matches!(call.await.unwrap(), Err(Error::Closed)));
        assert!(t0.elapsed() < Duration::from_secs(2));
        assert!(client.is_closed());
        assert!(matches!(client.list_dbs().await, Err(Error::Closed)));
    }

    #[tokio::test]
    async fn garbage_closes_the_connection() {
        let (ours, mut peer) = UnixStream::pair().unwrap();
        let client = Client::from_stream(ours);
        let call = tokio::spawn({
            let c = client.clone();
            async move { c.echo().await }
        });
        peer.write_all(b"SSH-2.0-OpenSSH\r\n").await.unwrap();
        assert!(matches!(call.await.unwrap(), Err(Error::Closed)));
        assert!(client.is_closed());
    }

    #[tokio::test]
    async fn transaction_error_index() {
        let (ours, mut peer) = UnixStream::pair().unwrap();
        let client = Client::from_stream(ours);
        let mut framer = Framer::new();
        let call = tokio::spawn({
            let c = client.clone();
            async move {
                c.transact(
                    "db",
                    &[Operation::comment("a"), Operation::delete("T", vec![])],
                )
                .await
            }
        });
        let req = read_values(&mut peer, &mut framer, 1).await;
        assert_eq!(
            req[0]["params"],
            json!(["db", {"op": "comment", "comment": "a"},
                   {"op": "delete", "table": "T", "where": []}])
        );
        let answer = json!({"id": req[0]["id"], "error": null,
                            "result": [{}, {"error": "e", "details": "d"}]});
        peer.write_all(answer.to_string().as_bytes()).await.unwrap();
        match call.await.unwrap() {
            Err(Error::Transaction {
                index,
                error,
                details,
            }) => {
                assert_eq!((index, error.as_str(), details.as_str()), (1, "e", "d"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn dropping_last_client_closes_socket() {
        let (ours, mut peer) = UnixStream::pair().unwrap();
        let client = Client::from_stream(ours);
        drop(client);
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(2), peer.read(&mut buf))
            .await
            .expect("socket closed promptly")
            .unwrap();
        assert_eq!(n, 0);
    }
}
