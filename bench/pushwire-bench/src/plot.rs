//! The SVG plots' common parts: one colour per server and transport, a chart frame,
//! lines with a legend, cumulative distributions, and bars. Each experiment's report
//! picks what it plots.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::coord::Shift;
use plotters::coord::ranged1d::AsRangedCoord;
use plotters::element::DashedPathElement;
use plotters::prelude::*;

use crate::record::{Kind, Outcome, Run, Transport};

fn series_name(server: &str, transport: Transport) -> String {
    format!("{server} {}", transport.name())
}

/// Colour per transport, shade per server, so pairs read together; Tornado's demo
/// (long-poll only) in orange.
pub(crate) fn colour(server: &str, transport: Transport) -> RGBColor {
    if server == "tornado" {
        return RGBColor(0xff, 0x7f, 0x0e);
    }
    let nchan = server == "nchan";
    match (transport, nchan) {
        (Transport::LongPoll, false) => RGBColor(0x1f, 0x77, 0xb4),
        (Transport::LongPoll, true) => RGBColor(0x9e, 0xc9, 0xe8),
        (Transport::Sse, false) => RGBColor(0xd6, 0x27, 0x28),
        (Transport::Sse, true) => RGBColor(0xf0, 0xa0, 0xa0),
        (Transport::WebSocket, false) => RGBColor(0x2c, 0xa0, 0x2c),
        (Transport::WebSocket, true) => RGBColor(0xa6, 0xdb, 0xa0),
        // pushwire only.
        (Transport::WebTransport, _) => RGBColor(0x94, 0x67, 0xbd),
        (Transport::WebTransportUnordered, _) => RGBColor(0x8c, 0x56, 0x4b),
    }
}

/// Points per server and transport, in rising x.
pub(crate) type Series = BTreeMap<(String, Transport), Vec<(f64, f64)>>;

/// A chart on an SVG canvas, with the coordinates `x` and `y` describe.
pub(crate) type Chart<'a, 'b, X, Y> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<<X as AsRangedCoord>::CoordDescType, <Y as AsRangedCoord>::CoordDescType>,
>;

/// A white canvas with `title`, margins and room for the axis labels, spanning `x` by `y`.
pub(crate) fn chart<'a, 'b, X: AsRangedCoord, Y: AsRangedCoord>(
    root: &'a DrawingArea<SVGBackend<'b>, Shift>,
    title: &str,
    x_label_area: u32,
    x: X,
    y: Y,
) -> Result<Chart<'a, 'b, X, Y>, String> {
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    ChartBuilder::on(root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(x_label_area)
        .y_label_area_size(70)
        .build_cartesian_2d(x, y)
        .map_err(|e| e.to_string())
}

/// p99 latency (log scale) against `x_label` (log scale), one line per series.
pub(crate) fn line_plot(path: &Path, title: &str, x_label: &str, series: &Series) -> Result<(), String> {
    let points = series.values().flatten();
    let (mut x_min, mut x_max, mut y_min, mut y_max) = (f64::MAX, 1.0f64, f64::MAX, 0.0f64);
    for &(x, y) in points {
        x_min = x_min.min(x);
        x_max = x_max.max(x);
        y_min = y_min.min(y);
        y_max = y_max.max(y);
    }
    let y_min = (y_min.min(y_max) * 0.5).max(0.001);
    // From the power of ten below the smallest x (0.8 for 1), so the axis is labelled.
    let x_start = if x_min <= 1.0 { 0.8 } else { 10f64.powf(x_min.log10().floor()) };
    let root = SVGBackend::new(path, (900, 540)).into_drawing_area();
    let x = (x_start..x_max * 1.5).log_scale();
    let mut chart = chart(&root, title, 45, x, (y_min..y_max.max(y_min) * 2.0).log_scale())?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc("p99 latency (ms, log scale)")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y}"))
        .draw()
        .map_err(|e| e.to_string())?;
    draw_lines(&mut chart, series)?;
    root.present().map_err(|e| e.to_string())
}

/// One line with points per server and transport, in their colours, and the legend.
pub(crate) fn draw_lines<'a, 'b: 'a, X, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'b>, Cartesian2d<X, Y>>,
    series: &Series,
) -> Result<(), String>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    for ((server, transport), data) in series {
        let colour = colour(server, *transport);
        chart
            .draw_series(LineSeries::new(data.iter().copied(), colour.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(series_name(server, *transport))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2)));
        chart
            .draw_series(data.iter().map(|&(x, y)| Circle::new((x, y), 3, colour.filled())))
            .map_err(|e| e.to_string())?;
    }
    legend(chart, SeriesLabelPosition::UpperLeft)
}

