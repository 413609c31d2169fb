//! The typed view of OFPT_ERROR (OpenFlow 1.3.5 §7.4.4): `enum ofp_error_type` and one
//! code enumeration per type.
//!
//! [`ErrorMsg`] keeps the raw numbers so that any error, including codes a later
//! version adds, survives a round trip; [`ErrorMsg::error_code`] maps them onto these
//! enumerations and [`ErrorMsg::describe`] turns them into a log line.
//!
//! ```text
//! ofp_error_msg:              | type (16) | code (16) | data ...                     |
//! ofp_error_experimenter_msg: | 0xffff    | exp_type  | experimenter (32) | data ... |
//! ```

use crate::types::ErrorMsg;

/// Defines a `u16` code enumeration with its spec names and a short meaning for each.
macro_rules! codes {
    (
        $(#[$meta:meta])*
        $name:ident {
            $($variant:ident = $value:literal, $spec:literal, $meaning:literal;)*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $(
                #[doc = concat!("`", $spec, "` (", stringify!($value), "): ", $meaning, ".")]
                $variant = $value,
            )*
        }

        impl $name {
            /// The code with wire value `v`, if the spec defines one.
            pub const fn from_u16(v: u16) -> Option<Self> {
                match v {
                    $($value => Some(Self::$variant),)*
                    _ => None,
                }
            }
            /// The constant's name in the spec, e.g. `OFPBRC_BAD_TYPE`.
            pub const fn spec_name(self) -> &'static str {
                match self {
                    $(Self::$variant => $spec,)*
                }
            }
            /// What the code means, in a few words.
            pub const fn meaning(self) -> &'static str {
                match self {
                    $(Self::$variant => $meaning,)*
                }
            }
        }
    };
}

codes! {
    /// `enum ofp_error_type`.
    ErrorType {
        HelloFailed = 0, "OFPET_HELLO_FAILED", "hello protocol failed";
        BadRequest = 1, "OFPET_BAD_REQUEST", "request was not understood";
        BadAction = 2, "OFPET_BAD_ACTION", "error in action description";
        BadInstruction = 3, "OFPET_BAD_INSTRUCTION", "error in instruction list";
        BadMatch = 4, "OFPET_BAD_MATCH", "error in match";
        FlowModFailed = 5, "OFPET_FLOW_MOD_FAILED", "problem modifying flow entry";
        GroupModFailed = 6, "OFPET_GROUP_MOD_FAILED", "problem modifying group entry";
        PortModFailed = 7, "OFPET_PORT_MOD_FAILED", "port mod request failed";
        TableModFailed = 8, "OFPET_TABLE_MOD_FAILED", "table mod request failed";
        QueueOpFailed = 9, "OFPET_QUEUE_OP_FAILED", "queue operation failed";
        SwitchConfigFailed = 10, "OFPET_SWITCH_CONFIG_FAILED", "switch config request failed";
        RoleRequestFailed = 11, "OFPET_ROLE_REQUEST_FAILED", "controller role request failed";
        MeterModFailed = 12, "OFPET_METER_MOD_FAILED", "error in meter";
        TableFeaturesFailed = 13, "OFPET_TABLE_FEATURES_FAILED", "setting table features failed";
        Experimenter = 0xffff, "OFPET_EXPERIMENTER", "experimenter error";
    }
}

codes! {
    /// `enum ofp_hello_failed_code`; `data` is an ASCII explanation.
    HelloFailedCode {
        Incompatible = 0, "OFPHFC_INCOMPATIBLE", "no compatible version";
        Eperm = 1, "OFPHFC_EPERM", "permissions error";
    }
}

