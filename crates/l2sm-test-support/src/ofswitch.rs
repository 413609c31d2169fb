//! A scriptable OpenFlow 1.3 switch over plain TCP, blocking, built on the `l2sm-ofp` codec:
//! the test decides what it answers, delays or never answers.

use l2sm_ofp::{
    FeaturesReply, Message, MultipartReply, MultipartReplyBody, MultipartRequestBody, OfpMessage,
    PortDesc,
};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// One switch connection to a controller.
pub struct FakeSwitch {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Datapath id it claims.
    pub dpid: u64,
}

/// A port that is up, named `name`.
pub fn port(port_no: u32, name: &str) -> PortDesc {
    PortDesc {
        port_no,
        hw_addr: [0x02, 0, 0, 0, 0, port_no as u8],
        name: name.to_string(),
        config: 0,
        state: 0,
        curr: 0,
        advertised: 0,
        supported: 0,
        peer: 0,
        curr_speed: 0,
        max_speed: 0,
    }
}

/// A PACKET_IN of `data` from `in_port`.
pub fn packet_in(in_port: u32, data: Vec<u8>) -> Message {
    Message::PacketIn(l2sm_ofp::PacketIn {
        buffer_id: l2sm_ofp::NO_BUFFER,
        total_len: data.len().min(usize::from(u16::MAX)) as u16,
        reason: 1,
        table_id: 0,
        cookie: u64::MAX,
        r#match: l2sm_ofp::Match::any().with(l2sm_ofp::OxmField::InPort(in_port)),
        data,
    })
}

impl FakeSwitch {
    /// Connects to the controller's OpenFlow port on 127.0.0.1 and sends HELLO.
    pub fn connect(openflow: u16, dpid: u64) -> std::io::Result<FakeSwitch> {
        let stream = TcpStream::connect(("127.0.0.1", openflow))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.set_write_timeout(Some(Duration::from_secs(5)))?;
        let mut s = FakeSwitch {
            stream,
            buf: Vec::new(),
            dpid,
        };
        s.send(
            0,
            Message::Hello {
                version_bitmap: Some(vec![1 << l2sm_ofp::OFP_VERSION]),
            },
        )?;
        Ok(s)
    }

    /// Sets the read timeout of [`FakeSwitch::recv`].
    pub fn set_read_timeout(&self, t: Duration) {
        self.stream
            .set_read_timeout(Some(t))
            .expect("set_read_timeout");
    }

    /// Sends one message.
    pub fn send(&mut self, xid: u32, body: Message) -> std::io::Result<()> {
        let bytes = l2sm_ofp::encode(&OfpMessage { xid, body }).expect("encodable message");
        self.stream.write_all(&bytes)
    }

    /// Sends several messages in one write.
    pub fn send_all(&mut self, msgs: &[(u32, Message)]) -> std::io::Result<()> {
        let mut out = Vec::new();
        for (xid, body) in msgs {
            l2sm_ofp::encode_into(
                &OfpMessage {
                    xid: *xid,
                    body: body.clone(),
                },
                &mut out,
            )
            .expect("encodable message");
        }
        self.stream.write_all(&out)
    }

    /// The next message from the controller: `Ok(None)` when the controller closed the
    /// connection, an error on a timeout or a reset.
    pub fn recv(&mut self) -> std::io::Result<Option<OfpMessage>> {
        loop {
            if let Some(len) = l2sm_ofp::message_len(&self.buf).expect("controller framing") {
                if self.buf.len() >= len {
                    let msg = l2sm_ofp::decode(&self.buf[..len]).expect("decodable message");
                    self.buf.drain(..len);
                    return Ok(Some(msg));
                }
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Ok(None);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Answers what a plain switch answers to `msg` (features, echo, empty flow and group
    /// tables, `ports`, barriers); false for messages it has no answer for.
    pub fn answer(&mut self, msg: &OfpMessage, ports: &[PortDesc]) -> std::io::Result<bool> {
        let xid = msg.xid;
        let reply = match &msg.body {
            Message::FeaturesRequest => Message::FeaturesReply(FeaturesReply {
                datapath_id: self.dpid,
                n_buffers: 0,
                n_tables: 254,
                auxiliary_id: 0,
                capabilities: 0x4f,
            }),
            Message::EchoRequest(d) => Message::EchoReply(d.clone()),
            Message::BarrierRequest => Message::BarrierReply,
            Message::MultipartRequest(r) => {
                let body = match &r.body {
                    MultipartRequestBody::PortDesc => MultipartReplyBody::PortDesc(ports.to_vec()),
                    MultipartRequestBody::Flow(_) => MultipartReplyBody::Flow(Vec::new()),
                    MultipartRequestBody::GroupDesc => MultipartReplyBody::GroupDesc(Vec::new()),
                    // A switch without meters (the controller then installs none).
                    MultipartRequestBody::MeterFeatures => {
                        MultipartReplyBody::MeterFeatures(l2sm_ofp::MeterFeatures {
                            max_meter: 0,
                            band_types: 0,
                            capabilities: 0,
                            max_bands: 0,
                            max_color: 0,
                        })
                    }
                    _ => return Ok(false),
                };
                Message::MultipartReply(MultipartReply { flags: 0, body })
            }
            _ => return Ok(false),
        };
        self.send(xid, reply)?;
        Ok(true)
    }

    /// Completes the handshake (features, port description) and returns the first message
    /// after it (the controller's flow-table read), unanswered.
    pub fn handshake(&mut self, ports: &[PortDesc]) -> std::io::Result<OfpMessage> {
        loop {
            let msg = self.recv()?.ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "controller closed during the handshake",
                )
            })?;
            let is_flow_read = matches!(&msg.body, Message::MultipartRequest(r)
                if matches!(r.body, MultipartRequestBody::Flow(_)));
            if is_flow_read {
                return Ok(msg);
            }
            self.answer(&msg, ports)?;
        }
    }
}
