//! Database schemas (RFC 7047 §3.2), reduced to what a client checks at startup.
//!
//! Checking the schema once, right after connecting, turns "the column does not exist"
//! from a per-transaction syntax error deep in some reconcile loop into one clear
//! startup failure (e.g. an older Open vSwitch without `mtu_request`).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::Error;

/// Columns every table has without the schema listing them (RFC 7047 §3.2).
const IMPLICIT_COLUMNS: [&str; 2] = ["_uuid", "_version"];

/// A database schema as returned by `get_schema` (RFC 7047 §4.1.2).
#[derive(Debug, Clone, PartialEq)]
pub struct Schema {
    /// Database name (for example `Open_vSwitch`).
    pub name: String,
    /// Schema version (`major.minor.patch`; empty if the server sent none).
    pub version: String,
    /// Tables by name.
    pub tables: BTreeMap<String, TableSchema>,
}

/// One table of a [`Schema`].
#[derive(Debug, Clone, PartialEq)]
pub struct TableSchema {
    /// Column name to its `<type>` (the column schema's `"type"` member, §3.2).
    pub columns: BTreeMap<String, Value>,
}

impl Schema {
    /// Parses a `<database-schema>` object.
    pub fn from_json(v: &Value) -> Result<Schema, Error> {
        let field = |key: &str| {
            v.get(key)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| Error::Schema(format!("schema has no string \"{key}\"")))
        };
        let name = field("name")?;
        // "version" is mandatory for databases served by ovsdb-server, but RFC 7047 makes
        // it optional; treat absence as empty rather than refusing the schema.
        let version = v
            .get("version")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let tables_json = v
            .get("tables")
            .and_then(Value::as_object)
            .ok_or_else(|| Error::Schema(format!("schema {name} has no \"tables\" object")))?;
        let mut tables = BTreeMap::new();
        for (tname, t) in tables_json {
            let cols = t.get("columns").and_then(Value::as_object).ok_or_else(|| {
                Error::Schema(format!("table {tname} of schema {name} has no \"columns\""))
            })?;
            let mut columns = BTreeMap::new();
            for (cname, c) in cols {
                let ty = c.get("type").ok_or_else(|| {
                    Error::Schema(format!(
                        "column {tname}.{cname} of schema {name} has no type"
                    ))
                })?;
                columns.insert(cname.clone(), ty.clone());
            }
            tables.insert(tname.clone(), TableSchema { columns });
        }
        Ok(Schema {
            name,
            version,
            tables,
        })
    }

    /// Fails with [`Error::Schema`] naming the first missing table or column. The implicit
    /// `_uuid` and `_version` columns always count as present.
    pub fn require(&self, table: &str, columns: &[&str]) -> Result<(), Error> {
        let t = self.tables.get(table).ok_or_else(|| {
            Error::Schema(format!(
                "database {} (schema version {}) has no table {table}",
                self.name, self.version
            ))
        })?;
        match columns
            .iter()
            .find(|c| !t.columns.contains_key(**c) && !IMPLICIT_COLUMNS.contains(c))
        {
            Some(missing) => Err(Error::Schema(format!(
                "database {} (schema version {}) has no column {table}.{missing}",
                self.name, self.version
            ))),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Value {
        json!({
            "name": "Open_vSwitch",
            "version": "8.3.1",
            "cksum": "1 2",
            "tables": {
                "Bridge": {
                    "columns": {
                        "name": {"type": "string", "mutable": false},
                        "ports": {"type": {"key": {"type": "uuid", "refTable": "Port"},
                                           "min": 0, "max": "unlimited"}}
                    },
                    "indexes": [["name"]]
                },
                "Port": {"columns": {"name": {"type": "string"}}}
            }
        })
    }

    #[test]
    fn parses_tables_and_types() {
        let s = Schema::from_json(&sample()).ok();
        let s = s.as_ref();
        assert_eq!(s.map(|s| s.name.as_str()), Some("Open_vSwitch"));
        assert_eq!(s.map(|s| s.version.as_str()), Some("8.3.1"));
        assert_eq!(
            s.and_then(|s| s.tables.get("Bridge"))
                .and_then(|t| t.columns.get("ports"))
                .and_then(|t| t.get("max")),
            Some(&json!("unlimited"))
        );
        assert_eq!(
            s.and_then(|s| s.tables.get("Port"))
                .and_then(|t| t.columns.get("name")),
            Some(&json!("string"))
        );
    }

    #[test]
    fn require_names_first_missing_item() {
        let s = match Schema::from_json(&sample()) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        assert!(s.require("Bridge", &["name", "ports", "_uuid"]).is_ok());
        assert!(s.require("Bridge", &[]).is_ok());
        let msg = |r: Result<(), Error>| match r {
            Err(Error::Schema(m)) => m,
            other => panic!("unexpected {other:?}"),
        };
        let m = msg(s.require("Controller", &["target"]));
        assert!(m.contains("no table Controller"), "{m}");
        let m = msg(s.require("Bridge", &["name", "fail_mode", "protocols"]));
        assert!(m.contains("no column Bridge.fail_mode"), "{m}");
        assert!(m.contains("8.3.1"), "{m}");
    }

    #[test]
    fn rejects_malformed_schemas() {
        for bad in [
            json!({}),
            json!({"name": "x"}),
            json!({"name": "x", "tables": {"T": {}}}),
            json!({"name": "x", "tables": {"T": {"columns": {"c": {}}}}}),
        ] {
            assert!(
                matches!(Schema::from_json(&bad), Err(Error::Schema(_))),
                "{bad}"
            );
        }
    }
}