codes! {
    /// `enum ofp_bad_request_code`.
    BadRequestCode {
        BadVersion = 0, "OFPBRC_BAD_VERSION", "ofp_header.version not supported";
        BadType = 1, "OFPBRC_BAD_TYPE", "ofp_header.type not supported";
        BadMultipart = 2, "OFPBRC_BAD_MULTIPART", "multipart type not supported";
        BadExperimenter = 3, "OFPBRC_BAD_EXPERIMENTER", "experimenter id not supported";
        BadExpType = 4, "OFPBRC_BAD_EXP_TYPE", "experimenter type not supported";
        Eperm = 5, "OFPBRC_EPERM", "permissions error";
        BadLen = 6, "OFPBRC_BAD_LEN", "wrong request length for type";
        BufferEmpty = 7, "OFPBRC_BUFFER_EMPTY", "buffer already used";
        BufferUnknown = 8, "OFPBRC_BUFFER_UNKNOWN", "buffer does not exist";
        BadTableId = 9, "OFPBRC_BAD_TABLE_ID", "table id invalid or missing";
        IsSlave = 10, "OFPBRC_IS_SLAVE", "denied because the controller is slave";
        BadPort = 11, "OFPBRC_BAD_PORT", "invalid port";
        BadPacket = 12, "OFPBRC_BAD_PACKET", "invalid packet in packet-out";
        MultipartBufferOverflow = 13, "OFPBRC_MULTIPART_BUFFER_OVERFLOW",
            "multipart request overflowed the assigned buffer";
    }
}

codes! {
    /// `enum ofp_bad_action_code`.
    BadActionCode {
        BadType = 0, "OFPBAC_BAD_TYPE", "unknown action type";
        BadLen = 1, "OFPBAC_BAD_LEN", "length problem in actions";
        BadExperimenter = 2, "OFPBAC_BAD_EXPERIMENTER", "unknown experimenter id";
        BadExpType = 3, "OFPBAC_BAD_EXP_TYPE", "unknown action for experimenter id";
        BadOutPort = 4, "OFPBAC_BAD_OUT_PORT", "problem validating output port";
        BadArgument = 5, "OFPBAC_BAD_ARGUMENT", "bad action argument";
        Eperm = 6, "OFPBAC_EPERM", "permissions error";
        TooMany = 7, "OFPBAC_TOO_MANY", "cannot handle this many actions";
        BadQueue = 8, "OFPBAC_BAD_QUEUE", "problem validating output queue";
        BadOutGroup = 9, "OFPBAC_BAD_OUT_GROUP", "invalid group id in group action";
        MatchInconsistent = 10, "OFPBAC_MATCH_INCONSISTENT",
            "action cannot apply to this match or set_field is missing a prerequisite";
        UnsupportedOrder = 11, "OFPBAC_UNSUPPORTED_ORDER", "action order is unsupported";
        BadTag = 12, "OFPBAC_BAD_TAG", "unsupported tag or encapsulation";
        BadSetType = 13, "OFPBAC_BAD_SET_TYPE", "unsupported set_field type";
        BadSetLen = 14, "OFPBAC_BAD_SET_LEN", "length problem in set_field";
        BadSetArgument = 15, "OFPBAC_BAD_SET_ARGUMENT", "bad set_field argument";
    }
}

codes! {
    /// `enum ofp_bad_instruction_code`.
    BadInstructionCode {
        UnknownInst = 0, "OFPBIC_UNKNOWN_INST", "unknown instruction";
        UnsupInst = 1, "OFPBIC_UNSUP_INST", "switch or table does not support the instruction";
        BadTableId = 2, "OFPBIC_BAD_TABLE_ID", "invalid table id";
        UnsupMetadata = 3, "OFPBIC_UNSUP_METADATA", "metadata value unsupported";
        UnsupMetadataMask = 4, "OFPBIC_UNSUP_METADATA_MASK", "metadata mask unsupported";
        BadExperimenter = 5, "OFPBIC_BAD_EXPERIMENTER", "unknown experimenter id";
        BadExpType = 6, "OFPBIC_BAD_EXP_TYPE", "unknown instruction for experimenter id";
        BadLen = 7, "OFPBIC_BAD_LEN", "length problem in instructions";
        Eperm = 8, "OFPBIC_EPERM", "permissions error";
    }
}

