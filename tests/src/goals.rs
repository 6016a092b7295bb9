//! The performance goals of issue 16, as every bench prints them: the
//! figure, its baseline measured in the same run, the ratio, and whether
//! the goal is met. One format for all benches, so `cargo bench` output can
//! be read (and grepped: `GOAL`) in one place.

use std::fmt::Write as _;

/// One goal's result in one run.
#[derive(Debug, Clone)]
pub struct Goal {
    /// The goal's number in issue 16 and a short name, e.g. `1 engine floor`.
    pub goal: &'static str,
    /// What was measured, with its unit (`1,230,000 msg/s`).
    pub figure: String,
    /// The baseline from the same run, with its unit and what it is.
    pub baseline: String,
    /// figure ÷ baseline, in the direction the target reads.
    pub ratio: f64,
    /// The target in words (`≥ 1,000,000 msg/s and ≤ 2.0× the relay's time`).
    pub target: &'static str,
    pub met: bool,
}

impl Goal {
    /// `GOAL 1 engine floor: … | baseline … | ratio 1.23 | goal … | MET`.
    pub fn line(&self) -> String {
        format!(
            "GOAL {}: {} | baseline {} | ratio {:.2} | goal {} | {}",
            self.goal,
            self.figure,
            self.baseline,
            self.ratio,
            self.target,
            if self.met { "MET" } else { "NOT MET" }
        )
    }
}

/// Print the goals (and return them as a markdown table for
/// `SLUICE_BENCH_MD`).
pub fn report(goals: &[Goal]) -> String {
    println!();
    for goal in goals {
        println!("{}", goal.line());
    }
    let mut md = String::from(
        "| goal | figure | baseline (same run) | ratio | target | met |\n|---|---|---|---:|---|---|\n",
    );
    for g in goals {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.2} | {} | {} |",
            g.goal,
            g.figure,
            g.baseline,
            g.ratio,
            g.target,
            if g.met { "yes" } else { "**no**" }
        );
    }
    md
}

/// `1234567.8` → `1,234,568`.
pub fn thousands(x: f64) -> String {
    let digits = format!("{:.0}", x.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The median of some samples (they are sorted in place).
pub fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1000.0), "1,000");
        assert_eq!(thousands(1234567.8), "1,234,568");
    }
}
