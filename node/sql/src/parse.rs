//! Parsing: the script with sqlparser's PostgreSQL dialect, and function bodies.
//!
//! sqlparser keeps a `CREATE FUNCTION` body as the dollar-quoted string it is. A `LANGUAGE sql` body
//! is one query and goes back through sqlparser; a `BEGIN … END` block (the PL/pgSQL subset:
//! DECLARE, assignment, IF/ELSIF/ELSE, RETURN, RAISE EXCEPTION, SQL statements) is split here into
//! statements whose SQL parts — every expression and statement — are parsed by sqlparser from the
//! body's own tokens. Token positions are moved to the script's coordinates first, so that every
//! error names the line and column in the script as written.

use super::SqlError;
use sqlparser::ast::{DataType, Expr, Ident, Query, Statement};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Location, Span, Token, TokenWithSpan, Tokenizer};

/// How deep sqlparser may recurse (nested expressions, subqueries): past this, a clear error
/// instead of a deep stack.
const PARSER_RECURSION_LIMIT: usize = 48;

pub fn compile_error(at: Location, message: impl Into<String>) -> SqlError {
    SqlError::Compile { line: at.line, column: at.column, message: message.into() }
}

/// sqlparser errors end with "at Line: L, Column: C" when they know where.
fn parser_error(e: ParserError, fallback: Location) -> SqlError {
    let text = match e {
        ParserError::TokenizerError(m) | ParserError::ParserError(m) => m,
        ParserError::RecursionLimitExceeded => {
            return compile_error(fallback, "nesting too deep for the parser");
        }
    };
    if let Some(i) = text.rfind(" at Line: ") {
        let tail = &text[i + " at Line: ".len()..];
        if let Some((l, c)) = tail.split_once(", Column: ") {
            if let (Ok(line), Ok(column)) = (l.trim().parse(), c.trim().parse()) {
                return SqlError::Compile { line, column, message: text[..i].to_string() };
            }
        }
    }
    compile_error(fallback, text)
}

/// The script's statements, each with where it starts (sqlparser's spans do not cover every
/// statement kind, so starts are taken from the tokens: the first token after each `;`).
pub fn parse_script(sql: &str) -> Result<Vec<(Statement, Location)>, SqlError> {
    let dialect = PostgreSqlDialect {};
    let start = Location { line: 1, column: 1 };
    let statements = Parser::new(&dialect)
        .with_recursion_limit(PARSER_RECURSION_LIMIT)
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_statements())
        .map_err(|e| parser_error(e, start))?;
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize_with_location()
        .map_err(|e| compile_error(e.location, e.message))?;
    let mut starts = Vec::new();
    let mut expect_start = true;
    let mut depth = 0i32;
    for t in &tokens {
        match &t.token {
            Token::Whitespace(_) => continue,
            Token::SemiColon if depth == 0 => {
                expect_start = true;
                continue;
            }
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            _ => {}
        }
        if expect_start {
            starts.push(t.span.start);
            expect_start = false;
        }
    }
    Ok(statements
        .into_iter()
        .enumerate()
        .map(|(i, s)| (s, starts.get(i).copied().unwrap_or(start)))
        .collect())
}

/// A parsed function body.
pub enum FnBody {
    Query(Box<Query>),
    Block(PlBlock),
}

pub struct PlBlock {
    pub declares: Vec<(Ident, DataType, Option<Expr>)>,
    pub body: Vec<PlStmt>,
}

pub enum PlStmt {
    Assign {
        target: Ident,
        value: Expr,
    },
    If {
        branches: Vec<(Expr, Vec<PlStmt>)>,
        otherwise: Vec<PlStmt>,
    },
    Return {
        value: Option<Expr>,
        at: Location,
    },
    Raise {
        format: String,
        args: Vec<Expr>,
        at: Location,
    },
    /// `EMIT name(args);`
    Emit {
        name: Ident,
        args: Vec<Expr>,
        at: Location,
    },
    Perform(Expr),
    Sql(Box<Statement>, Location),
}

