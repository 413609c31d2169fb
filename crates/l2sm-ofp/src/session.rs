//! The controller side of one OpenFlow 1.3 connection, as a state machine without I/O.
//!
//! ```text
//!   socket bytes ──feed()──▶ ┌─────────┐ ──poll_event()──▶ SessionEvent
//!   clock ────────tick()───▶ │ Session │ ◀──request() / send() / send_batch()
//!   socket ◀──take_output()─ └─────────┘ ──next_deadline()──▶ when to tick() next
//! ```
//!
//! The I/O layer owns the socket and the clock; the session owns the protocol:
//!
//! - **Handshake.** [`Session::new`] queues a HELLO with a version bitmap offering 1.3
//!   only. The peer's first message must be a HELLO; if it offers no 1.3 (bitmap without
//!   bit 4, or no bitmap and a header version below 0x04) the session answers
//!   OFPET_HELLO_FAILED / OFPHFC_INCOMPATIBLE with an ASCII explanation, in a version the
//!   peer can read, and closes with [`CloseReason::Incompatible`]. Otherwise it sends
//!   FEATURES_REQUEST and reports [`SessionEvent::Connected`] on the reply. Messages
//!   queued before the peer's HELLO are held back until the version is agreed.
//! - **Requests.** [`Session::request`] allocates an xid (never 0, never one still in
//!   use) and, for messages that have a reply, collects it: a multipart reply sequence
//!   (`OFPMPF_REPLY_MORE`) is assembled and reported once, as
//!   [`SessionEvent::Reply`] with every part in order. An ERROR with that xid ends the
//!   request instead ([`SessionEvent::Error`] with [`ErrorOrigin::Request`]).
//! - **Batches.** [`Session::send_batch`] sends messages followed by a BARRIER_REQUEST;
//!   errors for them arrive as [`ErrorOrigin::Batch`] (with their index), and
//!   [`SessionEvent::BarrierDone`] says the switch has processed all of them.
//! - **Keepalive.** The session answers ECHO_REQUEST itself. When nothing has been heard
//!   for [`SessionConfig::echo_interval`] it sends an ECHO_REQUEST, and if still nothing
//!   arrives within [`SessionConfig::echo_timeout`] it closes with
//!   [`CloseReason::EchoTimeout`]. Any message counts as a sign of life.
//! - **Failures.** A corrupt length field, a message that does not decode, a peer that
//!   does not start with HELLO or a handshake that takes too long close the session with
//!   a typed [`CloseReason`]; [`SessionEvent::Closed`] is the last event, and whatever
//!   output was queued (such as the HELLO_FAILED error) should still be written.
//!
//! Time only enters through [`Session::new`] and [`Session::tick`]: call `tick(now)`
//! after each [`Session::feed`] and whenever [`Session::next_deadline`] passes. A
//! session ticked only at its deadlines still works, but notices activity late, so its
//! echo requests may come up to one interval later than configured.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::error::{DecodeError, EncodeError};
use crate::header::{message_len, peek_header};
use crate::message::{decode, encode_into};
use crate::ofp_error::HelloFailedCode;
use crate::types::{
    ErrorMsg, FeaturesReply, Message, OfpMessage, MULTIPART_REPLY_MORE, OFP_VERSION,
};

/// `ofp_type` of HELLO and ERROR, the two messages read before a version is agreed.
const OFPT_HELLO: u8 = 0;
const OFPT_ERROR: u8 = 1;
/// Version bitmap bit of OpenFlow 1.3.
const OF13_BIT: u32 = 1 << OFP_VERSION;
/// `OFPET_HELLO_FAILED`.
const OFPET_HELLO_FAILED: u16 = 0;

