//! The lexer: the text of one file to tokens with byte spans.
//!
//! It knows nothing of declarations or expressions: keywords are ordinary
//! [`Tok::Ident`]s that the parser recognises by their text, so that words such
//! as `source` or `entity` can still be property names. Problems (a stray
//! character, an unterminated string, a number out of range) become
//! diagnostics and lexing goes on, so that one run reports them all. It must
//! never panic, whatever the input: invalid UTF-8 arrives here as U+FFFD.

use std::time::Duration;

use crate::diag::{codes, Diagnostic, Span, MAX_PER_FILE};
use crate::SourceFile;

#[derive(Clone, Debug, PartialEq)]
pub enum Tok {
    Ident(String),
    Int(i64),
    Float(f64),
    /// `30s`, `5m`, `1h`, `2d`, `1w`.
    Duration(Duration),
    /// With escapes resolved.
    Str(String),
    LBrace,
    RBrace,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Colon,
    Dot,
    Star,
    Plus,
    Minus,
    Slash,
    Percent,
    /// `=`
    Assign,
    EqEq,
    NotEq,
    Lt,
    Le,
    Gt,
    Ge,
    /// A malformed number or duration, already reported; the parser turns
    /// it into an error node so that nothing else complains about it.
    Error,
    /// Always the last token, with an empty span at the end of the text.
    Eof,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Token {
    pub tok: Tok,
    pub span: Span,
}

impl Tok {
    /// How the token is named in "expected ..., found ..." messages.
    pub fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("`{s}`"),
            Tok::Int(i) => format!("number `{i}`"),
            Tok::Float(x) => format!("number `{x:?}`"),
            Tok::Duration(_) => "a duration".into(),
            Tok::Str(_) => "a string".into(),
            Tok::Eof => "end of file".into(),
            Tok::Error => "an invalid number".into(),
            other => format!("`{}`", other.punct()),
        }
    }

    fn punct(&self) -> &'static str {
        match self {
            Tok::LBrace => "{",
            Tok::RBrace => "}",
            Tok::LParen => "(",
            Tok::RParen => ")",
            Tok::LBracket => "[",
            Tok::RBracket => "]",
            Tok::Comma => ",",
            Tok::Colon => ":",
            Tok::Dot => ".",
            Tok::Star => "*",
            Tok::Plus => "+",
            Tok::Minus => "-",
            Tok::Slash => "/",
            Tok::Percent => "%",
            Tok::Assign => "=",
            Tok::EqEq => "==",
            Tok::NotEq => "!=",
            Tok::Lt => "<",
            Tok::Le => "<=",
            Tok::Gt => ">",
            Tok::Ge => ">=",
            _ => "?",
        }
    }
}

/// Seconds per duration unit.
pub const DURATION_UNITS: &[(&str, u64)] = &[("s", 1), ("m", 60), ("h", 3600), ("d", 86_400), ("w", 604_800)];

/// The longest duration: its microseconds must fit in an i64.
const MAX_DURATION_SECS: u64 = i64::MAX as u64 / 1_000_000;

/// Split `file` into tokens, ending with [`Tok::Eof`], plus every lexical error.
pub fn lex(file: &SourceFile) -> (Vec<Token>, Vec<Diagnostic>) {
    let mut lexer = Lexer { file, text: &file.text, pos: 0, tokens: Vec::new(), diags: Vec::new() };
    lexer.run();
    (lexer.tokens, lexer.diags)
}

