//! The demo's report picture: one panel per kind of signal (temperature, off-gas, smoke, UPS
//! runtime, ...) with the values the agent read, the configured thresholds as dashed lines,
//! and a vertical line at each decision and step and at the scenario's power cut. Drawn
//! once as SVG and once as PNG (text in the PNG uses the bundled DejaVu Sans, so no system
//! fonts are needed).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

use super::view::{Level, MarkKind, View};
use crate::config::Kind;

const FONT: &[u8] = include_bytes!("font/DejaVuSans.ttf");
const WIDTH: u32 = 1400;
const PANEL_HEIGHT: u32 = 300;
const HEADER: u32 = 70;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("nothing to draw: the agent reported no sensor values")]
    Empty,
    #[error("cannot create {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("drawing {path}: {message}")]
    Draw { path: PathBuf, message: String },
    #[error("the bundled font is not a font")]
    Font,
}

/// A threshold line of one panel.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    pub label: String,
    pub value: f64,
}

/// The kinds drawn, in order, with their axis titles.
const PANELS: &[(Kind, &str)] = &[
    (Kind::Temperature, "temperature (°C)"),
    (Kind::Offgas, "off-gas (ppm)"),
    (Kind::Smoke, "smoke obscuration (%/m)"),
    (Kind::Runtime, "UPS runtime left (s)"),
    (Kind::Charge, "UPS charge (%)"),
    (Kind::Voltage, "UPS input (V)"),
];

fn register_font() -> Result<(), ReportError> {
    static ONCE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ok = *ONCE.get_or_init(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, FONT).is_ok()
            && plotters::style::register_font("sans-serif", FontStyle::Bold, FONT).is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(ReportError::Font)
    }
}

