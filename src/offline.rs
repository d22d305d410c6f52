//! `fstore eval`: a service's derived features computed offline, over a
//! Parquet file of request fields and feature values as a training pipeline
//! has them, through the evaluator the server runs at request time
//! ([`fstore_dsl::derive`]), so that training and serving compute alike.
//!
//! The input holds a column per request field (by name) and per service
//! feature (named `view.feature`) that the derived features read; other
//! columns are carried through. Each column is read as the language type the
//! definitions give it, by the same conversions as Parquet ingest
//! ([`crate::ingest::convert`]); a value that does not fit is null, and
//! counted. The output is the input with one column per derived feature
//! appended, in declared order.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use arrow::array::{ArrayRef, RecordBatch, RecordBatchReader};
use arrow::datatypes::{Field, Schema};
use fstore_dsl::plan::{Plan, Service};
use fstore_dsl::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;

use crate::ingest::convert;

/// What one run read and wrote.
#[derive(Debug, Default)]
pub struct EvalReport {
    pub rows: usize,
    pub derived: Vec<String>,
    /// Input values that did not fit their column's type and were read as
    /// null: (column, count, first reason with its row).
    pub misfits: Vec<(String, usize, String)>,
}

/// The columns a service's derived features read, with their types.
pub fn inputs(plan: &Plan, service: &Service) -> Vec<(String, DataType)> {
    service
        .derived_inputs()
        .into_iter()
        .filter_map(|name| {
            if let Some(f) = service.request.iter().find(|f| f.name == name) {
                return Some((name.to_string(), f.ty));
            }
            let (view, feature) = name.split_once('.')?;
            let (_, v) = plan.view(view)?;
            let ty = v.feature_names().into_iter().find(|(n, _)| *n == feature)?.1;
            Some((name.to_string(), ty))
        })
        .collect()
}

/// Compute the derived features of service `name` for every row of `input`
/// and write the result to `out`.
pub fn eval_parquet(plan: &Plan, name: &str, input: &Path, out: &Path) -> anyhow::Result<EvalReport> {
    let Some((_, service)) = plan.service(name) else {
        let names: Vec<&str> = plan.services.iter().map(|s| s.name.as_str()).collect();
        bail!("unknown feature service `{name}`; known services: {}", names.join(", "));
    };
    if service.derived.is_empty() {
        bail!("service `{name}` has no derived features: there is nothing to compute");
    }
    let needed = inputs(plan, service);
    let file = File::open(input).with_context(|| format!("opening {}", input.display()))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .with_context(|| format!("{} is not a readable Parquet file", input.display()))?
        .build()?;
    let in_schema = reader.schema();
    for (column, ty) in &needed {
        if in_schema.field_with_name(column).is_err() {
            let have: Vec<&str> = in_schema.fields().iter().map(|f| f.name().as_str()).collect();
            bail!(
                "{} has no column `{column}` ({ty}), which the derived features of `{name}` read; its columns: {}",
                input.display(),
                have.join(", ")
            );
        }
    }
    for d in &service.derived {
        if in_schema.field_with_name(&d.name).is_ok() {
            bail!(
                "{} already has a column `{}`, the name of a derived feature of `{name}`; drop or rename it first",
                input.display(),
                d.name
            );
        }
    }
    let mut fields: Vec<Arc<Field>> = in_schema.fields().iter().cloned().collect();
    fields.extend(service.derived.iter().map(|d| Arc::new(Field::new(&d.name, d.ty.arrow(), true))));
    let out_schema = Arc::new(Schema::new(fields));
    let tmp = out.with_extension("parquet.partial");
    let mut writer = ArrowWriter::try_new(
        File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?,
        out_schema.clone(),
        None,
    )?;
    let mut report = EvalReport {
        derived: service.derived.iter().map(|d| d.name.clone()).collect(),
        ..Default::default()
    };
    for batch in reader {
        let batch = batch.with_context(|| format!("reading {}", input.display()))?;
        let first_row = report.rows;
        let mut input_fields = Vec::with_capacity(needed.len());
        let mut input_columns: Vec<ArrayRef> = Vec::with_capacity(needed.len());
        for (column, ty) in &needed {
            let array = batch.column_by_name(column).context("a column the schema has")?;
            let (converted, misfits) = convert::convert(array, *ty).map_err(|e| {
                anyhow::anyhow!(
                    "column `{column}` of {} is {}, which cannot be read as {ty}",
                    input.display(),
                    e.found
                )
            })?;
            if let Some((row, reason)) = misfits.first() {
                match report.misfits.iter_mut().find(|(c, _, _)| c == column) {
                    Some(m) => m.1 += misfits.len(),
                    None => report.misfits.push((
                        column.clone(),
                        misfits.len(),
                        format!("row {}: {reason}", first_row + row),
                    )),
                }
            }
            input_fields.push(Field::new(column, ty.arrow(), true));
            input_columns.push(converted);
        }
        let options = arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        let inputs =
            RecordBatch::try_new_with_options(Arc::new(Schema::new(input_fields)), input_columns, &options)?;
        let derived = fstore_dsl::derive(service, &inputs).context("computing derived features")?;
        let mut columns = batch.columns().to_vec();
        columns.extend(derived);
        writer.write(&RecordBatch::try_new(out_schema.clone(), columns)?)?;
        report.rows += batch.num_rows();
    }
    writer.close()?;
    std::fs::rename(&tmp, out).with_context(|| format!("moving the result to {}", out.display()))?;
    Ok(report)
}