struct Lexer<'a> {
    file: &'a SourceFile,
    text: &'a str,
    pos: usize,
    tokens: Vec<Token>,
    diags: Vec<Diagnostic>,
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.text[self.pos..].chars().next()
    }

    fn peek2(&self) -> Option<char> {
        let mut it = self.text[self.pos..].chars();
        it.next();
        it.next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn push(&mut self, tok: Tok, start: usize) {
        self.tokens.push(Token { tok, span: Span::new(start, self.pos) });
    }

    fn error(&mut self, span: Span, code: &'static str, message: String, hint: Option<String>) {
        if self.diags.len() >= MAX_PER_FILE {
            return;
        }
        self.diags.push(Diagnostic::new(self.file, span, code, message).with_hint_opt(hint));
    }

    fn run(&mut self) {
        while let Some(c) = self.peek() {
            let start = self.pos;
            match c {
                c if c.is_whitespace() => {
                    self.bump();
                }
                '#' => {
                    while let Some(c) = self.peek().filter(|&c| c != '\n') {
                        let at = self.pos;
                        self.bump();
                        if c == '\u{FFFD}' {
                            self.unexpected_char(c, at);
                        }
                    }
                }
                '"' => self.string(),
                c if c.is_ascii_digit() => self.number(),
                c if is_ident_start(c) => {
                    while self.peek().is_some_and(is_ident_char) {
                        self.bump();
                    }
                    let word = self.text[start..self.pos].to_string();
                    self.push(Tok::Ident(word), start);
                }
                _ => {
                    self.bump();
                    let two = |l: &mut Self, next: char, yes: Tok, no: Tok| {
                        if l.peek() == Some(next) {
                            l.bump();
                            yes
                        } else {
                            no
                        }
                    };
                    let tok = match c {
                        '{' => Tok::LBrace,
                        '}' => Tok::RBrace,
                        '(' => Tok::LParen,
                        ')' => Tok::RParen,
                        '[' => Tok::LBracket,
                        ']' => Tok::RBracket,
                        ',' => Tok::Comma,
                        ':' => Tok::Colon,
                        '.' => Tok::Dot,
                        '*' => Tok::Star,
                        '+' => Tok::Plus,
                        '-' => Tok::Minus,
                        '/' => Tok::Slash,
                        '%' => Tok::Percent,
                        '=' => two(self, '=', Tok::EqEq, Tok::Assign),
                        '<' => two(self, '=', Tok::Le, Tok::Lt),
                        '>' => two(self, '=', Tok::Ge, Tok::Gt),
                        '!' if self.peek() == Some('=') => {
                            self.bump();
                            Tok::NotEq
                        }
                        _ => {
                            self.unexpected_char(c, start);
                            continue;
                        }
                    };
                    self.push(tok, start);
                }
            }
        }
        let end = self.text.len();
        self.tokens.push(Token { tok: Tok::Eof, span: Span::new(end, end) });
    }

    fn unexpected_char(&mut self, c: char, start: usize) {
        let span = Span::new(start, self.pos);
        let (message, hint) = match c {
            '\u{FFFD}' => (
                "invalid UTF-8 in the file".to_string(),
                Some("definition files must be UTF-8 text".to_string()),
            ),
            '!' => (
                "unexpected character `!`".to_string(),
                Some("write `not x` for negation and `!=` for inequality".to_string()),
            ),
            '&' | '|' => (format!("unexpected character `{c}`"), Some("write `and` / `or`".to_string())),
            '\'' => (
                "unexpected character `'`".to_string(),
                Some("strings are written in double quotes: \"...\"".to_string()),
            ),
            c if c.is_control() => (format!("unexpected character U+{:04X}", c as u32), None),
            c => (format!("unexpected character `{c}`"), None),
        };
        self.error(span, codes::UNEXPECTED_CHAR, message, hint);
    }

    /// A string on one line; a raw newline ends it as unterminated so that one
    /// missing quote does not swallow the rest of the file.
    fn string(&mut self) {
        let start = self.pos;
        self.bump();
        let mut value = String::new();
        loop {
            match self.peek() {
                None | Some('\n') => {
                    self.error(
                        Span::new(start, self.pos),
                        codes::UNTERMINATED_STRING,
                        "unterminated string".into(),
                        Some("close it with `\"` on the same line; write `\\n` for a newline".into()),
                    );
                    break;
                }
                Some('"') => {
                    self.bump();
                    break;
                }
                Some('\\') => {
                    let esc_start = self.pos;
                    self.bump();
                    match self.peek() {
                        Some('"') => value.push('"'),
                        Some('\\') => value.push('\\'),
                        Some('n') => value.push('\n'),
                        // Invalid UTF-8 right after the backslash: say so,
                        // as anywhere else in the file.
                        Some('\u{FFFD}') => {
                            let at = self.pos;
                            self.bump();
                            self.unexpected_char('\u{FFFD}', at);
                            continue;
                        }
                        Some('\n') | None => {
                            self.error(
                                Span::new(esc_start, self.pos),
                                codes::UNKNOWN_ESCAPE,
                                "unknown escape sequence `\\` at the end of the line".into(),
                                Some("the escapes are `\\\"`, `\\\\` and `\\n`".into()),
                            );
                            continue;
                        }
                        Some(c) => {
                            let end = self.pos + c.len_utf8();
                            self.error(
                                Span::new(esc_start, end),
                                codes::UNKNOWN_ESCAPE,
                                format!("unknown escape sequence `\\{c}`"),
                                Some("the escapes are `\\\"`, `\\\\` and `\\n`".into()),
                            );
                        }
                    }
                    self.bump();
                }
                Some(c) => {
                    let at = self.pos;
                    value.push(c);
                    self.bump();
                    if c == '\u{FFFD}' {
                        self.unexpected_char(c, at);
                    }
                }
            }
        }
        self.push(Tok::Str(value), start);
    }

    /// Integers, floats (`1.5`, `2e3`, `1.5e-3`) and durations (`30s`).
    fn number(&mut self) {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.bump();
        }
        let mut is_float = false;
        // `1.` followed by a non-digit stays an integer and a dot.
        if self.peek() == Some('.') && self.peek2().is_some_and(|c| c.is_ascii_digit()) {
            is_float = true;
            self.bump();
            while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                self.bump();
            }
        }
        let mut malformed = false;
        if matches!(self.peek(), Some('e' | 'E'))
            && (self.peek2().is_some_and(|c| c.is_ascii_digit() || c == '+' || c == '-'))
        {
            is_float = true;
            self.bump();
            if matches!(self.peek(), Some('+' | '-')) {
                self.bump();
            }
            if !self.peek().is_some_and(|c| c.is_ascii_digit()) {
                malformed = true;
            }
            while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                self.bump();
            }
        }
        let digits_end = self.pos;
        while self.peek().is_some_and(is_ident_char) {
            self.bump();
        }
        let span = Span::new(start, self.pos);
        let digits = &self.text[start..digits_end];
        let suffix = &self.text[digits_end..self.pos];

        if malformed || (is_float && !suffix.is_empty() && !is_unit(suffix)) {
            let text = self.text[start..self.pos].to_string();
            self.error(span, codes::MALFORMED_NUMBER, format!("malformed number `{text}`"), None);
            self.push(Tok::Error, start);
            return;
        }
        if !suffix.is_empty() {
            self.duration(digits, suffix, is_float, span);
            return;
        }
        if is_float {
            match digits.parse::<f64>() {
                Ok(x) if x.is_finite() => self.push(Tok::Float(x), start),
                _ => {
                    self.error(
                        span,
                        codes::NUMBER_RANGE,
                        format!("number `{digits}` is out of range for float64"),
                        None,
                    );
                    self.push(Tok::Error, start);
                }
            }
        } else {
            match digits.parse::<i64>() {
                Ok(i) => self.push(Tok::Int(i), start),
                Err(_) => {
                    self.error(
                        span,
                        codes::NUMBER_RANGE,
                        format!("integer `{digits}` does not fit in int64"),
                        Some(format!(
                            "int64 holds integers up to {}; write a float such as `{digits}.0` if you mean one",
                            i64::MAX
                        )),
                    );
                    self.push(Tok::Error, start);
                }
            }
        }
    }

    fn duration(&mut self, digits: &str, suffix: &str, is_float: bool, span: Span) {
        let start = span.start;
        let Some(&(_, unit_secs)) = DURATION_UNITS.iter().find(|(u, _)| *u == suffix) else {
            let hint = if suffix.chars().all(is_ident_char)
                && suffix.starts_with(|c: char| c.is_ascii_alphabetic())
                && suffix.len() > 1
            {
                "a number cannot be directly followed by a name; durations end in s, m, h, d or w"
            } else {
                "durations end in s, m, h, d or w, e.g. `30s`, `5m`, `1h`, `2d`, `1w`"
            };
            self.error(
                span,
                codes::UNKNOWN_UNIT,
                format!("unknown duration unit `{suffix}`"),
                Some(hint.into()),
            );
            self.push(Tok::Error, start);
            return;
        };
        if is_float {
            self.error(
                span,
                codes::MALFORMED_NUMBER,
                format!("a duration must be a whole number, found `{digits}{suffix}`"),
                Some("use a smaller unit, e.g. `90m` instead of `1.5h`".into()),
            );
            self.push(Tok::Error, start);
            return;
        }
        // Every later stage works in i64 microseconds: a longer duration
        // (about 292,000 years) would wrap around there.
        let secs = digits
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(unit_secs))
            .filter(|&secs| secs <= MAX_DURATION_SECS);
        match secs {
            Some(secs) => self.push(Tok::Duration(Duration::from_secs(secs)), start),
            None => {
                self.error(
                    span,
                    codes::NUMBER_RANGE,
                    format!("duration `{digits}{suffix}` is out of range"),
                    Some(format!("durations are at most {}d", MAX_DURATION_SECS / 86_400)),
                );
                self.push(Tok::Error, start);
            }
        }
    }
}

