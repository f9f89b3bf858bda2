//! docs/benchmarks.png: horizontal bar charts of the per-path test-run costs and of the
//! end-to-end drop rates, drawn with plotters' bitmap backend and a system DejaVu font.

use std::path::Path;

use anyhow::{Context, Result, anyhow};
use plotters::prelude::*;
use plotters::style::FontStyle;

/// Where the labels' font comes from (Debian's fonts-dejavu-core); no font, no chart.
const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// One chart panel: a title, a unit and labelled values.
pub struct Panel {
    pub title: String,
    pub unit: &'static str,
    pub bars: Vec<(String, f64)>,
}

pub fn draw(out: &Path, panels: &[Panel]) -> Result<()> {
    let font = std::fs::read(FONT).with_context(|| format!("reading the font {FONT}"))?;
    plotters::style::register_font("sans-serif", FontStyle::Normal, font.leak())
        .map_err(|_| anyhow!("{FONT} is not a usable font"))?;
    let rows: usize = panels.iter().map(|p| p.bars.len() + 3).sum();
    let height = (rows as u32 * 26).max(200);
    let root = BitMapBackend::new(out, (1100, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let mut area = root.clone();
    for panel in panels {
        let share = (panel.bars.len() + 3) as u32 * 26;
        let (top, rest) = area.split_vertically(share);
        draw_panel(&top, panel)?;
        area = rest;
    }
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    panel: &Panel,
) -> Result<()> {
    let n = panel.bars.len().max(1);
    let max = panel.bars.iter().map(|b| b.1).fold(0.0, f64::max).max(1.0);
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, ("sans-serif", 18))
        .margin(8)
        .x_label_area_size(22)
        .build_cartesian_2d(0.0..max * 1.6, 0.0..n as f64)
        .map_err(|e| anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .disable_y_axis()
        .x_desc(panel.unit)
        .label_style(("sans-serif", 12))
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    let colours = [
        RGBColor(70, 110, 180),
        RGBColor(200, 110, 50),
        RGBColor(90, 160, 90),
    ];
    for (i, (name, value)) in panel.bars.iter().enumerate() {
        // First bar on top.
        let y = (n - 1 - i) as f64;
        let colour = if name.starts_with("bare") {
            colours[2]
        } else if name.contains("xdp-filter") || name.contains("nft") || name.contains("iptables") {
            colours[1]
        } else {
            colours[0]
        };
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(0.0, y + 0.15), (*value, y + 0.85)],
                colour.filled(),
            )))
            .map_err(|e| anyhow!("{e}"))?;
        chart
            .draw_series(std::iter::once(Text::new(
                format!("{name}: {}", human(*value)),
                (*value + max * 0.01, y + 0.75),
                ("sans-serif", 13),
            )))
            .map_err(|e| anyhow!("{e}"))?;
    }
    Ok(())
}

fn human(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.0} k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}
