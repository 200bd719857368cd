//! From sqlparser's AST to the contract IR: the supported subset, name resolution, limits and the
//! access path of each table read. Anything outside the subset is refused here, at deploy, with the
//! construct and its line and column.

use super::ir::{
    Access, AggFunc, Aggregate, Body, Builtin, Cmp, Column, Compound, ConflictAction, Contract, Delete, Expr,
    Function, Index, Insert, InsertSource, JoinKind, OnConflict, OrderKey, Returns, Select, SetOp, Source,
    Stmt, Table, Update,
};
use super::parse::{compile_error, parse_body, parse_script, split_events, FnBody, PlStmt};
use super::value::{Arith, Decimal, Type, Value, MAX_DECIMAL_PRECISION};
use super::{Limits, SqlError};
use sqlparser::ast::{
    self as ast, BinaryOperator, ColumnOption, CreateFunctionBody, DataType, ExactNumberInfo, FunctionArg,
    FunctionArgExpr, FunctionArguments, FunctionReturnType, GroupByExpr, Ident, JoinConstraint, JoinOperator,
    ObjectName, ObjectNamePart, SelectItem, SetExpr, Spanned, Statement, TableConstraint, TableFactor,
    UnaryOperator,
};
use sqlparser::tokenizer::Location;

/// A checked script: the contract, and the DML statements that run once at deploy (the constructor).
#[derive(Debug)]
pub struct Checked {
    pub contract: Contract,
    pub constructor: Vec<Stmt>,
}

fn name_of(id: &Ident) -> String {
    if id.quote_style.is_some() {
        id.value.clone()
    } else {
        id.value.to_ascii_lowercase()
    }
}

fn loc(node: &impl Spanned, fallback: Location) -> Location {
    let at = node.span().start;
    if at.line == 0 {
        fallback
    } else {
        at
    }
}

fn iloc(id: &Ident, fallback: Location) -> Location {
    if id.span.start.line == 0 {
        fallback
    } else {
        id.span.start
    }
}

fn unsupported(at: Location, what: impl std::fmt::Display) -> SqlError {
    compile_error(at, format!("unsupported: {what}"))
}

fn single_name(name: &ObjectName, at: Location) -> Result<String, SqlError> {
    match name.0.as_slice() {
        [ObjectNamePart::Identifier(id)] => Ok(name_of(id)),
        _ => Err(unsupported(at, format!("qualified name {name}"))),
    }
}

/// First words of a statement, to name it in an error.
fn statement_kind(s: &Statement) -> String {
    s.to_string().split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

pub fn data_type(ty: &DataType, at: Location) -> Result<Type, SqlError> {
    Ok(match ty {
        DataType::Int(_)
        | DataType::Integer(_)
        | DataType::BigInt(_)
        | DataType::Int8(_)
        | DataType::Int4(_)
        | DataType::SmallInt(_) => Type::Int,
        DataType::Text | DataType::Varchar(_) | DataType::Char(_) | DataType::String(_) => Type::Text,
        DataType::Bool | DataType::Boolean => Type::Bool,
        DataType::Bytea => Type::Bytes,
        DataType::Decimal(info) | DataType::Numeric(info) => {
            let (p, s) = match info {
                ExactNumberInfo::PrecisionAndScale(p, s) => (*p, *s),
                ExactNumberInfo::Precision(p) => (*p, 0),
                ExactNumberInfo::None => {
                    return Err(compile_error(
                        at,
                        "DECIMAL needs a precision and a scale, e.g. DECIMAL(20, 2)",
                    ))
                }
            };
            if p == 0 || p > MAX_DECIMAL_PRECISION as u64 || s < 0 || s as u64 > p {
                return Err(compile_error(
                    at,
                    format!("DECIMAL({p}, {s}): precision 1..={MAX_DECIMAL_PRECISION}, scale 0..=precision"),
                ));
            }
            Type::Dec(p as u8, s as u8)
        }
        DataType::Real
        | DataType::Float(_)
        | DataType::Float4
        | DataType::Float8
        | DataType::Float32
        | DataType::Float64
        | DataType::Double(_)
        | DataType::DoublePrecision => {
            return Err(unsupported(
                at,
                format!("type {ty}: AergoSQL has no approximate numbers (every node must compute the same result, see docs/aergosql.md); use DECIMAL(p, s), e.g. DECIMAL(38, 18)"),
            ))
        }
        other => {
            return Err(unsupported(
                at,
                format!("type {other} (types: INTEGER, TEXT, BOOLEAN, BYTEA, DECIMAL(p, s))"),
            ))
        }
    })
}

/// Tables visible to an expression: `(alias, table id, first slot)`, and the enclosing query's scope.
struct Scope<'p> {
    tables: Vec<(String, usize, usize)>,
    parent: Option<&'p Scope<'p>>,
}

pub struct Checker<'l> {
    limits: &'l Limits,
    tables: Vec<Table>,
    indexes: Vec<Index>,
    functions: Vec<Function>,
    events: Vec<super::ir::EventDecl>,
}

/// Most events a contract declares, and most arguments per event.
pub const MAX_EVENTS: usize = 32;
pub const MAX_EVENT_ARGS: usize = 16;

/// Where an expression sits, which decides what it may use.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    /// CHECK and DEFAULT: no variables, no chain context.
    Schema,
    Query,
    /// The top of a PERFORM: `transfer_native` allowed.
    Effect,
}

struct ExprCx<'a, 'p> {
    scope: Option<&'a Scope<'p>>,
    vars: &'a [(String, Type)],
    /// Collects aggregates while checking a grouped query's output; `None` where they are not allowed.
    aggs: Option<Vec<Aggregate>>,
    place: Place,
    depth: usize,
}

impl<'l> Checker<'l> {
    pub fn new(limits: &'l Limits) -> Self {
        Checker { limits, tables: Vec::new(), indexes: Vec::new(), functions: Vec::new(), events: Vec::new() }
    }

    /// A checker that knows `contract`'s tables, for ad-hoc queries.
    pub fn for_contract(limits: &'l Limits, contract: &Contract) -> Self {
        Checker {
            limits,
            tables: contract.tables.clone(),
            indexes: contract.indexes.clone(),
            functions: Vec::new(),
            events: contract.events.clone(),
        }
    }

    /// One read-only SELECT over the contract's tables.
    pub fn check_query(&self, sql: &str) -> Result<Select, SqlError> {
        if sql.len() > self.limits.script_bytes {
            return Err(SqlError::Limit(format!(
                "the query is {} bytes, the limit is {}",
                sql.len(),
                self.limits.script_bytes
            )));
        }
        let statements = parse_script(sql)?;
        match statements.as_slice() {
            [(Statement::Query(q), at)] => self.select(q, None, &[], *at, 0),
            [(other, at)] => {
                Err(compile_error(*at, format!("a query is one SELECT, not {}", statement_kind(other))))
            }
            _ => Err(compile_error(Location { line: 1, column: 1 }, "a query is exactly one SELECT")),
        }
    }

    pub fn check_script(mut self, sql: &str) -> Result<Checked, SqlError> {
        let start = Location { line: 1, column: 1 };
        if sql.len() > self.limits.script_bytes {
            return Err(SqlError::Limit(format!(
                "the script is {} bytes, the limit is {}",
                sql.len(),
                self.limits.script_bytes
            )));
        }
        let (sql, events) = split_events(sql)?;
        for e in events {
            let name = name_of(&e.name);
            if self.events.iter().any(|d| d.name == name) {
                return Err(compile_error(e.at, format!("event {name} is declared twice")));
            }
            if self.events.len() >= MAX_EVENTS {
                return Err(SqlError::Limit(format!("more than {MAX_EVENTS} events")));
            }
            if e.params.is_empty() || e.params.len() > MAX_EVENT_ARGS {
                return Err(compile_error(
                    e.at,
                    format!("event {name} has {} arguments (1 to {MAX_EVENT_ARGS})", e.params.len()),
                ));
            }
            let mut params: Vec<(String, Type)> = Vec::new();
            for (n, ty) in &e.params {
                let pn = name_of(n);
                if params.iter().any(|(p, _)| *p == pn) {
                    return Err(compile_error(
                        iloc(n, e.at),
                        format!("argument {pn} of event {name} is listed twice"),
                    ));
                }
                params.push((pn, data_type(ty, iloc(n, e.at))?));
            }
            self.events.push(super::ir::EventDecl { name, params });
        }
        let statements = parse_script(&sql)?;
        let mut constructor = Vec::new();
        let mut functions = Vec::new();
        for (s, at) in &statements {
            let at = *at;
            match s {
                Statement::CreateTable(t) => self.create_table(t, at)?,
                Statement::CreateIndex(i) => self.create_index(i, at)?,
                Statement::CreateFunction(f) => functions.push((f, at)),
                Statement::Insert(_) | Statement::Update(_) | Statement::Delete(_) => {
                    constructor.push(self.dml(s, at, &[])?);
                }
                other => {
                    return Err(unsupported(
                        at,
                        format!("{} (a contract holds CREATE TABLE, CREATE INDEX, CREATE FUNCTION and INSERT/UPDATE/DELETE run at deploy)", statement_kind(other)),
                    ))
                }
            }
        }
        if self.tables.is_empty() && functions.is_empty() {
            return Err(compile_error(start, "the contract defines no table and no function"));
        }
        // Functions after tables, so that a function may use a table created later in the script.
        for (f, at) in functions {
            let func = self.create_function(f, at)?;
            if self.functions.iter().any(|g| g.name == func.name) {
                return Err(compile_error(at, format!("function {} is defined twice", func.name)));
            }
            if self.functions.len() >= self.limits.functions {
                return Err(SqlError::Limit(format!("more than {} functions", self.limits.functions)));
            }
            self.functions.push(func);
        }
        Ok(Checked {
            contract: Contract {
                tables: self.tables,
                indexes: self.indexes,
                functions: self.functions,
                events: self.events,
            },
            constructor,
        })
    }

    fn table_id(&self, name: &ObjectName, at: Location) -> Result<usize, SqlError> {
        let n = single_name(name, at)?;
        self.tables
            .iter()
            .position(|t| t.name == n)
            .ok_or_else(|| compile_error(at, format!("no table named {n}")))
    }

