//! Line charts as inline SVG, drawn on the server: the page needs no script, no CDN and no
//! build step, and works offline. Coordinates are in a 300 × 100 box stretched to the
//! figure's width (`preserveAspectRatio="none"`), with strokes that keep their pixel width
//! (`vector-effect`), so one drawing fits a phone and a desktop. Text is HTML around the SVG,
//! where stretching cannot distort it.

use std::fmt::Write;

use super::html::esc;

/// The data line's colour. Nothing else on the page uses it, so a screenshot test can find
/// the lines by it (see the gateway's `tests/status_browser.rs`).
pub const LINE: &str = "#1d4ed8";
const REFERENCE: &str = "#d97706";
const GRID: &str = "#e5e7eb";

const W: f64 = 300.0;
const H: f64 = 100.0;
/// Room above and below, so a line at 100% is not cut in half by the edge.
const PAD: f64 = 5.0;

pub struct Chart<'a> {
    /// An id-safe name ("availability"), used as the SVG's `data-chart`.
    pub name: &'a str,
    pub title: &'a str,
    /// The window's figure, shown beside the title.
    pub headline: String,
    /// One value per bucket, oldest first; `None` where nothing was measured (a gap).
    pub values: Vec<Option<f64>>,
    pub y_min: f64,
    pub y_max: f64,
    /// A dashed line at an objective, with its label.
    pub reference: Option<(f64, String)>,
    pub y_label: fn(f64) -> String,
    /// What the x axis starts at ("24 h ago").
    pub since: &'a str,
}

impl Chart<'_> {
    fn x(&self, i: usize) -> f64 {
        let n = self.values.len();
        if n <= 1 {
            return W / 2.0;
        }
        i as f64 * W / (n - 1) as f64
    }

    fn y(&self, v: f64) -> f64 {
        let span = self.y_max - self.y_min;
        let frac = if span > 0.0 {
            ((v - self.y_min) / span).clamp(0.0, 1.0)
        } else {
            0.5
        };
        PAD + (1.0 - frac) * (H - 2.0 * PAD)
    }

    /// Runs of consecutive measured points, as (index, value).
    fn runs(&self) -> Vec<Vec<(usize, f64)>> {
        let mut runs = vec![Vec::new()];
        for (i, v) in self.values.iter().enumerate() {
            match (v, runs.last_mut()) {
                (Some(v), Some(run)) => run.push((i, *v)),
                (None, Some(run)) if !run.is_empty() => runs.push(Vec::new()),
                _ => {}
            }
        }
        runs.retain(|r| !r.is_empty());
        runs
    }
}

