//! Writes the Prometheus text exposition format, version 0.0.4: one `# HELP` and
//! `# TYPE` per family, then its samples, label values escaped.
//!
//! It formats only; what is counted is decided elsewhere.

use std::fmt::Write as _;

use super::HistogramSnapshot;

/// The body of a `/metrics` answer, family by family.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

/// Label pairs of one sample.
pub type Labels<'a> = &'a [(&'a str, &'a str)];

impl Exposition {
    /// Starts a family. `kind` is `counter`, `gauge` or `histogram`.
    pub fn family(&mut self, name: &str, kind: &str, help: &str) -> &mut Self {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
        self
    }

    pub fn sample(&mut self, name: &str, labels: Labels<'_>, value: f64) -> &mut Self {
        self.out.push_str(name);
        write_labels(&mut self.out, labels, None);
        let _ = writeln!(self.out, " {}", number(value));
        self
    }

    /// The `_bucket`, `_sum` and `_count` samples of one histogram.
    pub fn histogram(
        &mut self,
        name: &str,
        labels: Labels<'_>,
        h: &HistogramSnapshot,
    ) -> &mut Self {
        for (bound, count) in &h.buckets {
            let _ = write!(self.out, "{name}_bucket");
            write_labels(&mut self.out, labels, Some(&number(*bound)));
            let _ = writeln!(self.out, " {count}");
        }
        let _ = write!(self.out, "{name}_bucket");
        write_labels(&mut self.out, labels, Some("+Inf"));
        let _ = writeln!(self.out, " {}", h.count);
        self.sample(&format!("{name}_sum"), labels, h.sum_seconds);
        self.sample(&format!("{name}_count"), labels, h.count as f64);
        self
    }

    pub fn finish(self) -> String {
        self.out
    }
}

fn write_labels(out: &mut String, labels: Labels<'_>, le: Option<&str>) {
    if labels.is_empty() && le.is_none() {
        return;
    }
    out.push('{');
    let mut first = true;
    for (k, v) in labels.iter().copied().chain(le.map(|le| ("le", le))) {
        if !first {
            out.push(',');
        }
        first = false;
        let _ = write!(out, "{k}=\"{}\"", escape(v));
    }
    out.push('}');
}

fn escape(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// Integers without a fraction, the rest as Rust prints them (`0.005`, `NaN`, `+Inf`).
fn number(v: f64) -> String {
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned();
    }
    if v.fract() == 0.0 && v.abs() < 1e15 {
        return format!("{}", v as i64);
    }
    format!("{v}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_samples_and_escaping() {
        let mut e = Exposition::default();
        e.family("x_total", "counter", "Things.\nCounted.")
            .sample("x_total", &[("job", "a\"b\\c\nd")], 3.0)
            .sample("x_total", &[], 0.5);
        e.family("h_seconds", "histogram", "H.").histogram(
            "h_seconds",
            &[("op", "get")],
            &HistogramSnapshot {
                buckets: vec![(0.005, 1), (1.0, 2)],
                count: 3,
                sum_seconds: 4.25,
            },
        );
        assert_eq!(
            e.finish(),
            "# HELP x_total Things.\\nCounted.\n\
             # TYPE x_total counter\n\
             x_total{job=\"a\\\"b\\\\c\\nd\"} 3\n\
             x_total 0.5\n\
             # HELP h_seconds H.\n\
             # TYPE h_seconds histogram\n\
             h_seconds_bucket{op=\"get\",le=\"0.005\"} 1\n\
             h_seconds_bucket{op=\"get\",le=\"1\"} 2\n\
             h_seconds_bucket{op=\"get\",le=\"+Inf\"} 3\n\
             h_seconds_sum{op=\"get\"} 4.25\n\
             h_seconds_count{op=\"get\"} 3\n"
        );
    }
}