fn is_unit(suffix: &str) -> bool {
    DURATION_UNITS.iter().any(|(u, _)| *u == suffix)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(text: &str) -> (Vec<Tok>, Vec<&'static str>) {
        let file = SourceFile { name: "t".into(), text: text.into() };
        let (tokens, diags) = lex(&file);
        (tokens.into_iter().map(|t| t.tok).collect(), diags.into_iter().map(|d| d.code).collect())
    }

    #[test]
    fn numbers_and_durations() {
        let (t, d) = toks("1 2.5 3e2 30s 5m 1h 2d 1w a.b 1.x");
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(
            t,
            vec![
                Tok::Int(1),
                Tok::Float(2.5),
                Tok::Float(300.0),
                Tok::Duration(Duration::from_secs(30)),
                Tok::Duration(Duration::from_secs(300)),
                Tok::Duration(Duration::from_secs(3600)),
                Tok::Duration(Duration::from_secs(172_800)),
                Tok::Duration(Duration::from_secs(604_800)),
                Tok::Ident("a".into()),
                Tok::Dot,
                Tok::Ident("b".into()),
                Tok::Int(1),
                Tok::Dot,
                Tok::Ident("x".into()),
                Tok::Eof,
            ]
        );
    }

    #[test]
    fn errors_keep_lexing() {
        let (_, d) = toks("99999999999999999999 3y 1e999 \"a\\q\" $ \"open\n 1.5h 1e+");
        assert_eq!(d, vec!["E0004", "E0006", "E0004", "E0003", "E0001", "E0002", "E0005", "E0005"]);
    }

    #[test]
    fn invalid_utf8_is_reported_in_strings_and_comments_too() {
        let (t, d) = toks("\"a\u{FFFD}b\" # c\u{FFFD}\n x");
        assert_eq!(d, vec!["E0001", "E0001"]);
        assert_eq!(t.last(), Some(&Tok::Eof));
        assert!(t.contains(&Tok::Ident("x".into())));
    }

    #[test]
    fn durations_must_fit_in_i64_microseconds() {
        let max = MAX_DURATION_SECS;
        let (t, d) = toks(&format!("{max}s"));
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(t[0], Tok::Duration(Duration::from_secs(max)));
        for text in [format!("{}s", max + 1), "288230376151711744s".into(), "72057594037927936m".into()] {
            assert_eq!(toks(&text).1, vec!["E0004"], "{text}");
        }
    }

    #[test]
    fn strings_and_operators() {
        let (t, d) = toks(r#""a\"b\\c\n" == != <= >= < > = # comment"#);
        assert!(d.is_empty());
        assert_eq!(t[0], Tok::Str("a\"b\\c\n".into()));
        assert_eq!(
            &t[1..],
            &[Tok::EqEq, Tok::NotEq, Tok::Le, Tok::Ge, Tok::Lt, Tok::Gt, Tok::Assign, Tok::Eof]
        );
    }
}