codes! {
    /// `enum ofp_bad_match_code`.
    BadMatchCode {
        BadType = 0, "OFPBMC_BAD_TYPE", "unsupported match type";
        BadLen = 1, "OFPBMC_BAD_LEN", "length problem in match";
        BadTag = 2, "OFPBMC_BAD_TAG", "match uses an unsupported tag or encapsulation";
        BadDlAddrMask = 3, "OFPBMC_BAD_DL_ADDR_MASK", "unsupported datalink address mask";
        BadNwAddrMask = 4, "OFPBMC_BAD_NW_ADDR_MASK", "unsupported network address mask";
        BadWildcards = 5, "OFPBMC_BAD_WILDCARDS", "unsupported combination of fields masked or omitted";
        BadField = 6, "OFPBMC_BAD_FIELD", "unsupported field type in the match";
        BadValue = 7, "OFPBMC_BAD_VALUE", "unsupported value in a match field";
        BadMask = 8, "OFPBMC_BAD_MASK", "unsupported mask";
        BadPrereq = 9, "OFPBMC_BAD_PREREQ", "a prerequisite was not met";
        DupField = 10, "OFPBMC_DUP_FIELD", "a field type was duplicated";
        Eperm = 11, "OFPBMC_EPERM", "permissions error";
    }
}

codes! {
    /// `enum ofp_flow_mod_failed_code`.
    FlowModFailedCode {
        Unknown = 0, "OFPFMFC_UNKNOWN", "unspecified error";
        TableFull = 1, "OFPFMFC_TABLE_FULL", "table is full";
        BadTableId = 2, "OFPFMFC_BAD_TABLE_ID", "table does not exist";
        Overlap = 3, "OFPFMFC_OVERLAP", "overlapping entry with CHECK_OVERLAP set";
        Eperm = 4, "OFPFMFC_EPERM", "permissions error";
        BadTimeout = 5, "OFPFMFC_BAD_TIMEOUT", "unsupported idle or hard timeout";
        BadCommand = 6, "OFPFMFC_BAD_COMMAND", "unsupported or unknown command";
        BadFlags = 7, "OFPFMFC_BAD_FLAGS", "unsupported or unknown flags";
    }
}

codes! {
    /// `enum ofp_group_mod_failed_code`.
    GroupModFailedCode {
        GroupExists = 0, "OFPGMFC_GROUP_EXISTS", "ADD of an existing group";
        InvalidGroup = 1, "OFPGMFC_INVALID_GROUP", "group id is invalid";
        WeightUnsupported = 2, "OFPGMFC_WEIGHT_UNSUPPORTED", "unequal bucket weights unsupported";
        OutOfGroups = 3, "OFPGMFC_OUT_OF_GROUPS", "group table is full";
        OutOfBuckets = 4, "OFPGMFC_OUT_OF_BUCKETS", "too many buckets";
        ChainingUnsupported = 5, "OFPGMFC_CHAINING_UNSUPPORTED", "groups forwarding to groups unsupported";
        WatchUnsupported = 6, "OFPGMFC_WATCH_UNSUPPORTED", "cannot watch this port or group";
        Loop = 7, "OFPGMFC_LOOP", "group would cause a loop";
        UnknownGroup = 8, "OFPGMFC_UNKNOWN_GROUP", "MODIFY of a group that does not exist";
        ChainedGroup = 9, "OFPGMFC_CHAINED_GROUP", "another group forwards to this group";
        BadType = 10, "OFPGMFC_BAD_TYPE", "unsupported or unknown group type";
        BadCommand = 11, "OFPGMFC_BAD_COMMAND", "unsupported or unknown command";
        BadBucket = 12, "OFPGMFC_BAD_BUCKET", "error in bucket";
        BadWatch = 13, "OFPGMFC_BAD_WATCH", "error in watch port or group";
        Eperm = 14, "OFPGMFC_EPERM", "permissions error";
    }
}

