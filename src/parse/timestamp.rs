//! Timestamp parsing for the formats logs actually use, hand-rolled because it runs once per
//! line on the hot path and the formats are few and fixed.

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn num(s: &[u8]) -> Option<u32> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    s.iter().try_fold(0u32, |acc, c| acc.checked_mul(10)?.checked_add(u32::from(c - b'0')))
}

fn month(s: &[u8]) -> Option<u32> {
    const MONTHS: [&[u8; 3]; 12] =
        [b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov", b"dec"];
    let s = s.get(..3)?;
    MONTHS.iter().position(|m| m.eq_ignore_ascii_case(s)).map(|i| i as u32 + 1)
}

/// Milliseconds from a fractional-seconds part like `.331758`.
fn fraction_ms(s: &[u8]) -> (i64, usize) {
    if s.first() != Some(&b'.') && s.first() != Some(&b',') {
        return (0, 0);
    }
    let digits = s[1..].iter().take_while(|c| c.is_ascii_digit()).count();
    let mut ms = 0i64;
    for i in 0..3 {
        ms = ms * 10 + s.get(1 + i).filter(|_| i < digits).map_or(0, |c| i64::from(c - b'0'));
    }
    (ms, 1 + digits)
}

/// Offset in seconds from `+0200`, `-07:00`, `Z` or nothing (UTC); returns bytes consumed.
fn zone(s: &[u8]) -> Option<(i64, usize)> {
    match s.first() {
        None => Some((0, 0)),
        Some(b'Z' | b'z') => Some((0, 1)),
        Some(&sign @ (b'+' | b'-')) => {
            let (hh, mm, used) = if s.get(3) == Some(&b':') {
                (num(s.get(1..3)?)?, num(s.get(4..6)?)?, 6)
            } else {
                (num(s.get(1..3)?)?, num(s.get(3..5)?)?, 5)
            };
            let secs = i64::from(hh * 3600 + mm * 60);
            Some((if sign == b'-' { -secs } else { secs }, used))
        }
        Some(_) => Some((0, 0)),
    }
}

fn assemble((y, mo, d): (i64, u32, u32), (h, mi, s): (u32, u32, u32), ms: i64, off: i64) -> Option<i64> {
    // Four-digit years only: a longer run of digits is not a date, and would overflow below.
    if !(0..=9999).contains(&y) || !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + i64::from(h * 3600 + mi * 60 + s) - off;
    secs.checked_mul(1000)?.checked_add(ms)
}

/// `10/Oct/2000:13:55:36 -0700` (common log format), also with a fraction or without a zone.
pub fn parse_clf(s: &str) -> Option<i64> {
    let b = s.trim().as_bytes();
    if b.len() < 20 || b[2] != b'/' || b[6] != b'/' || b[11] != b':' {
        return None;
    }
    let d = num(&b[0..2])?;
    let mo = month(&b[3..6])?;
    let y = i64::from(num(&b[7..11])?);
    let h = num(&b[12..14])?;
    let mi = num(&b[15..17])?;
    let sec = num(&b[18..20])?;
    let (ms, used) = fraction_ms(&b[20..]);
    let rest = trim_start(&b[20 + used..]);
    let (off, _) = zone(rest)?;
    assemble((y, mo, d), (h, mi, sec), ms, off)
}

fn trim_start(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|c| **c == b' ').count();
    &b[n..]
}

/// RFC 3339 and its everyday variants: `2015-05-13T23:39:43.945958Z`, `2016-11-03 22:53:18.33`,
/// `2025-11-25T10:30:45+02:00`, `2012/04/01 00:00:13`.
pub fn parse_iso(s: &str) -> Option<i64> {
    let b = s.trim().as_bytes();
    if b.len() < 19 || !matches!(b[4], b'-' | b'/') || b[7] != b[4] || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let y = i64::from(num(&b[0..4])?);
    let mo = num(&b[5..7])?;
    let d = num(&b[8..10])?;
    let h = num(&b[11..13])?;
    let mi = num(&b[14..16])?;
    let sec = num(&b[17..19])?;
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (ms, used) = fraction_ms(&b[19..]);
    let rest = trim_start(&b[19 + used..]);
    let (off, _) = zone(rest)?;
    assemble((y, mo, d), (h, mi, sec), ms, off)
}

