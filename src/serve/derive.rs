//! Request-time features: a service's request fields, checked against its
//! `request { ... }` block, and its derived features, computed once per
//! request over every row with the language's evaluator
//! ([`fstore_dsl::derive`]), the same one `fstore eval` runs offline.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryBuilder, BooleanBuilder, Float32Builder, Float64Builder, Int64Builder,
    ListBuilder, RecordBatch, RecordBatchOptions, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{Field, Float32Type, Float64Type, Int64Type, Schema, TimestampMicrosecondType};
use fstore_dsl::{DataType, ElementType};

use crate::error::Error;
use crate::proto::{self, value::Kind, FieldStatus};
use crate::registry::{Derived, Input, Selection};
use crate::serve::lookup::kind_name;
use crate::store::codec::kind_fits;

/// The request's values of each request field of the service (one value
/// standing for every row, or one per row), in the order of its `request`
/// block; empty when the selection has none.
pub(crate) fn check_request_data<'r>(
    request_data: &'r HashMap<String, proto::Values>,
    selection: &Selection,
    service: Option<&str>,
    rows: usize,
) -> Result<Vec<&'r [proto::Value]>, Error> {
    let declared = selection.derived.as_ref().map_or(&[][..], |d| d.service.request.as_slice());
    let list = || declared.iter().map(|f| format!("{} ({})", f.name, f.ty)).collect::<Vec<_>>().join(", ");
    let mut extra: Vec<&str> =
        request_data.keys().map(String::as_str).filter(|k| !declared.iter().any(|f| f.name == *k)).collect();
    if !extra.is_empty() {
        extra.sort_unstable();
        return Err(Error::invalid_argument(match service {
            None => format!(
                "unexpected request field `{}`: request data is for feature services that declare a request block",
                extra[0]
            ),
            Some(name) if declared.is_empty() => {
                format!("unexpected request field `{}`: service `{name}` declares no request fields", extra[0])
            }
            Some(name) => format!(
                "unexpected request field `{}`; service `{name}` takes: {}",
                extra[0],
                list()
            ),
        }));
    }
    let mut out = Vec::with_capacity(declared.len());
    for field in declared {
        let Some(values) = request_data.get(&field.name) else {
            return Err(Error::invalid_argument(format!(
                "missing request field `{}` ({}); service `{}` takes: {}",
                field.name,
                field.ty,
                service.unwrap_or_default(),
                list()
            )));
        };
        let values = values.values.as_slice();
        if values.len() != 1 && values.len() != rows {
            return Err(Error::invalid_argument(format!(
                "request field `{}` has {} values; give one (for every row) or {rows} (one per entity row)",
                field.name,
                values.len()
            )));
        }
        for (i, v) in values.iter().enumerate() {
            if let Some(kind) = &v.kind {
                if !fits(kind, field.ty) {
                    return Err(Error::invalid_argument(format!(
                        "request field `{}` value {i} is {}; `{}` is {}",
                        field.name,
                        kind_name(kind),
                        field.name,
                        field.ty
                    )));
                }
            }
        }
        out.push(values);
    }
    Ok(out)
}

fn fits(kind: &Kind, ty: DataType) -> bool {
    // An int64 is taken for a float, as the language widens int64 to float64
    // (a JSON client's `5`).
    kind_fits(kind, ty) || matches!((kind, ty), (Kind::Int64Value(_), DataType::Float64 | DataType::Float32))
}

/// Compute the derived features of `derived` for `rows` rows from the
/// request fields (`request`, from [`check_request_data`]) and the looked-up
/// `columns`, and append one column per derived feature. A value is PRESENT
/// when computed and NULL_VALUE when null; derived values have no event time.
pub(crate) fn append_derived(
    derived: &Derived,
    request: &[&[proto::Value]],
    columns: &mut Vec<proto::FeatureColumn>,
    rows: usize,
) -> Result<(), Error> {
    let mut fields = Vec::with_capacity(derived.inputs.len());
    let mut arrays = Vec::with_capacity(derived.inputs.len());
    for (name, ty, input) in &derived.inputs {
        let array = match *input {
            Input::Request(i) => match request[i] {
                [one] => to_arrow(std::iter::repeat_n(one, rows), *ty),
                values => to_arrow(values.iter(), *ty),
            },
            Input::Column(c) => to_arrow(columns[c].values.iter(), *ty),
        };
        fields.push(Field::new(name, ty.arrow(), true));
        arrays.push(array);
    }
    let options = RecordBatchOptions::new().with_row_count(Some(rows));
    let batch = RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), arrays, &options)
        .map_err(|e| Error::internal("assembling the inputs of derived features", e))?;
    let outputs = fstore_dsl::derive(&derived.service, &batch)
        .map_err(|e| Error::internal("computing derived features", e))?;
    for (feature, array) in derived.service.derived.iter().zip(outputs) {
        let values = from_arrow(&array, feature.ty);
        let statuses = values
            .iter()
            .map(|v| if v.kind.is_some() { FieldStatus::Present } else { FieldStatus::NullValue } as i32)
            .collect();
        columns.push(proto::FeatureColumn {
            name: feature.name.clone(),
            values,
            statuses,
            event_timestamps_micros: vec![0; rows],
        });
    }
    Ok(())
}

