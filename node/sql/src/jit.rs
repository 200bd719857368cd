//! The cranelift JIT: expression trees over integers and booleans compiled to native code.
//!
//! What is compiled: every maximal expression subtree (three nodes or more) whose values are all
//! INTEGER, BOOLEAN or NULL — column and variable reads, literals, arithmetic, comparisons,
//! AND/OR/NOT, IS NULL, IN lists, CASE, COALESCE, NULLIF, ABS and casts between those types —
//! wherever it appears: filters, join conditions, projections, keys, CHECK constraints, SET
//! expressions and the expressions of function bodies. The rest (text, decimals, subqueries,
//! row access) stays with the engine, which calls the compiled code for each subtree
//! ([`Expr::Jit`]).
//!
//! Every `BEGIN … END` function body is compiled whole ([`JitBody`]): its control flow (IF/ELSIF/
//! ELSE, RETURN, RAISE), the assignments and conditions over INTEGER/BOOLEAN parameters and
//! variables run as native code on the call's frame, and each other statement (row statements,
//! SELECT … INTO, anything over TEXT or DECIMAL values) is a call from the native code into the
//! engine, which runs that one statement with its own expressions compiled as above — the way a
//! JIT calls its runtime for table access. The frame's integer slots are handed across at each
//! such call. The native code decides only successes: at an error, a RAISE or gas that would run
//! out it hands the call back; the engine then takes back the call's writes (a savepoint on the
//! host) and runs the body interpreted from the start, which fails at the same point with the same
//! message and the same gas.
//!
//! One meaning: the compiled code follows the interpreter's rules exactly — three-valued logic,
//! short-circuit AND/OR/CASE/COALESCE in the same order, overflow and division by zero as errors —
//! and counts the expression nodes it evaluates, which is exactly the gas the interpreter charges
//! (one unit per node). It never decides an error or an out-of-gas itself: when it meets an error,
//! or the gas would run out, it hands the subtree back to the interpreter, which runs it from the
//! same state and fails at the same node with the same message and the same gas.
//!
//! Compiled function: `extern "C" fn(inputs: *const i64, nulls: *const u8, out: *mut i64,
//! nodes: *mut u64) -> u32` (0 = value, 1 = NULL, 2 = hand back). Inputs are the subtree's
//! distinct column and variable reads, loaded by the engine.

use super::ir::{
    Access, Body, Builtin, Cmp, ConflictAction, Contract, Expr, Insert, InsertSource, OrderKey, Select, Stmt,
};
use super::value::{Arith, Type, Value};
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{types, AbiParam, Block, InstBuilder, MemFlags, UserFuncName, Value as CV};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{default_libcall_names, Linkage, Module};
use std::sync::Arc;

pub const STATUS_VALUE: u32 = 0;
pub const STATUS_NULL: u32 = 1;
pub const STATUS_HAND_BACK: u32 = 2;

type RawFn = unsafe extern "C" fn(*const i64, *const u8, *mut i64, *mut u64) -> u32;

/// The static kind of a compiled value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Int,
    Bool,
    Null,
}

/// What a compiled subtree reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    Col(usize),
    Var(usize),
}

/// A compiled subtree: its code, inputs and result kind, and the subtree itself for hand-backs.
pub struct JitExpr {
    func: RawFn,
    pub inputs: Vec<Input>,
    pub kind: Kind,
    pub fallback: Expr,
    /// Keeps the code alive.
    _code: Arc<Code>,
}

impl std::fmt::Debug for JitExpr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Jit({:?} → {:?})", self.inputs, self.kind)
    }
}

/// What a call of compiled code said.
pub enum Outcome {
    Value(Value, u64),
    HandBack,
}

impl JitExpr {
    /// Runs the code on the loaded inputs.
    pub fn run(&self, inputs: &[i64], nulls: &[u8]) -> Outcome {
        // SAFETY: `func` was compiled by `Compiler::compile` for `RawFn`, reading exactly
        // `self.inputs.len()` entries of each array; `_code` keeps the code alive.
        unsafe { call(self.func, inputs, nulls, self.kind) }
    }
}

/// Calls compiled code and turns its status into an [`Outcome`].
///
/// # Safety
/// `func` must be live code of the `RawFn` signature that reads no more entries of `values` and
/// `nulls` than they hold.
unsafe fn call(func: RawFn, values: &[i64], nulls: &[u8], kind: Kind) -> Outcome {
    let mut out = 0i64;
    let mut nodes = 0u64;
    // SAFETY: the caller's promise.
    let status = unsafe { func(values.as_ptr(), nulls.as_ptr(), &mut out, &mut nodes) };
    match status {
        STATUS_VALUE => Outcome::Value(
            match kind {
                Kind::Int => Value::Int(out),
                Kind::Bool => Value::Bool(out != 0),
                Kind::Null => Value::Null,
            },
            nodes,
        ),
        STATUS_NULL => Outcome::Value(Value::Null, nodes),
        _ => Outcome::HandBack,
    }
}

/// A whole function body compiled (see the module comment). It runs on the call's frame and counts
/// the statements and nodes it runs natively as the interpreter charges them; the statements it
/// hands to the engine ([`JitBody::host_stmts`]) are charged there.
///
/// Compiled function: `extern "C" fn(values: *mut i64, nulls: *mut u8, out: *mut i64, nodes: *mut
/// u64, host: *mut c_void, step: StepFn) -> u32` with the body statuses below; `values`/`nulls`
/// hold one entry per frame slot (the INTEGER/BOOLEAN ones meaningful).
pub struct JitBody {
    func: BodyFn,
    /// The kind a native RETURN gives; `None` when the function returns no INTEGER or BOOLEAN
    /// (its RETURNs with a value are then run by the engine).
    pub ret: Option<Kind>,
    /// The statements the native code hands to the engine, by index; rewritten like the rest of
    /// the contract, so their expressions are compiled too.
    pub host_stmts: Vec<Stmt>,
    _code: Arc<Code>,
}

/// A host statement returned from the function; the engine holds the value.
pub const STATUS_RETURNED: u32 = 3;
/// The body ended without a value (a VOID function).
pub const STATUS_DONE: u32 = 4;

type BodyFn =
    unsafe extern "C" fn(*mut i64, *mut u8, *mut i64, *mut u64, *mut std::ffi::c_void, StepFn) -> u32;
type StepFn = unsafe extern "C" fn(*mut std::ffi::c_void, u32, *mut i64, *mut u8, u64) -> u32;

/// What the engine did with one host statement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostStep {
    /// Ran; the frame's integer slots are written back.
    Next,
    /// Ran a RETURN; the engine keeps the value.
    Returned,
    /// Failed (or the gas ran out): the call goes to the interpreter.
    HandBack,
}

