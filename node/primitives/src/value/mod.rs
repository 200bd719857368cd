//! Values and types of AergoSQL: 64-bit integers (overflow is an error), fixed-point decimals, text,
//! booleans, bytes and NULL. No floating point anywhere.
//!
//! Two encodings: rows are borsh (`Vec<Value>`); key parts use an order-preserving, prefix-free
//! encoding ([`encode_key`]) so that byte order of keys is value order and primary-key scans are
//! plain key ranges.

pub mod json;

use borsh::{BorshDeserialize, BorshSerialize};
use std::cmp::Ordering;
use std::fmt;

/// Why an operation on values failed. The SQL engine reports `Runtime` as a runtime error of the
/// statement (the call's writes are reverted) and `Undecodable` as damaged contract state.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// Overflow, division by zero, a type mismatch or a value that does not fit its column.
    #[error("{0}")]
    Runtime(String),
    /// Stored bytes that are not an encoded row.
    #[error("{0}")]
    Undecodable(String),
}

/// Largest decimal precision (digits): fits an i128 with room for the products of two operands' scales.
pub const MAX_DECIMAL_PRECISION: u8 = 38;

/// A column's declared type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Type {
    Int,
    Text,
    Bool,
    Bytes,
    /// DECIMAL(precision, scale).
    Dec(u8, u8),
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Type::Int => f.write_str("INTEGER"),
            Type::Text => f.write_str("TEXT"),
            Type::Bool => f.write_str("BOOLEAN"),
            Type::Bytes => f.write_str("BYTEA"),
            Type::Dec(p, s) => write!(f, "DECIMAL({p}, {s})"),
        }
    }
}

/// A fixed-point number: `units / 10^scale`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize)]
pub struct Decimal {
    pub units: i128,
    pub scale: u8,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
    Bool(bool),
    Bytes(Vec<u8>),
    Dec(Decimal),
}

fn overflow(op: &str) -> ValueError {
    ValueError::Runtime(format!("integer overflow in {op}"))
}

fn pow10(n: u8) -> Result<i128, ValueError> {
    10i128.checked_pow(n as u32).ok_or_else(|| overflow("decimal scaling"))
}

impl Decimal {
    /// This number at `scale` digits: exact when widening, rounded half away from zero when narrowing.
    pub fn rescale(self, scale: u8) -> Result<Decimal, ValueError> {
        match scale.cmp(&self.scale) {
            Ordering::Equal => Ok(self),
            Ordering::Greater => {
                let units =
                    self.units.checked_mul(pow10(scale - self.scale)?).ok_or_else(|| overflow("decimal"))?;
                Ok(Decimal { units, scale })
            }
            Ordering::Less => {
                let div = pow10(self.scale - scale)?;
                let (q, r) = (self.units / div, self.units % div);
                let round = if r.abs() * 2 >= div { self.units.signum() } else { 0 };
                Ok(Decimal { units: q + round, scale })
            }
        }
    }

    /// Digits left of the point plus the scale.
    pub fn fits(self, precision: u8) -> bool {
        match 10i128.checked_pow(precision as u32) {
            Some(limit) => self.units.abs() < limit,
            None => true,
        }
    }

