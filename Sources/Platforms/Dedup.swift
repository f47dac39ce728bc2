import Foundation

/// Offset paging (TikTok `page`/`page_size`, and any cursor that is an offset underneath) shifts when an entity is
/// created between two page requests of one list: the item at a page boundary comes again on the next page. An item
/// is never skipped by an insertion (entities are never removed from these lists: deleted ones keep a DELETED
/// status), so keeping one copy per key gives the complete list. The last copy wins (it is the freshest).
extension Array where Element == AdEntity {
    /// One entity per id, in first-seen order, each with its last-seen values.
    public func uniqueByID() -> [AdEntity] {
        var index: [String: Int] = [:]
        var out: [AdEntity] = []
        out.reserveCapacity(count)
        for e in self {
            if let i = index[e.id] {
                out[i] = e
            } else {
                index[e.id] = out.count
                out.append(e)
            }
        }
        return out
    }
}

extension Array where Element == DailyMetric {
    /// One row per (level, entity, day), in first-seen order, each with its last-seen values.
    public func uniqueByEntityDay() -> [DailyMetric] {
        var index: [EntityDayKey: Int] = [:]
        var out: [DailyMetric] = []
        out.reserveCapacity(count)
        for m in self {
            let key = EntityDayKey(level: m.level, id: m.entityId, date: m.date)
            if let i = index[key] {
                out[i] = m
            } else {
                index[key] = out.count
                out.append(m)
            }
        }
        return out
    }
}

private struct EntityDayKey: Hashable {
    var level: ReportLevel
    var id: String
    var date: LocalDate
}
