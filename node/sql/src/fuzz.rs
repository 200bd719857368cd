//! One fuzz step, shared by the `cargo fuzz` target (`fuzz/fuzz_targets/sql.rs`) and the bounded
//! in-process fuzz test: a script through parse → check → JIT → a call of every function (NULL and
//! small-integer arguments, bounded gas) on an empty state. Whatever the input, this returns: an
//! error is fine, a panic or a hang is a bug.

use super::gas::Gas;
use super::interp::{CallCtx, Engine};
use super::store::{Buffered, MemHost};
use super::{compile, Compiled, EngineKind, Value};
use aergo_primitives::types::Address;

/// Gas for each call in a fuzz step: enough to run loops of statements, small enough to stay fast.
const FUZZ_GAS: u64 = 20_000;

pub fn fuzz_one(script: &str) {
    let Ok(checked) = compile(script) else { return };
    let compiled = Compiled::new(checked.contract);
    let addr = Address([3; 20]);
    let ctx = CallCtx { sender: "fuzzer".into(), ..CallCtx::default() };
    let mut base = MemHost::default();
    for kind in [EngineKind::Interpreter, EngineKind::Jit] {
        let contract = compiled.engine(kind);
        let mut host = base.clone();
        let _ =
            Engine::new(contract, &addr, &mut host, &ctx, Gas::new(FUZZ_GAS)).construct(&checked.constructor);
        for f in &contract.functions {
            for fill in [Value::Null, Value::Int(1), Value::Int(-1)] {
                let args = vec![fill.clone(); f.params.len()];
                let mut buf = Buffered::new(&mut host);
                if Engine::new(contract, &addr, &mut buf, &ctx, Gas::new(FUZZ_GAS))
                    .call(&f.name, args)
                    .is_ok()
                {
                    let _ = buf.commit();
                }
            }
        }
        base = MemHost::default();
    }
}