/// Timers and limits of a [`Session`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// Silence after which the session sends an ECHO_REQUEST.
    pub echo_interval: Duration,
    /// How long an ECHO_REQUEST may go unanswered (by anything) before the session closes.
    pub echo_timeout: Duration,
    /// Time from [`Session::new`] to the FEATURES_REPLY.
    pub handshake_timeout: Duration,
    /// Largest reply (all parts of a multipart sequence, in wire bytes) the session
    /// collects for one request before closing with [`CloseReason::ReplyTooLarge`].
    pub max_reply_bytes: usize,
}

impl Default for SessionConfig {
    /// 5 s echo interval (as OVS probes), 10 s echo and handshake timeouts, 64 MiB replies.
    fn default() -> Self {
        SessionConfig {
            echo_interval: Duration::from_secs(5),
            echo_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            max_reply_bytes: 64 << 20,
        }
    }
}

/// What a [`Session`] reports, in the order the peer's messages arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionEvent {
    /// The handshake is complete: version 1.3 agreed and the switch described itself.
    Connected {
        /// The switch's FEATURES_REPLY.
        features: FeaturesReply,
    },
    /// A message that is no reply to anything the session tracks: PACKET_IN,
    /// PORT_STATUS, FLOW_REMOVED, EXPERIMENTER, replies to [`Session::send`]...
    Message(OfpMessage),
    /// The complete reply to [`Session::request`] (or to a reply-bearing message of a
    /// batch): one message, or every part of a multipart sequence in order.
    Reply {
        /// Xid of the request.
        request_xid: u32,
        /// The reply: one message, or every part in order.
        messages: Vec<OfpMessage>,
    },
    /// The switch has processed every message of the batch closed by this barrier xid.
    BarrierDone(u32),
    /// The switch reported an error; `xid` is the failed message's.
    Error {
        /// Xid of the failed message.
        xid: u32,
        /// The ERROR message's body.
        error: ErrorMsg,
        /// Which of our messages failed.
        origin: ErrorOrigin,
    },
    /// The session is over; no event follows.
    Closed {
        /// Why the session closed.
        reason: CloseReason,
    },
}

/// Which of our messages an ERROR refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorOrigin {
    /// A message sent with [`Session::request`]; it gets no other answer.
    Request,
    /// Message `index` of the [`Session::send_batch`] closed by `barrier_xid`.
    Batch {
        /// Xid of the BARRIER_REQUEST that closed the batch.
        barrier_xid: u32,
        /// Position of the failed message in the batch, from 0.
        index: usize,
    },
    /// Nothing the session tracks (a [`Session::send`], or an xid it never used).
    Untracked,
}

/// Why a [`Session`] closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CloseReason {
    /// The peer's HELLO offered no OpenFlow 1.3; it was sent HELLO_FAILED/INCOMPATIBLE.
    #[error(
        "peer does not speak OpenFlow 1.3 (hello version {peer_version:#04x}, bitmap {peer_bitmap:?})"
    )]
    Incompatible {
        /// Version in the header of the peer's HELLO.
        peer_version: u8,
        /// Version bitmap of the peer's HELLO, if it had one.
        peer_bitmap: Option<Vec<u32>>,
    },
    /// The peer's first message was not a HELLO.
    #[error("expected HELLO as the first message, got type {msg_type}")]
    ExpectedHello {
        /// Type of the message the peer sent first.
        msg_type: u8,
    },
    /// The peer refused the connection with an OFPET_HELLO_FAILED error.
    #[error("peer refused the session: {}", .0.describe())]
    PeerRejected(ErrorMsg),
    /// The switch answered FEATURES_REQUEST with an error.
    #[error("features request failed: {}", .0.describe())]
    FeaturesFailed(ErrorMsg),
    /// A header declared a length below 8 bytes: the stream cannot be resynchronised.
    #[error("bad framing: {0}")]
    Framing(DecodeError),
    /// A complete message did not decode.
    #[error("undecodable message (type {msg_type}, xid {xid}): {error}")]
    Decode {
        /// Xid of the message.
        xid: u32,
        /// Type of the message.
        msg_type: u8,
        /// Why it did not decode.
        error: DecodeError,
    },
    /// No FEATURES_REPLY within [`SessionConfig::handshake_timeout`].
    #[error("handshake timed out")]
    HandshakeTimeout,
    /// Nothing heard within [`SessionConfig::echo_timeout`] of an ECHO_REQUEST.
    #[error("peer did not answer echo requests")]
    EchoTimeout,
    /// A reply grew beyond [`SessionConfig::max_reply_bytes`].
    #[error("reply to xid {request_xid} exceeds {limit} bytes")]
    ReplyTooLarge {
        /// Xid of the request.
        request_xid: u32,
        /// The [`SessionConfig::max_reply_bytes`] exceeded.
        limit: usize,
    },
    /// The peer closed the connection between messages ([`Session::peer_closed`]).
    #[error("peer closed the connection")]
    PeerClosed,
    /// The peer closed the connection in the middle of a message.
    #[error("peer closed the connection with {buffered} bytes of an incomplete message")]
    PeerClosedMidMessage {
        /// Bytes of the incomplete message received.
        buffered: usize,
    },
}

