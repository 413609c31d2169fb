//! The session layer against a real Open vSwitch: a private `ovsdb-server` +
//! `ovs-vswitchd` per test (userspace `netdev` datapath, no kernel module), a bridge whose
//! controller is a `TcpListener` in this test, and the pure [`Session`] driven over the
//! accepted socket.
//!
//! Every modify message is checked by what OVS then reports through `ovs-ofctl`
//! (`dump-flows`, `dump-groups`, `dump-meters`), and every message OVS sends us must
//! decode and re-encode to the very same bytes.
//!
//! Needs root (the netdev datapath creates a tap device per bridge) and the OVS daemons
//! and tools on PATH; without them the tests fail, they never skip. Each test has its own
//! directory and bridge name, so they run in parallel, and a drop guard removes the
//! bridge and kills both daemons by pid even when the test fails.

use l2sm_ofp::session::{ErrorOrigin, Session, SessionConfig, SessionEvent};
use l2sm_ofp::*;
use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const SCHEMA: &str = "/usr/share/openvswitch/vswitch.ovsschema";
const WAIT: Duration = Duration::from_secs(15);

// ---- OVS daemons ---------------------------------------------------------------------

/// A private OVS instance with one bridge; dropping it deletes the bridge (which removes
/// its tap device) and kills both daemons by pid.
struct Ovs {
    dir: PathBuf,
    bridge: String,
    pids: Vec<u32>,
}

fn require_root_and_ovs() {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .expect("Uid line");
    assert_eq!(
        euid, "0",
        "the live OVS tests must run as root (ovs-vswitchd creates a tap device for the \
         netdev bridge); they do not skip"
    );
    for tool in [
        "ovsdb-tool",
        "ovsdb-server",
        "ovs-vswitchd",
        "ovs-vsctl",
        "ovs-ofctl",
    ] {
        let ok = Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            ok,
            "`{tool}` is missing: the live tests need Open vSwitch (Debian packages \
             openvswitch-switch and openvswitch-common)"
        );
    }
    assert!(
        Path::new(SCHEMA).exists(),
        "{SCHEMA} is missing (Debian package openvswitch-common)"
    );
}

/// Runs `cmd`, panicking with its stderr unless it succeeds; returns stdout.
fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

impl Ovs {
    /// Starts the daemons and a bridge whose only controller is `tcp:127.0.0.1:port`.
    fn start(controller_port: u16, protocols: &str) -> Ovs {
        require_root_and_ovs();
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let dir = std::env::temp_dir().join(format!("l2sm-ofp-live-{pid}-{n}"));
        let _stale = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the test directory");
        let mut ovs = Ovs {
            bridge: format!("ofp{:x}x{n}", pid & 0xf_ffff),
            dir,
            pids: Vec::new(),
        };
        let db = ovs.path("conf.db");
        run(Command::new("ovsdb-tool")
            .arg("create")
            .arg(&db)
            .arg(SCHEMA));
        let sock = format!("punix:{}", ovs.path("db.sock").display());
        run(ovs
            .daemon("ovsdb-server")
            .arg(&db)
            .arg(format!("--remote={sock}")));
        ovs.pids.push(ovs.pid_of("ovsdb-server"));
        run(ovs.vsctl().args(["--no-wait", "init"]));
        run(ovs
            .daemon("ovs-vswitchd")
            .arg(format!("unix:{}", ovs.path("db.sock").display())));
        ovs.pids.push(ovs.pid_of("ovs-vswitchd"));
        let br = ovs.bridge.clone();
        run(ovs.vsctl().args([
            "add-br",
            &br,
            "--",
            "set",
            "bridge",
            &br,
            "datapath_type=netdev",
            &format!("protocols={protocols}"),
            "fail_mode=secure",
            "other-config:disable-in-band=true",
            "other-config:datapath-id=00000000000000a1",
            "--",
            "set-controller",
            &br,
            &format!("tcp:127.0.0.1:{controller_port}"),
        ]));
        ovs
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn env(&self, cmd: &mut Command) {
        cmd.env("OVS_RUNDIR", &self.dir)
            .env("OVS_DBDIR", &self.dir)
            .env("OVS_LOGDIR", &self.dir);
    }

    fn daemon(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        self.env(&mut cmd);
        let file = |ext: &str| self.path(&format!("{program}.{ext}")).display().to_string();
        cmd.arg(format!("--pidfile={}", file("pid")))
            .arg(format!("--unixctl={}", file("ctl")))
            .arg(format!("--log-file={}", file("log")))
            .args(["--detach", "--no-chdir"]);
        cmd
    }

    fn pid_of(&self, program: &str) -> u32 {
        let file = self.path(&format!("{program}.pid"));
        std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("{} missing: {e}", file.display()))
            .trim()
            .parse()
            .expect("pid file holds a number")
    }