    pub fn parse(text: &str) -> Option<Decimal> {
        let (neg, digits) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
        if int.is_empty() && frac.is_empty() || !int.chars().chain(frac.chars()).all(|c| c.is_ascii_digit()) {
            return None;
        }
        let scale = u8::try_from(frac.len()).ok().filter(|s| *s <= MAX_DECIMAL_PRECISION)?;
        let mut units: i128 = 0;
        for c in int.chars().chain(frac.chars()) {
            units = units.checked_mul(10)?.checked_add((c as u8 - b'0') as i128)?;
        }
        Some(Decimal { units: if neg { -units } else { units }, scale })
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.scale == 0 {
            return write!(f, "{}", self.units);
        }
        let div = 10u128.pow(self.scale as u32);
        let abs = self.units.unsigned_abs();
        let sign = if self.units < 0 { "-" } else { "" };
        write!(f, "{sign}{}.{:0width$}", abs / div, abs % div, width = self.scale as usize)
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("NULL"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Text(s) => f.write_str(s),
            Value::Bool(b) => f.write_str(if *b { "true" } else { "false" }),
            Value::Bytes(b) => write!(f, "\\x{}", hex::encode(b)),
            Value::Dec(d) => write!(f, "{d}"),
        }
    }
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "NULL",
            Value::Int(_) => "INTEGER",
            Value::Text(_) => "TEXT",
            Value::Bool(_) => "BOOLEAN",
            Value::Bytes(_) => "BYTEA",
            Value::Dec(_) => "DECIMAL",
        }
    }

    /// Rough size in bytes, for gas and row limits.
    pub fn size(&self) -> usize {
        match self {
            Value::Null | Value::Bool(_) => 1,
            Value::Int(_) => 8,
            Value::Dec(_) => 17,
            Value::Text(s) => s.len() + 4,
            Value::Bytes(b) => b.len() + 4,
        }
    }

    /// SQL truth: NULL is unknown (`None`).
    pub fn truth(&self) -> Result<Option<bool>, ValueError> {
        match self {
            Value::Null => Ok(None),
            Value::Bool(b) => Ok(Some(*b)),
            Value::Int(i) => Ok(Some(*i != 0)),
            other => Err(ValueError::Runtime(format!("{} used as a condition", other.type_name()))),
        }
    }

    /// The value as stored in a column of type `ty`: integers widen to decimals, decimals are rounded
    /// to the column's scale and checked against its precision, a decimal with no fraction fits an
    /// integer column. Anything else is a type error naming the column.
    pub fn coerce(self, ty: Type, column: &str) -> Result<Value, ValueError> {
        let mismatch = |v: &Value| {
            ValueError::Runtime(format!("column {column} is {ty}, the value is {} ({v})", v.type_name()))
        };
        match (ty, self) {
            (_, Value::Null) => Ok(Value::Null),
            (Type::Int, Value::Int(i)) => Ok(Value::Int(i)),
            (Type::Int, Value::Dec(d)) => {
                let whole = d.rescale(0)?;
                if whole.rescale(d.scale)? != d {
                    return Err(mismatch(&Value::Dec(d)));
                }
                i64::try_from(whole.units).map(Value::Int).map_err(|_| overflow("conversion to INTEGER"))
            }
            (Type::Int, Value::Bool(b)) => Ok(Value::Int(b as i64)),
            (Type::Text, Value::Text(s)) => Ok(Value::Text(s)),
            (Type::Bool, Value::Bool(b)) => Ok(Value::Bool(b)),
            (Type::Bool, Value::Int(i @ (0 | 1))) => Ok(Value::Bool(i == 1)),
            (Type::Bytes, Value::Bytes(b)) => Ok(Value::Bytes(b)),
            (Type::Dec(p, s), Value::Int(i)) => {
                Value::Dec(Decimal { units: i as i128, scale: 0 }).coerce(Type::Dec(p, s), column)
            }
            (Type::Dec(p, s), Value::Dec(d)) => {
                let d = d.rescale(s)?;
                if !d.fits(p) {
                    return Err(ValueError::Runtime(format!(
                        "value {d} does not fit column {column} ({ty})"
                    )));
                }
                Ok(Value::Dec(d))
            }
            (_, v) => Err(mismatch(&v)),
        }
    }
}

/// Numbers as (units, scale) for mixed integer/decimal arithmetic.
fn as_dec(v: &Value) -> Option<Decimal> {
    match v {
        Value::Int(i) => Some(Decimal { units: *i as i128, scale: 0 }),
        Value::Dec(d) => Some(*d),
        _ => None,
    }
}