    fn column_id(&self, table: usize, id: &Ident, at: Location) -> Result<usize, SqlError> {
        let n = name_of(id);
        let t = &self.tables[table];
        t.columns
            .iter()
            .position(|c| c.name == n)
            .ok_or_else(|| compile_error(iloc(id, at), format!("table {} has no column {n}", t.name)))
    }

    fn create_table(&mut self, t: &ast::CreateTable, at: Location) -> Result<(), SqlError> {
        if t.or_replace || t.temporary || t.query.is_some() || t.like.is_some() || t.clone.is_some() {
            return Err(unsupported(at, "this form of CREATE TABLE (only a column list and constraints)"));
        }
        let name = single_name(&t.name, at)?;
        if self.tables.iter().any(|x| x.name == name) {
            return Err(compile_error(at, format!("table {name} is defined twice")));
        }
        if self.tables.len() >= self.limits.tables {
            return Err(SqlError::Limit(format!("more than {} tables", self.limits.tables)));
        }
        if t.columns.is_empty() || t.columns.len() > self.limits.columns {
            return Err(SqlError::Limit(format!(
                "table {name} has {} columns; 1 to {} are allowed",
                t.columns.len(),
                self.limits.columns
            )));
        }
        let table_id = self.tables.len();
        let mut table = Table {
            name: name.clone(),
            columns: Vec::new(),
            pk: Vec::new(),
            checks: Vec::new(),
            indexes: Vec::new(),
            rowid: None,
        };
        let mut pending_checks = Vec::new();
        let mut uniques: Vec<(Vec<usize>, Location)> = Vec::new();
        let mut pk: Option<Vec<usize>> = None;
        for (i, c) in t.columns.iter().enumerate() {
            let cat = iloc(&c.name, at);
            let cname = name_of(&c.name);
            if table.columns.iter().any(|x| x.name == cname) {
                return Err(compile_error(cat, format!("column {cname} is defined twice")));
            }
            let ty = data_type(&c.data_type, cat)?;
            let mut col = Column { name: cname, ty, not_null: false, default: None, hidden: false };
            for o in &c.options {
                match &o.option {
                    ColumnOption::Null => {}
                    ColumnOption::NotNull => col.not_null = true,
                    ColumnOption::Default(e) => {
                        let mut cx =
                            ExprCx { scope: None, vars: &[], aggs: None, place: Place::Schema, depth: 0 };
                        col.default = Some(self.expr(e, &mut cx, cat)?);
                    }
                    ColumnOption::PrimaryKey(_) => {
                        if pk.is_some() {
                            return Err(compile_error(
                                cat,
                                format!("table {name} has more than one primary key"),
                            ));
                        }
                        pk = Some(vec![i]);
                    }
                    ColumnOption::Unique(_) => uniques.push((vec![i], cat)),
                    ColumnOption::Check(ch) => pending_checks.push((ch.expr.clone(), cat)),
                    other => return Err(unsupported(cat, format!("column option {other}"))),
                }
            }
            table.columns.push(col);
        }
        // Table constraints refer to columns by name: resolve them against the finished column list.
        self.tables.push(table);
        for c in &t.constraints {
            let cat = loc(c, at);
            match c {
                TableConstraint::PrimaryKey(p) => {
                    if pk.is_some() {
                        return Err(compile_error(
                            cat,
                            format!("table {name} has more than one primary key"),
                        ));
                    }
                    pk = Some(self.index_columns(table_id, &p.columns, cat)?);
                }
                TableConstraint::Unique(u) => {
                    uniques.push((self.index_columns(table_id, &u.columns, cat)?, cat))
                }
                TableConstraint::Check(ch) => pending_checks.push((ch.expr.clone(), cat)),
                other => return Err(unsupported(cat, format!("table constraint {other}"))),
            }
        }
        // No primary key: a hidden `rowid INTEGER` (the last column) is the key, as SQLite's rowid.
        let pk = match pk {
            Some(pk) => pk,
            None => {
                let ncols = self.tables[table_id].columns.len();
                if self.tables[table_id].columns.iter().any(|c| c.name == "rowid") {
                    self.tables.pop();
                    return Err(compile_error(
                        at,
                        format!("table {name} has no PRIMARY KEY, so its hidden key column is rowid: name your column otherwise or make it the PRIMARY KEY"),
                    ));
                }
                if ncols >= self.limits.columns {
                    self.tables.pop();
                    return Err(SqlError::Limit(format!(
                        "table {name} has {ncols} columns and no PRIMARY KEY; with its hidden rowid at most {} are allowed",
                        self.limits.columns - 1
                    )));
                }
                let table = &mut self.tables[table_id];
                table.columns.push(Column {
                    name: "rowid".into(),
                    ty: Type::Int,
                    not_null: true,
                    default: None,
                    hidden: true,
                });
                table.rowid = Some(table.columns.len() - 1);
                vec![table.columns.len() - 1]
            }
        };
        let scope = Scope { tables: vec![(name.clone(), table_id, 0)], parent: None };
        let mut checks = Vec::new();
        for (e, cat) in pending_checks {
            let mut cx =
                ExprCx { scope: Some(&scope), vars: &[], aggs: None, place: Place::Schema, depth: 0 };
            checks.push((self.expr(&e, &mut cx, cat)?, e.to_string()));
        }
        let table = &mut self.tables[table_id];
        for &c in &pk {
            table.columns[c].not_null = true;
        }
        table.pk = pk;
        table.checks = checks;
        for (n, (cols, cat)) in uniques.into_iter().enumerate() {
            let desc = vec![false; cols.len()];
            self.add_index(format!("{name}_unique_{n}"), table_id, (cols, desc), true, cat)?;
        }
        Ok(())
    }

    /// A constraint's columns (no direction: `DESC` is for `CREATE INDEX`).
    fn index_columns(
        &self,
        table: usize,
        cols: &[ast::IndexColumn],
        at: Location,
    ) -> Result<Vec<usize>, SqlError> {
        let (out, desc) = self.index_columns_sorted(table, cols, at)?;
        if desc.iter().any(|d| *d) {
            return Err(unsupported(
                at,
                "DESC in a PRIMARY KEY or UNIQUE constraint (use CREATE INDEX … (col DESC))",
            ));
        }
        Ok(out)
    }

    /// An index's columns and, per column, whether it is `DESC`.
    fn index_columns_sorted(
        &self,
        table: usize,
        cols: &[ast::IndexColumn],
        at: Location,
    ) -> Result<(Vec<usize>, Vec<bool>), SqlError> {
        let mut out = Vec::new();
        let mut desc = Vec::new();
        for c in cols {
            let ast::Expr::Identifier(id) = &c.column.expr else {
                return Err(unsupported(
                    loc(&c.column.expr, at),
                    format!("index on expression {}", c.column.expr),
                ));
            };
            if c.column.options.nulls_first.is_some() {
                return Err(unsupported(iloc(id, at), "NULLS FIRST/LAST (NULL is the smallest value)"));
            }
            let col = self.column_id(table, id, at)?;
            if out.contains(&col) {
                return Err(compile_error(iloc(id, at), format!("column {} listed twice", name_of(id))));
            }
            out.push(col);
            desc.push(c.column.options.sort == Some(ast::OrderBySort::Desc));
        }
        if out.is_empty() {
            return Err(compile_error(at, "an index needs at least one column"));
        }
        Ok((out, desc))
    }

    fn add_index(
        &mut self,
        name: String,
        table: usize,
        (columns, desc): (Vec<usize>, Vec<bool>),
        unique: bool,
        at: Location,
    ) -> Result<(), SqlError> {
        if self.indexes.iter().any(|i| i.name == name) {
            return Err(compile_error(at, format!("index {name} is defined twice")));
        }
        if self.indexes.len() >= self.limits.indexes {
            return Err(SqlError::Limit(format!("more than {} indexes", self.limits.indexes)));
        }
        self.tables[table].indexes.push(self.indexes.len());
        self.indexes.push(Index { name, table, columns, desc, unique });
        Ok(())
    }

    fn create_index(&mut self, i: &ast::CreateIndex, at: Location) -> Result<(), SqlError> {
        if i.predicate.is_some() || i.using.is_some() || !i.include.is_empty() {
            return Err(unsupported(at, "partial, covering or typed indexes"));
        }
        let Some(name) = &i.name else {
            return Err(compile_error(at, "CREATE INDEX needs a name"));
        };
        let name = single_name(name, at)?;
        let table = self.table_id(&i.table_name, at)?;
        let cols = self.index_columns_sorted(table, &i.columns, at)?;
        self.add_index(name, table, cols, i.unique, at)
    }