codes! {
    /// `enum ofp_port_mod_failed_code`.
    PortModFailedCode {
        BadPort = 0, "OFPPMFC_BAD_PORT", "no such port";
        BadHwAddr = 1, "OFPPMFC_BAD_HW_ADDR", "hardware address does not match the port";
        BadConfig = 2, "OFPPMFC_BAD_CONFIG", "invalid config";
        BadAdvertise = 3, "OFPPMFC_BAD_ADVERTISE", "invalid advertise";
        Eperm = 4, "OFPPMFC_EPERM", "permissions error";
    }
}

codes! {
    /// `enum ofp_table_mod_failed_code`.
    TableModFailedCode {
        BadTable = 0, "OFPTMFC_BAD_TABLE", "no such table";
        BadConfig = 1, "OFPTMFC_BAD_CONFIG", "invalid config";
        Eperm = 2, "OFPTMFC_EPERM", "permissions error";
    }
}

codes! {
    /// `enum ofp_queue_op_failed_code`.
    QueueOpFailedCode {
        BadPort = 0, "OFPQOFC_BAD_PORT", "invalid port or port does not exist";
        BadQueue = 1, "OFPQOFC_BAD_QUEUE", "queue does not exist";
        Eperm = 2, "OFPQOFC_EPERM", "permissions error";
    }
}

codes! {
    /// `enum ofp_switch_config_failed_code`.
    SwitchConfigFailedCode {
        BadFlags = 0, "OFPSCFC_BAD_FLAGS", "invalid flags";
        BadLen = 1, "OFPSCFC_BAD_LEN", "invalid miss_send_len";
        Eperm = 2, "OFPSCFC_EPERM", "permissions error";
    }
}

codes! {
    /// `enum ofp_role_request_failed_code`.
    RoleRequestFailedCode {
        Stale = 0, "OFPRRFC_STALE", "stale generation id";
        Unsup = 1, "OFPRRFC_UNSUP", "controller role change unsupported";
        BadRole = 2, "OFPRRFC_BAD_ROLE", "invalid role";
    }
}

codes! {
    /// `enum ofp_meter_mod_failed_code`.
    MeterModFailedCode {
        Unknown = 0, "OFPMMFC_UNKNOWN", "unspecified error";
        MeterExists = 1, "OFPMMFC_METER_EXISTS", "ADD of an existing meter";
        InvalidMeter = 2, "OFPMMFC_INVALID_METER", "meter id is invalid";
        UnknownMeter = 3, "OFPMMFC_UNKNOWN_METER", "MODIFY of a meter that does not exist";
        BadCommand = 4, "OFPMMFC_BAD_COMMAND", "unsupported or unknown command";
        BadFlags = 5, "OFPMMFC_BAD_FLAGS", "flag configuration unsupported";
        BadRate = 6, "OFPMMFC_BAD_RATE", "rate unsupported";
        BadBurst = 7, "OFPMMFC_BAD_BURST", "burst size unsupported";
        BadBand = 8, "OFPMMFC_BAD_BAND", "band unsupported";
        BadBandValue = 9, "OFPMMFC_BAD_BAND_VALUE", "band value unsupported";
        OutOfMeters = 10, "OFPMMFC_OUT_OF_METERS", "no more meters available";
        OutOfBands = 11, "OFPMMFC_OUT_OF_BANDS", "too many bands for a meter";
    }
}

codes! {
    /// `enum ofp_table_features_failed_code`.
    TableFeaturesFailedCode {
        BadTable = 0, "OFPTFFC_BAD_TABLE", "no such table";
        BadMetadata = 1, "OFPTFFC_BAD_METADATA", "invalid metadata mask";
        BadType = 2, "OFPTFFC_BAD_TYPE", "unknown property type";
        BadLen = 3, "OFPTFFC_BAD_LEN", "length problem in properties";
        BadArgument = 4, "OFPTFFC_BAD_ARGUMENT", "unsupported property value";
        Eperm = 5, "OFPTFFC_EPERM", "permissions error";
    }
}

