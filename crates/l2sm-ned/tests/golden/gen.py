#!/usr/bin/env python3
"""Writes goldens.txt: protobuf bytes of nedpb (and l2sm.edge.v1) messages made by Google's
protobuf runtime.

No protoc: the descriptors below are ned.proto and edge.proto (same directory) spelled as
FileDescriptorProtos; python's `google.protobuf` (pip install protobuf; 7.36.2 was used)
then encodes and decodes with the same rules as protobuf-go's generated code.
Run from this directory: python3 gen.py > goldens.txt

Line formats (tab-separated):
  encode  MESSAGE  JSON-FIELDS  HEX        the encoding of the message with those fields
  decode  MESSAGE  HEX  JSON-FIELDS|ERROR  what parsing those bytes yields
"""
import json
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

F = descriptor_pb2.FieldDescriptorProto
fd = descriptor_pb2.FileDescriptorProto(name="ned.proto", package="nedpb", syntax="proto3")
def msg(name, *fields):
    m = fd.message_type.add(name=name)
    for (fname, num, ftype) in fields:
        m.field.add(name=fname, number=num, type=ftype, label=F.LABEL_OPTIONAL, json_name=fname)
msg("CreateVxlanRequest", ("ip_address", 1, F.TYPE_STRING))
msg("CreateVxlanResponse", ("success", 1, F.TYPE_BOOL), ("message", 2, F.TYPE_STRING))
msg("AttachInterfaceRequest", ("interface_name", 1, F.TYPE_STRING))
msg("AttachInterfaceResponse", ("interface_num", 1, F.TYPE_INT64), ("node_name", 2, F.TYPE_STRING))
pool = descriptor_pool.DescriptorPool()
pool.Add(fd)
cls = {n: message_factory.GetMessageClass(pool.FindMessageTypeByName("nedpb." + n))
       for n in ["CreateVxlanRequest", "CreateVxlanResponse", "AttachInterfaceRequest", "AttachInterfaceResponse"]}
# edge.proto: our own service for the cluster-to-edge hop.
fd = descriptor_pb2.FileDescriptorProto(name="edge.proto", package="l2sm.edge.v1", syntax="proto3")
msg("ConnectNetworkRequest", ("network", 1, F.TYPE_STRING), ("cluster_bridge", 2, F.TYPE_STRING))
msg("ConnectNetworkResponse", ("edge_port", 1, F.TYPE_INT64), ("cluster_port", 2, F.TYPE_INT64),
    ("node_name", 3, F.TYPE_STRING))
msg("DisconnectNetworkRequest", ("network", 1, F.TYPE_STRING))
msg("DisconnectNetworkResponse")
pool.Add(fd)
for n in ["ConnectNetworkRequest", "ConnectNetworkResponse", "DisconnectNetworkRequest", "DisconnectNetworkResponse"]:
    cls[n] = message_factory.GetMessageClass(pool.FindMessageTypeByName("l2sm.edge.v1." + n))

def fields(m):
    return {f.name: getattr(m, f.name) for f in m.DESCRIPTOR.fields}