/// How a compiled body ended. Node counts are what the native code ran since its last host
/// statement (each host statement is handed the count before it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BodyOutcome {
    Value(Value, u64),
    Returned(u64),
    Done(u64),
    HandBack,
}

/// The engine's side of a body: runs host statement `index` on the frame, after charging `nodes`.
pub type Step<'s> = dyn FnMut(usize, &mut [i64], &mut [u8], u64) -> HostStep + 's;

struct StepCtx<'a, 's> {
    step: &'a mut Step<'s>,
    slots: usize,
}

/// The native code's way into the engine. Never unwinds into native code: a panic becomes a
/// hand-back (the interpreter then meets the same panic on its own stack).
unsafe extern "C" fn step_trampoline(
    ctx: *mut std::ffi::c_void,
    index: u32,
    values: *mut i64,
    nulls: *mut u8,
    nodes: u64,
) -> u32 {
    let run = std::panic::AssertUnwindSafe(|| {
        // SAFETY: `ctx` is the `StepCtx` that `JitBody::run` passed for this call and outlives it;
        // `values` and `nulls` are that call's frame arrays of `slots` entries each, which the
        // native code does not touch while the engine runs.
        let cx = unsafe { &mut *(ctx as *mut StepCtx<'_, '_>) };
        let (values, nulls) = unsafe {
            (
                std::slice::from_raw_parts_mut(values, cx.slots),
                std::slice::from_raw_parts_mut(nulls, cx.slots),
            )
        };
        match (cx.step)(index as usize, values, nulls, nodes) {
            HostStep::Next => 0,
            HostStep::Returned => STATUS_RETURNED,
            HostStep::HandBack => STATUS_HAND_BACK,
        }
    });
    std::panic::catch_unwind(run).unwrap_or(STATUS_HAND_BACK)
}

impl std::fmt::Debug for JitBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JitBody(→ {:?}, {} host statements)", self.ret, self.host_stmts.len())
    }
}

impl JitBody {
    /// Runs on the frame (`values`/`nulls`: one entry per parameter and variable), calling `step`
    /// for each host statement it reaches.
    pub fn run(&self, values: &mut [i64], nulls: &mut [u8], step: &mut Step<'_>) -> BodyOutcome {
        if values.len() != nulls.len() {
            return BodyOutcome::HandBack;
        }
        let mut cx = StepCtx { step, slots: values.len() };
        let mut out = 0i64;
        let mut nodes = 0u64;
        // SAFETY: compiled by `Compiler::compile_body` for `BodyFn`, reading and writing one entry
        // per frame slot of each array (the caller passes the whole frame), and calling back
        // only through `step_trampoline` with `cx`; `_code` keeps the code alive.
        let status = unsafe {
            (self.func)(
                values.as_mut_ptr(),
                nulls.as_mut_ptr(),
                &mut out,
                &mut nodes,
                &mut cx as *mut StepCtx<'_, '_> as *mut std::ffi::c_void,
                step_trampoline,
            )
        };
        match (status, self.ret) {
            (STATUS_VALUE, Some(Kind::Int)) => BodyOutcome::Value(Value::Int(out), nodes),
            (STATUS_VALUE, Some(Kind::Bool)) => BodyOutcome::Value(Value::Bool(out != 0), nodes),
            (STATUS_VALUE, _) | (STATUS_NULL, _) => BodyOutcome::Value(Value::Null, nodes),
            (STATUS_RETURNED, _) => BodyOutcome::Returned(nodes),
            (STATUS_DONE, _) => BodyOutcome::Done(nodes),
            _ => BodyOutcome::HandBack,
        }
    }
}

/// The JIT module owning a contract's code.
pub struct Code {
    module: parking_lot::Mutex<Option<JITModule>>,
}

// SAFETY: the module is only touched under its mutex (while compiling, and when dropped); finished
// functions are immutable machine code without thread affinity, called through `JitExpr::run` from
// any thread.
unsafe impl Send for Code {}
unsafe impl Sync for Code {}

impl Drop for Code {
    fn drop(&mut self) {
        if let Some(m) = self.module.get_mut().take() {
            // SAFETY: the last `Arc<Code>` is gone, so no `JitExpr` (each holds one) can call into it.
            unsafe { m.free_memory() };
        }
    }
}

/// Statistics of a compilation.
#[derive(Clone, Copy, Debug, Default)]
pub struct JitStats {
    /// Compiled expression subtrees.
    pub functions: usize,
    pub nodes: usize,
    /// Function bodies compiled whole.
    pub bodies: usize,
    /// Statements of those bodies that the native code hands to the engine.
    pub host_statements: usize,
}

/// An ad-hoc query over `contract`'s tables, compiled the same way.
pub fn compile_query(contract: &Contract, mut q: Select) -> Result<Select, String> {
    let mut cx = Compiler::new()?;
    cx.tables = contract.tables.iter().map(|t| t.columns.iter().map(|c| c.ty).collect()).collect();
    let tables = cx.tables.clone();
    let mut rw = Rewriter { compiler: &mut cx, stats: JitStats::default(), error: None };
    rw.select(&mut q, &tables, &[]);
    match rw.error {
        Some(e) => Err(e),
        None => Ok(q),
    }
}

/// The contract with every compilable subtree replaced by [`Expr::Jit`].
pub fn compile_contract(c: &Contract) -> Result<(Contract, JitStats), String> {
    let mut cx = Compiler::new()?;
    cx.tables = c.tables.iter().map(|t| t.columns.iter().map(|c| c.ty).collect()).collect();
    let mut out = c.clone();
    let mut bodies = Vec::with_capacity(c.functions.len());
    for f in &c.functions {
        bodies.push(cx.compile_body(f)?);
    }
    let mut rw = Rewriter { compiler: &mut cx, stats: JitStats::default(), error: None };
    for t in &mut out.tables {
        let types: Vec<Type> = t.columns.iter().map(|c| c.ty).collect();
        for (e, _) in &mut t.checks {
            rw.expr(e, &types, &[]);
        }
        for col in &mut t.columns {
            if let Some(d) = &mut col.default {
                rw.expr(d, &[], &[]);
            }
        }
    }
    let tables = rw.compiler.tables.clone();
    for (f, body) in out.functions.iter_mut().zip(bodies) {
        if let Some(mut body) = body {
            let vars = f.vars.clone();
            rw.stmts(&mut body.host_stmts, &tables, &vars);
            rw.stats.bodies += 1;
            rw.stats.host_statements += body.host_stmts.len();
            f.jit = Some(Arc::new(body));
        }
        let vars = f.vars.clone();
        match &mut f.body {
            Body::Query(q) => rw.select(q, &tables, &vars),
            Body::Block(stmts) => rw.stmts(stmts, &tables, &vars),
        }
    }
    if let Some(e) = rw.error {
        return Err(e);
    }
    Ok((out, rw.stats))
}

