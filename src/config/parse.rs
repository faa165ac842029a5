//! The value parsers of the command line's flags: each says what it accepts.

use std::time::Duration;

use emulated_link::Rate;

/// `on` or `off` (a value, not a bare flag: `--webtransport off`).
pub(super) fn on_off(text: &str) -> Result<bool, String> {
    match text {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("{text:?} is neither on nor off")),
    }
}

/// A history of 1 to 1,000,000 messages.
pub(super) fn history_size(text: &str) -> Result<usize, String> {
    match text.parse() {
        Ok(n @ 1..=1_000_000) => Ok(n),
        _ => Err(format!("{text:?} is not a history size from 1 to 1000000")),
    }
}

/// A Redis URL (`redis://…`); the only shared bus there is.
pub(super) fn bus_url(text: &str) -> Result<String, String> {
    if text.starts_with("redis://") && text.len() > "redis://".len() {
        Ok(text.to_owned())
    } else {
        Err(format!("{text:?} is not a bus URL; expected redis://HOST:PORT[/DB]"))
    }
}

/// A duration of the emulated link, at most a minute (`100ms`, `1.5s`, `0`).
pub(super) fn link_duration(text: &str) -> Result<Duration, String> {
    let duration = emulated_link::parse_duration(text).map_err(|error| error.to_string())?;
    if duration <= Duration::from_secs(60) {
        Ok(duration)
    } else {
        Err(format!("{text} is more than a minute; an emulated link is for the demo"))
    }
}

/// A bandwidth of the emulated link, in `tc`'s units (`1mbit`, `400kbit`).
pub(super) fn link_rate(text: &str) -> Result<Rate, String> {
    text.parse().map_err(|error: emulated_link::ParseError| error.to_string())
}

/// Parses a positive number of seconds, fractions allowed (`0.5`).
pub(super) fn seconds(text: &str) -> Result<Duration, String> {
    match seconds_or_zero(text)? {
        Duration::ZERO => Err(format!("{text} must be more than 0 seconds")),
        duration => Ok(duration),
    }
}

/// Parses a number of seconds from 0 to a day, fractions allowed.
pub(super) fn seconds_or_zero(text: &str) -> Result<Duration, String> {
    let secs: f64 = text.parse().map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if (0.0..=86_400.0).contains(&secs) {
        Ok(Duration::from_secs_f64(secs))
    } else {
        Err(format!("{text} must be from 0 to 86400 seconds"))
    }
}

/// Messages per second, more than 0 and at most a million; `off` is no limit (infinity).
pub(super) fn publish_rate(text: &str) -> Result<f64, String> {
    if text == "off" {
        return Ok(f64::INFINITY);
    }
    match text.parse::<f64>() {
        Ok(rate) if rate > 0.0 && rate <= 1e6 => Ok(rate),
        _ => Err(format!("{text:?} is neither `off` nor a rate from more than 0 to 1000000 per second")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_must_be_positive_seconds() {
        assert_eq!(seconds("0.5"), Ok(Duration::from_millis(500)));
        assert!(seconds("0").is_err());
        assert!(seconds("soon").is_err());
        assert_eq!(seconds_or_zero("0"), Ok(Duration::ZERO));
    }
}
