//! A latency-versus-throughput chart of a sweep, as a self-contained SVG
//! written by hand: x is the achieved request rate, y the latency in
//! milliseconds (logarithmic when the values span more than a decade), one
//! line per percentile.

use std::fmt::Write as _;

use super::report::{RunKind, RunReport};

const WIDTH: f64 = 860.0;
const HEIGHT: f64 = 520.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 200.0;
const TOP: f64 = 60.0;
const BOTTOM: f64 = 70.0;

/// One line of the chart.
#[derive(Clone, Debug)]
pub struct Series {
    pub name: String,
    pub colour: &'static str,
    pub dashed: bool,
    /// (achieved requests/s, latency ms), in run order.
    pub points: Vec<(f64, f64)>,
}

/// The series of a set of runs: p50, p99 and p99.9 of the lookups (or of the
/// baseline when only the baseline ran), and the baseline's p99 beside lookups.
pub fn series_of(reports: &[RunReport]) -> Vec<Series> {
    let lookups: Vec<&RunReport> = reports.iter().filter(|r| r.setup.kind == RunKind::Lookup).collect();
    let baselines: Vec<&RunReport> = reports.iter().filter(|r| r.setup.kind == RunKind::Baseline).collect();
    let main = if lookups.is_empty() { &baselines } else { &lookups };
    let line =
        |name: &str, colour, dashed, runs: &[&RunReport], pick: fn(&RunReport) -> Option<f64>| Series {
            name: name.to_string(),
            colour,
            dashed,
            points: runs.iter().filter_map(|r| pick(r).map(|y| (r.achieved_rps, y))).collect(),
        };
    let prefix = if lookups.is_empty() { "baseline " } else { "" };
    let mut series = vec![
        line(&format!("{prefix}p50"), "#1f77b4", false, main, |r| r.p50_ms),
        line(&format!("{prefix}p99"), "#d62728", false, main, |r| r.p99_ms),
        line(&format!("{prefix}p99.9"), "#9467bd", false, main, |r| r.p99_9_ms),
    ];
    if !lookups.is_empty() && !baselines.is_empty() {
        series.push(line("baseline p99", "#7f7f7f", true, &baselines, |r| r.p99_ms));
    }
    series
}

/// The chart's title: what was asked, and how many rows per request.
pub fn title_of(reports: &[RunReport]) -> String {
    let lookup = reports.iter().find(|r| r.setup.kind == RunKind::Lookup);
    match lookup {
        Some(run) => {
            let rows = run.setup.rows_per_request.unwrap_or(1);
            format!(
                "fstore latency vs throughput: {}, {rows} row{} per request",
                run.setup.target,
                if rows == 1 { "" } else { "s" }
            )
        }
        None => "fstore latency vs throughput: gRPC health check (baseline)".to_string(),
    }
}