/// Parses a function body; `origin` is where its text starts in the script.
pub fn parse_body(text: &str, origin: Location, depth_limit: usize) -> Result<FnBody, SqlError> {
    let dialect = PostgreSqlDialect {};
    let tokens = Tokenizer::new(&dialect, text).tokenize_with_location().map_err(|e| {
        let at = shift(origin, e.location);
        compile_error(at, e.message)
    })?;
    let tokens: Vec<TokenWithSpan> = tokens
        .into_iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)))
        .map(|t| TokenWithSpan {
            token: t.token,
            span: Span::new(shift(origin, t.span.start), shift(origin, t.span.end)),
        })
        .collect();
    let mut c = Cursor { tokens, pos: 0, end_at: origin, depth_limit };
    if c.is_word(Keyword::DECLARE) || c.is_word(Keyword::BEGIN) {
        let block = c.block()?;
        if !c.at_end() {
            return Err(compile_error(c.here(), "text after the END of the function body"));
        }
        Ok(FnBody::Block(block))
    } else {
        let stmt = c.sql_statement()?;
        if !c.at_end() {
            return Err(compile_error(c.here(), "a SQL function body is one query"));
        }
        match stmt.0 {
            Statement::Query(q) => Ok(FnBody::Query(q)),
            _ => Err(compile_error(
                stmt.1,
                "a SQL function body must be a SELECT (use BEGIN … END for changes)",
            )),
        }
    }
}

fn shift(origin: Location, at: Location) -> Location {
    if at.line <= 1 {
        Location { line: origin.line, column: origin.column + at.column.saturating_sub(1) }
    } else {
        Location { line: origin.line + at.line - 1, column: at.column }
    }
}

struct Cursor {
    tokens: Vec<TokenWithSpan>,
    pos: usize,
    end_at: Location,
    depth_limit: usize,
}

impl Cursor {
    fn at_end(&self) -> bool {
        self.pos >= self.tokens.len()
    }

