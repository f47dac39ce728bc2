import Foundation
import NexcometJobs
import PGTestSupport
import Postgres
import XCTest

/// The migrations compiled into the binary are exactly the files of sql/ (same versions, names and bytes, so the
/// checksums recorded by either agree).
final class EmbeddedMigrationsTests: XCTestCase {
    func testEmbeddedMigrationsMatchTheSQLFolder() throws {
        let files = try PGMigrator(directory: TestDatabase.sqlDirectory).migrations
        let embedded = EmbeddedMigrations.all
        let hint = "Sources/NexcometJobs/EmbeddedMigrations.swift is out of date: run bash deploy/embed-migrations.sh"
        XCTAssertEqual(embedded.map(\.name), files.map(\.name), hint)
        for (e, f) in zip(embedded, files) {
            XCTAssertEqual(e.version, f.version, hint)
            XCTAssertTrue(Array(e.sql.utf8) == Array(f.sql.utf8), "\(f.name) differs. \(hint)")
        }
    }
}