/// An error's type and code, typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// OFPET_HELLO_FAILED with its code.
    HelloFailed(HelloFailedCode),
    /// OFPET_BAD_REQUEST with its code.
    BadRequest(BadRequestCode),
    /// OFPET_BAD_ACTION with its code.
    BadAction(BadActionCode),
    /// OFPET_BAD_INSTRUCTION with its code.
    BadInstruction(BadInstructionCode),
    /// OFPET_BAD_MATCH with its code.
    BadMatch(BadMatchCode),
    /// OFPET_FLOW_MOD_FAILED with its code.
    FlowModFailed(FlowModFailedCode),
    /// OFPET_GROUP_MOD_FAILED with its code.
    GroupModFailed(GroupModFailedCode),
    /// OFPET_PORT_MOD_FAILED with its code.
    PortModFailed(PortModFailedCode),
    /// OFPET_TABLE_MOD_FAILED with its code.
    TableModFailed(TableModFailedCode),
    /// OFPET_QUEUE_OP_FAILED with its code.
    QueueOpFailed(QueueOpFailedCode),
    /// OFPET_SWITCH_CONFIG_FAILED with its code.
    SwitchConfigFailed(SwitchConfigFailedCode),
    /// OFPET_ROLE_REQUEST_FAILED with its code.
    RoleRequestFailed(RoleRequestFailedCode),
    /// OFPET_METER_MOD_FAILED with its code.
    MeterModFailed(MeterModFailedCode),
    /// OFPET_TABLE_FEATURES_FAILED with its code.
    TableFeaturesFailed(TableFeaturesFailedCode),
    /// OFPET_EXPERIMENTER; `experimenter` is `None` when the data is too short to hold it.
    Experimenter {
        /// Experimenter-defined error type (the wire `code`).
        exp_type: u16,
        /// Experimenter id.
        experimenter: Option<u32>,
    },
    /// A type, or a code within a known type, that OpenFlow 1.3 does not define.
    Unknown {
        /// Raw `ofp_error_msg.type`.
        err_type: u16,
        /// Raw `ofp_error_msg.code`.
        code: u16,
    },
}

impl ErrorCode {
    /// The wire `(type, code)` pair (`code` is `exp_type` for experimenter errors).
    pub const fn to_raw(self) -> (u16, u16) {
        let (t, c) = match self {
            ErrorCode::HelloFailed(c) => (ErrorType::HelloFailed, c as u16),
            ErrorCode::BadRequest(c) => (ErrorType::BadRequest, c as u16),
            ErrorCode::BadAction(c) => (ErrorType::BadAction, c as u16),
            ErrorCode::BadInstruction(c) => (ErrorType::BadInstruction, c as u16),
            ErrorCode::BadMatch(c) => (ErrorType::BadMatch, c as u16),
            ErrorCode::FlowModFailed(c) => (ErrorType::FlowModFailed, c as u16),
            ErrorCode::GroupModFailed(c) => (ErrorType::GroupModFailed, c as u16),
            ErrorCode::PortModFailed(c) => (ErrorType::PortModFailed, c as u16),
            ErrorCode::TableModFailed(c) => (ErrorType::TableModFailed, c as u16),
            ErrorCode::QueueOpFailed(c) => (ErrorType::QueueOpFailed, c as u16),
            ErrorCode::SwitchConfigFailed(c) => (ErrorType::SwitchConfigFailed, c as u16),
            ErrorCode::RoleRequestFailed(c) => (ErrorType::RoleRequestFailed, c as u16),
            ErrorCode::MeterModFailed(c) => (ErrorType::MeterModFailed, c as u16),
            ErrorCode::TableFeaturesFailed(c) => (ErrorType::TableFeaturesFailed, c as u16),
            ErrorCode::Experimenter { exp_type, .. } => (ErrorType::Experimenter, exp_type),
            ErrorCode::Unknown { err_type, code } => return (err_type, code),
        };
        (t as u16, c)
    }

