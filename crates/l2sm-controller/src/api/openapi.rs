//! The OpenAPI 3.0 document, generated from the route list the router is built from, with the
//! schemas written by hand next to it.

use super::ports::MAX_OWNER_IPS;
use serde_json::{json, Map, Value};

/// What a response carries.
#[derive(Debug, Clone)]
pub(crate) enum Content {
    /// No body.
    None,
    /// `text/plain`.
    Text,
    /// `image/svg+xml`.
    Svg,
    /// JSON of a component schema.
    Json(&'static str),
    /// JSON array of a component schema.
    JsonArray(&'static str),
}

/// One documented response.
#[derive(Debug, Clone)]
pub(crate) struct Resp {
    pub(crate) code: u16,
    pub(crate) description: &'static str,
    pub(crate) content: Content,
}

impl Resp {
    pub(crate) fn empty(code: u16, description: &'static str) -> Resp {
        Resp {
            code,
            description,
            content: Content::None,
        }
    }
    pub(crate) fn text(code: u16, description: &'static str) -> Resp {
        Resp {
            code,
            description,
            content: Content::Text,
        }
    }
    pub(crate) fn svg(code: u16, description: &'static str) -> Resp {
        Resp {
            code,
            description,
            content: Content::Svg,
        }
    }
    pub(crate) fn json(code: u16, description: &'static str, schema: &'static str) -> Resp {
        Resp {
            code,
            description,
            content: Content::Json(schema),
        }
    }
    pub(crate) fn json_array(code: u16, description: &'static str, schema: &'static str) -> Resp {
        Resp {
            code,
            description,
            content: Content::JsonArray(schema),
        }
    }
    pub(crate) fn error(code: u16, description: &'static str) -> Resp {
        Resp::json(code, description, "Error")
    }
}

/// One operation: method, path template (axum and OpenAPI share the `{name}` syntax) and its
/// documentation.
#[derive(Debug, Clone)]
pub(crate) struct RouteSpec {
    pub(crate) method: &'static str,
    pub(crate) path: &'static str,
    pub(crate) auth: bool,
    pub(crate) summary: &'static str,
    pub(crate) request: Option<&'static str>,
    pub(crate) responses: Vec<Resp>,
}

impl RouteSpec {
    /// A route without authentication.
    pub(crate) fn open(method: &'static str, path: &'static str, summary: &'static str) -> Self {
        RouteSpec {
            method,
            path,
            auth: false,
            summary,
            request: None,
            responses: Vec::new(),
        }
    }
    /// A route behind HTTP Basic authentication.
    pub(crate) fn authed(method: &'static str, path: &'static str, summary: &'static str) -> Self {
        RouteSpec {
            auth: true,
            ..RouteSpec::open(method, path, summary)
        }
    }
    pub(crate) fn request(mut self, schema: &'static str) -> Self {
        self.request = Some(schema);
        self
    }
    pub(crate) fn responses(mut self, responses: Vec<Resp>) -> Self {
        self.responses = responses;
        self
    }
    /// Adds the answers every route can give: 401 behind auth, 413 (body limit, every
    /// route), 500 when a change cannot be persisted.
    pub(crate) fn with_common_errors(mut self) -> Self {
        let mut add = |r: Resp| {
            if !self.responses.iter().any(|x| x.code == r.code) {
                self.responses.push(r);
            }
        };
        if self.auth {
            add(Resp::error(401, "missing or wrong credentials"));
        }
        add(Resp::error(413, "request body too large"));
        if self.method != "get" {
            add(Resp::error(500, "the change could not be persisted"));
        }
        self
    }
}

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn operation(spec: &RouteSpec) -> Value {
    let mut op = Map::new();
    op.insert("summary".into(), json!(spec.summary));
    let op_id = format!(
        "{}{}",
        spec.method,
        spec.path
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(|w| {
                let mut c = w.chars();
                c.next()
                    .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                    .unwrap_or_default()
            })
            .collect::<String>()
    );
    op.insert("operationId".into(), json!(op_id));
    let params: Vec<Value> = spec
        .path
        .split('/')
        .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| {
            let schema = match name {
                "dpid" => json!({"type": "string", "pattern": "^(of:)?[0-9a-f]{16}$"}),
                // Every route with a port in its path is about a member port.
                "port" => json!({"type": "string", "pattern": format!("^{POD_PORT}$")}),
                _ => json!({"type": "string"}),
            };
            json!({"name": name, "in": "path", "required": true, "schema": schema})
        })
        .collect();
    if !params.is_empty() {
        op.insert("parameters".into(), Value::Array(params));
    }
    if let Some(schema) = spec.request {
        op.insert(
            "requestBody".into(),
            json!({
                "required": true,
                "content": {"application/json": {"schema": schema_ref(schema)}},
            }),
        );
    }
    if spec.auth {
        op.insert("security".into(), json!([{"basic": []}]));
    } else {
        op.insert("security".into(), json!([]));
    }
    let mut responses = Map::new();
    for r in &spec.responses {
        let mut resp = Map::new();
        resp.insert("description".into(), json!(r.description));
        let content = match &r.content {
            Content::None => None,
            Content::Text => Some(json!({"text/plain": {"schema": {"type": "string"}}})),
            Content::Svg => Some(json!({"image/svg+xml": {"schema": {"type": "string"}}})),
            Content::Json(s) => Some(json!({"application/json": {"schema": schema_ref(s)}})),
            Content::JsonArray(s) => Some(
                json!({"application/json": {"schema": {"type": "array", "items": schema_ref(s)}}}),
            ),
        };
        if let Some(c) = content {
            resp.insert("content".into(), c);
        }
        responses.insert(r.code.to_string(), Value::Object(resp));
    }
    op.insert("responses".into(), Value::Object(responses));
    Value::Object(op)
}

/// The whole document for `routes`.
pub(crate) fn document(routes: &[RouteSpec], max_body: usize) -> Value {
    let mut paths = Map::new();
    for spec in routes {
        let entry = paths
            .entry(spec.path.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(ops) = entry {
            ops.insert(spec.method.to_string(), operation(spec));
        }
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "L2S-M controller",
            "version": env!("CARGO_PKG_VERSION"),
            "description": format!(
                "Upstream ONOS-vnets contract under /onos/vnets/api and the native API under \
                 /api/v1. Errors are JSON {{\"error\",\"code\",\"message\"}}; request bodies \
                 are limited to {max_body} bytes."
            ),
        },
        "paths": Value::Object(paths),
        "components": {
            "securitySchemes": {"basic": {"type": "http", "scheme": "basic"}},
            "schemas": schemas(),
        },
    })
}

