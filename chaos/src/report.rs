//! `report.html`: one self-contained page per run, for a person to see at a glance what
//! happened: the verdict of each checker with its counter-examples, a timeline of every
//! client's operations (one lane per client, coloured by outcome), the latency of every
//! operation over time, and each master's role as the monitor saw it, with the nemesis's fault
//! periods shaded on all three. The plots are SVG
//! drawn by `plotters` and inlined, so the page needs nothing else.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use plotters::prelude::*;

use crate::checker::{Results, RunInfo, Validity};
use crate::history::{pairs, Kind, Record};

const WIDTH: u32 = 1200;
const OK: RGBColor = RGBColor(46, 160, 67);
const FAIL: RGBColor = RGBColor(207, 34, 46);
const INFO: RGBColor = RGBColor(219, 140, 0);
const FAULT: RGBColor = RGBColor(255, 200, 200);

/// A fault period: from the nemesis's start to its stop (or the end of the history).
#[derive(Clone, Debug)]
struct Period {
    from_s: f64,
    to_s: f64,
    fault: String,
}

fn fault_periods(history: &[Record], end_s: f64) -> Vec<Period> {
    crate::history::fault_periods(history)
        .into_iter()
        .map(|p| Period {
            from_s: p.from_ns as f64 / 1e9,
            to_s: p.to_ns.map_or(end_s, |t| t as f64 / 1e9),
            fault: p.fault,
        })
        .collect()
}

/// One completed (or never completed) client operation, for the plots.
struct Op {
    lane: String,
    from_s: f64,
    to_s: f64,
    outcome: Kind,
    f: String,
}

/// The timeline lane of a process: one per store client (whatever its incarnation), one for
/// the tasks framework's calls.
fn lane_of(process: &str) -> Option<String> {
    if let Some((events, _)) = process.split_once("-op-") {
        if crate::workload::tasks::is_events_process(events) {
            return Some(format!("{events} (calls)"));
        }
    }
    let base = process.split('.').next().unwrap_or(process);
    base.starts_with("store-").then(|| base.to_string())
}

fn operations(history: &[Record], end_s: f64) -> Vec<Op> {
    pairs(history, |p| {
        p.starts_with("store-") || crate::workload::tasks::is_call_process(p)
    })
    .into_iter()
    .filter_map(|p| {
        Some(Op {
            lane: lane_of(&p.invoke.process)?,
            from_s: p.invoke.time_ns as f64 / 1e9,
            to_s: p.complete.map_or(end_s, |c| c.time_ns as f64 / 1e9),
            outcome: p.outcome(),
            f: p.invoke.f.clone(),
        })
    })
    .collect()
}

fn color(k: Kind) -> RGBColor {
    match k {
        Kind::Ok => OK,
        Kind::Fail => FAIL,
        _ => INFO,
    }
}

type PlotResult = Result<(), Box<dyn std::error::Error>>;

/// One bar of a lanes plot.
struct Bar {
    lane: usize,
    from_s: f64,
    to_s: f64,
    color: RGBColor,
}

