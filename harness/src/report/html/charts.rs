//! The report's charts, drawn as inline SVG: line charts over time with
//! the faults' windows shaded, and latency histograms.

use std::fmt::Write as _;

use hdrhistogram::Histogram;

use super::esc;

const PALETTE: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// A line of a chart.
pub(super) struct Series {
    pub(super) label: String,
    pub(super) points: Vec<(f64, f64)>,
}

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 240.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 160.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 36.0;

fn nice_max(value: f64) -> f64 {
    if value <= 0.0 || !value.is_finite() {
        return 1.0;
    }
    let magnitude = 10f64.powf(value.log10().floor());
    for step in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if value <= step * magnitude {
            return step * magnitude;
        }
    }
    10.0 * magnitude
}

fn number(value: f64) -> String {
    if value >= 100.0 || value == value.trunc() {
        format!("{value:.0}")
    } else if value >= 1.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

/// A stretch of the x axis to shade: a fault's window, and its label.
pub(super) struct Shade {
    pub(super) from: f64,
    pub(super) to: f64,
    pub(super) label: String,
}

/// A line chart with axes, gridlines, a legend and shaded windows.
pub(super) fn line_chart(
    shades: &[Shade],
    id: &str,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
) -> String {
    let x_max = nice_max(
        series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0))
            .fold(0.0, f64::max),
    );
    let y_max = nice_max(
        series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .fold(0.0, f64::max),
    );
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x = |v: f64| LEFT + v / x_max * plot_w;
    let y = |v: f64| TOP + plot_h - v / y_max * plot_h;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<figure class="chart" id="{id}"><svg viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{title}"><title>{title}</title>"#,
        title = esc(title)
    );
    let _ = write!(
        svg,
        r#"<text x="{LEFT}" y="18" class="title">{}</text>"#,
        esc(title)
    );
    for shade in shades {
        let (from, to) = (shade.from.clamp(0.0, x_max), shade.to.clamp(0.0, x_max));
        if to <= from {
            continue;
        }
        let _ = write!(
            svg,
            r##"<rect class="fault" x="{x}" y="{TOP}" width="{w}" height="{plot_h}" fill="#f4c7c3" fill-opacity="0.5"><title>{label}</title></rect>"##,
            x = x(from),
            w = x(to) - x(from),
            label = esc(&shade.label)
        );
    }
    for i in 0..=4 {
        let value = y_max * f64::from(i) / 4.0;
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" x2="{x2}" y1="{y}" y2="{y}" stroke="#ddd"/><text x="{tx}" y="{ty}" text-anchor="end" class="tick">{label}</text>"##,
            x2 = LEFT + plot_w,
            y = y(value),
            tx = LEFT - 6.0,
            ty = y(value) + 4.0,
            label = number(value)
        );
        let xv = x_max * f64::from(i) / 4.0;
        let _ = write!(
            svg,
            r#"<text x="{tx}" y="{ty}" text-anchor="middle" class="tick">{label}</text>"#,
            tx = x(xv),
            ty = TOP + plot_h + 16.0,
            label = number(xv)
        );
    }
    let _ = write!(
        svg,
        r##"<line x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{b}" stroke="#333"/><line x1="{LEFT}" x2="{r}" y1="{b}" y2="{b}" stroke="#333"/>"##,
        b = TOP + plot_h,
        r = LEFT + plot_w
    );
    let _ = write!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle" class="axis">{}</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 4.0,
        esc(x_label)
    );
    let _ = write!(
        svg,
        r#"<text x="12" y="{}" transform="rotate(-90 12 {})" text-anchor="middle" class="axis">{}</text>"#,
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0,
        esc(y_label)
    );
    for (i, series) in series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        if !series.points.is_empty() {
            let path: Vec<String> = series
                .points
                .iter()
                .map(|(px, py)| format!("{:.1},{:.1}", x(*px), y(*py)))
                .collect();
            let _ = write!(
                svg,
                r#"<polyline class="series" fill="none" stroke="{color}" stroke-width="1.6" points="{}"/>"#,
                path.join(" ")
            );
        }
        let ly = TOP + 14.0 * i as f64 + 6.0;
        let _ = write!(
            svg,
            r#"<rect x="{lx}" y="{ry}" width="10" height="10" fill="{color}"/><text x="{tx}" y="{ty}" class="legend">{label}</text>"#,
            lx = LEFT + plot_w + 12.0,
            ry = ly - 9.0,
            tx = LEFT + plot_w + 26.0,
            ty = ly,
            label = esc(&series.label)
        );
    }
    svg.push_str("</svg></figure>");
    svg
}

/// A latency histogram: requests per latency band (bands grow twofold).
pub(super) fn histogram_chart(id: &str, title: &str, histogram: &Histogram<u64>) -> String {
    let mut bands: Vec<(String, u64)> = Vec::new();
    let mut low = 0u64;
    let mut high = 1_000u64; // 1 ms, in µs
    while low <= histogram.max() && bands.len() < 40 {
        let count = histogram.count_between(low, high.saturating_sub(1));
        let label = if high >= 1_000_000 {
            format!("<{}s", high / 1_000_000)
        } else {
            format!("<{}ms", high / 1000)
        };
        bands.push((label, count));
        low = high;
        high *= 2;
    }
    while bands.last().is_some_and(|b| b.1 == 0) && bands.len() > 1 {
        bands.pop();
    }
    let y_max = nice_max(bands.iter().map(|b| b.1 as f64).fold(0.0, f64::max));
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let bar_w = plot_w / bands.len().max(1) as f64;
    let mut svg = format!(
        r#"<figure class="chart" id="{id}"><svg viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{t}"><title>{t}</title><text x="{LEFT}" y="18" class="title">{t}</text>"#,
        t = esc(title)
    );
    for (i, (label, count)) in bands.iter().enumerate() {
        let h = *count as f64 / y_max * plot_h;
        let _ = write!(
            svg,
            r#"<rect class="bar" x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{h:.1}" fill="{c}"><title>{label}: {count}</title></rect>"#,
            x = LEFT + bar_w * i as f64 + 1.0,
            y = TOP + plot_h - h,
            w = (bar_w - 2.0).max(1.0),
            c = PALETTE[0]
        );
        if i % 2 == 0 {
            let _ = write!(
                svg,
                r#"<text x="{:.1}" y="{}" text-anchor="middle" class="tick">{label}</text>"#,
                LEFT + bar_w * (i as f64 + 0.5),
                TOP + plot_h + 16.0
            );
        }
    }
    let _ = write!(
        svg,
        r##"<line x1="{LEFT}" x2="{r}" y1="{b}" y2="{b}" stroke="#333"/><text x="{tx}" y="{ty}" text-anchor="end" class="tick">{m}</text></svg></figure>"##,
        r = LEFT + plot_w,
        b = TOP + plot_h,
        tx = LEFT - 6.0,
        ty = TOP + 4.0,
        m = number(y_max)
    );
    svg
}
