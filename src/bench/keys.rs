//! Entity keys for benchmark requests: the `--key` specs, their types, and the
//! key columns drawn for each request.
//!
//! A spec is one of
//! - `user_id=1..100000`: int64 keys from 1 (inclusive) to 100000 (exclusive);
//! - `item_id=sku-{0000..0400}`: strings `sku-0000` … `sku-0399`, the number
//!   zero-padded to the width of the first bound as written;
//! - `item_id=sku-0001,sku-0002`: a list of values (one is fine).
//!
//! The same key given again adds to its list, so that
//! `--key item_id=sku-{0000..0400}` left unquoted, which bash expands into
//! `item_id=sku-0000 item_id=sku-0001 …`, means what was meant (bash includes
//! the end, 0400, which the template excludes).

use std::collections::HashMap;
use std::fmt;

use anyhow::{bail, Context};

use super::sampler::{Distribution, IndexSampler, Rng};
use fstore::proto::{self, value::Kind};

/// The default range of an int64 key of a service that `--key` leaves out.
pub const DEFAULT_INT_RANGE: (i64, i64) = (1, 1000);

/// The type of a key column, as `ListFeatureServices` spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyType {
    Int64,
    String,
}

impl KeyType {
    pub fn parse(spelling: &str) -> anyhow::Result<KeyType> {
        match spelling {
            "int64" => Ok(KeyType::Int64),
            "string" => Ok(KeyType::String),
            other => bail!("key type {other:?} is not supported by the load generator (int64 or string)"),
        }
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyType::Int64 => "int64",
            KeyType::String => "string",
        })
    }
}

/// A `--key NAME=SPEC` as written, before its type is known.
#[derive(Clone, Debug, PartialEq)]
pub struct KeySpec {
    pub name: String,
    pub values: SpecValues,
}

#[derive(Clone, Debug, PartialEq)]
pub enum SpecValues {
    /// `A..B`
    IntRange { start: i64, end: i64 },
    /// `PREFIX{A..B}SUFFIX`
    Template { prefix: String, suffix: String, width: usize, start: i64, end: i64 },
    /// Values as written, typed once the key's type is known.
    List(Vec<String>),
}

impl std::str::FromStr for KeySpec {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<KeySpec> {
        let example = "e.g. --key user_id=1..100000 or --key item_id=sku-{0000..0400}";
        let Some((name, spec)) = text.split_once('=') else {
            bail!("--key {text}: expected NAME=SPEC, {example}");
        };
        if name.is_empty() || spec.is_empty() {
            bail!("--key {text}: expected NAME=SPEC, {example}");
        }
        let values = if let Some((open, rest)) = spec.split_once('{') {
            let Some((range, suffix)) = rest.split_once('}') else {
                bail!("--key {text}: the template has `{{` without `}}`, {example}");
            };
            let (start, end) = parse_range(range)
                .with_context(|| format!("--key {text}: the template's range {{{range}}}"))?;
            if !range.starts_with(|c: char| c.is_ascii_digit()) {
                bail!("--key {text}: a template's numbers are non-negative, e.g. {{0000..0400}}");
            }
            let width = range.split_once("..").map_or(0, |(first, _)| first.len());
            SpecValues::Template { prefix: open.to_string(), suffix: suffix.to_string(), width, start, end }
        } else if spec.contains("..") {
            let (start, end) = parse_range(spec).with_context(|| format!("--key {text}"))?;
            SpecValues::IntRange { start, end }
        } else {
            let values: Vec<String> = spec.split(',').map(str::to_string).collect();
            if values.iter().any(String::is_empty) {
                bail!("--key {text}: an empty value in the list");
            }
            SpecValues::List(values)
        };
        Ok(KeySpec { name: name.to_string(), values })
    }
}

