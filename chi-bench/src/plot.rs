//! SVG plots of a report (`--plot DIR`): the round-trip latency CDFs (the floor's
//! beside the echo's at every sweep point) and the rates against the number of
//! clients; for the `remote` workload the same two, remote tasks beside their
//! ZeroMQ floor (`remote_latency_cdf.svg`, `remote_rate_vs_clients.svg`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use plotters::prelude::*;

use crate::report::{Report, Series};

fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("drawing a plot: {e}")
}

/// Writes every plot the report has data for; returns the files.
pub fn write_all(report: &Report, dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut out = Vec::new();
    let caption_tail = format!("{} · {}", report.meta.date, report.meta.host);
    if report.latency_cdf.len() > 1 {
        let p = dir.join("roundtrip_latency_cdf.svg");
        let title = format!("Round-trip latency, CDF ({caption_tail})");
        latency_cdf(&report.latency_cdf, &p, &title)?;
        out.push(p);
    }
    if !report.rate_vs_clients.is_empty() {
        let p = dir.join("rate_vs_clients.svg");
        let title = format!(
            "Tasks/s against clients ({caption_tail}; SPSC ring floor {:.1} M items/s)",
            report.floor.ring_per_sec / 1e6
        );
        rate_vs_clients(&report.rate_vs_clients, &p, &title)?;
        out.push(p);
    }
    if !report.remote_latency_cdf.is_empty() {
        let p = dir.join("remote_latency_cdf.svg");
        let title = format!("Remote round trip beside the ZeroMQ floor, CDF ({caption_tail})");
        latency_cdf(&report.remote_latency_cdf, &p, &title)?;
        out.push(p);
    }
    if !report.remote_rate_vs_clients.is_empty() {
        let p = dir.join("remote_rate_vs_clients.svg");
        let title = format!("Remote tasks/s against client threads ({caption_tail})");
        rate_vs_clients(&report.remote_rate_vs_clients, &p, &title)?;
        out.push(p);
    }
    Ok(out)
}

fn latency_cdf(series: &[Series], path: &Path, title: &str) -> Result<()> {
    let xs = || series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let lo = xs().fold(f64::INFINITY, f64::min).max(1.0) * 0.8;
    let hi = xs().fold(0.0, f64::max).max(lo * 10.0) * 1.25;
    let root = SVGBackend::new(path, (1000, 640)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d((lo..hi).log_scale(), 0f64..1.0)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("round trip (log scale)")
        .x_label_formatter(&|x| fmt_ns(*x))
        .y_desc("fraction of round trips ≤ x")
        .draw()
        .map_err(err)?;
    for (i, s) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(
                s.points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(err)?
            .label(s.label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

fn rate_vs_clients(series: &[Series], path: &Path, title: &str) -> Result<()> {
    let max_x = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(1.0, f64::max);
    let max_y = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1 / 1e6))
        .fold(0.1, f64::max)
        * 1.2;
    let root = SVGBackend::new(path, (1000, 640)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(0.5f64..max_x + 0.5, 0f64..max_y)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("clients")
        .y_desc("M tasks/s (all clients)")
        .x_labels(max_x as usize + 2)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .draw()
        .map_err(err)?;
    for (i, s) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let pts: Vec<(f64, f64)> = s.points.iter().map(|&(x, y)| (x, y / 1e6)).collect();
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
            .map_err(err)?
            .label(s.label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled())))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// Axis label of a latency.
fn fmt_ns(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.0} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.0} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}
