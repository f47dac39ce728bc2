import Foundation
import Postgres
import Sandbox

/// The scheduler leader's id, if a leader holds a live term.
func currentLeader(_ pool: PGPool) async throws -> String? {
    let exists: Bool = try await pool.query("SELECT to_regclass('nexjobs.leader') IS NOT NULL").first!.decode(0)
    guard exists else { return nil }
    return try await pool.query(
        "SELECT holder FROM nexjobs.leader WHERE name = 'scheduler' AND term_until > now()"
    ).first?.decode(0, as: String.self)
}

func sandboxCommand(_ args: [String]) async throws -> Int32 {
    await runSandboxCommand(arguments: args)
}
