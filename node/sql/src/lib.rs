//! AergoSQL: contracts written as SQL tables and functions (design and language: `docs/aergosql.md`).
//!
//! ```text
//!  script ─► parse (sqlparser, PostgreSQL dialect; function bodies: parse.rs)
//!         ─► check (supported subset, names, limits, access paths) ─► ir::Contract
//!         ─► interp::Engine over a Host (the contract's keys in the chain state, gas, chain context)
//! ```
//!
//! A contract lives in the authenticated state under `sql/<address>/`: its script (`c`), its rows
//! (`r<table><primary key>`) and index entries (`i<index><values><primary key>`), so the state root
//! covers them and every height stays readable. The script is checked again when loaded (the check
//! is deterministic; loaded contracts are cached by code hash).
//!
//! This crate knows no state store: an engine reads and writes a contract's keys through the
//! [`Host`] trait, which execution implements over the chain state (and [`store::MemHost`] in
//! memory for tests and the fuzzer). It never touches RocksDB, the network or the node's config.
//!
//! ```
//! let checked = aergo_sql::compile("CREATE TABLE t (k INTEGER PRIMARY KEY);").unwrap();
//! assert_eq!(checked.contract.tables.len(), 1);
//! ```

pub mod access;
pub mod check;
pub mod fuzz;
pub mod gas;
pub mod interp;
pub mod ir;
pub mod jit;
pub mod parse;
pub mod store;

pub use aergo_primitives::value::{self, json, Type, Value};
pub use gas::Gas;
pub use interp::{CallCtx, Engine, Host, QueryResult};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Why a contract could not be deployed, called or queried.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SqlError {
    /// Refused at deploy (or query) time: where and why.
    #[error("line {line}, column {column}: {message}")]
    Compile { line: u64, column: u64, message: String },
    /// A runtime error (overflow, type, constraint): the call's writes are reverted.
    #[error("{0}")]
    Runtime(String),
    /// `RAISE EXCEPTION`: the call's writes are reverted.
    #[error("{0}")]
    Raised(String),
    #[error("out of gas (limit {0})")]
    OutOfGas(u64),
    /// A read-only query ran past its wall-clock limit (milliseconds).
    #[error("stopped at the query deadline of {0} ms")]
    Deadline(u64),
    #[error("limit exceeded: {0}")]
    Limit(String),
    #[error("contract state: {0}")]
    Storage(String),
}

impl From<aergo_primitives::value::ValueError> for SqlError {
    fn from(e: aergo_primitives::value::ValueError) -> Self {
        use aergo_primitives::value::ValueError;
        match e {
            ValueError::Runtime(m) => SqlError::Runtime(m),
            ValueError::Undecodable(m) => SqlError::Storage(m),
        }
    }
}

/// Size limits; errors name the limit.
#[derive(Clone, Debug)]
pub struct Limits {
    pub script_bytes: usize,
    pub tables: usize,
    pub columns: usize,
    pub indexes: usize,
    pub functions: usize,
    pub row_bytes: usize,
    pub statements: usize,
    pub depth: usize,
    /// Rows a query may return (RPC and SELECT … INTO alike).
    pub result_rows: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            script_bytes: 64 * 1024,
            tables: 32,
            columns: 64,
            indexes: 64,
            functions: 64,
            row_bytes: 16 * 1024,
            statements: 256,
            depth: 32,
            result_rows: 10_000,
        }
    }
}

/// Checks a script: the contract and its constructor statements.
pub fn compile(sql: &str) -> Result<check::Checked, SqlError> {
    check::Checker::new(&Limits::default()).check_script(sql)
}

/// Which engine runs contracts. Both give the same results and charge the same gas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineKind {
    Interpreter,
    Jit,
}

/// A checked contract and its JIT-compiled form.
pub struct Compiled {
    pub interpreted: ir::Contract,
    /// `None` when the code generator failed (the contract then runs interpreted; logged).
    pub jit: Option<ir::Contract>,
    pub jit_stats: jit::JitStats,
    /// Each function's access set, computed on first use (the execution pipeline asks per call).
    access: std::sync::OnceLock<Vec<access::FunctionAccess>>,
}

impl Compiled {
    pub fn new(contract: ir::Contract) -> Compiled {
        let (jit, jit_stats) = match jit::compile_contract(&contract) {
            Ok((c, stats)) => (Some(c), stats),
            Err(e) => {
                tracing::warn!("the JIT could not compile a contract, it runs interpreted: {e}");
                (None, jit::JitStats::default())
            }
        };
        Compiled { interpreted: contract, jit, jit_stats, access: std::sync::OnceLock::new() }
    }

    /// The access set of function `name` (`None`: no such function).
    pub fn function_access(&self, name: &str) -> Option<&access::FunctionAccess> {
        let c = &self.interpreted;
        let all =
            self.access.get_or_init(|| c.functions.iter().map(|f| access::function_access(c, f)).collect());
        c.functions.iter().position(|f| f.name == name).map(|i| &all[i])
    }

    pub fn engine(&self, kind: EngineKind) -> &ir::Contract {
        match (kind, &self.jit) {
            (EngineKind::Jit, Some(j)) => j,
            _ => &self.interpreted,
        }
    }
}

/// Compiled contracts by code hash: a call neither checks nor compiles the script again. Empty at
/// start; each contract is compiled on its first use.
#[derive(Default)]
pub struct ContractCache {
    inner: Mutex<HashMap<[u8; 32], Arc<Compiled>>>,
}

impl ContractCache {
    /// The compiled contract for `code` (a script that was checked at deploy).
    pub fn get(&self, code: &str) -> Result<Arc<Compiled>, SqlError> {
        let hash = *blake3::hash(code.as_bytes()).as_bytes();
        let poisoned = |_| SqlError::Storage("contract cache poisoned".into());
        if let Some(c) = self.inner.lock().map_err(poisoned)?.get(&hash) {
            return Ok(c.clone());
        }
        let compiled = Arc::new(Compiled::new(compile(code)?.contract));
        self.put(code, compiled.clone());
        Ok(compiled)
    }

    /// Keeps `compiled` as the compiled form of `code` (bounded: the cache starts over past 1024).
    pub fn put(&self, code: &str, compiled: Arc<Compiled>) {
        let hash = *blake3::hash(code.as_bytes()).as_bytes();
        if let Ok(mut map) = self.inner.lock() {
            if map.len() >= 1024 {
                map.clear();
            }
            map.insert(hash, compiled);
        }
    }
}

/// The engine the node runs contracts with: the JIT. A test build (the `test-hooks` feature) takes
/// `AERGO_SQL_ENGINE=interpreter` to run a live chain on the interpreter and compare; a release
/// node reads no environment switch on this consensus path.
pub fn default_engine() -> EngineKind {
    #[cfg(feature = "test-hooks")]
    {
        static KIND: std::sync::OnceLock<EngineKind> = std::sync::OnceLock::new();
        *KIND.get_or_init(|| match std::env::var("AERGO_SQL_ENGINE").as_deref() {
            Ok("interpreter") => EngineKind::Interpreter,
            _ => EngineKind::Jit,
        })
    }
    #[cfg(not(feature = "test-hooks"))]
    EngineKind::Jit
}

#[cfg(test)]
mod differential;
#[cfg(test)]
pub(crate) mod tests;
