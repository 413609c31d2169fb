//! Database operations of a `transact` request (RFC 7047 §5.2) and their results
//! (RFC 7047 §4.1.3). Pure data: nothing here touches a socket.

use serde::{Serialize, Serializer};
use serde_json::{json, Map, Value};

use crate::Error;

/// A JSON object: a row, or a partial row.
pub type Row = Map<String, Value>;

/// One element of a `transact` request's `params` (RFC 7047 §5.2).
#[derive(Debug, Clone, PartialEq)]
pub enum Operation {
    /// §5.2.1. `uuid_name` lets later operations of the same transaction refer to the new
    /// row with [`crate::datum::named_uuid`].
    Insert {
        /// Table to insert into.
        table: String,
        /// Column values of the new row; columns left out get their defaults.
        row: Row,
        /// Name (`uuid-name`) for the new row's UUID within the transaction.
        uuid_name: Option<String>,
    },
    /// §5.2.2. `columns: None` asks for every column (the member is omitted).
    Select {
        /// Table to read.
        table: String,
        /// Rows to read (`where`); empty for every row.
        conditions: Vec<Condition>,
        /// Columns to return; `None` for all of them.
        columns: Option<Vec<String>>,
    },
    /// §5.2.3.
    Update {
        /// Table to operate on.
        table: String,
        /// Rows to operate on (`where`); empty for every row.
        conditions: Vec<Condition>,
        /// Columns to overwrite, with their new values.
        row: Row,
    },
    /// §5.2.4. Unlike `Update`, mutations are relative ("insert into this set"), so
    /// concurrent writers of the same set column do not clobber each other.
    Mutate {
        /// Table to operate on.
        table: String,
        /// Rows to operate on (`where`); empty for every row.
        conditions: Vec<Condition>,
        /// Changes to apply to each matching row.
        mutations: Vec<Mutation>,
    },
    /// §5.2.5.
    Delete {
        /// Table to delete from.
        table: String,
        /// Rows to delete (`where`); empty for every row.
        conditions: Vec<Condition>,
    },
    /// §5.2.6. Fails the transaction ("timed out") unless the selected `columns` of the
    /// rows matching `conditions` equal (`until_equal`) or differ from `rows`.
    /// `timeout_ms: None` waits forever, which the server may do while holding the
    /// transaction open.
    Wait {
        /// Table to watch.
        table: String,
        /// Rows to watch (`where`).
        conditions: Vec<Condition>,
        /// Columns compared with `rows`.
        columns: Vec<String>,
        /// Wait until the selection equals `rows` (`"until": "=="`) rather than differs
        /// from it (`"!="`).
        until_equal: bool,
        /// Expected rows, each holding `columns`.
        rows: Vec<Row>,
        /// Milliseconds to wait; `None` for no limit.
        timeout_ms: Option<u64>,
    },
    /// §5.2.9. Logged by the server with the transaction; useful to find our changes in
    /// `ovsdb-tool show-log`.
    Comment(String),
}

impl Operation {
    /// The exact JSON object RFC 7047 §5.2 defines for this operation.
    pub fn to_json(&self) -> Value {
        match self {
            Operation::Insert {
                table,
                row,
                uuid_name,
            } => {
                let mut o = json!({"op": "insert", "table": table, "row": row});
                if let (Some(name), Some(map)) = (uuid_name, o.as_object_mut()) {
                    map.insert("uuid-name".into(), Value::from(name.as_str()));
                }
                o
            }
            Operation::Select {
                table,
                conditions,
                columns,
            } => {
                let mut o = json!({"op": "select", "table": table, "where": conditions});
                if let (Some(cols), Some(map)) = (columns, o.as_object_mut()) {
                    map.insert("columns".into(), json!(cols));
                }
                o
            }
            Operation::Update {
                table,
                conditions,
                row,
            } => json!({"op": "update", "table": table, "where": conditions, "row": row}),
            Operation::Mutate {
                table,
                conditions,
                mutations,
            } => json!({
                "op": "mutate", "table": table, "where": conditions, "mutations": mutations
            }),
            Operation::Delete { table, conditions } => {
                json!({"op": "delete", "table": table, "where": conditions})
            }
            Operation::Wait {
                table,
                conditions,
                columns,
                until_equal,
                rows,
                timeout_ms,
            } => {
                let mut o = json!({
                    "op": "wait",
                    "table": table,
                    "where": conditions,
                    "columns": columns,
                    "until": if *until_equal { "==" } else { "!=" },
                    "rows": rows,
                });
                if let (Some(t), Some(map)) = (timeout_ms, o.as_object_mut()) {
                    map.insert("timeout".into(), Value::from(*t));
                }
                o
            }
            Operation::Comment(text) => json!({"op": "comment", "comment": text}),
        }
    }

