import Foundation
import XCTest

@testable import Privacy

final class TokenVaultTests: XCTestCase {
    private let rowAD = TokenVault.associatedData(table: "ad_connections", rowID: "42", column: "access_token")

    private func vault(_ entries: [(String, [UInt8])]) throws -> TokenVault {
        TokenVault(keyRing: try KeyRing(keys: entries.map { (id: $0.0, key: $0.1) }))
    }

    private func assertVaultError(
        _ code: TokenVaultError.Code, _ body: () throws -> Any, secrets: [String] = [], keys: [[UInt8]] = [],
        file: StaticString = #filePath, line: UInt = #line
    ) {
        XCTAssertThrowsError(try body(), file: file, line: line) { error in
            guard let error = error as? TokenVaultError else {
                return XCTFail("unexpected error \(error)", file: file, line: line)
            }
            XCTAssertEqual(error.code, code, "\(error)", file: file, line: line)
            assertNoSecrets(error.description, plaintexts: secrets, keys: keys, file: file, line: line)
            assertNoSecrets(String(reflecting: error), plaintexts: secrets, keys: keys, file: file, line: line)
        }
    }

    func testAssociatedDataConvention() {
        XCTAssertEqual(rowAD, "ad_connections:42:access_token")
    }

    func testRoundTrip() throws {
        let vault = try vault([("k1", randomKey())])
        for plaintext in ["act.9f8e7d6c5b4a3f2e1d0c", "", "refresh-ünïcödé-🔑", String(repeating: "x", count: 5000)] {
            let sealed = try vault.seal(plaintext, associatedData: rowAD)
            XCTAssertEqual(try vault.open(sealed, associatedData: rowAD), plaintext)
        }
    }

    func testLayoutMatchesTheDocumentedFormat() throws {
        let vault = try vault([("key-7", randomKey())])
        let plaintext = "a-token"
        let sealed = try vault.seal(plaintext, associatedData: rowAD)
        XCTAssertEqual(sealed[0], 1)
        XCTAssertEqual(sealed[1], 5)
        XCTAssertEqual(Array(sealed[2..<7]), Array("key-7".utf8))
        XCTAssertEqual(sealed.count, 30 + 5 + plaintext.utf8.count)
        XCTAssertFalse(
            sealed.indices.dropLast(plaintext.utf8.count - 1).contains {
                Array(sealed[$0..<$0 + plaintext.utf8.count]) == Array(plaintext.utf8)
            },
            "plaintext visible in the sealed bytes")
        XCTAssertEqual(try vault.keyID(of: sealed), "key-7")
    }

    /// The vector in CIPHERTEXT.md, computed with Python's `cryptography` package: another implementation's
    /// output opens here, so the documented format is the implemented one.
    func testOpensTheDocumentedVectorFromAnotherImplementation() throws {
        let vault = try vault([("k1", (0..<32).map(UInt8.init))])
        let sealed = hex("01026b31000102030405060708090a0b336dbd7eaba7a425f99eac0a6dec5b025c355859aa")
        XCTAssertEqual(try vault.open(sealed, associatedData: "ad_connections:1:access_token"), "token")
        assertVaultError(.authenticationFailed) {
            try vault.open(sealed, associatedData: "ad_connections:2:access_token")
        }
    }

    func testNonceDiffersEveryTime() throws {
        let vault = try vault([("k1", randomKey())])
        var nonces = Set<[UInt8]>()
        var values = Set<[UInt8]>()
        for _ in 0..<200 {
            let sealed = try vault.seal("same token", associatedData: rowAD)
            nonces.insert(Array(sealed[4..<16]))
            values.insert(sealed)
        }
        XCTAssertEqual(nonces.count, 200)
        XCTAssertEqual(values.count, 200)
    }

    func testTamperingAnyByteFails() throws {
        let key = randomKey()
        let vault = try vault([("k1", key)])
        let plaintext = "tamper-target-token"
        let sealed = try vault.seal(plaintext, associatedData: rowAD)
        for index in sealed.indices {
            for flip: UInt8 in [0x01, 0x80] {
                var tampered = sealed
                tampered[index] ^= flip
                XCTAssertThrowsError(try vault.open(tampered, associatedData: rowAD), "byte \(index)") { error in
                    assertNoSecrets("\(error)", plaintexts: [plaintext], keys: [key])
                }
            }
        }
        // Body and tag bytes fail authentication specifically.
        var body = sealed
        body[20] ^= 0x01
        assertVaultError(
            .authenticationFailed, { try vault.open(body, associatedData: self.rowAD) }, secrets: [plaintext],
            keys: [key])
        var version = sealed
        version[0] = 2
        assertVaultError(.unsupportedVersion) { try vault.open(version, associatedData: self.rowAD) }
        var keyID = sealed
        keyID[3] = UInt8(ascii: "9")
        assertVaultError(.unknownKeyID) { try vault.open(keyID, associatedData: self.rowAD) }
        var badID = sealed
        badID[3] = UInt8(ascii: ",")
        assertVaultError(.malformedHeader) { try vault.open(badID, associatedData: self.rowAD) }
    }

    func testTruncatedOrExtendedInputFails() throws {
        let vault = try vault([("k1", randomKey())])
        let sealed = try vault.seal("truncate-me", associatedData: rowAD)
        for length in 0..<sealed.count {
            XCTAssertThrowsError(
                try vault.open(Array(sealed.prefix(length)), associatedData: rowAD), "length \(length)")
        }
        let headerOnly = Array(sealed.prefix(4 + 12 + 15))
        assertVaultError(.truncated) { try vault.open(headerOnly, associatedData: self.rowAD) }
        assertVaultError(.truncated) { try vault.open([], associatedData: self.rowAD) }
        assertVaultError(.truncated) { try vault.open([1], associatedData: self.rowAD) }
        assertVaultError(.authenticationFailed) { try vault.open(Array(sealed.dropLast()), associatedData: self.rowAD) }
        assertVaultError(.authenticationFailed) { try vault.open(sealed + [0], associatedData: self.rowAD) }
    }

