//! Read-only access to a contract at any height (the `query` RPC): a SELECT over its tables, or a
//! function run on a copy of the state whose changes are dropped.

use aergo_primitives::types::Address;
use aergo_sql::check::Checker;
use aergo_sql::gas::Gas;
use aergo_sql::interp::{CallCtx, Engine, Entries, Host, QueryResult, ScanChunk};
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

    fn emit(&mut self, _name: &str, _args: Vec<Value>) -> Result<(), SqlError> {
        Err(SqlError::Runtime("a query cannot emit events".into()))
    }

    /// Nothing to take back: the state is read-only.
    fn savepoint(&mut self) -> bool {
        true
    }

    /// A page of the ordered keys at this height: a query streams a table instead of holding it.
    fn scan_chunk(
        &mut self,
        prefix: &[u8],
        after: Option<&[u8]>,
        max: usize,
        out: &mut ScanChunk,
    ) -> Result<(), SqlError> {
        out.clear();
        let page = self
            .store
            .scan_ordered(prefix, after, self.height, max)
            .map_err(|e| SqlError::Storage(e.to_string()))?;
        for (k, v) in &page {
            out.push(k, v);
        }
        out.done = page.len() < max;
        Ok(())
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

/// Whether `request` may read some table of `contract` whole (a *heavy* query, which the RPC's
/// query threads keep off their last thread). An error here is left for [`run`] to report.
pub fn is_heavy(store: &StateStore, contract: &Address, height: u64, request: &Request<'_>) -> bool {
    let Ok((_, compiled)) = load(store, contract, height) else { return false };
    match request {
        Request::Sql(sql) => Checker::for_contract(&Limits::default(), &compiled.interpreted)
            .check_query(sql)
            .is_ok_and(|q| aergo_sql::access::scans_a_table(&q)),
        Request::Function(name, _) => {
            compiled.function_access(name).is_some_and(aergo_sql::access::function_is_heavy)
        }
    }
}

/// Runs a query against `contract` as of `height` (which the caller checked against the head),
/// within `budget` (the RPC's `[rpc] query_gas` and deadline; at most a transaction's gas).
pub fn run(
    store: &StateStore,
    contract: &Address,
    height: u64,
    request: Request<'_>,
    budget: Gas,
) -> Result<QueryResult, SqlError> {
    let (_, compiled) = load(store, contract, height)?;
    let mut host = StoreHost { store, height };
    let ctx = CallCtx { self_address: contract.to_string(), height, ..CallCtx::default() };
    let mut buffered = Buffered::new(&mut host);
    let contract_ir = compiled.engine(aergo_sql::default_engine());
    let mut engine = Engine::new(contract_ir, contract, &mut buffered, &ctx, budget);
    match request {
        Request::Sql(sql) => {
            let select = Checker::for_contract(&Limits::default(), &compiled.interpreted).check_query(sql)?;
            engine.query(&select)
        }
        Request::Function(name, args) => engine.call(name, args),
    }
}
