//! Writing gauges in the Prometheus text format (version 0.0.4) by hand, for the state read at
//! scrape time: a `# HELP` and `# TYPE` line once per family, then its samples, label values
//! escaped as the format requires (worker names come from registrations, so they may hold
//! anything).

use std::fmt::Write;

/// Starts a gauge family.
pub fn gauge(out: &mut String, name: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} gauge");
}

/// Starts a counter family (a count kept by the gateway's state, read at scrape time).
pub fn counter(out: &mut String, name: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} counter");
}

/// One sample. Non-finite values are left out: a gauge nobody could measure is absent.
pub fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    if !value.is_finite() {
        return;
    }
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (key, value)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(key);
            out.push_str("=\"");
            escape_into(out, value);
            out.push('"');
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

fn escape_into(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_escaped_and_formatted() {
        let mut out = String::new();
        gauge(&mut out, "x_ratio", "A ratio.");
        sample(&mut out, "x_ratio", &[("worker", "a\"b\\c\nd")], 0.5);
        sample(&mut out, "x_ratio", &[], 2.0);
        sample(&mut out, "x_ratio", &[], f64::NAN);
        assert_eq!(
            out,
            "# HELP x_ratio A ratio.\n# TYPE x_ratio gauge\nx_ratio{worker=\"a\\\"b\\\\c\\nd\"} 0.5\nx_ratio 2\n"
        );
    }
}