/// The empty columns of a service's derived features, for a request of no rows.
pub(crate) fn empty_columns(derived: &Derived) -> impl Iterator<Item = proto::FeatureColumn> + '_ {
    derived
        .service
        .derived
        .iter()
        .map(|d| proto::FeatureColumn { name: d.name.clone(), ..Default::default() })
}

/// Values of type `ty` (already checked, or read from the store) as an
/// Arrow array of the language's type; a value of another kind is null.
fn to_arrow<'v>(values: impl ExactSizeIterator<Item = &'v proto::Value>, ty: DataType) -> ArrayRef {
    let n = values.len();
    macro_rules! build {
        ($builder:expr, $($pat:pat => $push:expr),+) => {{
            let mut b = $builder;
            for v in values {
                match &v.kind {
                    $($pat => $push(&mut b),)+
                    _ => b.append_null(),
                }
            }
            Arc::new(b.finish()) as ArrayRef
        }};
    }
    macro_rules! list {
        ($inner:expr, $variant:ident, $item:expr) => {{
            let field = Field::new("item", ty_elem(ty).arrow(), true);
            let mut b = ListBuilder::with_capacity($inner, n).with_field(Arc::new(field));
            for v in values {
                match &v.kind {
                    Some(Kind::$variant(l)) => {
                        for x in &l.values {
                            $item(b.values(), x);
                        }
                        b.append(true);
                    }
                    _ => b.append(false),
                }
            }
            Arc::new(b.finish()) as ArrayRef
        }};
    }
    match ty {
        DataType::Bool => {
            build!(BooleanBuilder::with_capacity(n), Some(Kind::BoolValue(x)) => |b: &mut BooleanBuilder| b.append_value(*x))
        }
        DataType::Int64 => {
            build!(Int64Builder::with_capacity(n), Some(Kind::Int64Value(x)) => |b: &mut Int64Builder| b.append_value(*x))
        }
        DataType::Float32 => {
            build!(Float32Builder::with_capacity(n),
                Some(Kind::Float32Value(x)) => |b: &mut Float32Builder| b.append_value(*x),
                Some(Kind::Int64Value(x)) => |b: &mut Float32Builder| b.append_value(*x as f32))
        }
        DataType::Float64 => {
            build!(Float64Builder::with_capacity(n),
                Some(Kind::Float64Value(x)) => |b: &mut Float64Builder| b.append_value(*x),
                Some(Kind::Int64Value(x)) => |b: &mut Float64Builder| b.append_value(*x as f64))
        }
        DataType::String => {
            build!(StringBuilder::with_capacity(n, n * 8), Some(Kind::StringValue(x)) => |b: &mut StringBuilder| b.append_value(x))
        }
        DataType::Bytes => {
            build!(BinaryBuilder::with_capacity(n, n * 8), Some(Kind::BytesValue(x)) => |b: &mut BinaryBuilder| b.append_value(x))
        }
        DataType::Timestamp => {
            build!(TimestampMicrosecondBuilder::with_capacity(n), Some(Kind::TimestampMicros(x)) => |b: &mut TimestampMicrosecondBuilder| b.append_value(*x))
        }
        DataType::Array(ElementType::Float32) => {
            list!(Float32Builder::new(), Float32List, |b: &mut Float32Builder, x: &f32| b.append_value(*x))
        }
        DataType::Array(ElementType::Float64) => {
            list!(Float64Builder::new(), Float64List, |b: &mut Float64Builder, x: &f64| b.append_value(*x))
        }
        DataType::Array(ElementType::Int64) => {
            list!(Int64Builder::new(), Int64List, |b: &mut Int64Builder, x: &i64| b.append_value(*x))
        }
        DataType::Array(ElementType::String) => {
            list!(StringBuilder::new(), StringList, |b: &mut StringBuilder, x: &String| b.append_value(x))
        }
    }
}