    fn create_function(&self, f: &ast::CreateFunction, at: Location) -> Result<Function, SqlError> {
        if f.or_replace || f.or_alter || f.temporary {
            return Err(unsupported(
                at,
                "OR REPLACE / TEMPORARY functions (a deployed contract never changes)",
            ));
        }
        let name = single_name(&f.name, at)?;
        if let Some(lang) = &f.language {
            let l = lang.value.to_ascii_lowercase();
            if l != "sql" && l != "plpgsql" {
                return Err(unsupported(iloc(lang, at), format!("LANGUAGE {l} (sql and plpgsql)")));
            }
        }
        let mut vars: Vec<(String, Type)> = Vec::new();
        for a in f.args.iter().flatten() {
            if a.mode.as_ref().is_some_and(|m| !matches!(m, ast::ArgMode::In)) || a.default_expr.is_some() {
                return Err(unsupported(at, "OUT/INOUT parameters and parameter defaults"));
            }
            let Some(n) = &a.name else {
                return Err(compile_error(at, format!("function {name}: every parameter needs a name")));
            };
            let pn = name_of(n);
            if vars.iter().any(|(v, _)| *v == pn) {
                return Err(compile_error(iloc(n, at), format!("parameter {pn} is listed twice")));
            }
            vars.push((pn, data_type(&a.data_type, iloc(n, at))?));
        }
        let params = vars.clone();
        let columns = match &f.return_type {
            Some(FunctionReturnType::DataType(DataType::Table(Some(cols)))) => {
                cols.iter().map(|c| name_of(&c.name)).collect()
            }
            _ => Vec::new(),
        };
        let returns = match &f.return_type {
            None => Returns::Void,
            Some(FunctionReturnType::SetOf(_)) => Returns::Rows,
            Some(FunctionReturnType::DataType(DataType::Table(_))) => Returns::Rows,
            Some(FunctionReturnType::DataType(DataType::Custom(n, _)))
                if n.to_string().eq_ignore_ascii_case("void") =>
            {
                Returns::Void
            }
            Some(FunctionReturnType::DataType(t)) => Returns::Scalar(data_type(t, at)?),
        };
        let (text, origin) = match &f.function_body {
            Some(
                CreateFunctionBody::AsBeforeOptions { body, .. } | CreateFunctionBody::AsAfterOptions(body),
            ) => match body {
                ast::Expr::Value(v) => {
                    let s = v.span.start;
                    match &v.value {
                        ast::Value::DollarQuotedString(d) => {
                            let skip = 2 + d.tag.as_ref().map_or(0, |t| t.len()) as u64;
                            (d.value.clone(), Location { line: s.line, column: s.column + skip })
                        }
                        ast::Value::SingleQuotedString(q) => {
                            (q.clone(), Location { line: s.line, column: s.column + 1 })
                        }
                        _ => return Err(compile_error(at, "a function body is a $$-quoted string")),
                    }
                }
                _ => return Err(compile_error(at, "a function body is a $$-quoted string")),
            },
            _ => return Err(unsupported(at, "this form of function body (use AS $$ … $$)")),
        };
        let body = match parse_body(&text, origin, self.limits.depth)? {
            FnBody::Query(q) => {
                if returns == Returns::Void {
                    return Err(compile_error(at, format!("function {name} is a query but RETURNS VOID")));
                }
                let scope_vars = vars.clone();
                Body::Query(Box::new(self.select(&q, None, &scope_vars, origin, 0)?))
            }
            FnBody::Block(block) => {
                for (n, ty, _) in &block.declares {
                    let vn = name_of(n);
                    if vars.iter().any(|(v, _)| *v == vn) {
                        return Err(compile_error(
                            iloc(n, origin),
                            format!("variable {vn} is declared twice"),
                        ));
                    }
                    vars.push((vn, data_type(ty, iloc(n, origin))?));
                }
                let mut stmts = Vec::new();
                for (i, (_, _, init)) in block.declares.iter().enumerate() {
                    if let Some(e) = init {
                        let mut cx =
                            ExprCx { scope: None, vars: &vars, aggs: None, place: Place::Query, depth: 0 };
                        stmts.push(Stmt::Assign(params.len() + i, self.expr(e, &mut cx, origin)?));
                    }
                }
                let mut count = 0;
                stmts.extend(self.block(&block.body, &vars, &returns, &mut count)?);
                Body::Block(stmts)
            }
        };
        Ok(Function {
            name,
            params,
            returns,
            columns,
            vars: vars.into_iter().map(|(_, t)| t).collect(),
            body,
            jit: None,
        })
    }

    fn var_slot(vars: &[(String, Type)], id: &Ident, at: Location) -> Result<usize, SqlError> {
        let n = name_of(id);
        vars.iter()
            .position(|(v, _)| *v == n)
            .ok_or_else(|| compile_error(iloc(id, at), format!("no variable named {n}")))
    }

    fn block(
        &self,
        body: &[PlStmt],
        vars: &[(String, Type)],
        returns: &Returns,
        count: &mut usize,
    ) -> Result<Vec<Stmt>, SqlError> {
        let mut out = Vec::new();
        for s in body {
            *count += 1;
            if *count > self.limits.statements {
                return Err(SqlError::Limit(format!(
                    "a function has more than {} statements",
                    self.limits.statements
                )));
            }
            let cx = || ExprCx { scope: None, vars, aggs: None, place: Place::Query, depth: 0 };
            out.push(match s {
                PlStmt::Assign { target, value } => {
                    let at = iloc(target, Location { line: 1, column: 1 });
                    let slot = Self::var_slot(vars, target, at)?;
                    Stmt::Assign(slot, self.expr(value, &mut cx(), at)?)
                }
                PlStmt::If { branches, otherwise } => {
                    let mut bs = Vec::new();
                    for (c, b) in branches {
                        let cond = self.expr(c, &mut cx(), loc(c, Location { line: 1, column: 1 }))?;
                        bs.push((cond, self.block(b, vars, returns, count)?));
                    }
                    Stmt::If { branches: bs, otherwise: self.block(otherwise, vars, returns, count)? }
                }
                PlStmt::Return { value, at } => match (value, returns) {
                    (None, Returns::Void) => Stmt::Return(None),
                    (Some(_), Returns::Void) => {
                        return Err(compile_error(*at, "RETURN with a value in a function that RETURNS VOID"))
                    }
                    (None, _) => return Err(compile_error(*at, "RETURN needs a value here")),
                    (Some(_), Returns::Rows) => {
                        return Err(unsupported(
                            *at,
                            "RETURN in a set-returning block (use a LANGUAGE sql function)",
                        ))
                    }
                    (Some(e), Returns::Scalar(_)) => Stmt::Return(Some(self.expr(e, &mut cx(), *at)?)),
                },
                PlStmt::Raise { format, args, at } => {
                    // The message: the format's literal parts and the arguments in place of each %.
                    let pieces: Vec<&str> = format.split('%').collect();
                    if pieces.len() - 1 != args.len() {
                        return Err(compile_error(
                            *at,
                            format!(
                                "RAISE has {} % markers in its message and {} arguments",
                                pieces.len() - 1,
                                args.len()
                            ),
                        ));
                    }
                    let mut msg = Expr::Const(Value::Text(pieces[0].to_string()));
                    for (p, a) in pieces[1..].iter().zip(args) {
                        let arg = self.expr(a, &mut cx(), *at)?;
                        let shown = Expr::Func(
                            Builtin::Coalesce,
                            vec![
                                Expr::Cast(Box::new(arg), Type::Text),
                                Expr::Const(Value::Text("NULL".into())),
                            ],
                        );
                        msg = Expr::Concat(Box::new(msg), Box::new(shown));
                        msg = Expr::Concat(Box::new(msg), Box::new(Expr::Const(Value::Text(p.to_string()))));
                    }
                    Stmt::Raise(msg)
                }
                PlStmt::Emit { name, args, at } => {
                    let n = name_of(name);
                    let Some(id) = self.events.iter().position(|d| d.name == n) else {
                        return Err(compile_error(
                            *at,
                            format!("no event {n:?} is declared (CREATE EVENT {n} (…))"),
                        ));
                    };
                    let decl = &self.events[id];
                    if args.len() != decl.params.len() {
                        return Err(compile_error(
                            *at,
                            format!(
                                "event {n} has {} arguments, EMIT gives {}",
                                decl.params.len(),
                                args.len()
                            ),
                        ));
                    }
                    let mut checked = Vec::with_capacity(args.len());
                    for (a, (pn, ty)) in args.iter().zip(&decl.params) {
                        let a_at = loc(a, *at);
                        let e = self.expr(a, &mut cx(), a_at)?;
                        if let Some(found) = static_type(&e, vars) {
                            if !converts(found, *ty) {
                                return Err(compile_error(
                                    a_at,
                                    format!("argument {pn} of event {n} is {ty}; this is {found}"),
                                ));
                            }
                        }
                        checked.push(e);
                    }
                    Stmt::Emit(id, checked)
                }
                PlStmt::Perform(e) => {
                    let at = loc(e, Location { line: 1, column: 1 });
                    let mut c = ExprCx { place: Place::Effect, ..cx() };
                    Stmt::Perform(self.expr(e, &mut c, at)?)
                }
                PlStmt::Sql(stmt, at) => self.dml(stmt, *at, vars)?,
            });
        }
        Ok(out)
    }

    /// INSERT, UPDATE, DELETE, and SELECT … INTO in a function body.
    fn dml(&self, s: &Statement, at: Location, vars: &[(String, Type)]) -> Result<Stmt, SqlError> {
        match s {
            Statement::Insert(i) => Ok(Stmt::Insert(Box::new(self.insert(i, at, vars)?))),
            Statement::Update(u) => Ok(Stmt::Update(Box::new(self.update(u, at, vars)?))),
            Statement::Delete(d) => Ok(Stmt::Delete(Box::new(self.delete(d, at, vars)?))),
            Statement::Query(q) => {
                let mut q = q.clone();
                let targets = match q.body.as_mut() {
                    SetExpr::Select(sel) => sel.into.take(),
                    _ => None,
                };
                let Some(into) = targets else {
                    return Err(compile_error(
                        at,
                        "a SELECT in a function body needs INTO variables (or use PERFORM)",
                    ));
                };
                let mut slots = Vec::new();
                for t in &into.targets {
                    match t {
                        ast::Expr::Identifier(id) => slots.push(Self::var_slot(vars, id, at)?),
                        other => return Err(unsupported(loc(other, at), format!("INTO target {other}"))),
                    }
                }
                let sel = self.select(&q, None, vars, at, 0)?;
                if sel.projection.len() != slots.len() {
                    return Err(compile_error(
                        at,
                        format!(
                            "SELECT gives {} columns INTO {} variables",
                            sel.projection.len(),
                            slots.len()
                        ),
                    ));
                }
                Ok(Stmt::SelectInto(Box::new(sel), slots))
            }
            other => Err(unsupported(at, format!("{} in a function body", statement_kind(other)))),
        }
    }

    fn plain_table(&self, t: &TableFactor, at: Location) -> Result<(usize, String), SqlError> {
        match t {
            TableFactor::Table { name, alias, args: None, with_hints, version: None, partitions, .. }
                if with_hints.is_empty() && partitions.is_empty() =>
            {
                let id = self.table_id(name, loc(name, at))?;
                let alias = match alias {
                    Some(a) if a.columns.is_empty() => name_of(&a.name),
                    Some(_) => return Err(unsupported(at, "column aliases on a table")),
                    None => self.tables[id].name.clone(),
                };
                Ok((id, alias))
            }
            other => Err(unsupported(
                loc(other, at),
                format!("table reference {other} (only the contract's own tables)"),
            )),
        }
    }