struct Rewriter<'c> {
    compiler: &'c mut Compiler,
    stats: JitStats,
    /// A failure of the code generator itself (the contract then runs interpreted).
    error: Option<String>,
}

impl Rewriter<'_> {
    /// Replaces maximal compilable subtrees of `e` (rows typed by `row`, variables by `vars`).
    fn expr(&mut self, e: &mut Expr, row: &[Type], vars: &[Type]) {
        let typing = Typing { row, vars };
        if typing.kind(e).is_some() && size(e) >= 3 {
            match self.compiler.compile(e, &typing) {
                Ok(j) => {
                    self.stats.functions += 1;
                    self.stats.nodes += size(e);
                    *e = Expr::Jit(j);
                    return;
                }
                Err(err) => {
                    self.error.get_or_insert(err);
                }
            }
        }
        match e {
            Expr::Neg(x) | Expr::Not(x) | Expr::IsNull(x, _) | Expr::Cast(x, _) => self.expr(x, row, vars),
            Expr::Arith(_, a, b)
            | Expr::Cmp(_, a, b)
            | Expr::And(a, b)
            | Expr::Or(a, b)
            | Expr::Concat(a, b) => {
                self.expr(a, row, vars);
                self.expr(b, row, vars);
            }
            Expr::InList(x, list, _) => {
                self.expr(x, row, vars);
                list.iter_mut().for_each(|i| self.expr(i, row, vars));
            }
            Expr::InQuery(x, _, _) | Expr::Quantified(_, x, _, _) => self.expr(x, row, vars),
            Expr::Case { operand, whens, otherwise } => {
                if let Some(o) = operand {
                    self.expr(o, row, vars);
                }
                for (w, t) in whens {
                    self.expr(w, row, vars);
                    self.expr(t, row, vars);
                }
                if let Some(o) = otherwise {
                    self.expr(o, row, vars);
                }
            }
            Expr::Func(_, args) => args.iter_mut().for_each(|a| self.expr(a, row, vars)),
            _ => {}
        }
        // Subqueries: their own rows (correlated reads of this row stay interpreted).
        if let Expr::InQuery(_, q, _)
        | Expr::Quantified(_, _, q, _)
        | Expr::Exists(q, _)
        | Expr::Subquery(q) = e
        {
            let tables = self.compiler.tables.clone();
            self.select(q, &tables, vars);
        }
    }

    fn select(&mut self, q: &mut Select, tables: &[Vec<Type>], vars: &[Type]) {
        if let Some(c) = &mut q.compound {
            self.select(&mut c.first, tables, vars);
            for (_, arm) in &mut c.rest {
                self.select(arm, tables, vars);
            }
        }
        let mut row: Vec<Type> = Vec::with_capacity(q.width);
        for s in &q.from {
            row.extend_from_slice(&tables[s.table]);
        }
        let row = row.as_slice();
        for s in &mut q.from {
            if let Some(on) = &mut s.on {
                self.expr(on, row, vars);
            }
            if let Access::Point(keys) | Access::Index(_, keys) = &mut s.access {
                keys.iter_mut().for_each(|k| self.expr(k, row, vars));
            }
        }
        if let Some(Access::Point(keys) | Access::Index(_, keys)) = &mut q.ordered_access {
            keys.iter_mut().for_each(|k| self.expr(k, row, vars));
        }
        if let Some(f) = &mut q.filter {
            self.expr(f, row, vars);
        }
        for g in &mut q.group_by {
            self.expr(g, row, vars);
        }
        for a in &mut q.aggregates {
            if let Some(x) = &mut a.arg {
                self.expr(x, row, vars);
            }
        }
        // Output, HAVING and ORDER BY of a grouped query read aggregates: left to the engine.
        if !q.grouped {
            q.projection.iter_mut().for_each(|p| self.expr(p, row, vars));
            for (k, _) in &mut q.order_by {
                if let OrderKey::Expr(e) = k {
                    self.expr(e, row, vars);
                }
            }
        }
        if let Some(l) = &mut q.limit {
            self.expr(l, &[], vars);
        }
        if let Some(o) = &mut q.offset {
            self.expr(o, &[], vars);
        }
    }

    fn stmts(&mut self, stmts: &mut [Stmt], tables: &[Vec<Type>], vars: &[Type]) {
        for s in stmts {
            match s {
                Stmt::Assign(_, e) | Stmt::Raise(e) | Stmt::Perform(e) => self.expr(e, &[], vars),
                Stmt::Return(e) => {
                    if let Some(e) = e {
                        self.expr(e, &[], vars);
                    }
                }
                Stmt::Emit(_, args) => args.iter_mut().for_each(|e| self.expr(e, &[], vars)),
                Stmt::If { branches, otherwise } => {
                    for (c, body) in branches {
                        self.expr(c, &[], vars);
                        self.stmts(body, tables, vars);
                    }
                    self.stmts(otherwise, tables, vars);
                }
                Stmt::SelectInto(q, _) => self.select(q, tables, vars),
                Stmt::Insert(i) => self.insert(i, tables, vars),
                Stmt::Update(u) => {
                    let row = &tables[u.table];
                    for (_, e) in &mut u.sets {
                        self.expr(e, row, vars);
                    }
                    if let Some(f) = &mut u.filter {
                        self.expr(f, row, vars);
                    }
                    if let Access::Point(keys) | Access::Index(_, keys) = &mut u.access {
                        keys.iter_mut().for_each(|k| self.expr(k, row, vars));
                    }
                }
                Stmt::Delete(d) => {
                    let row = &tables[d.table];
                    if let Some(f) = &mut d.filter {
                        self.expr(f, row, vars);
                    }
                    if let Access::Point(keys) | Access::Index(_, keys) = &mut d.access {
                        keys.iter_mut().for_each(|k| self.expr(k, row, vars));
                    }
                }
            }
        }
    }

    fn insert(&mut self, i: &mut Insert, tables: &[Vec<Type>], vars: &[Type]) {
        match &mut i.source {
            InsertSource::Values(rows) => {
                for r in rows {
                    r.iter_mut().for_each(|e| self.expr(e, &[], vars));
                }
            }
            InsertSource::Query(q) => self.select(q, tables, vars),
        }
        if let Some(oc) = &mut i.on_conflict {
            if let ConflictAction::Update { sets, filter } = &mut oc.action {
                let mut both = tables[i.table].clone();
                both.extend_from_slice(&tables[i.table]);
                for (_, e) in sets {
                    self.expr(e, &both, vars);
                }
                if let Some(f) = filter {
                    self.expr(f, &both, vars);
                }
            }
        }
    }
}

