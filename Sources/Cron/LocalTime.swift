import Foundation

/// Maps between instants and wall-clock time in one time zone.
///
/// "Wall seconds" count local wall-clock time as if it were UTC (days since 1970-01-01 times 86 400 plus
/// the time of day), so calendar arithmetic on them needs no time zone.
struct LocalTime: Sendable {
    let timeZone: TimeZone

    /// UTC offset in seconds in force at a Unix time.
    func offset(at unixSeconds: Int64) -> Int64 {
        Int64(timeZone.secondsFromGMT(for: Date(timeIntervalSince1970: TimeInterval(unixSeconds))))
    }

    /// Wall seconds of a Unix time.
    func wall(of unixSeconds: Int64) -> Int64 {
        unixSeconds + offset(at: unixSeconds)
    }

    /// The instant at which a wall-clock time is reached.
    ///
    /// - A wall time that exists once maps to that instant.
    /// - A wall time that exists twice (the repeated hour when clocks go back) maps to its FIRST occurrence.
    /// - A wall time that does not exist (the skipped hour when clocks go forward) maps to the first instant
    ///   after the gap, i.e. the transition itself (02:30 on a spring-forward night at 02:00 -> 03:00 new time).
    ///
    /// The mapping never decreases as the wall time increases, which the schedule search relies on.
    /// Offsets are found by sampling the zone 15 hours either side (UTC offsets lie within -12h...+14h),
    /// which assumes at most one transition in about 30 hours, true of every zone in use.
    func instant(ofWall wall: Int64) -> Int64 {
        let margin: Int64 = 15 * 3600
        var offsets = Set([offset(at: wall - margin), offset(at: wall + margin)])
        for candidate in offsets {
            offsets.insert(offset(at: wall - candidate))
        }
        let solutions = offsets.filter { offset(at: wall - $0) == $0 }.map { wall - $0 }
        if let first = solutions.min() {
            return first
        }
        // A gap: before the transition the wall clock reads less than `wall`, after it more.
        guard let largest = offsets.max(), let smallest = offsets.min() else { return wall }
        var before = wall - largest
        var after = wall - smallest
        guard self.wall(of: before) < wall, self.wall(of: after) > wall else { return after }
        while after - before > 1 {
            let middle = before + (after - before) / 2
            if self.wall(of: middle) > wall {
                after = middle
            } else {
                before = middle
            }
        }
        return after
    }
}
