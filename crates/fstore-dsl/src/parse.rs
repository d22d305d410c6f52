//! The parser: tokens of one file to the syntax tree of [`crate::ast`].
//!
//! Recursive descent, one function per grammar level. On an error it reports
//! one diagnostic, skips to the next declaration, property or feature, and
//! goes on, so that one run reports many errors. It must never panic and
//! never recurse without bound: expressions deeper than [`MAX_DEPTH`] are an
//! error, which also keeps every later stage's recursion shallow.
//!
//! Newlines carry no meaning: an expression ends where the next token cannot
//! continue it, which is always the case for the name that starts the next
//! property or feature (`name =`, `name:`, `name {`).

use std::time::Duration;

use crate::ast::{
    BinOp, Decl, DeclKind, Entry, Expr, ExprKind, FeatureDef, FeatureRef, FieldDecl, File, Ident, KeyMapping,
    Property, TypeName, Value,
};
use crate::diag::{codes, did_you_mean, Diagnostic, Span, MAX_PER_FILE};
use crate::lex::{lex, Tok, Token};
use crate::SourceFile;

/// The deepest an expression may nest (parentheses, operators, calls).
pub const MAX_DEPTH: usize = 128;

/// Words that cannot name a field in an expression.
pub const RESERVED: &[&str] =
    &["and", "or", "not", "in", "is", "null", "true", "false", "as", "over", "where"];

const DECL_KEYWORDS: &[&str] = &["entity", "source", "view", "service"];

/// Parse one file. Lexical errors come first in the list, then parse errors.
pub fn parse(file: &SourceFile) -> (File, Vec<Diagnostic>) {
    let (tokens, lex_diags) = lex(file);
    let mut parser =
        Parser { file, tokens, pos: 0, prev_end: 0, depth: 0, unclosed_reported: false, diags: lex_diags };
    let decls = parser.decls();
    (File { decls }, parser.diags)
}

/// `Err` means a diagnostic has been reported and the caller should recover.
type PResult<T> = Result<T, ()>;

/// An expression with the height of its tree.
type Node = (Expr, usize);

/// Which kind of entry a block holds; decides where recovery may resume.
#[derive(Clone, Copy, PartialEq)]
enum BlockKind {
    Decl,
    Features,
    Keys,
    Fields,
}

impl BlockKind {
    fn entry_name(self) -> &'static str {
        match self {
            BlockKind::Decl => "property",
            BlockKind::Features => "feature",
            BlockKind::Keys => "key mapping",
            BlockKind::Fields => "field",
        }
    }
}

struct Parser<'a> {
    file: &'a SourceFile,
    tokens: Vec<Token>,
    pos: usize,
    /// End of the last consumed token, for spans of whole constructs.
    prev_end: usize,
    /// Current recursion depth of expression parsing.
    depth: usize,
    /// An unclosed `{` was reported for the current declaration; enclosing
    /// blocks must not report the same missing brace again.
    unclosed_reported: bool,
    diags: Vec<Diagnostic>,
}