/// Text without control characters (Unicode category Cc), as `char::is_control` tells.
const PRINTABLE: &str = "^[^\\x00-\\x1f\\x7f-\\x9f]*$";

/// An IPv4 address in dotted decimal (no leading zeros, as the parser wants), unanchored.
fn ipv4_text() -> String {
    let octet = "(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])";
    format!("({octet}\\.){{3}}{octet}")
}

/// An IPv6 address in any of RFC 4291's text forms (RFC 3986's grammar), unanchored.
fn ipv6_text() -> String {
    let h = "[0-9a-fA-F]{1,4}";
    let ls32 = format!("({h}:{h}|{})", ipv4_text());
    let forms = [
        format!("({h}:){{6}}{ls32}"),
        format!("::({h}:){{5}}{ls32}"),
        format!("({h})?::({h}:){{4}}{ls32}"),
        format!("(({h}:){{0,1}}{h})?::({h}:){{3}}{ls32}"),
        format!("(({h}:){{0,2}}{h})?::({h}:){{2}}{ls32}"),
        format!("(({h}:){{0,3}}{h})?::{h}:{ls32}"),
        format!("(({h}:){{0,4}}{h})?::{ls32}"),
        format!("(({h}:){{0,5}}{h})?::{h}"),
        format!("(({h}:){{0,6}}{h})?::"),
    ];
    format!("({})", forms.join("|"))
}

/// An IP address, either family.
fn ip_address() -> Value {
    json!({
        "type": "string",
        "pattern": format!("^({}|{})$", ipv4_text(), ipv6_text()),
        "example": "10.0.0.7",
    })
}