    fn here(&self) -> Location {
        self.tokens.get(self.pos).map_or(self.end_at, |t| t.span.start)
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos).map(|t| &t.token)
    }

    fn is_word(&self, kw: Keyword) -> bool {
        matches!(self.peek(), Some(Token::Word(w)) if w.keyword == kw)
    }

    fn is_word_text(&self, text: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(w)) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(text))
    }

    fn expect_word(&mut self, kw: Keyword, what: &str) -> Result<(), SqlError> {
        if self.is_word(kw) {
            self.pos += 1;
            Ok(())
        } else {
            Err(compile_error(self.here(), format!("expected {what}")))
        }
    }

    fn expect_semicolon(&mut self) -> Result<(), SqlError> {
        if self.peek() == Some(&Token::SemiColon) {
            self.pos += 1;
            Ok(())
        } else {
            Err(compile_error(self.here(), "expected ;"))
        }
    }

    /// Tokens up to (not including) the first of `stop` at parenthesis depth 0.
    fn take_until(&mut self, stop: &dyn Fn(&Token) -> bool) -> Vec<TokenWithSpan> {
        // Every step checks for a token before passing it (a DECLARE's initial value did not,
        // found by the fuzzer); should another not, debug builds (tests, the fuzzer) say so and
        // release builds take nothing, leaving the caller to report what it expected.
        debug_assert!(self.pos <= self.tokens.len(), "a step passed the last token");
        self.pos = self.pos.min(self.tokens.len());
        let start = self.pos;
        let mut depth = 0i32;
        while let Some(t) = self.peek() {
            if depth == 0 && stop(t) {
                break;
            }
            match t {
                Token::LParen => depth += 1,
                Token::RParen => depth -= 1,
                _ => {}
            }
            self.pos += 1;
        }
        self.tokens[start..self.pos].to_vec()
    }

    fn parse_with<T>(
        &self,
        tokens: Vec<TokenWithSpan>,
        at: Location,
        what: &str,
        f: impl FnOnce(&mut Parser<'_>) -> Result<T, ParserError>,
    ) -> Result<T, SqlError> {
        if tokens.is_empty() {
            return Err(compile_error(at, format!("expected {what}")));
        }
        let dialect = PostgreSqlDialect {};
        let mut p = Parser::new(&dialect)
            .with_recursion_limit(PARSER_RECURSION_LIMIT)
            .with_tokens_with_locations(tokens);
        let out = f(&mut p).map_err(|e| parser_error(e, at))?;
        let rest = p.peek_token();
        if rest.token != Token::EOF {
            return Err(compile_error(rest.span.start, format!("unexpected {} after {what}", rest.token)));
        }
        Ok(out)
    }

    fn expr_until(&mut self, stop: &dyn Fn(&Token) -> bool, what: &str) -> Result<Expr, SqlError> {
        let at = self.here();
        let tokens = self.take_until(stop);
        self.parse_with(tokens, at, what, |p| p.parse_expr())
    }

    fn sql_statement(&mut self) -> Result<(Statement, Location), SqlError> {
        let at = self.here();
        let tokens = self.take_until(&|t| *t == Token::SemiColon);
        let stmt = self.parse_with(tokens, at, "a statement", |p| p.parse_statement())?;
        if self.peek() == Some(&Token::SemiColon) {
            self.pos += 1;
        }
        Ok((stmt, at))
    }

    fn block(&mut self) -> Result<PlBlock, SqlError> {
        let mut declares = Vec::new();
        if self.is_word(Keyword::DECLARE) {
            self.pos += 1;
            while !self.is_word(Keyword::BEGIN) {
                let at = self.here();
                let name = match self.tokens.get(self.pos).map(|t| t.token.clone()) {
                    Some(Token::Word(w)) => {
                        Ident { value: w.value, quote_style: w.quote_style, span: Span::new(at, at) }
                    }
                    _ => return Err(compile_error(at, "expected a variable name or BEGIN")),
                };
                self.pos += 1;
                let ty_tokens = self.take_until(&|t| {
                    matches!(t, Token::SemiColon | Token::Assignment)
                        || matches!(t, Token::Word(w) if w.keyword == Keyword::DEFAULT)
                });
                let ty = self.parse_with(ty_tokens, at, "a type", |p| p.parse_data_type())?;
                // After the type: `;`, or `:=`/DEFAULT and a value. At the end of the body there is
                // neither (the `;` is then reported missing); stepping over it overshot the tokens.
                let init = match self.peek() {
                    None | Some(Token::SemiColon) => None,
                    Some(_) => {
                        self.pos += 1;
                        Some(self.expr_until(&|t| *t == Token::SemiColon, "an initial value")?)
                    }
                };
                self.expect_semicolon()?;
                declares.push((name, ty, init));
            }
        }
        self.expect_word(Keyword::BEGIN, "BEGIN")?;
        let body = self.statements(0)?;
        self.expect_word(Keyword::END, "END")?;
        if self.peek() == Some(&Token::SemiColon) {
            self.pos += 1;
        }
        Ok(PlBlock { declares, body })
    }

    /// Statements up to END, ELSIF or ELSE.
    fn statements(&mut self, depth: usize) -> Result<Vec<PlStmt>, SqlError> {
        if depth > self.depth_limit {
            return Err(compile_error(
                self.here(),
                format!("IF blocks nested deeper than {}", self.depth_limit),
            ));
        }
        let mut out = Vec::new();
        loop {
            let at = self.here();
            if self.at_end() {
                return Err(compile_error(at, "expected END"));
            }
            if self.is_word(Keyword::END)
                || self.is_word_text("ELSIF")
                || self.is_word(Keyword::ELSE)
                || self.is_word_text("ELSEIF")
            {
                return Ok(out);
            }
            if self.is_word(Keyword::IF) {
                self.pos += 1;
                let mut branches = Vec::new();
                let mut otherwise = Vec::new();
                loop {
                    let cond = self.expr_until(
                        &|t| matches!(t, Token::Word(w) if w.keyword == Keyword::THEN),
                        "a condition",
                    )?;
                    self.expect_word(Keyword::THEN, "THEN")?;
                    let stmts = self.statements(depth + 1)?;
                    branches.push((cond, stmts));
                    if self.is_word_text("ELSIF") || self.is_word_text("ELSEIF") {
                        self.pos += 1;
                        continue;
                    }
                    if self.is_word(Keyword::ELSE) {
                        self.pos += 1;
                        otherwise = self.statements(depth + 1)?;
                    }
                    break;
                }
                self.expect_word(Keyword::END, "END IF")?;
                self.expect_word(Keyword::IF, "END IF")?;
                self.expect_semicolon()?;
                out.push(PlStmt::If { branches, otherwise });
            } else if self.is_word(Keyword::RETURN) {
                self.pos += 1;
                let value = if self.peek() == Some(&Token::SemiColon) {
                    None
                } else {
                    Some(self.expr_until(&|t| *t == Token::SemiColon, "a return value")?)
                };
                self.expect_semicolon()?;
                out.push(PlStmt::Return { value, at });
            } else if self.is_word(Keyword::RAISE) {
                self.pos += 1;
                self.expect_word(Keyword::EXCEPTION, "EXCEPTION (only RAISE EXCEPTION is supported)")?;
                let format = match self.tokens.get(self.pos).map(|t| t.token.clone()) {
                    Some(Token::SingleQuotedString(s)) => s,
                    _ => {
                        return Err(compile_error(
                            self.here(),
                            "RAISE EXCEPTION needs a message in single quotes",
                        ))
                    }
                };
                self.pos += 1;
                let mut args = Vec::new();
                while self.peek() == Some(&Token::Comma) {
                    self.pos += 1;
                    args.push(
                        self.expr_until(
                            &|t| matches!(t, Token::Comma | Token::SemiColon),
                            "a RAISE argument",
                        )?,
                    );
                }
                self.expect_semicolon()?;
                out.push(PlStmt::Raise { format, args, at });
            } else if self.is_word_text("EMIT") {
                self.pos += 1;
                let call = self.expr_until(&|t| *t == Token::SemiColon, "an event and its arguments")?;
                self.expect_semicolon()?;
                let Expr::Function(f) = call else {
                    return Err(compile_error(at, "EMIT needs an event and its arguments: EMIT name(a, b);"));
                };
                let name = match f.name.0.as_slice() {
                    [sqlparser::ast::ObjectNamePart::Identifier(id)] => id.clone(),
                    _ => {
                        return Err(compile_error(at, format!("EMIT {}: an event name has no dots", f.name)))
                    }
                };
                let args = match f.args {
                    sqlparser::ast::FunctionArguments::None => Vec::new(),
                    sqlparser::ast::FunctionArguments::List(list)
                        if list.clauses.is_empty() && list.duplicate_treatment.is_none() =>
                    {
                        list.args
                            .into_iter()
                            .map(|a| match a {
                                sqlparser::ast::FunctionArg::Unnamed(
                                    sqlparser::ast::FunctionArgExpr::Expr(e),
                                ) => Ok(e),
                                _ => {
                                    Err(compile_error(at, "EMIT takes plain arguments, in the event's order"))
                                }
                            })
                            .collect::<Result<_, _>>()?
                    }
                    _ => return Err(compile_error(at, "EMIT takes plain arguments, in the event's order")),
                };
                out.push(PlStmt::Emit { name, args, at });
            } else if self.is_word_text("PERFORM") {
                self.pos += 1;
                let e = self.expr_until(&|t| *t == Token::SemiColon, "an expression")?;
                self.expect_semicolon()?;
                out.push(PlStmt::Perform(e));
            } else if matches!(self.tokens.get(self.pos + 1).map(|t| &t.token), Some(Token::Assignment))
                && matches!(self.peek(), Some(Token::Word(_)))
            {
                let Some(Token::Word(w)) = self.peek().cloned() else { unreachable!() };
                self.pos += 2;
                let value = self.expr_until(&|t| *t == Token::SemiColon, "a value")?;
                self.expect_semicolon()?;
                out.push(PlStmt::Assign {
                    target: Ident { value: w.value, quote_style: w.quote_style, span: Span::new(at, at) },
                    value,
                });
            } else {
                let (stmt, at) = self.sql_statement()?;
                out.push(PlStmt::Sql(Box::new(stmt), at));
            }
        }
    }
}

