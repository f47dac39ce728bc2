import Foundation
import PGTestSupport
import Postgres
import XCTest

/// `nexjobs migrate` needs no sql/ folder: a copy of the binary run from an empty directory applies the embedded
/// migrations, and a second run applies nothing.
final class MigrateAnywhereTests: XCTestCase {
    func testMigrateFromAnEmptyDirectoryWithACopiedBinary() async throws {
        let db = try await TestDatabase.create(migrate: false)
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("nexjobs-migrate-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: tmp) }
        let copy = tmp.appendingPathComponent("nexjobs")
        try FileManager.default.copyItem(at: nexjobsExecutable, to: copy)
        func migrate() async throws -> (Int32, String) {
            let p = NexjobsProcess(["migrate"], databaseURL: db.url, environment: ["NEXJOBS_SQL_DIR": ""])
            p.process.executableURL = copy
            p.process.currentDirectoryURL = tmp
            try p.start()
            guard let status = await p.wait(timeout: .seconds(60)) else {
                p.signal(SIGKILL)
                throw TestEnvironmentError(description: "migrate did not exit")
            }
            return (status, p.text)
        }
        let (status, out) = try await migrate()
        XCTAssertEqual(status, 0, out)
        let count = try FileManager.default.contentsOfDirectory(atPath: TestDatabase.sqlDirectory.path)
            .filter { $0.hasSuffix(".sql") }.count
        XCTAssertTrue(out.contains("migrations: \(count) applied, 0 already applied"), out)
        let recorded: Int = try await db.pool.query("SELECT count(*)::int FROM nexjobs.schema_migrations").first!
            .decode(0)
        XCTAssertEqual(recorded, count)
        let (again, out2) = try await migrate()
        XCTAssertEqual(again, 0, out2)
        XCTAssertTrue(out2.contains("migrations: 0 applied, \(count) already applied"), out2)
        XCTAssertFalse(out2.contains("changed since"), "embedded text equals the files: \(out2)")
        await db.drop()
    }
}
