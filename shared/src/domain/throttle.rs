//! Abuse-limit counters (docs/api.md#abuse-limits): what a counter holds, when it refuses, and
//! what one more attempt makes of it. Attempts are counted *before* they are checked: the store
//! swaps a counter only if it is still the version this request read, so concurrent attempts
//! count one by one and a burst cannot all pass through one open slot.

/// One counter as stored. A missing or expired record reads as the default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counter {
    /// Attempts (or failures) counted so far.
    pub n: u32,
    /// Attempts before this time are refused (once past the free ones).
    pub wait_until: i64,
    /// Address + IP records: until when this IP counts as one the owner logged in from.
    pub known_until: i64,
    /// Address + IP records: the address record's epoch they were counted under; a completed
    /// reset moves the address's epoch, which voids every address + IP record at once.
    pub epoch: i64,
    /// Bumped by every write; a swap names the version it read (0: no record).
    pub version: u64,
}

/// How a counter turns attempts into refusals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// `free` attempts cost nothing; the n-th after that opens a wait of 2^(n-free) s, capped.
    Backoff { free: u32, cap_secs: i64 },
    /// At most `free` attempts until the window ends at `ends_at`.
    Window { free: u32, ends_at: i64 },
}

impl Rule {
    /// Seconds to wait if this counter refuses an attempt at `now`.
    pub fn refusal(self, counter: &Counter, now: i64) -> Option<i64> {
        match self {
            Self::Backoff { free, .. } => {
                (counter.n >= free && counter.wait_until > now).then(|| counter.wait_until - now)
            }
            Self::Window { free, ends_at } => (counter.n >= free).then(|| (ends_at - now).max(1)),
        }
    }

    /// The counter after one more attempt at `now` (the next version).
    pub fn after_attempt(self, counter: &Counter, now: i64) -> Counter {
        let n = counter.n.saturating_add(1);
        let wait_until = match self {
            Self::Backoff { free, cap_secs } if n >= free => {
                let exponent = (n - free).min(30);
                now + (1i64 << exponent).min(cap_secs)
            }
            Self::Backoff { .. } => 0,
            Self::Window { ends_at, .. } => ends_at,
        };
        Counter {
            n,
            wait_until,
            version: counter.version + 1,
            ..*counter
        }
    }
}

/// The start of the fixed window of `len` seconds that `now` falls in.
pub fn window_start(now: i64, len: i64) -> i64 {
    now - now.rem_euclid(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOGIN: Rule = Rule::Backoff {
        free: 5,
        cap_secs: 900,
    };

    #[test]
    fn five_failures_are_free_and_the_fifth_opens_a_one_second_wait() {
        let mut counter = Counter::default();
        for _ in 0..4 {
            assert_eq!(LOGIN.refusal(&counter, 100), None);
            counter = LOGIN.after_attempt(&counter, 100);
            assert_eq!(counter.wait_until, 0);
        }
        counter = LOGIN.after_attempt(&counter, 100);
        assert_eq!((counter.n, counter.wait_until), (5, 101));
        assert_eq!(LOGIN.refusal(&counter, 100), Some(1));
        assert_eq!(LOGIN.refusal(&counter, 101), None);
        counter = LOGIN.after_attempt(&counter, 101);
        assert_eq!(counter.wait_until, 103);
    }

    #[test]
    fn the_wait_is_capped() {
        let counter = Counter {
            n: 60,
            ..Counter::default()
        };
        assert_eq!(LOGIN.after_attempt(&counter, 0).wait_until, 900);
    }

    #[test]
    fn a_window_refuses_past_its_free_attempts_until_it_ends() {
        let rule = Rule::Window {
            free: 2,
            ends_at: 3600,
        };
        let mut counter = Counter::default();
        counter = rule.after_attempt(&counter, 10);
        counter = rule.after_attempt(&counter, 10);
        assert_eq!(rule.refusal(&counter, 10), Some(3590));
        assert_eq!(window_start(3599, 3600), 0);
        assert_eq!(window_start(3600, 3600), 3600);
    }
}