    fn insert(&self, i: &ast::Insert, at: Location, vars: &[(String, Type)]) -> Result<Insert, SqlError> {
        if i.returning.is_some()
            || i.or.is_some()
            || i.ignore
            || !i.assignments.is_empty()
            || i.partitioned.is_some()
        {
            return Err(unsupported(at, "this form of INSERT"));
        }
        let ast::TableObject::TableName(tname) = &i.table else {
            return Err(unsupported(at, "INSERT into a table function"));
        };
        let table = self.table_id(tname, at)?;
        let ncols = self.tables[table].columns.len();
        let columns = if i.columns.is_empty() {
            (0..ncols).filter(|&c| !self.tables[table].columns[c].hidden).collect()
        } else {
            let mut cols = Vec::new();
            for c in &i.columns {
                let [ObjectNamePart::Identifier(id)] = c.0.as_slice() else {
                    return Err(unsupported(at, format!("column {c}")));
                };
                let col = self.column_id(table, id, at)?;
                if cols.contains(&col) {
                    return Err(compile_error(iloc(id, at), format!("column {} listed twice", name_of(id))));
                }
                if self.tables[table].columns[col].hidden {
                    return Err(compile_error(
                        iloc(id, at),
                        "rowid is given by the table (each insert takes the next one)",
                    ));
                }
                cols.push(col);
            }
            cols
        };
        let Some(q) = &i.source else {
            return Err(unsupported(at, "INSERT without VALUES or SELECT"));
        };
        let source = match q.body.as_ref() {
            SetExpr::Values(v) if q.order_by.is_none() && q.limit_clause.is_none() => {
                let mut rows = Vec::new();
                for r in &v.rows {
                    if r.len() != columns.len() {
                        return Err(compile_error(
                            at,
                            format!("a VALUES row has {} values for {} columns", r.len(), columns.len()),
                        ));
                    }
                    let mut row = Vec::new();
                    for e in r.iter() {
                        let mut cx = ExprCx { scope: None, vars, aggs: None, place: Place::Query, depth: 0 };
                        row.push(self.expr(e, &mut cx, at)?);
                    }
                    rows.push(row);
                }
                InsertSource::Values(rows)
            }
            _ => {
                let sel = self.select(q, None, vars, at, 0)?;
                if sel.projection.len() != columns.len() {
                    return Err(compile_error(
                        at,
                        format!("the SELECT gives {} columns for {}", sel.projection.len(), columns.len()),
                    ));
                }
                InsertSource::Query(Box::new(sel))
            }
        };
        let on_conflict = match &i.on {
            None => None,
            Some(ast::OnInsert::OnConflict(oc)) => {
                let index = match &oc.conflict_target {
                    None => None,
                    Some(ast::ConflictTarget::Columns { columns: cols, predicate: None }) => {
                        let mut ids = Vec::new();
                        for c in cols {
                            ids.push(self.column_id(table, c, at)?);
                        }
                        let same = |a: &[usize]| a.len() == ids.len() && a.iter().all(|x| ids.contains(x));
                        if same(&self.tables[table].pk) {
                            None
                        } else if let Some(&ix) = self.tables[table]
                            .indexes
                            .iter()
                            .find(|&&ix| self.indexes[ix].unique && same(&self.indexes[ix].columns))
                        {
                            Some(ix)
                        } else {
                            return Err(compile_error(
                                at,
                                "ON CONFLICT columns must be the primary key or a UNIQUE constraint",
                            ));
                        }
                    }
                    Some(other) => return Err(unsupported(at, format!("ON CONFLICT target {other}"))),
                };
                let action = match &oc.action {
                    ast::OnConflictAction::DoNothing => ConflictAction::Nothing,
                    ast::OnConflictAction::DoUpdate(du) => {
                        let tname = self.tables[table].name.clone();
                        let scope = Scope {
                            tables: vec![(tname, table, 0), ("excluded".into(), table, ncols)],
                            parent: None,
                        };
                        let sets = self.assignments(table, &du.assignments, &scope, vars, at)?;
                        let filter = match &du.selection {
                            Some(e) => {
                                let mut cx = ExprCx {
                                    scope: Some(&scope),
                                    vars,
                                    aggs: None,
                                    place: Place::Query,
                                    depth: 0,
                                };
                                Some(self.expr(e, &mut cx, at)?)
                            }
                            None => None,
                        };
                        ConflictAction::Update { sets, filter }
                    }
                };
                Some(OnConflict { index, action })
            }
            Some(other) => return Err(unsupported(at, format!("{other}"))),
        };
        Ok(Insert { table, columns, source, on_conflict })
    }

    fn assignments(
        &self,
        table: usize,
        list: &[ast::Assignment],
        scope: &Scope<'_>,
        vars: &[(String, Type)],
        at: Location,
    ) -> Result<Vec<(usize, Expr)>, SqlError> {
        let mut sets: Vec<(usize, Expr)> = Vec::new();
        for a in list {
            let ast::AssignmentTarget::ColumnName(n) = &a.target else {
                return Err(unsupported(at, "tuple assignment"));
            };
            let [ObjectNamePart::Identifier(id)] = n.0.as_slice() else {
                return Err(unsupported(at, format!("assignment target {n}")));
            };
            let col = self.column_id(table, id, at)?;
            if self.tables[table].pk.contains(&col) {
                return Err(unsupported(
                    iloc(id, at),
                    "changing a primary-key column (delete and insert the row)",
                ));
            }
            if sets.iter().any(|(c, _)| *c == col) {
                return Err(compile_error(iloc(id, at), format!("column {} assigned twice", name_of(id))));
            }
            let mut cx = ExprCx { scope: Some(scope), vars, aggs: None, place: Place::Query, depth: 0 };
            sets.push((col, self.expr(&a.value, &mut cx, at)?));
        }
        Ok(sets)
    }

    fn update(&self, u: &ast::Update, at: Location, vars: &[(String, Type)]) -> Result<Update, SqlError> {
        if u.from.is_some()
            || u.returning.is_some()
            || !u.table.joins.is_empty()
            || u.limit.is_some()
            || !u.order_by.is_empty()
        {
            return Err(unsupported(at, "UPDATE with FROM, joins, RETURNING, ORDER BY or LIMIT"));
        }
        let (table, alias) = self.plain_table(&u.table.relation, at)?;
        let scope = Scope { tables: vec![(alias, table, 0)], parent: None };
        let sets = self.assignments(table, &u.assignments, &scope, vars, at)?;
        let filter = match &u.selection {
            Some(e) => {
                let mut cx = ExprCx { scope: Some(&scope), vars, aggs: None, place: Place::Query, depth: 0 };
                Some(self.expr(e, &mut cx, at)?)
            }
            None => None,
        };
        let access = self.plan(table, 0, &conjuncts(filter.as_ref()));
        Ok(Update { table, sets, filter, access })
    }

    fn delete(&self, d: &ast::Delete, at: Location, vars: &[(String, Type)]) -> Result<Delete, SqlError> {
        if d.using.is_some()
            || d.returning.is_some()
            || !d.tables.is_empty()
            || d.limit.is_some()
            || !d.order_by.is_empty()
        {
            return Err(unsupported(at, "DELETE with USING, RETURNING, ORDER BY or LIMIT"));
        }
        let from = match &d.from {
            ast::FromTable::WithFromKeyword(f) | ast::FromTable::WithoutKeyword(f) => f,
        };
        let [twj] = from.as_slice() else {
            return Err(unsupported(at, "DELETE from more than one table"));
        };
        if !twj.joins.is_empty() {
            return Err(unsupported(at, "DELETE with joins"));
        }
        let (table, alias) = self.plain_table(&twj.relation, at)?;
        let scope = Scope { tables: vec![(alias, table, 0)], parent: None };
        let filter = match &d.selection {
            Some(e) => {
                let mut cx = ExprCx { scope: Some(&scope), vars, aggs: None, place: Place::Query, depth: 0 };
                Some(self.expr(e, &mut cx, at)?)
            }
            None => None,
        };
        let access = self.plan(table, 0, &conjuncts(filter.as_ref()));
        Ok(Delete { table, filter, access })
    }

    /// The access path for the table whose columns start at `offset`: a point lookup when
    /// equalities fix its whole primary key, an index prefix when they fix an index, else a scan.
    /// An equality qualifies when its other side reads nothing of this table or later ones.
    fn plan(&self, table: usize, offset: usize, conj: &[&Expr]) -> Access {
        let t = &self.tables[table];
        let n = t.columns.len();
        let fixed = |col: usize| -> Option<Expr> {
            for c in conj {
                if let Expr::Cmp(Cmp::Eq, a, b) = c {
                    for (x, y) in [(a, b), (b, a)] {
                        if let Expr::Col { up: 0, slot } = x.as_ref() {
                            if *slot == offset + col && !y.reads_slots_from(offset) && !has_effects(y) {
                                return Some((**y).clone());
                            }
                        }
                    }
                }
            }
            None
        };
        let _ = n;
        if let Some(keys) = t.pk.iter().map(|&c| fixed(c)).collect::<Option<Vec<_>>>() {
            return Access::Point(keys);
        }
        let mut best: Option<(usize, Vec<Expr>, bool)> = None;
        for &ix in &t.indexes {
            let idx = &self.indexes[ix];
            if let Some(keys) = idx.columns.iter().map(|&c| fixed(c)).collect::<Option<Vec<_>>>() {
                if best.as_ref().is_none_or(|b| idx.unique && !b.2) {
                    best = Some((ix, keys, idx.unique));
                }
            }
        }
        match best {
            Some((ix, keys, _)) => Access::Index(ix, keys),
            None => Access::Scan,
        }
    }

