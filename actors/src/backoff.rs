//! Capped exponential backoff, the one retry schedule of the project: the persistence actor's
//! writes, captured names, the recognizer's reconnects and the database connector.

use std::time::Duration;

/// The wait before retry number `attempt` (1-based; 0 counts as 1): `base`, doubling with each
/// attempt, never more than `max`.
pub fn delay(base: Duration, attempt: u32, max: Duration) -> Duration {
    base.saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(max)
}

#[cfg(test)]
mod tests {
    use super::delay;
    use std::time::Duration;

    #[test]
    fn doubles_from_the_base_and_stops_at_the_cap() {
        let (base, max) = (Duration::from_millis(200), Duration::from_secs(30));
        assert_eq!(delay(base, 0, max), base);
        assert_eq!(delay(base, 1, max), base);
        assert_eq!(delay(base, 2, max), Duration::from_millis(400));
        assert_eq!(delay(base, 8, max), Duration::from_millis(25_600));
        assert_eq!(delay(base, 9, max), max);
        assert_eq!(delay(base, u32::MAX, max), max);
    }
}