fn align(a: Decimal, b: Decimal) -> Result<(i128, i128, u8), ValueError> {
    let scale = a.scale.max(b.scale);
    Ok((a.rescale(scale)?.units, b.rescale(scale)?.units, scale))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arith {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
}

/// `a op b` with SQL NULL propagation; integer overflow and division by zero are errors.
pub fn arith(op: Arith, a: &Value, b: &Value) -> Result<Value, ValueError> {
    if a.is_null() || b.is_null() {
        return Ok(Value::Null);
    }
    if let (Value::Int(x), Value::Int(y)) = (a, b) {
        let (x, y) = (*x, *y);
        let r = match op {
            Arith::Add => x.checked_add(y),
            Arith::Sub => x.checked_sub(y),
            Arith::Mul => x.checked_mul(y),
            Arith::Div | Arith::Mod if y == 0 => return Err(ValueError::Runtime("division by zero".into())),
            Arith::Div => x.checked_div(y),
            Arith::Mod => x.checked_rem(y),
        };
        return r.map(Value::Int).ok_or_else(|| overflow(op_name(op)));
    }
    let (Some(da), Some(db)) = (as_dec(a), as_dec(b)) else {
        return Err(ValueError::Runtime(format!(
            "{} {} {} is not defined",
            a.type_name(),
            op_name(op),
            b.type_name()
        )));
    };
    let units_err = || overflow(op_name(op));
    let d = match op {
        Arith::Add | Arith::Sub => {
            let (x, y, scale) = align(da, db)?;
            let u = if op == Arith::Add { x.checked_add(y) } else { x.checked_sub(y) };
            Decimal { units: u.ok_or_else(units_err)?, scale }
        }
        Arith::Mul => {
            let scale = da.scale + db.scale;
            let d = Decimal { units: da.units.checked_mul(db.units).ok_or_else(units_err)?, scale };
            // Keep the larger operand scale: the exact product rounded like a column of that scale.
            d.rescale(da.scale.max(db.scale))?
        }
        Arith::Div | Arith::Mod => {
            let (x, y, scale) = align(da, db)?;
            if y == 0 {
                return Err(ValueError::Runtime("division by zero".into()));
            }
            if op == Arith::Mod {
                Decimal { units: x % y, scale }
            } else {
                // Quotient at the larger operand scale, truncated toward zero.
                let num = x.checked_mul(pow10(scale)?).ok_or_else(units_err)?;
                Decimal { units: num / y, scale }
            }
        }
    };
    if !d.fits(MAX_DECIMAL_PRECISION) {
        return Err(units_err());
    }
    Ok(Value::Dec(d))
}

fn op_name(op: Arith) -> &'static str {
    match op {
        Arith::Add => "+",
        Arith::Sub => "-",
        Arith::Mul => "*",
        Arith::Div => "/",
        Arith::Mod => "%",
    }
}

/// Compares two non-NULL values of comparable types (numbers with numbers, text with text, …).
pub fn compare(a: &Value, b: &Value) -> Result<Ordering, ValueError> {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => Ok(x.cmp(y)),
        (Value::Text(x), Value::Text(y)) => Ok(x.as_bytes().cmp(y.as_bytes())),
        (Value::Bool(x), Value::Bool(y)) => Ok(x.cmp(y)),
        (Value::Bytes(x), Value::Bytes(y)) => Ok(x.cmp(y)),
        (Value::Bool(x), Value::Int(y)) => Ok((*x as i64).cmp(y)),
        (Value::Int(x), Value::Bool(y)) => Ok(x.cmp(&(*y as i64))),
        _ => match (as_dec(a), as_dec(b)) {
            (Some(x), Some(y)) => {
                let (x, y, _) = align(x, y)?;
                Ok(x.cmp(&y))
            }
            _ => Err(ValueError::Runtime(format!("cannot compare {} with {}", a.type_name(), b.type_name()))),
        },
    }
}

