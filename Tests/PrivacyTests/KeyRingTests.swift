import Foundation
import XCTest

@testable import Privacy

final class KeyRingTests: XCTestCase {
    func testParsesKeysInOrderFirstIsActive() throws {
        let new = randomKey()
        let old = randomKey()
        let ring = try KeyRing(parsing: "k2026:\(base64(new)), k2025 : \(base64(old)) ,\n")
        XCTAssertEqual(ring.activeKeyID, "k2026")
        XCTAssertEqual(ring.keyIDs, ["k2026", "k2025"])
        XCTAssertEqual(ring.key(for: "k2026"), new)
        XCTAssertEqual(ring.key(for: "k2025"), old)
        XCTAssertTrue(ring.contains(keyID: "k2025"))
        XCTAssertFalse(ring.contains(keyID: "k2024"))
    }

    func testFromEnvironment() throws {
        let key = randomKey()
        let ring = try KeyRing.fromEnvironment(environment: ["NEXJOBS_TOKEN_KEYS": "main:\(base64(key))"])
        XCTAssertEqual(ring.keyIDs, ["main"])
        XCTAssertThrowsError(try KeyRing.fromEnvironment(environment: [:])) { error in
            XCTAssertEqual((error as? KeyRingError)?.code, .empty)
            XCTAssertTrue("\(error)".contains("NEXJOBS_TOKEN_KEYS"), "\(error)")
        }
        XCTAssertThrowsError(try KeyRing.fromEnvironment("OTHER", environment: ["OTHER": "x:\(base64([1, 2]))"])) {
            error in
            XCTAssertEqual((error as? KeyRingError)?.code, .wrongKeyLength)
            XCTAssertTrue("\(error)".hasPrefix("key ring: OTHER: "), "\(error)")
        }
    }

    func testErrorsAreClearAndNeverShowKeyMaterial() {
        let good = randomKey()
        let short = Array(randomKey().prefix(16))
        let long = randomKey() + [7]
        let cases: [(String, KeyRingError.Code, String)] = [
            ("", .empty, "no keys"),
            (" , ", .empty, "no keys"),
            (base64(good), .badFormat, "entry 1 is not in the form id:base64key"),
            ("a:\(base64(good)),\(base64(good))", .badFormat, "entry 2 is not in the form id:base64key"),
            ("a:", .badFormat, "key 'a' has no key after ':'"),
            (":\(base64(good))", .invalidKeyID, "entry 1 has an invalid key id"),
            ("bad id:\(base64(good))", .invalidKeyID, "entry 1 has an invalid key id"),
            ("\(String(repeating: "x", count: 65)):\(base64(good))", .invalidKeyID, "entry 1 has an invalid key id"),
            ("a:not base64!", .invalidBase64, "key 'a' is not valid base64"),
            ("a:\(base64(short))", .wrongKeyLength, "key 'a' is 16 bytes; AES-256 needs exactly 32"),
            ("a:\(base64(long))", .wrongKeyLength, "key 'a' is 33 bytes; AES-256 needs exactly 32"),
            (
                "a:\(base64(good)),b:\(base64(randomKey())),a:\(base64(randomKey()))", .duplicateKeyID,
                "key id 'a' appears more than once"
            ),
        ]
        for (value, code, message) in cases {
            XCTAssertThrowsError(try KeyRing(parsing: value), value) { error in
                guard let error = error as? KeyRingError else { return XCTFail("unexpected \(error)") }
                XCTAssertEqual(error.code, code, "\(error)")
                XCTAssertTrue(error.description.contains(message), "\(error)")
                assertNoSecrets(error.description, keys: [good, short, long])
                assertNoSecrets(String(reflecting: error), keys: [good, short, long])
            }
        }
    }

    func testProgrammaticInitValidates() throws {
        XCTAssertThrowsError(try KeyRing(keys: [])) { XCTAssertEqual(($0 as? KeyRingError)?.code, .empty) }
        XCTAssertThrowsError(try KeyRing(keys: [("a", [1, 2, 3])])) {
            XCTAssertEqual(($0 as? KeyRingError)?.code, .wrongKeyLength)
        }
        XCTAssertThrowsError(try KeyRing(keys: [("a,b", randomKey())])) {
            XCTAssertEqual(($0 as? KeyRingError)?.code, .invalidKeyID)
        }
        let ring = try KeyRing(keys: [("x.y_z-1", randomKey())])
        XCTAssertEqual(ring.activeKeyID, "x.y_z-1")
    }

    func testDescriptionsAndDumpShowIdsOnly() throws {
        let first = randomKey()
        let second = randomKey()
        let ring = try KeyRing(parsing: "new:\(base64(first)),old:\(base64(second))")
        XCTAssertEqual("\(ring)", "KeyRing(active: new, keys: new,old)")
        var dumped = ""
        dump(ring, to: &dumped)
        let vault = TokenVault(keyRing: ring)
        var dumpedVault = ""
        dump(vault, to: &dumpedVault)
        for text in [String(describing: ring), String(reflecting: ring), dumped, "\(vault)", dumpedVault] {
            assertNoSecrets(text, keys: [first, second])
            XCTAssertTrue(text.contains("new"), text)
        }
    }
}
