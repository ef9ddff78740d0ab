//! The `--chart` PNG: three panels over the run's seconds — latency (client-side first audio
//! p99, per-turn p50 and p99, log scale), server RSS, and active calls. Text is drawn with the
//! DejaVu Sans font embedded from `assets/` (plotters' `ab_glyph` backend), so neither the
//! build nor a run needs fontconfig or system fonts.

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::report::RunReport;

static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

fn register_font() -> Result<(), String> {
    static ONCE: Once = Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        result = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT)
            .map_err(|_| "the embedded font does not load".to_owned());
    });
    result
}

pub(crate) fn draw(report: &RunReport, path: &Path) -> Result<(), String> {
    register_font()?;
    let err = |e: &dyn std::fmt::Display| format!("drawing {}: {e}", path.display());
    let root = BitMapBackend::new(path, (1200, 960)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let (title, body) = root.split_vertically(40);
    title
        .titled(
            &format!(
                "Switchboard load run: {} concurrent calls, {} placed, {} failed",
                report.concurrency,
                report.placed(),
                report.failed()
            ),
            ("sans-serif", 22),
        )
        .map_err(|e| err(&e))?;
    let panels = body.split_evenly((3, 1));
    let t_max = report.elapsed.as_secs_f64().max(1.0);

    // 1. Latency, log scale.
    let series = report.per_second();
    type Line = (&'static str, RGBColor, Vec<(f64, f64)>);
    let lines: [Line; 3] = [
        (
            "first audio p99 (client)",
            RGBColor(0x1f, 0x77, 0xb4),
            series
                .iter()
                .filter_map(|s| Some((s.t_s, s.first_audio.as_ref()?.p99)))
                .collect(),
        ),
        (
            "turn latency p50",
            RGBColor(0x2c, 0xa0, 0x2c),
            series
                .iter()
                .filter_map(|s| Some((s.t_s, s.turns.as_ref()?.p50)))
                .collect(),
        ),
        (
            "turn latency p99",
            RGBColor(0xd6, 0x27, 0x28),
            series
                .iter()
                .filter_map(|s| Some((s.t_s, s.turns.as_ref()?.p99)))
                .collect(),
        ),
    ];
    let all = lines.iter().flat_map(|(_, _, p)| p.iter().map(|(_, y)| *y));
    let y_max = all.clone().fold(1.0f64, f64::max) * 1.5;
    let y_min = all.fold(f64::INFINITY, f64::min).clamp(0.01, 1.0);
    let mut chart = ChartBuilder::on(&panels[0])
        .caption("latency (ms, log scale)", ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..t_max, (y_min..y_max).log_scale())
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .draw()
        .map_err(|e| err(&e))?;
    for (name, color, points) in lines {
        // Dots on the seconds that had samples: a line alone would hide the gaps.
        chart
            .draw_series(points.iter().map(|p| Circle::new(*p, 2, color.filled())))
            .map_err(|e| err(&e))?;
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;

    // 2. Server memory.
    let rss: Vec<(f64, f64)> = report
        .timeline
        .iter()
        .filter_map(|s| Some((s.t_s, s.rss_kb? as f64 / 1024.0)))
        .collect();
    let rss_max = rss.iter().map(|(_, y)| *y).fold(1.0f64, f64::max) * 1.2;
    let caption = if rss.is_empty() {
        "server RSS (MB) — not sampled (no --server-pid)"
    } else {
        "server RSS (MB)"
    };
    let mut chart = ChartBuilder::on(&panels[1])
        .caption(caption, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..t_max, 0f64..rss_max)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .draw()
        .map_err(|e| err(&e))?;
    chart
        .draw_series(LineSeries::new(
            rss,
            RGBColor(0x94, 0x67, 0xbd).stroke_width(2),
        ))
        .map_err(|e| err(&e))?;

    // 3. Active calls.
    let active: Vec<(f64, f64)> = report
        .timeline
        .iter()
        .map(|s| (s.t_s, s.active as f64))
        .collect();
    let active_max = active.iter().map(|(_, y)| *y).fold(1.0f64, f64::max) * 1.2;
    let mut chart = ChartBuilder::on(&panels[2])
        .caption("active calls", ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..t_max, 0f64..active_max)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .draw()
        .map_err(|e| err(&e))?;
    chart
        .draw_series(LineSeries::new(
            active,
            RGBColor(0xff, 0x7f, 0x0e).stroke_width(2),
        ))
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
