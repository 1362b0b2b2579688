//! The threshold and sustain rule of usage alarms, as a pure state machine: a level
//! (warning at or above the warning threshold, critical at or above the critical one) is
//! taken after that many consecutive samples at it, and the alarm clears after as many
//! consecutive samples below the warning threshold.

use strata_shared::model::AlarmSeverity;

/// Usage thresholds, percent, and how many consecutive samples make a level.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// At or above: warning.
    pub warning_pct: f64,
    /// At or above: critical.
    pub critical_pct: f64,
    /// Consecutive samples needed to change level (at least 1).
    pub sustain: u32,
}

impl Thresholds {
    /// The level one sample is at (`None` below the warning threshold).
    pub fn level(&self, pct: f64) -> Option<AlarmSeverity> {
        if pct >= self.critical_pct {
            Some(AlarmSeverity::Critical)
        } else if pct >= self.warning_pct {
            Some(AlarmSeverity::Warning)
        } else {
            None
        }
    }
}

/// One object's usage alarm level over its samples.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sustained {
    level: Option<AlarmSeverity>,
    /// Consecutive samples at or above critical.
    critical_run: u32,
    /// Consecutive samples at or above warning (critical ones included).
    warning_run: u32,
    /// Consecutive samples at or above warning but below critical.
    band_run: u32,
    /// Consecutive samples below warning.
    below_run: u32,
}

impl Sustained {
    /// Starts at a level (an alarm already active, e.g. after a manager restart).
    pub fn at(level: Option<AlarmSeverity>) -> Self {
        Self {
            level,
            ..Self::default()
        }
    }

    /// The current level (`None`: no alarm).
    pub fn level(&self) -> Option<AlarmSeverity> {
        self.level
    }

    /// Takes one sample; returns the level after it.
    pub fn observe(&mut self, pct: f64, t: &Thresholds) -> Option<AlarmSeverity> {
        let inc = |n: u32| n.saturating_add(1);
        match t.level(pct) {
            Some(AlarmSeverity::Critical) => {
                self.critical_run = inc(self.critical_run);
                self.warning_run = inc(self.warning_run);
                self.band_run = 0;
                self.below_run = 0;
            }
            Some(AlarmSeverity::Warning) => {
                self.critical_run = 0;
                self.warning_run = inc(self.warning_run);
                self.band_run = inc(self.band_run);
                self.below_run = 0;
            }
            None => {
                self.critical_run = 0;
                self.warning_run = 0;
                self.band_run = 0;
                self.below_run = inc(self.below_run);
            }
        }
        let n = t.sustain.max(1);
        self.level = match self.level {
            _ if self.critical_run >= n => Some(AlarmSeverity::Critical),
            Some(_) if self.below_run >= n => None,
            Some(AlarmSeverity::Critical) if self.band_run >= n => Some(AlarmSeverity::Warning),
            None if self.warning_run >= n => Some(AlarmSeverity::Warning),
            same => same,
        };
        self.level
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AlarmSeverity::{Critical, Warning};

    const T: Thresholds = Thresholds {
        warning_pct: 75.0,
        critical_pct: 90.0,
        sustain: 3,
    };

    fn run(s: &mut Sustained, samples: &[f64]) -> Vec<Option<AlarmSeverity>> {
        samples.iter().map(|&p| s.observe(p, &T)).collect()
    }

    #[test]
    fn one_sample_classifies_at_the_thresholds() {
        assert_eq!(T.level(74.9), None);
        assert_eq!(T.level(75.0), Some(Warning));
        assert_eq!(T.level(89.9), Some(Warning));
        assert_eq!(T.level(90.0), Some(Critical));
        assert_eq!(T.level(250.0), Some(Critical));
        assert_eq!(T.level(f64::NAN), None);
    }

    #[test]
    fn a_level_needs_consecutive_samples_to_trigger_and_to_clear() {
        let mut s = Sustained::default();
        assert_eq!(
            run(&mut s, &[80.0, 80.0, 10.0, 80.0, 80.0]),
            vec![None; 5],
            "a dip resets the count"
        );
        assert_eq!(run(&mut s, &[80.0]), vec![Some(Warning)]);
        // Below warning: stays until as many samples below in a row.
        assert_eq!(
            run(&mut s, &[10.0, 10.0, 80.0, 10.0, 10.0]),
            vec![Some(Warning); 5]
        );
        assert_eq!(run(&mut s, &[10.0]), vec![None]);
        assert_eq!(s.level(), None);
    }

    #[test]
    fn critical_escalates_and_falls_back_to_warning_after_the_sustain() {
        let mut s = Sustained::default();
        // Mixed warning and critical samples make a warning first.
        assert_eq!(
            run(&mut s, &[95.0, 80.0, 95.0]),
            vec![None, None, Some(Warning)]
        );
        assert_eq!(
            run(&mut s, &[95.0, 95.0]),
            vec![Some(Warning), Some(Critical)],
            "three critical samples in a row"
        );
        // Back in the warning band: warning after three there; a critical sample in between
        // restarts the count.
        assert_eq!(
            run(&mut s, &[80.0, 80.0, 95.0, 80.0, 80.0, 80.0]),
            vec![
                Some(Critical),
                Some(Critical),
                Some(Critical),
                Some(Critical),
                Some(Critical),
                Some(Warning)
            ]
        );
        // From critical straight to clear.
        let mut s = Sustained::at(Some(Critical));
        assert_eq!(
            run(&mut s, &[1.0, 1.0, 1.0]),
            vec![Some(Critical), Some(Critical), None]
        );
        // Straight to critical from nothing.
        let mut s = Sustained::default();
        assert_eq!(
            run(&mut s, &[99.0, 99.0, 99.0]),
            vec![None, None, Some(Critical)]
        );
    }

    #[test]
    fn sustain_of_one_follows_every_sample() {
        let t = Thresholds { sustain: 1, ..T };
        let mut s = Sustained::default();
        let got: Vec<_> = [80.0, 95.0, 80.0, 5.0]
            .iter()
            .map(|&p| s.observe(p, &t))
            .collect();
        assert_eq!(
            got,
            vec![Some(Warning), Some(Critical), Some(Warning), None]
        );
        // Zero counts as one.
        let t0 = Thresholds { sustain: 0, ..T };
        let mut s = Sustained::default();
        assert_eq!(s.observe(95.0, &t0), Some(Critical));
    }

    #[test]
    fn a_restored_level_is_kept_until_the_samples_say_otherwise() {
        let mut s = Sustained::at(Some(Warning));
        assert_eq!(run(&mut s, &[80.0, 10.0, 10.0]), vec![Some(Warning); 3]);
        assert_eq!(run(&mut s, &[10.0]), vec![None]);
    }
}
