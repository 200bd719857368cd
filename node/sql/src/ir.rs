//! The checked form of a contract: what [`super::check`] makes of the parsed script and what the
//! engines run. Names are resolved to positions: tables and indexes to ids, columns to slots in the
//! (joined) row, variables and parameters to slots in the call's frame.

use super::value::{Arith, Type, Value};

#[derive(Clone, Debug)]
pub struct Contract {
    pub tables: Vec<Table>,
    pub indexes: Vec<Index>,
    pub functions: Vec<Function>,
    /// `CREATE EVENT name (arg TYPE, …)`: what `EMIT` may emit, in declaration order.
    pub events: Vec<EventDecl>,
}

/// A declared event: its name and typed arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventDecl {
    pub name: String,
    pub params: Vec<(String, Type)>,
}

impl Contract {
    pub fn function(&self, name: &str) -> Option<&Function> {
        self.functions.iter().find(|f| f.name == name)
    }
}

#[derive(Clone, Debug)]
pub struct Table {
    pub name: String,
    pub columns: Vec<Column>,
    /// Primary-key columns, in key order.
    pub pk: Vec<usize>,
    /// CHECK constraints: the predicate over the row, and its text for the error.
    pub checks: Vec<(Expr, String)>,
    /// Ids (into [`Contract::indexes`]) of this table's indexes, UNIQUE constraints included.
    pub indexes: Vec<usize>,
    /// A table declared without a PRIMARY KEY: the slot of its hidden `rowid` column (the last),
    /// which is its key. Each insert takes the table's next row id (`sql/<address>/n<table>`).
    pub rowid: Option<usize>,
}

#[derive(Clone, Debug)]
pub struct Column {
    pub name: String,
    pub ty: Type,
    pub not_null: bool,
    pub default: Option<Expr>,
    /// The hidden `rowid` of a table without a primary key: not in `SELECT *` nor in an INSERT
    /// without a column list.
    pub hidden: bool,
}

#[derive(Clone, Debug)]
pub struct Index {
    pub name: String,
    pub table: usize,
    pub columns: Vec<usize>,
    /// Per column: stored in descending order (its key bytes complemented), so that a scan of the
    /// index in key order is `ORDER BY` those columns in these directions.
    pub desc: Vec<bool>,
    pub unique: bool,
}