    /// Whether the first table's rows can come in the ORDER BY order, so that the query needs no
    /// sort (and a LIMIT stops early), and the ordered index scan that gives it when the table's
    /// own access does not. Every ORDER BY key must be a column of the first table, and:
    /// - its access is a point lookup (one row: any order), or
    /// - the keys are leading primary-key columns, ascending, over a scan (primary-key order), or
    /// - an index whose leading columns are fixed by equalities (k of them) continues with the
    ///   keys in the index's directions (then its primary key, ascending): taken when k ≥ 1 or
    ///   the query has a LIMIT (reading every entry and row in index order costs more gas than a
    ///   scan and a sort, so an unlimited query without equalities keeps the scan).
    ///
    /// Ties come in primary-key order either way (an index entry ends with the primary key, and
    /// the sort is stable over a primary-key scan), and a nested loop keeps the first table's
    /// order, so the rows are exactly those of the sort.
    fn order_from_access(
        &self,
        sources: &[Source],
        filter: Option<&Expr>,
        order_by: &[(OrderKey, bool)],
        projection: &[Expr],
        limited: bool,
    ) -> (bool, Option<Access>) {
        let Some(first) = sources.first() else { return (false, None) };
        let t = &self.tables[first.table];
        let (lo, hi) = (first.offset, first.offset + t.columns.len());
        let mut keys = Vec::new();
        for (k, desc) in order_by {
            let e = match k {
                OrderKey::Output(i) => &projection[*i],
                OrderKey::Expr(e) => e,
            };
            match e {
                Expr::Col { up: 0, slot } if (lo..hi).contains(slot) => keys.push((slot - lo, *desc)),
                _ => return (false, None),
            }
        }
        // Primary-key columns in key order, ascending: the order of a scan.
        let pk_order = |keys: &[(usize, bool)]| {
            keys.len() <= t.pk.len() && keys.iter().zip(&t.pk).all(|((c, d), p)| c == p && !d)
        };
        match &first.access {
            Access::Point(_) => return (true, None),
            Access::Scan if pk_order(&keys) => return (true, None),
            Access::Index(ix, fixed) if fixed.len() == self.indexes[*ix].columns.len() && pk_order(&keys) => {
                return (true, None)
            }
            Access::Scan => {}
            _ => return (false, None),
        }
        let conj = conjuncts(filter);
        let fixed = |col: usize| -> Option<Expr> {
            conj.iter().find_map(|c| match c {
                Expr::Cmp(Cmp::Eq, a, b) => {
                    [(a, b), (b, a)].into_iter().find_map(|(x, y)| match x.as_ref() {
                        Expr::Col { up: 0, slot }
                            if *slot == lo + col && !y.reads_slots_from(lo) && !has_effects(y) =>
                        {
                            Some((**y).clone())
                        }
                        _ => None,
                    })
                }
                _ => None,
            })
        };
        for &ix in &t.indexes {
            let idx = &self.indexes[ix];
            let mut prefix = Vec::new();
            while let Some(e) = idx.columns.get(prefix.len()).and_then(|&c| fixed(c)) {
                prefix.push(e);
            }
            let k = prefix.len();
            if k == 0 && !limited {
                continue;
            }
            // The keys, skipping columns fixed by the prefix, follow the index, then the key.
            let (mut at, mut pk_at, mut ok) = (k, 0, true);
            for &(c, desc) in &keys {
                if idx.columns[..k].contains(&c) {
                    continue;
                }
                if at < idx.columns.len() {
                    if idx.columns[at] == c && idx.desc[at] == desc {
                        at += 1;
                        continue;
                    }
                } else if t.pk.get(pk_at) == Some(&c) && !desc {
                    pk_at += 1;
                    continue;
                }
                ok = false;
                break;
            }
            if ok && at > k {
                return (true, Some(Access::Index(ix, prefix)));
            }
        }
        (false, None)
    }

    /// LIMIT and OFFSET (constants or variables: no column in scope).
    fn limit_clause(
        &self,
        q: &ast::Query,
        vars: &[(String, Type)],
        at: Location,
        depth: usize,
    ) -> Result<(Option<Expr>, Option<Expr>), SqlError> {
        let (mut limit, mut offset) = (None, None);
        if let Some(lc) = &q.limit_clause {
            let mut lcx = ExprCx { scope: None, vars, aggs: None, place: Place::Query, depth };
            match lc {
                ast::LimitClause::LimitOffset { limit: l, offset: o, limit_by } if limit_by.is_empty() => {
                    if let Some(l) = l {
                        limit = Some(self.expr(l, &mut lcx, at)?);
                    }
                    if let Some(o) = o {
                        offset = Some(self.expr(&o.value, &mut lcx, at)?);
                    }
                }
                ast::LimitClause::OffsetCommaLimit { offset: o, limit: l } => {
                    limit = Some(self.expr(l, &mut lcx, at)?);
                    offset = Some(self.expr(o, &mut lcx, at)?);
                }
                _ => return Err(unsupported(at, "LIMIT BY")),
            }
        }
        Ok((limit, offset))
    }

    /// `a UNION [ALL] b INTERSECT c EXCEPT d …` with ORDER BY / LIMIT on the whole: the arms
    /// left to right (see [`Compound`]). The arms see the enclosing query's columns as this
    /// query would (they are at its level).
    fn compound(
        &self,
        q: &ast::Query,
        parent: Option<&Scope<'_>>,
        vars: &[(String, Type)],
        at: Location,
        depth: usize,
    ) -> Result<Select, SqlError> {
        fn flatten<'a>(
            e: &'a SetExpr,
            out: &mut Vec<(Option<SetOp>, &'a SetExpr)>,
            at: Location,
        ) -> Result<(), SqlError> {
            let SetExpr::SetOperation { op, set_quantifier, left, right } = e else {
                out.push((None, e));
                return Ok(());
            };
            flatten(left, out, at)?;
            if matches!(right.as_ref(), SetExpr::SetOperation { .. }) {
                // sqlparser binds INTERSECT tighter (PostgreSQL); SQLite reads left to right.
                return Err(unsupported(
                    at,
                    "INTERSECT after UNION or EXCEPT without parentheses (SQL engines disagree on the grouping): write (… INTERSECT …)",
                ));
            }
            use ast::{SetOperator as O, SetQuantifier as Q};
            let op = match (op, set_quantifier) {
                (O::Union, Q::All) => SetOp::UnionAll,
                (O::Union, Q::None | Q::Distinct) => SetOp::Union,
                (O::Intersect, Q::None | Q::Distinct) => SetOp::Intersect,
                (O::Except, Q::None | Q::Distinct) => SetOp::Except,
                (op, q) => return Err(unsupported(at, format!("{op} {q} (UNION [ALL], INTERSECT, EXCEPT)"))),
            };
            out.push((Some(op), right));
            Ok(())
        }
        let mut parts = Vec::new();
        flatten(&q.body, &mut parts, at)?;
        let mut arms = Vec::with_capacity(parts.len());
        for (op, body) in parts {
            let arm = match body {
                SetExpr::Query(inner) => self.select(inner, parent, vars, at, depth + 1)?,
                other => {
                    let mut arm = q.clone();
                    *arm.body = other.clone();
                    arm.order_by = None;
                    arm.limit_clause = None;
                    self.select(&arm, parent, vars, at, depth + 1)?
                }
            };
            arms.push((op, arm));
        }
        let mut arms = arms.into_iter();
        let Some((_, first)) = arms.next() else {
            return Err(compile_error(at, "a compound query without a SELECT"));
        };
        let width = first.projection.len();
        let mut rest = Vec::new();
        for (op, arm) in arms {
            if arm.projection.len() != width {
                return Err(compile_error(
                    at,
                    format!(
                        "each SELECT of a UNION, INTERSECT or EXCEPT gives the same number of columns: {width}, not {}",
                        arm.projection.len()
                    ),
                ));
            }
            rest.push((op.unwrap_or(SetOp::UnionAll), arm));
        }
        let columns = first.columns.clone();
        let mut order_by = Vec::new();
        {
            for o in order_items(q, at)? {
                let key = match &o.expr {
                    ast::Expr::Value(ast::ValueWithSpan { value: ast::Value::Number(n, _), .. }) => {
                        match n.parse::<usize>() {
                            Ok(p) if (1..=width).contains(&p) => p - 1,
                            _ => {
                                return Err(compile_error(
                                    loc(&o.expr, at),
                                    format!("ORDER BY {n}: the query has {width} columns"),
                                ))
                            }
                        }
                    }
                    ast::Expr::Identifier(id) if columns.contains(&name_of(id)) => {
                        columns.iter().position(|c| *c == name_of(id)).unwrap_or(0)
                    }
                    other => {
                        return Err(unsupported(
                            loc(other, at),
                            format!("ORDER BY {other} of a compound query (name an output column or give its position)"),
                        ))
                    }
                };
                order_by.push((OrderKey::Output(key), o.options.sort == Some(ast::OrderBySort::Desc)));
            }
        }
        let (limit, offset) = self.limit_clause(q, vars, at, depth)?;
        Ok(Select {
            compound: Some(Box::new(Compound { first, rest })),
            sorted: false,
            ordered_access: None,
            needed: Vec::new(),
            from: Vec::new(),
            width,
            filter: None,
            group_by: Vec::new(),
            aggregates: Vec::new(),
            grouped: false,
            having: None,
            projection: (0..width).map(|slot| Expr::Col { up: 0, slot }).collect(),
            columns,
            distinct: false,
            order_by,
            limit,
            offset,
        })
    }