/// Why a message could not be queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The message cannot be encoded; nothing was queued.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The session is closed.
    #[error("session is closed")]
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Our HELLO is queued; waiting for the peer's.
    AwaitHello,
    /// Version agreed, FEATURES_REQUEST `xid` sent.
    AwaitFeatures {
        xid: u32,
    },
    Connected,
    Closed,
}

/// A reply being collected.
#[derive(Debug, Default)]
struct Pending {
    parts: Vec<OfpMessage>,
    bytes: usize,
}

/// Event queue capacity an idle session keeps.
const IDLE_EVENT_CAPACITY: usize = 4;

/// The controller side of one OpenFlow 1.3 connection (see the module documentation).
#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    state: State,
    started: Instant,
    /// Unparsed input: the start of one incomplete message (empty, unallocated, between
    /// messages).
    input: Vec<u8>,
    /// Encoded bytes for the socket.
    output: Vec<u8>,
    /// Encoded bytes queued before the version was agreed.
    held: Vec<u8>,
    events: VecDeque<SessionEvent>,
    next_xid: u32,
    pending: HashMap<u32, Pending>,
    /// Barrier xid -> xids of the batch's messages, in order.
    batches: HashMap<u32, Vec<u32>>,
    features: Option<FeaturesReply>,
    peer_version: Option<u8>,
    /// Something arrived since the last tick.
    heard: bool,
    last_heard: Instant,
    /// Our outstanding keepalive: its xid and when it was sent.
    echo: Option<(u32, Instant)>,
}

impl Session {
    /// Starts a session at `now` and queues our HELLO.
    pub fn new(config: SessionConfig, now: Instant) -> Self {
        let mut s = Session {
            config,
            state: State::AwaitHello,
            started: now,
            input: Vec::new(),
            output: Vec::with_capacity(4096),
            held: Vec::new(),
            events: VecDeque::new(),
            next_xid: 0,
            pending: HashMap::new(),
            batches: HashMap::new(),
            features: None,
            peer_version: None,
            heard: false,
            last_heard: now,
            echo: None,
        };
        let xid = s.alloc_xid();
        s.put_now(xid, Message::hello_v13());
        s
    }