fn ty_elem(ty: DataType) -> DataType {
    match ty {
        DataType::Array(e) => e.as_data_type(),
        t => t,
    }
}

/// An evaluated column (of the language's Arrow type for `ty`) as values.
fn from_arrow(array: &ArrayRef, ty: DataType) -> Vec<proto::Value> {
    let value = |kind: Option<Kind>| proto::Value { kind };
    (0..array.len())
        .map(|i| {
            if array.is_null(i) {
                return value(None);
            }
            value(Some(match ty {
                DataType::Bool => Kind::BoolValue(array.as_boolean().value(i)),
                DataType::Int64 => Kind::Int64Value(array.as_primitive::<Int64Type>().value(i)),
                DataType::Float32 => Kind::Float32Value(array.as_primitive::<Float32Type>().value(i)),
                DataType::Float64 => Kind::Float64Value(array.as_primitive::<Float64Type>().value(i)),
                DataType::String => Kind::StringValue(array.as_string::<i32>().value(i).to_string()),
                DataType::Bytes => Kind::BytesValue(array.as_binary::<i32>().value(i).to_vec()),
                DataType::Timestamp => {
                    Kind::TimestampMicros(array.as_primitive::<TimestampMicrosecondType>().value(i))
                }
                DataType::Array(elem) => {
                    let item = array.as_list::<i32>().value(i);
                    match elem {
                        ElementType::Float32 => Kind::Float32List(proto::Float32List {
                            values: item.as_primitive::<Float32Type>().iter().flatten().collect(),
                        }),
                        ElementType::Float64 => Kind::Float64List(proto::Float64List {
                            values: item.as_primitive::<Float64Type>().iter().flatten().collect(),
                        }),
                        ElementType::Int64 => Kind::Int64List(proto::Int64List {
                            values: item.as_primitive::<Int64Type>().iter().flatten().collect(),
                        }),
                        ElementType::String => Kind::StringList(proto::StringList {
                            values: item.as_string::<i32>().iter().flatten().map(str::to_string).collect(),
                        }),
                    }
                }
            }))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn kind_of(ty: DataType) -> impl Strategy<Value = Option<Kind>> {
        let some = match ty {
            DataType::Bool => any::<bool>().prop_map(Kind::BoolValue).boxed(),
            DataType::Int64 => any::<i64>().prop_map(Kind::Int64Value).boxed(),
            DataType::Float32 => (-1e6f32..1e6).prop_map(Kind::Float32Value).boxed(),
            DataType::Float64 => (-1e12f64..1e12).prop_map(Kind::Float64Value).boxed(),
            DataType::String => ".{0,8}".prop_map(Kind::StringValue).boxed(),
            DataType::Bytes => {
                proptest::collection::vec(any::<u8>(), 0..8).prop_map(Kind::BytesValue).boxed()
            }
            DataType::Timestamp => any::<i64>().prop_map(Kind::TimestampMicros).boxed(),
            DataType::Array(ElementType::Float32) => proptest::collection::vec(-1e6f32..1e6, 0..5)
                .prop_map(|values| Kind::Float32List(proto::Float32List { values }))
                .boxed(),
            DataType::Array(ElementType::Float64) => proptest::collection::vec(-1e6f64..1e6, 0..5)
                .prop_map(|values| Kind::Float64List(proto::Float64List { values }))
                .boxed(),
            DataType::Array(ElementType::Int64) => proptest::collection::vec(any::<i64>(), 0..5)
                .prop_map(|values| Kind::Int64List(proto::Int64List { values }))
                .boxed(),
            DataType::Array(ElementType::String) => proptest::collection::vec(".{0,4}", 0..5)
                .prop_map(|values| Kind::StringList(proto::StringList { values }))
                .boxed(),
        };
        proptest::option::weighted(0.8, some)
    }

    proptest! {
        /// Values go to Arrow and back unchanged, nulls included, for every type.
        #[test]
        fn values_round_trip_through_arrow(
            (ty, kinds) in proptest::sample::select(DataType::ALL.to_vec())
                .prop_flat_map(|ty| (Just(ty), proptest::collection::vec(kind_of(ty), 0..6)))
        ) {
            let values: Vec<proto::Value> = kinds.into_iter().map(|kind| proto::Value { kind }).collect();
            let array = to_arrow(values.iter(), ty);
            prop_assert_eq!(array.data_type(), &ty.arrow());
            prop_assert_eq!(from_arrow(&array, ty), values);
        }
    }
}
