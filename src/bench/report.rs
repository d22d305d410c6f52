//! The results of benchmark runs: one [`RunReport`] per run, printed as a
//! table and written as JSON with every field named with its unit.

use std::collections::BTreeMap;

use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use hdrhistogram::Histogram;
use serde::Serialize;

use super::driver::Measurement;

/// What a run asked the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunKind {
    /// GetOnlineFeatures.
    Lookup,
    /// The health Check RPC: the cost of gRPC itself.
    Baseline,
}

impl RunKind {
    pub fn label(self) -> &'static str {
        match self {
            RunKind::Lookup => "lookup",
            RunKind::Baseline => "baseline",
        }
    }
}

/// One run at one rate. Serialised as is for `--json`: field names carry
/// their units, and a latency is null when no request succeeded.
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    /// What was run; its fields appear at the top level of the JSON.
    #[serde(flatten)]
    pub setup: RunSetup,
    /// Successful recorded requests per second of measured time.
    pub achieved_rps: f64,
    /// From the first recorded request's scheduled send to the last response
    /// (at least `duration_s`): a server that falls behind stretches it.
    pub measured_s: f64,
    /// Requests scheduled in the recorded window.
    pub requests: u64,
    pub ok: u64,
    pub errors: u64,
    /// gRPC code names and client-side kinds ("client overload", "timeout").
    pub errors_by_kind: BTreeMap<String, u64>,
    /// The first message of each gRPC error code seen.
    pub error_messages: BTreeMap<String, String>,
    /// Latencies of successful requests, from the scheduled send to the response.
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub p99_9_ms: Option<f64>,
    pub max_ms: Option<f64>,
    pub mean_ms: Option<f64>,
    /// Latency of the answers that refused a request for overload
    /// (RESOURCE_EXHAUSTED), from the request's actual send (the client's
    /// own lateness left out): the server's time to say no. Null when none was.
    pub refused_p50_ms: Option<f64>,
    pub refused_p90_ms: Option<f64>,
    pub refused_p99_ms: Option<f64>,
    /// How late the client itself sent requests (99th percentile); already
    /// included in the latencies. Large values mean the client machine, not
    /// the server, was the bottleneck.
    pub send_lag_p99_ms: Option<f64>,
    /// With --compare-baseline, on lookup runs: the baseline's p99 at the same rate.
    pub baseline_p99_ms: Option<f64>,
    /// With --compare-baseline, on lookup runs: p99_ms / baseline_p99_ms.
    pub p99_ratio_to_baseline: Option<f64>,
}

/// What a run was, apart from its measurement.
#[derive(Clone, Debug, Serialize)]
pub struct RunSetup {
    /// Lookups or the no-op baseline.
    pub kind: RunKind,
    pub target: String,
    pub rows_per_request: Option<usize>,
    pub connections: usize,
    pub distribution: String,
    pub seed: u64,
    pub target_rps: f64,
    pub warmup_s: f64,
    pub duration_s: f64,
}

impl RunReport {
    pub fn new(setup: RunSetup, measurement: &Measurement) -> RunReport {
        let measured_s = measurement.measured.as_secs_f64();
        let latency = &measurement.latency_us;
        let quantile = |q: f64| (!latency.is_empty()).then(|| micros_to_ms(latency.value_at_quantile(q)));
        RunReport {
            setup,
            achieved_rps: if measured_s > 0.0 { round3(measurement.ok as f64 / measured_s) } else { 0.0 },
            measured_s: round3(measured_s),
            requests: measurement.requests,
            ok: measurement.ok,
            errors: measurement.errors.values().sum(),
            errors_by_kind: measurement.errors.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            error_messages: measurement
                .error_messages
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            p50_ms: quantile(0.5),
            p90_ms: quantile(0.9),
            p99_ms: quantile(0.99),
            p99_9_ms: quantile(0.999),
            max_ms: (!latency.is_empty()).then(|| micros_to_ms(latency.max())),
            mean_ms: (!latency.is_empty()).then(|| round3(latency.mean() / 1000.0)),
            refused_p50_ms: quantile_of(&measurement.refused_latency_us, 0.5),
            refused_p90_ms: quantile_of(&measurement.refused_latency_us, 0.9),
            refused_p99_ms: p99_of(&measurement.refused_latency_us),
            send_lag_p99_ms: p99_of(&measurement.send_lag_us),
            baseline_p99_ms: None,
            p99_ratio_to_baseline: None,
        }
    }

    /// Records the baseline run at the same rate for comparison.
    pub fn compare_with(&mut self, baseline: &RunReport) {
        self.baseline_p99_ms = baseline.p99_ms;
        self.p99_ratio_to_baseline = match (self.p99_ms, baseline.p99_ms) {
            (Some(lookup), Some(base)) if base > 0.0 => Some((lookup / base * 100.0).round() / 100.0),
            _ => None,
        };
    }

    fn errors_cell(&self) -> String {
        if self.errors == 0 {
            return "0".into();
        }
        let mut kinds: Vec<String> =
            self.errors_by_kind.iter().map(|(kind, n)| format!("{kind} {n}")).collect();
        if let Some(p99) = self.refused_p99_ms {
            kinds.push(format!("refused in p99 {p99:.3} ms"));
        }
        format!("{} ({})", self.errors, kinds.join(", "))
    }
}

