//! Read-only access to a contract at any height (the `query` RPC): a SELECT over its tables, or a
//! function run on a copy of the state whose changes are dropped.

use aergo_primitives::types::Address;
use aergo_sql::check::Checker;
use aergo_sql::gas::{Gas, MAX_CALL_GAS};
use aergo_sql::interp::{CallCtx, Engine, Entries, Host, QueryResult};
use aergo_sql::store::{code_key, Buffered};
use aergo_sql::{ContractCache, Limits, SqlError, Value};
use aergo_storage::StateStore;
use std::sync::OnceLock;

/// The state as of one height; writes are refused (queries run on a [`Buffered`] copy).
pub struct StoreHost<'s> {
    pub store: &'s StateStore,
    pub height: u64,
}

impl Host for StoreHost<'_> {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, SqlError> {
        self.store.get_at(key, self.height).map_err(|e| SqlError::Storage(e.to_string()))
    }

    fn put(&mut self, _key: Vec<u8>, _value: Option<Vec<u8>>) -> Result<(), SqlError> {
        Err(SqlError::Runtime("a query cannot change the state".into()))
    }

    fn scan(&mut self, prefix: &[u8]) -> Result<Entries, SqlError> {
        self.store.scan_at(prefix, self.height).map_err(|e| SqlError::Storage(e.to_string()))
    }

    fn transfer_native(&mut self, _to: &str, _amount: u128) -> Result<(), SqlError> {
        Err(SqlError::Runtime("a query cannot move coins".into()))
    }

    /// Nothing to take back: the state is read-only.
    fn savepoint(&mut self) -> bool {
        true
    }
}

fn cache() -> &'static ContractCache {
    static CACHE: OnceLock<ContractCache> = OnceLock::new();
    CACHE.get_or_init(ContractCache::default)
}

/// A contract's script and compiled form as of `height`.
pub fn load(
    store: &StateStore,
    contract: &Address,
    height: u64,
) -> Result<(String, std::sync::Arc<aergo_sql::Compiled>), SqlError> {
    let mut host = StoreHost { store, height };
    let Some(code) = host.get(&code_key(contract))? else {
        return Err(SqlError::Runtime(format!("no contract at {contract} at height {height}")));
    };
    let code = String::from_utf8(code).map_err(|_| SqlError::Storage("contract code is not UTF-8".into()))?;
    let compiled = cache().get(&code)?;
    Ok((code, compiled))
}

/// What to read.
pub enum Request<'r> {
    Sql(&'r str),
    Function(&'r str, Vec<Value>),
}

/// Runs a query against `contract` as of `height` (which the caller checked against the head).
pub fn run(
    store: &StateStore,
    contract: &Address,
    height: u64,
    request: Request<'_>,
) -> Result<QueryResult, SqlError> {
    let (_, compiled) = load(store, contract, height)?;
    let mut host = StoreHost { store, height };
    let ctx = CallCtx { self_address: contract.to_string(), height, ..CallCtx::default() };
    let mut buffered = Buffered::new(&mut host);
    let contract_ir = compiled.engine(aergo_sql::default_engine());
    let mut engine = Engine::new(contract_ir, contract, &mut buffered, &ctx, Gas::new(MAX_CALL_GAS));
    match request {
        Request::Sql(sql) => {
            let select = Checker::for_contract(&Limits::default(), &compiled.interpreted).check_query(sql)?;
            engine.query(&select)
        }
        Request::Function(name, args) => engine.call(name, args),
    }
}
