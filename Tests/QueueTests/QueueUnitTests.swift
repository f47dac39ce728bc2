import Queue
import XCTest

/// Pure queue logic, without a database.
final class QueueUnitTests: XCTestCase {
    func testExponentialJitterGrowsAndStaysWithinBounds() {
        let p = RetryPolicy.exponentialJitter(base: .seconds(1), maxBackoff: .seconds(60))
        for attempt in 1...12 {
            let full = min(Double(1 << (attempt - 1)), 60)
            for _ in 0..<50 {
                let d = p.delay(afterAttempt: attempt)
                let s = Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
                XCTAssertGreaterThanOrEqual(s, full / 2 - 1e-9, "attempt \(attempt)")
                XCTAssertLessThanOrEqual(s, full + 1e-9, "attempt \(attempt)")
            }
        }
        // The smallest delay of attempt n+1 is at least the largest of attempt n (until the cap).
        XCTAssertGreaterThanOrEqual(p.delay(afterAttempt: 3), .seconds(2))
    }

    func testNewJobValidation() {
        XCTAssertNoThrow(try NewJob(kind: "sync_connection", args: #"{"connection_id": "42"}"#).validate())
        for bad in [
            NewJob(kind: ""), NewJob(kind: "UPPER"), NewJob(kind: "noop", args: "[]"),
            NewJob(kind: "noop", args: "nope"), NewJob(kind: "noop", queue: "has space"),
            NewJob(kind: "noop", priority: 40000), NewJob(kind: "noop", maxAttempts: 0),
        ] {
            XCTAssertThrowsError(try bad.validate(), "\(bad)")
        }
    }

    func testStateParsingNamesTheValidStates() {
        XCTAssertEqual(try JobState.parse("FAILED"), .failed)
        XCTAssertThrowsError(try JobState.parse("done")) { e in
            XCTAssertTrue("\(e)".contains("available, running, completed, retryable, failed, cancelled"))
        }
    }
}