impl Parser<'_> {
    // ---- token access ----

    fn tok_at(&self, n: usize) -> &Tok {
        let last = self.tokens.len().saturating_sub(1);
        self.tokens.get((self.pos + n).min(last)).map_or(&Tok::Eof, |t| &t.tok)
    }

    fn peek(&self) -> &Tok {
        self.tok_at(0)
    }

    fn span(&self) -> Span {
        let last = self.tokens.len().saturating_sub(1);
        self.tokens.get(self.pos.min(last)).map_or(Span::default(), |t| t.span)
    }

    fn bump(&mut self) -> Token {
        let last = self.tokens.len().saturating_sub(1);
        let token = self
            .tokens
            .get(self.pos.min(last))
            .cloned()
            .unwrap_or(Token { tok: Tok::Eof, span: Span::default() });
        if token.tok != Tok::Eof {
            self.pos += 1;
            self.prev_end = token.span.end;
        }
        token
    }

    fn is_word(&self, n: usize, word: &str) -> bool {
        matches!(self.tok_at(n), Tok::Ident(w) if w == word)
    }

    fn error(&mut self, span: Span, code: &'static str, message: String, hint: Option<String>) {
        if self.diags.len() >= MAX_PER_FILE {
            return;
        }
        self.diags.push(Diagnostic::new(self.file, span, code, message).with_hint_opt(hint));
    }

    /// "expected X, found Y" at the current token.
    fn expected<T>(&mut self, what: &str, hint: Option<String>) -> PResult<T> {
        let found = self.peek().describe();
        self.error(self.span(), codes::UNEXPECTED_TOKEN, format!("expected {what}, found {found}"), hint);
        Err(())
    }

    fn expect(&mut self, tok: Tok, what: &str) -> PResult<Span> {
        if *self.peek() == tok {
            Ok(self.bump().span)
        } else {
            self.expected(what, None)
        }
    }

    fn ident(&mut self, what: &str) -> PResult<Ident> {
        match self.peek().clone() {
            Tok::Ident(name) => {
                let span = self.bump().span;
                Ok(Ident { name, span })
            }
            _ => self.expected(what, None),
        }
    }

    /// `entity name {`, `view name {`, ...: where a new declaration starts.
    fn at_decl_start(&self) -> bool {
        matches!(self.peek(), Tok::Ident(w) if DECL_KEYWORDS.contains(&w.as_str()))
            && matches!(self.tok_at(1), Tok::Ident(_))
            && *self.tok_at(2) == Tok::LBrace
    }

    fn at_entry_start(&self, kind: BlockKind) -> bool {
        if !matches!(self.peek(), Tok::Ident(_)) {
            return false;
        }
        match kind {
            BlockKind::Decl => {
                matches!(self.tok_at(1), Tok::Assign | Tok::LBrace)
                    || (self.is_word(0, "key") && matches!(self.tok_at(1), Tok::Ident(_)))
            }
            BlockKind::Features | BlockKind::Fields => *self.tok_at(1) == Tok::Colon,
            BlockKind::Keys => *self.tok_at(1) == Tok::Assign,
        }
    }

    /// Skip to where an entry of `kind` may start, the block's `}`, the next
    /// declaration or the end of the file. Always moves past the token that
    /// caused the error when nothing else was consumed, so parsing progresses.
    fn recover(&mut self, started_at: usize, kind: BlockKind) {
        if self.pos == started_at && !matches!(self.peek(), Tok::RBrace | Tok::Eof) {
            self.bump();
        }
        let mut depth = 0usize;
        loop {
            match self.peek() {
                Tok::Eof => return,
                Tok::RBrace if depth == 0 => return,
                _ if depth == 0 && (self.at_decl_start() || self.at_entry_start(kind)) => return,
                Tok::LBrace => depth += 1,
                Tok::RBrace => depth -= 1,
                _ => {}
            }
            self.bump();
        }
    }

    // ---- declarations ----

    fn decls(&mut self) -> Vec<Decl> {
        let mut decls = Vec::new();
        loop {
            self.unclosed_reported = false;
            if self.diags.len() >= MAX_PER_FILE {
                // Nothing more would be reported; stop rather than keep
                // recovering through a file that is not definitions at all.
                return decls;
            }
            let kind = match self.peek() {
                Tok::Eof => return decls,
                Tok::Ident(w) => match w.as_str() {
                    "entity" => Some(DeclKind::Entity),
                    "source" => Some(DeclKind::Source),
                    "view" => Some(DeclKind::View),
                    "service" => Some(DeclKind::Service),
                    _ => None,
                },
                _ => None,
            };
            let started_at = self.pos;
            let parsed = match kind {
                Some(kind) => self.decl(kind),
                None => {
                    let hint = match self.peek() {
                        Tok::Ident(w) => did_you_mean(w, DECL_KEYWORDS.iter().copied()),
                        _ => None,
                    };
                    let found = self.peek().describe();
                    self.error(
                        self.span(),
                        codes::EXPECTED_DECL,
                        format!(
                            "expected a declaration (`entity`, `source`, `view` or `service`), found {found}"
                        ),
                        hint,
                    );
                    Err(())
                }
            };
            match parsed {
                Ok(decl) => decls.push(decl),
                Err(()) => self.recover_decl(started_at),
            }
        }
    }

    /// Skip to the next declaration keyword outside braces.
    fn recover_decl(&mut self, started_at: usize) {
        if self.pos == started_at {
            self.bump();
        }
        let mut depth = 0usize;
        loop {
            match self.peek() {
                Tok::Eof => return,
                Tok::Ident(w) if depth == 0 && DECL_KEYWORDS.contains(&w.as_str()) => return,
                Tok::LBrace => depth += 1,
                Tok::RBrace => depth = depth.saturating_sub(1),
                _ => {}
            }
            self.bump();
        }
    }

    fn decl(&mut self, kind: DeclKind) -> PResult<Decl> {
        let start = self.bump().span.start;
        let what = format!("a name for the {}", kind.keyword());
        let name = self.ident(&what)?;
        let open = self.expect(Tok::LBrace, "`{`")?;
        let (entries, incomplete) = self.block(open, BlockKind::Decl, Self::entry);
        Ok(Decl { kind, name, span: Span::new(start, self.prev_end), entries, incomplete })
    }

    /// Entries up to the closing `}` (consumed). Entries may be separated by
    /// commas; a failed entry is skipped up to the next one. Also returns
    /// whether any entry failed.
    fn block<T>(
        &mut self,
        open: Span,
        kind: BlockKind,
        mut entry: impl FnMut(&mut Self) -> PResult<T>,
    ) -> (Vec<T>, bool) {
        let mut entries = Vec::new();
        let mut failed = false;
        loop {
            match self.peek() {
                Tok::RBrace => {
                    self.bump();
                    return (entries, failed);
                }
                Tok::Comma => {
                    self.bump();
                    continue;
                }
                Tok::Eof => {
                    self.unclosed(open, "the end of the file");
                    return (entries, failed);
                }
                _ if self.at_decl_start() => {
                    self.unclosed(open, "the next declaration");
                    return (entries, failed);
                }
                _ => {}
            }
            let started_at = self.pos;
            match entry(self) {
                Ok(e) => {
                    entries.push(e);
                    let follows = matches!(self.peek(), Tok::RBrace | Tok::Comma | Tok::Eof)
                        || self.at_decl_start()
                        || self.at_entry_start(kind);
                    if !follows {
                        let _ = self.expected::<()>(&format!("`}}` or the next {}", kind.entry_name()), None);
                        self.recover(self.pos, kind);
                    }
                }
                Err(()) => {
                    failed = true;
                    self.recover(started_at, kind);
                }
            }
        }
    }

    fn unclosed(&mut self, open: Span, before: &str) {
        if self.unclosed_reported {
            return;
        }
        self.unclosed_reported = true;
        self.error(
            open,
            codes::UNCLOSED,
            format!("this `{{` is not closed before {before}"),
            Some("add the missing `}`".into()),
        );
    }

    fn entry(&mut self) -> PResult<Entry> {
        if self.is_word(0, "key") && matches!(self.tok_at(1), Tok::Ident(_)) {
            let start = self.bump().span.start;
            let name = self.ident("a key name")?;
            if *self.peek() != Tok::Colon {
                return self.expected("`:`", Some(format!("keys are written `key {}: int64`", name.name)));
            }
            self.bump();
            let ty = self.type_name()?;
            return Ok(Entry::Key { name, ty, span: Span::new(start, self.prev_end) });
        }
        self.property().map(Entry::Property)
    }

    fn property(&mut self) -> PResult<Property> {
        let name = match self.peek() {
            Tok::Ident(_) => self.ident("a property name")?,
            _ => return self.expected("a property name or `}`", None),
        };
        let value = match self.peek() {
            Tok::Assign => {
                self.bump();
                let started_at = self.pos;
                let parsed =
                    if *self.peek() == Tok::LBracket { self.refs() } else { self.expr().map(Value::Expr) };
                parsed.unwrap_or_else(|()| {
                    self.recover(started_at, BlockKind::Decl);
                    Value::Error
                })
            }
            Tok::LBrace => {
                let open = self.bump().span;
                match name.name.as_str() {
                    "features" | "derived" => {
                        let (features, _) = self.block(open, BlockKind::Features, Self::feature);
                        Value::Features(features, Span::new(open.start, self.prev_end))
                    }
                    "keys" => {
                        let (keys, _) = self.block(open, BlockKind::Keys, Self::key_mapping);
                        Value::Keys(keys, Span::new(open.start, self.prev_end))
                    }
                    "fields" | "request" => {
                        let (fields, _) = self.block(open, BlockKind::Fields, Self::field_decl);
                        Value::Fields(fields, Span::new(open.start, self.prev_end))
                    }
                    _ => {
                        self.skip_block(open);
                        Value::UnknownBlock(Span::new(open.start, self.prev_end))
                    }
                }
            }
            _ => {
                return self.expected(
                    &format!("`=` or `{{` after `{}`", name.name),
                    Some("properties are written `name = value`".into()),
                )
            }
        };
        Ok(Property { span: Span::new(name.span.start, self.prev_end), name, value })
    }

    /// Skip a `{ ... }` whose content has no meaning here (the `{` is consumed).
    fn skip_block(&mut self, open: Span) {
        let mut depth = 1usize;
        loop {
            match self.peek() {
                Tok::Eof => {
                    self.unclosed(open, "the end of the file");
                    return;
                }
                Tok::LBrace => depth += 1,
                Tok::RBrace => {
                    depth -= 1;
                    if depth == 0 {
                        self.bump();
                        return;
                    }
                }
                _ => {}
            }
            self.bump();
        }
    }

    /// `[view.feature, view.*, ...]`
    fn refs(&mut self) -> PResult<Value> {
        let open = self.bump().span;
        let mut refs = Vec::new();
        loop {
            if *self.peek() == Tok::RBracket {
                break;
            }
            let view = self.ident("a feature reference such as `view.feature`")?;
            self.expect(Tok::Dot, "`.` after the view name")?;
            let feature = match self.peek() {
                Tok::Star => {
                    self.bump();
                    None
                }
                _ => Some(self.ident("a feature name or `*`")?),
            };
            refs.push(FeatureRef { span: Span::new(view.span.start, self.prev_end), view, feature });
            match self.peek() {
                Tok::Comma => {
                    self.bump();
                }
                Tok::RBracket => break,
                _ => return self.expected("`,` or `]`", None),
            }
        }
        self.bump();
        Ok(Value::Refs(refs, Span::new(open.start, self.prev_end)))
    }

    fn key_mapping(&mut self) -> PResult<KeyMapping> {
        let key = self.ident("an entity key name")?;
        if *self.peek() != Tok::Assign {
            return self.expected("`=`", Some("keys are mapped as `entity_key = source_field`".into()));
        }
        self.bump();
        let field = self.ident("a source field name")?;
        Ok(KeyMapping { key, field })
    }

    fn field_decl(&mut self) -> PResult<FieldDecl> {
        let name = self.ident("a field name")?;
        if *self.peek() != Tok::Colon {
            return self.expected("`:`", Some(format!("fields are declared as `{}: int64`", name.name)));
        }
        self.bump();
        let ty = self.type_name()?;
        Ok(FieldDecl { name, ty })
    }

    /// `int64`, `array<float32>`, ...
    fn type_name(&mut self) -> PResult<TypeName> {
        let head = self.ident("a type such as `int64`")?;
        if head.name != "array" || !matches!(self.peek(), Tok::Lt) {
            return Ok(TypeName { name: head.name, span: head.span });
        }
        self.bump();
        let inner = self.ident("an element type such as `float32`")?;
        match self.peek() {
            Tok::Gt => {
                self.bump();
            }
            // `array<float32>= x`: the lexer saw `>=`; keep the `=` for the caller.
            Tok::Ge => {
                let at = self.pos;
                if let Some(t) = self.tokens.get_mut(at) {
                    t.tok = Tok::Assign;
                    t.span.start += 1;
                    self.prev_end = t.span.start;
                }
            }
            _ => return self.expected("`>`", None),
        }
        Ok(TypeName {
            name: format!("array<{}>", inner.name),
            span: Span::new(head.span.start, self.prev_end),
        })
    }

    /// `name: type = expr [over DURATION] [where COND]`. Once the name is
    /// read, the feature is kept whatever follows, with an error expression
    /// if the rest does not parse.
    fn feature(&mut self) -> PResult<FeatureDef> {
        let name = self.ident("a feature name")?;
        let broken = |p: &mut Self, name: Ident, started_at: usize| {
            p.recover(started_at, BlockKind::Features);
            Ok(FeatureDef {
                span: Span::new(name.span.start, p.prev_end),
                ty: TypeName { name: String::new(), span: name.span },
                expr: Expr { kind: ExprKind::Error, span: name.span },
                name,
                over: None,
                condition: None,
            })
        };
        let started_at = self.pos;
        let hint = Some(format!("features are written `{}: type = expression`", name.name));
        if *self.peek() != Tok::Colon {
            let _ = self.expected::<()>("`:`", hint);
            return broken(self, name, started_at);
        }
        self.bump();
        let Ok(ty) = self.type_name() else {
            return broken(self, name, started_at);
        };
        if *self.peek() != Tok::Assign {
            let _ = self.expected::<()>("`=`", hint);
            return broken(self, name, started_at);
        }
        self.bump();
        let started_at = self.pos;
        let mut feature = FeatureDef {
            span: name.span,
            name,
            ty,
            expr: Expr { kind: ExprKind::Error, span: self.span() },
            over: None,
            condition: None,
        };
        match self.expr() {
            Ok(e) => feature.expr = e,
            Err(()) => {
                self.recover(started_at, BlockKind::Features);
                feature.span.end = self.prev_end;
                return Ok(feature);
            }
        }
        loop {
            let clause = self.span();
            if self.is_word(0, "over") {
                self.bump();
                if feature.over.is_some() {
                    self.error(
                        clause,
                        codes::REPEATED_CLAUSE,
                        "`over` is given twice".into(),
                        Some("a feature has at most one window".into()),
                    );
                }
                match self.peek().clone() {
                    Tok::Duration(d) => {
                        let span = self.bump().span;
                        feature.over.get_or_insert((d, span));
                    }
                    // Already reported by the lexer.
                    Tok::Error => {
                        self.bump();
                    }
                    _ => {
                        let _ = self.expected::<()>("a duration such as `1h` after `over`", None);
                        self.recover(self.pos, BlockKind::Features);
                        break;
                    }
                }
            } else if self.is_word(0, "where") {
                self.bump();
                if feature.condition.is_some() {
                    self.error(
                        clause,
                        codes::REPEATED_CLAUSE,
                        "`where` is given twice".into(),
                        Some("combine the conditions with `and`".into()),
                    );
                }
                let at = self.pos;
                let cond = self.expr().unwrap_or_else(|()| {
                    self.recover(at, BlockKind::Features);
                    Expr { kind: ExprKind::Error, span: clause }
                });
                feature.condition.get_or_insert(cond);
            } else {
                break;
            }
        }
        feature.span.end = self.prev_end;
        Ok(feature)
    }

    // ---- expressions, by precedence from low to high ----

    /// Parse an expression.
    pub(crate) fn expr(&mut self) -> PResult<Expr> {
        self.nested(Self::or_expr).map(|(e, _)| e)
    }

    /// Run `f` one level deeper, refusing to go past [`MAX_DEPTH`].
    fn nested(&mut self, f: impl FnOnce(&mut Self) -> PResult<Node>) -> PResult<Node> {
        if self.depth >= MAX_DEPTH {
            return self.too_deep(self.span());
        }
        self.depth += 1;
        let result = f(self);
        self.depth -= 1;
        result
    }

    fn too_deep<T>(&mut self, span: Span) -> PResult<T> {
        self.error(
            span,
            codes::TOO_DEEP,
            format!("expression nested too deeply (more than {MAX_DEPTH} levels)"),
            Some("split it into simpler expressions".into()),
        );
        Err(())
    }

    /// A node over `children`, checking the height of the resulting tree.
    fn node(&mut self, kind: ExprKind, span: Span, child_height: usize) -> PResult<Node> {
        let height = child_height + 1;
        if height > MAX_DEPTH {
            return self.too_deep(span);
        }
        Ok((Expr { kind, span }, height))
    }

    fn binary(&mut self, op: BinOp, (l, lh): Node, (r, rh): Node) -> PResult<Node> {
        let span = l.span.to(r.span);
        self.node(ExprKind::Binary(op, Box::new(l), Box::new(r)), span, lh.max(rh))
    }

    fn or_expr(&mut self) -> PResult<Node> {
        let mut left = self.and_expr()?;
        while self.is_word(0, "or") {
            self.bump();
            let right = self.and_expr()?;
            left = self.binary(BinOp::Or, left, right)?;
        }
        Ok(left)
    }

    fn and_expr(&mut self) -> PResult<Node> {
        let mut left = self.not_expr()?;
        while self.is_word(0, "and") {
            self.bump();
            let right = self.not_expr()?;
            left = self.binary(BinOp::And, left, right)?;
        }
        Ok(left)
    }

    fn not_expr(&mut self) -> PResult<Node> {
        if !self.is_word(0, "not") {
            return self.cmp_expr();
        }
        let start = self.bump().span.start;
        let (inner, h) = self.nested(Self::not_expr)?;
        let span = Span::new(start, inner.span.end);
        self.node(ExprKind::Not(Box::new(inner)), span, h)
    }

    fn cmp_expr(&mut self) -> PResult<Node> {
        let mut left = self.add_expr()?;
        loop {
            let op = match self.peek() {
                Tok::EqEq => BinOp::Eq,
                Tok::NotEq => BinOp::Ne,
                Tok::Lt => BinOp::Lt,
                Tok::Le => BinOp::Le,
                Tok::Gt => BinOp::Gt,
                Tok::Ge => BinOp::Ge,
                Tok::Ident(w) if w == "is" => {
                    self.bump();
                    let negated = self.is_word(0, "not");
                    if negated {
                        self.bump();
                    }
                    if !self.is_word(0, "null") {
                        return self.expected(
                            &format!("`null` after `is{}`", if negated { " not" } else { "" }),
                            Some("compare values with `==`; `is` only tests for null".into()),
                        );
                    }
                    self.bump();
                    let (e, h) = left;
                    let span = Span::new(e.span.start, self.prev_end);
                    let kind = ExprKind::IsNull { expr: Box::new(e), negated };
                    left = self.node(kind, span, h)?;
                    continue;
                }
                Tok::Ident(w) if w == "in" || (w == "not" && self.is_word(1, "in")) => {
                    let negated = w == "not";
                    self.bump();
                    if negated {
                        self.bump();
                    }
                    left = self.in_list(left, negated)?;
                    continue;
                }
                _ => return Ok(left),
            };
            self.bump();
            let right = self.add_expr()?;
            left = self.binary(op, left, right)?;
        }
    }

    /// The `(a, b, ...)` after `in` / `not in`.
    fn in_list(&mut self, (e, h): Node, negated: bool) -> PResult<Node> {
        if *self.peek() != Tok::LParen {
            return self
                .expected("`(` after `in`", Some("write the values in parentheses: `x in (1, 2)`".into()));
        }
        self.bump();
        let (list, lh) = self.comma_list(Tok::RParen, "`,` or `)`")?;
        let span = Span::new(e.span.start, self.prev_end);
        let kind = ExprKind::In { expr: Box::new(e), list, negated };
        self.node(kind, span, h.max(lh))
    }

    /// Expressions separated by commas up to `close` (consumed); the opening
    /// token is already consumed. Returns them and their greatest height.
    fn comma_list(&mut self, close: Tok, what: &str) -> PResult<(Vec<Expr>, usize)> {
        let mut items = Vec::new();
        let mut height = 0;
        if *self.peek() == close {
            self.bump();
            return Ok((items, height));
        }
        loop {
            let (e, h) = self.nested(Self::or_expr)?;
            items.push(e);
            height = height.max(h);
            match self.peek() {
                Tok::Comma => {
                    self.bump();
                }
                t if *t == close => {
                    self.bump();
                    return Ok((items, height));
                }
                _ => return self.expected(what, None),
            }
        }
    }

    fn add_expr(&mut self) -> PResult<Node> {
        let mut left = self.mul_expr()?;
        loop {
            let op = match self.peek() {
                Tok::Plus => BinOp::Add,
                Tok::Minus => BinOp::Sub,
                _ => return Ok(left),
            };
            self.bump();
            let right = self.mul_expr()?;
            left = self.binary(op, left, right)?;
        }
    }

    fn mul_expr(&mut self) -> PResult<Node> {
        let mut left = self.unary()?;
        loop {
            let op = match self.peek() {
                Tok::Star => BinOp::Mul,
                Tok::Slash => BinOp::Div,
                Tok::Percent => BinOp::Mod,
                _ => return Ok(left),
            };
            self.bump();
            let right = self.unary()?;
            left = self.binary(op, left, right)?;
        }
    }

    fn unary(&mut self) -> PResult<Node> {
        if *self.peek() != Tok::Minus {
            return self.cast();
        }
        let start = self.bump().span.start;
        let (inner, h) = self.nested(Self::unary)?;
        let span = Span::new(start, inner.span.end);
        self.node(ExprKind::Neg(Box::new(inner)), span, h)
    }

    fn cast(&mut self) -> PResult<Node> {
        let mut node = self.primary()?;
        while self.is_word(0, "as") {
            self.bump();
            let ty = self.type_name()?;
            let (e, h) = node;
            let span = Span::new(e.span.start, ty.span.end);
            let kind = ExprKind::Cast { expr: Box::new(e), ty };
            node = self.node(kind, span, h)?;
        }
        Ok(node)
    }

    fn primary(&mut self) -> PResult<Node> {
        let span = self.span();
        let leaf = |kind| Ok((Expr { kind, span }, 1));
        match self.peek().clone() {
            Tok::Int(i) => {
                self.bump();
                leaf(ExprKind::Int(i))
            }
            Tok::Float(x) => {
                self.bump();
                leaf(ExprKind::Float(x))
            }
            Tok::Str(s) => {
                self.bump();
                leaf(ExprKind::Str(s))
            }
            Tok::Duration(d) => {
                self.bump();
                leaf(ExprKind::Duration(d))
            }
            Tok::Error => {
                self.bump();
                leaf(ExprKind::Error)
            }
            Tok::Ident(w) => match w.as_str() {
                "null" => {
                    self.bump();
                    leaf(ExprKind::Null)
                }
                "true" | "false" => {
                    self.bump();
                    leaf(ExprKind::Bool(w == "true"))
                }
                w if RESERVED.contains(&w) => self.expected("an expression", None),
                _ => match self.tok_at(1) {
                    Tok::LParen => self.call(),
                    // The name of the next property or feature: the
                    // expression before it is incomplete.
                    Tok::Colon | Tok::Assign | Tok::LBrace => self.expected("an expression", None),
                    Tok::Dot => self.qualified(),
                    _ => {
                        self.bump();
                        leaf(ExprKind::Ident(w))
                    }
                },
            },
            Tok::LParen => {
                self.bump();
                let (mut e, h) = self.nested(Self::or_expr)?;
                if *self.peek() != Tok::RParen {
                    return self.expected("`)`", None);
                }
                self.bump();
                e.span = Span::new(span.start, self.prev_end);
                Ok((e, h))
            }
            Tok::LBracket => {
                self.bump();
                let (items, h) = self.comma_list(Tok::RBracket, "`,` or `]`")?;
                let span = Span::new(span.start, self.prev_end);
                self.node(ExprKind::List(items), span, h)
            }
            _ => self.expected("an expression", None),
        }
    }

    /// `view.feature`.
    fn qualified(&mut self) -> PResult<Node> {
        let view = self.ident("a view name")?;
        self.bump(); // `.`, checked by the caller
        let feature = self.ident("a feature name after `.`")?;
        let span = Span::new(view.span.start, self.prev_end);
        Ok((Expr { kind: ExprKind::Qualified(Box::new(crate::ast::Qualified { view, feature })), span }, 1))
    }

    fn call(&mut self) -> PResult<Node> {
        let func = self.ident("a function name")?;
        self.bump(); // `(`, checked by the caller
        let (args, h) = self.comma_list(Tok::RParen, "`,` or `)`")?;
        let span = Span::new(func.span.start, self.prev_end);
        self.node(ExprKind::Call { func, args }, span, h)
    }
}

