//! The per-endpoint circuit breaker, pure: how many tries may run at once to one endpoint.
//!
//! An endpoint starts "closed" at a few tries at once and earns more with each success, up to
//! `delivery.endpoint_concurrency` (TCP's slow start, so an unknown endpoint cannot take many
//! slots before it has shown it answers). After [`TRIP_AFTER`] tries in a row that time out, fail
//! to connect or answer 5xx, 408 or 429, it "opens": one probe at a time, so a dead or hanging
//! endpoint holds one delivery slot, not dozens. The first success closes it again (and the
//! dispatcher then brings the endpoint's waiting retries forward). Other 4xx answers say the
//! endpoint is up and refuses one message: they leave the breaker as it is.

/// Tries at once for an endpoint with no record yet, and after it recovers.
pub const INITIAL_LIMIT: usize = 4;
/// Failures in a row that open the breaker.
pub const TRIP_AFTER: u32 = 3;

/// What a try said about its endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Success,
    /// Timeout, network error, 5xx, 408, 429: the endpoint is down or overloaded.
    Unhealthy,
    /// Any other answer (a 4xx about one message), or no try at all.
    Neutral,
}

impl Signal {
    pub fn of(status: u16, failed: bool) -> Signal {
        match (failed, status) {
            (false, _) => Signal::Success,
            (true, 0 | 408 | 429 | 500..) => Signal::Unhealthy,
            (true, _) => Signal::Neutral,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Closed,
    Open,
}

impl State {
    pub fn text(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Breaker {
    cap: usize,
    limit: usize,
    failures: u32,
    state: State,
    /// When it last opened (monotonic milliseconds of the caller's clock).
    opened_at: Option<i64>,
}

impl Breaker {
    pub fn new(cap: usize) -> Breaker {
        Breaker {
            cap,
            limit: INITIAL_LIMIT.min(cap).max(1),
            failures: 0,
            state: State::Closed,
            opened_at: None,
        }
    }

    /// Tries that may run at once now.
    pub fn limit(&self) -> usize {
        match self.state {
            State::Closed => self.limit,
            State::Open => 1,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn opened_at(&self) -> Option<i64> {
        self.opened_at
    }

    /// Take a try's signal; true when this success closed an open breaker (the endpoint is back).
    pub fn record(&mut self, signal: Signal, now_ms: i64) -> bool {
        match signal {
            Signal::Success => {
                self.failures = 0;
                let was_open = self.state == State::Open;
                if was_open {
                    self.state = State::Closed;
                    self.opened_at = None;
                    self.limit = INITIAL_LIMIT.min(self.cap).max(1);
                } else {
                    self.limit = (self.limit + 1).min(self.cap);
                }
                was_open
            }
            Signal::Unhealthy => {
                self.failures = self.failures.saturating_add(1);
                if self.state == State::Closed && self.failures >= TRIP_AFTER {
                    self.state = State::Open;
                    self.opened_at = Some(now_ms);
                }
                false
            }
            Signal::Neutral => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn successes_widen_failures_trip_and_one_success_closes() {
        let mut b = Breaker::new(64);
        assert_eq!(b.limit(), INITIAL_LIMIT);
        for _ in 0..100 {
            b.record(Signal::Success, 0);
        }
        assert_eq!(b.limit(), 64, "capped by endpoint_concurrency");
        b.record(Signal::Unhealthy, 10);
        b.record(Signal::Unhealthy, 11);
        assert_eq!(
            b.state(),
            State::Closed,
            "two failures are not a pattern yet"
        );
        b.record(Signal::Success, 12);
        b.record(Signal::Unhealthy, 13);
        b.record(Signal::Unhealthy, 14);
        assert_eq!(b.state(), State::Closed, "a success resets the count");
        b.record(Signal::Unhealthy, 15);
        assert_eq!(b.state(), State::Open);
        assert_eq!(b.limit(), 1, "one probe at a time");
        assert_eq!(b.opened_at(), Some(15));
        b.record(Signal::Neutral, 16);
        assert_eq!(b.state(), State::Open, "a 4xx proves nothing");
        assert!(
            b.record(Signal::Success, 20),
            "closing reports the recovery"
        );
        assert_eq!(b.state(), State::Closed);
        assert_eq!(b.limit(), INITIAL_LIMIT);
        assert!(!b.record(Signal::Success, 21));
    }

    #[test]
    fn signals_from_answers() {
        assert_eq!(Signal::of(200, false), Signal::Success);
        assert_eq!(Signal::of(0, true), Signal::Unhealthy);
        assert_eq!(Signal::of(503, true), Signal::Unhealthy);
        assert_eq!(Signal::of(429, true), Signal::Unhealthy);
        assert_eq!(Signal::of(400, true), Signal::Neutral);
        assert_eq!(Signal::of(410, true), Signal::Neutral);
        assert_eq!(Breaker::new(1).limit(), 1, "never above the cap");
    }
}