/// The legend of the series drawn with labels, at `position`.
pub(crate) fn legend<'a, 'b: 'a, X: Ranged, Y: Ranged>(
    chart: &mut ChartContext<'a, SVGBackend<'b>, Cartesian2d<X, Y>>,
    position: SeriesLabelPosition,
) -> Result<(), String> {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(position)
        .draw()
        .map_err(|e| e.to_string())
}

/// One line of a CDF plot: `(ms, share)` points in rising order.
pub(crate) struct CdfLine {
    pub label: String,
    pub colour: RGBColor,
    pub points: Vec<(f64, f64)>,
    /// Drawn dashed (a second view of the same series, such as "in order").
    pub dashed: bool,
}

/// Cumulative distributions: the share of samples (0 to 1) within each time (ms, log
/// scale, so milliseconds and seconds of tail read on one axis), one line each.
pub(crate) fn cdf_plot(path: &Path, title: &str, lines: &[CdfLine]) -> Result<(), String> {
    let xs = || lines.iter().flat_map(|line| line.points.iter().map(|p| p.0));
    // From the power of ten below the fastest, where a log axis starts its labels.
    let x_min = 10f64.powf(xs().fold(f64::MAX, f64::min).max(0.01).log10().floor());
    let x_max = xs().fold(x_min, f64::max) * 1.25;
    let root = SVGBackend::new(path, (900, 540)).into_drawing_area();
    let mut chart = chart(&root, title, 45, (x_min..x_max).log_scale(), 0f64..1.0)?;
    chart
        .configure_mesh()
        .x_desc("latency from publish to delivery (ms, log scale)")
        .y_desc("share of messages")
        // Ticks at every 1..9 of each power of ten, labelled at 1, 2 and 5 only.
        .x_labels(50)
        .x_max_light_lines(0)
        .x_label_formatter(&|x| {
            let leading = x / 10f64.powf(x.log10().floor());
            if [1.0, 2.0, 5.0].iter().any(|d| (leading - d).abs() < 0.01) { format!("{x}") } else { String::new() }
        })
        .draw()
        .map_err(|e| e.to_string())?;
    for line in lines {
        let style = line.colour.stroke_width(2);
        let points = line.points.iter().copied();
        let dashed = line.dashed;
        let drawn = if dashed {
            chart.draw_series(DashedLineSeries::new(points, 6, 4, style))
        } else {
            chart.draw_series(LineSeries::new(points, style))
        };
        drawn.map_err(|e| e.to_string())?.label(line.label.clone()).legend(move |(x, y)| {
            let sample = vec![(x, y), (x + 20, y)];
            if dashed {
                DashedPathElement::new(sample, 6, 4, style).into_dyn()
            } else {
                PathElement::new(sample, style).into_dyn()
            }
        });
    }
    legend(&mut chart, SeriesLabelPosition::LowerRight)?;
    root.present().map_err(|e| e.to_string())
}

/// One bar per outcome of `kind` with a `value`, named and coloured by series.
pub(crate) fn bars(run: &Run, kind: Kind, value: impl Fn(&Outcome) -> Option<f64>) -> Vec<(String, RGBColor, f64)> {
    run.outcomes
        .iter()
        .filter(|o| o.kind == kind)
        .filter_map(|o| Some((series_name(&o.server, o.transport), colour(&o.server, o.transport), value(o)?)))
        .collect()
}

/// A bar chart of `bars`, each labelled with its value.
pub(crate) fn bar_plot(path: &Path, title: &str, unit: &str, bars: &[(String, RGBColor, f64)]) -> Result<(), String> {
    let y_max = bars.iter().map(|b| b.2).fold(1.0f64, f64::max) * 1.15;
    let root = SVGBackend::new(path, (900, 480)).into_drawing_area();
    let mut chart = chart(&root, title, 40, 0f64..bars.len().max(1) as f64, 0f64..y_max)?;
    let names: Vec<String> = bars.iter().map(|b| b.0.clone()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(bars.len().max(1) * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - i as f64 - 0.5).abs() < 0.01 { names.get(i).cloned().unwrap_or_default() } else { String::new() }
        })
        .y_desc(unit)
        .draw()
        .map_err(|e| e.to_string())?;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, (_, colour, value))| {
            Rectangle::new([(i as f64 + 0.15, 0.0), (i as f64 + 0.85, *value)], colour.filled())
        }))
        .map_err(|e| e.to_string())?;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, (_, _, value))| {
            Text::new(format!("{value:.0}"), (i as f64 + 0.3, *value + y_max * 0.02), ("sans-serif", 14))
        }))
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}