    /// Processes bytes read from the socket (any amount, message boundaries anywhere).
    ///
    /// Whole messages are parsed where they are; only an incomplete message is kept, so an
    /// idle session holds no input buffer (thousands of sessions each kept a few KiB).
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.state == State::Closed {
            return;
        }
        self.heard |= !bytes.is_empty();
        // The start of a message cut by an earlier read comes first.
        let mut joined = None;
        if !self.input.is_empty() {
            self.input.extend_from_slice(bytes);
            joined = Some(std::mem::take(&mut self.input));
        }
        let data: &[u8] = joined.as_deref().unwrap_or(bytes);
        let mut pos = 0;
        while self.state != State::Closed {
            let rest = data.get(pos..).unwrap_or_default();
            let len = match message_len(rest) {
                Err(e) => {
                    self.close(CloseReason::Framing(e));
                    break;
                }
                Ok(Some(len)) if len <= rest.len() => len,
                Ok(_) => break,
            };
            self.handle_frame(rest.get(..len).unwrap_or_default());
            pos += len;
        }
        if self.state == State::Closed || pos >= data.len() {
            self.input = Vec::new();
            return;
        }
        match joined {
            // Keep the buffer (and its capacity) while a long message is still arriving.
            Some(mut buf) => {
                buf.drain(..pos);
                self.input = buf;
            }
            None => self.input = data.get(pos..).unwrap_or_default().to_vec(),
        }
    }

    /// Advances the clock: notes activity since the last tick, sends keepalives and
    /// enforces the handshake and echo timeouts.
    pub fn tick(&mut self, now: Instant) {
        if self.heard {
            self.heard = false;
            self.last_heard = now;
            self.echo = None;
        }
        match self.state {
            State::Closed => {}
            State::AwaitHello | State::AwaitFeatures { .. } => {
                if reached(now, self.started, self.config.handshake_timeout) {
                    self.close(CloseReason::HandshakeTimeout);
                }
            }
            State::Connected => match self.echo {
                Some((_, sent)) if reached(now, sent, self.config.echo_timeout) => {
                    self.close(CloseReason::EchoTimeout);
                }
                Some(_) => {}
                None if reached(now, self.last_heard, self.config.echo_interval) => {
                    let xid = self.alloc_xid();
                    let stamp = now.duration_since(self.started).as_millis() as u64;
                    self.put_now(xid, Message::EchoRequest(stamp.to_be_bytes().to_vec()));
                    self.echo = Some((xid, now));
                }
                None => {}
            },
        }
    }

    /// When [`Session::tick`] must be called next (`None` once closed, or when the
    /// next timer lies beyond what `Instant` can represent).
    pub fn next_deadline(&self) -> Option<Instant> {
        match self.state {
            State::Closed => None,
            State::AwaitHello | State::AwaitFeatures { .. } => {
                self.started.checked_add(self.config.handshake_timeout)
            }
            State::Connected => match self.echo {
                Some((_, sent)) => sent.checked_add(self.config.echo_timeout),
                None => self.last_heard.checked_add(self.config.echo_interval),
            },
        }
    }

    /// The connection reached end of file.
    pub fn peer_closed(&mut self) {
        let reason = if self.input.is_empty() {
            CloseReason::PeerClosed
        } else {
            CloseReason::PeerClosedMidMessage {
                buffered: self.input.len(),
            }
        };
        self.close(reason);
    }

    /// Sends `body` and collects its reply, if it has one ([`Message::expects_reply`]),
    /// as [`SessionEvent::Reply`]. Returns the xid used.
    ///
    /// # Errors
    ///
    /// [`SendError::Encode`] if `body` cannot be encoded (nothing is queued), and
    /// [`SendError::Closed`] after the session closed.
    pub fn request(&mut self, body: Message) -> Result<u32, SendError> {
        let wants_reply = body.expects_reply();
        let xid = self.send(body)?;
        if wants_reply {
            self.pending.insert(xid, Pending::default());
        }
        Ok(xid)
    }

    /// Sends `body` without tracking an answer: a reply, if any, arrives as
    /// [`SessionEvent::Message`], an error as [`ErrorOrigin::Untracked`].
    ///
    /// # Errors
    ///
    /// As [`Session::request`].
    pub fn send(&mut self, body: Message) -> Result<u32, SendError> {
        if self.state == State::Closed {
            return Err(SendError::Closed);
        }
        let xid = self.alloc_xid();
        encode_into(&OfpMessage::new(xid, body), self.outbox())?;
        Ok(xid)
    }

    /// Sends `msgs` followed by a BARRIER_REQUEST and returns the barrier's xid, which
    /// [`SessionEvent::BarrierDone`] reports once the switch has processed the batch.
    /// Replies to reply-bearing messages in the batch are collected as for
    /// [`Session::request`].
    ///
    /// # Errors
    ///
    /// [`SendError::Encode`] if any message cannot be encoded: then none is queued.
    /// [`SendError::Closed`] after the session closed.
    pub fn send_batch(&mut self, msgs: Vec<Message>) -> Result<u32, SendError> {
        if self.state == State::Closed {
            return Err(SendError::Closed);
        }
        let mut members = Vec::with_capacity(msgs.len());
        let mut replies = Vec::new();
        let base = self.outbox().len();
        for body in msgs {
            let xid = self.alloc_xid();
            if body.expects_reply() {
                replies.push(xid);
            }
            if let Err(e) = encode_into(&OfpMessage::new(xid, body), self.outbox()) {
                self.outbox().truncate(base);
                return Err(e.into());
            }
            members.push(xid);
        }
        let barrier = self.alloc_xid();
        encode_into(
            &OfpMessage::new(barrier, Message::BarrierRequest),
            self.outbox(),
        )?;
        for xid in replies {
            self.pending.insert(xid, Pending::default());
        }
        self.batches.insert(barrier, members);
        Ok(barrier)
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        let event = self.events.pop_front();
        if event.is_none() && self.events.capacity() > IDLE_EVENT_CAPACITY {
            // A burst (a flow table read back, a batch's replies) grew the queue: an idle
            // session gives it back (thousands of sessions each kept ~1 KiB).
            self.events = VecDeque::new();
        }
        event
    }

    /// All events so far.
    pub fn take_events(&mut self) -> Vec<SessionEvent> {
        self.events.drain(..).collect()
    }

    /// The bytes to write to the socket (everything queued since the last call).
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    /// Gives back buffer memory grown by large messages (e.g. after reading a switch's whole
    /// flow table), keeping `keep` bytes of capacity for the input.
    pub fn shrink_buffers(&mut self, keep: usize) {
        self.input.shrink_to(keep);
        self.output.shrink_to(keep);
    }

    /// Whether [`Session::take_output`] has something to write.
    pub fn has_output(&self) -> bool {
        !self.output.is_empty()
    }

    /// The switch's FEATURES_REPLY, once connected.
    pub fn features(&self) -> Option<&FeaturesReply> {
        self.features.as_ref()
    }

    /// The version byte of the peer's HELLO, once received.
    pub fn peer_version(&self) -> Option<u8> {
        self.peer_version
    }

    /// Whether the handshake completed and the session is not closed.
    pub fn is_connected(&self) -> bool {
        self.state == State::Connected
    }

    /// Whether the session is closed.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Requests (and batch messages) still waiting for a reply, plus open batches.
    pub fn in_flight(&self) -> usize {
        self.pending.len() + self.batches.len()
    }

    /// Where newly encoded messages go: held back until the version is agreed.
    fn outbox(&mut self) -> &mut Vec<u8> {
        if self.state == State::AwaitHello {
            &mut self.held
        } else {
            &mut self.output
        }
    }

    /// Queues a message the session itself builds (always encodable) for the socket.
    fn put_now(&mut self, xid: u32, body: Message) {
        let _always_ok = encode_into(&OfpMessage::new(xid, body), &mut self.output);
    }

    fn alloc_xid(&mut self) -> u32 {
        loop {
            self.next_xid = self.next_xid.wrapping_add(1);
            let xid = self.next_xid;
            let busy = xid == 0
                || self.pending.contains_key(&xid)
                || self.batches.contains_key(&xid)
                || self.echo.is_some_and(|(e, _)| e == xid)
                || matches!(self.state, State::AwaitFeatures { xid: f } if f == xid);
            if !busy {
                return xid;
            }
        }
    }

    fn close(&mut self, reason: CloseReason) {
        if self.state == State::Closed {
            return;
        }
        self.state = State::Closed;
        self.held.clear();
        self.pending.clear();
        self.batches.clear();
        self.events.push_back(SessionEvent::Closed { reason });
    }

    fn handle_frame(&mut self, frame: &[u8]) {
        let Some(h) = peek_header(frame) else {
            return;
        };
        let msg = match decode(frame) {
            Ok(msg) => msg,
            Err(error) => {
                let reason = if self.state == State::AwaitHello && h.msg_type != OFPT_HELLO {
                    CloseReason::ExpectedHello {
                        msg_type: h.msg_type,
                    }
                } else {
                    CloseReason::Decode {
                        xid: h.xid,
                        msg_type: h.msg_type,
                        error,
                    }
                };
                return self.close(reason);
            }
        };
        if self.state == State::AwaitHello {
            return match msg.body {
                Message::Hello { version_bitmap } => {
                    self.negotiate(h.version, msg.xid, version_bitmap)
                }
                Message::Error(e) if h.msg_type == OFPT_ERROR => {
                    self.close(CloseReason::PeerRejected(e))
                }
                _ => self.close(CloseReason::ExpectedHello {
                    msg_type: h.msg_type,
                }),
            };
        }
        self.dispatch(msg, frame.len());
    }

    fn negotiate(&mut self, version: u8, hello_xid: u32, bitmap: Option<Vec<u32>>) {
        self.peer_version = Some(version);
        let speaks_13 = match &bitmap {
            Some(words) => words.first().is_some_and(|w| w & OF13_BIT != 0),
            None => version >= OFP_VERSION,
        };
        if !speaks_13 {
            let text = format!(
                "We support OpenFlow 1.3 (0x04) only; you offered {}.",
                describe_versions(version, bitmap.as_deref())
            );
            let error = ErrorMsg::hello_failed(HelloFailedCode::Incompatible, &text);
            let start = self.output.len();
            if encode_into(
                &OfpMessage::new(hello_xid, Message::Error(error)),
                &mut self.output,
            )
            .is_ok()
            {
                // The error layout is the same in every version: answer in one the peer reads.
                if let Some(v) = self.output.get_mut(start) {
                    *v = version.min(OFP_VERSION);
                }
            }
            return self.close(CloseReason::Incompatible {
                peer_version: version,
                peer_bitmap: bitmap,
            });
        }
        let xid = self.alloc_xid();
        self.put_now(xid, Message::FeaturesRequest);
        self.state = State::AwaitFeatures { xid };
        let held = std::mem::take(&mut self.held);
        self.output.extend_from_slice(&held);
    }

    fn dispatch(&mut self, msg: OfpMessage, wire_len: usize) {
        let xid = msg.xid;
        match msg.body {
            Message::EchoRequest(data) => self.put_now(xid, Message::EchoReply(data)),
            // Our keepalive (or a stray one): arriving at all was its purpose.
            Message::EchoReply(_) if !self.pending.contains_key(&xid) => {}
            Message::FeaturesReply(f) if self.state == (State::AwaitFeatures { xid }) => {
                self.state = State::Connected;
                self.features = Some(f.clone());
                self.events
                    .push_back(SessionEvent::Connected { features: f });
            }
            Message::Error(e) if e.err_type == OFPET_HELLO_FAILED => {
                self.close(CloseReason::PeerRejected(e));
            }
            Message::Error(e) if self.state == (State::AwaitFeatures { xid }) => {
                self.close(CloseReason::FeaturesFailed(e));
            }
            Message::Error(error) => {
                let origin = self.error_origin(xid);
                self.events
                    .push_back(SessionEvent::Error { xid, error, origin });
            }
            body if body.is_reply() && self.pending.contains_key(&xid) => {
                self.collect(OfpMessage { xid, body }, wire_len);
            }
            Message::BarrierReply if self.batches.remove(&xid).is_some() => {
                self.events.push_back(SessionEvent::BarrierDone(xid));
            }
            body => self
                .events
                .push_back(SessionEvent::Message(OfpMessage { xid, body })),
        }
    }

    /// Adds one reply message to its pending request; reports the request once complete.
    fn collect(&mut self, msg: OfpMessage, wire_len: usize) {
        let xid = msg.xid;
        let more =
            matches!(&msg.body, Message::MultipartReply(r) if r.flags & MULTIPART_REPLY_MORE != 0);
        let limit = self.config.max_reply_bytes;
        let Some(p) = self.pending.get_mut(&xid) else {
            return;
        };
        p.bytes += wire_len;
        p.parts.push(msg);
        if p.bytes > limit {
            return self.close(CloseReason::ReplyTooLarge {
                request_xid: xid,
                limit,
            });
        }
        if !more {
            if let Some(p) = self.pending.remove(&xid) {
                self.events.push_back(SessionEvent::Reply {
                    request_xid: xid,
                    messages: p.parts,
                });
            }
        }
    }

    /// Finds which of our messages an ERROR with `xid` refers to, ending its request.
    fn error_origin(&mut self, xid: u32) -> ErrorOrigin {
        let pending = self.pending.remove(&xid).is_some();
        let batch = self.batches.iter().find_map(|(barrier, members)| {
            members
                .iter()
                .position(|m| *m == xid)
                .map(|index| ErrorOrigin::Batch {
                    barrier_xid: *barrier,
                    index,
                })
        });
        match (batch, pending) {
            (Some(origin), _) => origin,
            (None, true) => ErrorOrigin::Request,
            (None, false) => ErrorOrigin::Untracked,
        }
    }
}