    /// A query. `parent` is the enclosing query's scope (for correlated subqueries).
    fn select<'q>(
        &self,
        q: &'q ast::Query,
        parent: Option<&Scope<'_>>,
        vars: &[(String, Type)],
        at: Location,
        depth: usize,
    ) -> Result<Select, SqlError> {
        if depth > self.limits.depth {
            return Err(SqlError::Limit(format!("queries nested deeper than {}", self.limits.depth)));
        }
        if q.with.is_some()
            || q.fetch.is_some()
            || !q.locks.is_empty()
            || q.for_clause.is_some()
            || !q.pipe_operators.is_empty()
        {
            return Err(unsupported(at, "WITH, FETCH, FOR UPDATE or pipe operators"));
        }
        let s = match q.body.as_ref() {
            SetExpr::Select(s) => s,
            SetExpr::SetOperation { .. } => return self.compound(q, parent, vars, at, depth),
            // `(SELECT …)`: the inner query, when the parentheses carry no ORDER BY or LIMIT.
            SetExpr::Query(inner) if q.order_by.is_none() && q.limit_clause.is_none() => {
                return self.select(inner, parent, vars, at, depth)
            }
            other => return Err(unsupported(loc(other, at), format!("query form {other}"))),
        };
        let at = if s.select_token.0.span.start.line == 0 { at } else { s.select_token.0.span.start };
        if s.into.is_some() {
            return Err(compile_error(at, "SELECT … INTO is for function bodies"));
        }
        if s.top.is_some()
            || !s.lateral_views.is_empty()
            || s.prewhere.is_some()
            || !s.connect_by.is_empty()
            || !s.cluster_by.is_empty()
            || !s.distribute_by.is_empty()
            || !s.sort_by.is_empty()
            || !s.named_window.is_empty()
            || s.qualify.is_some()
        {
            return Err(unsupported(at, "this SELECT clause"));
        }
        // FROM: every table with its alias and first slot; joins in order.
        let mut scope = Scope { tables: Vec::new(), parent };
        let mut from: Vec<(usize, usize, JoinKind, Option<&'q ast::Expr>)> = Vec::new();
        let mut width = 0;
        for twj in &s.from {
            let mut add =
                |rel: &TableFactor, kind: JoinKind, on: Option<&'q ast::Expr>| -> Result<(), SqlError> {
                    let (id, alias) = self.plain_table(rel, at)?;
                    if scope.tables.iter().any(|(a, _, _)| *a == alias) {
                        return Err(compile_error(
                            at,
                            format!("table name {alias} used twice in FROM (give one an alias)"),
                        ));
                    }
                    scope.tables.push((alias, id, width));
                    from.push((id, width, kind, on));
                    width += self.tables[id].columns.len();
                    Ok(())
                };
            add(&twj.relation, JoinKind::Inner, None)?;
            for j in &twj.joins {
                let (kind, c) = match &j.join_operator {
                    JoinOperator::Join(c) | JoinOperator::Inner(c) => (JoinKind::Inner, c),
                    JoinOperator::Left(c) | JoinOperator::LeftOuter(c) => (JoinKind::Left, c),
                    JoinOperator::CrossJoin(c) => (JoinKind::Inner, c),
                    other => {
                        return Err(unsupported(
                            at,
                            format!("join {other:?}").split('(').next().unwrap_or("join").to_string()
                                + " (inner and left joins)",
                        ))
                    }
                };
                let on = match c {
                    JoinConstraint::On(e) => Some(e),
                    JoinConstraint::None | JoinConstraint::Natural if kind == JoinKind::Inner => None,
                    _ => return Err(unsupported(at, "USING / NATURAL joins (write ON)")),
                };
                add(&j.relation, kind, on)?;
            }
        }
        let mut sources = Vec::new();
        for (id, offset, kind, on) in &from {
            let on = match on {
                Some(e) => {
                    let mut cx = ExprCx { scope: Some(&scope), vars, aggs: None, place: Place::Query, depth };
                    Some(self.expr(e, &mut cx, at)?)
                }
                None => None,
            };
            sources.push(Source { table: *id, offset: *offset, join: *kind, on, access: Access::Scan });
        }
        let filter = match &s.selection {
            Some(e) => {
                let mut cx = ExprCx { scope: Some(&scope), vars, aggs: None, place: Place::Query, depth };
                Some(self.expr(e, &mut cx, at)?)
            }
            None => None,
        };
        // Access paths: ON and WHERE equalities (WHERE only narrows; it is applied again anyway).
        let where_conj = conjuncts(filter.as_ref());
        for src in &mut sources {
            let mut conj = conjuncts(src.on.as_ref());
            conj.extend(where_conj.iter().copied());
            src.access = self.plan(src.table, src.offset, &conj);
        }
        let group_by = match &s.group_by {
            GroupByExpr::Expressions(list, mods) if mods.is_empty() => {
                let mut out = Vec::new();
                for e in list {
                    let mut cx = ExprCx { scope: Some(&scope), vars, aggs: None, place: Place::Query, depth };
                    out.push(self.expr(e, &mut cx, at)?);
                }
                out
            }
            other => return Err(unsupported(at, format!("{other}"))),
        };
        // Output: aggregates are collected as the projection, HAVING and ORDER BY are checked.
        let mut cx = ExprCx { scope: Some(&scope), vars, aggs: Some(Vec::new()), place: Place::Query, depth };
        let mut projection = Vec::new();
        let mut columns = Vec::new();
        for item in &s.projection {
            match item {
                SelectItem::UnnamedExpr(e) => {
                    projection.push(self.expr(e, &mut cx, at)?);
                    columns.push(match e {
                        ast::Expr::Identifier(id) => name_of(id),
                        ast::Expr::CompoundIdentifier(ids) => ids.last().map(name_of).unwrap_or_default(),
                        other => other.to_string(),
                    });
                }
                SelectItem::ExprWithAlias { expr, alias } => {
                    projection.push(self.expr(expr, &mut cx, at)?);
                    columns.push(name_of(alias));
                }
                SelectItem::Wildcard(_) => {
                    if scope.tables.is_empty() {
                        return Err(compile_error(at, "SELECT * without FROM"));
                    }
                    for (_, t, off) in &scope.tables {
                        for (i, c) in self.tables[*t].columns.iter().enumerate().filter(|(_, c)| !c.hidden) {
                            projection.push(Expr::Col { up: 0, slot: off + i });
                            columns.push(c.name.clone());
                        }
                    }
                }
                SelectItem::QualifiedWildcard(ast::SelectItemQualifiedWildcardKind::ObjectName(n), _) => {
                    let alias = single_name(n, at)?;
                    let Some((_, t, off)) = scope.tables.iter().find(|(a, _, _)| *a == alias) else {
                        return Err(compile_error(at, format!("no table {alias} in FROM")));
                    };
                    for (i, c) in self.tables[*t].columns.iter().enumerate().filter(|(_, c)| !c.hidden) {
                        projection.push(Expr::Col { up: 0, slot: off + i });
                        columns.push(c.name.clone());
                    }
                }
                other => return Err(unsupported(at, format!("select item {other}"))),
            }
        }
        let having = match &s.having {
            Some(e) => Some(self.expr(e, &mut cx, at)?),
            None => None,
        };
        let mut order_by = Vec::new();
        {
            for o in order_items(q, at)? {
                let desc = o.options.sort == Some(ast::OrderBySort::Desc);
                let key = match &o.expr {
                    ast::Expr::Value(ast::ValueWithSpan { value: ast::Value::Number(n, _), .. }) => {
                        let pos: usize = n.parse().unwrap_or(0);
                        if pos == 0 || pos > projection.len() {
                            return Err(compile_error(
                                loc(&o.expr, at),
                                format!("ORDER BY {n}: the query has {} columns", projection.len()),
                            ));
                        }
                        OrderKey::Output(pos - 1)
                    }
                    // An output name wins over an input column of the same name (as in SQLite).
                    ast::Expr::Identifier(id) if columns.contains(&name_of(id)) => {
                        let n = name_of(id);
                        OrderKey::Output(columns.iter().position(|c| *c == n).unwrap_or(0))
                    }
                    e => OrderKey::Expr(self.expr(e, &mut cx, at)?),
                };
                order_by.push((key, desc));
            }
        }
        let aggregates = cx.aggs.take().unwrap_or_default();
        let grouped = !group_by.is_empty() || !aggregates.is_empty();
        if grouped {
            // Bare columns in a grouped query must be grouped by (PostgreSQL's rule; SQLite is laxer).
            let grouped_slots: Vec<usize> = group_by
                .iter()
                .filter_map(|e| if let Expr::Col { up: 0, slot } = e { Some(*slot) } else { None })
                .collect();
            let mut bad = None;
            let mut look = |e: &Expr, d: usize| {
                if let Expr::Col { up, slot } = e {
                    if *up == d && !grouped_slots.contains(slot) {
                        bad = Some(*slot);
                    }
                }
            };
            projection.iter().for_each(|e| e.walk(0, &mut look));
            having.iter().for_each(|e| e.walk(0, &mut look));
            for (k, _) in &order_by {
                if let OrderKey::Expr(e) = k {
                    e.walk(0, &mut look);
                }
            }
            if let Some(slot) = bad {
                let name = scope
                    .tables
                    .iter()
                    .rev()
                    .find(|(_, _, off)| *off <= slot)
                    .map(|(a, t, off)| format!("{a}.{}", self.tables[*t].columns[slot - off].name))
                    .unwrap_or_default();
                return Err(compile_error(
                    at,
                    format!("column {name} must appear in GROUP BY or be used in an aggregate"),
                ));
            }
        } else if s.having.is_some() {
            return Err(compile_error(at, "HAVING without GROUP BY or aggregates"));
        }
        let distinct = match &s.distinct {
            None | Some(ast::Distinct::All) => false,
            Some(ast::Distinct::Distinct) => true,
            Some(ast::Distinct::On(_)) => return Err(unsupported(at, "DISTINCT ON")),
        };
        let (limit, offset) = self.limit_clause(q, vars, at, depth)?;
        let (sorted, ordered_access) = if !grouped && !distinct && !order_by.is_empty() {
            self.order_from_access(&sources, filter.as_ref(), &order_by, &projection, limit.is_some())
        } else {
            (false, None)
        };
        let mut q = Select {
            compound: None,
            sorted,
            ordered_access,
            needed: Vec::new(),
            from: sources,
            width,
            filter,
            group_by,
            aggregates,
            grouped,
            having,
            projection,
            columns,
            distinct,
            order_by,
            limit,
            offset,
        };
        q.needed = q.read_slots();
        Ok(q)
    }

    fn resolve(
        &self,
        scope: Option<&Scope<'_>>,
        vars: &[(String, Type)],
        parts: &[Ident],
        at: Location,
    ) -> Result<Expr, SqlError> {
        match parts {
            [id] => {
                let n = name_of(id);
                let mut up = 0;
                let mut cur = scope;
                let var = vars.iter().position(|(v, _)| *v == n);
                while let Some(sc) = cur {
                    let mut hits = sc.tables.iter().filter_map(|(_, t, off)| {
                        self.tables[*t].columns.iter().position(|c| c.name == n).map(|i| off + i)
                    });
                    if let Some(slot) = hits.next() {
                        if hits.next().is_some() {
                            return Err(compile_error(
                                iloc(id, at),
                                format!("column {n} is ambiguous (qualify it with a table)"),
                            ));
                        }
                        if var.is_some() {
                            return Err(compile_error(iloc(id, at), format!("{n} is both a column and a variable (rename the variable or qualify the column)")));
                        }
                        return Ok(Expr::Col { up, slot });
                    }
                    up += 1;
                    cur = sc.parent;
                }
                match var {
                    Some(v) => Ok(Expr::Var(v)),
                    None => Err(compile_error(iloc(id, at), format!("no column or variable named {n}"))),
                }
            }
            [t, c] => {
                let (tn, cn) = (name_of(t), name_of(c));
                let mut up = 0;
                let mut cur = scope;
                while let Some(sc) = cur {
                    if let Some((_, tid, off)) = sc.tables.iter().find(|(a, _, _)| *a == tn) {
                        let Some(i) = self.tables[*tid].columns.iter().position(|x| x.name == cn) else {
                            return Err(compile_error(iloc(c, at), format!("table {tn} has no column {cn}")));
                        };
                        return Ok(Expr::Col { up, slot: off + i });
                    }
                    up += 1;
                    cur = sc.parent;
                }
                Err(compile_error(iloc(t, at), format!("no table {tn} in scope")))
            }
            _ => Err(unsupported(at, "names with more than two parts")),
        }
    }

    fn expr(&self, e: &ast::Expr, cx: &mut ExprCx<'_, '_>, at: Location) -> Result<Expr, SqlError> {
        let at = loc(e, at);
        cx.depth += 1;
        if cx.depth > self.limits.depth {
            return Err(SqlError::Limit(format!(
                "expression nested deeper than {} at line {}, column {}",
                self.limits.depth, at.line, at.column
            )));
        }
        let out = self.expr_inner(e, cx, at);
        cx.depth -= 1;
        out
    }

    fn sub(&self, q: &ast::Query, cx: &ExprCx<'_, '_>, at: Location) -> Result<Box<Select>, SqlError> {
        if cx.place == Place::Schema {
            return Err(unsupported(at, "subqueries in CHECK or DEFAULT"));
        }
        Ok(Box::new(self.select(q, cx.scope, cx.vars, at, cx.depth + 1)?))
    }

    fn expr_inner(&self, e: &ast::Expr, cx: &mut ExprCx<'_, '_>, at: Location) -> Result<Expr, SqlError> {
        use ast::Expr as A;
        let b = Box::new;
        Ok(match e {
            A::Identifier(id) => {
                if cx.place == Place::Schema && cx.scope.is_none() {
                    return Err(compile_error(at, format!("{} cannot be used here", name_of(id))));
                }
                self.resolve(cx.scope, cx.vars, std::slice::from_ref(id), at)?
            }
            A::CompoundIdentifier(ids) => self.resolve(cx.scope, cx.vars, ids, at)?,
            A::Nested(inner) => self.expr(inner, cx, at)?,
            A::Value(v) => Expr::Const(literal(&v.value, at)?),
            A::TypedString(ts) => return Err(unsupported(at, format!("typed literal {ts}"))),
            // -9223372036854775808 is a literal, not the negation of one out of range.
            A::UnaryOp { op: UnaryOperator::Minus, expr } if matches!(expr.as_ref(), A::Value(ast::ValueWithSpan { value: ast::Value::Number(n, _), .. }) if n.parse::<i64>().is_err() && format!("-{n}").parse::<i64>().is_ok()) =>
            {
                let A::Value(ast::ValueWithSpan { value: ast::Value::Number(n, _), .. }) = expr.as_ref()
                else {
                    return Err(compile_error(at, "bad literal"));
                };
                Expr::Const(Value::Int(
                    format!("-{n}").parse().map_err(|_| compile_error(at, "bad literal"))?,
                ))
            }
            A::UnaryOp { op, expr } => {
                let inner = self.expr(expr, cx, at)?;
                match op {
                    UnaryOperator::Minus => match inner {
                        Expr::Const(Value::Int(i)) => Expr::Const(Value::Int(
                            i.checked_neg()
                                .ok_or_else(|| compile_error(at, "integer literal out of range"))?,
                        )),
                        Expr::Const(Value::Dec(d)) => {
                            Expr::Const(Value::Dec(Decimal { units: -d.units, scale: d.scale }))
                        }
                        other => Expr::Neg(b(other)),
                    },
                    UnaryOperator::Plus => inner,
                    UnaryOperator::Not => Expr::Not(b(inner)),
                    other => return Err(unsupported(at, format!("operator {other}"))),
                }
            }
            A::BinaryOp { left, op, right } => {
                let (l, r) = (self.expr(left, cx, at)?, self.expr(right, cx, at)?);
                let (l, r) = (b(l), b(r));
                match op {
                    BinaryOperator::Plus => Expr::Arith(Arith::Add, l, r),
                    BinaryOperator::Minus => Expr::Arith(Arith::Sub, l, r),
                    BinaryOperator::Multiply => Expr::Arith(Arith::Mul, l, r),
                    BinaryOperator::Divide => Expr::Arith(Arith::Div, l, r),
                    BinaryOperator::Modulo => Expr::Arith(Arith::Mod, l, r),
                    BinaryOperator::Eq => Expr::Cmp(Cmp::Eq, l, r),
                    BinaryOperator::NotEq => Expr::Cmp(Cmp::Ne, l, r),
                    BinaryOperator::Lt => Expr::Cmp(Cmp::Lt, l, r),
                    BinaryOperator::LtEq => Expr::Cmp(Cmp::Le, l, r),
                    BinaryOperator::Gt => Expr::Cmp(Cmp::Gt, l, r),
                    BinaryOperator::GtEq => Expr::Cmp(Cmp::Ge, l, r),
                    BinaryOperator::And => Expr::And(l, r),
                    BinaryOperator::Or => Expr::Or(l, r),
                    BinaryOperator::StringConcat => Expr::Concat(l, r),
                    other => return Err(unsupported(at, format!("operator {other}"))),
                }
            }
            A::IsNull(x) => Expr::IsNull(b(self.expr(x, cx, at)?), false),
            A::IsNotNull(x) => Expr::IsNull(b(self.expr(x, cx, at)?), true),
            A::Between { expr, negated, low, high } => {
                let x = self.expr(expr, cx, at)?;
                let both = Expr::And(
                    b(Expr::Cmp(Cmp::Ge, b(x.clone()), b(self.expr(low, cx, at)?))),
                    b(Expr::Cmp(Cmp::Le, b(x), b(self.expr(high, cx, at)?))),
                );
                if *negated {
                    Expr::Not(b(both))
                } else {
                    both
                }
            }
            A::In { expr, target, negated, .. } => {
                let x = b(self.expr(expr, cx, at)?);
                match target {
                    ast::InTarget::List(list) => {
                        let mut items = Vec::new();
                        for i in list {
                            items.push(self.expr(i, cx, at)?);
                        }
                        Expr::InList(x, items, *negated)
                    }
                    ast::InTarget::Subquery(q) => {
                        let sel = self.sub(q, cx, at)?;
                        if sel.projection.len() != 1 {
                            return Err(compile_error(at, "an IN subquery must select one column"));
                        }
                        Expr::InQuery(x, sel, *negated)
                    }
                    _ => return Err(unsupported(at, "IN UNNEST / IN table")),
                }
            }
            A::AnyOp { left, compare_op, right, .. } | A::AllOp { left, compare_op, right } => {
                let all = matches!(e, A::AllOp { .. });
                let op = match compare_op {
                    BinaryOperator::Eq => Cmp::Eq,
                    BinaryOperator::NotEq => Cmp::Ne,
                    BinaryOperator::Lt => Cmp::Lt,
                    BinaryOperator::LtEq => Cmp::Le,
                    BinaryOperator::Gt => Cmp::Gt,
                    BinaryOperator::GtEq => Cmp::Ge,
                    other => return Err(unsupported(at, format!("{other} with ANY/ALL (a comparison)"))),
                };
                let A::Subquery(q) = right.as_ref() else {
                    return Err(unsupported(at, "ANY/ALL over anything but a subquery (for a list, use IN)"));
                };
                let x = b(self.expr(left, cx, at)?);
                let sel = self.sub(q, cx, at)?;
                if sel.projection.len() != 1 {
                    return Err(compile_error(at, "an ANY/ALL subquery must select one column"));
                }
                Expr::Quantified(op, x, sel, all)
            }
            A::Exists { subquery, negated } => Expr::Exists(self.sub(subquery, cx, at)?, *negated),
            A::Subquery(q) => {
                let sel = self.sub(q, cx, at)?;
                if sel.projection.len() != 1 {
                    return Err(compile_error(at, "a scalar subquery must select one column"));
                }
                Expr::Subquery(sel)
            }
            A::Case { operand, conditions, else_result, .. } => {
                let operand = match operand {
                    Some(o) => Some(b(self.expr(o, cx, at)?)),
                    None => None,
                };
                let mut whens = Vec::new();
                for w in conditions {
                    whens.push((self.expr(&w.condition, cx, at)?, self.expr(&w.result, cx, at)?));
                }
                let otherwise = match else_result {
                    Some(x) => Some(b(self.expr(x, cx, at)?)),
                    None => None,
                };
                Expr::Case { operand, whens, otherwise }
            }
            A::Cast {
                kind: ast::CastKind::Cast | ast::CastKind::DoubleColon,
                expr,
                data_type: dt,
                format: None,
            } => Expr::Cast(b(self.expr(expr, cx, at)?), data_type(dt, at)?),
            A::Substring { expr, substring_from, substring_for, .. } => {
                let mut args = vec![self.expr(expr, cx, at)?];
                args.push(match substring_from {
                    Some(f) => self.expr(f, cx, at)?,
                    None => Expr::Const(Value::Int(1)),
                });
                if let Some(f) = substring_for {
                    args.push(self.expr(f, cx, at)?);
                }
                Expr::Func(Builtin::Substr, args)
            }
            A::Trim { trim_where, trim_what: None, expr, trim_characters: None } => {
                let f = match trim_where {
                    None | Some(ast::TrimWhereField::Both) => Builtin::Trim,
                    Some(ast::TrimWhereField::Leading) => Builtin::Ltrim,
                    Some(ast::TrimWhereField::Trailing) => Builtin::Rtrim,
                };
                Expr::Func(f, vec![self.expr(expr, cx, at)?])
            }
            A::Function(f) => self.function(f, cx, at)?,
            other => {
                let text = other.to_string();
                let short: String = text.chars().take(60).collect();
                return Err(unsupported(at, format!("expression {short}")));
            }
        })
    }

    fn function(&self, f: &ast::Function, cx: &mut ExprCx<'_, '_>, at: Location) -> Result<Expr, SqlError> {
        let name = single_name(&f.name, at)?;
        if f.over.is_some() || f.filter.is_some() || f.null_treatment.is_some() || !f.within_group.is_empty()
        {
            return Err(unsupported(at, format!("{name}: window functions, FILTER and WITHIN GROUP")));
        }
        if !matches!(f.parameters, FunctionArguments::None) {
            return Err(unsupported(at, format!("{name}: parametric function")));
        }
        let (args, distinct, star) = match &f.args {
            FunctionArguments::None => (Vec::new(), false, false),
            FunctionArguments::Subquery(_) => {
                return Err(unsupported(at, format!("{name}: subquery argument")))
            }
            FunctionArguments::List(l) => {
                if !l.clauses.is_empty() {
                    return Err(unsupported(at, format!("{name}: ORDER BY / LIMIT inside a call")));
                }
                let distinct = matches!(l.duplicate_treatment, Some(ast::DuplicateTreatment::Distinct));
                let mut args = Vec::new();
                let mut star = false;
                for a in &l.args {
                    match a {
                        FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => args.push(e),
                        FunctionArg::Unnamed(FunctionArgExpr::Wildcard) => star = true,
                        other => return Err(unsupported(at, format!("argument {other}"))),
                    }
                }
                (args, distinct, star)
            }
        };
        let agg = match name.as_str() {
            "count" => Some(AggFunc::Count),
            "sum" => Some(AggFunc::Sum),
            "avg" => Some(AggFunc::Avg),
            "min" if args.len() == 1 => Some(AggFunc::Min),
            "max" if args.len() == 1 => Some(AggFunc::Max),
            _ => None,
        };
        if let Some(func) = agg {
            if cx.aggs.is_none() {
                return Err(compile_error(at, format!("aggregate {name}() is not allowed here")));
            }
            let arg = match (star, args.as_slice()) {
                (true, []) if func == AggFunc::Count && !distinct => None,
                (false, [a]) => {
                    // An aggregate's argument is a row expression: no nested aggregate.
                    let mut inner = ExprCx {
                        scope: cx.scope,
                        vars: cx.vars,
                        aggs: None,
                        place: cx.place,
                        depth: cx.depth,
                    };
                    Some(self.expr(a, &mut inner, at)?)
                }
                _ => return Err(compile_error(at, format!("{name}() takes one argument (or * for count)"))),
            };
            let aggs = cx.aggs.as_mut().ok_or_else(|| compile_error(at, "aggregate not allowed here"))?;
            aggs.push(Aggregate { func, arg, distinct });
            return Ok(Expr::Agg(aggs.len() - 1));
        }
        if star || distinct {
            return Err(compile_error(at, format!("{name}() is not an aggregate")));
        }
        let (builtin, arity): (Builtin, std::ops::RangeInclusive<usize>) = match name.as_str() {
            "sender" => (Builtin::Sender, 0..=0),
            "self_address" => (Builtin::SelfAddress, 0..=0),
            "block_height" => (Builtin::BlockHeight, 0..=0),
            "block_time" => (Builtin::BlockTime, 0..=0),
            "tx_hash" => (Builtin::TxHash, 0..=0),
            "value" => (Builtin::CallValue, 0..=0),
            "transfer_native" => (Builtin::TransferNative, 2..=2),
            "length" | "char_length" => (Builtin::Length, 1..=1),
            "lower" => (Builtin::Lower, 1..=1),
            "upper" => (Builtin::Upper, 1..=1),
            "substr" | "substring" => (Builtin::Substr, 2..=3),
            "trim" | "btrim" => (Builtin::Trim, 1..=1),
            "ltrim" => (Builtin::Ltrim, 1..=1),
            "rtrim" => (Builtin::Rtrim, 1..=1),
            "replace" => (Builtin::Replace, 3..=3),
            "instr" | "strpos" => (Builtin::Instr, 2..=2),
            "abs" => (Builtin::Abs, 1..=1),
            "coalesce" => (Builtin::Coalesce, 1..=64),
            "ifnull" => (Builtin::Coalesce, 2..=2),
            "nullif" => (Builtin::Nullif, 2..=2),
            _ => return Err(unsupported(at, format!("function {name}()"))),
        };
        if !arity.contains(&args.len()) {
            return Err(compile_error(
                at,
                format!("{name}() takes {} arguments, not {}", fmt_range(&arity), args.len()),
            ));
        }
        let chain_context = matches!(
            builtin,
            Builtin::Sender
                | Builtin::SelfAddress
                | Builtin::BlockHeight
                | Builtin::BlockTime
                | Builtin::TxHash
                | Builtin::CallValue
        );
        if cx.place == Place::Schema && chain_context && cx.scope.is_some() {
            return Err(compile_error(at, format!("{name}() cannot be used in a CHECK constraint")));
        }
        if builtin == Builtin::TransferNative {
            if cx.place != Place::Effect {
                return Err(compile_error(
                    at,
                    "transfer_native() is a statement: PERFORM transfer_native(to, amount)",
                ));
            }
            cx.place = Place::Query;
        } else if cx.place == Place::Effect {
            cx.place = Place::Query;
        }
        let mut out = Vec::new();
        for a in args {
            out.push(self.expr(a, cx, at)?);
        }
        Ok(Expr::Func(builtin, out))
    }
}