#[derive(Clone, Debug)]
pub struct Function {
    pub name: String,
    pub params: Vec<(String, Type)>,
    pub returns: Returns,
    /// `RETURNS TABLE (name type, …)`: the declared names of the result's columns (empty when
    /// none are declared). They name a result whose query gives as many columns; the types are
    /// not enforced (a contract's calls must run as they always did).
    pub columns: Vec<String>,
    /// The frame's types: parameters first, then declared variables.
    pub vars: Vec<Type>,
    pub body: Body,
    /// The body compiled whole by the JIT, when it can be (see [`super::jit::JitBody`]).
    pub jit: Option<std::sync::Arc<super::jit::JitBody>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Returns {
    Void,
    Scalar(Type),
    /// `RETURNS TABLE (…)` / `SETOF`: a SQL function's rows.
    Rows,
}

#[derive(Clone, Debug)]
pub enum Body {
    /// `LANGUAGE sql`: one query.
    Query(Box<Select>),
    /// A `BEGIN … END` block.
    Block(Vec<Stmt>),
}

#[derive(Clone, Debug)]
pub enum Stmt {
    Assign(usize, Expr),
    If {
        branches: Vec<(Expr, Vec<Stmt>)>,
        otherwise: Vec<Stmt>,
    },
    Return(Option<Expr>),
    Raise(Expr),
    /// `EMIT event(args)`: the event's id in [`Contract::events`] and its arguments.
    Emit(usize, Vec<Expr>),
    Insert(Box<Insert>),
    Update(Box<Update>),
    Delete(Box<Delete>),
    /// `SELECT … INTO vars`: the first row, or NULLs when there is none.
    SelectInto(Box<Select>, Vec<usize>),
    /// `PERFORM expr` / a bare function-call statement: evaluated for its effects.
    Perform(Expr),
}

#[derive(Clone, Debug)]
pub struct Insert {
    pub table: usize,
    /// For each position of a source row, the column it fills.
    pub columns: Vec<usize>,
    pub source: InsertSource,
    pub on_conflict: Option<OnConflict>,
}

#[derive(Clone, Debug)]
pub enum InsertSource {
    Values(Vec<Vec<Expr>>),
    Query(Box<Select>),
}

#[derive(Clone, Debug)]
pub struct OnConflict {
    /// The arbiter: `None` = the primary key, else a unique index id.
    pub index: Option<usize>,
    pub action: ConflictAction,
}

/// In `DO UPDATE`, expressions see the existing row at slots `0..n` and `excluded` at `n..2n`.
#[derive(Clone, Debug)]
pub enum ConflictAction {
    Nothing,
    Update { sets: Vec<(usize, Expr)>, filter: Option<Expr> },
}

#[derive(Clone, Debug)]
pub struct Update {
    pub table: usize,
    pub sets: Vec<(usize, Expr)>,
    pub filter: Option<Expr>,
    pub access: Access,
}

#[derive(Clone, Debug)]
pub struct Delete {
    pub table: usize,
    pub filter: Option<Expr>,
    pub access: Access,
}

/// How rows of one table are found. The filter is always applied afterwards, so the access path
/// only narrows the rows read, never changes the result.
#[derive(Clone, Debug)]
pub enum Access {
    Scan,
    /// The whole primary key is fixed: one lookup. Values in key order.
    Point(Vec<Expr>),
    /// The leading columns of an index fixed by equality (all of them, or fewer when the scan
    /// also gives the query its ORDER BY): one prefix scan of the index, in index order.
    Index(usize, Vec<Expr>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JoinKind {
    Inner,
    Left,
}

#[derive(Clone, Debug)]
pub struct Source {
    pub table: usize,
    /// First slot of this table's columns in the joined row.
    pub offset: usize,
    pub join: JoinKind,
    pub on: Option<Expr>,
    pub access: Access,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AggFunc {
    Count,
    Sum,
    Min,
    Max,
    /// The mean as a DECIMAL (see [`AVG_MIN_SCALE`]).
    Avg,
}

/// `avg` gives a DECIMAL at the argument's scale or this one, whichever is larger, rounded half
/// away from zero (as a value stored in a DECIMAL column).
pub const AVG_MIN_SCALE: u8 = 6;

#[derive(Clone, Debug)]
pub struct Aggregate {
    pub func: AggFunc,
    /// `None` for `COUNT(*)`.
    pub arg: Option<Expr>,
    pub distinct: bool,
}

#[derive(Clone, Debug)]
pub enum OrderKey {
    /// An output column (by alias or position).
    Output(usize),
    Expr(Expr),
}

#[derive(Clone, Debug)]
pub struct Select {
    pub from: Vec<Source>,
    /// Width of the joined row.
    pub width: usize,
    pub filter: Option<Expr>,
    pub group_by: Vec<Expr>,
    pub aggregates: Vec<Aggregate>,
    /// Grouped evaluation (GROUP BY or any aggregate).
    pub grouped: bool,
    pub having: Option<Expr>,
    pub projection: Vec<Expr>,
    pub columns: Vec<String>,
    pub distinct: bool,
    pub order_by: Vec<(OrderKey, bool)>,
    /// `UNION`/`INTERSECT`/`EXCEPT`: this query's rows are the compound's (`from` is empty, the
    /// output reads the compound's columns by slot; ORDER BY and LIMIT apply to the whole).
    pub compound: Option<Box<Compound>>,
    /// Under the ordered-scan rules (read-only queries; contract calls from `[consensus]
    /// sql_ordered_scans_height`): the rows come in ORDER BY order already — the first table read
    /// through `ordered_access` when set, else its own access — so there is no sort and a LIMIT
    /// stops the loop early. Under the earlier rules both are ignored.
    pub sorted: bool,
    pub ordered_access: Option<Access>,
    /// Per slot of the joined row: whether the query reads it (the others are not decoded).
    pub needed: Vec<bool>,
    pub limit: Option<Expr>,
    pub offset: Option<Expr>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetOp {
    /// Distinct rows of both.
    Union,
    /// Every row of both, the left's first.
    UnionAll,
    /// Distinct rows of the left that the right has.
    Intersect,
    /// Distinct rows of the left that the right lacks.
    Except,
}

/// A compound query, left to right: `first op₁ arm₁ op₂ arm₂ …` is `((first op₁ arm₁) op₂ arm₂) …`.
/// The distinct forms give their rows in ascending order of all columns (NULL first), the order
/// SQLite's sorter gives them; rows are equal when every column compares equal (NULLs equal).
#[derive(Clone, Debug)]
pub struct Compound {
    pub first: Select,
    pub rest: Vec<(SetOp, Select)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Builtin {
    Sender,
    SelfAddress,
    BlockHeight,
    BlockTime,
    TxHash,
    CallValue,
    TransferNative,
    Length,
    Lower,
    Upper,
    Substr,
    Trim,
    Ltrim,
    Rtrim,
    Replace,
    Instr,
    Abs,
    Coalesce,
    Nullif,
}

#[derive(Clone, Debug)]
pub enum Expr {
    Const(Value),
    /// A column: `up` enclosing queries out (0 = this one), `slot` in that query's joined row.
    Col {
        up: usize,
        slot: usize,
    },
    Var(usize),
    Neg(Box<Expr>),
    Not(Box<Expr>),
    Arith(Arith, Box<Expr>, Box<Expr>),
    Cmp(Cmp, Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Concat(Box<Expr>, Box<Expr>),
    IsNull(Box<Expr>, bool),
    InList(Box<Expr>, Vec<Expr>, bool),
    InQuery(Box<Expr>, Box<Select>, bool),
    /// `x op ANY (subquery)` (`all` false) or `x op ALL (subquery)`: true when some (every)
    /// comparison is true; else NULL when one is unknown; else false. Over no rows ANY is false
    /// and ALL true, whatever `x`.
    Quantified(Cmp, Box<Expr>, Box<Select>, bool),
    Exists(Box<Select>, bool),
    Subquery(Box<Select>),
    Case {
        operand: Option<Box<Expr>>,
        whens: Vec<(Expr, Expr)>,
        otherwise: Option<Box<Expr>>,
    },
    Func(Builtin, Vec<Expr>),
    /// An aggregate's value in grouped evaluation.
    Agg(usize),
    Cast(Box<Expr>, Type),
    /// A subtree compiled by the JIT ([`super::jit`]); it keeps the subtree for hand-backs.
    Jit(std::sync::Arc<super::jit::JitExpr>),
}

impl Expr {
    /// The query of a subquery expression (IN, EXISTS, scalar, ANY/ALL).
    pub fn subquery(&self) -> Option<&Select> {
        match self {
            Expr::InQuery(_, q, _)
            | Expr::Quantified(_, _, q, _)
            | Expr::Exists(q, _)
            | Expr::Subquery(q) => Some(q),
            _ => None,
        }
    }

    /// Whether the expression reads a column of its own query at or above slot `from`.
    pub fn reads_slots_from(&self, from: usize) -> bool {
        let mut found = false;
        self.walk(0, &mut |e, depth| {
            if let Expr::Col { up, slot } = e {
                if *up == depth && *slot >= from {
                    found = true;
                }
            }
        });
        found
    }

    /// Visits every node, with how many subqueries deep it is.
    pub fn walk(&self, depth: usize, f: &mut dyn FnMut(&Expr, usize)) {
        f(self, depth);
        match self {
            Expr::Const(_) | Expr::Col { .. } | Expr::Var(_) | Expr::Agg(_) => {}
            Expr::Jit(j) => j.fallback.walk(depth, f),
            Expr::Neg(e) | Expr::Not(e) | Expr::IsNull(e, _) | Expr::Cast(e, _) => e.walk(depth, f),
            Expr::Arith(_, a, b)
            | Expr::Cmp(_, a, b)
            | Expr::And(a, b)
            | Expr::Or(a, b)
            | Expr::Concat(a, b) => {
                a.walk(depth, f);
                b.walk(depth, f);
            }
            Expr::InList(e, list, _) => {
                e.walk(depth, f);
                list.iter().for_each(|x| x.walk(depth, f));
            }
            Expr::InQuery(e, q, _) | Expr::Quantified(_, e, q, _) => {
                e.walk(depth, f);
                q.walk(depth + 1, f);
            }
            Expr::Exists(q, _) | Expr::Subquery(q) => q.walk(depth + 1, f),
            Expr::Case { operand, whens, otherwise } => {
                operand.iter().for_each(|x| x.walk(depth, f));
                for (w, t) in whens {
                    w.walk(depth, f);
                    t.walk(depth, f);
                }
                otherwise.iter().for_each(|x| x.walk(depth, f));
            }
            Expr::Func(_, args) => args.iter().for_each(|x| x.walk(depth, f)),
        }
    }
}

impl Select {
    /// Which slots of this query's joined row it reads, in itself or in a subquery (a column
    /// `up` levels out of a subquery `up` deep).
    pub fn read_slots(&self) -> Vec<bool> {
        let mut m = vec![false; self.width];
        self.walk(0, &mut |e, depth| {
            if let Expr::Col { up, slot } = e {
                if *up == depth {
                    if let Some(x) = m.get_mut(*slot) {
                        *x = true;
                    }
                }
            }
        });
        m
    }

    /// Every query in this one: itself, the arms of compounds and every subquery, at any depth.
    pub fn each_query(&self, f: &mut dyn FnMut(&Select)) {
        fn go(q: &Select, f: &mut dyn FnMut(&Select)) {
            f(q);
            if let Some(c) = &q.compound {
                go(&c.first, f);
                c.rest.iter().for_each(|(_, a)| go(a, f));
            }
        }
        go(self, f);
        self.walk(0, &mut |e, _| {
            if let Some(s) = e.subquery() {
                go(s, f);
            }
        });
    }

    /// Visits every expression of the query (for analyses that look through subqueries). The arms
    /// of a compound are at the compound's depth (their outer references skip the compound).
    pub fn walk(&self, depth: usize, f: &mut dyn FnMut(&Expr, usize)) {
        if let Some(c) = &self.compound {
            c.first.walk(depth, f);
            c.rest.iter().for_each(|(_, a)| a.walk(depth, f));
        }
        let mut each = |e: &Expr| e.walk(depth, f);
        for a in self.from.iter().map(|s| &s.access).chain(&self.ordered_access) {
            match a {
                Access::Scan => {}
                Access::Point(v) | Access::Index(_, v) => v.iter().for_each(&mut each),
            }
        }
        for s in &self.from {
            s.on.iter().for_each(&mut each);
        }
        self.filter.iter().for_each(&mut each);
        self.group_by.iter().for_each(&mut each);
        self.aggregates.iter().filter_map(|a| a.arg.as_ref()).for_each(&mut each);
        self.having.iter().for_each(&mut each);
        self.projection.iter().for_each(&mut each);
        for (k, _) in &self.order_by {
            if let OrderKey::Expr(e) = k {
                each(e);
            }
        }
        self.limit.iter().for_each(&mut each);
        self.offset.iter().for_each(&mut each);
    }
}