/// A unicast MAC, `xx:xx:xx:xx:xx:xx` (the group bit of the first byte clear).
const UNICAST_MAC: &str = "^[0-9a-fA-F][02468aceACE](:[0-9a-fA-F]{2}){5}$";

/// An address, with or without a prefix length.
fn address_or_cidr() -> Value {
    let (a, c) = (ip_address(), cidr());
    let strip = |v: &Value| {
        let p = v["pattern"].as_str().unwrap_or("^$");
        p[1..p.len() - 1].to_string()
    };
    json!({"type": "string", "pattern": format!("^({}|{})$", strip(&a), strip(&c)), "example": "10.0.0.7/24"})
}

/// An address with a prefix length valid for its family (`10.0.0.0/24`, `fd00::/64`).
fn cidr() -> Value {
    let v4 = format!("{}/(3[0-2]|[12]?[0-9])", ipv4_text());
    let v6 = format!("{}/(12[0-8]|1[01][0-9]|[1-9]?[0-9])", ipv6_text());
    json!({"type": "string", "pattern": format!("^({v4}|{v6})$"), "example": "10.0.0.0/24"})
}

/// A network name: a Kubernetes object name (DNS-1123 subdomain).
fn network_name() -> Value {
    json!({
        "type": "string",
        "minLength": 1,
        "maxLength": 253,
        "pattern": "^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
    })
}

/// A pod port number, 1 to 57343 ([`l2sm_pipeline::ids::is_pod_port`]): what members and
/// mirrors may be; higher numbers belong to inter-switch links.
const POD_PORT: &str =
    "([1-9][0-9]{0,3}|[1-4][0-9]{4}|5[0-6][0-9]{3}|57[0-2][0-9]{2}|573[0-3][0-9]|5734[0-3])";

/// Upstream's NetworkDTO as one route reads it: `required` fields must be there and valid,
/// the other fields it `checks` may be null; fields the route ignores only need their type.
/// Unknown fields are refused.
fn dto(required: &[&str], checks: &[&str], description: &str) -> Value {
    // Members and mirrors: pod ports only.
    let port_id = json!({"type": "string", "pattern": format!("^of:[0-9a-f]{{16}}/{POD_PORT}$")});
    let field = |name: &str, schema: Value| -> Value {
        if required.contains(&name) {
            schema
        } else if checks.contains(&name) {
            let mut s = schema;
            s["nullable"] = json!(true);
            s
        } else {
            // Ignored, but still read with its type.
            let mut s = match name {
                "networkEndpoints" => json!({"type": "array", "items": {"type": "string"}}),
                _ => json!({"type": "string"}),
            };
            s["nullable"] = json!(true);
            s
        }
    };
    json!({
        "description": description,
        "type": "object",
        "additionalProperties": false,
        "required": required,
        "properties": {
            "networkId": field("networkId", network_name()),
            "networkEndpoints": field("networkEndpoints", json!({"type": "array", "items": port_id})),
            "tunnelList": {"type": "array", "items": {"type": "integer", "format": "int64"}, "nullable": true},
            "mirrorPort": field("mirrorPort", port_id.clone()),
        },
    })
}