    /// Insert `row` (a JSON object). A non-object `row` is a programming error; rather
    /// than silently inserting a row of defaults, it is sent under a reserved column name
    /// so that the server rejects the whole transaction.
    pub fn insert(table: &str, row: Value, uuid_name: Option<&str>) -> Self {
        Operation::Insert {
            table: table.into(),
            row: row_object(row),
            uuid_name: uuid_name.map(str::to_owned),
        }
    }

    /// Select `columns` of matching rows; an empty slice means all columns.
    pub fn select(table: &str, conditions: Vec<Condition>, columns: &[&str]) -> Self {
        Operation::Select {
            table: table.into(),
            conditions,
            columns: (!columns.is_empty()).then(|| columns.iter().map(|&c| c.into()).collect()),
        }
    }

    /// Overwrite the columns present in `row` (a JSON object, see [`Operation::insert`]).
    pub fn update(table: &str, conditions: Vec<Condition>, row: Value) -> Self {
        Operation::Update {
            table: table.into(),
            conditions,
            row: row_object(row),
        }
    }

    /// Apply relative `mutations` to matching rows.
    pub fn mutate(table: &str, conditions: Vec<Condition>, mutations: Vec<Mutation>) -> Self {
        Operation::Mutate {
            table: table.into(),
            conditions,
            mutations,
        }
    }

    /// Delete matching rows.
    pub fn delete(table: &str, conditions: Vec<Condition>) -> Self {
        Operation::Delete {
            table: table.into(),
            conditions,
        }
    }

    /// A §5.2.9 comment.
    pub fn comment(text: &str) -> Self {
        Operation::Comment(text.into())
    }
}

impl Serialize for Operation {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(s)
    }
}

/// Column name the server is guaranteed to reject: names starting with `_` are reserved
/// (RFC 7047 §3.2), so no schema can define it.
const NOT_AN_OBJECT: &str = "_row_is_not_a_json_object";

fn row_object(row: Value) -> Row {
    match row {
        Value::Object(map) => map,
        other => {
            tracing::warn!(row = %other, "OVSDB row is not a JSON object");
            let mut map = Row::new();
            map.insert(NOT_AN_OBJECT.into(), other);
            map
        }
    }
}

/// A `where` clause element (RFC 7047 §5.1 `<condition>`), sent as
/// `[column, function, value]`. An empty condition list matches every row.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// Column name.
    pub column: String,
    /// Comparison function: `<`, `<=`, `==`, `!=`, `>=`, `>`, `includes` or `excludes`.
    pub function: String,
    /// Value to compare the column with, in OVSDB's JSON notation.
    pub value: Value,
}

impl Condition {
    /// Any §5.1 function: `<`, `<=`, `==`, `!=`, `>=`, `>`, `includes`, `excludes`.
    pub fn new(column: &str, function: &str, value: Value) -> Self {
        Condition {
            column: column.into(),
            function: function.into(),
            value,
        }
    }

    /// `column == value`.
    pub fn eq(column: &str, value: Value) -> Self {
        Self::new(column, "==", value)
    }

    /// `column != value`.
    pub fn ne(column: &str, value: Value) -> Self {
        Self::new(column, "!=", value)
    }

