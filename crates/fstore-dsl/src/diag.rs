//! Diagnostics: what `fstore check` prints, and the registry of error codes.
//!
//! Every stage reports problems as [`Diagnostic`]s located by a byte [`Span`]
//! in one file; line and column are computed here, once, from the file text.
//! Rendering must never panic, whatever the span (past the end of the file,
//! inside a multi-byte character) or the text (tabs, control characters).
//! Codes are stable: once published, a code keeps its meaning, so tools and
//! docs can refer to it. Every code is listed in [`CODES`].

use crate::SourceFile;

/// Byte offsets `[start, end)` into a file's text; ordered by position.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Span {
        Span { start, end }
    }

    /// The smallest span covering both.
    pub fn to(self, other: Span) -> Span {
        Span { start: self.start.min(other.start), end: self.end.max(other.end) }
    }
}

/// One error, located in one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Stable code, e.g. `E0101`; documented in docs/dsl.md.
    pub code: &'static str,
    pub message: String,
    /// File name as in [`SourceFile::name`].
    pub file: String,
    pub span: Span,
    /// 1-based line and column (column counted in characters).
    pub line: usize,
    pub col: usize,
    pub hint: Option<String>,
}

impl Diagnostic {
    /// A diagnostic at `span` of `file`, with line and column computed from its text.
    pub fn new(file: &SourceFile, span: Span, code: &'static str, message: String) -> Diagnostic {
        let (line, col) = line_col(&file.text, span.start);
        Diagnostic { code, message, file: file.name.clone(), span, line, col, hint: None }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Diagnostic {
        self.hint = Some(hint.into());
        self
    }

    pub fn with_hint_opt(mut self, hint: Option<String>) -> Diagnostic {
        self.hint = hint;
        self
    }
}

/// Largest char boundary at or below `offset`, clamped to the text.
fn floor_boundary(text: &str, offset: usize) -> usize {
    let mut at = offset.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// 1-based line and column (in characters) of a byte offset. Offsets past the
/// end land just after the last character, so the result always lies inside
/// the file (or one column past the end of its last line).
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let at = floor_boundary(text, offset);
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

/// `file:line:col` of a span, for messages that point at a second place.
pub fn location(file: &SourceFile, span: Span) -> String {
    let (line, col) = line_col(&file.text, span.start);
    format!("{}:{line}:{col}", file.name)
}

/// The most diagnostics reported per file. Past this, more are mostly
/// consequences of the first; the cap also bounds the work spent locating
/// them on hostile input.
pub const MAX_PER_FILE: usize = 100;

/// Width of a tab in the echoed source line.
const TAB_WIDTH: usize = 4;

/// Render diagnostics as `file:line:col: error[CODE]: message`, the source
/// line, a caret line under the span, and `  = hint: ...` where there is one.
/// Diagnostics are separated by a blank line.
pub fn render(diags: &[Diagnostic], files: &[SourceFile]) -> String {
    let mut out = String::new();
    for (i, d) in diags.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&format!("{}:{}:{}: error[{}]: {}\n", d.file, d.line, d.col, d.code, d.message));
        if let Some(file) = files.iter().find(|f| f.name == d.file) {
            render_snippet(&mut out, &file.text, d.span);
        }
        if let Some(hint) = &d.hint {
            out.push_str(&format!("  = hint: {hint}\n"));
        }
    }
    out
}

/// The line holding the span's start, with a line-number gutter, and carets
/// under the part of the span that lies on that line (at least one caret).
fn render_snippet(out: &mut String, text: &str, span: Span) {
    let start = floor_boundary(text, span.start);
    let end = floor_boundary(text, span.end.max(span.start));
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    let line_no = text[..start].matches('\n').count() + 1;
    let line = &text[line_start..line_end];

    let mut shown = String::new();
    let mut caret_from = 0;
    let mut caret_to = 0;
    let mut width = 0;
    for (offset, c) in line.char_indices() {
        let at = line_start + offset;
        if at == start {
            caret_from = width;
        }
        let w = match c {
            '\t' => {
                shown.push_str(&" ".repeat(TAB_WIDTH));
                TAB_WIDTH
            }
            '\r' if offset + 1 == line.len() => 0,
            c if c.is_control() => {
                shown.push('\u{FFFD}');
                1
            }
            c => {
                shown.push(c);
                1
            }
        };
        width += w;
        if at < end.min(line_end) {
            caret_to = width;
        }
    }
    if start >= line_end {
        caret_from = width;
    }
    let carets = caret_to.saturating_sub(caret_from).max(1);

    let gutter = line_no.to_string();
    let pad = " ".repeat(gutter.len());
    out.push_str(&format!("{pad} |\n"));
    out.push_str(&format!("{gutter} | {}\n", shown.trim_end()));
    out.push_str(&format!("{pad} | {}{}\n", " ".repeat(caret_from), "^".repeat(carets)));
}