/// Writes `report.svg` and `report.png` into `dir`; returns their paths.
pub fn write(
    view: &View,
    thresholds: &BTreeMap<String, Vec<Threshold>>,
    dir: &Path,
) -> Result<Vec<PathBuf>, ReportError> {
    register_font()?;
    std::fs::create_dir_all(dir).map_err(|source| ReportError::Dir {
        path: dir.to_path_buf(),
        source,
    })?;
    let panels: Vec<(Kind, &str)> = PANELS
        .iter()
        .copied()
        .filter(|(kind, _)| {
            view.series
                .values()
                .any(|s| s.kind == Some(*kind) && !s.points.is_empty())
        })
        .collect();
    if panels.is_empty() {
        return Err(ReportError::Empty);
    }
    let height = HEADER + PANEL_HEIGHT * panels.len() as u32;
    let svg = dir.join("report.svg");
    let png = dir.join("report.png");
    let draw_err = |path: &Path, e: &dyn std::fmt::Display| ReportError::Draw {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    {
        let root = SVGBackend::new(&svg, (WIDTH, height)).into_drawing_area();
        draw(&root, view, thresholds, &panels).map_err(|e| draw_err(&svg, &e))?;
        root.present().map_err(|e| draw_err(&svg, &e))?;
    }
    {
        let root = BitMapBackend::new(&png, (WIDTH, height)).into_drawing_area();
        draw(&root, view, thresholds, &panels).map_err(|e| draw_err(&png, &e))?;
        root.present().map_err(|e| draw_err(&png, &e))?;
    }
    Ok(vec![svg, png])
}

fn mark_style(kind: MarkKind) -> (RGBColor, u32) {
    match kind {
        MarkKind::Level(Level::Normal) => (RGBColor(0, 120, 0), 1),
        MarkKind::Level(Level::Warning) => (RGBColor(200, 140, 0), 2),
        MarkKind::Level(Level::Alarm) => (RGBColor(220, 80, 0), 2),
        MarkKind::Level(Level::Critical) => (RGBColor(200, 0, 0), 3),
        MarkKind::RunbookStarted => (RGBColor(0, 70, 200), 2),
        MarkKind::Step { ok: true } => (RGBColor(150, 150, 150), 1),
        MarkKind::Step { ok: false } => (RGBColor(200, 0, 0), 1),
        MarkKind::Safe => (RGBColor(0, 150, 0), 4),
        MarkKind::NotSafe => (RGBColor(200, 0, 0), 4),
    }
}

const SERIES_COLOURS: &[RGBColor] = &[
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    view: &View,
    thresholds: &BTreeMap<String, Vec<Threshold>>,
    panels: &[(Kind, &str)],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    root.fill(&WHITE)?;
    let (header, body) = root.split_vertically(HEADER);
    let title = format!(
        "Firebreak demo: {}, played at {}× speed",
        view.scenario, view.speed
    );
    header.draw_text(
        &title,
        &("sans-serif", 26).into_font().color(&BLACK),
        (15, 8),
    )?;
    let subtitle = match &view.outcome {
        Some(o) => view.verdict(o),
        None => "The run ended without a safe-to-cut verdict.".to_string(),
    };
    header.draw_text(
        &subtitle,
        &("sans-serif", 17).into_font().color(&BLACK),
        (15, 42),
    )?;

    // Scenario minutes on the x axis.
    let x_max = view
        .duration_s
        .max(view.sim_s)
        .max(view.power_cut_s.unwrap_or(0.0))
        .max(1.0)
        / 60.0;
    let min = |s: f64| s / 60.0;
    let areas = body.split_evenly((panels.len(), 1));
    for (n, (area, (kind, title))) in areas.iter().zip(panels).enumerate() {
        let series: Vec<(&String, &super::view::Series)> = view
            .series
            .iter()
            .filter(|(_, s)| s.kind == Some(*kind) && !s.points.is_empty())
            .collect();
        let lines = thresholds.get(kind.as_str()).cloned().unwrap_or_default();
        let values = series
            .iter()
            .flat_map(|(_, s)| s.points.iter().map(|p| p.1))
            .chain(lines.iter().map(|t| t.value));
        let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
        let pad = ((hi - lo) * 0.08).max(0.5);
        let (y_lo, y_hi) = (lo - pad, hi + pad);
        let mut chart = ChartBuilder::on(area)
            .margin(12)
            .caption(*title, ("sans-serif", 18))
            .x_label_area_size(32)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..x_max, y_lo..y_hi)?;
        chart
            .configure_mesh()
            .light_line_style(RGBColor(235, 235, 235))
            .x_desc(if n + 1 == panels.len() {
                "scenario time (minutes)"
            } else {
                ""
            })
            .x_label_formatter(&|x| format!("{x}"))
            .label_style(("sans-serif", 13))
            .draw()?;
        for t in &lines {
            let style = RGBColor(120, 120, 120).stroke_width(1);
            chart.draw_series(DashedLineSeries::new(
                vec![(0.0, t.value), (x_max, t.value)],
                8,
                5,
                style,
            ))?;
            chart.draw_series(std::iter::once(Text::new(
                format!("{} {}", t.label, t.value),
                (x_max * 0.005, t.value),
                ("sans-serif", 12).into_font().color(&RGBColor(90, 90, 90)),
            )))?;
        }
        for mark in &view.marks {
            let (colour, width) = mark_style(mark.kind);
            chart.draw_series(LineSeries::new(
                vec![(min(mark.sim_s), y_lo), (min(mark.sim_s), y_hi)],
                colour.stroke_width(width),
            ))?;
        }
        if let Some(cut) = view.power_cut_s {
            chart.draw_series(LineSeries::new(
                vec![(min(cut), y_lo), (min(cut), y_hi)],
                BLACK.stroke_width(4),
            ))?;
            if n == 0 {
                chart.draw_series(std::iter::once(Text::new(
                    "power cut",
                    (min(cut), y_hi),
                    ("sans-serif", 13).into_font().color(&BLACK),
                )))?;
            }
        }
        if n == 0 {
            // Labels of the decisions (not of every step) along the top panel, staggered
            // so that close ones stay readable.
            let labelled = view
                .marks
                .iter()
                .filter(|m| !matches!(m.kind, MarkKind::Step { .. }));
            for (i, mark) in labelled.enumerate() {
                let (colour, _) = mark_style(mark.kind);
                let y = y_hi - (y_hi - y_lo) * (0.08 + 0.09 * (i % 4) as f64);
                chart.draw_series(std::iter::once(Text::new(
                    mark.label.clone(),
                    (min(mark.sim_s), y),
                    ("sans-serif", 13).into_font().color(&colour),
                )))?;
            }
        }
        for (i, (id, s)) in series.iter().enumerate() {
            let colour = SERIES_COLOURS[i % SERIES_COLOURS.len()];
            chart
                .draw_series(LineSeries::new(
                    s.points.iter().map(|&(t, v)| (min(t), v)),
                    colour.stroke_width(2),
                ))?
                .label(id.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::MiddleRight)
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(180, 180, 180))
            .label_font(("sans-serif", 13))
            .draw()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::status::fixtures::{sensor, status, zone};
    use crate::detect::SensorState;
    use crate::events::Event;

    #[test]
    fn the_report_is_an_svg_and_a_png_with_every_signal_and_decision() {
        let mut view = View::new("test-fire", "a fire", 10.0, 600.0, Some(540.0));
        for i in 0..60 {
            let t = i as f64 * 10.0;
            let mut z = zone("b3", Level::Normal, "evacuate-b3");
            z.sensors = vec![
                sensor(
                    "b3.temp.row1",
                    Kind::Temperature,
                    SensorState::Ok,
                    23.0 + t / 10.0,
                ),
                sensor("b3.offgas.1", Kind::Offgas, SensorState::Ok, t / 2.0),
            ];
            view.apply_status(&status(vec![z]), t);
        }
        view.apply_event(
            &Event::ZoneLevel {
                zone: "b3".into(),
                from: Level::Normal,
                to: Level::Critical,
                evidence: Vec::new(),
            },
            300.0,
        );
        view.apply_event(
            &Event::SafeToCutPower {
                zone: "b3".into(),
                incident: "b3-1".into(),
                dry_run_steps: Vec::new(),
            },
            320.0,
        );
        let thresholds = BTreeMap::from([(
            "temperature".to_string(),
            vec![Threshold {
                label: "alarm_above".into(),
                value: 57.0,
            }],
        )]);
        let dir = tempfile::tempdir().unwrap();
        let files = write(&view, &thresholds, dir.path()).unwrap();
        let svg = std::fs::read_to_string(&files[0]).unwrap();
        for text in [
            "b3.temp.row1",
            "b3.offgas.1",
            "alarm_above 57",
            "critical",
            "power cut",
            "SAFE TO CUT POWER",
        ] {
            assert!(svg.contains(text), "the SVG lacks `{text}`");
        }
        let png = std::fs::read(&files[1]).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert!(
            png.len() > 20_000,
            "a PNG of {} bytes is too small to hold the chart",
            png.len()
        );
    }

    #[test]
    fn a_run_without_values_is_an_error_not_an_empty_picture() {
        let view = View::new("empty", "", 1.0, 60.0, None);
        let dir = tempfile::tempdir().unwrap();
        let e = write(&view, &BTreeMap::new(), dir.path()).unwrap_err();
        assert!(matches!(e, ReportError::Empty), "{e}");
    }
}