    /// The set or map `column` contains all of `value`.
    pub fn includes(column: &str, value: Value) -> Self {
        Self::new(column, "includes", value)
    }

    /// The JSON triple.
    pub fn to_json(&self) -> Value {
        json!([self.column, self.function, self.value])
    }
}

impl Serialize for Condition {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (&self.column, &self.function, &self.value).serialize(s)
    }
}

/// A §5.1 `<mutation>`, sent as `[column, mutator, value]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Mutation {
    /// Column name.
    pub column: String,
    /// Mutator: `+=`, `-=`, `*=`, `/=`, `%=`, `insert` or `delete`.
    pub mutator: String,
    /// Operand of the mutator, in OVSDB's JSON notation.
    pub value: Value,
}

impl Mutation {
    /// Any §5.1 mutator: `+=`, `-=`, `*=`, `/=`, `%=`, `insert`, `delete`.
    pub fn new(column: &str, mutator: &str, value: Value) -> Self {
        Mutation {
            column: column.into(),
            mutator: mutator.into(),
            value,
        }
    }

    /// Add the elements of set/map `value` to `column`.
    pub fn insert(column: &str, value: Value) -> Self {
        Self::new(column, "insert", value)
    }

    /// Remove elements (or, for maps, keys or pairs) `value` from `column`.
    pub fn delete(column: &str, value: Value) -> Self {
        Self::new(column, "delete", value)
    }

    /// `column += value` (integers and reals).
    pub fn add(column: &str, value: Value) -> Self {
        Self::new(column, "+=", value)
    }

    /// The JSON triple.
    pub fn to_json(&self) -> Value {
        json!([self.column, self.mutator, self.value])
    }
}

impl Serialize for Mutation {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (&self.column, &self.mutator, &self.value).serialize(s)
    }
}

/// The result of one successful operation (RFC 7047 §5.2).
#[derive(Debug, Clone, PartialEq)]
pub enum OpResult {
    /// `insert`: the UUID of the new row.
    Uuid(String),
    /// `select`: the matching rows, each holding the requested columns.
    Rows(Vec<Row>),
    /// `update`, `mutate`, `delete`: how many rows matched.
    Count(u64),
    /// `wait`, `comment` (and `commit`, `abort`, `assert`): nothing.
    Empty,
}

impl OpResult {
    /// Interprets one element of a `transact` result array. Error elements must be
    /// handled before calling this (see [`parse_transact_result`]).
    pub fn from_json(v: &Value) -> Result<OpResult, Error> {
        let obj = v
            .as_object()
            .ok_or_else(|| Error::Protocol(format!("operation result is not an object: {v}")))?;
        if let Some(u) = obj.get("uuid") {
            return crate::datum::as_uuid(u)
                .map(OpResult::Uuid)
                .ok_or_else(|| Error::Protocol(format!("bad uuid in result: {v}")));
        }
        if let Some(rows) = obj.get("rows") {
            let rows = rows
                .as_array()
                .ok_or_else(|| Error::Protocol(format!("\"rows\" is not an array: {v}")))?;
            return rows
                .iter()
                .map(|r| {
                    r.as_object()
                        .cloned()
                        .ok_or_else(|| Error::Protocol(format!("row is not an object: {r}")))
                })
                .collect::<Result<_, _>>()
                .map(OpResult::Rows);
        }
        if let Some(count) = obj.get("count") {
            return count
                .as_u64()
                .map(OpResult::Count)
                .ok_or_else(|| Error::Protocol(format!("bad count in result: {v}")));
        }
        Ok(OpResult::Empty)
    }

    /// The inserted row's UUID.
    pub fn uuid(&self) -> Option<&str> {
        match self {
            OpResult::Uuid(u) => Some(u),
            _ => None,
        }
    }

    /// The selected rows.
    pub fn rows(&self) -> Option<&[Row]> {
        match self {
            OpResult::Rows(r) => Some(r),
            _ => None,
        }
    }