/// Whether `since + after` has passed at `now` (never, if that overflows `Instant`).
fn reached(now: Instant, since: Instant, after: Duration) -> bool {
    since
        .checked_add(after)
        .is_some_and(|deadline| now >= deadline)
}

/// "OpenFlow 1.0 (0x01)", "versions 0x01, 0x02", or "no version" for a HELLO.
fn describe_versions(version: u8, bitmap: Option<&[u32]>) -> String {
    let Some(words) = bitmap else {
        return format!("OpenFlow wire version {version:#04x}");
    };
    let versions: Vec<String> = words
        .iter()
        .enumerate()
        .flat_map(|(i, w)| {
            (0..32u32)
                .filter(move |b| w & (1 << b) != 0)
                .map(move |b| format!("{:#04x}", i as u32 * 32 + b))
        })
        .collect();
    if versions.is_empty() {
        "no version".into()
    } else {
        format!("wire versions {}", versions.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xids_wrap_around_skipping_zero_and_busy_ones() {
        let mut s = Session::new(SessionConfig::default(), Instant::now());
        s.next_xid = u32::MAX - 2;
        s.pending.insert(u32::MAX, Pending::default());
        s.batches.insert(1, Vec::new());
        assert_eq!(s.alloc_xid(), u32::MAX - 1);
        assert_eq!(
            s.alloc_xid(),
            2,
            "skips u32::MAX (pending), 0 and 1 (a batch)"
        );
    }

    #[test]
    fn timers_beyond_instant_never_fire() {
        let t0 = Instant::now();
        let cfg = SessionConfig {
            handshake_timeout: Duration::MAX,
            ..SessionConfig::default()
        };
        let mut s = Session::new(cfg, t0);
        assert_eq!(s.next_deadline(), None);
        s.tick(t0 + Duration::from_secs(1 << 20));
        assert!(!s.is_closed());
    }

    #[test]
    fn version_lists() {
        assert_eq!(describe_versions(1, None), "OpenFlow wire version 0x01");
        assert_eq!(
            describe_versions(6, Some(&[0b10, 0b1])),
            "wire versions 0x01, 0x20"
        );
        assert_eq!(describe_versions(6, Some(&[])), "no version");
    }
}