/// The chart's `<figure>`: title and headline, the SVG, its axis labels.
pub fn figure(c: &Chart<'_>) -> String {
    let mut line = String::new();
    let mut area = String::new();
    let mut dots = String::new();
    let runs = c.runs();
    let measured: usize = runs.iter().map(Vec::len).sum();
    let bottom = H - PAD;
    for run in &runs {
        if let [(i, v)] = run.as_slice() {
            // A lone point has no segment to draw: a round-capped stub makes it a dot.
            let _ = write!(dots, "M{:.1} {:.1}h0.01", c.x(*i), c.y(*v));
            continue;
        }
        for (k, (i, v)) in run.iter().enumerate() {
            let cmd = if k == 0 { 'M' } else { 'L' };
            let _ = write!(line, "{cmd}{:.1} {:.1}", c.x(*i), c.y(*v));
        }
        if let (Some((first, _)), Some((last, _))) = (run.first(), run.last()) {
            let _ = write!(
                area,
                "M{:.1} {bottom:.1}{}L{:.1} {bottom:.1}Z",
                c.x(*first),
                &line_from(c, run),
                c.x(*last)
            );
        }
    }
    let mut svg = format!(
        "<svg class=\"plot\" viewBox=\"0 0 {W} {H}\" preserveAspectRatio=\"none\" role=\"img\" \
         aria-label=\"{}\" data-chart=\"{}\" data-points=\"{measured}\">",
        esc(c.title),
        esc(c.name)
    );
    let _ = write!(
        svg,
        "<path d=\"M0 {PAD}H{W}M0 {:.1}H{W}M0 {bottom}H{W}\" stroke=\"{GRID}\" \
         vector-effect=\"non-scaling-stroke\"/>",
        H / 2.0
    );
    if let Some((v, _)) = &c.reference {
        let _ = write!(
            svg,
            "<path class=\"ref\" d=\"M0 {:.1}H{W}\" stroke=\"{REFERENCE}\" stroke-dasharray=\"5 4\" \
             vector-effect=\"non-scaling-stroke\"/>",
            c.y(*v)
        );
    }
    if !area.is_empty() {
        let _ = write!(
            svg,
            "<path class=\"area\" d=\"{area}\" fill=\"{LINE}\" fill-opacity=\"0.1\" stroke=\"none\"/>"
        );
    }
    if !line.is_empty() {
        let _ = write!(
            svg,
            "<path class=\"line\" d=\"{line}\" fill=\"none\" stroke=\"{LINE}\" stroke-width=\"2.5\" \
             stroke-linejoin=\"round\" vector-effect=\"non-scaling-stroke\"/>"
        );
    }
    if !dots.is_empty() {
        let _ = write!(
            svg,
            "<path class=\"dot\" d=\"{dots}\" fill=\"none\" stroke=\"{LINE}\" stroke-width=\"7\" \
             stroke-linecap=\"round\" vector-effect=\"non-scaling-stroke\"/>"
        );
    }
    svg.push_str("</svg>");

    let empty = if measured == 0 {
        "<span class=\"empty\">No traffic in this period</span>"
    } else {
        ""
    };
    let reference = c
        .reference
        .as_ref()
        .map(|(_, label)| format!("<span class=\"reflabel\">- - {}</span>", esc(label)))
        .unwrap_or_default();
    format!(
        "<figure class=\"chart\"><figcaption><span class=\"title\">{title}</span>\
         <span class=\"headline\">{headline}</span></figcaption>\
         <div class=\"frame\">{svg}<span class=\"ylab top\">{top}</span>\
         <span class=\"ylab bottom\">{low}</span>{empty}</div>\
         <div class=\"xlab\"><span>{since}</span>{reference}<span>now</span></div></figure>",
        title = esc(c.title),
        headline = esc(&c.headline),
        top = esc(&(c.y_label)(c.y_max)),
        low = esc(&(c.y_label)(c.y_min)),
        since = esc(c.since),
    )
}

/// The "L x y" points of a run after its first, for the area under it.
fn line_from(c: &Chart<'_>, run: &[(usize, f64)]) -> String {
    let mut s = String::new();
    for (i, v) in run {
        let _ = write!(s, "L{:.1} {:.1}", c.x(*i), c.y(*v));
    }
    s
}

/// The smallest of 1, 2, 5 × 10ⁿ at or above `v` (an axis top that reads well).
pub fn nice_ceil(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let mut step = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if step * m >= v {
            step *= m;
            break;
        }
    }
    step
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn chart(values: Vec<Option<f64>>) -> Chart<'static> {
        Chart {
            name: "t",
            title: "T <x>",
            headline: "1".into(),
            values,
            y_min: 0.0,
            y_max: 10.0,
            reference: Some((5.0, "objective".into())),
            y_label: |v| format!("{v}"),
            since: "24 h ago",
        }
    }

    #[test]
    fn gaps_split_the_line_and_lone_points_are_dots() {
        let svg = figure(&chart(vec![Some(0.0), Some(10.0), None, Some(5.0), None]));
        // x: 0, 75, 150, 225, 300; y: 0 → 95, 10 → 5, 5 → 50.
        assert!(svg.contains("d=\"M0.0 95.0L75.0 5.0\""), "{svg}");
        assert!(
            svg.contains("class=\"dot\" d=\"M225.0 50.0h0.01\""),
            "{svg}"
        );
        assert!(svg.contains("data-points=\"3\""));
        assert!(svg.contains("T &lt;x&gt;"));
        assert!(!svg.contains("No traffic"));
        let empty = figure(&chart(vec![None, None]));
        assert!(empty.contains("No traffic") && !empty.contains("class=\"line\""));
    }

    #[test]
    fn axis_tops_are_round() {
        assert_eq!(nice_ceil(0.7), 1.0);
        assert_eq!(nice_ceil(1_500.0), 2_000.0);
        assert_eq!(nice_ceil(2_001.0), 5_000.0);
        assert_eq!(nice_ceil(10_000.0), 10_000.0);
        assert_eq!(nice_ceil(0.0), 1.0);
    }
}
