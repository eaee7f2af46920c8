//! Human units: sizes, durations, relative times and exact UTC times.

use maud::{html, Markup};

/// `bytes` in the largest of `units` (each `base` times the one before,
/// the first `base` bytes) that keeps it below `base`, to one decimal;
/// `None` below one `base`.
fn scaled(bytes: u64, base: f64, units: &[&'static str]) -> Option<(String, &'static str)> {
    if (bytes as f64) < base {
        return None;
    }
    let mut value = bytes as f64 / base;
    let mut unit = 0;
    while value >= base - 0.05 && unit < units.len() - 1 {
        value /= base;
        unit += 1;
    }
    Some((format!("{value:.1}"), units[unit]))
}

/// Bytes in SI units, as `docker images` prints them: `1.2 MB`.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["kB", "MB", "GB", "TB", "PB", "EB"];
    match scaled(bytes, 1000.0, &UNITS) {
        Some((value, unit)) => format!("{value} {unit}"),
        None => format!("{bytes} B"),
    }
}

/// A size with the exact byte count on hover and in `data-bytes`.
pub fn size_cell(bytes: u64) -> Markup {
    html! { span.size data-bytes=(bytes) title={ (bytes) " bytes" } { (size(bytes)) } }
}

/// Bytes in binary units, as quotas are usually set: `12.3 MiB`, `1 GiB`
/// (no `.0`).
pub fn size_binary(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    match scaled(bytes, 1024.0, &UNITS) {
        Some((value, unit)) => format!("{} {unit}", value.strip_suffix(".0").unwrap_or(&value)),
        None => format!("{bytes} B"),
    }
}

/// A binary-unit size with the exact byte count on hover and in `data-bytes`.
pub fn size_binary_cell(bytes: u64) -> Markup {
    html! { span.size data-bytes=(bytes) title={ (bytes) " bytes" } { (size_binary(bytes)) } }
}

/// How long something took: `850 ms`, `12.3 s`, `4 min 5 s`.
pub fn duration(ms: i64) -> String {
    match ms.max(0) {
        ms if ms < 1000 => format!("{ms} ms"),
        ms if ms < 60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        ms => format!("{} min {} s", ms / 60_000, ms % 60_000 / 1000),
    }
}

/// `2024-05-06T07:08:09Z` (RFC 3339, whole seconds) from Unix milliseconds.
pub fn iso(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{secs} s after 1970-01-01T00:00:00Z"))
}

/// `3 minutes ago`, `in 2 days`, `just now`.
pub fn relative(ms: i64, now_ms: i64) -> String {
    let delta = (now_ms - ms) / 1000;
    let (amount, future) = (delta.unsigned_abs(), delta < 0);
    if amount < 45 {
        return "just now".into();
    }
    let (n, unit) = match amount {
        a if a < 90 => (1, "minute"),
        a if a < 3600 => (a.div_ceil(60).min(59), "minute"),
        a if a < 86_400 => ((a + 1800) / 3600, "hour"),
        a if a < 30 * 86_400 => ((a + 43_200) / 86_400, "day"),
        a if a < 365 * 86_400 => ((a + 15 * 86_400) / (30 * 86_400), "month"),
        a => ((a + 182 * 86_400) / (365 * 86_400), "year"),
    };
    let plural = if n == 1 { "" } else { "s" };
    if future {
        format!("in {n} {unit}{plural}")
    } else {
        format!("{n} {unit}{plural} ago")
    }
}

/// A relative time with the exact time on hover.
pub fn when(ms: Option<i64>, now_ms: i64) -> Markup {
    match ms {
        Some(ms) => {
            let exact = iso(ms);
            html! { time datetime=(exact) title=(exact) { (relative(ms, now_ms)) } }
        }
        None => html! { span.muted { "never" } },
    }
}

/// A digest shortened for tables: `sha256:0123456789ab`.
pub fn short_digest(digest: &str) -> &str {
    match digest.split_once(':') {
        Some((algo, hex)) if hex.len() > 12 => &digest[..algo.len() + 1 + 12],
        _ => digest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_docker() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(999), "999 B");
        assert_eq!(size(1_234), "1.2 kB");
        assert_eq!(size(5_300_000), "5.3 MB");
        assert_eq!(size(999_999_999), "1.0 GB");
    }

    #[test]
    fn binary_sizes_read_like_quotas() {
        assert_eq!(size_binary(1000), "1000 B");
        assert_eq!(size_binary(12_900_000), "12.3 MiB");
        assert_eq!(size_binary(1 << 30), "1 GiB");
        assert_eq!(size_binary(1_000_000_000), "953.7 MiB");
        assert_eq!(size_binary((1 << 30) - 1), "1 GiB");
    }

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(duration(850), "850 ms");
        assert_eq!(duration(12_345), "12.3 s");
        assert_eq!(duration(245_000), "4 min 5 s");
        assert_eq!(duration(-5), "0 ms");
    }

    #[test]
    fn times_are_exact_and_relative() {
        assert_eq!(iso(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso(1_709_251_199_000), "2024-02-29T23:59:59Z");
        assert_eq!(iso(1_709_251_199_999), "2024-02-29T23:59:59Z");
        assert_eq!(iso(-1), "1969-12-31T23:59:59Z");
        let now = 1_000_000_000_000;
        assert_eq!(relative(now - 10_000, now), "just now");
        assert_eq!(relative(now - 180_000, now), "3 minutes ago");
        assert_eq!(relative(now - 2 * 86_400_000, now), "2 days ago");
        assert_eq!(relative(now + 3_600_000, now), "in 1 hour");
    }

    #[test]
    fn urls_keep_unreserved_characters_and_slashes() {
        use super::super::urlencode;
        assert_eq!(urlencode("a/b-c_d.e~f"), "a/b-c_d.e~f");
        assert_eq!(urlencode("a b&c=d?é"), "a%20b%26c%3Dd%3F%C3%A9");
    }

    #[test]
    fn digests_shorten() {
        assert_eq!(
            short_digest("sha256:0123456789abcdef0123"),
            "sha256:0123456789ab"
        );
        assert_eq!(short_digest("odd"), "odd");
    }
}