/// Total order for sorting and grouping: NULL first, then by [`compare`]; values that cannot be
/// compared order by type name (only reachable through heterogeneous expressions).
pub fn sort_cmp(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Less,
        (_, Value::Null) => Ordering::Greater,
        _ => compare(a, b).unwrap_or_else(|_| a.type_name().cmp(b.type_name())),
    }
}

// ---- order-preserving key encoding ----

const K_NULL: u8 = 0x01;
const K_FALSE: u8 = 0x02;
const K_TRUE: u8 = 0x03;
const K_NUM: u8 = 0x04;
const K_TEXT: u8 = 0x05;
const K_BYTES: u8 = 0x06;

/// `bytes` with each 0x00 as 0x00 0xff, then 0x00 0x00; copied a run between zeros at a time into
/// room reserved once (pushed byte by byte, the key grew and was copied several times: a third of
/// declaring a token transfer's access set).
fn escape(out: &mut Vec<u8>, bytes: &[u8]) {
    out.reserve(bytes.len() + 2);
    let mut runs = bytes.split(|b| *b == 0);
    out.extend_from_slice(runs.next().unwrap_or_default());
    for run in runs {
        out.extend_from_slice(&[0, 0xff]);
        out.extend_from_slice(run);
    }
    out.extend_from_slice(&[0, 0]);
}

/// Appends the key form of `v`. Numbers (integers and decimals of one column share a scale after
/// coercion) are 16 bytes big-endian with the sign bit flipped; text and bytes escape 0x00 and end
/// with 0x00 0x00, so no encoded value is a prefix of another.
pub fn encode_key(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.push(K_NULL),
        Value::Bool(false) => out.push(K_FALSE),
        Value::Bool(true) => out.push(K_TRUE),
        Value::Int(i) => {
            out.push(K_NUM);
            out.extend_from_slice(&((*i as i128) ^ i128::MIN).to_be_bytes());
        }
        Value::Dec(d) => {
            out.push(K_NUM);
            out.extend_from_slice(&(d.units ^ i128::MIN).to_be_bytes());
        }
        Value::Text(s) => encode_text_key(out, s),
        Value::Bytes(b) => {
            out.push(K_BYTES);
            escape(out, b);
        }
    }
}

/// Appends the key form of `v` for an index column in direction `desc`: [`encode_key`]'s bytes,
/// complemented when descending. Complementing reverses the byte order and keeps the encoding
/// prefix-free, so a scan in key order lists a `DESC` column from the largest value (NULL last).
pub fn encode_key_dir(out: &mut Vec<u8>, v: &Value, desc: bool) {
    let start = out.len();
    encode_key(out, v);
    if desc {
        for b in &mut out[start..] {
            *b = !*b;
        }
    }
}

/// The length of the key part ([`encode_key_dir`]) that `bytes` start with; `None` when they do
/// not start with one.
pub fn key_part_len(bytes: &[u8], desc: bool) -> Option<usize> {
    let at = |i: usize| bytes.get(i).map(|b| if desc { !*b } else { *b });
    match at(0)? {
        K_NULL | K_FALSE | K_TRUE => Some(1),
        K_NUM => (bytes.len() >= 17).then_some(17),
        K_TEXT | K_BYTES => {
            let mut i = 1;
            loop {
                match (at(i)?, at(i + 1)?) {
                    (0, 0) => return Some(i + 2),
                    (0, 0xff) => i += 2,
                    (0, _) => return None,
                    _ => i += 1,
                }
            }
        }
        _ => None,
    }
}

/// Appends the key form of the text `s` (as [`encode_key`] of `Value::Text`), without the value.
pub fn encode_text_key(out: &mut Vec<u8>, s: &str) {
    out.push(K_TEXT);
    escape(out, s.as_bytes());
}

pub fn encode_row(row: &[Value]) -> Vec<u8> {
    crate::types::to_vec_exact(row)
}

pub fn decode_row(bytes: &[u8]) -> Result<Vec<Value>, ValueError> {
    borsh::from_slice(bytes).map_err(|e| ValueError::Undecodable(format!("undecodable row: {e}")))
}

