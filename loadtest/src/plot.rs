//! SVG plots of latency: over the run (p50 and p99 per second) and its
//! distribution (latency by quantile, the tail stretched out), one line per
//! run so that systems or rates can be laid over each other.

use std::path::Path;

use anyhow::Context;
use plotters::prelude::*;

use crate::report::{Quantile, Timeline};

/// One run's latency, as plotted.
pub struct Series<'a> {
    pub label: String,
    pub timeline: &'a [Timeline],
    pub distribution: &'a [Quantile],
}

const PALETTE: [RGBColor; 6] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
];

/// "Nines" of a quantile: 0.9 → 1, 0.99 → 2, 0.999 → 3, capped at 5 (the
/// maximum), so that the tail gets as much room as the body.
fn nines(q: f64) -> f64 {
    (-(1.0 - q).max(1e-5).log10()).min(5.0)
}

fn ms(us: u64) -> f64 {
    (us as f64 / 1000.0).max(0.01)
}

/// The colour of each series: one per label, in the order labels first
/// appear (repeated runs of one system share it), and whether the series
/// is the first of its label (the one named in the legend).
fn colours(series: &[Series]) -> Vec<(RGBColor, bool)> {
    let mut labels: Vec<&str> = Vec::new();
    series
        .iter()
        .map(|s| match labels.iter().position(|l| *l == s.label) {
            Some(i) => (PALETTE[i % PALETTE.len()], false),
            None => {
                labels.push(&s.label);
                (PALETTE[(labels.len() - 1) % PALETTE.len()], true)
            }
        })
        .collect()
}

/// Writes both panels to `path` (SVG) with `title` above them.
pub fn latency_svg(path: &Path, title: &str, series: &[Series]) -> anyhow::Result<()> {
    let colours = colours(series);
    let root = SVGBackend::new(path, (1400, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 22))?;
    let (left, right) = root.split_horizontally(700);

    let max_ms = series
        .iter()
        .flat_map(|s| {
            s.timeline
                .iter()
                .map(|t| ms(t.p99_us))
                .chain(s.distribution.iter().map(|q| ms(q.us)))
        })
        .fold(1.0f64, f64::max)
        * 1.5;
    let min_ms = series
        .iter()
        .flat_map(|s| {
            s.timeline
                .iter()
                .map(|t| ms(t.p50_us))
                .chain(s.distribution.iter().map(|q| ms(q.us)))
        })
        .fold(max_ms, f64::min)
        / 2.0;
    let last_second = series
        .iter()
        .flat_map(|s| s.timeline.iter().map(|t| t.second))
        .max()
        .unwrap_or(1)
        .max(1);

    let mut over_time = ChartBuilder::on(&left)
        .caption(
            "delivery latency per second (solid p99, dashed p50)",
            ("sans-serif", 16),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d(0u32..last_second + 1, (min_ms..max_ms).log_scale())?;
    over_time
        .configure_mesh()
        .x_desc("second of the run")
        .y_desc("ms")
        .draw()?;
    for (s, &(color, first)) in series.iter().zip(&colours) {
        let line = over_time.draw_series(LineSeries::new(
            s.timeline.iter().map(|t| (t.second, ms(t.p99_us))),
            color.stroke_width(2),
        ))?;
        if first {
            line.label(s.label.clone()).legend(move |(x, y)| {
                PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2))
            });
        }
        over_time.draw_series(DashedLineSeries::new(
            s.timeline.iter().map(|t| (t.second, ms(t.p50_us))),
            6,
            4,
            color.stroke_width(1),
        ))?;
    }
    over_time
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;

    let mut by_quantile = ChartBuilder::on(&right)
        .caption("delivery latency distribution", ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..5.0, (min_ms..max_ms).log_scale())?;
    by_quantile
        .configure_mesh()
        .x_desc("quantile")
        .y_desc("ms")
        .x_labels(6)
        .x_label_formatter(&|x| match x.round() as i32 {
            0 => "0%".into(),
            1 => "90%".into(),
            2 => "99%".into(),
            3 => "99.9%".into(),
            4 => "99.99%".into(),
            _ => "max".into(),
        })
        .draw()?;
    for (s, &(color, first)) in series.iter().zip(&colours) {
        let line = by_quantile.draw_series(LineSeries::new(
            s.distribution.iter().map(|q| (nines(q.quantile), ms(q.us))),
            color.stroke_width(2),
        ))?;
        if first {
            line.label(s.label.clone()).legend(move |(x, y)| {
                PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2))
            });
        }
    }
    by_quantile
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    root.present()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nines_stretch_the_tail() {
        assert_eq!(nines(0.0), 0.0);
        assert!((nines(0.9) - 1.0).abs() < 1e-9);
        assert!((nines(0.999) - 3.0).abs() < 1e-9);
        assert_eq!(nines(1.0), 5.0);
    }

    #[test]
    fn writes_an_svg_with_every_series() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("latency.svg");
        let timeline = [
            Timeline {
                second: 0,
                count: 10,
                p50_us: 400,
                p99_us: 900,
            },
            Timeline {
                second: 1,
                count: 10,
                p50_us: 500,
                p99_us: 1200,
            },
        ];
        let distribution = [
            Quantile {
                quantile: 0.5,
                us: 450,
            },
            Quantile {
                quantile: 0.99,
                us: 1100,
            },
        ];
        let series = [
            Series {
                label: "samvad/ws".into(),
                timeline: &timeline,
                distribution: &distribution,
            },
            Series {
                label: "ejabberd/ws".into(),
                timeline: &timeline,
                distribution: &distribution,
            },
        ];
        latency_svg(&path, "chat at 1000 msg/s", &series).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("samvad/ws") && svg.contains("ejabberd/ws"));
        assert!(svg.contains("chat at 1000 msg/s"));
        assert!(svg.matches("<polyline").count() >= 6, "lines drawn");
        let c = colours(&series);
        assert_ne!(c[0].0, c[1].0, "two systems, two colours");
        let again = [
            Series {
                label: "a".into(),
                timeline: &timeline,
                distribution: &distribution,
            },
            Series {
                label: "a".into(),
                timeline: &timeline,
                distribution: &distribution,
            },
        ];
        let c = colours(&again);
        assert_eq!(
            (c[0].0, c[0].1, c[1].1),
            (c[1].0, true, false),
            "repeats share one"
        );
    }
}