/// A query's ORDER BY items, the forms AergoSQL refuses refused (NULLs always sort first).
fn order_items(q: &ast::Query, at: Location) -> Result<&[ast::OrderByExpr], SqlError> {
    let Some(ob) = &q.order_by else { return Ok(&[]) };
    if ob.interpolate.is_some() {
        return Err(unsupported(at, "INTERPOLATE"));
    }
    let ast::OrderByKind::Expressions(list) = &ob.kind else {
        return Err(unsupported(at, "ORDER BY ALL"));
    };
    if let Some(o) = list.iter().find(|o| o.with_fill.is_some() || o.options.nulls_first.is_some()) {
        return Err(unsupported(loc(&o.expr, at), "NULLS FIRST/LAST and WITH FILL (NULLs sort first)"));
    }
    Ok(list)
}

fn fmt_range(r: &std::ops::RangeInclusive<usize>) -> String {
    if r.start() == r.end() {
        r.start().to_string()
    } else {
        format!("{} to {}", r.start(), r.end())
    }
}

fn has_effects(e: &Expr) -> bool {
    let mut found = false;
    e.walk(0, &mut |x, _| {
        if matches!(x, Expr::Func(Builtin::TransferNative, _)) {
            found = true;
        }
    });
    found
}

/// The AND-ed parts of a predicate.
pub fn conjuncts(e: Option<&Expr>) -> Vec<&Expr> {
    let mut out = Vec::new();
    fn go<'a>(e: &'a Expr, out: &mut Vec<&'a Expr>) {
        if let Expr::And(a, b) = e {
            go(a, out);
            go(b, out);
        } else {
            out.push(e);
        }
    }
    if let Some(e) = e {
        go(e, &mut out);
    }
    out
}