fn size(e: &Expr) -> usize {
    let mut n = 0;
    e.walk(0, &mut |_, _| n += 1);
    n
}

struct Typing<'t> {
    row: &'t [Type],
    vars: &'t [Type],
}

fn kind_of(t: Type) -> Option<Kind> {
    match t {
        Type::Int => Some(Kind::Int),
        Type::Bool => Some(Kind::Bool),
        _ => None,
    }
}

impl Typing<'_> {
    /// The kind of `e` when it can be compiled.
    fn kind(&self, e: &Expr) -> Option<Kind> {
        let scalar = |k: Option<Kind>| k.is_some();
        let numeric = |k: Option<Kind>| matches!(k, Some(Kind::Int | Kind::Null));
        Some(match e {
            Expr::Const(Value::Int(_)) => Kind::Int,
            Expr::Const(Value::Bool(_)) => Kind::Bool,
            Expr::Const(Value::Null) => Kind::Null,
            Expr::Col { up: 0, slot } => kind_of(*self.row.get(*slot)?)?,
            Expr::Var(i) => kind_of(*self.vars.get(*i)?)?,
            Expr::Neg(x) if numeric(self.kind(x)) => Kind::Int,
            Expr::Not(x) if scalar(self.kind(x)) => Kind::Bool,
            Expr::Arith(_, a, b) if numeric(self.kind(a)) && numeric(self.kind(b)) => Kind::Int,
            Expr::Cmp(_, a, b) | Expr::And(a, b) | Expr::Or(a, b)
                if scalar(self.kind(a)) && scalar(self.kind(b)) =>
            {
                Kind::Bool
            }
            Expr::IsNull(x, _) if scalar(self.kind(x)) => Kind::Bool,
            Expr::InList(x, list, _) if scalar(self.kind(x)) && list.iter().all(|i| scalar(self.kind(i))) => {
                Kind::Bool
            }
            Expr::Case { operand, whens, otherwise } => {
                if operand.as_ref().is_some_and(|o| !scalar(self.kind(o))) {
                    return None;
                }
                let mut results = Vec::new();
                for (w, t) in whens {
                    if !scalar(self.kind(w)) {
                        return None;
                    }
                    results.push(self.kind(t)?);
                }
                if let Some(o) = otherwise {
                    results.push(self.kind(o)?);
                }
                unify(&results)?
            }
            Expr::Func(Builtin::Coalesce, args) => {
                unify(&args.iter().map(|a| self.kind(a)).collect::<Option<Vec<_>>>()?)?
            }
            Expr::Func(Builtin::Nullif, args) if args.len() == 2 && scalar(self.kind(&args[1])) => {
                self.kind(&args[0])?
            }
            Expr::Func(Builtin::Abs, args) if args.len() == 1 && numeric(self.kind(&args[0])) => Kind::Int,
            Expr::Cast(x, Type::Int) if scalar(self.kind(x)) => Kind::Int,
            Expr::Cast(x, Type::Bool) if scalar(self.kind(x)) => Kind::Bool,
            _ => return None,
        })
    }
}

/// One kind for values that may come from several branches (NULL fits any).
fn unify(kinds: &[Kind]) -> Option<Kind> {
    let mut k = Kind::Null;
    for &x in kinds {
        match (k, x) {
            (_, Kind::Null) => {}
            (Kind::Null, x) => k = x,
            (a, b) if a == b => {}
            _ => return None,
        }
    }
    Some(k)
}

struct Compiler {
    code: Arc<Code>,
    ctx: cranelift_codegen::Context,
    fctx: FunctionBuilderContext,
    /// Column types of the contract's tables (for subqueries).
    tables: Vec<Vec<Type>>,
    count: usize,
}

/// A compiled value: (value, is-null as i8).
type Pair = (CV, CV);

struct Emit<'b, 'f> {
    b: &'b mut FunctionBuilder<'f>,
    inputs: Vec<Input>,
    input_vals: Vec<Pair>,
    gas: Variable,
    hand_back: Block,
    args: [CV; 4],
    /// In a compiled body: the frame's (value, null) variables, read and written by statements.
    frame: Option<Vec<(Variable, Variable)>>,
    /// In a compiled body: the way into the engine for the statements it runs.
    host: Option<HostArgs>,
}

impl Compiler {
    fn new() -> Result<Compiler, String> {
        let mut flags = settings::builder();
        flags.set("use_colocated_libcalls", "false").map_err(|e| e.to_string())?;
        flags.set("is_pic", "false").map_err(|e| e.to_string())?;
        flags.set("opt_level", "speed").map_err(|e| e.to_string())?;
        let isa = cranelift_native::builder()
            .map_err(|e| format!("no JIT for this machine: {e}"))?
            .finish(settings::Flags::new(flags))
            .map_err(|e| e.to_string())?;
        let module = JITModule::new(JITBuilder::with_isa(isa, default_libcall_names()));
        let ctx = module.make_context();
        let code = Arc::new(Code { module: parking_lot::Mutex::new(Some(module)) });
        Ok(Compiler { code, ctx, fctx: FunctionBuilderContext::new(), tables: Vec::new(), count: 0 })
    }

    fn compile(&mut self, e: &Expr, typing: &Typing<'_>) -> Result<Arc<JitExpr>, String> {
        let kind = typing.kind(e).ok_or("not compilable")?;
        let code = self.code.clone();
        let mut guard = code.module.lock();
        let module = guard.as_mut().ok_or("JIT module gone")?;
        let id = self.declare(module)?;

        let mut inputs = Vec::new();
        e.walk(0, &mut |x, d| {
            if d == 0 {
                let i = match x {
                    Expr::Col { up: 0, slot } => Some(Input::Col(*slot)),
                    Expr::Var(v) => Some(Input::Var(*v)),
                    _ => None,
                };
                if let Some(i) = i {
                    if !inputs.contains(&i) {
                        inputs.push(i);
                    }
                }
            }
        });
        {
            let mut b = FunctionBuilder::new(&mut self.ctx.func, &mut self.fctx);
            let (args, gas) = entry(&mut b);
            let args = [args[0], args[1], args[2], args[3]];
            // Load every input once.
            let mut input_vals = Vec::with_capacity(inputs.len());
            for (i, _) in inputs.iter().enumerate() {
                let v = b.ins().load(types::I64, MemFlags::trusted(), args[0], (i * 8) as i32);
                let n = b.ins().load(types::I8, MemFlags::trusted(), args[1], i as i32);
                input_vals.push((v, n));
            }
            let hand_back = b.create_block();
            {
                let mut em = Emit {
                    b: &mut b,
                    inputs: inputs.clone(),
                    input_vals,
                    gas,
                    hand_back,
                    args,
                    frame: None,
                    host: None,
                };
                let p = em.node(e)?;
                em.ret(p);
            }
            close(b, hand_back);
        }
        let func = self.define(module, id)?;
        drop(guard);
        Ok(Arc::new(JitExpr { func, inputs, kind, fallback: e.clone(), _code: code.clone() }))
    }
}