/// Every error code, with a one-line summary. docs/dsl.md has a table of
/// them with an example each; the golden tests hold one bad case per code.
pub const CODES: &[(&str, &str)] = &[
    (codes::UNEXPECTED_CHAR, "unexpected character"),
    (codes::UNTERMINATED_STRING, "unterminated string"),
    (codes::UNKNOWN_ESCAPE, "unknown escape sequence in a string"),
    (codes::NUMBER_RANGE, "number out of range"),
    (codes::MALFORMED_NUMBER, "malformed number"),
    (codes::UNKNOWN_UNIT, "unknown duration unit"),
    (codes::UNEXPECTED_TOKEN, "unexpected token"),
    (codes::UNCLOSED, "unclosed delimiter"),
    (codes::TOO_DEEP, "expression nested too deeply"),
    (codes::EXPECTED_DECL, "expected a declaration"),
    (codes::REPEATED_CLAUSE, "`over` or `where` given twice"),
    (codes::UNKNOWN_ENTITY, "unknown entity"),
    (codes::UNKNOWN_SOURCE, "unknown source"),
    (codes::UNKNOWN_FUNCTION, "unknown function"),
    (codes::UNKNOWN_TYPE, "unknown type"),
    (codes::UNKNOWN_PROPERTY, "unknown property"),
    (codes::DUPLICATE_DECL, "name declared twice"),
    (codes::DUPLICATE_PROPERTY, "property given twice"),
    (codes::MISSING_PROPERTY, "required property missing"),
    (codes::DUPLICATE_ENTRY, "name given twice in a block"),
    (codes::BAD_VALUE, "invalid property value"),
    (codes::WRONG_SOURCE_KIND, "property not valid for this source type"),
    (codes::UNKNOWN_KEY, "unknown entity key in `keys`"),
    (codes::NO_KEYS, "entity without keys"),
    (codes::TYPE_MISMATCH, "type mismatch"),
    (codes::FEATURE_TYPE, "feature type differs from its expression"),
    (codes::FIELD_CONFLICT, "a field is used with two types"),
    (codes::FIELD_UNINFERRED, "a field's type cannot be inferred"),
    (codes::UNTYPED_NULL, "`null` without a type"),
    (codes::ARITY, "wrong number of arguments"),
    (codes::BAD_CAST, "unsupported cast"),
    (codes::BAD_HASH_BUCKETS, "invalid `hash_bucket` count"),
    (codes::BAD_BOUNDS, "invalid `bucketize` bounds"),
    (codes::BAD_IN_LIST, "invalid `in` list"),
    (codes::NOT_A_VALUE, "a duration or list used as a value"),
    (codes::KEY_TYPE, "entity key type not int64 or string"),
    (codes::MIXED_VIEW, "view mixes row features and aggregations"),
    (codes::NESTED_AGG, "aggregation inside an expression"),
    (codes::AGG_IN_ROW, "aggregation in a row expression"),
    (codes::OVER_WITHOUT_AGG, "`over` without an aggregation"),
    (codes::WHERE_WITHOUT_AGG, "`where` without an aggregation"),
    (codes::WINDOW_MULTIPLE, "window not a multiple of the resolution"),
    (codes::ZERO_DURATION, "zero duration"),
    (codes::RESOLUTION_IN_ROW_VIEW, "`resolution` in a row view"),
    (codes::NO_FEATURES, "view without features"),
    (codes::UNKNOWN_VIEW, "unknown view"),
    (codes::UNKNOWN_FEATURE, "unknown feature"),
    (codes::DUPLICATE_FEATURE_REF, "feature listed twice in a service"),
    (codes::KEY_COLLISION, "entity keys of one name with different types"),
    (codes::EMPTY_SERVICE, "service without features"),
    (codes::UNKNOWN_NAME, "unknown name in a derived feature"),
    (codes::FEATURE_NOT_IN_SERVICE, "derived feature reads a feature the service does not list"),
    (codes::DERIVED_ORDER, "derived feature used before it is defined"),
    (codes::NAME_CLASH, "derived feature named like a request field"),
    (codes::QUALIFIED_IN_VIEW, "`view.feature` in a view's expression"),
];