    fn vsctl(&self) -> Command {
        let mut cmd = Command::new("ovs-vsctl");
        self.env(&mut cmd);
        cmd.arg(format!("--db=unix:{}", self.path("db.sock").display()))
            .arg("--timeout=10");
        cmd
    }

    /// `ovs-ofctl -O OpenFlow13 <what> <bridge> [args]` over the bridge's own management
    /// socket (a separate connection, used only to observe).
    fn ofctl(&self, what: &str, args: &[&str]) -> String {
        let mut cmd = Command::new("ovs-ofctl");
        self.env(&mut cmd);
        cmd.args(["-O", "OpenFlow13", what, &self.bridge])
            .args(args);
        run(&mut cmd)
    }

    /// `dump-flows --no-stats`, one flow per line, sorted.
    fn flows(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .ofctl("dump-flows", &["--no-stats"])
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect();
        lines.sort();
        lines
    }

    /// The body lines of `dump-groups` / `dump-meters` (the reply header and blank
    /// lines dropped).
    fn dump(&self, what: &str) -> Vec<String> {
        self.ofctl(what, &[])
            .lines()
            .skip(1)
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect()
    }

    fn log(&self, program: &str) -> String {
        std::fs::read_to_string(self.path(&format!("{program}.log"))).unwrap_or_default()
    }
}