    /// The typed view of a raw `(type, code)` pair; `experimenter` is only used for
    /// OFPET_EXPERIMENTER.
    pub const fn from_raw(err_type: u16, code: u16, experimenter: Option<u32>) -> Self {
        let unknown = ErrorCode::Unknown { err_type, code };
        macro_rules! typed {
            ($variant:ident, $codes:ident) => {
                match $codes::from_u16(code) {
                    Some(c) => ErrorCode::$variant(c),
                    None => unknown,
                }
            };
        }
        match ErrorType::from_u16(err_type) {
            Some(ErrorType::HelloFailed) => typed!(HelloFailed, HelloFailedCode),
            Some(ErrorType::BadRequest) => typed!(BadRequest, BadRequestCode),
            Some(ErrorType::BadAction) => typed!(BadAction, BadActionCode),
            Some(ErrorType::BadInstruction) => typed!(BadInstruction, BadInstructionCode),
            Some(ErrorType::BadMatch) => typed!(BadMatch, BadMatchCode),
            Some(ErrorType::FlowModFailed) => typed!(FlowModFailed, FlowModFailedCode),
            Some(ErrorType::GroupModFailed) => typed!(GroupModFailed, GroupModFailedCode),
            Some(ErrorType::PortModFailed) => typed!(PortModFailed, PortModFailedCode),
            Some(ErrorType::TableModFailed) => typed!(TableModFailed, TableModFailedCode),
            Some(ErrorType::QueueOpFailed) => typed!(QueueOpFailed, QueueOpFailedCode),
            Some(ErrorType::SwitchConfigFailed) => {
                typed!(SwitchConfigFailed, SwitchConfigFailedCode)
            }
            Some(ErrorType::RoleRequestFailed) => typed!(RoleRequestFailed, RoleRequestFailedCode),
            Some(ErrorType::MeterModFailed) => typed!(MeterModFailed, MeterModFailedCode),
            Some(ErrorType::TableFeaturesFailed) => {
                typed!(TableFeaturesFailed, TableFeaturesFailedCode)
            }
            Some(ErrorType::Experimenter) => ErrorCode::Experimenter {
                exp_type: code,
                experimenter,
            },
            None => unknown,
        }
    }

    /// The error type, if OpenFlow 1.3 defines it.
    pub const fn error_type(self) -> Option<ErrorType> {
        ErrorType::from_u16(self.to_raw().0)
    }

    /// `(spec name, meaning)` of the code, when it is a defined one.
    const fn names(self) -> Option<(&'static str, &'static str)> {
        Some(match self {
            ErrorCode::HelloFailed(c) => (c.spec_name(), c.meaning()),
            ErrorCode::BadRequest(c) => (c.spec_name(), c.meaning()),
            ErrorCode::BadAction(c) => (c.spec_name(), c.meaning()),
            ErrorCode::BadInstruction(c) => (c.spec_name(), c.meaning()),
            ErrorCode::BadMatch(c) => (c.spec_name(), c.meaning()),
            ErrorCode::FlowModFailed(c) => (c.spec_name(), c.meaning()),
            ErrorCode::GroupModFailed(c) => (c.spec_name(), c.meaning()),
            ErrorCode::PortModFailed(c) => (c.spec_name(), c.meaning()),
            ErrorCode::TableModFailed(c) => (c.spec_name(), c.meaning()),
            ErrorCode::QueueOpFailed(c) => (c.spec_name(), c.meaning()),
            ErrorCode::SwitchConfigFailed(c) => (c.spec_name(), c.meaning()),
            ErrorCode::RoleRequestFailed(c) => (c.spec_name(), c.meaning()),
            ErrorCode::MeterModFailed(c) => (c.spec_name(), c.meaning()),
            ErrorCode::TableFeaturesFailed(c) => (c.spec_name(), c.meaning()),
            ErrorCode::Experimenter { .. } | ErrorCode::Unknown { .. } => return None,
        })
    }
}