/// The codes by name. Grouped by stage: lexing E00xx, parsing E01xx, names
/// and properties E02xx, types E03xx, views and aggregations E04xx,
/// services E05xx.
pub mod codes {
    /// `entity u$er {}`
    pub const UNEXPECTED_CHAR: &str = "E0001";
    /// `path = "data/*.parquet` (no closing quote on the line)
    pub const UNTERMINATED_STRING: &str = "E0002";
    /// `topic = "a\tb"`
    pub const UNKNOWN_ESCAPE: &str = "E0003";
    /// `x: int64 = 9223372036854775808`
    pub const NUMBER_RANGE: &str = "E0004";
    /// `x: float64 = 1.5e`
    pub const MALFORMED_NUMBER: &str = "E0005";
    /// `ttl = 3y`
    pub const UNKNOWN_UNIT: &str = "E0006";

    /// `entity user { key user_id int64 }` (missing `:`)
    pub const UNEXPECTED_TOKEN: &str = "E0101";
    /// `entity user { key user_id: int64` (no closing brace)
    pub const UNCLOSED: &str = "E0102";
    /// `x: int64 = ((((...1...))))` nested more than 128 deep
    pub const TOO_DEEP: &str = "E0103";
    /// `entiy user { ... }`
    pub const EXPECTED_DECL: &str = "E0104";
    /// `n: int64 = count() over 1h over 2h`
    pub const REPEATED_CLAUSE: &str = "E0105";

    /// `entity = usr`
    pub const UNKNOWN_ENTITY: &str = "E0201";
    /// `source = clickz`
    pub const UNKNOWN_SOURCE: &str = "E0202";
    /// `x: string = lowr(name)`
    pub const UNKNOWN_FUNCTION: &str = "E0203";
    /// `key user_id: int`
    pub const UNKNOWN_TYPE: &str = "E0204";
    /// `tll = 2d`
    pub const UNKNOWN_PROPERTY: &str = "E0205";
    /// two `entity user` declarations
    pub const DUPLICATE_DECL: &str = "E0206";
    /// `ttl = 1d` twice in one view
    pub const DUPLICATE_PROPERTY: &str = "E0207";
    /// a source without `timestamp`
    pub const MISSING_PROPERTY: &str = "E0208";
    /// two features named `country` in one view
    pub const DUPLICATE_ENTRY: &str = "E0209";
    /// `type = csv`
    pub const BAD_VALUE: &str = "E0210";
    /// `topic = "x"` in a parquet source
    pub const WRONG_SOURCE_KIND: &str = "E0211";
    /// `keys { usr_id = uid }`
    pub const UNKNOWN_KEY: &str = "E0212";
    /// `entity user {}`
    pub const NO_KEYS: &str = "E0213";

    /// `x: string = lower(1)`
    pub const TYPE_MISMATCH: &str = "E0301";
    /// `x: float32 = 1.5`
    pub const FEATURE_TYPE: &str = "E0302";
    /// `lower(x)` in one feature and `x + 1` in another
    pub const FIELD_CONFLICT: &str = "E0303";
    /// `hash_bucket(x, 10)` with no other use of `x`
    pub const FIELD_UNINFERRED: &str = "E0304";
    /// `filter = null`
    pub const UNTYPED_NULL: &str = "E0305";
    /// `lower(a, b)`
    pub const ARITY: &str = "E0306";
    /// `ts as float64` where `ts` is a timestamp
    pub const BAD_CAST: &str = "E0307";
    /// `hash_bucket(x, 0)`
    pub const BAD_HASH_BUCKETS: &str = "E0308";
    /// `bucketize(x, [3, 1])`
    pub const BAD_BOUNDS: &str = "E0309";
    /// `x in (y, 2)`
    pub const BAD_IN_LIST: &str = "E0310";
    /// `x: int64 = 5m`
    pub const NOT_A_VALUE: &str = "E0311";
    /// `key user_id: float64`
    pub const KEY_TYPE: &str = "E0312";

    /// `a: int64 = x` and `b: int64 = count()` in one view
    pub const MIXED_VIEW: &str = "E0401";
    /// `x: int64 = count() + 1`
    pub const NESTED_AGG: &str = "E0402";
    /// `filter = count() > 1`
    pub const AGG_IN_ROW: &str = "E0403";
    /// `x: int64 = y over 1h`
    pub const OVER_WITHOUT_AGG: &str = "E0404";
    /// `x: int64 = y where z`
    pub const WHERE_WITHOUT_AGG: &str = "E0405";
    /// `count() over 90s` with `resolution = 1m`
    pub const WINDOW_MULTIPLE: &str = "E0406";
    /// `ttl = 0s`
    pub const ZERO_DURATION: &str = "E0407";
    /// `resolution = 1m` in a view of row features
    pub const RESOLUTION_IN_ROW_VIEW: &str = "E0408";
    /// `features {}`
    pub const NO_FEATURES: &str = "E0409";

