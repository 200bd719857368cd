//! AergoSQL values in JSON (RPC and CLI): integers as numbers, NULL as null, booleans as booleans,
//! text as strings, decimals as strings (exact), bytes as `"\x…"` hex strings.

use super::{Decimal, Value};
use serde_json::Value as Json;

pub fn to_json(v: &Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Int(i) => Json::from(*i),
        Value::Bool(b) => Json::Bool(*b),
        Value::Text(s) => Json::String(s.clone()),
        Value::Dec(d) => Json::String(d.to_string()),
        Value::Bytes(_) => Json::String(v.to_string()),
    }
}

/// A call argument from JSON: numbers (integers, or decimals written as numbers), strings,
/// booleans, null. Strings stay text; the engine converts arguments to the parameter types.
pub fn from_json(j: &Json) -> Result<Value, String> {
    Ok(match j {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Dec(
                Decimal::parse(&n.to_string())
                    .ok_or_else(|| format!("number {n} is not an integer or a plain decimal"))?,
            ),
        },
        Json::String(s) => Value::Text(s.clone()),
        other => return Err(format!("argument {other} is not a number, string, boolean or null")),
    })
}

/// A call argument typed on a command line: `null`, `true`/`false`, an integer, a decimal, or text.
pub fn from_cli(s: &str) -> Value {
    match s {
        "null" | "NULL" => Value::Null,
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        _ => {
            if let Ok(i) = s.parse::<i64>() {
                Value::Int(i)
            } else if let Some(d) = Decimal::parse(s).filter(|d| d.scale > 0) {
                Value::Dec(d)
            } else {
                Value::Text(s.to_string())
            }
        }
    }
}