impl Drop for Ovs {
    fn drop(&mut self) {
        // Deleting the bridge removes its (persistent) tap device; killing alone would not.
        let _ = self
            .vsctl()
            .args(["--if-exists", "del-br", &self.bridge])
            .output();
        for pid in self.pids.iter().rev() {
            let _ = Command::new("kill").arg(pid.to_string()).output();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for &pid in &self.pids {
            while running(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if running(pid) {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .output();
            }
        }
        let _ = Command::new("ip")
            .args(["link", "delete", &self.bridge])
            .output();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("OVS files kept for inspection in {}", self.dir.display());
        }
    }
}

/// Whether `pid` still runs: a zombie has exited already, whenever PID 1 gets to reap it.
fn running(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // `pid (comm) state ...`; comm may contain anything, so split after the last ')'.
    let state = stat
        .rsplit(')')
        .next()
        .and_then(|s| s.trim_start().chars().next());
    !matches!(state, Some('Z' | 'X') | None)
}

// ---- the controller side -------------------------------------------------------------

/// A [`Session`] over the TCP connection OVS opened to us, plus a copy of every frame OVS
/// sent, to check byte-for-byte round trips.
struct Link {
    sock: TcpStream,
    session: Session,
    /// Received bytes not yet split into frames (the raw copy).
    raw: Vec<u8>,
    /// Every complete frame OVS sent, by xid.
    frames: HashMap<u32, Vec<Vec<u8>>>,
    frames_checked: usize,
    /// Events nobody asked for yet (PORT_STATUS, FLOW_REMOVED...).
    backlog: Vec<SessionEvent>,
    /// Everything written to OVS.
    written: Vec<u8>,
}

fn accept(listener: &TcpListener) -> TcpStream {
    listener
        .set_nonblocking(true)
        .expect("nonblocking listener");
    let deadline = Instant::now() + WAIT;
    loop {
        match listener.accept() {
            Ok((sock, _)) => {
                sock.set_nonblocking(false).expect("blocking socket");
                sock.set_read_timeout(Some(Duration::from_millis(20)))
                    .expect("read timeout");
                sock.set_nodelay(true).expect("nodelay");
                return sock;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("ovs-vswitchd did not connect to the controller: {e}"),
        }
    }
}

impl Link {
    fn new(sock: TcpStream) -> Link {
        Link {
            sock,
            session: Session::new(SessionConfig::default(), Instant::now()),
            raw: Vec::new(),
            frames: HashMap::new(),
            frames_checked: 0,
            backlog: Vec::new(),
            written: Vec::new(),
        }
    }

    /// Keeps the raw copy of the stream and checks each complete frame's round trip.
    fn record(&mut self, bytes: &[u8]) {
        self.raw.extend_from_slice(bytes);
        while let Some(len) = message_len(&self.raw).expect("OVS framing") {
            if self.raw.len() < len {
                break;
            }
            let frame: Vec<u8> = self.raw.drain(..len).collect();
            let msg = decode(&frame)
                .unwrap_or_else(|e| panic!("OVS sent an undecodable message ({e}): {frame:02x?}"));
            let mut again = encode(&msg).expect("a decoded message re-encodes");
            if frame[0] != OFP_VERSION {
                // Only a HELLO decodes in another version; we always write 0x04.
                assert!(matches!(msg.body, Message::Hello { .. }), "{msg:?}");
                again[0] = frame[0];
            }
            assert_eq!(again, frame, "lossy round trip of {msg:?}");
            self.frames_checked += 1;
            self.frames.entry(msg.xid).or_default().push(frame);
        }
    }

    /// Writes pending output, reads what arrives and ticks, until `pick` accepts an event.
    fn pump<T>(&mut self, what: &str, mut pick: impl FnMut(&SessionEvent) -> Option<T>) -> T {
        let deadline = Instant::now() + WAIT;
        let mut buf = vec![0u8; 65536];
        loop {
            let out = self.session.take_output();
            if !out.is_empty() {
                self.written.extend_from_slice(&out);
                // OVS may hang up first when it closes the session itself.
                if let Err(e) = self.sock.write_all(&out) {
                    assert!(self.session.is_closed(), "write to ovs-vswitchd: {e}");
                }
            }
            while let Some(ev) = self.session.poll_event() {
                if let Some(v) = pick(&ev) {
                    return v;
                }
                if let SessionEvent::Closed { reason } = &ev {
                    panic!("session closed while waiting for {what}: {reason}");
                }
                self.backlog.push(ev);
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            match self.sock.read(&mut buf) {
                Ok(0) => self.session.peer_closed(),
                Ok(n) => {
                    let bytes = &buf[..n];
                    self.record(bytes);
                    self.session.feed(bytes);
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => panic!("read from ovs-vswitchd: {e}"),
            }
            self.session.tick(Instant::now());
        }
    }

    fn handshake(&mut self) -> FeaturesReply {
        self.pump("FEATURES_REPLY", |ev| match ev {
            SessionEvent::Connected { features } => Some(features.clone()),
            _ => None,
        })
    }

    /// Sends a batch and waits for its barrier; returns the errors OVS reported for it.
    fn batch(&mut self, msgs: Vec<Message>) -> Vec<(usize, ErrorMsg)> {
        let barrier = self.session.send_batch(msgs).expect("batch encodes");
        let mut errors = Vec::new();
        self.pump("BARRIER_REPLY", |ev| match ev {
            SessionEvent::BarrierDone(x) if *x == barrier => Some(()),
            SessionEvent::Error {
                error,
                origin: ErrorOrigin::Batch { barrier_xid, index },
                ..
            } if *barrier_xid == barrier => {
                errors.push((*index, error.clone()));
                None
            }
            _ => None,
        });
        errors
    }

    /// A batch OVS must accept entirely.
    #[track_caller]
    fn apply(&mut self, msgs: Vec<Message>) {
        let errors = self.batch(msgs);
        let described: Vec<String> = errors
            .iter()
            .map(|(i, e)| format!("#{i}: {}", e.describe()))
            .collect();
        assert!(errors.is_empty(), "OVS rejected: {described:?}");
    }

    /// Sends a request and returns its complete reply (all multipart parts).
    fn request(&mut self, body: Message) -> Vec<OfpMessage> {
        let xid = self.session.request(body.clone()).expect("request encodes");
        self.pump(&format!("the reply to {body:?}"), |ev| match ev {
            SessionEvent::Reply {
                request_xid,
                messages,
            } if *request_xid == xid => Some(messages.clone()),
            SessionEvent::Error { xid: x, error, .. } if *x == xid => {
                panic!("OVS refused {body:?}: {}", error.describe())
            }
            _ => None,
        })
    }

    /// The first asynchronous message `pick` accepts, already received or still to come.
    fn message<T>(&mut self, what: &str, mut pick: impl FnMut(&OfpMessage) -> Option<T>) -> T {
        let mut found = None;
        self.backlog.retain(|ev| match (ev, found.is_none()) {
            (SessionEvent::Message(m), true) => match pick(m) {
                Some(v) => {
                    found = Some(v);
                    false
                }
                None => true,
            },
            _ => true,
        });
        match found {
            Some(v) => v,
            None => self.pump(what, |ev| match ev {
                SessionEvent::Message(m) => pick(m),
                _ => None,
            }),
        }
    }

    fn multipart(&mut self, body: MultipartRequestBody) -> Vec<MultipartReplyBody> {
        self.request(Message::MultipartRequest(MultipartRequest::new(body)))
            .into_iter()
            .map(|m| match m.body {
                Message::MultipartReply(r) => r.body,
                other => panic!("expected a multipart reply, got {other:?}"),
            })
            .collect()
    }
}

/// OVS plus the connected session.
fn setup() -> (Ovs, Link) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a controller port");
    let port = listener.local_addr().expect("local addr").port();
    let ovs = Ovs::start(port, "OpenFlow13");
    let mut link = Link::new(accept(&listener));
    let features = link.handshake();
    assert_eq!(features.datapath_id, 0xa1);
    // A clean slate: OVS keeps nothing, but say so explicitly as a controller would.
    link.apply(vec![
        Message::FlowMod(FlowMod::delete(TABLE_ALL, Match::any())),
        Message::GroupMod(GroupMod::delete(group::ALL)),
        Message::MeterMod(MeterMod::delete(meter::ALL)),
    ]);
    (ovs, link)
}

fn ipv4_dst(prefix: [u8; 4], len: u8) -> Match {
    Match::any()
        .with(OxmField::eth_type(0x0800))
        .with(OxmField::ipv4_dst_prefix(Ipv4Addr::from(prefix), len))
}

fn flow(table: u8, priority: u16, cookie: u64, m: Match, actions: Vec<Action>) -> Message {
    Message::FlowMod(FlowMod {
        cookie,
        ..FlowMod::add(
            table,
            priority,
            m,
            vec![Instruction::apply_actions(actions)],
        )
    })
}

fn with_command(msg: Message, command: FlowModCommand) -> Message {
    match msg {
        Message::FlowMod(f) => Message::FlowMod(FlowMod { command, ..f }),
        other => other,
    }
}

// ---- the tests -----------------------------------------------------------------------

#[test]
fn flow_add_modify_and_delete_strict_and_not() {
    let (ovs, mut link) = setup();
    let a = flow(
        0,
        100,
        1,
        Match::any().with(OxmField::in_port(1)),
        vec![Action::output(2)],
    );
    let b = flow(
        0,
        200,
        2,
        Match::any().with(OxmField::in_port(1)),
        vec![Action::output(3)],
    );
    let c = flow(
        1,
        10,
        3,
        ipv4_dst([10, 0, 0, 0], 8),
        vec![Action::output(4)],
    );
    let learn = Message::FlowMod(FlowMod {
        cookie: 4,
        ..common_learn_flow()
    });
    link.apply(vec![a.clone(), b.clone(), c.clone(), learn]);
    let learn_line = "cookie=0x4, table=1, priority=10 actions=learn(table=2,idle_timeout=300,\
                      priority=100,NXM_NX_TUN_ID[],NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],\
                      NXM_NX_REG0[0]=0x1,output:NXM_OF_IN_PORT[]),set_field:0x5->tun_id,\
                      set_field:0x7->reg0,goto_table:2";
    assert_eq!(
        ovs.flows(),
        [
            "cookie=0x1, priority=100,in_port=1 actions=output:2",
            "cookie=0x2, priority=200,in_port=1 actions=output:3",
            "cookie=0x3, table=1, priority=10,ip,nw_dst=10.0.0.0/8 actions=output:4",
            learn_line,
        ]
    );

    // MODIFY (not strict) rewrites every flow the match covers, whatever its priority.
    let modify = flow(
        0,
        0,
        0,
        Match::any().with(OxmField::in_port(1)),
        vec![Action::output(5)],
    );
    link.apply(vec![with_command(modify, FlowModCommand::Modify)]);
    // MODIFY_STRICT needs match and priority to be identical.
    let strict = flow(
        0,
        200,
        0,
        Match::any().with(OxmField::in_port(1)),
        vec![Action::output(6)],
    );
    link.apply(vec![with_command(strict, FlowModCommand::ModifyStrict)]);
    assert_eq!(
        ovs.flows()[..2],
        [
            "cookie=0x1, priority=100,in_port=1 actions=output:5",
            "cookie=0x2, priority=200,in_port=1 actions=output:6",
        ]
    );

    // DELETE_STRICT removes exactly one; DELETE everything a match covers, in all tables.
    let del = flow(0, 100, 0, Match::any().with(OxmField::in_port(1)), vec![]);
    link.apply(vec![with_command(del, FlowModCommand::DeleteStrict)]);
    assert_eq!(ovs.flows().len(), 3);
    assert_eq!(
        ovs.flows()[0],
        "cookie=0x2, priority=200,in_port=1 actions=output:6"
    );
    link.apply(vec![Message::FlowMod(FlowMod::delete(
        TABLE_ALL,
        ipv4_dst([10, 0, 0, 0], 8),
    ))]);
    assert_eq!(
        ovs.flows(),
        [
            "cookie=0x2, priority=200,in_port=1 actions=output:6",
            learn_line
        ]
    );
    // A cookie-filtered delete.
    link.apply(vec![Message::FlowMod(FlowMod {
        cookie: 4,
        cookie_mask: u64::MAX,
        ..FlowMod::delete(TABLE_ALL, Match::any())
    })]);
    assert_eq!(
        ovs.flows(),
        ["cookie=0x2, priority=200,in_port=1 actions=output:6"]
    );
    assert!(link.frames_checked >= 7, "every OVS message was checked");
}

/// The pipeline's learn flow (table 1): learn into table 2, tag, continue.
fn common_learn_flow() -> FlowMod {
    let learn = Action::learn(NxLearn {
        idle_timeout: 300,
        priority: 100,
        ..NxLearn::new(
            2,
            vec![
                LearnSpec::match_same(nxm::TUN_ID),
                LearnSpec::match_fields(nxm::ETH_SRC, nxm::ETH_DST),
                LearnSpec::match_value(1, NxmFieldRef::whole(nxm::reg(0)), 1),
                LearnSpec::output_field(nxm::IN_PORT),
            ],
        )
    });
    FlowMod::add(
        1,
        10,
        Match::any(),
        vec![
            Instruction::apply_actions(vec![
                learn,
                Action::set_field(OxmField::tunnel_id(5)),
                Action::set_field(OxmField::reg(0, 7)),
            ]),
            Instruction::goto_table(2),
        ],
    )
}

/// A capped learn (NXAST_LEARN2) goes in as sent and comes back in flow stats as the very
/// same action: the controller compares what it reads with what it compiled.
#[test]
fn learn2_is_installed_and_read_back_unchanged() {
    let (ovs, mut link) = setup();
    let learn = NxLearn2::new(
        NxLearn {
            idle_timeout: 300,
            priority: 110,
            cookie: 0x4c32_0002_0000_0001,
            ..NxLearn::new(
                2,
                vec![
                    LearnSpec::match_same(nxm::TUN_ID),
                    LearnSpec::match_fields(nxm::ETH_SRC, nxm::ETH_DST),
                    LearnSpec::LoadField {
                        src: NxmFieldRef::whole(nxm::IN_PORT),
                        dst: NxmFieldRef::whole(nxm::reg(1)),
                        n_bits: 16,
                    },
                ],
            )
        },
        256,
        Some(NxmFieldRef::new(nxm::reg(2), 0)),
    );
    let instructions = vec![
        Instruction::apply_actions(vec![Action::learn2(learn), Action::resubmit(2)]),
        Instruction::goto_table(3),
    ];
    link.apply(vec![Message::FlowMod(FlowMod::add(
        1,
        10,
        Match::any().with(OxmField::in_port(1)),
        instructions.clone(),
    ))]);
    assert_eq!(
        ovs.flows(),
        [
            "table=1, priority=10,in_port=1 actions=learn(table=2,idle_timeout=300,priority=110,\
          cookie=0x4c32000200000001,limit=256,result_dst=NXM_NX_REG2[0],NXM_NX_TUN_ID[],\
          NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],load:NXM_OF_IN_PORT[]->NXM_NX_REG1[0..15]),\
          resubmit(,2),goto_table:3"
        ]
    );
    let parts = link.multipart(MultipartRequestBody::Flow(FlowStatsRequest::all()));
    let [MultipartReplyBody::Flow(flows)] = &parts[..] else {
        panic!("one FLOW part expected: {parts:?}")
    };
    assert_eq!(flows.len(), 1);
    assert_eq!(flows[0].instructions, instructions);
}

#[test]
fn flow_removed_is_reported_on_delete() {
    let (_ovs, mut link) = setup();
    let m = Match::any()
        .with(OxmField::eth_type(0x0806))
        .with(OxmField::ArpOp(1));
    link.apply(vec![Message::FlowMod(FlowMod {
        flags: 1, // OFPFF_SEND_FLOW_REM
        idle_timeout: 100,
        cookie: 0x77,
        ..FlowMod::add(3, 5, m.clone(), vec![])
    })]);
    link.apply(vec![Message::FlowMod(FlowMod::delete(3, Match::any()))]);
    let removed = link.message("FLOW_REMOVED", |m| match &m.body {
        Message::FlowRemoved(f) => Some(f.clone()),
        _ => None,
    });
    assert_eq!(
        (
            removed.cookie,
            removed.priority,
            removed.table_id,
            removed.reason
        ),
        (0x77, 5, 3, 2), // OFPRR_DELETE
    );
    assert_eq!(removed.idle_timeout, 100);
    assert_eq!(removed.r#match, m);
}

#[test]
fn group_add_modify_and_delete() {
    let (ovs, mut link) = setup();
    link.apply(vec![
        Message::GroupMod(GroupMod::add_all(
            1,
            vec![
                Bucket::all(vec![Action::output(1)]),
                Bucket::all(vec![Action::output(2)]),
            ],
        )),
        Message::GroupMod(GroupMod {
            group_type: GroupType::Select,
            buckets: vec![
                Bucket {
                    weight: 10,
                    ..Bucket::all(vec![Action::output(3)])
                },
                Bucket {
                    weight: 20,
                    ..Bucket::all(vec![Action::output(4)])
                },
            ],
            ..GroupMod::add_all(2, vec![])
        }),
        Message::GroupMod(GroupMod {
            group_type: GroupType::FastFailover,
            buckets: vec![Bucket {
                watch_port: 1,
                ..Bucket::all(vec![Action::output(1)])
            }],
            ..GroupMod::add_all(3, vec![])
        }),
    ]);
    let mut groups = ovs.dump("dump-groups");
    groups.sort();
    assert_eq!(
        groups,
        [
            "group_id=1,type=all,bucket=actions=output:1,bucket=actions=output:2",
            "group_id=2,type=select,bucket=weight:10,actions=output:3,bucket=weight:20,actions=output:4",
            "group_id=3,type=ff,bucket=watch_port:1,actions=output:1",
        ]
    );
    // Adding an existing group fails with GROUP_EXISTS, for exactly that batch message.
    let errors = link.batch(vec![
        Message::BarrierRequest,
        Message::GroupMod(GroupMod::add_all(1, vec![])),
    ]);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].0, 1);
    assert_eq!(
        errors[0].1.error_code(),
        ErrorCode::GroupModFailed(GroupModFailedCode::GroupExists)
    );
    link.apply(vec![Message::GroupMod(GroupMod::modify_all(
        1,
        vec![Bucket::all(vec![Action::output(7)])],
    ))]);
    link.apply(vec![Message::GroupMod(GroupMod::delete(2))]);
    let mut groups = ovs.dump("dump-groups");
    groups.sort();
    assert_eq!(
        groups,
        [
            "group_id=1,type=all,bucket=actions=output:7",
            "group_id=3,type=ff,bucket=watch_port:1,actions=output:1",
        ]
    );
    link.apply(vec![Message::GroupMod(GroupMod::delete(group::ALL))]);
    assert!(ovs.dump("dump-groups").is_empty());
}

#[test]
fn meter_add_modify_and_delete() {
    let (ovs, mut link) = setup();
    link.apply(vec![
        Message::MeterMod(MeterMod::add_drop(1, 1000)),
        Message::MeterMod(MeterMod {
            command: MeterModCommand::Add,
            flags: OFPMF_PKTPS | OFPMF_BURST | OFPMF_STATS,
            meter_id: 2,
            bands: vec![MeterBand::Drop {
                rate: 100,
                burst_size: 10,
            }],
        }),
        // A flow using meter 1.
        Message::FlowMod(FlowMod::add(
            0,
            1,
            Match::any(),
            vec![
                Instruction::Meter(1),
                Instruction::apply_actions(vec![Action::output(1)]),
            ],
        )),
    ]);
    assert_eq!(
        ovs.dump("dump-meters"),
        [
            "meter=1 kbps stats bands=",
            "type=drop rate=1000",
            "meter=2 pktps burst stats bands=",
            "type=drop rate=100 burst_size=10",
        ]
    );
    assert_eq!(ovs.flows(), ["priority=1 actions=meter:1,output:1"]);
    link.apply(vec![Message::MeterMod(MeterMod {
        command: MeterModCommand::Modify,
        ..MeterMod::add_drop(1, 2000)
    })]);
    link.apply(vec![Message::MeterMod(MeterMod::delete(2))]);
    assert_eq!(
        ovs.dump("dump-meters"),
        ["meter=1 kbps stats bands=", "type=drop rate=2000"]
    );
}

#[test]
fn multipart_replies_decode_without_loss() {
    let (_ovs, mut link) = setup();
    link.apply(vec![
        // The group first: OVS refuses a flow naming a group that does not exist.
        Message::GroupMod(GroupMod::add_all(
            1,
            vec![Bucket::all(vec![Action::output(2)])],
        )),
        Message::MeterMod(MeterMod::add_drop(1, 1000)),
        flow(
            0,
            100,
            1,
            Match::any().with(OxmField::in_port(1)),
            vec![Action::group(1)],
        ),
        flow(
            1,
            10,
            2,
            ipv4_dst([10, 0, 0, 0], 8),
            vec![Action::output(4)],
        ),
    ]);

    let one = |mut parts: Vec<MultipartReplyBody>| {
        assert_eq!(parts.len(), 1, "expected a single-part reply: {parts:?}");
        parts.remove(0)
    };
    let MultipartReplyBody::Desc(desc) = one(link.multipart(MultipartRequestBody::Desc)) else {
        panic!("DESC")
    };
    assert_eq!(desc.hw_desc, "Open vSwitch");

    let MultipartReplyBody::Flow(flows) =
        one(link.multipart(MultipartRequestBody::Flow(FlowStatsRequest::all())))
    else {
        panic!("FLOW")
    };
    assert_eq!(flows.len(), 2);
    assert_eq!(
        flows[0].instructions,
        [Instruction::apply_actions(vec![Action::group(1)])]
    );

    let MultipartReplyBody::Aggregate(agg) =
        one(link.multipart(MultipartRequestBody::Aggregate(FlowStatsRequest::all())))
    else {
        panic!("AGGREGATE")
    };
    assert_eq!(agg.flow_count, 2);

    let MultipartReplyBody::Table(tables) = one(link.multipart(MultipartRequestBody::Table)) else {
        panic!("TABLE")
    };
    assert_eq!(tables.len(), 254);
    assert_eq!((tables[0].active_count, tables[1].active_count), (1, 1));

    let MultipartReplyBody::PortStats(ports) =
        one(link.multipart(MultipartRequestBody::PortStats { port_no: port::ANY }))
    else {
        panic!("PORT_STATS")
    };
    assert!(ports.iter().any(|p| p.port_no == port::LOCAL));

    let MultipartReplyBody::PortDesc(descs) = one(link.multipart(MultipartRequestBody::PortDesc))
    else {
        panic!("PORT_DESC")
    };
    assert!(descs.iter().any(|p| p.port_no == port::LOCAL));

    let MultipartReplyBody::Queue(queues) = one(link.multipart(MultipartRequestBody::Queue {
        port_no: port::ANY,
        queue_id: queue::ALL,
    })) else {
        panic!("QUEUE")
    };
    assert!(queues.is_empty(), "no queues configured: {queues:?}");

    let MultipartReplyBody::Group(groups) = one(link.multipart(MultipartRequestBody::Group {
        group_id: group::ALL,
    })) else {
        panic!("GROUP")
    };
    assert_eq!(groups.len(), 1);
    assert_eq!((groups[0].group_id, groups[0].ref_count), (1, 1));
    assert_eq!(groups[0].bucket_stats.len(), 1);

    let MultipartReplyBody::GroupDesc(descs) = one(link.multipart(MultipartRequestBody::GroupDesc))
    else {
        panic!("GROUP_DESC")
    };
    assert_eq!(descs[0].buckets, [Bucket::all(vec![Action::output(2)])]);

    let MultipartReplyBody::GroupFeatures(gf) =
        one(link.multipart(MultipartRequestBody::GroupFeatures))
    else {
        panic!("GROUP_FEATURES")
    };
    assert_eq!(gf.types & 0xf, 0xf, "OVS supports all four group types");

    let MultipartReplyBody::Meter(meters) = one(link.multipart(MultipartRequestBody::Meter {
        meter_id: meter::ALL,
    })) else {
        panic!("METER")
    };
    assert_eq!(meters.len(), 1);
    assert_eq!(meters[0].band_stats.len(), 1);

    let MultipartReplyBody::MeterConfig(configs) =
        one(link.multipart(MultipartRequestBody::MeterConfig {
            meter_id: meter::ALL,
        }))
    else {
        panic!("METER_CONFIG")
    };
    // Without OFPMF_BURST, OVS reports the burst size as equal to the rate.
    assert_eq!(
        configs[0].bands,
        [MeterBand::Drop {
            rate: 1000,
            burst_size: 1000
        }]
    );

    let MultipartReplyBody::MeterFeatures(mf) =
        one(link.multipart(MultipartRequestBody::MeterFeatures))
    else {
        panic!("METER_FEATURES")
    };
    assert!(mf.max_meter > 0);

    // TABLE_FEATURES is big: OVS splits it into a multipart sequence, which the session
    // assembles; each part stays opaque and byte-identical.
    let parts = link.multipart(MultipartRequestBody::TableFeatures(Vec::new()));
    assert!(
        parts.len() > 1,
        "expected a multi-part reply, got {}",
        parts.len()
    );
    assert!(parts
        .iter()
        .all(|p| matches!(p, MultipartReplyBody::TableFeatures(b) if !b.is_empty())));

    // Every frame OVS sent (replies, FEATURES_REPLY, HELLO...) re-encoded identically.
    assert!(link.frames_checked > 20, "{} frames", link.frames_checked);
    assert!(link.frames.values().flatten().count() == link.frames_checked);
}

#[test]
fn role_async_config_and_port_table_mods() {
    let (ovs, mut link) = setup();
    let reply = link.request(Message::RoleRequest(RoleMsg {
        role: ControllerRole::Master,
        generation_id: 1,
    }));
    assert_eq!(
        reply[0].body,
        Message::RoleReply(RoleMsg {
            role: ControllerRole::Master,
            generation_id: 1
        })
    );
    let wanted = AsyncConfig {
        packet_in_mask: [0b1, 0],
        port_status_mask: [0b111, 0b1],
        flow_removed_mask: [0b1111, 0],
    };
    link.apply(vec![Message::SetAsync(wanted)]);
    let reply = link.request(Message::GetAsyncRequest);
    assert_eq!(reply[0].body, Message::GetAsyncReply(wanted));

    let reply = link.request(Message::GetConfigRequest);
    assert!(matches!(reply[0].body, Message::GetConfigReply(_)));
    let reply = link.request(Message::QueueGetConfigRequest { port: port::ANY });
    assert!(matches!(
        &reply[0].body,
        Message::QueueGetConfigReply(QueueGetConfigReply { port, .. }) if *port == port::ANY
    ));

    // Take the LOCAL port administratively down, and see OVS report it.
    let parts = link.multipart(MultipartRequestBody::PortDesc);
    let MultipartReplyBody::PortDesc(ports) = &parts[0] else {
        panic!("PORT_DESC")
    };
    let local = ports
        .iter()
        .find(|p| p.port_no == port::LOCAL)
        .expect("LOCAL port")
        .clone();
    link.apply(vec![
        Message::PortMod(PortMod {
            port_no: port::LOCAL,
            hw_addr: local.hw_addr,
            config: OFPPC_PORT_DOWN,
            mask: OFPPC_PORT_DOWN,
            advertise: 0,
        }),
        Message::TableMod(TableMod {
            table_id: TABLE_ALL,
            config: 0,
        }),
    ]);
    let show = ovs.ofctl("show", &[]);
    assert!(
        show.lines()
            .any(|l| l.contains("config:") && l.contains("PORT_DOWN")),
        "{show}"
    );
}

#[test]
fn a_switch_without_openflow_13_gets_hello_failed() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let ovs = Ovs::start(port, "OpenFlow10");
    let mut link = Link::new(accept(&listener));
    let reason = link.pump("the session to close", |ev| match ev {
        SessionEvent::Closed { reason } => Some(reason.clone()),
        _ => None,
    });
    assert!(
        matches!(
            reason,
            l2sm_ofp::session::CloseReason::Incompatible {
                peer_version: 1,
                ..
            }
        ),
        "{reason}"
    );
    // What we answered: our HELLO, then HELLO_FAILED/INCOMPATIBLE in OVS's version (0x01).
    let hello_len = message_len(&link.written)
        .expect("framing")
        .expect("our hello");
    let out = link.written[hello_len..].to_vec();
    assert_eq!(out[..2], [0x01, 1], "an OpenFlow 1.0 OFPT_ERROR");
    let mut as_13 = out.clone();
    as_13[0] = OFP_VERSION;
    let Message::Error(e) = decode(&as_13).expect("our error decodes").body else {
        panic!("expected an error")
    };
    assert_eq!(
        e.error_code(),
        ErrorCode::HelloFailed(HelloFailedCode::Incompatible)
    );
    assert_eq!(
        String::from_utf8_lossy(&e.data),
        "We support OpenFlow 1.3 (0x04) only; you offered OpenFlow wire version 0x01."
    );
    // OVS reaches the same verdict from our HELLO's version bitmap and hangs up itself,
    // possibly before our error arrives.
    let deadline = Instant::now() + WAIT;
    loop {
        let log = ovs.log("ovs-vswitchd");
        if log.contains(
            "version negotiation failed (we support version 0x01, peer supports version 0x04)",
        ) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "OVS did not log the failed negotiation:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
