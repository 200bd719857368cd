//! One fuzz step, shared by the `cargo fuzz` target (`fuzz/fuzz_targets/sql.rs`) and the bounded
//! in-process fuzz test: a script through parse → check, then the same deploy and calls (every
//! function with NULL and small-integer arguments, bounded gas) on the interpreter and on the JIT,
//! each over its own empty state. Whatever the input this returns, or panics because the engines
//! disagree: every step's result or error, the gas it used and the state after it must be the same.
//! A panic or a hang inside an engine is a bug as well.

use super::gas::Gas;
use super::interp::{CallCtx, Engine, QueryResult};
use super::ir::Stmt;
use super::store::{Buffered, MemHost};
use super::{compile, Compiled, EngineKind, SqlError, Value};
use aergo_primitives::types::Address;
use std::collections::BTreeMap;

/// Gas for each call in a fuzz step: enough to run loops of statements, small enough to stay fast.
const FUZZ_GAS: u64 = 20_000;

/// What one step (the deploy, or one call) did on one engine.
#[derive(Debug, PartialEq)]
struct Step {
    what: String,
    result: Result<Option<QueryResult>, SqlError>,
    gas_used: u64,
    state: BTreeMap<Vec<u8>, Vec<u8>>,
    transfers: Vec<(String, u128)>,
}

/// The deploy and every call of `compiled` on `kind`, in order, over one state.
fn run(compiled: &Compiled, constructor: &[Stmt], kind: EngineKind) -> Vec<Step> {
    let addr = Address([3; 20]);
    let ctx = CallCtx { sender: "fuzzer".into(), ..CallCtx::default() };
    let contract = compiled.engine(kind);
    let mut host = MemHost::default();
    let mut steps = Vec::new();
    let mut engine = Engine::new(contract, &addr, &mut host, &ctx, Gas::new(FUZZ_GAS));
    let result = engine.construct(constructor).map(|()| None);
    let gas_used = engine.gas.used;
    steps.push(Step {
        what: "deploy".into(),
        result,
        gas_used,
        state: host.data.clone(),
        transfers: host.transfers.clone(),
    });
    for f in &contract.functions {
        for fill in [Value::Null, Value::Int(1), Value::Int(-1)] {
            let args = vec![fill.clone(); f.params.len()];
            let mut buf = Buffered::new(&mut host);
            let mut engine = Engine::new(contract, &addr, &mut buf, &ctx, Gas::new(FUZZ_GAS));
            let result = engine.call(&f.name, args).map(Some);
            let gas_used = engine.gas.used;
            if result.is_ok() {
                let _ = buf.commit();
            }
            steps.push(Step {
                what: format!("{}({fill:?})", f.name),
                result,
                gas_used,
                state: host.data.clone(),
                transfers: host.transfers.clone(),
            });
        }
    }
    steps
}

pub fn fuzz_one(script: &str) {
    let Ok(checked) = compile(script) else { return };
    let compiled = Compiled::new(checked.contract);
    let interpreted = run(&compiled, &checked.constructor, EngineKind::Interpreter);
    let jit = run(&compiled, &checked.constructor, EngineKind::Jit);
    for (i, (a, b)) in interpreted.iter().zip(&jit).enumerate() {
        assert!(
            a == b,
            "the interpreter and the JIT disagree at step {i} of {script:?}\ninterpreter: {a:?}\nJIT:         {b:?}"
        );
    }
    assert_eq!(interpreted.len(), jit.len(), "the engines ran different numbers of steps on {script:?}");
}