/// How a compiled body reaches the engine: the host context and step function (the body's fifth
/// and sixth arguments), the step's signature, and the statements handed over so far.
struct HostArgs {
    ctx: CV,
    step: CV,
    sig: cranelift_codegen::ir::SigRef,
    /// The kind of each frame slot (`None`: held by the engine alone, never read natively).
    slots: Vec<Option<Kind>>,
    stmts: Vec<Stmt>,
    /// The function returns nothing: falling off the end is a normal end.
    void: bool,
}

impl Compiler {
    /// Compiles a `BEGIN … END` body whole (`None` for a query body).
    fn compile_body(&mut self, f: &super::ir::Function) -> Result<Option<JitBody>, String> {
        let (ret, void) = match &f.returns {
            super::ir::Returns::Scalar(t) => (kind_of(*t), false),
            _ => (None, true),
        };
        let Body::Block(stmts) = &f.body else { return Ok(None) };
        let code = self.code.clone();
        let mut guard = code.module.lock();
        let module = guard.as_mut().ok_or("JIT module gone")?;
        let ptr = module.target_config().pointer_type();
        let id = self.declare_with(module, true)?;
        let host_stmts;
        let call_conv = self.ctx.func.signature.call_conv;
        {
            let mut b = FunctionBuilder::new(&mut self.ctx.func, &mut self.fctx);
            let (args, gas) = entry(&mut b);
            let slots: Vec<Option<Kind>> = f.vars.iter().map(|t| kind_of(*t)).collect();
            let mut frame = Vec::with_capacity(f.vars.len());
            for (i, kind) in slots.iter().enumerate() {
                let (val, null) =
                    (Variable::from_u32(1 + 2 * i as u32), Variable::from_u32(2 + 2 * i as u32));
                b.declare_var(val, types::I64);
                b.declare_var(null, types::I8);
                let (v, n) = if kind.is_some() {
                    (
                        b.ins().load(types::I64, MemFlags::trusted(), args[0], (i * 8) as i32),
                        b.ins().load(types::I8, MemFlags::trusted(), args[1], i as i32),
                    )
                } else {
                    (b.ins().iconst(types::I64, 0), b.ins().iconst(types::I8, 1))
                };
                b.def_var(val, v);
                b.def_var(null, n);
                frame.push((val, null));
            }
            let mut sig = cranelift_codegen::ir::Signature::new(call_conv);
            for t in [ptr, types::I32, ptr, ptr, types::I64] {
                sig.params.push(AbiParam::new(t));
            }
            sig.returns.push(AbiParam::new(types::I32));
            let sig = b.import_signature(sig);
            let hand_back = b.create_block();
            {
                let host = HostArgs { ctx: args[4], step: args[5], sig, slots, stmts: Vec::new(), void };
                let mut em = Emit {
                    b: &mut b,
                    inputs: Vec::new(),
                    input_vals: Vec::new(),
                    gas,
                    hand_back,
                    args: [args[0], args[1], args[2], args[3]],
                    frame: Some(frame),
                    host: Some(host),
                };
                if !em.stmts(stmts, &f.vars, ret)? {
                    if void {
                        em.finish(STATUS_DONE);
                    } else {
                        // Falling off the end of a function that returns a value is the
                        // interpreter's error.
                        em.b.ins().jump(hand_back, &[]);
                    }
                }
                host_stmts = em.host.take().map(|h| h.stmts).unwrap_or_default();
            }
            close(b, hand_back);
        }
        let func = self.define(module, id)?;
        drop(guard);
        // SAFETY: declared with the `BodyFn` signature (`declare_with(.., true)`).
        let func = unsafe { std::mem::transmute::<RawFn, BodyFn>(func) };
        Ok(Some(JitBody { func, ret, host_stmts, _code: code.clone() }))
    }
}

/// The entry block: the pointer arguments and the node counter (at 0).
fn entry(b: &mut FunctionBuilder<'_>) -> (Vec<CV>, Variable) {
    let entry = b.create_block();
    b.append_block_params_for_function_params(entry);
    b.switch_to_block(entry);
    let params = b.block_params(entry).to_vec();
    let gas = Variable::from_u32(0);
    b.declare_var(gas, types::I64);
    let zero = b.ins().iconst(types::I64, 0);
    b.def_var(gas, zero);
    (params, gas)
}

/// The hand-back exit, and the end of the function.
fn close(mut b: FunctionBuilder<'_>, hand_back: Block) {
    b.switch_to_block(hand_back);
    let hb = b.ins().iconst(types::I32, STATUS_HAND_BACK as i64);
    b.ins().return_(&[hb]);
    b.seal_all_blocks();
    b.finalize();
}

impl Compiler {
    /// A new function of the `RawFn` signature in `module`, to be built in `self.ctx`.
    fn declare(&mut self, module: &mut JITModule) -> Result<cranelift_module::FuncId, String> {
        self.declare_with(module, false)
    }

    /// `RawFn`, or `BodyFn` (two more pointers: the host context and its step function) for a
    /// whole body.
    fn declare_with(
        &mut self,
        module: &mut JITModule,
        body: bool,
    ) -> Result<cranelift_module::FuncId, String> {
        let ptr = module.target_config().pointer_type();
        let mut sig = module.make_signature();
        for _ in 0..if body { 6 } else { 4 } {
            sig.params.push(AbiParam::new(ptr));
        }
        sig.returns.push(AbiParam::new(types::I32));
        let name = format!("f{}", self.count);
        self.count += 1;
        let id = module.declare_function(&name, Linkage::Local, &sig).map_err(|e| e.to_string())?;
        self.ctx.func.signature = sig;
        self.ctx.func.name = UserFuncName::user(0, id.as_u32());
        Ok(id)
    }

    /// Compiles the function built in `self.ctx`; returns its code.
    fn define(&mut self, module: &mut JITModule, id: cranelift_module::FuncId) -> Result<RawFn, String> {
        let defined = module.define_function(id, &mut self.ctx);
        module.clear_context(&mut self.ctx);
        defined.map_err(|e| format!("{e:?}"))?;
        module.finalize_definitions().map_err(|e| e.to_string())?;
        let ptr = module.get_finalized_function(id);
        // SAFETY: the function was just defined with exactly the `RawFn` signature.
        Ok(unsafe { std::mem::transmute::<*const u8, RawFn>(ptr) })
    }
}