fn p99_of(histogram: &Histogram<u64>) -> Option<f64> {
    quantile_of(histogram, 0.99)
}

fn quantile_of(histogram: &Histogram<u64>, q: f64) -> Option<f64> {
    (!histogram.is_empty()).then(|| micros_to_ms(histogram.value_at_quantile(q)))
}

/// Microseconds to milliseconds, keeping microsecond precision.
fn micros_to_ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn ms_cell(ms: Option<f64>) -> String {
    ms.map_or_else(|| "-".into(), |ms| format!("{ms:.3}"))
}

/// The runs as a table for people.
pub fn table(reports: &[RunReport]) -> Table {
    let compared = reports.iter().any(|r| r.p99_ratio_to_baseline.is_some());
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    let mut header = vec![
        "run",
        "target req/s",
        "achieved req/s",
        "requests",
        "errors",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "send lag p99 ms",
    ];
    if compared {
        header.push("p99 / baseline p99");
    }
    table.set_header(header);
    for report in reports {
        let mut row = vec![
            report.setup.kind.label().to_string(),
            format!("{}", report.setup.target_rps),
            format!("{:.1}", report.achieved_rps),
            report.requests.to_string(),
            report.errors_cell(),
            ms_cell(report.p50_ms),
            ms_cell(report.p90_ms),
            ms_cell(report.p99_ms),
            ms_cell(report.p99_9_ms),
            ms_cell(report.max_ms),
            ms_cell(report.send_lag_p99_ms),
        ];
        if compared {
            row.push(report.p99_ratio_to_baseline.map_or_else(|| "-".into(), |r| format!("{r:.2}×")));
        }
        table.add_row(row);
    }
    table
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn measurement(latencies_us: &[u64]) -> Measurement {
        let mut latency_us = Histogram::<u64>::new(3).expect("3 significant digits is valid");
        let mut send_lag_us = Histogram::<u64>::new(3).expect("3 significant digits is valid");
        for &l in latencies_us {
            latency_us.record(l).expect("auto-resizing histograms take any value");
            send_lag_us.record(10).expect("auto-resizing histograms take any value");
        }
        Measurement {
            requests: latencies_us.len() as u64 + 2,
            ok: latencies_us.len() as u64,
            errors: BTreeMap::from([("UNAVAILABLE", 1), ("client overload", 1)]),
            error_messages: BTreeMap::from([("UNAVAILABLE", "connection refused".to_string())]),
            latency_us,
            refused_latency_us: Histogram::<u64>::new(3).expect("3 significant digits is valid"),
            send_lag_us,
            measured: Duration::from_secs(2),
        }
    }

    fn setup(kind: RunKind) -> RunSetup {
        RunSetup {
            kind,
            target: "service ranker_v1".into(),
            rows_per_request: Some(1),
            connections: 4,
            distribution: "uniform".into(),
            seed: 1,
            target_rps: 100.0,
            warmup_s: 2.0,
            duration_s: 2.0,
        }
    }

    #[test]
    fn json_names_every_field_with_its_unit() {
        let latencies: Vec<u64> = (1..=1000).collect();
        let mut report = RunReport::new(setup(RunKind::Lookup), &measurement(&latencies));
        let baseline = RunReport::new(setup(RunKind::Baseline), &measurement(&[100, 200, 250]));
        report.compare_with(&baseline);
        let json = serde_json::to_value([&report]).expect("a report serialises");
        let run = &json[0];
        for field in [
            "kind",
            "target",
            "rows_per_request",
            "connections",
            "distribution",
            "seed",
            "target_rps",
            "achieved_rps",
            "warmup_s",
            "duration_s",
            "measured_s",
            "requests",
            "ok",
            "errors",
            "errors_by_kind",
            "error_messages",
            "p50_ms",
            "p90_ms",
            "p99_ms",
            "p99_9_ms",
            "max_ms",
            "mean_ms",
            "refused_p50_ms",
            "refused_p90_ms",
            "refused_p99_ms",
            "send_lag_p99_ms",
            "baseline_p99_ms",
            "p99_ratio_to_baseline",
        ] {
            assert!(run.get(field).is_some(), "missing {field} in {run}");
        }
        assert_eq!(run["kind"], "lookup");
        assert_eq!(run["achieved_rps"], 500.0, "1000 ok in 2 s");
        assert_eq!(run["errors"], 2);
        assert_eq!(run["errors_by_kind"]["client overload"], 1);
        assert_eq!(run["p50_ms"], 0.5, "microsecond precision");
        assert_eq!(run["max_ms"], 1.0);
        assert_eq!(run["baseline_p99_ms"], 0.25);
        assert_eq!(run["p99_ratio_to_baseline"], 3.96);
    }

    #[test]
    fn a_run_without_successes_has_null_latencies_and_prints() {
        let report = RunReport::new(setup(RunKind::Baseline), &measurement(&[]));
        assert!(report.p99_ms.is_none() && report.max_ms.is_none());
        assert_eq!(report.achieved_rps, 0.0);
        let printed = table(&[report]).to_string();
        assert!(printed.contains("UNAVAILABLE 1"), "{printed}");
    }
}