/// A `CREATE EVENT name (arg TYPE, …);` statement of a script, parsed (`docs/dapps.md`).
pub struct EventStmt {
    pub name: Ident,
    pub params: Vec<(Ident, DataType)>,
    pub at: Location,
}

/// Takes the script's `CREATE EVENT` statements out (sqlparser does not know them): the script
/// with each of them blanked in place (newlines kept, so every other statement keeps its line
/// and column), and the events, parsed here.
pub fn split_events(sql: &str) -> Result<(String, Vec<EventStmt>), SqlError> {
    let dialect = PostgreSqlDialect {};
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize_with_location()
        .map_err(|e| compile_error(e.location, e.message))?;
    let solid: Vec<TokenWithSpan> =
        tokens.into_iter().filter(|t| !matches!(t.token, Token::Whitespace(_))).collect();
    let mut events = Vec::new();
    let mut blank: Vec<(Location, Option<Location>)> = Vec::new();
    let (mut i, mut depth) = (0usize, 0i32);
    let mut at_start = true;
    while i < solid.len() {
        let t = &solid[i];
        let is_event = at_start
            && depth == 0
            && matches!(&t.token, Token::Word(w) if w.keyword == Keyword::CREATE)
            && matches!(solid.get(i + 1).map(|t| &t.token), Some(Token::Word(w)) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case("EVENT"));
        if is_event {
            let start = i;
            let mut j = i;
            let mut d = 0i32;
            while j < solid.len() {
                match solid[j].token {
                    Token::LParen => d += 1,
                    Token::RParen => d -= 1,
                    Token::SemiColon if d == 0 => break,
                    _ => {}
                }
                j += 1;
            }
            let end_at = solid.get(j).map_or(Location { line: u64::MAX, column: 0 }, |t| t.span.start);
            let mut c = Cursor { tokens: solid[start + 2..j].to_vec(), pos: 0, end_at, depth_limit: 0 };
            events.push(c.event(solid[start].span.start)?);
            // Blank from CREATE up to the next token after the `;` (or the end).
            blank.push((solid[start].span.start, solid.get(j + 1).map(|t| t.span.start)));
            i = j + 1;
            at_start = true;
            continue;
        }
        match t.token {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            _ => {}
        }
        at_start = depth == 0 && t.token == Token::SemiColon;
        i += 1;
    }
    if blank.is_empty() {
        return Ok((sql.to_string(), events));
    }
    let mut out = String::with_capacity(sql.len());
    let (mut line, mut column) = (1u64, 1u64);
    let mut ranges = blank.into_iter().peekable();
    let mut blanking: Option<Option<Location>> = None;
    for ch in sql.chars() {
        let here = Location { line, column };
        if let Some(until) = blanking {
            if until.is_some_and(|u| (here.line, here.column) >= (u.line, u.column)) {
                blanking = None;
            }
        }
        if blanking.is_none() {
            if let Some((from, until)) = ranges.peek().copied() {
                if (here.line, here.column) >= (from.line, from.column) {
                    blanking = Some(until);
                    ranges.next();
                }
            }
        }
        out.push(match (blanking.is_some(), ch) {
            (true, '\n') => '\n',
            (true, _) => ' ',
            (false, c) => c,
        });
        if ch == '\n' {
            line += 1;
            column = 1;
        } else {
            column += 1;
        }
    }
    Ok((out, events))
}