/// Joins the lists of a key given more than once (see the module comment);
/// a range or template given twice is an error, as its meaning would be unclear.
pub fn merge_repeated(specs: &[KeySpec]) -> anyhow::Result<Vec<KeySpec>> {
    let mut merged: Vec<KeySpec> = Vec::new();
    for spec in specs {
        match merged.iter_mut().find(|m| m.name == spec.name) {
            None => merged.push(spec.clone()),
            Some(KeySpec { values: SpecValues::List(list), .. }) => match &spec.values {
                SpecValues::List(more) => list.extend(more.iter().cloned()),
                _ => bail!("--key {} is given twice, once as a range or template", spec.name),
            },
            Some(_) => bail!("--key {} is given twice, once as a range or template", spec.name),
        }
    }
    Ok(merged)
}

/// `A..B` with A < B: start inclusive, end exclusive.
fn parse_range(range: &str) -> anyhow::Result<(i64, i64)> {
    let Some((start, end)) = range.split_once("..") else {
        bail!("expected START..END, e.g. 1..100000");
    };
    let start: i64 =
        start.trim().parse().with_context(|| format!("range start {start:?} is not an integer"))?;
    let end: i64 = end.trim().parse().with_context(|| format!("range end {end:?} is not an integer"))?;
    if start >= end {
        bail!("range {start}..{end} is empty (the end is exclusive)");
    }
    Ok((start, end))
}

/// One key column of every request: where its values come from and how they
/// are drawn.
#[derive(Clone, Debug)]
pub struct KeyColumn {
    pub name: String,
    pub key_type: KeyType,
    values: ColumnValues,
    /// How many distinct values the column holds.
    count: u64,
    sampler: IndexSampler,
}

#[derive(Clone, Debug)]
enum ColumnValues {
    Int { start: i64 },
    Text { prefix: String, suffix: String, width: usize, start: i64 },
    List(Vec<Kind>),
}

impl KeyColumn {
    /// Gives `spec` its type: the server's when known (`--service`), else the
    /// one the spec's form implies.
    pub fn new(
        spec: &KeySpec,
        known: Option<KeyType>,
        distribution: Distribution,
    ) -> anyhow::Result<KeyColumn> {
        let name = &spec.name;
        let (key_type, values, count) = match (&spec.values, known) {
            (SpecValues::IntRange { start, end }, None | Some(KeyType::Int64)) => {
                (KeyType::Int64, ColumnValues::Int { start: *start }, range_len(*start, *end))
            }
            (SpecValues::IntRange { start, end }, Some(KeyType::String)) => (
                KeyType::String,
                ColumnValues::Text { prefix: String::new(), suffix: String::new(), width: 0, start: *start },
                range_len(*start, *end),
            ),
            (SpecValues::Template { prefix, suffix, width, start, end }, None | Some(KeyType::String)) => (
                KeyType::String,
                ColumnValues::Text {
                    prefix: prefix.clone(),
                    suffix: suffix.clone(),
                    width: *width,
                    start: *start,
                },
                range_len(*start, *end),
            ),
            (SpecValues::Template { .. }, Some(KeyType::Int64)) => {
                bail!("--key {name}: the key is int64, but the spec is a string template; use START..END")
            }
            (SpecValues::List(texts), known) => {
                // Untyped lists are int64 when every value is an integer.
                let all_ints = texts.iter().all(|t| t.parse::<i64>().is_ok());
                let key_type = known.unwrap_or(if all_ints { KeyType::Int64 } else { KeyType::String });
                let values = texts
                    .iter()
                    .map(|text| match key_type {
                        KeyType::Int64 => text
                            .parse()
                            .map(Kind::Int64Value)
                            .with_context(|| format!("--key {name}={text}: the key is int64")),
                        KeyType::String => Ok(Kind::StringValue(text.clone())),
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                let count = values.len() as u64;
                (key_type, ColumnValues::List(values), count)
            }
        };
        Ok(KeyColumn {
            name: name.clone(),
            key_type,
            values,
            count,
            sampler: IndexSampler::new(distribution, count),
        })
    }

    /// The default column of an int64 key that `--key` leaves out.
    pub fn default_int(name: &str, distribution: Distribution) -> KeyColumn {
        let (start, end) = DEFAULT_INT_RANGE;
        KeyColumn {
            name: name.to_string(),
            key_type: KeyType::Int64,
            values: ColumnValues::Int { start },
            count: range_len(start, end),
            sampler: IndexSampler::new(distribution, range_len(start, end)),
        }
    }

    /// The value at `index` of the column's range (index 0 is the first,
    /// which Zipf makes the hottest).
    pub fn value_at(&self, index: u64) -> Kind {
        match &self.values {
            ColumnValues::Int { start } => Kind::Int64Value(start.wrapping_add(index as i64)),
            ColumnValues::Text { prefix, suffix, width, start } => {
                let number = start.wrapping_add(index as i64);
                Kind::StringValue(format!("{prefix}{number:0width$}{suffix}"))
            }
            // The index is below the list's length: the sampler draws in [0, count).
            ColumnValues::List(values) => values[index as usize].clone(),
        }
    }

    pub fn draw(&self, rng: &mut Rng) -> Kind {
        self.value_at(self.sampler.sample(rng))
    }
}

/// The column as a `--key` spec would give it, with its type.
impl fmt::Display for KeyColumn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = &self.name;
        let end = |start: i64| i128::from(start) + i128::from(self.count);
        match &self.values {
            ColumnValues::Int { start } => write!(f, "{name}={start}..{}", end(*start))?,
            ColumnValues::Text { prefix, suffix, width, start } => {
                write!(f, "{name}={prefix}{{{start:0width$}..{:0width$}}}{suffix}", end(*start))?
            }
            ColumnValues::List(values) => {
                let text = |kind: &Kind| match kind {
                    Kind::Int64Value(v) => v.to_string(),
                    Kind::StringValue(v) => v.clone(),
                    other => format!("{other:?}"),
                };
                match values.as_slice() {
                    [] => write!(f, "{name}=")?,
                    [a] => write!(f, "{name}={}", text(a))?,
                    [a, b] => write!(f, "{name}={},{}", text(a), text(b))?,
                    [first, .., last] => {
                        write!(f, "{name}={},…,{} ({} values)", text(first), text(last), values.len())?
                    }
                }
            }
        }
        write!(f, " ({})", self.key_type)
    }
}

