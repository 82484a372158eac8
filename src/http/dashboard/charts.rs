//! Server-side SVG charts: a group's status breakdown, its version breakdown as one stacked bar,
//! and versions over time from status history. Geometry lives in SVG attributes (no inline
//! styles, so the page's CSP can forbid them); every chart has a text alternative.

use std::collections::{BTreeMap, HashMap};

use maud::{html, Markup};

use super::views::status_counts;
use crate::domain::{InstanceStatus, InstancesStats, VersionCount};
use crate::store::dashboard::HistoryPoint;

pub fn status_color(key: &str) -> &'static str {
    match key {
        "complete" => "#2e7d32",
        "update_granted" => "#1565c0",
        "downloading" => "#0277bd",
        "downloaded" => "#00838f",
        "installed" => "#6a1b9a",
        "onhold" => "#b26a00",
        "error" => "#c62828",
        _ => "#757575",
    }
}

const PALETTE: [&str; 8] = [
    "#1565c0", "#2e7d32", "#ef6c00", "#6a1b9a", "#00838f", "#ad1457", "#4e342e", "#546e7a",
];

pub fn version_color(i: usize) -> &'static str {
    PALETTE[i % PALETTE.len()]
}

/// Horizontal bars, one per status, with counts.
pub fn status_breakdown(stats: &InstancesStats) -> Markup {
    let rows = status_counts(stats);
    let max = rows.iter().map(|r| r.2).max().unwrap_or(0).max(1);
    let (label_w, bar_w, row_h) = (110.0, 260.0, 24.0);
    let height = row_h * rows.len() as f64 + 8.0;
    let summary = rows
        .iter()
        .map(|(_, label, n)| format!("{label} {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    html! {
        figure.chart {
            svg viewBox=(format!("0 0 {} {height}", label_w + bar_w + 60.0)) role="img"
                aria-label=(format!("Instance status breakdown: {summary}")) {
                @for (i, (key, label, n)) in rows.iter().enumerate() {
                    @let y = 4.0 + i as f64 * row_h;
                    @let w = (*n as f64 / max as f64) * bar_w;
                    text x="0" y=(y + 16.0) font-size="13" fill="currentColor" { (label) }
                    rect x=(label_w) y=(y + 3.0) width=(format!("{w:.1}")) height="16" rx="2" fill=(status_color(key)) {}
                    text x=(label_w + w + 6.0) y=(y + 16.0) font-size="13" fill="currentColor" { (n) }
                }
            }
            figcaption { "Instances by status (" (stats.total) " active)" }
        }
    }
}

/// One stacked bar of versions with a legend (the application page's per-group summary).
pub fn version_bar(breakdown: &[VersionCount]) -> Markup {
    let total: i64 = breakdown.iter().map(|v| v.instances).sum();
    let mut x = 0.0;
    let segments: Vec<(f64, f64)> = breakdown
        .iter()
        .map(|v| {
            let w = if total > 0 {
                v.instances as f64 * 100.0 / total as f64
            } else {
                0.0
            };
            let segment = (x, w);
            x += w;
            segment
        })
        .collect();
    let label = breakdown
        .iter()
        .map(|v| format!("{} {} ({:.0}%)", v.version, v.instances, v.percentage))
        .collect::<Vec<_>>()
        .join(", ");
    html! {
        div.versionbar {
            svg viewBox="0 0 100 8" preserveAspectRatio="none" role="img"
                aria-label=(if total == 0 { "No active instances".to_string() } else { format!("Versions: {label}") }) {
                rect x="0" y="0" width="100" height="8" fill="#e0e0e0" {}
                @for (i, (v, (x, w))) in breakdown.iter().zip(&segments).enumerate() {
                    rect x=(format!("{x:.2}")) y="0" width=(format!("{w:.2}")) height="8" fill=(version_color(i)) {
                        title { (v.version) ": " (v.instances) }
                    }
                }
            }
            @if total > 0 {
                ul.legend {
                    @for (i, v) in breakdown.iter().enumerate() {
                        li {
                            svg width="10" height="10" aria-hidden="true" { rect width="10" height="10" fill=(version_color(i)) {} }
                            " " (v.version) " · " (v.instances) " (" (format!("{:.0}", v.percentage)) "%)"
                        }
                    }
                }
            }
        }
    }
}

/// For each of `buckets` time slices of [start, end], how many instances had completed an update
/// to each version by the end of that slice (from their latest status-history entry). Versions
/// are ordered newest first.
pub fn version_series(
    points: &[HistoryPoint],
    start: i64,
    end: i64,
    buckets: usize,
) -> Vec<(String, Vec<i64>)> {
    let buckets = buckets.max(1);
    let span = (end - start).max(1);
    let mut latest: HashMap<&str, &HistoryPoint> = HashMap::new();
    let mut series: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut idx = 0;
    let mut sorted: Vec<&HistoryPoint> = points.iter().collect();
    sorted.sort_by_key(|p| p.created_ts);
    for b in 0..buckets {
        let edge = start + span * (b as i64 + 1) / buckets as i64;
        while idx < sorted.len() && sorted[idx].created_ts <= edge {
            latest.insert(sorted[idx].instance_id.as_str(), sorted[idx]);
            idx += 1;
        }
        for p in latest.values() {
            if p.status == InstanceStatus::Complete.code() && !p.version.is_empty() {
                series
                    .entry(p.version.clone())
                    .or_insert_with(|| vec![0; buckets])[b] += 1;
            }
        }
    }
    let mut out: Vec<(String, Vec<i64>)> = series.into_iter().collect();
    out.sort_by(|a, b| crate::domain::version::cmp_version_text(&b.0, &a.0));
    out
}

/// A line per version over the window, with axis labels and a legend.
pub fn versions_over_time(points: &[HistoryPoint], start: i64, end: i64) -> Markup {
    const BUCKETS: usize = 24;
    let series = version_series(points, start, end, BUCKETS);
    let max = series
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .max()
        .unwrap_or(0)
        .max(1);
    let (w, h, left, bottom) = (480.0, 180.0, 36.0, 22.0);
    let plot_w = w - left - 8.0;
    let plot_h = h - bottom - 8.0;
    let x_of = |i: usize| left + plot_w * (i as f64 + 1.0) / BUCKETS as f64;
    let y_of = |n: i64| 8.0 + plot_h - plot_h * n as f64 / max as f64;
    let fmt = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .map(|t| t.format("%m-%d %H:%M").to_string())
            .unwrap_or_default()
    };
    let summary = series
        .iter()
        .map(|(v, counts)| format!("{v}: {}", counts.last().copied().unwrap_or(0)))
        .collect::<Vec<_>>()
        .join(", ");
    html! {
        figure.chart {
            @if series.is_empty() {
                p.empty { "No completed updates in this period." }
            } @else {
                svg viewBox=(format!("0 0 {w} {h}")) role="img"
                    aria-label=(format!("Instances per version over time; now {summary}")) {
                    line x1=(left) y1="8" x2=(left) y2=(8.0 + plot_h) stroke="#9e9e9e" {}
                    line x1=(left) y1=(8.0 + plot_h) x2=(w - 8.0) y2=(8.0 + plot_h) stroke="#9e9e9e" {}
                    text x="2" y="16" font-size="11" fill="currentColor" { (max) }
                    text x="2" y=(8.0 + plot_h) font-size="11" fill="currentColor" { "0" }
                    text x=(left) y=(h - 4.0) font-size="11" fill="currentColor" { (fmt(start)) }
                    text x=(w - 8.0) y=(h - 4.0) font-size="11" fill="currentColor" text-anchor="end" { (fmt(end)) }
                    @for (i, (version, counts)) in series.iter().enumerate() {
                        @let pts = counts.iter().enumerate()
                            .map(|(b, n)| format!("{:.1},{:.1}", x_of(b), y_of(*n)))
                            .collect::<Vec<_>>().join(" ");
                        polyline points=(pts) fill="none" stroke=(version_color(i)) stroke-width="2" {
                            title { (version) }
                        }
                    }
                }
                ul.legend {
                    @for (i, (version, counts)) in series.iter().enumerate() {
                        li {
                            svg width="10" height="10" aria-hidden="true" { rect width="10" height="10" fill=(version_color(i)) {} }
                            " " (version) " · " (counts.last().copied().unwrap_or(0)) " now"
                        }
                    }
                }
            }
            figcaption { "Instances that completed an update, by version, " (fmt(start)) " – " (fmt(end)) " UTC" }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(instance: &str, status: i64, version: &str, ts: i64) -> HistoryPoint {
        HistoryPoint {
            instance_id: instance.into(),
            status,
            version: version.into(),
            created_ts: ts,
        }
    }

    #[test]
    fn series_follow_each_instances_latest_status() {
        let points = vec![
            point("a", 2, "1.1.0", 10),
            point("a", 4, "1.1.0", 20),
            point("b", 4, "1.0.0", 5),
            point("b", 2, "1.1.0", 60),
            point("b", 4, "1.1.0", 90),
        ];
        let series = version_series(&points, 0, 100, 4);
        assert_eq!(
            series,
            vec![
                ("1.1.0".to_string(), vec![1, 1, 1, 2]),
                ("1.0.0".to_string(), vec![1, 1, 0, 0]),
            ]
        );
        assert!(version_series(&[], 0, 100, 4).is_empty());
    }

    #[test]
    fn charts_escape_and_label() {
        let stats = InstancesStats {
            total: 2,
            complete: 1,
            error: 1,
            ..Default::default()
        };
        let svg = status_breakdown(&stats).into_string();
        assert!(svg.contains("Complete 1"));
        assert!(svg.contains("Error 1"));
        let bar = version_bar(&[VersionCount {
            version: "<b>".into(),
            instances: 1,
            percentage: 100.0,
        }])
        .into_string();
        assert!(bar.contains("&lt;b&gt;"));
        assert!(!bar.contains("<b>"));
    }
}
