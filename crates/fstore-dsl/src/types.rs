//! The value types of the language and their Arrow representation.
//!
//! Every stage after the checker (evaluator, ingest, store, serving) agrees on
//! one Arrow type per language type, given by [`DataType::arrow`]. Ingest
//! converts source columns into exactly these types before evaluation.

use std::fmt;

use arrow::datatypes::{DataType as ArrowType, Field, TimeUnit};

/// Element types allowed inside `array<T>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ElementType {
    Float32,
    Float64,
    Int64,
    String,
}

/// A type of the language, as spelt in definitions (`int64`, `array<float32>`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DataType {
    Bool,
    Int64,
    Float32,
    Float64,
    String,
    Bytes,
    /// Microseconds since the Unix epoch, UTC.
    Timestamp,
    Array(ElementType),
}

impl ElementType {
    pub fn as_data_type(self) -> DataType {
        match self {
            ElementType::Float32 => DataType::Float32,
            ElementType::Float64 => DataType::Float64,
            ElementType::Int64 => DataType::Int64,
            ElementType::String => DataType::String,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ElementType::Float32 => "float32",
            ElementType::Float64 => "float64",
            ElementType::Int64 => "int64",
            ElementType::String => "string",
        }
    }
}

impl DataType {
    /// Every type of the language, in the order the reference lists them.
    pub const ALL: [DataType; 11] = [
        DataType::Bool,
        DataType::Int64,
        DataType::Float32,
        DataType::Float64,
        DataType::String,
        DataType::Bytes,
        DataType::Timestamp,
        DataType::Array(ElementType::Float32),
        DataType::Array(ElementType::Float64),
        DataType::Array(ElementType::Int64),
        DataType::Array(ElementType::String),
    ];

    /// The Arrow type that carries values of this type through evaluation.
    ///
    /// `string` is `Utf8`, `bytes` is `Binary`, `timestamp` is
    /// `Timestamp(Microsecond, None)` holding UTC epoch microseconds, and
    /// `array<T>` is `List` of nullable `T` with the item field named "item".
    pub fn arrow(self) -> ArrowType {
        match self {
            DataType::Bool => ArrowType::Boolean,
            DataType::Int64 => ArrowType::Int64,
            DataType::Float32 => ArrowType::Float32,
            DataType::Float64 => ArrowType::Float64,
            DataType::String => ArrowType::Utf8,
            DataType::Bytes => ArrowType::Binary,
            DataType::Timestamp => ArrowType::Timestamp(TimeUnit::Microsecond, None),
            DataType::Array(elem) => {
                ArrowType::List(std::sync::Arc::new(Field::new("item", elem.as_data_type().arrow(), true)))
            }
        }
    }

    /// Parse a type name as spelt in the language (`"array<float32>"`).
    pub fn parse(name: &str) -> Option<DataType> {
        let name = name.trim();
        Some(match name {
            "bool" => DataType::Bool,
            "int64" => DataType::Int64,
            "float32" => DataType::Float32,
            "float64" => DataType::Float64,
            "string" => DataType::String,
            "bytes" => DataType::Bytes,
            "timestamp" => DataType::Timestamp,
            _ => {
                let inner = name.strip_prefix("array<")?.strip_suffix('>')?.trim();
                DataType::Array(match inner {
                    "float32" => ElementType::Float32,
                    "float64" => ElementType::Float64,
                    "int64" => ElementType::Int64,
                    "string" => ElementType::String,
                    _ => return None,
                })
            }
        })
    }

    pub fn is_numeric(self) -> bool {
        matches!(self, DataType::Int64 | DataType::Float32 | DataType::Float64)
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataType::Bool => f.write_str("bool"),
            DataType::Int64 => f.write_str("int64"),
            DataType::Float32 => f.write_str("float32"),
            DataType::Float64 => f.write_str("float64"),
            DataType::String => f.write_str("string"),
            DataType::Bytes => f.write_str("bytes"),
            DataType::Timestamp => f.write_str("timestamp"),
            DataType::Array(e) => write!(f, "array<{}>", e.name()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for t in DataType::ALL {
            assert_eq!(DataType::parse(&t.to_string()), Some(t));
        }
        assert_eq!(DataType::parse("array<bool>"), None);
        assert_eq!(DataType::parse("int"), None);
    }
}