fn range_len(start: i64, end: i64) -> u64 {
    // Checked when parsed: start < end, so the difference is positive and
    // fits in u64 even for the widest i64 range.
    (i128::from(end) - i128::from(start)) as u64
}

/// Draws the entity columns of one request: `rows` values per key column.
pub fn draw_entities(columns: &[KeyColumn], rows: usize, rng: &mut Rng) -> HashMap<String, proto::Values> {
    columns
        .iter()
        .map(|column| {
            let values = (0..rows).map(|_| proto::Value { kind: Some(column.draw(rng)) }).collect();
            (column.name.clone(), proto::Values { values })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> KeySpec {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e:#}"))
    }

    fn column(text: &str, known: Option<KeyType>) -> KeyColumn {
        KeyColumn::new(&spec(text), known, Distribution::Uniform).unwrap_or_else(|e| panic!("{text}: {e:#}"))
    }

    #[test]
    fn int_ranges_are_start_inclusive_end_exclusive() {
        assert_eq!(spec("user_id=1..100000").values, SpecValues::IntRange { start: 1, end: 100000 });
        assert_eq!(spec("delta=-5..5").values, SpecValues::IntRange { start: -5, end: 5 });
        let c = column("user_id=1..4", None);
        assert_eq!(c.to_string(), "user_id=1..4 (int64)");
        assert_eq!(c.key_type, KeyType::Int64);
        assert_eq!(c.value_at(0), Kind::Int64Value(1));
        assert_eq!(c.value_at(2), Kind::Int64Value(3));
        let mut rng = Rng::new(1);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..1000 {
            match c.draw(&mut rng) {
                Kind::Int64Value(v) => seen.insert(v),
                other => panic!("unexpected {other:?}"),
            };
        }
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), vec![1, 2, 3], "4 is past the exclusive end");
    }

    #[test]
    fn templates_pad_to_the_width_of_the_first_number() {
        assert_eq!(
            spec("item_id=sku-{0000..0400}").values,
            SpecValues::Template {
                prefix: "sku-".into(),
                suffix: String::new(),
                width: 4,
                start: 0,
                end: 400
            }
        );
        let c = column("item_id=sku-{0000..0400}", None);
        assert_eq!(c.to_string(), "item_id=sku-{0000..0400} (string)");
        assert_eq!(c.key_type, KeyType::String);
        assert_eq!(c.value_at(0), Kind::StringValue("sku-0000".into()));
        assert_eq!(c.value_at(399), Kind::StringValue("sku-0399".into()));
        let c = column("item_id=a{7..12}.b", Some(KeyType::String));
        assert_eq!(c.value_at(0), Kind::StringValue("a7.b".into()));
        assert_eq!(c.value_at(4), Kind::StringValue("a11.b".into()));
        let c = column("item_id=u{08..1000}", None);
        assert_eq!(c.value_at(0), Kind::StringValue("u08".into()));
        assert_eq!(c.value_at(200), Kind::StringValue("u208".into()), "wider numbers are not cut");
    }

    #[test]
    fn the_servers_type_wins_over_the_specs_form() {
        let c = column("item_id=1..3", Some(KeyType::String));
        assert_eq!(c.value_at(1), Kind::StringValue("2".into()));
        assert_eq!(column("user_id=42", Some(KeyType::Int64)).value_at(0), Kind::Int64Value(42));
        assert_eq!(column("user_id=42,43", None).value_at(1), Kind::Int64Value(43));
        assert_eq!(column("item_id=42,x", None).value_at(0), Kind::StringValue("42".into()));
        assert_eq!(column("item_id=42", Some(KeyType::String)).value_at(0), Kind::StringValue("42".into()));
        assert_eq!(column("item_id=sku-1", None).value_at(0), Kind::StringValue("sku-1".into()));
        let template_for_int =
            KeyColumn::new(&spec("user_id=u{0..9}"), Some(KeyType::Int64), Distribution::Uniform);
        assert!(template_for_int.is_err());
        let text_for_int = KeyColumn::new(&spec("user_id=abc"), Some(KeyType::Int64), Distribution::Uniform);
        assert!(text_for_int.is_err());
    }

    #[test]
    fn bad_specs_are_refused() {
        for bad in [
            "user_id",
            "=1..2",
            "user_id=",
            "user_id=5..5",
            "user_id=9..1",
            "user_id=a..b",
            "item_id=sku-{0000..0400",
            "item_id=sku-{..4}",
            "item_id=sku-{-1..4}",
            "item_id=a,,b",
        ] {
            assert!(bad.parse::<KeySpec>().is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn a_repeated_key_adds_to_its_list_as_bash_brace_expansion_does() {
        // What `--key item_id=sku-{0..3}` becomes in bash, unquoted.
        let expanded: Vec<KeySpec> = ["item_id=sku-0", "item_id=sku-1", "user_id=7", "item_id=sku-2"]
            .iter()
            .map(|t| spec(t))
            .collect();
        let merged = merge_repeated(&expanded).expect("lists merge");
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0].values, SpecValues::List(vec!["sku-0".into(), "sku-1".into(), "sku-2".into()]));
        let c = KeyColumn::new(&merged[0], None, Distribution::Uniform).expect("a string list");
        assert_eq!(c.to_string(), "item_id=sku-0,…,sku-2 (3 values) (string)");
        let mut rng = Rng::new(9);
        let seen: std::collections::BTreeSet<String> = (0..300)
            .map(|_| match c.draw(&mut rng) {
                Kind::StringValue(s) => s,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(seen.len(), 3, "every listed value is drawn");
        assert!(merge_repeated(&[spec("user_id=1..5"), spec("user_id=7")]).is_err());
        assert!(merge_repeated(&[spec("user_id=7"), spec("user_id=1..5")]).is_err());
    }

    #[test]
    fn entities_carry_one_value_per_row_for_every_column() {
        let columns = vec![column("user_id=1..10", None), column("item_id=sku-{00..20}", None)];
        let mut rng = Rng::new(5);
        let entities = draw_entities(&columns, 3, &mut rng);
        assert_eq!(entities.len(), 2);
        assert!(entities.values().all(|v| v.values.len() == 3));
        let again = draw_entities(&columns, 3, &mut Rng::new(5));
        assert_eq!(entities, again, "the same seed draws the same keys");
    }
}