    /// The number of rows an update/mutate/delete matched.
    pub fn count(&self) -> Option<u64> {
        match self {
            OpResult::Count(c) => Some(*c),
            _ => None,
        }
    }
}

/// Turns the `result` member of a `transact` reply into per-operation results.
///
/// RFC 7047 §4.1.3: the array has one element per operation; a failed operation's element
/// carries `"error"` and the following ones are `null` (ovsdb-server really sends those
/// `null`s); if all operations succeed but the commit fails, one extra error element is
/// appended. Any error element wins over the shape checks, so the caller learns the
/// server's reason rather than "short result".
pub fn parse_transact_result(n_ops: usize, result: &Value) -> Result<Vec<OpResult>, Error> {
    let items = result
        .as_array()
        .ok_or_else(|| Error::Protocol(format!("transact result is not an array: {result}")))?;
    if let Some((index, item)) = items
        .iter()
        .enumerate()
        .find(|(_, item)| item.get("error").is_some_and(|e| !e.is_null()))
    {
        let text = |key: &str| match item.get(key) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        };
        return Err(Error::Transaction {
            index,
            error: text("error"),
            details: text("details"),
        });
    }
    if items.len() < n_ops {
        return Err(Error::Protocol(format!(
            "transact returned {} results for {n_ops} operations",
            items.len()
        )));
    }
    items[..n_ops].iter().map(OpResult::from_json).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datum;

    fn obj(v: Value) -> Row {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn insert_json() {
        let op = Operation::insert(
            "Port",
            json!({"name": "p1", "interfaces": datum::named_uuid("iface")}),
            Some("port"),
        );
        assert_eq!(
            op.to_json(),
            json!({"op": "insert", "table": "Port",
                   "row": {"name": "p1", "interfaces": ["named-uuid", "iface"]},
                   "uuid-name": "port"})
        );
        let op = Operation::insert("Bridge", json!({}), None);
        assert_eq!(
            op.to_json(),
            json!({"op": "insert", "table": "Bridge", "row": {}})
        );
    }

    #[test]
    fn non_object_row_is_not_silently_empty() {
        let op = Operation::insert("Bridge", json!(["name", "br0"]), None);
        assert_eq!(
            op.to_json()["row"],
            json!({"_row_is_not_a_json_object": ["name", "br0"]})
        );
    }

    #[test]
    fn select_json() {
        let op = Operation::select("Bridge", vec![Condition::eq("name", json!("br0"))], &[]);
        assert_eq!(
            op.to_json(),
            json!({"op": "select", "table": "Bridge", "where": [["name", "==", "br0"]]})
        );
        let op = Operation::select("Open_vSwitch", vec![], &["next_cfg"]);
        assert_eq!(
            op.to_json(),
            json!({"op": "select", "table": "Open_vSwitch", "where": [],
                   "columns": ["next_cfg"]})
        );
    }

    #[test]
    fn update_json() {
        let op = Operation::update(
            "Bridge",
            vec![Condition::eq("_uuid", datum::uuid("u1"))],
            json!({"fail_mode": "secure"}),
        );
        assert_eq!(
            op.to_json(),
            json!({"op": "update", "table": "Bridge",
                   "where": [["_uuid", "==", ["uuid", "u1"]]],
                   "row": {"fail_mode": "secure"}})
        );
    }

    #[test]
    fn mutate_json() {
        let op = Operation::mutate(
            "Bridge",
            vec![Condition::eq("name", json!("br0"))],
            vec![
                Mutation::insert("ports", datum::set([datum::named_uuid("port")])),
                Mutation::delete("ports", datum::uuid("u2")),
                Mutation::add("x", json!(1)),
            ],
        );
        assert_eq!(
            op.to_json(),
            json!({"op": "mutate", "table": "Bridge", "where": [["name", "==", "br0"]],
                   "mutations": [["ports", "insert", ["set", [["named-uuid", "port"]]]],
                                 ["ports", "delete", ["uuid", "u2"]],
                                 ["x", "+=", 1]]})
        );
    }

    #[test]
    fn delete_json() {
        let op = Operation::delete("Port", vec![Condition::includes("tag", json!(5))]);
        assert_eq!(
            op.to_json(),
            json!({"op": "delete", "table": "Port", "where": [["tag", "includes", 5]]})
        );
    }

    #[test]
    fn wait_json() {
        let op = Operation::Wait {
            table: "Bridge".into(),
            conditions: vec![Condition::ne("name", json!("x"))],
            columns: vec!["name".into()],
            until_equal: true,
            rows: vec![obj(json!({"name": "br0"}))],
            timeout_ms: Some(0),
        };
        assert_eq!(
            op.to_json(),
            json!({"op": "wait", "table": "Bridge", "where": [["name", "!=", "x"]],
                   "columns": ["name"], "until": "==", "rows": [{"name": "br0"}],
                   "timeout": 0})
        );
        let op = Operation::Wait {
            table: "Bridge".into(),
            conditions: vec![],
            columns: vec![],
            until_equal: false,
            rows: vec![],
            timeout_ms: None,
        };
        assert_eq!(
            op.to_json(),
            json!({"op": "wait", "table": "Bridge", "where": [], "columns": [],
                   "until": "!=", "rows": []})
        );
    }

    #[test]
    fn comment_json() {
        assert_eq!(
            Operation::comment("l2sm").to_json(),
            json!({"op": "comment", "comment": "l2sm"})
        );
    }

    #[test]
    fn serialize_matches_to_json() {
        let op = Operation::select("T", vec![Condition::eq("a", json!(1))], &["a"]);
        assert_eq!(serde_json::to_value(&op).ok(), Some(op.to_json()));
        let c = Condition::eq("a", json!(1));
        assert_eq!(serde_json::to_value(&c).ok(), Some(c.to_json()));
        let m = Mutation::add("a", json!(1));
        assert_eq!(serde_json::to_value(&m).ok(), Some(m.to_json()));
    }

    #[test]
    fn results_parse() {
        let res = json!([
            {"uuid": ["uuid", "u1"]},
            {"rows": [{"next_cfg": 12}]},
            {"count": 1},
            {}
        ]);
        let parsed = parse_transact_result(4, &res).ok();
        assert_eq!(
            parsed,
            Some(vec![
                OpResult::Uuid("u1".into()),
                OpResult::Rows(vec![obj(json!({"next_cfg": 12}))]),
                OpResult::Count(1),
                OpResult::Empty,
            ])
        );
    }

    #[test]
    fn failed_operation_reports_its_index() {
        // Shape captured from ovsdb-server 3.1: error element, then nulls.
        let res = json!([{}, {"error": "syntax error", "details": "No table named Nope.",
                              "syntax": "..."}, null]);
        match parse_transact_result(3, &res) {
            Err(Error::Transaction {
                index,
                error,
                details,
            }) => {
                assert_eq!(index, 1);
                assert_eq!(error, "syntax error");
                assert_eq!(details, "No table named Nope.");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn commit_failure_is_extra_element() {
        let res = json!([{"uuid": ["uuid", "u"]}, {"error": "constraint violation"}]);
        match parse_transact_result(1, &res) {
            Err(Error::Transaction {
                index,
                error,
                details,
            }) => {
                assert_eq!(
                    (index, error.as_str(), details.as_str()),
                    (1, "constraint violation", "")
                );
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn malformed_results_are_protocol_errors() {
        for (n, res) in [
            (1, json!(null)),
            (2, json!([{}])),
            (1, json!([null])),
            (1, json!([{"uuid": "not-tagged"}])),
            (1, json!([{"rows": {}}])),
            (1, json!([{"count": -1}])),
        ] {
            assert!(
                matches!(parse_transact_result(n, &res), Err(Error::Protocol(_))),
                "{res}"
            );
        }
        assert_eq!(parse_transact_result(0, &json!([])).ok(), Some(vec![]));
    }
}