impl Cursor {
    /// After `CREATE EVENT`: `name (arg TYPE, …)`.
    fn event(&mut self, at: Location) -> Result<EventStmt, SqlError> {
        let name = match self.tokens.get(self.pos).map(|t| (t.token.clone(), t.span.start)) {
            Some((Token::Word(w), start)) => {
                Ident { value: w.value, quote_style: w.quote_style, span: Span::new(start, start) }
            }
            _ => return Err(compile_error(self.here(), "CREATE EVENT needs a name")),
        };
        self.pos += 1;
        if self.peek() != Some(&Token::LParen) {
            return Err(compile_error(self.here(), "expected ( and the event's arguments"));
        }
        self.pos += 1;
        let mut params = Vec::new();
        loop {
            let here = self.here();
            let arg = match self.tokens.get(self.pos).map(|t| t.token.clone()) {
                Some(Token::Word(w)) => {
                    Ident { value: w.value, quote_style: w.quote_style, span: Span::new(here, here) }
                }
                _ => return Err(compile_error(here, "expected an argument name")),
            };
            self.pos += 1;
            let ty_tokens = self.take_until(&|t| matches!(t, Token::Comma | Token::RParen));
            let ty = self.parse_with(ty_tokens, here, "a type", |p| p.parse_data_type())?;
            params.push((arg, ty));
            match self.peek() {
                Some(Token::Comma) => self.pos += 1,
                Some(Token::RParen) => {
                    self.pos += 1;
                    break;
                }
                _ => return Err(compile_error(self.here(), "expected , or ) after an argument")),
            }
        }
        if !self.at_end() {
            return Err(compile_error(self.here(), "unexpected text after the event's arguments"));
        }
        Ok(EventStmt { name, params, at })
    }
}
