//! Figures, their targets, and the results table (or JSON).

use serde::Serialize;

/// What a figure is judged against.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Target {
    /// The value must not exceed this.
    AtMost(f64),
    /// The value must reach at least this.
    AtLeast(f64),
    /// Reported only.
    Report,
}

/// A figure's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The target is met.
    Pass,
    /// The target is missed.
    Miss,
    /// No target, or not judged (quick mode).
    Report,
}

/// One measured figure.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    /// The scenario it belongs to (`capture`, `reader`, …).
    pub scenario: &'static str,
    /// What was measured.
    pub measure: String,
    /// The value, in `unit`.
    pub value: f64,
    /// `x` for ratios, `ms`, `changes/s`, `bytes`, `MiB`, `s`.
    pub unit: &'static str,
    /// The target.
    pub target: Target,
    /// The verdict (always `report` in quick mode).
    pub verdict: Verdict,
    /// The raw numbers behind the figure (times, sizes, counts).
    pub detail: String,
}

impl Figure {
    /// A figure judged against `target` (unless `judge` is false: quick mode).
    pub fn new(
        scenario: &'static str,
        measure: impl Into<String>,
        value: f64,
        unit: &'static str,
        target: Target,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            scenario,
            measure: measure.into(),
            value,
            unit,
            target,
            verdict: Verdict::Report,
            detail: detail.into(),
        }
    }

    /// Sets the verdict from the target.
    pub fn judge(&mut self) {
        self.verdict = match self.target {
            Target::AtMost(t) if self.value <= t => Verdict::Pass,
            Target::AtLeast(t) if self.value >= t => Verdict::Pass,
            Target::Report => Verdict::Report,
            _ => Verdict::Miss,
        };
    }
}

/// Formats a value with a precision that suits its size.
pub fn number(v: f64, unit: &str) -> String {
    let body = if unit == "x" {
        format!("{v:.2}")
    } else if v.abs() >= 10_000.0 {
        let n = v.round() as i64;
        let s = n.abs().to_string();
        let mut out = String::new();
        for (i, ch) in s.chars().enumerate() {
            if i > 0 && (s.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(ch);
        }
        if n < 0 {
            format!("-{out}")
        } else {
            out
        }
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    };
    if unit == "x" {
        format!("{body}×")
    } else {
        format!("{body} {unit}")
    }
}

fn target_text(f: &Figure) -> String {
    match f.target {
        Target::AtMost(t) => format!("≤ {}", number(t, f.unit)),
        Target::AtLeast(t) => format!("≥ {}", number(t, f.unit)),
        Target::Report => "report".into(),
    }
}

/// Prints the results table.
pub fn print_table(figures: &[Figure]) {
    let rows: Vec<[String; 5]> = figures
        .iter()
        .map(|f| {
            [
                f.scenario.to_string(),
                f.measure.clone(),
                number(f.value, f.unit),
                target_text(f),
                match f.verdict {
                    Verdict::Pass => "pass".into(),
                    Verdict::Miss => "MISS".into(),
                    Verdict::Report => "-".into(),
                },
            ]
        })
        .collect();
    let head = ["scenario", "measure", "value", "target", "verdict"];
    let mut width = head.map(|h| h.chars().count());
    for r in &rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: [&str; 5]| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(width).enumerate() {
            let pad = w - c.chars().count();
            if i == 2 {
                s.push_str(&" ".repeat(pad));
                s.push_str(c);
            } else {
                s.push_str(c);
                s.push_str(&" ".repeat(pad));
            }
            s.push_str("  ");
        }
        println!("{}", s.trim_end());
    };
    line(head);
    line(width.map(|w| "-".repeat(w)).each_ref().map(String::as_str));
    for r in &rows {
        line(r.each_ref().map(String::as_str));
    }
}
