//! SVG charts of the side-by-side benches: one panel per figure, a bar per
//! forwarder, the baseline's bar grey and the others blue, each with its
//! value, so edgefwd is seen beside what it is measured against.
//!
//! Written to `target/bench-charts/NAME.svg` (or `$EDGEFWD_CHARTS/NAME.svg`).

use std::path::PathBuf;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// One figure: bars by name, one of them the baseline.
pub struct Figure {
    /// What is measured, with its unit (`TCP throughput, Gbit/s`).
    pub title: String,
    /// The baseline's bar name.
    pub baseline: String,
    /// Name and value of each bar.
    pub bars: Vec<(String, f64)>,
}

/// Where `name`'s chart goes.
pub fn path(name: &str) -> PathBuf {
    let dir = std::env::var_os("EDGEFWD_CHARTS").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-charts"),
        PathBuf::from,
    );
    dir.join(format!("{name}.svg"))
}

/// Writes `figures` as one SVG, `name`, and says where.
pub fn write(name: &str, figures: &[Figure]) {
    let path = path(name);
    match draw(&path, figures) {
        Ok(()) => println!("chart: {}", path.display()),
        Err(e) => println!("chart {}: {e}", path.display()),
    }
}

fn draw(path: &std::path::Path, figures: &[Figure]) -> Result<(), Box<dyn std::error::Error>> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let height = 280 * figures.len().max(1) as u32;
    let root = SVGBackend::new(path, (960, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((figures.len().max(1), 1));
    for (area, fig) in panels.iter().zip(figures) {
        let top = fig
            .bars
            .iter()
            .map(|b| b.1)
            .filter(|v| v.is_finite())
            .fold(0.0, f64::max)
            .max(f64::MIN_POSITIVE)
            * 1.2;
        let n = fig.bars.len();
        let mut chart = ChartBuilder::on(area)
            .caption(&fig.title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d((0..n.saturating_sub(1)).into_segmented(), 0f64..top)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n)
            .x_label_formatter(&|x| match x {
                SegmentValue::CenterOf(i) => {
                    fig.bars.get(*i).map(|b| b.0.clone()).unwrap_or_default()
                }
                _ => String::new(),
            })
            .draw()?;
        chart.draw_series(fig.bars.iter().enumerate().map(|(i, (name, v))| {
            let colour = if *name == fig.baseline {
                RGBColor(150, 150, 150)
            } else {
                RGBColor(40, 100, 200)
            };
            let v = if v.is_finite() { *v } else { 0.0 };
            let mut bar = Rectangle::new(
                [
                    (SegmentValue::Exact(i), 0.0),
                    (SegmentValue::Exact(i + 1), v),
                ],
                colour.filled(),
            );
            bar.set_margin(0, 0, 12, 12);
            bar
        }))?;
        chart.draw_series(fig.bars.iter().enumerate().map(|(i, (_, v))| {
            let label = match v.abs() {
                x if !x.is_finite() => "—".to_owned(),
                x if x >= 100.0 => format!("{v:.0}"),
                x if x >= 10.0 => format!("{v:.1}"),
                _ => format!("{v:.2}"),
            };
            let v = if v.is_finite() { *v } else { 0.0 };
            let style = TextStyle::from(("sans-serif", 14).into_font())
                .pos(Pos::new(HPos::Center, VPos::Bottom));
            Text::new(label, (SegmentValue::CenterOf(i), v), style)
        }))?;
    }
    root.present()?;
    Ok(())
}