fn literal(v: &ast::Value, at: Location) -> Result<Value, SqlError> {
    Ok(match v {
        ast::Value::Number(n, _) => {
            if let Ok(i) = n.parse::<i64>() {
                Value::Int(i)
            } else if n.contains(['e', 'E']) {
                return Err(unsupported(at, format!("floating-point literal {n} (write a decimal: 1.5)")));
            } else if let Some(d) = Decimal::parse(n) {
                if d.scale == 0 {
                    return Err(compile_error(at, format!("integer literal {n} is out of range")));
                }
                Value::Dec(d)
            } else {
                return Err(compile_error(at, format!("bad number {n}")));
            }
        }
        ast::Value::SingleQuotedString(s) | ast::Value::EscapedStringLiteral(s) => Value::Text(s.clone()),
        ast::Value::Boolean(b) => Value::Bool(*b),
        ast::Value::Null => Value::Null,
        ast::Value::HexStringLiteral(h) => {
            Value::Bytes(hex::decode(h).map_err(|e| compile_error(at, format!("bad hex literal: {e}")))?)
        }
        other => return Err(unsupported(at, format!("literal {other}"))),
    })
}

/// The type an expression has whatever the values, when the checker can tell (`None`: found
/// at run time).
fn static_type(e: &Expr, vars: &[(String, Type)]) -> Option<Type> {
    match e {
        Expr::Const(v) => match v {
            Value::Null => None,
            Value::Int(_) => Some(Type::Int),
            Value::Text(_) => Some(Type::Text),
            Value::Bool(_) => Some(Type::Bool),
            Value::Bytes(_) => Some(Type::Bytes),
            Value::Dec(d) => Some(Type::Dec(MAX_DECIMAL_PRECISION, d.scale)),
        },
        Expr::Var(slot) => vars.get(*slot).map(|(_, t)| *t),
        Expr::Cast(_, t) => Some(*t),
        Expr::Concat(..) => Some(Type::Text),
        Expr::Cmp(..)
        | Expr::And(..)
        | Expr::Or(..)
        | Expr::Not(_)
        | Expr::IsNull(..)
        | Expr::InList(..)
        | Expr::InQuery(..)
        | Expr::Quantified(..)
        | Expr::Exists(..) => Some(Type::Bool),
        Expr::Func(f, _) => match f {
            Builtin::Sender
            | Builtin::SelfAddress
            | Builtin::TxHash
            | Builtin::Lower
            | Builtin::Upper
            | Builtin::Substr
            | Builtin::Trim
            | Builtin::Ltrim
            | Builtin::Rtrim
            | Builtin::Replace => Some(Type::Text),
            Builtin::BlockHeight | Builtin::BlockTime | Builtin::Length | Builtin::Instr => Some(Type::Int),
            _ => None,
        },
        _ => None,
    }
}

/// Whether a value of type `from` converts to `to` as an assignment converts it (an INTEGER and
/// a DECIMAL into each other and a BOOLEAN into an INTEGER may still fail at run time for the
/// value).
fn converts(from: Type, to: Type) -> bool {
    matches!(
        (from, to),
        (Type::Int, Type::Int)
            | (Type::Text, Type::Text)
            | (Type::Bool, Type::Bool)
            | (Type::Bytes, Type::Bytes)
            | (Type::Int | Type::Dec(..), Type::Dec(..))
            | (Type::Dec(..) | Type::Bool, Type::Int)
            | (Type::Int, Type::Bool)
    )
}