encode = [
    ("CreateVxlanRequest", {"ip_address": "10.0.0.2"}),
    ("CreateVxlanRequest", {"ip_address": ""}),
    ("CreateVxlanRequest", {"ip_address": "fd00::1"}),
    ("CreateVxlanResponse", {"success": False, "message": "VxLAN with IP 10.0.0.2 created successfully"}),
    ("CreateVxlanResponse", {"success": True, "message": "tunnel vxlan-ba17f to 10.0.0.2 ready"}),
    ("CreateVxlanResponse", {"success": False, "message": ""}),
    ("AttachInterfaceRequest", {"interface_name": "br1"}),
    ("AttachInterfaceRequest", {"interface_name": "br10"}),
    ("AttachInterfaceResponse", {"interface_num": 1, "node_name": "l2sm-worker"}),
    ("AttachInterfaceResponse", {"interface_num": 300, "node_name": "n\u00f6de"}),
    ("AttachInterfaceResponse", {"interface_num": 0, "node_name": ""}),
    ("AttachInterfaceResponse", {"interface_num": -1, "node_name": "edge"}),
    ("AttachInterfaceResponse", {"interface_num": 9223372036854775807, "node_name": ""}),
    ("AttachInterfaceResponse", {"interface_num": -9223372036854775808, "node_name": "x" * 200}),
    ("ConnectNetworkRequest", {"network": "inter", "cluster_bridge": "br-1a2b3c4d"}),
    ("ConnectNetworkRequest", {"network": "", "cluster_bridge": ""}),
    ("ConnectNetworkRequest", {"network": "r\u00e9seau", "cluster_bridge": ""}),
    ("ConnectNetworkResponse", {"edge_port": 1, "cluster_port": 53249, "node_name": "c1-n1"}),
    ("ConnectNetworkResponse", {"edge_port": 4095, "cluster_port": 57343, "node_name": ""}),
    ("ConnectNetworkResponse", {"edge_port": 0, "cluster_port": 0, "node_name": ""}),
    ("ConnectNetworkResponse", {"edge_port": -1, "cluster_port": 9223372036854775807, "node_name": "n"}),
    ("DisconnectNetworkRequest", {"network": "inter"}),
    ("DisconnectNetworkRequest", {"network": ""}),
    ("DisconnectNetworkResponse", {}),
]
for name, values in encode:
    m = cls[name](**values)
    print("encode", name, json.dumps(values, ensure_ascii=False), m.SerializeToString().hex(), sep="\t")

decode = [
    # last value wins for a repeated scalar field
    ("CreateVxlanRequest", "0a01610a0162"),
    ("AttachInterfaceResponse", "0801080212016112016208ff01"),
    # unknown fields of every wire type are skipped (varint, fixed64, bytes, group, fixed32)
    ("AttachInterfaceRequest", "1801210102030405060708220278790a03627231" + "2b0801" + "2c" + "2d01020304"),
    ("CreateVxlanResponse", "08021202686980010a"),
    # a bool encoded as a multi-byte varint is true
    ("CreateVxlanResponse", "088001"),
    # int64 from a 10-byte varint
    ("AttachInterfaceResponse", "08ffffffffffffffffff01"),
    # errors
    ("CreateVxlanRequest", "0a05616263"),          # length beyond the end
    ("CreateVxlanRequest", "0a"),                  # tag without value
    ("AttachInterfaceResponse", "08ffffffffffffffffffff01"),  # 11-byte varint
    ("CreateVxlanRequest", "0a02c328"),            # invalid UTF-8 in a string
    ("CreateVxlanRequest", "0201"),                # field number 0
    ("CreateVxlanRequest", "0e"),                  # wire type 6
    ("CreateVxlanRequest", "0f"),                  # wire type 7
    ("CreateVxlanRequest", "1c"),                  # end group without start
    ("CreateVxlanRequest", "1b"),                  # group never ended
    ("CreateVxlanRequest", "1b2c"),                # group ended with another number
    # edge.proto: last value wins, unknown fields skipped, fields in any order
    ("ConnectNetworkRequest", "12026272" + "0a0161" + "0a0162" + "1801"),
    ("ConnectNetworkResponse", "1a01781001080210031a0179"),
    ("DisconnectNetworkResponse", "0a03616263" + "0801"),
    ("DisconnectNetworkResponse", ""),
    ("ConnectNetworkResponse", "10ffffffffffffffffff01"),
    ("DisconnectNetworkRequest", "0a02c328"),      # invalid UTF-8
    ("DisconnectNetworkResponse", "0a05616263"),   # unknown field beyond the end
    ("ConnectNetworkRequest", "12"),               # tag without value
]
for name, hexin in decode:
    m = cls[name]()
    try:
        m.ParseFromString(bytes.fromhex(hexin))
        out = json.dumps(fields(m), ensure_ascii=False)
    except DecodeError:
        out = "ERROR"
    print("decode", name, hexin, out, sep="\t")
