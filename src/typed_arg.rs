//! A feature service's request field from command-line text
//! (`--request NAME=VALUE`, for `fstore get` and `fstore bench`), typed by
//! the type the service's description gives the field.

use anyhow::bail;
use fstore::proto::{self, value::Kind};

/// A `--request NAME=VALUE` value as the request field's type.
pub(crate) fn request_value(spec: &str, ty: &str) -> anyhow::Result<proto::Value> {
    let Some((name, text)) = spec.split_once('=') else {
        bail!("--request {spec}: expected NAME=VALUE, e.g. --request device=ios");
    };
    let bad = |what: &str| anyhow::anyhow!("--request {name}={text}: `{name}` is {ty}; expected {what}");
    let list = |what: &str| -> anyhow::Result<Vec<serde_json::Value>> {
        match serde_json::from_str(text) {
            Ok(serde_json::Value::Array(items)) => Ok(items),
            _ => Err(bad(what)),
        }
    };
    let floats = |what: &str| -> anyhow::Result<Vec<f64>> {
        list(what)?.iter().map(|v| v.as_f64().ok_or_else(|| bad(what))).collect()
    };
    let kind = match ty {
        _ if text == "null" => None,
        "bool" => Some(Kind::BoolValue(text.parse().map_err(|_| bad("true or false"))?)),
        "int64" => Some(Kind::Int64Value(text.parse().map_err(|_| bad("an integer"))?)),
        "float32" => Some(Kind::Float32Value(text.parse().map_err(|_| bad("a number"))?)),
        "float64" => Some(Kind::Float64Value(text.parse().map_err(|_| bad("a number"))?)),
        "string" => Some(Kind::StringValue(text.to_string())),
        "bytes" => Some(Kind::BytesValue(text.as_bytes().to_vec())),
        "timestamp" => Some(Kind::TimestampMicros(
            chrono::DateTime::parse_from_rfc3339(text)
                .map_err(|_| bad("an RFC 3339 time"))?
                .timestamp_micros(),
        )),
        "array<float32>" => Some(Kind::Float32List(proto::Float32List {
            values: floats("a list such as [0.1,0.2]")?.into_iter().map(|x| x as f32).collect(),
        })),
        "array<float64>" => {
            Some(Kind::Float64List(proto::Float64List { values: floats("a list such as [0.1,0.2]")? }))
        }
        "array<int64>" => Some(Kind::Int64List(proto::Int64List {
            values: list("a list such as [1,2]")?
                .iter()
                .map(|v| v.as_i64().ok_or_else(|| bad("a list such as [1,2]")))
                .collect::<anyhow::Result<_>>()?,
        })),
        "array<string>" => Some(Kind::StringList(proto::StringList {
            values: list("a list such as [\"a\",\"b\"]")?
                .iter()
                .map(|v| v.as_str().map(str::to_string).ok_or_else(|| bad("a list of strings")))
                .collect::<anyhow::Result<_>>()?,
        })),
        _ => bail!("--request {name}: unknown type {ty}"),
    };
    Ok(proto::Value { kind })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(spec: &str, ty: &str) -> Option<Kind> {
        request_value(spec, ty).unwrap().kind
    }

    #[test]
    fn values_take_the_field_type_and_bad_text_names_the_field() {
        assert_eq!(kind("n=5", "float64"), Some(Kind::Float64Value(5.0)));
        assert_eq!(kind("n=5", "int64"), Some(Kind::Int64Value(5)));
        assert_eq!(kind("d=ios", "string"), Some(Kind::StringValue("ios".into())));
        assert_eq!(kind("d=null", "string"), None);
        assert_eq!(
            kind("q=[1, 0.5]", "array<float32>"),
            Some(Kind::Float32List(proto::Float32List { values: vec![1.0, 0.5] }))
        );
        assert_eq!(
            kind("t=2026-12-01T00:00:00Z", "timestamp"),
            Some(Kind::TimestampMicros(1_796_083_200_000_000))
        );
        let err = request_value("shown_price=cheap", "float64").unwrap_err().to_string();
        assert_eq!(err, "--request shown_price=cheap: `shown_price` is float64; expected a number");
        let err = request_value("q=1,2", "array<float64>").unwrap_err().to_string();
        assert!(err.contains("expected a list such as [0.1,0.2]"), "{err}");
        assert!(request_value("no-equals", "string").is_err());
    }
}
