//! One scaling curve per PNG: a logarithmic x axis (1, 10, 100 pods; 10, 100, 1,000 switches)
//! and a linear y axis from zero, one line with markers per series.

use crate::ReportError;
use plotters::prelude::*;
use std::path::Path;

/// One line of a [`Plot`], with markers at its points.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend label.
    pub name: String,
    /// `(x, y)` points, in any order (drawn sorted by x); x must be positive.
    pub points: Vec<(f64, f64)>,
}

/// One PNG chart, drawn by [`draw`]: a logarithmic x axis, a linear y axis from zero and
/// one line per series.
#[derive(Debug, Clone, PartialEq)]
pub struct Plot {
    /// File name under `docs/bench/`.
    pub file: String,
    /// Caption above the chart.
    pub title: String,
    /// Description of the x axis.
    pub x_label: String,
    /// Description of the y axis.
    pub y_label: String,
    /// Lines to draw, one colour each.
    pub series: Vec<Series>,
    /// A horizontal goal line (label, y), dashed red.
    pub goal: Option<(String, f64)>,
}

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(23, 190, 207),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// Plotters' pure-Rust text needs a font registered once per process: reads a TrueType file
/// (kept for the life of the process) and makes it the "sans-serif" family.
pub fn register_font(path: &Path) -> Result<(), ReportError> {
    let bytes = std::fs::read(path).map_err(|source| ReportError::Io {
        path: path.to_owned(),
        source,
    })?;
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).map_err(|_| {
        ReportError::Font {
            path: path.to_owned(),
        }
    })
}

/// Draws `plot` into a PNG at `path`. Points with x <= 0 or non-finite values are refused
/// (a log axis cannot show them), as is a plot without any point.
pub fn draw(plot: &Plot, path: &Path) -> Result<(), ReportError> {
    let err = |msg: String| ReportError::Plot {
        file: plot.file.clone(),
        msg,
    };
    let points = || plot.series.iter().flat_map(|s| s.points.iter().copied());
    if points().next().is_none() {
        return Err(err("no points".into()));
    }
    if points().any(|(x, y)| x <= 0.0 || !x.is_finite() || !y.is_finite()) {
        return Err(err("x must be positive and every value finite".into()));
    }
    let x_min = points().map(|p| p.0).fold(f64::INFINITY, f64::min);
    let x_max = points().map(|p| p.0).fold(0.0, f64::max);
    let goal_y = plot.goal.as_ref().map_or(0.0, |g| g.1);
    // Headroom above the highest point or goal line keeps the legend (upper left) clear of them.
    let y_max = points().map(|p| p.1).fold(goal_y, f64::max).max(1e-9) * 1.45;
    let (x_lo, x_hi) = if x_max > x_min {
        (x_min / 1.3, x_max * 1.3)
    } else {
        (x_min / 2.0, x_min * 2.0)
    };

    // A log axis puts a label on every 1..9 × 10^k; keep those of the data and of powers of ten.
    let xs: Vec<f64> = points().map(|p| p.0).collect();
    let x_label = |x: &f64| {
        let decade = x.log10();
        if xs.iter().any(|d| (d - x).abs() < 1e-9 * d) || (decade - decade.round()).abs() < 1e-9 {
            crate::stats::num(*x)
        } else {
            String::new()
        }
    };
    let root = BitMapBackend::new(path, (800, 500)).into_drawing_area();
    let e = |x: &dyn std::fmt::Display| err(x.to_string());
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(&plot.title, ("sans-serif", 22))
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(70)
        .build_cartesian_2d((x_lo..x_hi).log_scale(), 0.0..y_max)
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .x_desc(&plot.x_label)
        .y_desc(&plot.y_label)
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 16))
        .light_line_style(RGBColor(238, 238, 238))
        .x_label_formatter(&x_label)
        .y_label_formatter(&|y| {
            if y_max > 20.0 {
                format!("{y:.0}")
            } else {
                crate::stats::num(*y)
            }
        })
        .draw()
        .map_err(|x| e(&x))?;
    if let Some((label, y)) = &plot.goal {
        // Dashed: short segments along the (logarithmic) width of the chart.
        let red = RGBColor(200, 0, 0);
        let steps = 60;
        let at = |i: i32| x_lo * (x_hi / x_lo).powf(f64::from(i) / f64::from(steps));
        chart
            .draw_series(
                (0..steps)
                    .step_by(2)
                    .map(|i| PathElement::new([(at(i), *y), (at(i + 1), *y)], red.stroke_width(2))),
            )
            .map_err(|x| e(&x))?
            .label(label.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 8, y)], red.stroke_width(2)));
    }
    for (i, s) in plot.series.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
        let mut pts = s.points.clone();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), c.stroke_width(2)))
            .map_err(|x| e(&x))?
            .label(s.name.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], c.stroke_width(2)));
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 4, c.filled())))
            .map_err(|x| e(&x))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))?;
    Ok(())
}