/// Parse a single expression, for tests and tools.
pub fn parse_expr(text: &str) -> Result<Expr, Vec<Diagnostic>> {
    let file = SourceFile { name: "<expr>".into(), text: text.into() };
    let (tokens, mut diags) = lex(&file);
    let mut parser = Parser {
        file: &file,
        tokens,
        pos: 0,
        prev_end: 0,
        depth: 0,
        unclosed_reported: false,
        diags: Vec::new(),
    };
    let parsed = parser.expr();
    if parsed.is_ok() && *parser.peek() != Tok::Eof {
        let _ = parser.expected::<()>("the end of the expression", None);
    }
    diags.append(&mut parser.diags);
    match parsed {
        Ok(e) if diags.is_empty() => Ok(e),
        _ => Err(diags),
    }
}

/// Durations print back the way they are usually written (`90m`, `2d`).
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    for &(unit, size) in crate::lex::DURATION_UNITS.iter().rev() {
        if secs >= size && secs.is_multiple_of(size) {
            return format!("{}{unit}", secs / size);
        }
    }
    format!("{secs}s")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(e: &Expr) -> String {
        match &e.kind {
            ExprKind::Binary(op, l, r) => format!("({} {} {})", show(l), op.symbol(), show(r)),
            ExprKind::Not(x) => format!("(not {})", show(x)),
            ExprKind::Neg(x) => format!("(-{})", show(x)),
            ExprKind::Ident(n) => n.clone(),
            ExprKind::Int(i) => i.to_string(),
            ExprKind::IsNull { expr, negated } => {
                format!("({} is{} null)", show(expr), if *negated { " not" } else { "" })
            }
            ExprKind::In { expr, list, negated } => format!(
                "({}{} in [{}])",
                show(expr),
                if *negated { " not" } else { "" },
                list.iter().map(show).collect::<Vec<_>>().join(", ")
            ),
            ExprKind::Cast { expr, ty } => format!("({} as {})", show(expr), ty.name),
            ExprKind::Call { func, args } => {
                format!("{}({})", func.name, args.iter().map(show).collect::<Vec<_>>().join(", "))
            }
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn precedence() {
        let cases = [
            ("a or b and c", "(a or (b and c))"),
            ("not a == b", "(not (a == b))"),
            ("a + b * c - d", "((a + (b * c)) - d)"),
            ("-a as float64", "(-(a as float64))"),
            ("a + 1 in (1, 2)", "((a + 1) in [1, 2])"),
            ("a not in (1) and b is not null", "((a not in [1]) and (b is not null))"),
            ("f(a, b % 2) >= 3", "(f(a, (b % 2)) >= 3)"),
            ("x as array<float32>", "(x as array<float32>)"),
        ];
        for (text, want) in cases {
            let e = parse_expr(text).unwrap_or_else(|d| panic!("{text}: {d:?}"));
            assert_eq!(show(&e), want, "{text}");
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        for text in [
            format!("{}1{}", "(".repeat(100_000), ")".repeat(100_000)),
            format!("1{}", " + 1".repeat(100_000)),
            "-".repeat(100_000) + "1",
            "not ".repeat(100_000) + "a",
            "f(".repeat(100_000),
        ] {
            let diags = parse_expr(&text).unwrap_err();
            assert_eq!(diags[0].code, codes::TOO_DEEP, "{}", &text[..10]);
        }
    }
}