/// `Fri Oct 08 17:08:41.203277 2021` (apache error log, C `ctime`).
pub fn parse_ctime(s: &str) -> Option<i64> {
    let mut parts = s.split_ascii_whitespace();
    let _weekday = parts.next()?;
    let mo = month(parts.next()?.as_bytes())?;
    let d = num(parts.next()?.as_bytes())?;
    let time = parts.next()?.as_bytes();
    let y = i64::from(num(parts.next()?.as_bytes())?);
    if time.len() < 8 || time[2] != b':' || time[5] != b':' {
        return None;
    }
    let (ms, _) = fraction_ms(&time[8..]);
    assemble((y, mo, d), (num(&time[0..2])?, num(&time[3..5])?, num(&time[6..8])?), ms, 0)
}

/// A number of seconds, milliseconds or nanoseconds since the epoch, told apart by magnitude.
pub fn from_epoch(v: f64) -> Option<i64> {
    if !v.is_finite() || v <= 0.0 {
        return None;
    }
    let ms = if v < 1e11 {
        v * 1000.0
    } else if v < 1e14 {
        v
    } else if v < 1e17 {
        v / 1000.0
    } else {
        v / 1e6
    };
    Some(ms as i64)
}

/// Any of the supported textual forms.
pub fn parse_any(s: &str) -> Option<i64> {
    parse_iso(s).or_else(|| parse_clf(s)).or_else(|| s.trim().parse::<f64>().ok().and_then(from_epoch))
}

/// Formats milliseconds since the epoch as RFC 3339 in UTC.
pub fn format_rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z", sod / 3600, sod % 3600 / 60, sod % 60)
}

/// The inverse of [`days_from_civil`].
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clf_with_zone() {
        // 2000-10-10T20:55:36Z
        assert_eq!(parse_clf("10/Oct/2000:13:55:36 -0700"), Some(971_211_336_000));
        assert_eq!(parse_clf("10/Oct/2000:20:55:36"), Some(971_211_336_000));
        assert_eq!(parse_clf("25/Sep/2018:06:05:27.584"), Some(1_537_855_527_584));
        assert_eq!(parse_clf("99/Foo/2000:13:55:36 -0700"), None);
    }

    /// Found by the `parse` fuzz target: a ten-digit year overflowed the milliseconds.
    #[test]
    fn years_beyond_four_digits_are_not_dates() {
        assert_eq!(parse_ctime("Sat Jun 01 11:23:08 2011111113"), None);
        assert_eq!(parse_any("Sat Jun 01 11:23:08 2011111113"), None);
        assert_eq!(parse_ctime("Sat Jun 01 11:23:08 2011"), Some(1_306_927_388_000));
    }

    #[test]
    fn iso_variants() {
        assert_eq!(parse_iso("2000-10-10T20:55:36Z"), Some(971_211_336_000));
        assert_eq!(parse_iso("2000-10-10T22:55:36+02:00"), Some(971_211_336_000));
        assert_eq!(parse_iso("2000-10-10 20:55:36.5"), Some(971_211_336_500));
        assert_eq!(parse_iso("2000-10-10T20:55:36.123456789Z"), Some(971_211_336_123));
        assert_eq!(parse_iso("not a date at all!!"), None);
    }

    #[test]
    fn epoch_magnitudes() {
        assert_eq!(from_epoch(1_703_373_474.5), Some(1_703_373_474_500));
        assert_eq!(from_epoch(1_703_373_474_500.0), Some(1_703_373_474_500));
        assert_eq!(from_epoch(1.756_494_783_340_876e18), Some(1_756_494_783_340));
    }

    #[test]
    fn formats_round_trip() {
        assert_eq!(format_rfc3339(971_211_336_123), "2000-10-10T20:55:36.123Z");
        assert_eq!(parse_iso(&format_rfc3339(1_764_000_000_000)), Some(1_764_000_000_000));
    }
}