/// A plot of horizontal lanes (labelled) holding bars, faults shaded behind them.
fn lanes_svg(
    title: &str,
    labels: &[String],
    lane_px: u32,
    bars: impl Iterator<Item = Bar>,
    periods: &[Period],
    end_s: f64,
    out: &mut String,
) -> PlotResult {
    let height = (110 + lane_px * labels.len() as u32).min(1600);
    let root = SVGBackend::with_string(out, (WIDTH, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let n = labels.len().max(1) as i32;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(110)
        .build_cartesian_2d(0f64..end_s.max(1.0), (0..n).into_segmented())?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_desc("seconds since the run started")
        .y_labels(labels.len() + 1)
        .y_label_formatter(&|y| match y {
            SegmentValue::CenterOf(i) => labels.get(*i as usize).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .draw()?;
    chart.draw_series(periods.iter().map(|p| {
        Rectangle::new(
            [
                (p.from_s, SegmentValue::Exact(0)),
                (p.to_s, SegmentValue::Exact(n)),
            ],
            FAULT.mix(0.6).filled(),
        )
    }))?;
    chart.draw_series(bars.map(|b| {
        let y = b.lane as i32;
        let mut r = Rectangle::new(
            [
                (b.from_s, SegmentValue::Exact(y)),
                (b.to_s, SegmentValue::Exact(y + 1)),
            ],
            b.color.filled(),
        );
        // A gap between lanes.
        r.set_margin(4, 4, 0, 0);
        r
    }))?;
    root.present()?;
    Ok(())
}

fn timeline_svg(ops: &[Op], periods: &[Period], end_s: f64, out: &mut String) -> PlotResult {
    let mut lanes: Vec<String> = ops.iter().map(|o| o.lane.clone()).collect();
    lanes.sort();
    lanes.dedup();
    let lane_index: BTreeMap<&str, usize> = lanes
        .iter()
        .enumerate()
        .map(|(i, l)| (l.as_str(), i))
        .collect();
    let min_width = end_s / 2000.0;
    let bars = ops.iter().map(|o| Bar {
        lane: lane_index[o.lane.as_str()],
        from_s: o.from_s,
        to_s: o.to_s.max(o.from_s + min_width),
        color: color(o.outcome),
    });
    lanes_svg(
        "Operations per client (green ok, red fail, orange unknown; faults shaded)",
        &lanes,
        22,
        bars,
        periods,
        end_s,
        out,
    )
}

/// What the monitor saw of one master over a span of time.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Seen {
    Leader,
    Follower,
    Unreachable,
}

/// Spans of (master, from, to, what) from the monitor's records.
fn master_spans(history: &[Record], end_s: f64) -> Vec<(u64, f64, f64, Seen)> {
    let mut open: BTreeMap<u64, (f64, Seen)> = BTreeMap::new();
    let mut out = Vec::new();
    for r in history.iter().filter(|r| r.process == "monitor") {
        let Some(node) = r.value["node"].as_u64() else {
            continue;
        };
        let seen = match r.f.as_str() {
            "unreachable" => Seen::Unreachable,
            "status" if r.value["role"] == "leader" => Seen::Leader,
            "status" => Seen::Follower,
            _ => continue,
        };
        let t = r.time_ns as f64 / 1e9;
        if let Some((from, was)) = open.insert(node, (t, seen)) {
            out.push((node, from, t, was));
        }
    }
    for (node, (from, was)) in open {
        out.push((node, from, end_s, was));
    }
    out
}

fn masters_svg(
    spans: &[(u64, f64, f64, Seen)],
    periods: &[Period],
    end_s: f64,
    out: &mut String,
) -> PlotResult {
    let mut nodes: Vec<u64> = spans.iter().map(|s| s.0).collect();
    nodes.sort_unstable();
    nodes.dedup();
    let labels: Vec<String> = nodes.iter().map(|m| format!("master-{m}")).collect();
    let bars = spans.iter().map(|(node, from, to, seen)| Bar {
        lane: nodes.iter().position(|m| m == node).unwrap_or(0),
        from_s: *from,
        to_s: *to,
        color: match seen {
            Seen::Leader => RGBColor(9, 105, 218),
            Seen::Follower => RGBColor(175, 184, 193),
            Seen::Unreachable => FAIL,
        },
    });
    lanes_svg(
        "Masters as the monitor saw them (blue leader, grey follower, red not answering)",
        &labels,
        26,
        bars,
        periods,
        end_s,
        out,
    )
}

fn latency_svg(ops: &[Op], periods: &[Period], end_s: f64, out: &mut String) -> PlotResult {
    let root = SVGBackend::with_string(out, (WIDTH, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let max_ms = ops
        .iter()
        .map(|o| (o.to_s - o.from_s) * 1000.0)
        .fold(10.0f64, f64::max)
        * 1.5;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Latency of every operation (ms, log scale; faults shaded)",
            ("sans-serif", 16),
        )
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..end_s.max(1.0), (0.1f64..max_ms).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("seconds since the run started")
        .y_desc("ms")
        .draw()?;
    chart.draw_series(
        periods
            .iter()
            .map(|p| Rectangle::new([(p.from_s, 0.1), (p.to_s, max_ms)], FAULT.mix(0.6).filled())),
    )?;
    for (kind, label) in [
        (Kind::Ok, "ok"),
        (Kind::Fail, "fail"),
        (Kind::Info, "unknown"),
    ] {
        chart
            .draw_series(
                ops.iter()
                    .filter(|o| {
                        o.outcome == kind || (kind == Kind::Info && o.outcome == Kind::Invoke)
                    })
                    .map(|o| {
                        let ms = ((o.to_s - o.from_s) * 1000.0).max(0.1);
                        Circle::new((o.from_s, ms), 2, color(kind).filled())
                    }),
            )?
            .label(label)
            .legend(move |(x, y)| Circle::new((x, y), 3, color(kind).filled()));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The checkers' verdicts, one row each.
fn checker_table(h: &mut String, results: &Results) {
    h.push_str(
        "<table><tr><th>checker</th><th>invariant</th><th>verdict</th><th>summary</th></tr>",
    );
    for c in &results.checkers {
        let class = match c.valid {
            Validity::Valid => "valid",
            Validity::Invalid => "invalid",
            Validity::Unknown => "unknown",
        };
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td class=\"{class}\">{class}</td><td>{}</td></tr>",
            escape(&c.checker),
            escape(&c.invariant),
            escape(&c.summary)
        );
    }
}

/// Operations counted by outcome, and the fault periods.
fn operation_and_fault_tables(h: &mut String, ops: &[Op], periods: &[Period]) {
    let mut counts: BTreeMap<(String, &'static str), u64> = BTreeMap::new();
    for o in ops {
        let k = match o.outcome {
            Kind::Ok => "ok",
            Kind::Fail => "fail",
            _ => "unknown",
        };
        *counts.entry((o.f.clone(), k)).or_default() += 1;
    }
    h.push_str(
        "<h2>Operations</h2><table><tr><th>operation</th><th>outcome</th><th>count</th></tr>",
    );
    for ((f, k), n) in counts {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{k}</td><td>{n}</td></tr>",
            escape(&f)
        );
    }
    h.push_str(
        "</table><h2>Faults</h2><table><tr><th>from (s)</th><th>to (s)</th><th>fault</th></tr>",
    );
    for p in periods {
        let _ = write!(
            h,
            "<tr><td>{:.1}</td><td>{:.1}</td><td>{}</td></tr>",
            p.from_s,
            p.to_s,
            escape(&p.fault)
        );
    }
    h.push_str("</table>");
}

/// The page.
pub fn render(info: &RunInfo, results: &Results, history: &[Record]) -> String {
    let end_s = history.last().map_or(1.0, |r| r.time_ns as f64 / 1e9);
    let periods = fault_periods(history, end_s);
    let ops = operations(history, end_s);
    let mut timeline = String::new();
    let mut latency = String::new();
    let mut masters = String::new();
    let spans = master_spans(history, end_s);
    let plot_errors: Vec<String> = [
        timeline_svg(&ops, &periods, end_s, &mut timeline),
        latency_svg(&ops, &periods, end_s, &mut latency),
        masters_svg(&spans, &periods, end_s, &mut masters),
    ]
    .into_iter()
    .filter_map(|r| r.err().map(|e| e.to_string()))
    .collect();

    let mut h = String::new();
    let verdict = if results.valid { "VALID" } else { "NOT VALID" };
    let _ = write!(
        h,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Drover chaos run: {verdict}</title>\
         <style>body{{font-family:sans-serif;margin:24px;max-width:1250px}}\
         .valid{{color:#2ea043}}.invalid{{color:#cf222e}}.unknown{{color:#db8c00}}\
         table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}}\
         pre{{background:#f6f8fa;padding:8px;overflow:auto;max-height:400px}}</style></head><body>"
    );
    let _ = write!(
        h,
        "<h1 class=\"{}\">{verdict}</h1><p>seed {} &middot; {} masters &middot; {} agents &middot; workloads {} ({} framework API) &middot; \
         nemesis {} &middot; {:.0} s of faults &middot; {} ops/s &middot; {} history records &middot; {} fault periods</p>",
        if results.valid { "valid" } else { "invalid" },
        info.seed,
        info.masters,
        info.agents,
        escape(&info.workloads.join(", ")),
        escape(&info.api),
        escape(&if info.nemeses.is_empty() { "none".into() } else { info.nemeses.join(", ") }),
        info.duration_secs,
        info.rate,
        history.len(),
        periods.len()
    );
    checker_table(&mut h, results);
    h.push_str("</table>");
    for e in &plot_errors {
        let _ = write!(h, "<p class=\"invalid\">plot failed: {}</p>", escape(e));
    }
    h.push_str(&timeline);
    h.push_str(&latency);
    h.push_str(&masters);
    operation_and_fault_tables(&mut h, &ops, &periods);
    for c in results
        .checkers
        .iter()
        .filter(|c| !c.counterexamples.is_empty())
    {
        let _ = write!(
            h,
            "<h2 class=\"invalid\">Counter-examples: {}</h2><pre>{}</pre>",
            escape(&c.checker),
            escape(&serde_json::to_string_pretty(&c.counterexamples).unwrap_or_default())
        );
    }
    h.push_str("</body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::CheckerResult;
    use serde_json::json;

    fn rec(
        index: u64,
        process: &str,
        kind: Kind,
        f: &str,
        value: serde_json::Value,
        t_ms: u64,
    ) -> Record {
        crate::history::record(index, process, kind, f, value, t_ms * 1_000_000)
    }

    #[test]
    fn the_page_has_both_plots_the_fault_and_the_verdict() {
        let h = vec![
            rec(0, "store-0", Kind::Invoke, "read", json!({"key": "k"}), 100),
            rec(
                1,
                "store-0",
                Kind::Ok,
                "read",
                json!({"key": "k", "value": null}),
                120,
            ),
            rec(
                2,
                "nemesis",
                Kind::Info,
                "start",
                json!({"fault": "kill-leader"}),
                500,
            ),
            rec(
                3,
                "store-1",
                Kind::Invoke,
                "write",
                json!({"key": "k", "value": "1:1"}),
                600,
            ),
            rec(4, "store-1", Kind::Info, "write", json!({"key": "k"}), 3600),
            rec(5, "nemesis", Kind::Info, "stop", json!({}), 4000),
        ];
        let results = Results::of(vec![CheckerResult {
            checker: "store-linearizable".into(),
            invariant: "7".into(),
            valid: Validity::Invalid,
            summary: "1 of 1 keys".into(),
            stats: json!({}),
            counterexamples: vec![json!({"key": "k<script>"})],
        }]);
        let page = render(&RunInfo::default(), &results, &h);
        assert!(page.contains("NOT VALID"));
        assert_eq!(page.matches("<svg").count(), 3, "three plots");
        assert!(page.contains("kill-leader"));
        assert!(!page.contains("plot failed"), "{page}");
        assert!(
            page.contains("k&lt;script&gt;"),
            "counter-examples are escaped"
        );
        assert!(page.contains("<text"), "axis labels are drawn");
    }
}