/// The whole SVG document.
pub fn render(title: &str, series: &[Series]) -> String {
    let points = series.iter().flat_map(|s| s.points.iter());
    let max_x = points.clone().map(|p| p.0).fold(0.0, f64::max);
    let min_y = points.clone().map(|p| p.1).filter(|y| *y > 0.0).fold(f64::INFINITY, f64::min);
    let max_y = points.map(|p| p.1).fold(0.0, f64::max);
    // 5 % headroom so that the last run's dot does not sit on the frame.
    let x_axis = Axis::linear(0.0, if max_x > 0.0 { max_x * 1.05 } else { 1.0 });
    let y_axis = if min_y.is_finite() && max_y / min_y > 10.0 {
        Axis::log(min_y, max_y)
    } else {
        Axis::linear(0.0, if max_y > 0.0 { max_y } else { 1.0 })
    };
    let plot_width = WIDTH - LEFT - RIGHT;
    let plot_height = HEIGHT - TOP - BOTTOM;
    let to_x = |x: f64| LEFT + x_axis.fraction(x) * plot_width;
    let to_y = |y: f64| TOP + (1.0 - y_axis.fraction(y)) * plot_height;

    let mut svg = String::new();
    // Writing to a String cannot fail, hence the ignored results.
    let _ = writeln!(
        svg,
        r#"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">
<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="white"/>
<text x="{:.1}" y="30" text-anchor="middle" font-size="15" font-weight="bold">{}</text>"#,
        LEFT + plot_width / 2.0,
        escape(title)
    );
    // Grid and ticks.
    let _ = writeln!(svg, r##"<g class="x-axis" stroke="#dddddd">"##);
    for tick in x_axis.ticks() {
        let x = to_x(tick);
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}"/><text x="{x:.1}" y="{:.1}" text-anchor="middle" stroke="none" fill="#333333">{}</text>"##,
            TOP + plot_height,
            TOP + plot_height + 18.0,
            format_tick(tick)
        );
    }
    let _ = writeln!(svg, "</g>");
    let _ = writeln!(svg, r##"<g class="y-axis" stroke="#dddddd">"##);
    for tick in y_axis.ticks() {
        let y = to_y(tick);
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}"/><text x="{:.1}" y="{:.1}" text-anchor="end" stroke="none" fill="#333333">{}</text>"##,
            LEFT + plot_width,
            LEFT - 8.0,
            y + 4.0,
            format_tick(tick)
        );
    }
    let _ = writeln!(svg, "</g>");
    let _ = writeln!(
        svg,
        r##"<rect x="{LEFT}" y="{TOP}" width="{plot_width}" height="{plot_height}" fill="none" stroke="#333333"/>
<text x="{:.1}" y="{:.1}" text-anchor="middle">achieved requests/s</text>
<text x="20" y="{:.1}" text-anchor="middle" transform="rotate(-90 20 {:.1})">latency (ms{})</text>"##,
        LEFT + plot_width / 2.0,
        HEIGHT - 20.0,
        TOP + plot_height / 2.0,
        TOP + plot_height / 2.0,
        if y_axis.log { ", log scale" } else { "" }
    );
    // The lines, each with a dot per run.
    for line in series.iter().filter(|s| !s.points.is_empty()) {
        let path: Vec<String> =
            line.points.iter().map(|&(x, y)| format!("{:.1},{:.1}", to_x(x), to_y(y))).collect();
        let dash = if line.dashed { r#" stroke-dasharray="6 4""# } else { "" };
        let _ = writeln!(
            svg,
            r#"<g class="series" data-name="{}"><polyline fill="none" stroke="{}" stroke-width="2"{dash} points="{}"/>"#,
            escape(&line.name),
            line.colour,
            path.join(" ")
        );
        for &(x, y) in &line.points {
            let _ = writeln!(
                svg,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{}"><title>{}: {y:.3} ms at {x:.0} req/s</title></circle>"#,
                to_x(x),
                to_y(y),
                line.colour,
                escape(&line.name)
            );
        }
        let _ = writeln!(svg, "</g>");
    }
    // The legend, right of the plot.
    let legend_x = LEFT + plot_width + 16.0;
    let _ = writeln!(svg, r#"<g class="legend">"#);
    for (i, line) in series.iter().enumerate() {
        let y = TOP + 10.0 + i as f64 * 22.0;
        let dash = if line.dashed { r#" stroke-dasharray="6 4""# } else { "" };
        let _ = writeln!(
            svg,
            r#"<line x1="{legend_x:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{}" stroke-width="2"{dash}/><text x="{:.1}" y="{:.1}">{}</text>"#,
            legend_x + 24.0,
            line.colour,
            legend_x + 30.0,
            y + 4.0,
            escape(&line.name)
        );
    }
    let _ = writeln!(svg, "</g>\n</svg>");
    svg
}

struct Axis {
    min: f64,
    max: f64,
    log: bool,
}

impl Axis {
    /// From `low` (0 for rates and linear latencies) to a round number above `high`.
    fn linear(low: f64, high: f64) -> Axis {
        let step = nice_step(high - low);
        Axis { min: low, max: ((high / step).ceil() * step).max(low + step), log: false }
    }

    /// Whole decades around the values.
    fn log(low: f64, high: f64) -> Axis {
        Axis { min: 10f64.powf(low.log10().floor()), max: 10f64.powf(high.log10().ceil()), log: true }
    }

    fn fraction(&self, value: f64) -> f64 {
        if self.log {
            let value = value.max(self.min);
            (value.log10() - self.min.log10()) / (self.max.log10() - self.min.log10())
        } else {
            (value - self.min) / (self.max - self.min)
        }
    }

    fn ticks(&self) -> Vec<f64> {
        if self.log {
            // 1, 2 and 5 of every decade.
            let mut ticks = Vec::new();
            let mut decade = self.min;
            while decade <= self.max * (1.0 + 1e-9) {
                for m in [1.0, 2.0, 5.0] {
                    let tick = decade * m;
                    if tick <= self.max * (1.0 + 1e-9) {
                        ticks.push(tick);
                    }
                }
                decade *= 10.0;
            }
            ticks
        } else {
            let step = nice_step(self.max - self.min);
            let count = ((self.max - self.min) / step).round() as usize;
            (0..=count).map(|i| self.min + i as f64 * step).collect()
        }
    }
}

/// A step of 1, 2 or 5 × 10^k giving about 5 to 10 ticks over `span`.
fn nice_step(span: f64) -> f64 {
    let span = if span > 0.0 && span.is_finite() { span } else { 1.0 };
    let raw = span / 6.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let normalised = raw / magnitude;
    let nice = if normalised <= 1.0 {
        1.0
    } else if normalised <= 2.0 {
        2.0
    } else if normalised <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * magnitude
}

fn format_tick(value: f64) -> String {
    if value >= 1.0 && value.fract().abs() < 1e-9 {
        format!("{value:.0}")
    } else {
        // Enough decimals to tell 0.05 from 0.1, without trailing zeros.
        let text = format!("{value:.4}");
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::report::RunSetup;

    /// Checks that every tag is closed in order: enough XML well-formedness
    /// for a document we write ourselves (no CDATA, no comments).
    fn assert_balanced(svg: &str) {
        let mut open: Vec<String> = Vec::new();
        let mut rest = svg;
        while let Some(start) = rest.find('<') {
            let end =
                rest[start..].find('>').unwrap_or_else(|| panic!("unclosed tag near {}", &rest[start..]));
            let tag = &rest[start + 1..start + end];
            rest = &rest[start + end + 1..];
            if tag.starts_with('?') {
                continue;
            }
            let name: String =
                tag.trim_start_matches('/').chars().take_while(|c| c.is_alphanumeric()).collect();
            if tag.starts_with('/') {
                assert_eq!(open.pop().as_deref(), Some(name.as_str()), "mismatched </{name}>");
            } else if !tag.ends_with('/') {
                open.push(name);
            }
            assert!(!tag.contains('<'), "a '<' inside a tag: {tag}");
        }
        assert!(open.is_empty(), "unclosed: {open:?}");
        // Text between tags must have its markup characters escaped.
        assert!(!svg.contains("& "), "unescaped ampersand");
    }

    fn report(kind: RunKind, rate: f64, p50: f64) -> RunReport {
        RunReport {
            setup: RunSetup {
                kind,
                target: "service <ranker> & co".into(),
                rows_per_request: Some(10),
                connections: 4,
                distribution: "uniform".into(),
                seed: 1,
                target_rps: rate,
                warmup_s: 2.0,
                duration_s: 10.0,
            },
            achieved_rps: rate * 0.99,
            measured_s: 10.0,
            requests: 100,
            ok: 100,
            errors: 0,
            errors_by_kind: Default::default(),
            error_messages: Default::default(),
            p50_ms: Some(p50),
            p90_ms: Some(p50 * 2.0),
            p99_ms: Some(p50 * 5.0),
            p99_9_ms: Some(p50 * 20.0),
            max_ms: Some(p50 * 40.0),
            mean_ms: Some(p50),
            refused_p50_ms: None,
            refused_p90_ms: None,
            refused_p99_ms: None,
            send_lag_p99_ms: Some(0.05),
            baseline_p99_ms: None,
            p99_ratio_to_baseline: None,
        }
    }

    #[test]
    fn a_sweep_chart_is_well_formed_and_shows_every_series() {
        let reports: Vec<RunReport> = [1000.0, 2000.0, 5000.0]
            .iter()
            .flat_map(|&rate| [report(RunKind::Lookup, rate, 0.3), report(RunKind::Baseline, rate, 0.1)])
            .collect();
        let series = series_of(&reports);
        assert_eq!(series.len(), 4);
        assert!(series.iter().all(|s| s.points.len() == 3));
        let svg = render(&title_of(&reports), &series);
        assert_balanced(&svg);
        assert!(svg.starts_with("<?xml"));
        for name in ["p50", "p99", "p99.9", "baseline p99"] {
            assert!(svg.contains(&format!(r#"data-name="{name}""#)), "series {name} missing");
        }
        assert_eq!(svg.matches("<polyline").count(), 4);
        assert!(svg.contains("10 rows per request"));
        assert!(svg.contains("service &lt;ranker&gt; &amp; co"), "the title is escaped");
        assert!(svg.contains("achieved requests/s") && svg.contains("latency (ms, log scale)"));
    }

    #[test]
    fn a_baseline_only_chart_and_an_empty_chart_render() {
        let reports = vec![report(RunKind::Baseline, 100.0, 0.2), report(RunKind::Baseline, 200.0, 0.25)];
        let series = series_of(&reports);
        assert_eq!(series.len(), 3);
        let svg = render(&title_of(&reports), &series);
        assert_balanced(&svg);
        assert!(svg.contains("baseline p99") && svg.contains("health check"));
        assert_balanced(&render("nothing", &[]));
    }

    #[test]
    fn ticks_are_round_numbers() {
        assert_eq!(nice_step(5000.0), 1000.0);
        assert_eq!(nice_step(12.0), 2.0);
        assert_eq!(Axis::linear(0.0, 5100.0).ticks().last().copied(), Some(6000.0));
        let log = Axis::log(0.15, 42.0);
        assert_eq!((log.min, log.max), (0.1, 100.0));
        assert_eq!(log.ticks().first().copied(), Some(0.1));
        assert_eq!(format_tick(0.5), "0.5");
        assert_eq!(format_tick(2000.0), "2000");
    }
}
