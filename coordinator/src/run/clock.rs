//! Stored form of `Instant`s: monotonic instants mean nothing in another
//! process, so they are written as wall-clock times and read back relative
//! to the new process's clock. A restart keeps durations roughly right.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

fn to_wall(t: Instant) -> u64 {
    let now_i = Instant::now();
    let now_w = SystemTime::now();
    let wall = match now_i.checked_duration_since(t) {
        Some(age) => now_w - age,
        None => now_w + t.duration_since(now_i),
    };
    wall.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn from_wall(ms: u64) -> Instant {
    let wall = UNIX_EPOCH + Duration::from_millis(ms);
    let now_i = Instant::now();
    match SystemTime::now().duration_since(wall) {
        Ok(age) => now_i.checked_sub(age).unwrap_or(now_i),
        Err(ahead) => now_i + ahead.duration(),
    }
}

pub fn serialize<S: Serializer>(t: &Instant, s: S) -> Result<S::Ok, S::Error> {
    to_wall(*t).serialize(s)
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Instant, D::Error> {
    u64::deserialize(d).map(from_wall)
}

pub mod option {
    use super::*;

    pub fn serialize<S: Serializer>(t: &Option<Instant>, s: S) -> Result<S::Ok, S::Error> {
        t.map(to_wall).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Instant>, D::Error> {
        Option::<u64>::deserialize(d).map(|o| o.map(from_wall))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_instant_survives_the_round_trip_to_within_a_few_ms() {
        let t = std::time::Instant::now() - std::time::Duration::from_secs(5);
        let back = super::from_wall(super::to_wall(t));
        let diff = if back > t { back - t } else { t - back };
        assert!(diff < std::time::Duration::from_millis(50), "{diff:?}");
    }
}
