//! Random aggregate states, shared by the aggregate tests.

use fstore_dsl::agg::{Partial, Scalar, State};
use proptest::prelude::*;

pub fn scalar() -> impl Strategy<Value = Scalar> {
    prop_oneof![
        any::<bool>().prop_map(Scalar::Bool),
        any::<i64>().prop_map(Scalar::Int64),
        any::<f32>().prop_map(Scalar::Float32),
        any::<f64>().prop_map(Scalar::Float64),
        ".{0,8}".prop_map(Scalar::String),
        prop::collection::vec(any::<u8>(), 0..8).prop_map(Scalar::Bytes),
        any::<i64>().prop_map(Scalar::Timestamp),
        prop::collection::vec(any::<f32>(), 0..4).prop_map(Scalar::Float32List),
        prop::collection::vec(any::<f64>(), 0..4).prop_map(Scalar::Float64List),
        prop::collection::vec(any::<i64>(), 0..4).prop_map(Scalar::Int64List),
        prop::collection::vec(".{0,4}", 0..4).prop_map(Scalar::StringList),
    ]
}

pub fn partial() -> impl Strategy<Value = Partial> {
    let stamped = || (any::<i64>(), any::<u64>(), scalar());
    prop_oneof![
        Just(Partial::Empty),
        any::<u64>().prop_map(Partial::Count),
        (any::<i128>(), any::<u64>(), any::<bool>()).prop_map(|(sum, n, overflow)| Partial::SumInt {
            sum,
            n,
            overflow
        }),
        (any::<f64>(), any::<u64>()).prop_map(|(sum, n)| Partial::SumFloat { sum, n }),
        (any::<f64>(), any::<u64>()).prop_map(|(sum, n)| Partial::Avg { sum, n }),
        prop::option::of(scalar()).prop_map(Partial::Min),
        prop::option::of(scalar()).prop_map(Partial::Max),
        prop::option::of(stamped()).prop_map(Partial::First),
        prop::option::of(stamped()).prop_map(Partial::Last),
    ]
}

pub fn state() -> impl Strategy<Value = State> {
    prop::collection::vec(partial(), 0..8).prop_map(State)
}