    func testWrongAssociatedDataFails() throws {
        let vault = try vault([("k1", randomKey())])
        let plaintext = "moved-token"
        let sealed = try vault.seal(plaintext, associatedData: rowAD)
        for other in [
            "ad_connections:43:access_token", "ad_connections:42:refresh_token", "", "ad_connections:42:access_token ",
        ] {
            assertVaultError(
                .authenticationFailed, { try vault.open(sealed, associatedData: other) }, secrets: [plaintext])
        }
    }

    func testWrongKeyUnderTheSameIdFails() throws {
        let sealingKey = randomKey()
        let otherKey = randomKey()
        let plaintext = "wrong-key-token"
        let sealed = try vault([("k1", sealingKey)]).seal(plaintext, associatedData: rowAD)
        let other = try vault([("k1", otherKey)])
        assertVaultError(
            .authenticationFailed, { try other.open(sealed, associatedData: self.rowAD) }, secrets: [plaintext],
            keys: [sealingKey, otherKey])
    }

    func testUnknownKeyIdFails() throws {
        let plaintext = "unknown-key-token"
        let sealed = try vault([("gone", randomKey())]).seal(plaintext, associatedData: rowAD)
        let current = try vault([("k2", randomKey()), ("k3", randomKey())])
        assertVaultError(.unknownKeyID, { try current.open(sealed, associatedData: self.rowAD) }, secrets: [plaintext])
        XCTAssertThrowsError(try current.open(sealed, associatedData: rowAD)) { error in
            XCTAssertEqual((error as? TokenVaultError)?.keyID, "gone")
        }
    }

    /// Rewriting the header to name another key id fails because the header is authenticated: both ids hold
    /// the same key here, so only the header binding can catch it.
    func testSwappingTheKeyIdInTheHeaderFails() throws {
        let key = randomKey()
        let vault = try vault([("ka", key), ("kb", key)])
        var sealed = try vault.seal("swap", associatedData: rowAD)
        XCTAssertEqual(try vault.keyID(of: sealed), "ka")
        sealed[3] = UInt8(ascii: "b")
        XCTAssertEqual(try vault.keyID(of: sealed), "kb")
        assertVaultError(.authenticationFailed) { try vault.open(sealed, associatedData: self.rowAD) }
    }

    func testRotation() throws {
        let oldKey = randomKey()
        let newKey = randomKey()
        let before = try vault([("old", oldKey)])
        let plaintext = "rotate-me"
        let oldSealed = try before.seal(plaintext, associatedData: rowAD)
        XCTAssertFalse(before.needsRotation(oldSealed))

        let after = try vault([("new", newKey), ("old", oldKey)])
        XCTAssertEqual(try after.open(oldSealed, associatedData: rowAD), plaintext)
        XCTAssertTrue(after.needsRotation(oldSealed))
        let fresh = try after.seal(plaintext, associatedData: rowAD)
        XCTAssertEqual(try after.keyID(of: fresh), "new")
        XCTAssertFalse(after.needsRotation(fresh))

        let resealed = try after.reseal(oldSealed, associatedData: rowAD)
        XCTAssertEqual(try after.keyID(of: resealed), "new")
        XCTAssertFalse(after.needsRotation(resealed))
        XCTAssertEqual(try after.open(resealed, associatedData: rowAD), plaintext)
        // Once the old key is dropped, only resealed values open.
        let retired = try vault([("new", newKey)])
        XCTAssertEqual(try retired.open(resealed, associatedData: rowAD), plaintext)
        assertVaultError(.unknownKeyID) { try retired.open(oldSealed, associatedData: self.rowAD) }
        // Reseal keeps the row binding.
        assertVaultError(.authenticationFailed) {
            try after.reseal(oldSealed, associatedData: "ad_connections:1:access_token")
        }
    }

    func testNeedsRotationForUnreadableValues() throws {
        let vault = try vault([("k1", randomKey())])
        XCTAssertTrue(vault.needsRotation([]))
        XCTAssertTrue(vault.needsRotation([9, 9, 9]))
        assertVaultError(.truncated) { try vault.reseal([], associatedData: self.rowAD) }
    }

    func testNonUTF8PlaintextIsReported() throws {
        let key = randomKey()
        let vault = try vault([("k1", key)])
        let header = TokenVault.header(keyID: "k1")
        let nonce = try secureRandomBytes(12)
        let sealed = try AESGCM.seal(key: key, nonce: nonce, plaintext: [0xff, 0xfe], aad: header + Array(rowAD.utf8))
        assertVaultError(.invalidPlaintext) {
            try vault.open(header + nonce + sealed.ciphertext + sealed.tag, associatedData: self.rowAD)
        }
    }

    func testSealingIsSafeFromManyTasksAtOnce() async throws {
        let vault = try vault([("k1", randomKey())])
        let ad = rowAD
        let results = try await withThrowingTaskGroup(of: Bool.self) { group in
            for index in 0..<64 {
                group.addTask {
                    let plaintext = "token-\(index)"
                    return try vault.open(vault.seal(plaintext, associatedData: ad), associatedData: ad) == plaintext
                }
            }
            return try await group.reduce(into: [Bool]()) { $0.append($1) }
        }
        XCTAssertEqual(results.count, 64)
        XCTAssertTrue(results.allSatisfy { $0 })
    }
}
