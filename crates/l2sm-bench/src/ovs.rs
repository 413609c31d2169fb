//! Real Open vSwitch for the benchmarks: one private `ovsdb-server` + `ovs-vswitchd`
//! (userspace datapath, dummy network devices: nothing appears on the host) with its files in
//! `/run/l2sm-bench-<pid>-<tag>`, removed with the daemons on drop. `ovs-vsctl` is used for
//! setup only; flows are observed over each bridge's management socket with our own OpenFlow
//! client (aggregate statistics), so observing costs no process per poll.

use anyhow::{anyhow, bail, Context as _};
use l2sm_ofp::{Message, MultipartReplyBody, MultipartRequest, MultipartRequestBody, OfpMessage};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SCHEMA: &str = "/usr/share/openvswitch/vswitch.ovsschema";

/// A private Open vSwitch.
#[derive(Debug)]
pub struct Ovs {
    /// Run directory (database, sockets, logs, pid files).
    pub dir: PathBuf,
    pids: Vec<i32>,
}

fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {:?}", cmd.get_program()))?;
    if !out.status.success() {
        bail!(
            "{:?} failed: {}",
            cmd.get_program(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn read_pid(path: &Path) -> anyhow::Result<i32> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(pid) = std::fs::read_to_string(path)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            return Ok(pid);
        }
        if Instant::now() > deadline {
            bail!("no pid file {}", path.display());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl Ovs {
    /// Starts the daemons. Needs root and Open vSwitch installed: fails loudly otherwise.
    pub fn start(tag: &str) -> anyhow::Result<Ovs> {
        for tool in [
            "ovsdb-server",
            "ovs-vswitchd",
            "ovsdb-tool",
            "ovs-vsctl",
            "ovs-ofctl",
        ] {
            if run(Command::new(tool).arg("--version")).is_err() {
                bail!("{tool} is not installed (apt-get install openvswitch-switch)");
            }
        }
        let dir = PathBuf::from(format!("/run/l2sm-bench-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let mut ovs = Ovs {
            dir: dir.clone(),
            pids: Vec::new(),
        };
        let f = |name: &str| dir.join(name).display().to_string();
        run(Command::new("ovsdb-tool")
            .arg("create")
            .arg(f("conf.db"))
            .arg(SCHEMA))?;
        let daemon = |program: &str| {
            let mut c = Command::new(program);
            c.env("OVS_RUNDIR", &dir)
                .env("OVS_DBDIR", &dir)
                .env("OVS_LOGDIR", &dir)
                .arg(format!("--pidfile={}", f(&format!("{program}.pid"))))
                .arg(format!("--unixctl={}", f(&format!("{program}.ctl"))))
                .arg(format!("--log-file={}", f(&format!("{program}.log"))))
                .args(["--detach", "--no-chdir"]);
            c
        };
        run(daemon("ovsdb-server")
            .arg(f("conf.db"))
            .arg(format!("--remote=punix:{}", f("db.sock"))))?;
        ovs.pids.push(read_pid(&dir.join("ovsdb-server.pid"))?);
        ovs.vsctl(&["--no-wait", "init"])?;
        run(daemon("ovs-vswitchd")
            .arg(format!("unix:{}", f("db.sock")))
            .args(["--enable-dummy=override", "--disable-system"]))?;
        ovs.pids.push(read_pid(&dir.join("ovs-vswitchd.pid"))?);
        Ok(ovs)
    }

    /// `ovs-vsctl` against this instance (setup only).
    pub fn vsctl<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> anyhow::Result<String> {
        run(Command::new("ovs-vsctl")
            .arg(format!("--db=unix:{}", self.dir.join("db.sock").display()))
            .arg("--timeout=30")
            .args(args))
    }

    /// `ovs-ofctl -O OpenFlow13` against this instance.
    pub fn ofctl<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> anyhow::Result<String> {
        run(Command::new("ovs-ofctl")
            .env("OVS_RUNDIR", &self.dir)
            .args(["-O", "OpenFlow13"])
            .args(args))
    }

    /// Process id of ovs-vswitchd.
    pub fn vswitchd_pid(&self) -> u32 {
        self.pids.get(1).copied().unwrap_or(0) as u32
    }

    /// Management socket of a bridge.
    pub fn mgmt(&self, bridge: &str) -> PathBuf {
        self.dir.join(format!("{bridge}.mgmt"))
    }
}

impl Drop for Ovs {
    fn drop(&mut self) {
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;
        for &pid in self.pids.iter().rev() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && kill(Pid::from_raw(pid), None).is_ok() {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// An OpenFlow 1.3 observer on a bridge's management socket.
pub struct Observer {
    stream: tokio::net::UnixStream,
    buf: Vec<u8>,
    xid: u32,
}

impl Observer {
    /// Connects and exchanges HELLOs.
    pub async fn connect(path: &Path) -> anyhow::Result<Observer> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let stream = loop {
            match tokio::net::UnixStream::connect(path).await {
                Ok(s) => break s,
                Err(e) if Instant::now() > deadline => {
                    return Err(e).with_context(|| format!("cannot connect to {}", path.display()))
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        };
        let mut o = Observer {
            stream,
            buf: Vec::new(),
            xid: 1,
        };
        o.send(Message::Hello {
            version_bitmap: Some(vec![1 << l2sm_ofp::OFP_VERSION]),
        })
        .await?;
        Ok(o)
    }

    async fn send(&mut self, body: Message) -> anyhow::Result<u32> {
        self.xid += 1;
        let bytes = l2sm_ofp::encode(&OfpMessage {
            xid: self.xid,
            body,
        })
        .map_err(|e| anyhow!("encode: {e}"))?;
        self.stream.write_all(&bytes).await?;
        Ok(self.xid)
    }

    async fn recv(&mut self) -> anyhow::Result<OfpMessage> {
        loop {
            if let Some(len) =
                l2sm_ofp::message_len(&self.buf).map_err(|e| anyhow!("bad framing: {e}"))?
            {
                if self.buf.len() >= len {
                    let frame: Vec<u8> = self.buf.drain(..len).collect();
                    return l2sm_ofp::decode(&frame).map_err(|e| anyhow!("undecodable: {e}"));
                }
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                bail!("management connection closed");
            }
        }
    }

    /// Flows and groups the bridge holds.
    pub async fn counts(&mut self) -> anyhow::Result<(usize, usize)> {
        let flows = self
            .multipart(MultipartRequestBody::Aggregate(
                l2sm_ofp::FlowStatsRequest {
                    table_id: l2sm_ofp::TABLE_ALL,
                    out_port: l2sm_ofp::port::ANY,
                    out_group: l2sm_ofp::group::ANY,
                    cookie: 0,
                    cookie_mask: 0,
                    r#match: l2sm_ofp::Match::any(),
                },
            ))
            .await?
            .into_iter()
            .map(|p| match p {
                MultipartReplyBody::Aggregate(a) => a.flow_count as usize,
                _ => 0,
            })
            .sum();
        let groups = self
            .multipart(MultipartRequestBody::GroupDesc)
            .await?
            .into_iter()
            .map(|p| match p {
                MultipartReplyBody::GroupDesc(g) => g.len(),
                _ => 0,
            })
            .sum();
        Ok((flows, groups))
    }

    async fn multipart(
        &mut self,
        body: MultipartRequestBody,
    ) -> anyhow::Result<Vec<MultipartReplyBody>> {
        let xid = self
            .send(Message::MultipartRequest(MultipartRequest {
                flags: 0,
                body,
            }))
            .await?;
        let mut parts = Vec::new();
        loop {
            let msg = self.recv().await?;
            match msg.body {
                Message::MultipartReply(r) if msg.xid == xid => {
                    let more = r.flags & l2sm_ofp::MULTIPART_REPLY_MORE != 0;
                    parts.push(r.body);
                    if !more {
                        return Ok(parts);
                    }
                }
                Message::Error(e) if msg.xid == xid => bail!("bridge refused: {}", e.describe()),
                Message::EchoRequest(d) => {
                    let bytes = l2sm_ofp::encode(&OfpMessage {
                        xid: msg.xid,
                        body: Message::EchoReply(d),
                    })
                    .map_err(|e| anyhow!("encode: {e}"))?;
                    self.stream.write_all(&bytes).await?;
                }
                _ => {}
            }
        }
    }
}