impl Emit<'_, '_> {
    /// Returns value `p`: stores it and the node count; status VALUE or NULL.
    fn ret(&mut self, p: Pair) {
        self.b.ins().store(MemFlags::trusted(), p.0, self.args[2], 0);
        let used = self.b.use_var(self.gas);
        self.b.ins().store(MemFlags::trusted(), used, self.args[3], 0);
        let one = self.b.ins().iconst(types::I32, STATUS_NULL as i64);
        let zero = self.b.ins().iconst(types::I32, STATUS_VALUE as i64);
        let status = self.b.ins().select(p.1, one, zero);
        self.b.ins().return_(&[status]);
    }

    fn charge(&mut self, n: i64) {
        let g = self.b.use_var(self.gas);
        let g = self.b.ins().iadd_imm(g, n);
        self.b.def_var(self.gas, g);
    }

    /// A value as stored in an INTEGER or BOOLEAN variable (or returned as one): what
    /// [`Value::coerce`] does; an integer other than 0 or 1 into a BOOLEAN is handed back (the
    /// interpreter's error).
    fn coerce(&mut self, p: Pair, from: Kind, to: Kind) -> Pair {
        if to == Kind::Bool && from == Kind::Int {
            let big = self.b.ins().icmp_imm(IntCC::UnsignedGreaterThan, p.0, 1);
            let nn = self.b.ins().icmp_imm(IntCC::Equal, p.1, 0);
            let bad = self.b.ins().band(big, nn);
            self.hand_back_if(bad);
        }
        p
    }

    /// Ends the function with `status` (no value) and the node count.
    fn finish(&mut self, status: u32) {
        let used = self.b.use_var(self.gas);
        self.b.ins().store(MemFlags::trusted(), used, self.args[3], 0);
        let st = self.b.ins().iconst(types::I32, status as i64);
        self.b.ins().return_(&[st]);
    }

    /// Whether statement `s` runs natively (else the engine runs it): assignments to and
    /// conditions over INTEGER/BOOLEAN values, RETURN, RAISE and IF around them.
    fn native(&self, s: &Stmt, typing: &Typing<'_>, ret: Option<Kind>) -> bool {
        let void = self.host.as_ref().is_none_or(|h| h.void);
        match s {
            Stmt::Assign(slot, e) => {
                typing.vars.get(*slot).and_then(|t| kind_of(*t)).is_some() && typing.kind(e).is_some()
            }
            Stmt::Return(Some(e)) => ret.is_some() && typing.kind(e).is_some(),
            Stmt::Return(None) => ret.is_some() || void,
            Stmt::Raise(_) => true,
            Stmt::If { branches, .. } => branches.iter().all(|(c, _)| typing.kind(c).is_some()),
            _ => false,
        }
    }

    /// Statement `s` run by the engine: the frame's integer slots are stored for it and loaded
    /// back after; the nodes counted so far go with the call (the engine charges them).
    fn host_stmt(&mut self, s: &Stmt) -> Result<(), String> {
        let frame = self.frame.clone().ok_or("no frame")?;
        let h = self.host.as_mut().ok_or("no host")?;
        let index = h.stmts.len();
        h.stmts.push(s.clone());
        let (ctx, step, sig, slots) = (h.ctx, h.step, h.sig, h.slots.clone());
        for (i, (kind, (val, null))) in slots.iter().zip(&frame).enumerate() {
            if kind.is_some() {
                let (v, n) = (self.b.use_var(*val), self.b.use_var(*null));
                self.b.ins().store(MemFlags::trusted(), v, self.args[0], (i * 8) as i32);
                self.b.ins().store(MemFlags::trusted(), n, self.args[1], i as i32);
            }
        }
        let nodes = self.b.use_var(self.gas);
        let idx = self.b.ins().iconst(types::I32, index as i64);
        let call = self.b.ins().call_indirect(sig, step, &[ctx, idx, self.args[0], self.args[1], nodes]);
        let status = self.b.inst_results(call)[0];
        let zero = self.i64c(0);
        self.b.def_var(self.gas, zero);
        let (cont, stop) = (self.b.create_block(), self.b.create_block());
        self.b.ins().brif(status, stop, &[], cont, &[]);
        // Not 0: the engine returned from the function, or hands the call back.
        self.b.switch_to_block(stop);
        let returned = self.b.ins().icmp_imm(IntCC::Equal, status, STATUS_RETURNED as i64);
        let ret_b = self.b.create_block();
        self.b.ins().brif(returned, ret_b, &[], self.hand_back, &[]);
        self.b.switch_to_block(ret_b);
        self.finish(STATUS_RETURNED);
        self.b.switch_to_block(cont);
        for (i, (kind, (val, null))) in slots.iter().zip(&frame).enumerate() {
            if kind.is_some() {
                let v = self.b.ins().load(types::I64, MemFlags::trusted(), self.args[0], (i * 8) as i32);
                let n = self.b.ins().load(types::I8, MemFlags::trusted(), self.args[1], i as i32);
                self.b.def_var(*val, v);
                self.b.def_var(*null, n);
            }
        }
        Ok(())
    }