impl std::fmt::Display for ErrorCode {
    /// `OFPET_BAD_REQUEST/OFPBRC_BAD_TYPE (ofp_header.type not supported)`, or the numbers
    /// for what the spec does not define.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (*self, self.error_type(), self.names()) {
            (_, Some(t), Some((code, meaning))) => {
                write!(f, "{}/{code} ({meaning})", t.spec_name())
            }
            (
                ErrorCode::Experimenter {
                    exp_type,
                    experimenter,
                },
                _,
                _,
            ) => match experimenter {
                Some(id) => write!(
                    f,
                    "OFPET_EXPERIMENTER experimenter={id:#010x} exp_type={exp_type}"
                ),
                None => write!(
                    f,
                    "OFPET_EXPERIMENTER exp_type={exp_type} (no experimenter id)"
                ),
            },
            (_, Some(t), None) => {
                let (_, code) = self.to_raw();
                write!(f, "{}/code {code} (undefined code)", t.spec_name())
            }
            (_, None, _) => {
                let (t, code) = self.to_raw();
                write!(f, "error type {t:#06x} code {code} (undefined type)")
            }
        }
    }
}

impl ErrorMsg {
    /// An error of the given type and code; for [`ErrorCode::Experimenter`] the
    /// experimenter id (0 if `None`) is put in front of `data`.
    pub fn new(code: ErrorCode, data: Vec<u8>) -> Self {
        let (err_type, raw_code) = code.to_raw();
        match code {
            ErrorCode::Experimenter { experimenter, .. } => {
                let mut with_id = experimenter.unwrap_or(0).to_be_bytes().to_vec();
                with_id.extend_from_slice(&data);
                ErrorMsg {
                    err_type,
                    code: raw_code,
                    data: with_id,
                }
            }
            _ => ErrorMsg {
                err_type,
                code: raw_code,
                data,
            },
        }
    }

    /// OFPET_HELLO_FAILED with an ASCII explanation (non-ASCII bytes become `?`).
    pub fn hello_failed(code: HelloFailedCode, text: &str) -> Self {
        let ascii = text
            .bytes()
            .map(|b| if b.is_ascii() { b } else { b'?' })
            .collect();
        ErrorMsg::new(ErrorCode::HelloFailed(code), ascii)
    }

    /// An experimenter error (`struct ofp_error_experimenter_msg`).
    pub fn experimenter_error(exp_type: u16, experimenter: u32, data: &[u8]) -> Self {
        ErrorMsg::new(
            ErrorCode::Experimenter {
                exp_type,
                experimenter: Some(experimenter),
            },
            data.to_vec(),
        )
    }

    /// The error type, if OpenFlow 1.3 defines `err_type`.
    pub fn error_type(&self) -> Option<ErrorType> {
        ErrorType::from_u16(self.err_type)
    }

    /// Type and code, typed.
    pub fn error_code(&self) -> ErrorCode {
        ErrorCode::from_raw(self.err_type, self.code, self.experimenter())
    }

    /// For an experimenter error, its experimenter id (the first four bytes of `data`).
    pub fn experimenter(&self) -> Option<u32> {
        if self.err_type != ErrorType::Experimenter as u16 {
            return None;
        }
        match self.data.get(..4)? {
            &[a, b, c, d] => Some(u32::from_be_bytes([a, b, c, d])),
            _ => None,
        }
    }

    /// The payload after the type-specific fixed part: the experimenter's data for an
    /// experimenter error, `data` otherwise.
    pub fn payload(&self) -> &[u8] {
        if self.experimenter().is_some() {
            self.data.get(4..).unwrap_or_default()
        } else {
            &self.data
        }
    }