/// Decodes a row (the same bytes as [`decode_row`]) into `out`, which has the row's width.
pub fn decode_row_into(bytes: &[u8], out: &mut [Value]) -> Result<(), ValueError> {
    let bad = |why: String| ValueError::Undecodable(format!("undecodable row: {why}"));
    let mut r = bytes;
    let n = u32::deserialize_reader(&mut r).map_err(|e| bad(e.to_string()))? as usize;
    if n != out.len() {
        return Err(bad(format!("{n} values for {} columns", out.len())));
    }
    for slot in out.iter_mut() {
        // Integers and NULLs (most columns) decoded in place; the same bytes as borsh's derive
        // (a one-byte variant index, then the field, little-endian), which handles the rest.
        match r.first() {
            Some(0) => {
                *slot = Value::Null;
                r = &r[1..];
            }
            Some(1) if r.len() >= 9 => {
                let mut le = [0u8; 8];
                le.copy_from_slice(&r[1..9]);
                *slot = Value::Int(i64::from_le_bytes(le));
                r = &r[9..];
            }
            _ => *slot = Value::deserialize_reader(&mut r).map_err(|e| bad(e.to_string()))?,
        }
    }
    if !r.is_empty() {
        return Err(bad("trailing bytes".into()));
    }
    Ok(())
}