    /// Statements of a compiled body; true when every path ended (RETURN, RAISE).
    fn stmts(&mut self, stmts: &[Stmt], types: &[Type], ret: Option<Kind>) -> Result<bool, String> {
        let typing_vars = types.to_vec();
        for s in stmts {
            if !self.native(s, &Typing { row: &[], vars: &typing_vars }, ret) {
                // The engine charges the statement.
                self.host_stmt(s)?;
                continue;
            }
            self.charge(super::gas::STATEMENT as i64);
            match s {
                Stmt::Assign(slot, e) => {
                    let from = Typing { row: &[], vars: &typing_vars }.kind(e).ok_or("not compilable")?;
                    let to = kind_of(*types.get(*slot).ok_or("slot")?).ok_or("type")?;
                    let p = self.node(e)?;
                    let p = self.coerce(p, from, to);
                    let (val, null) =
                        self.frame.as_ref().and_then(|f| f.get(*slot).copied()).ok_or("slot")?;
                    self.b.def_var(val, p.0);
                    self.b.def_var(null, p.1);
                }
                Stmt::Return(Some(e)) => {
                    let from = Typing { row: &[], vars: &typing_vars }.kind(e).ok_or("not compilable")?;
                    let p = self.node(e)?;
                    let p = self.coerce(p, from, ret.ok_or("return kind")?);
                    self.ret(p);
                    return Ok(true);
                }
                Stmt::Return(None) => {
                    match ret {
                        Some(_) => {
                            let p = (self.i64c(0), self.i8c(1));
                            self.ret(p);
                        }
                        None => self.finish(STATUS_DONE),
                    }
                    return Ok(true);
                }
                Stmt::Raise(_) => {
                    // The interpreter raises, with the message and the gas.
                    self.b.ins().jump(self.hand_back, &[]);
                    return Ok(true);
                }
                Stmt::If { branches, otherwise } => {
                    let merge = self.b.create_block();
                    let mut all_return = true;
                    for (cond, body) in branches {
                        let c = self.node(cond)?;
                        let hit = self.is_true(c);
                        let (then_b, next) = (self.b.create_block(), self.b.create_block());
                        self.b.ins().brif(hit, then_b, &[], next, &[]);
                        self.b.switch_to_block(then_b);
                        if !self.stmts(body, types, ret)? {
                            all_return = false;
                            self.b.ins().jump(merge, &[]);
                        }
                        self.b.switch_to_block(next);
                    }
                    if !self.stmts(otherwise, types, ret)? {
                        all_return = false;
                        self.b.ins().jump(merge, &[]);
                    }
                    self.b.switch_to_block(merge);
                    if all_return {
                        // Nothing reaches here; end the block for the verifier.
                        self.b.ins().jump(self.hand_back, &[]);
                        return Ok(true);
                    }
                }
                _ => return Err("statement not compilable".into()),
            }
        }
        Ok(false)
    }

    fn tick(&mut self) {
        let g = self.b.use_var(self.gas);
        let g = self.b.ins().iadd_imm(g, 1);
        self.b.def_var(self.gas, g);
    }

    fn i64c(&mut self, v: i64) -> CV {
        self.b.ins().iconst(types::I64, v)
    }

    fn i8c(&mut self, v: i64) -> CV {
        self.b.ins().iconst(types::I8, v)
    }

    fn bool64(&mut self, flag: CV) -> CV {
        self.b.ins().uextend(types::I64, flag)
    }

    /// Not NULL and non-zero (SQL truth = true).
    fn is_true(&mut self, p: Pair) -> CV {
        let nz = self.b.ins().icmp_imm(IntCC::NotEqual, p.0, 0);
        let nn = self.b.ins().icmp_imm(IntCC::Equal, p.1, 0);
        self.b.ins().band(nz, nn)
    }

    fn is_false(&mut self, p: Pair) -> CV {
        let z = self.b.ins().icmp_imm(IntCC::Equal, p.0, 0);
        let nn = self.b.ins().icmp_imm(IntCC::Equal, p.1, 0);
        self.b.ins().band(z, nn)
    }

    /// Leaves for the interpreter when `cond` (an i8 flag) holds.
    fn hand_back_if(&mut self, cond: CV) {
        let cont = self.b.create_block();
        self.b.ins().brif(cond, self.hand_back, &[], cont, &[]);
        self.b.switch_to_block(cont);
    }

    /// A join point taking a (value, null) pair.
    fn join(&mut self) -> Block {
        let j = self.b.create_block();
        self.b.append_block_param(j, types::I64);
        self.b.append_block_param(j, types::I8);
        j
    }

    fn jump(&mut self, to: Block, p: Pair) {
        self.b.ins().jump(to, &[p.0.into(), p.1.into()]);
    }

    fn finish_join(&mut self, j: Block) -> Pair {
        self.b.switch_to_block(j);
        let ps = self.b.block_params(j);
        (ps[0], ps[1])
    }