    /// One log line: the typed code, then the HELLO_FAILED text, or what the data holds
    /// (the type and xid of the failed request the switch echoed back).
    pub fn describe(&self) -> String {
        let code = self.error_code();
        let payload = self.payload();
        if let ErrorCode::HelloFailed(_) = code {
            let text = String::from_utf8_lossy(payload);
            return format!("{code}: {:?}", text.trim_end_matches('\0'));
        }
        match crate::header::peek_header(payload) {
            Some(h) => format!(
                "{code}, in reply to message type {} xid {} ({} bytes of it echoed)",
                h.msg_type,
                h.xid,
                payload.len()
            ),
            None => format!("{code}, {} bytes of data", payload.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_round_trip_of_every_defined_code() {
        for t in (0u16..=13).chain([0xffff]) {
            for c in 0u16..=20 {
                let code = ErrorCode::from_raw(t, c, Some(7));
                assert_eq!(code.to_raw(), (t, c), "{code:?}");
            }
        }
        assert_eq!(
            ErrorCode::from_raw(1, 1, None),
            ErrorCode::BadRequest(BadRequestCode::BadType)
        );
        assert_eq!(
            ErrorCode::from_raw(5, 99, None),
            ErrorCode::Unknown {
                err_type: 5,
                code: 99
            }
        );
    }

    #[test]
    fn describe_names_type_code_and_echoed_request() {
        let e = ErrorMsg {
            err_type: 1,
            code: 1,
            data: vec![4, 99, 0, 12, 0, 0, 0, 8, 1, 2, 3, 4],
        };
        assert_eq!(e.error_type(), Some(ErrorType::BadRequest));
        assert_eq!(
            e.describe(),
            "OFPET_BAD_REQUEST/OFPBRC_BAD_TYPE (ofp_header.type not supported), \
             in reply to message type 99 xid 8 (12 bytes of it echoed)"
        );
        let hello = ErrorMsg::hello_failed(HelloFailedCode::Incompatible, "only 1.3 ✓");
        assert_eq!(hello.data, b"only 1.3 ???");
        assert_eq!(
            hello.describe(),
            "OFPET_HELLO_FAILED/OFPHFC_INCOMPATIBLE (no compatible version): \"only 1.3 ???\""
        );
        let odd = ErrorMsg {
            err_type: 77,
            code: 3,
            data: vec![],
        };
        assert_eq!(
            odd.describe(),
            "error type 0x004d code 3 (undefined type), 0 bytes of data"
        );
        let odd_code = ErrorMsg {
            err_type: 4,
            code: 30,
            data: vec![],
        };
        assert_eq!(
            odd_code.describe(),
            "OFPET_BAD_MATCH/code 30 (undefined code), 0 bytes of data"
        );
    }

    #[test]
    fn experimenter_errors_carry_their_id_in_data() {
        let e = ErrorMsg::experimenter_error(3, 0x2320, b"xyz");
        assert_eq!((e.err_type, e.code), (0xffff, 3));
        assert_eq!(e.data, [0, 0, 0x23, 0x20, b'x', b'y', b'z']);
        assert_eq!(e.experimenter(), Some(0x2320));
        assert_eq!(e.payload(), b"xyz");
        assert_eq!(
            e.error_code(),
            ErrorCode::Experimenter {
                exp_type: 3,
                experimenter: Some(0x2320)
            }
        );
        assert_eq!(
            e.describe(),
            "OFPET_EXPERIMENTER experimenter=0x00002320 exp_type=3, 3 bytes of data"
        );
        let short = ErrorMsg {
            err_type: 0xffff,
            code: 1,
            data: vec![1],
        };
        assert_eq!(short.experimenter(), None);
        assert_eq!(short.payload(), [1]);
        assert!(short.describe().contains("(no experimenter id)"));
    }
}
