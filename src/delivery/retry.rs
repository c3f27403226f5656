//! Retry maths, pure: when the next try of a failed delivery is due. The schedule's n-th delay
//! follows the n-th failed try, with ±20 % jitter; `Retry-After` on 429/503 is honoured within
//! [base, 2 × base]; after a timeout the wait is at least the timeout floor.

use std::time::Duration;

/// How a try failed, as far as retry timing cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Status(u16),
    Timeout,
    Network,
}

pub const JITTER: f64 = 0.2;

/// The delay before the next try after `tries_made` tries (at least 1) failed, or `None` when the
/// schedule is exhausted. `jitter` is uniform in [-1, 1].
pub fn next_delay(
    schedule: &[Duration],
    tries_made: u32,
    failure: Failure,
    retry_after: Option<Duration>,
    timeout_floor: Duration,
    jitter: f64,
) -> Option<Duration> {
    let base = *schedule.get((tries_made as usize).checked_sub(1)?)?;
    if let (Failure::Status(429 | 503), Some(wanted)) = (failure, retry_after) {
        return Some(wanted.clamp(base, base * 2));
    }
    let jittered = base.mul_f64(1.0 + JITTER * jitter.clamp(-1.0, 1.0));
    Some(match failure {
        Failure::Timeout => jittered.max(timeout_floor),
        _ => jittered,
    })
}

/// `Retry-After` as seconds or an HTTP date, relative to `now_unix`.
pub fn parse_retry_after(value: &str, now_unix: i64) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(v).ok()?.timestamp();
    Some(Duration::from_secs(
        when.saturating_sub(now_unix).max(0) as u64
    ))
}

/// A uniform sample in [-1, 1] from the OS generator (0 if it is unavailable).
pub fn jitter_sample() -> f64 {
    let mut b = [0u8; 8];
    match getrandom::fill(&mut b) {
        Ok(()) => (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0,
        Err(_) => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|s| Duration::from_secs(*s)).collect()
    }

    const FLOOR: Duration = Duration::from_secs(60);

    #[test]
    fn follows_the_schedule_within_jitter_then_gives_up() {
        let s = secs(&[5, 300, 1800]);
        for (tries, base) in [(1u32, 5.0f64), (2, 300.0), (3, 1800.0)] {
            for j in [-1.0, -0.3, 0.0, 0.7, 1.0] {
                let d = next_delay(&s, tries, Failure::Status(500), None, FLOOR, j).unwrap();
                let d = d.as_secs_f64();
                assert!(
                    d >= base * 0.8 - 1e-9 && d <= base * 1.2 + 1e-9,
                    "try {tries}: {d}"
                );
            }
        }
        assert_eq!(
            next_delay(&s, 1, Failure::Network, None, FLOOR, -1.0),
            Some(Duration::from_secs(4))
        );
        assert_eq!(
            next_delay(&s, 1, Failure::Network, None, FLOOR, 1.0),
            Some(Duration::from_secs(6))
        );
        assert_eq!(
            next_delay(&s, 4, Failure::Status(500), None, FLOOR, 0.0),
            None
        );
        assert_eq!(
            next_delay(&s, 0, Failure::Status(500), None, FLOOR, 0.0),
            None
        );
    }

    #[test]
    fn retry_after_is_clamped_to_base_and_twice_base() {
        let s = secs(&[10]);
        let ra = |v| {
            next_delay(
                &s,
                1,
                Failure::Status(429),
                Some(Duration::from_secs(v)),
                FLOOR,
                1.0,
            )
        };
        assert_eq!(ra(1), Some(Duration::from_secs(10)));
        assert_eq!(ra(15), Some(Duration::from_secs(15)));
        assert_eq!(ra(1000), Some(Duration::from_secs(20)));
        let other = next_delay(
            &s,
            1,
            Failure::Status(500),
            Some(Duration::from_secs(1000)),
            FLOOR,
            0.0,
        );
        assert_eq!(
            other,
            Some(Duration::from_secs(10)),
            "only 429 and 503 honour it"
        );
        let unavailable = next_delay(
            &s,
            1,
            Failure::Status(503),
            Some(Duration::from_secs(12)),
            FLOOR,
            0.0,
        );
        assert_eq!(unavailable, Some(Duration::from_secs(12)));
    }

    #[test]
    fn timeouts_wait_at_least_the_floor() {
        let s = secs(&[5, 300]);
        assert_eq!(
            next_delay(&s, 1, Failure::Timeout, None, FLOOR, 0.0),
            Some(FLOOR)
        );
        assert_eq!(
            next_delay(&s, 2, Failure::Timeout, None, FLOOR, 0.0),
            Some(Duration::from_secs(300))
        );
    }

    #[test]
    fn retry_after_parses_seconds_and_dates() {
        assert_eq!(parse_retry_after("120", 0), Some(Duration::from_secs(120)));
        let now = chrono::DateTime::parse_from_rfc2822("Wed, 21 Oct 2015 07:28:00 GMT")
            .unwrap()
            .timestamp();
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn jitter_samples_stay_in_range() {
        for _ in 0..1000 {
            let j = jitter_sample();
            assert!((-1.0..=1.0).contains(&j));
        }
    }
}