    fn node(&mut self, e: &Expr) -> Result<Pair, String> {
        self.tick();
        Ok(match e {
            Expr::Const(Value::Int(i)) => (self.i64c(*i), self.i8c(0)),
            Expr::Const(Value::Bool(b)) => (self.i64c(*b as i64), self.i8c(0)),
            Expr::Const(Value::Null) => (self.i64c(0), self.i8c(1)),
            Expr::Col { up: 0, slot } => self.input(Input::Col(*slot))?,
            Expr::Var(v) => self.input(Input::Var(*v))?,
            Expr::Neg(x) => {
                let p = self.node(x)?;
                let zero = self.i64c(0);
                let (r, of) = self.b.ins().ssub_overflow(zero, p.0);
                let nn = self.b.ins().icmp_imm(IntCC::Equal, p.1, 0);
                let bad = self.b.ins().band(of, nn);
                self.hand_back_if(bad);
                (r, p.1)
            }
            Expr::Not(x) => {
                let p = self.node(x)?;
                let z = self.b.ins().icmp_imm(IntCC::Equal, p.0, 0);
                (self.bool64(z), p.1)
            }
            Expr::Arith(op, a, b) => {
                let (x, y) = (self.node(a)?, self.node(b)?);
                let null = self.b.ins().bor(x.1, y.1);
                let nn = self.b.ins().icmp_imm(IntCC::Equal, null, 0);
                let r = match op {
                    Arith::Add | Arith::Sub | Arith::Mul => {
                        let (r, of) = match op {
                            Arith::Add => self.b.ins().sadd_overflow(x.0, y.0),
                            Arith::Sub => self.b.ins().ssub_overflow(x.0, y.0),
                            _ => self.b.ins().smul_overflow(x.0, y.0),
                        };
                        let bad = self.b.ins().band(of, nn);
                        self.hand_back_if(bad);
                        r
                    }
                    Arith::Div | Arith::Mod => {
                        let zero = self.b.ins().icmp_imm(IntCC::Equal, y.0, 0);
                        let min = self.b.ins().icmp_imm(IntCC::Equal, x.0, i64::MIN);
                        let m1 = self.b.ins().icmp_imm(IntCC::Equal, y.0, -1);
                        let ov = self.b.ins().band(min, m1);
                        let bad = self.b.ins().bor(zero, ov);
                        let fail = self.b.ins().band(bad, nn);
                        self.hand_back_if(fail);
                        // A NULL operand or a bad divisor is never divided by (the result is NULL or
                        // was handed back): divide by 1 instead so that the instruction cannot trap.
                        let skip = self.b.ins().bor(bad, null);
                        let one = self.i64c(1);
                        let safe = self.b.ins().select(skip, one, y.0);
                        if *op == Arith::Div {
                            self.b.ins().sdiv(x.0, safe)
                        } else {
                            self.b.ins().srem(x.0, safe)
                        }
                    }
                };
                (r, null)
            }
            Expr::Cmp(op, a, b) => {
                let (x, y) = (self.node(a)?, self.node(b)?);
                let cc = match op {
                    Cmp::Eq => IntCC::Equal,
                    Cmp::Ne => IntCC::NotEqual,
                    Cmp::Lt => IntCC::SignedLessThan,
                    Cmp::Le => IntCC::SignedLessThanOrEqual,
                    Cmp::Gt => IntCC::SignedGreaterThan,
                    Cmp::Ge => IntCC::SignedGreaterThanOrEqual,
                };
                let c = self.b.ins().icmp(cc, x.0, y.0);
                let null = self.b.ins().bor(x.1, y.1);
                (self.bool64(c), null)
            }
            Expr::And(a, b) | Expr::Or(a, b) => {
                let and = matches!(e, Expr::And(..));
                let x = self.node(a)?;
                // AND stops at a false left side, OR at a true one (the right side is not evaluated).
                let decided = if and { self.is_false(x) } else { self.is_true(x) };
                let done = self.join();
                let right = self.b.create_block();
                let short = (self.i64c(!and as i64), self.i8c(0));
                self.b.ins().brif(decided, done, &[short.0.into(), short.1.into()], right, &[]);
                self.b.switch_to_block(right);
                let y = self.node(b)?;
                let (xt, xf) = (self.is_true(x), self.is_false(x));
                let (yt, yf) = (self.is_true(y), self.is_false(y));
                let r = if and {
                    // false if the right side is false; true if both true; else NULL.
                    let both = self.b.ins().band(xt, yt);
                    let known = self.b.ins().bor(yf, both);
                    let null = self.b.ins().icmp_imm(IntCC::Equal, known, 0);
                    (self.bool64(both), null)
                } else {
                    let both = self.b.ins().band(xf, yf);
                    let known = self.b.ins().bor(yt, both);
                    let null = self.b.ins().icmp_imm(IntCC::Equal, known, 0);
                    (self.bool64(yt), null)
                };
                self.jump(done, r);
                self.finish_join(done)
            }
            Expr::IsNull(x, negated) => {
                let p = self.node(x)?;
                let is = self.b.ins().icmp_imm(IntCC::NotEqual, p.1, 0);
                let r = if *negated { self.b.ins().bxor_imm(is, 1) } else { is };
                (self.bool64(r), self.i8c(0))
            }
            Expr::InList(x, list, negated) => {
                let p = self.node(x)?;
                let mut found = self.i8c(0);
                let mut saw_null = self.i8c(0);
                for item in list {
                    let q = self.node(item)?;
                    let eq = self.b.ins().icmp(IntCC::Equal, p.0, q.0);
                    let qn = self.b.ins().icmp_imm(IntCC::Equal, q.1, 0);
                    let hit = self.b.ins().band(eq, qn);
                    found = self.b.ins().bor(found, hit);
                    saw_null = self.b.ins().bor(saw_null, q.1);
                }
                // x NULL → NULL; found → !negated; a NULL item → NULL; else negated.
                let nf = self.b.ins().icmp_imm(IntCC::Equal, found, 0);
                let sn = self.b.ins().band(nf, saw_null);
                let null = self.b.ins().bor(p.1, sn);
                let neg = self.i8c(*negated as i64);
                let notneg = self.i8c(!*negated as i64);
                let v = self.b.ins().select(found, notneg, neg);
                (self.bool64(v), null)
            }
            Expr::Case { operand, whens, otherwise } => {
                let base = match operand {
                    Some(o) => Some(self.node(o)?),
                    None => None,
                };
                let done = self.join();
                for (w, then) in whens {
                    let c = self.node(w)?;
                    let hit = match base {
                        Some(bp) => {
                            let eq = self.b.ins().icmp(IntCC::Equal, bp.0, c.0);
                            let nulls = self.b.ins().bor(bp.1, c.1);
                            let nn = self.b.ins().icmp_imm(IntCC::Equal, nulls, 0);
                            self.b.ins().band(eq, nn)
                        }
                        None => self.is_true(c),
                    };
                    let then_b = self.b.create_block();
                    let next = self.b.create_block();
                    self.b.ins().brif(hit, then_b, &[], next, &[]);
                    self.b.switch_to_block(then_b);
                    let r = self.node(then)?;
                    self.jump(done, r);
                    self.b.switch_to_block(next);
                }
                let r = match otherwise {
                    Some(o) => self.node(o)?,
                    None => (self.i64c(0), self.i8c(1)),
                };
                self.jump(done, r);
                self.finish_join(done)
            }
            Expr::Func(Builtin::Coalesce, args) => {
                let done = self.join();
                for (i, a) in args.iter().enumerate() {
                    let p = self.node(a)?;
                    if i + 1 == args.len() {
                        self.jump(done, p);
                    } else {
                        let next = self.b.create_block();
                        let nn = self.b.ins().icmp_imm(IntCC::Equal, p.1, 0);
                        self.b.ins().brif(nn, done, &[p.0.into(), p.1.into()], next, &[]);
                        self.b.switch_to_block(next);
                    }
                }
                self.finish_join(done)
            }
            Expr::Func(Builtin::Nullif, args) => {
                let (x, y) = (self.node(&args[0])?, self.node(&args[1])?);
                let eq = self.b.ins().icmp(IntCC::Equal, x.0, y.0);
                let nulls = self.b.ins().bor(x.1, y.1);
                let nn = self.b.ins().icmp_imm(IntCC::Equal, nulls, 0);
                let same = self.b.ins().band(eq, nn);
                let null = self.b.ins().bor(x.1, same);
                (x.0, null)
            }
            Expr::Func(Builtin::Abs, args) => {
                let p = self.node(&args[0])?;
                let min = self.b.ins().icmp_imm(IntCC::Equal, p.0, i64::MIN);
                let nn = self.b.ins().icmp_imm(IntCC::Equal, p.1, 0);
                let bad = self.b.ins().band(min, nn);
                self.hand_back_if(bad);
                (self.b.ins().iabs(p.0), p.1)
            }
            Expr::Cast(x, Type::Int) => self.node(x)?,
            Expr::Cast(x, Type::Bool) => {
                let p = self.node(x)?;
                let nz = self.b.ins().icmp_imm(IntCC::NotEqual, p.0, 0);
                (self.bool64(nz), p.1)
            }
            other => return Err(format!("cannot compile {other:?}")),
        })
    }

    fn input(&mut self, i: Input) -> Result<Pair, String> {
        if let (Some(frame), Input::Var(v)) = (&self.frame, i) {
            let (val, null) = *frame.get(v).ok_or("variable out of range")?;
            return Ok((self.b.use_var(val), self.b.use_var(null)));
        }
        let idx = self.inputs.iter().position(|x| *x == i).ok_or("input not collected")?;
        let _ = self.args;
        Ok(self.input_vals[idx])
    }
}