    /// `features = [user_profil.country]`
    pub const UNKNOWN_VIEW: &str = "E0501";
    /// `features = [user_profile.contry]`
    pub const UNKNOWN_FEATURE: &str = "E0502";
    /// `features = [v.*, v.x]`
    pub const DUPLICATE_FEATURE_REF: &str = "E0503";
    /// entities `a { key id: int64 }` and `b { key id: string }` in one service
    pub const KEY_COLLISION: &str = "E0504";
    /// `features = []`
    pub const EMPTY_SERVICE: &str = "E0505";
    /// `price_ratio: float64 = shown_prce / item.price` (no such request field)
    pub const UNKNOWN_NAME: &str = "E0506";
    /// `item.price` in a derived feature of a service that does not list it
    pub const FEATURE_NOT_IN_SERVICE: &str = "E0507";
    /// `a: float64 = b * 2` above `b: float64 = ...`
    pub const DERIVED_ORDER: &str = "E0508";
    /// `request { ratio: float64 }` and `derived { ratio: float64 = ... }`
    pub const NAME_CLASH: &str = "E0509";
    /// `x: float64 = other_view.price` in a view
    pub const QUALIFIED_IN_VIEW: &str = "E0510";
}

/// Edit distance (optimal string alignment: insertions, deletions,
/// substitutions and adjacent transpositions), for "did you mean" hints.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev2 = vec![0; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut cur = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                cur[j] = cur[j].min(prev2[j - 2] + 1);
            }
        }
        prev2 = std::mem::replace(&mut prev, cur);
    }
    prev[b.len()]
}

/// Names longer than this get no "did you mean" hint: the edit distance takes
/// time proportional to the product of the lengths, and a name of 100,000
/// characters would otherwise hold up checking for minutes.
const MAX_HINT_NAME: usize = 100;

/// The candidate nearest to `name` within a small edit distance, if any.
pub fn nearest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let len = name.chars().count();
    if len > MAX_HINT_NAME {
        return None;
    }
    // Short names tolerate one edit; longer ones about a third of their length.
    let limit = if len < 3 { 1 } else { (len / 3).max(2) };
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        // The distance is at least the difference in length: skip candidates
        // too long or too short to be within the limit without computing it.
        if c == name || c.chars().count().abs_diff(len) > limit {
            continue;
        }
        let d = edit_distance(name, c);
        if d <= limit && d < len.max(1) && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

/// `did you mean `x`?` for the nearest candidate, if there is one.
pub fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    nearest(name, candidates).map(|c| format!("did you mean `{c}`?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> SourceFile {
        SourceFile { name: "f.fdl".into(), text: text.into() }
    }

    #[test]
    fn line_col_counts_characters() {
        assert_eq!(line_col("ab\ncé d", 7), (2, 4));
        assert_eq!(line_col("ab", 100), (1, 3));
        assert_eq!(line_col("é", 1), (1, 1));
    }

    #[test]
    fn renders_caret_under_span_with_tabs() {
        let f = file("a\n\tbad x\n");
        let d = Diagnostic::new(&f, Span::new(3, 6), "E0001", "m".into()).with_hint("h");
        assert_eq!(
            render(&[d], &[f]),
            "f.fdl:2:2: error[E0001]: m\n  |\n2 |     bad x\n  |     ^^^\n  = hint: h\n"
        );
    }

    #[test]
    fn spans_past_the_end_do_not_panic() {
        let f = file("ab");
        let d = Diagnostic::new(&f, Span::new(50, 60), "E0001", "m".into());
        assert_eq!(d.col, 3);
        assert!(render(&[d], &[f]).contains("^"));
        let f = file("é");
        let d = Diagnostic::new(&f, Span::new(1, 2), "E0001", "m".into());
        render(&[d], &[f]);
    }

    #[test]
    fn suggestions() {
        assert_eq!(nearest("int", ["int64", "string"]), Some("int64"));
        assert_eq!(nearest("flaot64", ["float32", "float64"]), Some("float64"));
        assert_eq!(nearest("x", ["y"]), None);
        assert_eq!(nearest("zzzz", ["string"]), None);
        let long = "a".repeat(100_000);
        let near = format!("{}b", &long[1..]);
        assert_eq!(nearest(&long, [near.as_str()]), None, "no hint (and no quadratic work) for huge names");
        assert_eq!(nearest("ab", [long.as_str()]), None);
    }
}