fn schemas() -> Value {
    let port_id = json!({"type": "string", "pattern": "^of:[0-9a-f]{16}/[1-9][0-9]{0,8}$", "example": "of:a30b6e801ab54336/3"});
    let dpid = json!({"type": "string", "pattern": "^of:[0-9a-f]{16}$"});
    let cidr = cidr();
    let name = network_name();
    let nullable_string = json!({"type": "string", "nullable": true});
    let binding = json!({
        "type": "object",
        "description": "what port security admits (absent without it)",
        "required": ["mac", "addresses"],
        "properties": {
            "mac": {"type": "string", "nullable": true, "description": "null: not known yet, nothing is admitted"},
            "addresses": {"type": "array", "items": ip_address()},
        },
    });
    let owner_mac = json!({"type": "string", "nullable": true, "pattern": UNICAST_MAC, "description": "MAC of the pod interface: with port security the only source MAC admitted"});
    let owner_ips = json!({"type": "array", "maxItems": MAX_OWNER_IPS, "items": address_or_cidr(), "description": "addresses of the pod interface: with port security the source addresses admitted (with the port's IPAM allocations; unspecified, multicast and broadcast ones never)"});
    let owner_security = json!({"type": "boolean", "nullable": true, "description": "this port's port security, overriding its network's"});
    json!({
        "Object": {"type": "object"},
        "Error": {
            "type": "object",
            "required": ["error", "code", "message"],
            "properties": {
                "error": {"type": "string"},
                "code": {"type": "integer"},
                "message": {"type": "string"},
            },
        },
        "NetworkDto": dto(&["networkId"], &["mirrorPort"], "Upstream NetworkDTO (create)."),
        "PortsDto": dto(&["networkId", "networkEndpoints"], &[], "Upstream NetworkDTO (ports)."),
        "MirrorDto": dto(&["networkId", "mirrorPort"], &[], "Upstream NetworkDTO (mirror port)."),
        "CreateNetwork": {
            "type": "object",
            "description": "IPAM settings: at most one IPv4 and one IPv6 CIDR, pod ranges inside \
                            them; podRanges and exclude need cidrs.",
            "additionalProperties": false,
            "required": ["name"],
            "properties": {
                "name": name,
                "cidrs": {"type": "array", "items": cidr, "maxItems": 2},
                "podRanges": {"type": "array", "items": cidr},
                "exclude": {"type": "array", "items": ip_address()},
                "portSecurity": {"type": "boolean", "description": "member ports send only from their reported MAC and addresses (a port's owner may override it); creating an existing network with the other setting is a conflict (409)"},
                "limits": schema_ref("NetworkLimits"),
            },
            // podRanges and exclude only with cidrs.
            "anyOf": [
                {"required": ["cidrs"], "properties": {"cidrs": {"minItems": 1}}},
                {"properties": {"podRanges": {"maxItems": 0}, "exclude": {"maxItems": 0}}},
            ],
        },
        "Ipam": {
            "type": "object",
            "properties": {
                "cidrs": {"type": "array", "items": cidr},
                "podRanges": {"type": "array", "items": cidr},
                "exclude": {"type": "array", "items": ip_address()},
                "allocations": {"type": "object", "additionalProperties": {"type": "string"}, "description": "address -> owner"},
                "ports": {"type": "object", "additionalProperties": port_id, "description": "owner -> port"},
            },
        },
        "Network": {
            "type": "object",
            "required": ["name", "vni", "endpoints"],
            "properties": {
                "name": {"type": "string"},
                "vni": {"type": "integer", "minimum": 1},
                "vlan": {"type": "integer", "nullable": true},
                "endpoints": {"type": "array", "items": port_id},
                "mirrorPort": nullable_string,
                "ipam": schema_ref("Ipam"),
                "portSecurity": {"type": "boolean"},
                "limits": schema_ref("NetworkLimits"),
                "dns": schema_ref("NetworkDns"),
            },
        },
        "NetworkDns": {
            "type": "object",
            "description": "The network's own DNS server (networks with a CIDR): a \
                            reserved address of the CIDR, never allocated to a pod, whose ARP \
                            and UDP port 53 the switches hand to the controller (docs/dns.md).",
            "required": ["mac"],
            "properties": {
                "address": {"type": "string", "format": "ipv4", "description": "with an IPv4 CIDR: its last usable host"},
                "address6": {"type": "string", "format": "ipv6", "description": "with an IPv6 CIDR: its last address"},
                "mac": {"type": "string", "pattern": "^([0-9a-f]{2}:){5}[0-9a-f]{2}$"},
            },
        },
        "NetworkLimits": {
            "type": "object",
            "description": "Abuse limits of the network's pod ports; a field left out takes its \
                            default, 0 turns a limit off.",
            "additionalProperties": false,
            "properties": {
                "macLimit": {
                    "type": "integer", "minimum": 0,
                    "maximum": l2sm_api::v1::NetworkLimits::MAX_MAC_LIMIT,
                    "default": l2sm_pipeline::limits::DEFAULT_MAC_LIMIT,
                    "description": "MACs learned behind each pod port at most; frames from further source MACs are dropped and counted",
                },
                "floodPps": {
                    "type": "integer", "minimum": 0,
                    "maximum": l2sm_api::v1::NetworkLimits::MAX_FLOOD,
                    "default": l2sm_pipeline::limits::DEFAULT_FLOOD_PPS,
                    "description": "broadcast, multicast and unknown-unicast packets/s each pod port may flood",
                },
                "floodBurst": {
                    "type": "integer", "minimum": 0,
                    "maximum": l2sm_api::v1::NetworkLimits::MAX_FLOOD,
                    "default": l2sm_pipeline::limits::DEFAULT_FLOOD_BURST,
                    "description": "burst of the flood meter, packets",
                },
            },
        },
        "AllocationRequest": {
            "type": "object",
            "additionalProperties": false,
            "required": ["owner"],
            "properties": {
                "owner": {"type": "string", "minLength": 1},
                "ips": {"type": "array", "items": cidr},
                "port": {"type": "string", "pattern": "^of:[0-9a-f]{16}/[1-9][0-9]{0,8}$", "nullable": true},
            },
        },
        "ReleaseRequest": {
            "type": "object",
            "additionalProperties": false,
            "required": ["owner"],
            "properties": {"owner": {"type": "string"}},
        },
        "Allocation": {
            "type": "object",
            "required": ["ips"],
            "properties": {"ips": {"type": "array", "items": cidr}},
        },
        "Released": {
            "type": "object",
            "required": ["released"],
            "properties": {"released": {"type": "integer", "minimum": 0}},
        },
        "GcRequest": {
            "type": "object",
            "additionalProperties": false,
            "required": ["ownerPrefix", "validOwners"],
            "properties": {
                // Empty or blank would select every owner: refused with 400.
                "ownerPrefix": {"type": "string", "minLength": 1, "pattern": "\\S"},
                "validOwners": {"type": "array", "items": {"type": "string"}},
            },
        },
        "Switch": {
            "type": "object",
            "required": ["id", "peer", "ports", "flows", "groups"],
            "properties": {
                "id": dpid,
                "peer": {"type": "string"},
                "ports": {"type": "array", "items": {
                    "type": "object",
                    "properties": {
                        "number": {"type": "integer"},
                        "name": {"type": "string"},
                        "kind": {"type": "string", "enum": ["port", "tunnel", "trunk"]},
                        "live": {"type": "boolean"},
                    },
                }},
                "flows": {"type": "integer"},
                "groups": {"type": "integer"},
            },
        },
        "Link": {
            "type": "object",
            "required": ["a", "aPort", "b", "bPort", "kind"],
            "properties": {
                "a": dpid,
                "aPort": {"type": "integer"},
                "b": dpid,
                "bPort": {"type": "integer"},
                "kind": {"type": "string", "enum": ["tunnel", "trunk"]},
                "live": {"type": "boolean"},
                "state": {"type": "string", "enum": ["up", "port down", "no probes"]},
                "probed": {"type": "boolean"},
                "id": {"type": "string"},
                "ab": {"$ref": "#/components/schemas/LinkHealth"},
                "ba": {"$ref": "#/components/schemas/LinkHealth"},
            },
        },
        "LinkHealth": {
            "type": "object",
            "required": ["lost", "judged", "samples"],
            "properties": {
                "latencyMs": {"type": "number", "nullable": true, "minimum": 0},
                "jitterMs": {"type": "number", "nullable": true, "minimum": 0},
                "loss": {"type": "number", "nullable": true, "minimum": 0, "maximum": 1},
                "lost": {"type": "integer", "minimum": 0},
                "judged": {"type": "integer", "minimum": 0},
                "samples": {"type": "integer", "minimum": 0},
                "bitsPerSecond": {"type": "number", "nullable": true, "minimum": 0},
                "bytes": {"type": "integer", "nullable": true, "minimum": 0},
                "errors": {"type": "integer", "nullable": true, "minimum": 0},
                "dropped": {"type": "integer", "nullable": true, "minimum": 0},
            },
        },
        "Port": {
            "type": "object",
            "required": ["id", "switch", "port", "name", "kind", "up", "mirror"],
            "properties": {
                "id": port_id,
                "switch": dpid,
                "port": {"type": "integer"},
                "name": {"type": "string"},
                "kind": {"type": "string", "enum": ["port", "tunnel", "trunk"]},
                "up": {"type": "boolean"},
                "network": nullable_string,
                "mirror": {"type": "boolean"},
                "mirrorOf": nullable_string,
                "pod": nullable_string,
                "attachment": nullable_string,
                "interface": nullable_string,
            },
        },
        "PortOwner": {
            "type": "object",
            "additionalProperties": false,
            "required": ["attachment"],
            "properties": {
                "pod": {"type": "string", "nullable": true, "description": "namespace/name", "maxLength": 512, "pattern": PRINTABLE},
                "attachment": {"type": "string", "minLength": 1, "maxLength": 512, "pattern": PRINTABLE},
                "interface": {"type": "string", "maxLength": 512, "pattern": PRINTABLE},
                "mac": owner_mac,
                "ips": owner_ips,
                "portSecurity": owner_security,
            },
        },
        "SettleRequest": {
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "timeoutMs": {"type": "integer", "minimum": 0, "format": "int64", "description": "at most 10000; default 2000"},
            },
        },
        "Settled": {
            "type": "object",
            "required": ["settled", "switches"],
            "properties": {
                "settled": {"type": "boolean"},
                "switches": {"type": "integer", "minimum": 0},
            },
        },
        "WaitRequest": {
            "type": "object",
            "additionalProperties": false,
            "required": ["network"],
            "properties": {
                "network": {"type": "string"},
                "timeoutMs": {"type": "integer", "minimum": 0, "format": "int64", "description": "at most 10000; default 2000"},
            },
        },
        "Programmed": {
            "type": "object",
            "required": ["programmed", "pendingSwitches"],
            "properties": {
                "programmed": {"type": "boolean"},
                "pendingSwitches": {"type": "array", "items": dpid},
            },
        },
        "MirrorRequest": {
            "type": "object",
            "additionalProperties": false,
            "required": ["network"],
            "properties": {
                "network": {"type": "string"},
            },
        },
        "MoveRequest": {
            "type": "object",
            "additionalProperties": false,
            "required": ["from", "to"],
            "properties": {
                "from": {"type": "string"},
                "to": {"type": "string"},
            },
        },
        "Moved": {
            "type": "object",
            "required": ["moved", "network"],
            "properties": {
                "moved": {"type": "boolean", "description": "false when it was in the target already"},
                "network": {"type": "string"},
            },
        },
        "Attachment": {
            "type": "object",
            "required": ["network", "port", "vni", "connected", "ips"],
            "properties": {
                "network": {"type": "string"},
                "port": port_id,
                "vni": {"type": "integer"},
                "vlan": {"type": "integer", "nullable": true},
                "connected": {"type": "boolean"},
                "name": nullable_string,
                "owner": nullable_string,
                "ips": {"type": "array", "items": cidr},
                "pod": {"type": "string", "nullable": true, "description": "namespace/name, as the agent reported"},
                "attachment": nullable_string,
                "interface": nullable_string,
                "portSecurity": {"type": "boolean"},
                "mac": nullable_string,
                "binding": binding,
            },
        },
        "Action": {
            "type": "object",
            "required": ["type"],
            "properties": {
                "type": {"type": "string", "enum": ["output", "group", "set_field", "push_vlan", "pop_vlan", "resubmit", "learn", "other"]},
            },
        },
        "Instruction": {
            "type": "object",
            "required": ["type"],
            "properties": {
                "type": {"type": "string", "enum": ["goto_table", "apply_actions", "write_actions", "clear_actions", "write_metadata", "meter", "other"]},
                "table": {"type": "integer"},
                "meter": {"type": "integer", "description": "meter id (type meter)"},
                "actions": {"type": "array", "items": schema_ref("Action")},
            },
        },
        "Flow": {
            "type": "object",
            "required": ["table", "priority", "cookie", "match", "instructions"],
            "properties": {
                "table": {"type": "integer"},
                "priority": {"type": "integer"},
                "cookie": {"type": "string"},
                "match": {"type": "array", "items": {"type": "string"}},
                "instructions": {"type": "array", "items": schema_ref("Instruction")},
            },
        },
        "SwitchFlows": {
            "type": "object",
            "required": ["switch", "flows"],
            "properties": {
                "switch": dpid,
                "flows": {"type": "array", "items": schema_ref("Flow")},
            },
        },
        "Group": {
            "type": "object",
            "required": ["groupId", "type", "buckets"],
            "properties": {
                "groupId": {"type": "integer"},
                "type": {"type": "string", "enum": ["all"]},
                "buckets": {"type": "array", "items": {"type": "array", "items": schema_ref("Action")}},
            },
        },
        "SwitchGroups": {
            "type": "object",
            "required": ["switch", "groups"],
            "properties": {
                "switch": dpid,
                "groups": {"type": "array", "items": schema_ref("Group")},
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::TestApi;
    use proptest::strategy::{Strategy as _, ValueTree as _};
    use proptest::test_runner::TestRunner;
    use serde_json::Value;

    /// `count` strings matching a pattern of the document (anchored at both ends, as all of
    /// them are), drawn by proptest from the same seed every run.
    fn matching(pattern: &str, count: usize) -> Vec<String> {
        let inner = pattern
            .strip_prefix('^')
            .and_then(|p| p.strip_suffix('$'))
            .unwrap_or_else(|| panic!("{pattern} is not anchored"));
        let strategy =
            proptest::string::string_regex(inner).unwrap_or_else(|e| panic!("{pattern}: {e}"));
        let mut runner = TestRunner::deterministic();
        (0..count)
            .map(|_| strategy.new_tree(&mut runner).unwrap().current())
            .collect()
    }

    fn pattern(schema: &Value) -> &str {
        schema["pattern"]
            .as_str()
            .unwrap_or_else(|| panic!("no pattern in {schema}"))
    }

    /// What the document calls valid, the controller accepts: addresses and CIDRs parse as
    /// the request bodies read them, port numbers in a path are port numbers (schemathesis
    /// found CIDR patterns that let `0/000` through, and ten-digit port numbers), and owner
    /// fields as long as `maxLength` characters are not refused for their bytes.
    #[tokio::test]
    async fn values_the_document_allows_are_accepted() {
        let api = TestApi::new();
        let doc: Value =
            serde_json::from_str(&api.send("GET", "/api/v1/openapi.json", None, false).await.1)
                .unwrap();
        let schemas = &doc["components"]["schemas"];
        let create = &schemas["CreateNetwork"]["properties"];
        for schema in [
            &create["cidrs"]["items"],
            &create["podRanges"]["items"],
            &schemas["AllocationRequest"]["properties"]["ips"]["items"],
        ] {
            for text in matching(pattern(schema), 500) {
                assert!(text.parse::<ipnet::IpNet>().is_ok(), "CIDR {text:?}");
            }
        }
        for text in matching(pattern(&create["exclude"]["items"]), 500) {
            assert!(text.parse::<std::net::IpAddr>().is_ok(), "address {text:?}");
        }
        // Reported MACs and addresses: every one the document allows is recorded.
        let fields = &schemas["PortOwner"]["properties"];
        api.req("POST", "/api/v1/networks", Some(r#"{"name":"own"}"#))
            .await;
        let path = "/api/v1/switches/of:00000000000000ab/ports/7/owner";
        let join = r#"{"networkId":"own","networkEndpoints":["of:00000000000000ab/7"]}"#;
        assert_eq!(
            api.req("POST", "/onos/vnets/api/port", Some(join)).await.0,
            204
        );
        let macs = matching(pattern(&fields["mac"]), 200);
        let ips = matching(pattern(&fields["ips"]["items"]), 200);
        for (mac, ip) in macs.iter().zip(&ips) {
            let body = serde_json::json!({"attachment": "a", "mac": mac, "ips": [ip]});
            let (code, answer) = api.req("PUT", path, Some(&body.to_string())).await;
            assert_eq!(code, 204, "{mac:?} {ip:?}: {answer}");
        }
        // Port numbers in the path: every one the document allows reaches the handler's
        // membership check (409: not a member), none is refused as malformed (400).
        let owner = &doc["paths"]["/api/v1/switches/{dpid}/ports/{port}/owner"]["put"];
        let param = |name: &str| {
            let params = owner["parameters"].as_array().unwrap();
            let p = params.iter().find(|p| p["name"] == name).unwrap();
            pattern(&p["schema"]).to_string()
        };
        let dpids = matching(&param("dpid"), 100);
        for (dpid, port) in dpids.iter().zip(matching(&param("port"), 100)) {
            let path = format!("/api/v1/switches/{dpid}/ports/{port}/owner");
            let (code, text) = api.req("PUT", &path, Some(r#"{"attachment":"a"}"#)).await;
            assert_eq!(code, 409, "{path}: {text}");
        }
        // Owner fields: printable text of up to maxLength characters, whatever its bytes.
        let fields = &schemas["PortOwner"]["properties"];
        let max = fields["attachment"]["maxLength"].as_u64().unwrap() as usize;
        let printable = matching(pattern(&fields["attachment"]), 200);
        let long = "é".repeat(max);
        for text in printable.iter().chain([&long]) {
            if text.is_empty() || text.chars().count() > max {
                continue;
            }
            let body = serde_json::json!({"attachment": text, "pod": text, "interface": text});
            let path = "/api/v1/switches/of:00000000000000aa/ports/1/owner";
            let (code, answer) = api.req("PUT", path, Some(&body.to_string())).await;
            assert_eq!(code, 409, "{text:?}: {answer}");
        }
    }

    #[test]
    fn the_pod_port_pattern_is_exactly_the_pod_port_range() {
        let re = regex::Regex::new(&format!("^{}$", super::POD_PORT)).unwrap();
        for n in 0u32..70_000 {
            assert_eq!(
                re.is_match(&n.to_string()),
                l2sm_pipeline::ids::is_pod_port(n),
                "port {n}"
            );
        }
        assert!(!re.is_match("01"), "no leading zeros");
    }

    #[tokio::test]
    async fn the_openapi_document_describes_exactly_what_the_router_serves() {
        let api = TestApi::new();
        let create = r#"{"name":"doc","cidrs":["10.3.0.0/24"]}"#;
        assert_eq!(
            api.req("POST", "/api/v1/networks", Some(create)).await.0,
            201
        );
        let (code, text) = api.send("GET", "/api/v1/openapi.json", None, false).await;
        assert_eq!(code, 200);
        let doc: serde_json::Value = serde_json::from_str(&text).expect("the document is JSON");
        assert_eq!(doc["openapi"], "3.0.3");
        let paths = doc["paths"].as_object().unwrap();
        assert!(paths.len() >= 15, "{} paths", paths.len());
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        // Every $ref resolves.
        for r in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = r.split('"').next().unwrap();
            assert!(schemas.contains_key(name), "dangling $ref {name}");
        }
        let mut operations = 0;
        for (path, ops) in paths {
            assert!(
                path.starts_with("/api/v1") || path.starts_with("/onos/") || path == "/metrics",
                "{path}"
            );
            let concrete = path
                .replace("{network_id}", "doc")
                .replace("{dpid}", "of:00000000000000aa");
            let ops = ops.as_object().unwrap();
            for method in ["get", "post", "delete", "put", "patch"] {
                let upper = method.to_uppercase();
                let Some(op) = ops.get(method) else {
                    // A method the document does not list is not served there.
                    let (code, _) = api.req(&upper, &concrete, None).await;
                    assert_eq!(code, 405, "{upper} {path} is served but not documented");
                    continue;
                };
                operations += 1;
                let responses = op["responses"].as_object().unwrap();
                assert!(!responses.is_empty(), "{upper} {path} has no responses");
                let body = op.get("requestBody").map(|_| "{}");
                let (code, text) = api.req(&upper, &concrete, body).await;
                assert!(
                    responses.contains_key(&code.to_string()),
                    "{upper} {path} answered {code}, not documented: {text}"
                );
                let secured = !op["security"].as_array().unwrap().is_empty();
                if secured {
                    let (code, _) = api.send(&upper, &concrete, body, false).await;
                    assert_eq!(code, 401, "{upper} {path} without credentials");
                    assert!(responses.contains_key("401"));
                }
            }
        }
        assert!(operations >= 20, "{operations} operations");
    }
}
