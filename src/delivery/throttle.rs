//! Throttling: `throttleRate` (deliveries per second) of an endpoint, and of an application
//! across all its endpoints, enforced where tries start (the dispatcher).
//!
//! Each limiter is a GCRA (generic cell rate algorithm, a token bucket kept as one "theoretical
//! arrival time"): a burst of `B` tries may start at once, then one every `T`. The promise is that
//! no window of one second ever holds more than `rate` starts, so `T` is the interval of the rate
//! `rate - (B - 1)`: the most starts in a one-second window is then `1 + (rate - B) + (B - 1)`.
//! `T` is sized for a window of 1.05 s, so requests that reach the receiver up to 50 ms unevenly
//! (connection reuse, scheduling) still keep its seconds under the rate. `B` is small (a
//! twentieth of the rate, 1 to 10), so the sustained rate stays within 10 % of the configured
//! one.
//!
//! A throttled endpoint's tasks stay in the queue, due as they were: the dispatcher only lists
//! the endpoint again at the time its limiter lets the next try start. Nothing but the limiter
//! (one number per throttled endpoint or application) lives in memory.

/// Most tries a limiter lets start at once.
const MAX_BURST: u32 = 10;
/// The window (µs) `rate` starts are spread over: a second and a margin for network jitter.
const WINDOW_US: u64 = 1_050_000;

/// One throttle: `rate` starts per second at most, over any one-second window.
#[derive(Debug, Clone)]
pub struct Limiter {
    rate: u16,
    burst: u32,
    /// Microseconds between starts, sustained.
    interval_us: i64,
    /// The theoretical arrival time (µs): when the bucket would be full again.
    tat_us: i64,
}

impl Limiter {
    pub fn new(rate: u16) -> Limiter {
        let rate_n = u32::from(rate.max(1));
        let burst = (rate_n / 20).clamp(1, MAX_BURST);
        let sustained = u64::from(rate_n - (burst - 1));
        Limiter {
            rate: rate.max(1),
            burst,
            // Rounded up: a shorter interval would let one start too many into a window.
            interval_us: WINDOW_US.div_ceil(sustained) as i64,
            tat_us: 0,
        }
    }

    pub fn rate(&self) -> u16 {
        self.rate
    }

    /// How far ahead of now the arrival time may run: the burst.
    fn tolerance_us(&self) -> i64 {
        i64::from(self.burst - 1) * self.interval_us
    }

    /// How many of `want` tries may start at `now_ms`.
    pub fn available(&self, now_ms: i64, want: usize) -> usize {
        let now = now_ms.saturating_mul(1000);
        let mut tat = self.tat_us;
        let mut n = 0;
        while n < want && tat - self.tolerance_us() <= now {
            tat = tat.max(now) + self.interval_us;
            n += 1;
        }
        n
    }

    /// Record `n` tries started at `now_ms` (at most what `available` allowed).
    pub fn take(&mut self, now_ms: i64, n: usize) {
        let now = now_ms.saturating_mul(1000);
        for _ in 0..n {
            self.tat_us = self.tat_us.max(now) + self.interval_us;
        }
    }

    /// When the next try may start (ms; at or before `now_ms` if one may now).
    pub fn next_start_ms(&self) -> i64 {
        let at = self.tat_us - self.tolerance_us();
        // Rounded up to the millisecond: earlier would find the limiter still closed.
        (at + 999).div_euclid(1000)
    }

    /// Whether the limiter is back to full (so forgetting it changes nothing).
    pub fn idle(&self, now_ms: i64) -> bool {
        self.tat_us <= now_ms.saturating_mul(1000)
    }
}

/// How many of `want` tries may start at `now_ms` under every limiter given, and, when none
/// may, the time one may.
pub fn allowance(limiters: &[&Limiter], now_ms: i64, want: usize) -> (usize, i64) {
    let mut n = want;
    let mut next = now_ms;
    for l in limiters {
        n = n.min(l.available(now_ms, want));
        next = next.max(l.next_start_ms());
    }
    (n, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drive a limiter as the dispatcher does (start what is allowed, come back when told) with
    /// an endless backlog, and count starts in every one-second window.
    fn starts(rate: u16, millis: i64) -> Vec<i64> {
        let mut l = Limiter::new(rate);
        let mut now = 1_000_000;
        let end = now + millis;
        let mut out = Vec::new();
        while now < end {
            let n = l.available(now, 64);
            l.take(now, n);
            out.extend(vec![now; n]);
            now = l.next_start_ms().max(now + 1);
        }
        out
    }

    #[test]
    fn no_second_ever_holds_more_than_the_rate() {
        for rate in [1u16, 3, 7, 20, 50, 100, 333, 1000, 5000] {
            let s = starts(rate, 5_000);
            let mut most = 0;
            let mut j = 0;
            for i in 0..s.len() {
                while s[j] <= s[i] - 1000 {
                    j += 1;
                }
                most = most.max(i + 1 - j);
            }
            assert!(most <= rate as usize, "rate {rate}: {most} in one second");
            // And it is not much slower than the rate, sustained.
            let per_s = s.len() as f64 / 5.0;
            assert!(per_s >= f64::from(rate) * 0.9, "rate {rate}: {per_s}/s");
        }
    }

    #[test]
    fn a_small_burst_then_spacing() {
        let mut l = Limiter::new(100);
        assert_eq!(l.available(0, 64), 5, "a twentieth of the rate at once");
        l.take(0, 5);
        assert_eq!(l.available(0, 64), 0);
        assert!(l.next_start_ms() > 0 && l.next_start_ms() <= 12);
        assert!(!l.idle(0));
        assert!(l.idle(1_000));
        let slow = Limiter::new(2);
        assert_eq!(slow.available(0, 64), 1);
        let (n, _) = allowance(&[&l, &slow], 0, 64);
        assert_eq!(n, 0, "the strictest limiter decides");
    }
}