/// [`decode_row_into`] of the columns `needed` marks (all when `None`); the others are skipped
/// without being built (no text or bytes copied) and their slots keep what they held. A query
/// decodes only the columns it reads.
pub fn decode_row_into_masked(
    bytes: &[u8],
    out: &mut [Value],
    needed: Option<&[bool]>,
) -> Result<(), ValueError> {
    let Some(needed) = needed.filter(|n| n.len() == out.len() && n.iter().any(|x| !x)) else {
        return decode_row_into(bytes, out);
    };
    let bad = |why: String| ValueError::Undecodable(format!("undecodable row: {why}"));
    let mut r = bytes;
    let n = u32::deserialize_reader(&mut r).map_err(|e| bad(e.to_string()))? as usize;
    if n != out.len() {
        return Err(bad(format!("{n} values for {} columns", out.len())));
    }
    for (slot, need) in out.iter_mut().zip(needed) {
        if *need {
            match r.first() {
                Some(1) if r.len() >= 9 => {
                    let mut le = [0u8; 8];
                    le.copy_from_slice(&r[1..9]);
                    *slot = Value::Int(i64::from_le_bytes(le));
                    r = &r[9..];
                }
                _ => *slot = Value::deserialize_reader(&mut r).map_err(|e| bad(e.to_string()))?,
            }
            continue;
        }
        // The borsh form: a variant byte, then Int 8, Text/Bytes a u32 length and the bytes, Bool 1,
        // Decimal 16 + 1.
        let len = |r: &[u8]| -> Option<usize> {
            let l = u32::from_le_bytes(r.get(1..5)?.try_into().ok()?) as usize;
            Some(5 + l)
        };
        let size = match r.first() {
            Some(0) => Some(1),
            Some(1) => Some(9),
            Some(2 | 4) => len(r),
            Some(3) => Some(2),
            Some(5) => Some(18),
            _ => None,
        };
        match size {
            Some(s) if s <= r.len() => r = &r[s..],
            _ => return Err(bad("a value runs past the row".into())),
        }
    }
    if !r.is_empty() {
        return Err(bad("trailing bytes".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        encode_key(&mut out, v);
        out
    }

    proptest! {
        #[test]
        fn rows_decode_in_place_as_borsh_does(row in proptest::collection::vec(prop_oneof![
            Just(Value::Null),
            any::<i64>().prop_map(Value::Int),
            any::<bool>().prop_map(Value::Bool),
            ".{0,6}".prop_map(Value::Text),
        ], 0..6)) {
            let bytes = encode_row(&row);
            let mut out = vec![Value::Text("stale".into()); row.len()];
            decode_row_into(&bytes, &mut out).unwrap();
            prop_assert_eq!(&out, &row);
            prop_assert_eq!(decode_row(&bytes).unwrap(), row.clone());
            // Only some columns: those decoded, the others left as they were.
            let needed: Vec<bool> = (0..row.len()).map(|i| i % 2 == 0).collect();
            let mut part = vec![Value::Text("kept".into()); row.len()];
            decode_row_into_masked(&bytes, &mut part, Some(&needed)).unwrap();
            for (i, v) in part.iter().enumerate() {
                prop_assert_eq!(v, if needed[i] { &row[i] } else { &Value::Text("kept".into()) });
            }
            // Cut short anywhere: an error, never a panic.
            for cut in 0..bytes.len() {
                prop_assert!(decode_row_into(&bytes[..cut], &mut out).is_err());
            }
        }

        #[test]
        fn int_keys_sort_like_ints(a: i64, b: i64) {
            prop_assert_eq!(key(&Value::Int(a)).cmp(&key(&Value::Int(b))), a.cmp(&b));
        }

        #[test]
        fn text_keys_sort_like_text_and_are_prefix_free(a in ".{0,8}", b in ".{0,8}", x: i64, y: i64) {
            let (ka, kb) = (key(&Value::Text(a.clone())), key(&Value::Text(b.clone())));
            prop_assert_eq!(ka.cmp(&kb), a.as_bytes().cmp(b.as_bytes()));
            // Composite keys sort by their first part, then the second.
            let mut ca = ka.clone();
            encode_key(&mut ca, &Value::Int(x));
            let mut cb = kb.clone();
            encode_key(&mut cb, &Value::Int(y));
            prop_assert_eq!(ca.cmp(&cb), a.as_bytes().cmp(b.as_bytes()).then(x.cmp(&y)));
        }

        #[test]
        fn byte_keys_escape_zeros_and_sort_like_bytes(
            a in proptest::collection::vec(0u8..3, 0..10),
            b in proptest::collection::vec(0u8..3, 0..10),
        ) {
            let (ka, kb) = (key(&Value::Bytes(a.clone())), key(&Value::Bytes(b.clone())));
            prop_assert_eq!(ka.cmp(&kb), a.cmp(&b));
            // The stored form: each 0x00 as 0x00 0xff, ended by 0x00 0x00.
            let mut want = vec![K_BYTES];
            for x in &a {
                want.extend_from_slice(if *x == 0 { &[0, 0xff][..] } else { std::slice::from_ref(x) });
            }
            want.extend_from_slice(&[0, 0]);
            prop_assert_eq!(ka, want);
        }
    }

    #[test]
    fn decimals_parse_print_round_and_overflow() {
        let d = Decimal::parse("-12.345").unwrap();
        assert_eq!((d.units, d.scale, d.to_string()), (-12345, 3, "-12.345".to_string()));
        assert_eq!(d.rescale(2).unwrap().to_string(), "-12.35");
        assert_eq!(Decimal::parse("0.5").unwrap().rescale(0).unwrap().units, 1);
        let v = Value::Dec(Decimal::parse("123.456").unwrap());
        assert!(v.clone().coerce(Type::Dec(4, 2), "c").is_err());
        assert_eq!(v.coerce(Type::Dec(5, 2), "c").unwrap(), Value::Dec(Decimal { units: 12346, scale: 2 }));
        assert!(arith(Arith::Add, &Value::Int(i64::MAX), &Value::Int(1)).is_err());
        assert!(arith(Arith::Div, &Value::Int(1), &Value::Int(0)).is_err());
        assert_eq!(arith(Arith::Div, &Value::Int(-7), &Value::Int(2)).unwrap(), Value::Int(-3));
        let third = arith(Arith::Div, &Value::Dec(Decimal::parse("1.00").unwrap()), &Value::Int(3)).unwrap();
        assert_eq!(third.to_string(), "0.33");
    }
}
