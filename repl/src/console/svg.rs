//! Charts as SVG, drawn on the server: lines of points over an x axis (a day's totals sync by
//! sync, a maturity curve with its 10th–90th percentile band). Every point carries its values
//! as `data-` attributes, so what a chart shows can be checked against the CLI's answer.

use std::fmt::Write;

use super::html::escape;

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 48.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 28.0;

/// One point of a series: its x, y, a label for the x axis and the attributes it carries.
#[derive(Debug, Clone)]
pub struct Point {
    pub x: f64,
    pub y: f64,
    pub label: String,
    pub data: Vec<(&'static str, String)>,
}

/// A series: a name, a colour and its points.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub colour: &'static str,
    pub points: Vec<Point>,
    /// Drawn as a shaded band between `low` and `high` of each point instead of a line.
    pub band: Option<Vec<(f64, f64)>>,
}

/// A line chart of `series` over a shared x range, each series scaled to its own maximum
/// when `own_scale` (installs and spend on one chart), or to the common one.
pub fn lines(id: &str, series: &[Series], own_scale: bool, y_label: &str) -> String {
    let xs: Vec<f64> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.x))
        .collect();
    let (x_min, x_max) = xs
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
            (a.min(*x), b.max(*x))
        });
    if !x_min.is_finite() {
        return "<p class=\"note\">Nothing to draw.</p>".to_string();
    }
    let common_max = series
        .iter()
        .flat_map(|s| {
            s.points
                .iter()
                .map(|p| p.y)
                .chain(s.band.iter().flatten().map(|(_, h)| *h))
        })
        .fold(0.0f64, f64::max);
    let x_of = |x: f64| {
        if x_max > x_min {
            LEFT + (x - x_min) / (x_max - x_min) * (WIDTH - LEFT - RIGHT)
        } else {
            LEFT + (WIDTH - LEFT - RIGHT) / 2.0
        }
    };
    let mut out = format!(
        "<figure><figcaption class=\"note\">{caption}</figcaption><svg id=\"{id}\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
         viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\">\
         <rect x=\"0\" y=\"0\" width=\"{WIDTH}\" height=\"{HEIGHT}\" fill=\"#fff\"/>\
         <line x1=\"{LEFT}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"#8a94a8\"/>\
         <line x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{b}\" stroke=\"#8a94a8\"/>",
        caption = escape(y_label),
        b = HEIGHT - BOTTOM,
        r = WIDTH - RIGHT,
    );
    if !own_scale && common_max > 0.0 {
        let _ = write!(
            out,
            "<text x=\"{x}\" y=\"{y}\" text-anchor=\"end\">{max}</text>",
            x = LEFT - 4.0,
            y = TOP + 10.0,
            max = format_number(common_max)
        );
    }
    // X labels: first, last and a few between.
    let mut labelled: Vec<&Point> = series
        .first()
        .map(|s| s.points.iter().collect())
        .unwrap_or_default();
    let step = (labelled.len() / 6).max(1);
    labelled = labelled
        .into_iter()
        .enumerate()
        .filter(|(i, _)| i % step == 0)
        .map(|(_, p)| p)
        .collect();
    for p in labelled {
        let _ = write!(
            out,
            "<text x=\"{x:.1}\" y=\"{y}\" text-anchor=\"middle\">{l}</text>",
            x = x_of(p.x),
            y = HEIGHT - 10.0,
            l = escape(&p.label)
        );
    }
    for (k, s) in series.iter().enumerate() {
        let max = if own_scale {
            s.points.iter().map(|p| p.y).fold(0.0f64, f64::max)
        } else {
            common_max
        };
        let y_of = |y: f64| {
            let h = HEIGHT - TOP - BOTTOM;
            if max > 0.0 {
                HEIGHT - BOTTOM - (y / max).clamp(0.0, 1.2) * h / 1.2 * 1.0
            } else {
                HEIGHT - BOTTOM
            }
        };
        if let Some(band) = &s.band {
            let upper: Vec<String> = s
                .points
                .iter()
                .zip(band)
                .map(|(p, (_, h))| format!("{:.1},{:.1}", x_of(p.x), y_of(*h)))
                .collect();
            let lower: Vec<String> = s
                .points
                .iter()
                .zip(band)
                .rev()
                .map(|(p, (l, _))| format!("{:.1},{:.1}", x_of(p.x), y_of(*l)))
                .collect();
            let _ = write!(
                out,
                "<polygon points=\"{} {}\" fill=\"{}\" fill-opacity=\"0.18\"/>",
                upper.join(" "),
                lower.join(" "),
                s.colour
            );
        }
        let path: Vec<String> = s
            .points
            .iter()
            .map(|p| format!("{:.1},{:.1}", x_of(p.x), y_of(p.y)))
            .collect();
        let _ = write!(
            out,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\"/>",
            path.join(" "),
            s.colour
        );
        for p in &s.points {
            let data: String = p
                .data
                .iter()
                .map(|(k, v)| format!(" data-{k}=\"{}\"", escape(v)))
                .collect();
            let _ = write!(
                out,
                "<circle class=\"point\" data-series=\"{name}\"{data} cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"3\" fill=\"{c}\"><title>{name} {l}: {v}</title></circle>",
                name = escape(&s.name),
                x = x_of(p.x),
                y = y_of(p.y),
                c = s.colour,
                l = escape(&p.label),
                v = format_number(p.y),
            );
        }
        let _ = write!(
            out,
            "<text x=\"{x}\" y=\"{y}\" fill=\"{c}\">■ {name}{scale}</text>",
            x = LEFT + 8.0 + 180.0 * k as f64,
            y = TOP + 10.0,
            c = s.colour,
            name = escape(&s.name),
            scale = if own_scale {
                format!(" (max {})", format_number(max))
            } else {
                String::new()
            }
        );
    }
    out.push_str("</svg></figure>");
    out
}

/// A number as a person reads it: no more decimals than it needs, up to two.
pub fn format_number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        let text = format!("{v:.2}");
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_carry_their_values_and_nothing_breaks_on_one_point() {
        let series = vec![Series {
            name: "installs".into(),
            colour: "#2f6fd6",
            points: vec![Point {
                x: 1.0,
                y: 42.0,
                label: "v1".into(),
                data: vec![("version", "1".into()), ("value", "42".into())],
            }],
            band: None,
        }];
        let svg = lines("day", &series, true, "");
        assert!(svg.contains("data-version=\"1\"") && svg.contains("data-value=\"42\""));
        assert!(!svg.contains("NaN"));
        assert_eq!(format_number(3.0), "3");
        assert_eq!(format_number(3.456), "3.46");
        assert_eq!(format_number(0.5), "0.5");
    }
}
