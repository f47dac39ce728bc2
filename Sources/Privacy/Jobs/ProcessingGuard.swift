import Foundation
import Postgres

/// The check every job makes before it calls an ad platform (policy sections 2.2, 7, 8): the connection exists
/// and is `active`, and its organization is neither deleted nor restricted (`restrict` or `object`). Made at
/// execution time, so jobs queued before a deletion, restriction or disconnect end without a call.
/// Returns the reason a call may not go ahead, or nil (also for an unknown connection, which the caller reports).
public func platformCallRefusal(connectionID id: Int64, pool: PGPool) async throws -> String? {
    guard
        let r = try await pool.query(
            """
            SELECT c.status, o.deleted_at IS NOT NULL, o.processing_restricted
              FROM nexcomet.ad_connections c JOIN nexcomet.organizations o ON o.id = c.organization_id
             WHERE c.id = \(id)
            """
        ).first
    else { return nil }  // unknown: the caller's own lookup reports it
    let status: String = try r.decode(0)
    if try r.decode(1) as Bool { return "the organization is deleted" }
    if try r.decode(2) as Bool { return "the organization's processing is restricted" }
    if status != "active" { return "the connection is \(status)" }
    return nil
}
