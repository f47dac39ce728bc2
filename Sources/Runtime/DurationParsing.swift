import Postgres

/// Parses durations like `250ms`, `90s`, `5m`, `2h`, `1d` or `1h30m`. A bare number means seconds.
///
/// Returns nil for anything else, and for values that are negative, not finite or longer than 100 years: the
/// checked parser is `CheckedInput.parseDuration`, this is its old name.
public func parseDuration(_ text: String) -> Duration? { CheckedInput.parseDuration(text) }
