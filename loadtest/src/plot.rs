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

/// One sample of a soak: the server at `seconds` into it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SoakSample {
    pub seconds: f64,
    pub rss_kib: f64,
    pub open_files: f64,
    pub disk_bytes: f64,
    pub cpu_seconds: f64,
}

/// Samples from bench/soak.sh's CSV (a header line, then
/// `seconds,rss_kib,open_files,disk_bytes,cpu_seconds` rows).
pub fn soak_samples(csv: &str) -> anyhow::Result<Vec<SoakSample>> {
    csv.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, line)| {
            let v: Vec<f64> = line
                .split(',')
                .map(|f| f.trim().parse::<f64>())
                .collect::<Result<_, _>>()
                .with_context(|| format!("row {}: {line:?}", i + 2))?;
            let [seconds, rss_kib, open_files, disk_bytes, cpu_seconds] = v[..] else {
                anyhow::bail!("row {}: 5 fields expected, got {}", i + 2, v.len());
            };
            Ok(SoakSample {
                seconds,
                rss_kib,
                open_files,
                disk_bytes,
                cpu_seconds,
            })
        })
        .collect()
}

/// A panel: caption, unit, points.
type Panel<'a> = (&'a str, &'a str, Vec<(f64, f64)>);

/// Four panels over the soak's minutes: RSS (MiB), open files, disk (MiB)
/// and CPU (share of a core between two samples).
pub fn soak_svg(path: &Path, samples: &[SoakSample]) -> anyhow::Result<()> {
    anyhow::ensure!(samples.len() >= 2, "a plot needs two samples or more");
    let root = SVGBackend::new(path, (1400, 800)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled("samvad serve under a soak", ("sans-serif", 22))?;
    let panels = root.split_evenly((2, 2));
    let minutes = |s: &SoakSample| s.seconds / 60.0;
    let cpu: Vec<(f64, f64)> = samples
        .windows(2)
        .map(|w| {
            let dt = (w[1].seconds - w[0].seconds).max(1.0);
            (
                minutes(&w[1]),
                (w[1].cpu_seconds - w[0].cpu_seconds) / dt * 100.0,
            )
        })
        .collect();
    let series: [Panel; 4] = [
        (
            "resident memory",
            "MiB",
            samples
                .iter()
                .map(|s| (minutes(s), s.rss_kib / 1024.0))
                .collect(),
        ),
        (
            "open files",
            "files",
            samples.iter().map(|s| (minutes(s), s.open_files)).collect(),
        ),
        (
            "data directory on disk",
            "MiB",
            samples
                .iter()
                .map(|s| (minutes(s), s.disk_bytes / 1048576.0))
                .collect(),
        ),
        ("CPU", "% of a core", cpu),
    ];
    let last = samples.last().map_or(1.0, minutes).max(0.1);
    for (panel, (caption, unit, points)) in panels.iter().zip(series) {
        let top = points.iter().map(|p| p.1).fold(1.0f64, f64::max) * 1.15;
        let mut chart = ChartBuilder::on(panel)
            .caption(caption, ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..last, 0f64..top)?;
        chart
            .configure_mesh()
            .x_desc("minutes")
            .y_desc(unit)
            .draw()?;
        chart.draw_series(LineSeries::new(points, PALETTE[0].stroke_width(2)))?;
    }
    root.present()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_soak_csv_reads_and_plots_and_a_bad_row_is_named() {
        let csv = "seconds,rss_kib,open_files,disk_bytes,cpu_seconds\n0,1024,20,100,0.5\n10,2048,22,200,1.5\n";
        let samples = soak_samples(csv).unwrap();
        assert_eq!(samples.len(), 2);
        assert_eq!(samples[1].rss_kib, 2048.0);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("soak.svg");
        soak_svg(&path, &samples).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.contains("open files") && svg.contains("resident memory"));
        let err = soak_samples("h\n1,2,3\n").unwrap_err().to_string();
        assert!(err.contains("row 2"), "{err}");
    }

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
